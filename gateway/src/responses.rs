//! The response consumer: reads the node's assigned partitions of the response topic without
//! pause and hands each response to its parked request. It runs on a Client of its own: a
//! Kafka broker answers one request per connection at a time, so its long-polling fetches
//! must not queue in front of the producer's requests.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tidepool_client::{
    BoxFuture, Client, Consumer, ConsumerRecord, Error, RebalanceListener, TopicPartition,
};
use tokio::sync::watch;

use crate::correlation::{CorrelationId, Ownership};
use crate::forward::Forwarder;
use crate::headers;
use crate::metrics::GatewayMetrics;
use crate::parked::{Delivery, Parked, Reply};

/// Pause after a failed poll before the next.
const POLL_FAILURE_PAUSE: Duration = Duration::from_millis(200);

/// Takes revoked partitions out of the owned set before the rebalance completes, so no new id
/// is made for a partition about to move.
pub(crate) struct Revocations {
    pub(crate) ownership: Arc<Ownership>,
}

impl RebalanceListener for Revocations {
    fn on_revoked<'a>(
        &'a self,
        _consumer: &'a Consumer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        self.ownership
            .remove(partitions.iter().map(|tp| tp.partition));
        Box::pin(std::future::ready(()))
    }

    fn on_lost<'a>(
        &'a self,
        _consumer: &'a Consumer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        self.ownership
            .remove(partitions.iter().map(|tp| tp.partition));
        Box::pin(std::future::ready(()))
    }
}

pub(crate) struct ResponseLoop {
    pub(crate) client: Client,
    pub(crate) consumer: Consumer,
    pub(crate) topic: String,
    pub(crate) node_id: String,
    pub(crate) poll_wait: Duration,
    pub(crate) ownership: Arc<Ownership>,
    pub(crate) parked: Parked,
    pub(crate) metrics: GatewayMetrics,
    pub(crate) broken: Arc<OnceLock<String>>,
    pub(crate) forwarder: Forwarder,
    pub(crate) forward_queue_max: usize,
    /// `GatewayConfig::sabotage_no_forwarding`.
    pub(crate) sabotage_no_forwarding: bool,
}

impl ResponseLoop {
    /// Polls until `stop` turns true, then leaves the group and closes its client.
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            let polled = tokio::select! {
                biased;
                _ = stop.changed() => break,
                polled = self.consumer.poll(self.poll_wait) => polled,
            };
            match polled {
                Ok(records) => {
                    // This node's own replies first: forwards must not hold them up.
                    let forwards: Vec<(String, Reply)> = records
                        .iter()
                        .filter_map(|record| self.handle(record))
                        .collect();
                    // Polling again, a rebalance and leaving the group all commit past every
                    // record of this poll (auto-commit), so every forward of this poll finishes
                    // first, even when stopping: each ends within `forward_deadline`.
                    if self.sabotage_no_forwarding {
                        for _ in &forwards {
                            self.metrics.dropped("not_forwarded");
                        }
                    } else {
                        self.forward_all(forwards).await;
                    }
                }
                Err(error @ (Error::Closed | Error::Fatal(_))) => {
                    tracing::error!(%error, "gateway: the response consumer stopped");
                    let _ = self.broken.set(error.to_string());
                    self.ownership.set(BTreeSet::new());
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "gateway: polling responses failed");
                    self.client.sleep(POLL_FAILURE_PAUSE).await;
                }
            }
            self.update_ownership();
        }
        self.ownership.set(BTreeSet::new());
        if let Err(error) = self.consumer.close().await {
            tracing::debug!(%error, "gateway: leaving the response group");
        }
        self.client.close();
    }

    /// Owned: assigned, and with a known position, so a reply written from now on is read.
    fn update_ownership(&self) {
        let owned = self
            .consumer
            .assignment()
            .into_iter()
            .filter(|tp| tp.topic == self.topic && self.consumer.position(tp).is_some())
            .map(|tp| tp.partition)
            .collect();
        self.ownership.set(owned);
    }

    /// Forwards `forwards` at most `forward_queue_max` at a time; returns when all are done.
    async fn forward_all(&self, forwards: Vec<(String, Reply)>) {
        let mut forwards = forwards.into_iter();
        loop {
            let mut running = tokio::task::JoinSet::new();
            for (id, reply) in forwards.by_ref().take(self.forward_queue_max) {
                let forwarder = self.forwarder.clone();
                running.spawn(async move { forwarder.forward(id, reply).await });
            }
            if running.is_empty() {
                return;
            }
            while running.join_next().await.is_some() {}
        }
    }

    /// Delivers a reply for this node's own request; returns one for another node's, to be
    /// forwarded.
    fn handle(&self, record: &ConsumerRecord) -> Option<(String, Reply)> {
        let key_id = record
            .key
            .as_ref()
            .and_then(|key| std::str::from_utf8(key).ok());
        let Some(id) = headers::find(&record.headers, headers::CORRELATION_ID).or(key_id) else {
            self.metrics.dropped("malformed");
            return None;
        };
        match CorrelationId::parse(id) {
            Some(parsed) if parsed.node == self.node_id => {}
            // A rebalance moved the partition while the request waited elsewhere.
            Some(_) => return Some((id.to_owned(), reply_of(record))),
            None => {
                self.metrics.dropped("malformed");
                return None;
            }
        }
        deliver(
            &self.parked,
            &self.metrics,
            id,
            reply_of(record),
            self.client.now(),
        );
        None
    }
}

/// Hands a reply to this node's parked map and counts what became of it: the one path both the
/// response consumer and `/internal/responses` take, so a forwarded reply obeys exactly the
/// rules of a consumed one.
pub(crate) fn deliver(
    parked: &Parked,
    metrics: &GatewayMetrics,
    id: &str,
    reply: Reply,
    now: Duration,
) -> Delivery {
    let delivery = parked.deliver(id, reply, now);
    match delivery {
        Delivery::Delivered => metrics.delivered(),
        dropped => {
            tracing::debug!(id, reason = dropped.reason(), "gateway: response dropped");
            metrics.dropped(dropped.reason());
        }
    }
    delivery
}

/// The HTTP answer a reply record asks for; a reply without a valid status becomes a 502.
pub(crate) fn reply_of(record: &ConsumerRecord) -> Reply {
    let status = headers::find(&record.headers, headers::STATUS)
        .and_then(|status| status.parse::<u16>().ok())
        .filter(|status| (200..=599).contains(status));
    let Some(status) = status else {
        return Reply {
            status: 502,
            headers: vec![(
                headers::CONTENT_TYPE.to_owned(),
                "application/json".to_owned(),
            )],
            body: Bytes::from_static(
                br#"{"error":"the service's reply has no valid status header"}"#,
            ),
        };
    };
    let mut passed = Vec::new();
    for header in &record.headers {
        if !headers::is_passed_reply_header(&header.key) {
            continue;
        }
        if let Some(value) = header
            .value
            .as_deref()
            .and_then(|value| std::str::from_utf8(value).ok())
        {
            passed.push((header.key.clone(), value.to_owned()));
        }
    }
    Reply {
        status,
        headers: passed,
        body: record.value.clone().unwrap_or_default(),
    }
}
