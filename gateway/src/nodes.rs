//! Which gateway nodes run now, and where their internal HTTP routes are: the table that lets a
//! node forward a reply to the node that parked its request (crate docs, "Forwarding").
//!
//! Each node announces `node id → {address, incarnation}` in the compacted topic
//! `gateway.{deployment}.nodes` (keyed by node id; a tombstone when it shuts down cleanly), and
//! reads that topic from the beginning into a bounded in-memory table. The reader has a Client
//! of its own: a Kafka broker answers one request per connection at a time, so its long polls
//! must not queue in front of the response consumer's.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tidepool_client::{Client, Consumer, ConsumerRecord, Error, TopicPartition};
use tokio::sync::watch;

/// Pause after a failed poll before the next.
const POLL_FAILURE_PAUSE: Duration = Duration::from_millis(200);

/// Where a node serves its internal routes, and which run of it that is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Announcement {
    /// `host:port` of its HTTP listener.
    pub(crate) address: String,
    pub(crate) incarnation: u64,
}

impl Announcement {
    pub(crate) fn encode(&self) -> Vec<u8> {
        json!({ "address": self.address, "incarnation": format!("{:016x}", self.incarnation) })
            .to_string()
            .into_bytes()
    }

    pub(crate) fn decode(value: &[u8]) -> Option<Announcement> {
        let value: Value = serde_json::from_slice(value).ok()?;
        let address = value.get("address")?.as_str()?.to_owned();
        let incarnation = u64::from_str_radix(value.get("incarnation")?.as_str()?, 16).ok()?;
        Some(Announcement {
            address,
            incarnation,
        })
    }
}

/// The latest announcement of each node, at most `max` nodes (a flood of made-up node ids on
/// the topic cannot grow it without bound; a node beyond the bound is treated as gone).
#[derive(Clone)]
pub(crate) struct NodeTable {
    nodes: Arc<Mutex<BTreeMap<String, Announcement>>>,
    max: usize,
}

impl NodeTable {
    pub(crate) fn new(max: usize) -> NodeTable {
        NodeTable {
            nodes: Arc::new(Mutex::new(BTreeMap::new())),
            max,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Announcement>> {
        self.nodes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn get(&self, node: &str) -> Option<Announcement> {
        self.lock().get(node).cloned()
    }

    /// Applies one record of the nodes topic: an announcement, or a tombstone (`None`).
    pub(crate) fn apply(&self, node: &str, value: Option<&[u8]>) {
        let mut nodes = self.lock();
        match value.and_then(Announcement::decode) {
            Some(announcement) => {
                if nodes.len() < self.max || nodes.contains_key(node) {
                    nodes.insert(node.to_owned(), announcement);
                } else {
                    tracing::warn!(node, max = self.max, "gateway: node table full");
                }
            }
            None => {
                nodes.remove(node);
            }
        }
    }
}

/// Reads the nodes topic from the beginning into the table until stopped.
pub(crate) struct NodesLoop {
    pub(crate) client: Client,
    pub(crate) consumer: Consumer,
    pub(crate) poll_wait: Duration,
    pub(crate) table: NodeTable,
}

impl NodesLoop {
    /// Assigns every partition of `topic` (no group: each node reads all of it) from its start.
    pub(crate) async fn assign(&self, topic: &str, partitions: i32) -> tidepool_client::Result<()> {
        let all: Vec<TopicPartition> = (0..partitions)
            .map(|partition| TopicPartition::new(topic, partition))
            .collect();
        self.consumer.assign(all.clone()).await?;
        self.consumer.seek_to_beginning(&all).await
    }

    /// Polls until `stop` turns true, then closes its client.
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            let polled = tokio::select! {
                biased;
                _ = stop.changed() => break,
                polled = self.consumer.poll(self.poll_wait) => polled,
            };
            match polled {
                Ok(records) => records.iter().for_each(|record| self.apply(record)),
                Err(error @ (Error::Closed | Error::Fatal(_))) => {
                    tracing::error!(%error, "gateway: the nodes reader stopped");
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "gateway: polling the nodes topic failed");
                    self.client.sleep(POLL_FAILURE_PAUSE).await;
                }
            }
        }
        let _ = self.consumer.close().await;
        self.client.close();
    }

    fn apply(&self, record: &ConsumerRecord) {
        let Some(node) = record
            .key
            .as_ref()
            .and_then(|key| std::str::from_utf8(key).ok())
        else {
            return;
        };
        self.table.apply(node, record.value.as_deref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_keeps_the_latest_announcement_and_forgets_a_tombstoned_node() {
        let table = NodeTable::new(2);
        let first = Announcement {
            address: "127.0.0.1:1".into(),
            incarnation: 1,
        };
        let second = Announcement {
            address: "127.0.0.1:2".into(),
            incarnation: 2,
        };
        table.apply("a", Some(&first.encode()));
        table.apply("a", Some(&second.encode()));
        assert_eq!(table.get("a"), Some(second.clone()));
        table.apply("b", Some(&first.encode()));
        table.apply("c", Some(&first.encode()));
        assert_eq!(table.get("c"), None, "beyond the bound");
        table.apply("a", None);
        assert_eq!(table.get("a"), None);
        table.apply("b", Some(b"garbage"));
        assert_eq!(table.get("b"), None, "garbage counts as gone");
    }
}
