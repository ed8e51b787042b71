//! Correlation ids: `{node}.{incarnation}.{sequence}`, e.g. `gw-1.9f3a0c1b2d4e5f60.2a`.
//!
//! - `node` is the gateway node's id ([`crate::GatewayConfig::node_id`], no `.`), so any node
//!   that reads a response can tell which node parked its request (forwarding, DESIGN.md §6).
//! - `incarnation` is 64 random bits drawn from the Entropy seam when the node starts: ids stay
//!   unique across restarts of a node even though `sequence` starts again from 0.
//! - `sequence` counts candidates. A candidate is used only if murmur2 of it (Kafka's default
//!   partitioner) lands on a response partition this node owns now, so the service's reply,
//!   keyed by the id, comes back to this node. Candidates that miss are skipped, at most
//!   `correlation_attempts_max` per request.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tidepool_client::partitioner::partition_for_key;

/// Why no id could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorrelationError {
    #[error("this gateway node owns no response partition yet (its group is still assigning them)")]
    NoPartition,
    #[error("no correlation id among {attempts} candidates hashed to an owned partition")]
    Exhausted { attempts: u32 },
}

/// A parsed correlation id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrelationId<'a> {
    pub node: &'a str,
    pub incarnation: u64,
    pub sequence: u64,
}

impl<'a> CorrelationId<'a> {
    pub fn parse(id: &'a str) -> Option<CorrelationId<'a>> {
        let mut parts = id.rsplitn(3, '.');
        let sequence = u64::from_str_radix(parts.next()?, 16).ok()?;
        let incarnation = u64::from_str_radix(parts.next()?, 16).ok()?;
        let node = parts.next().filter(|node| !node.is_empty())?;
        Some(CorrelationId {
            node,
            incarnation,
            sequence,
        })
    }
}

/// The response partitions this node owns now: those its consumer is assigned and has a
/// position for (a partition is owned only once a reply written to it will be read).
#[derive(Debug)]
pub struct Ownership {
    partitions: i32,
    owned: Mutex<BTreeSet<i32>>,
}

impl Ownership {
    pub fn new(partitions: i32) -> Ownership {
        Ownership {
            partitions,
            owned: Mutex::new(BTreeSet::new()),
        }
    }

    /// The response topic's partition count.
    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    pub fn owned(&self) -> BTreeSet<i32> {
        self.lock().clone()
    }

    pub fn set(&self, owned: BTreeSet<i32>) {
        *self.lock() = owned;
    }

    pub fn remove(&self, partitions: impl IntoIterator<Item = i32>) {
        let mut owned = self.lock();
        for partition in partitions {
            owned.remove(&partition);
        }
    }

    pub fn owns(&self, partition: i32) -> bool {
        self.lock().contains(&partition)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<i32>> {
        self.owned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Makes the correlation ids of one node incarnation.
#[derive(Debug)]
pub struct IdGenerator {
    node: String,
    incarnation: u64,
    sequence: AtomicU64,
    attempts_max: u32,
}

impl IdGenerator {
    /// `incarnation` must be drawn from the Entropy seam at start.
    pub fn new(node: impl Into<String>, incarnation: u64, attempts_max: u32) -> IdGenerator {
        IdGenerator {
            node: node.into(),
            incarnation,
            sequence: AtomicU64::new(0),
            attempts_max,
        }
    }

    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// A fresh id hashing to a partition in `ownership`.
    pub fn next(&self, ownership: &Ownership) -> Result<String, CorrelationError> {
        let owned = ownership.owned();
        if owned.is_empty() {
            return Err(CorrelationError::NoPartition);
        }
        for _ in 0..self.attempts_max {
            let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
            let id = format!("{}.{:016x}.{sequence:x}", self.node, self.incarnation);
            if owned.contains(&partition_for_key(id.as_bytes(), ownership.partitions())) {
                return Ok(id);
            }
        }
        Err(CorrelationError::Exhausted {
            attempts: self.attempts_max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_names_its_node_and_hashes_to_an_owned_partition() {
        let ownership = Ownership::new(16);
        ownership.set([3, 11].into_iter().collect());
        let ids = IdGenerator::new("gw-1", 0xfeed, 1000);
        for _ in 0..100 {
            let id = ids.next(&ownership).unwrap();
            let parsed = CorrelationId::parse(&id).unwrap();
            assert_eq!(parsed.node, "gw-1");
            assert_eq!(parsed.incarnation, 0xfeed);
            assert!(
                [3, 11].contains(&partition_for_key(id.as_bytes(), 16)),
                "{id}"
            );
        }
    }

    #[test]
    fn a_node_without_partitions_makes_no_id() {
        let ids = IdGenerator::new("gw-1", 1, 1000);
        assert_eq!(
            ids.next(&Ownership::new(4)),
            Err(CorrelationError::NoPartition)
        );
    }

    #[test]
    fn garbage_does_not_parse_as_an_id() {
        for text in ["", "a.b", ".1.2", "gw.zz.1", "gw.1.", "gw"] {
            assert_eq!(CorrelationId::parse(text), None, "{text}");
        }
    }
}
