//! Waiting for a state (crate docs, "Waiting for a state"): each node reads every partition of
//! the events topics of the services it has seen `?wait=` requests for, and hands each event
//! to the request of this node that created its entity.
//!
//! # Event records (service → `{service}.events`)
//! Key: the entity's id (so one entity's events keep their order on one partition). Value:
//! the entity as it is in that state (the body a waiting request is answered with). Headers:
//!
//! | header | value |
//! |---|---|
//! | `correlation-id` | the correlation id of the request that created the entity: the gateway answers that request |
//! | `state` | the entity's new state, e.g. `created`, `validated`, `rejected` |
//! | `terminal` | `true` when the entity never leaves this state: a request waiting for another one ends with 409 |
//! | `content-type` | the value's type, when it is not `application/json` |
//!
//! A stage that moves the entity on (the order validator) copies `correlation-id` from the
//! event it acted on. The same event twice (a redelivery) is harmless: a request is answered
//! once.
//!
//! # Why no event is missed
//! The reader has no group: it assigns the partitions itself and starts each events topic at
//! its end, when the first request waiting on that service arrives. That request is produced
//! only once the reader's positions on the topic are known, and the service produces its events
//! only after reading the request, so they lie past those positions. Later topics are added
//! to the assignment without moving the positions already held. An event for another node's
//! request (the correlation id names the node) is skipped: that node reads it too.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tidepool_client::{Client, Consumer, ConsumerRecord, Error, KafkaCode, TopicPartition};
use tokio::sync::watch;

use crate::correlation::CorrelationId;
use crate::headers;
use crate::metrics::GatewayMetrics;
use crate::parked::{Event, EventDelivery, Parked};

/// The header naming an event's state.
pub const STATE: &str = "state";
/// The header marking a state the entity never leaves (`true`).
pub const TERMINAL: &str = "terminal";

/// The longest state a request may wait for.
pub const STATE_BYTES_MAX: usize = 64;

/// Pause after a failed poll before the next.
const POLL_FAILURE_PAUSE: Duration = Duration::from_millis(200);

/// How often a new topic's positions are looked at while they resolve.
const POSITION_CHECK: Duration = Duration::from_millis(5);

/// The events topic of `service`.
pub fn events_topic(service: &str) -> String {
    format!("{service}.events")
}

/// Whether `state` can be waited for: 1 to [`STATE_BYTES_MAX`] of `[a-zA-Z0-9_-]`.
pub fn is_state_name(state: &str) -> bool {
    !state.is_empty()
        && state.len() <= STATE_BYTES_MAX
        && state
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-'))
}

/// Why a node cannot read a service's events.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EventsError {
    #[error("the service has no events topic {0}")]
    NoTopic(String),
    #[error("this node already reads the events of {0} services (events_topics_max)")]
    TooMany(usize),
    #[error("kafka: {0}")]
    Kafka(#[from] Error),
    #[error("the positions on {0} did not resolve in time")]
    Unresolved(String),
}

/// The events topics a node reads; shared by the HTTP handlers and the reading loop.
pub(crate) struct Events {
    client: Client,
    consumer: Consumer,
    node_id: String,
    topics_max: usize,
    resolve_within: Duration,
    /// Topics whose positions are known: requests waiting on them may be produced.
    ready: Mutex<BTreeMap<String, Vec<TopicPartition>>>,
    /// One topic added at a time: an assignment replaces the whole set.
    adding: tokio::sync::Mutex<()>,
    /// Turns true once something is assigned: the loop cannot poll before.
    assigned: watch::Sender<bool>,
}

impl Events {
    pub(crate) fn new(
        client: Client,
        consumer: Consumer,
        node_id: String,
        topics_max: usize,
        resolve_within: Duration,
    ) -> Events {
        Events {
            client,
            consumer,
            node_id,
            topics_max,
            resolve_within,
            ready: Mutex::new(BTreeMap::new()),
            adding: tokio::sync::Mutex::new(()),
            assigned: watch::channel(false).0,
        }
    }

    fn ready(&self) -> MutexGuard<'_, BTreeMap<String, Vec<TopicPartition>>> {
        self.ready
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Returns once every event written to `topic` from now on will be read: at once for a
    /// topic read already; for a new one, after assigning its partitions at their end.
    pub(crate) async fn read(&self, topic: &str) -> Result<(), EventsError> {
        if self.ready().contains_key(topic) {
            return Ok(());
        }
        let _turn = self.adding.lock().await;
        let mut all: Vec<TopicPartition> = {
            let ready = self.ready();
            if ready.contains_key(topic) {
                return Ok(());
            }
            if ready.len() >= self.topics_max {
                return Err(EventsError::TooMany(self.topics_max));
            }
            ready.values().flatten().cloned().collect()
        };
        let partitions = match self.client.topic(topic).await {
            Ok(metadata) => metadata.partitions.len(),
            Err(error) if error.code() == Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION) => {
                return Err(EventsError::NoTopic(topic.to_owned()));
            }
            Err(error) => return Err(error.into()),
        };
        if partitions == 0 {
            return Err(EventsError::NoTopic(topic.to_owned()));
        }
        let added: Vec<TopicPartition> = (0..partitions)
            .filter_map(|partition| i32::try_from(partition).ok())
            .map(|partition| TopicPartition::new(topic, partition))
            .collect();
        all.extend(added.iter().cloned());
        self.consumer.assign(all).await?;
        self.assigned.send_replace(true);
        self.consumer.seek_to_end(&added).await?;
        // Normally resolved by the seek; if its lookup failed, polling resolves them (at the
        // end too), and nothing waiting may be produced before.
        let deadline = self.client.now() + self.resolve_within;
        while !added.iter().all(|tp| self.consumer.position(tp).is_some()) {
            if self.client.now() >= deadline {
                return Err(EventsError::Unresolved(topic.to_owned()));
            }
            self.client.sleep(POSITION_CHECK).await;
        }
        self.ready().insert(topic.to_owned(), added);
        Ok(())
    }

    /// Hands an event record to the request it answers, if that request waits on this node.
    fn handle(&self, parked: &Parked, metrics: &GatewayMetrics, record: &ConsumerRecord) {
        let find = |key| headers::find(&record.headers, key);
        let (Some(id), Some(state)) = (find(headers::CORRELATION_ID), find(STATE)) else {
            metrics.event("malformed");
            return;
        };
        match CorrelationId::parse(id) {
            Some(parsed) if parsed.node == self.node_id => {}
            Some(_) => return,
            None => {
                metrics.event("malformed");
                return;
            }
        }
        let event = Event {
            state: state.to_owned(),
            terminal: find(TERMINAL) == Some("true"),
            content_type: find(headers::CONTENT_TYPE).map(str::to_owned),
            body: record.value.clone().unwrap_or_default(),
        };
        let outcome = parked.deliver_event(id, event, self.client.now());
        metrics.event(match outcome {
            EventDelivery::Reached => "reached",
            EventDelivery::Held => "held",
            EventDelivery::Ended => "ended",
            EventDelivery::Ignored => "ignored",
            EventDelivery::Late => "late",
        });
    }
}

/// Reads the assigned events partitions until stopped, then closes the reader's client.
pub(crate) async fn run(
    events: Arc<Events>,
    parked: Parked,
    metrics: GatewayMetrics,
    poll_wait: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut assigned = events.assigned.subscribe();
    let started = tokio::select! {
        biased;
        _ = stop.wait_for(|stop| *stop) => false,
        ready = assigned.wait_for(|assigned| *assigned) => ready.is_ok(),
    };
    while started && !*stop.borrow() {
        let polled = tokio::select! {
            biased;
            _ = stop.changed() => break,
            polled = events.consumer.poll(poll_wait) => polled,
        };
        match polled {
            Ok(records) => {
                for record in &records {
                    events.handle(&parked, &metrics, record);
                }
            }
            Err(error @ (Error::Closed | Error::Fatal(_))) => {
                tracing::error!(%error, "gateway: the events reader stopped");
                break;
            }
            Err(error) => {
                tracing::warn!(%error, "gateway: polling events failed");
                events.client.sleep(POLL_FAILURE_PAUSE).await;
            }
        }
    }
    let _ = events.consumer.close().await;
    events.client.close();
}
