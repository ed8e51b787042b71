//! The consumer runtime (DESIGN.md §5): one consumer group per stage, a [`Handler`] per event,
//! offsets committed only after the handler succeeded — or after the failed event was handed to
//! the retry or dead-letter topic and that produce was acknowledged. At-least-once; handlers
//! make it effectively-once with the store's dedup keys.
//!
//! Retries: a failing event is produced to the retry topic (shared by all stages) with headers
//! naming the stage, the attempt it will be, when it is due and the error. Each stage reads the
//! retry topic too, skips other stages' records, and holds a partition (seek back + pause) until
//! its head record is due, so a delayed retry never blocks the other partitions nor the source
//! topic. After `max_attempts` the event goes to the dead-letter topic with the last error.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tidepool_client::{
    Admin, BoxFuture, Client, Consumer, ConsumerConfig, ConsumerRecord, Header, OffsetAndMetadata,
    OffsetReset, OffsetSpec, Producer, ProducerRecord, TopicPartition,
};
use tokio::sync::watch;

use crate::metrics::PipelineMetrics;

/// Header names the runtime writes on retry and dead-letter records.
pub mod headers {
    /// The event's id, as the collector wrote it.
    pub const EVENT_ID: &str = "event-id";
    /// The stage (consumer group) a retry record is for.
    pub const STAGE: &str = "retry-stage";
    /// The attempt the record is (2 for the first retry).
    pub const ATTEMPT: &str = "retry-attempt";
    /// Epoch milliseconds before which a retry record must not be processed.
    pub const DUE_MS: &str = "retry-due-ms";
    /// The delay that was applied, in milliseconds.
    pub const DELAY_MS: &str = "retry-delay-ms";
    /// The handler's error message.
    pub const ERROR: &str = "error";
    /// `topic/partition@offset` the event was first read from.
    pub const SOURCE: &str = "source";
}

/// A stage's settings. Every queue is bounded here: the consumer's buffer by
/// `max_poll_records`, retries by `max_attempts`.
#[derive(Debug, Clone)]
pub struct StageConfig {
    /// The consumer group: one per stage.
    pub group: String,
    pub source_topic: String,
    pub retry_topic: String,
    pub dead_letter_topic: String,
    /// Attempts, the first included, before an event goes to the dead-letter topic.
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further one, up to `retry_backoff_max`.
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    pub poll_wait: Duration,
    pub max_poll_records: usize,
    /// How often consumer lag is measured for the metrics.
    pub lag_interval: Duration,
    pub session_timeout: Duration,
    /// How long a rebalance may wait for this member (Java's `max.poll.interval.ms`); also
    /// bounds how long a JoinGroup waits on a coordinator that went silent.
    pub rebalance_timeout: Duration,
    /// Known-bad, for the simulator only (`commit-before-process`): commit each poll's offsets
    /// before handling its records, so a crash in between loses them. Nothing outside the
    /// simulator sets it.
    pub sabotage_commit_before_process: bool,
}

impl StageConfig {
    /// A stage reading `events.raw`, retrying through `events.retry` into `events.dlq`.
    pub fn new(group: impl Into<String>) -> StageConfig {
        StageConfig {
            group: group.into(),
            source_topic: crate::topics::RAW.to_owned(),
            retry_topic: crate::topics::RETRY.to_owned(),
            dead_letter_topic: crate::topics::DEAD_LETTERS.to_owned(),
            max_attempts: 3,
            retry_backoff: Duration::from_millis(200),
            retry_backoff_max: Duration::from_secs(30),
            poll_wait: Duration::from_millis(100),
            max_poll_records: 200,
            lag_interval: Duration::from_secs(1),
            session_timeout: Duration::from_secs(10),
            // A round is one poll and one store transaction: far below Kafka's 5 minutes.
            rebalance_timeout: Duration::from_secs(60),
            sabotage_commit_before_process: false,
        }
    }

    /// The delay before attempt `next` (2 for the first retry).
    pub fn delay_before(&self, next: u32) -> Duration {
        let doublings = next.saturating_sub(2).min(20);
        self.retry_backoff
            .saturating_mul(1 << doublings)
            .min(self.retry_backoff_max)
    }
}

/// One event as a handler sees it: the record (from the source or the retry topic) and which
/// attempt this is.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// The record's headers without the runtime's own.
    pub headers: Vec<Header>,
    /// 1 for the first delivery from the source topic.
    pub attempt: u32,
    /// The `event-id` header, if present.
    pub event_id: Option<String>,
    /// Where the event was first read: `topic/partition@offset`.
    pub source: String,
}

/// Why a handler failed; the message travels in the retry and dead-letter records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HandlerError(pub String);

impl HandlerError {
    pub fn new(message: impl Into<String>) -> HandlerError {
        HandlerError(message.into())
    }
}

/// What a stage does with each event. Return `Err` to have it retried (then dead-lettered);
/// an effect must be idempotent (keyed by event id), because delivery is at-least-once.
pub trait Handler: Send + Sync + 'static {
    fn handle<'a>(&'a self, event: &'a Incoming) -> BoxFuture<'a, Result<(), HandlerError>>;

    /// Handles the ready events of one poll, in order, and returns one result per event, in the
    /// same order. The stage calls this, once per round; by default it calls
    /// [`Handler::handle`] for each event in turn. A handler overrides it to apply the whole
    /// batch in one store transaction: each event still checked and applied on its own, and a
    /// failing event (its own `Err`) must not keep the others from being applied. When this
    /// returns, every `Ok` event's effect must be durable: the stage commits their offsets next.
    fn handle_batch<'a>(
        &'a self,
        events: &'a [Incoming],
    ) -> BoxFuture<'a, Vec<Result<(), HandlerError>>> {
        Box::pin(async move {
            let mut results = Vec::with_capacity(events.len());
            for event in events {
                results.push(self.handle(event).await);
            }
            results
        })
    }
}

/// Errors that stop a stage (a handler's failure never does).
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("kafka: {0}")]
    Kafka(#[from] tidepool_client::Error),
}

fn header<'a>(headers: &'a [Header], key: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .rev()
        .find(|header| header.key == key)
        .and_then(|header| header.value.as_deref())
}

fn header_str(headers: &[Header], key: &str) -> Option<String> {
    header(headers, key).map(|value| String::from_utf8_lossy(value).into_owned())
}

fn header_number(headers: &[Header], key: &str) -> Option<i64> {
    header_str(headers, key).and_then(|text| text.parse().ok())
}

/// The runtime's own headers, which a retry replaces rather than stacks.
fn is_runtime_header(key: &str) -> bool {
    matches!(
        key,
        headers::STAGE
            | headers::ATTEMPT
            | headers::DUE_MS
            | headers::DELAY_MS
            | headers::ERROR
            | headers::SOURCE
    )
}

/// What became of one record of a poll.
enum Outcome {
    /// Processed (or handed on): commit past it.
    Done,
    /// Not now (a retry not due yet, or a produce that failed): the partition was rewound to
    /// this record and its later records in the batch must wait too.
    Wait,
}

/// A record looked at before the handler runs.
enum Prepared {
    /// Nothing for this stage to do (another stage's retry).
    Skip,
    /// A retry not due yet: the partition was rewound to it and paused.
    Wait,
    Handle(Box<Incoming>),
}

/// What a round does with one record of its poll, decided before the handler runs.
enum Plan {
    /// Nothing to handle (another stage's retry): commit past it.
    Skip,
    /// The handler's event at this index of the batch.
    Handle(usize),
}

/// A running stage: its group member, its producer for retries and dead letters, its handler.
pub struct Stage {
    config: StageConfig,
    client: Client,
    consumer: Consumer,
    producer: Producer,
    handler: Arc<dyn Handler>,
    metrics: PipelineMetrics,
    /// Partitions held until a retry record at their head is due (epoch ms).
    held: BTreeMap<TopicPartition, i64>,
    next_lag_at: Duration,
}

impl Stage {
    /// Joins the stage's group on the source and retry topics.
    pub async fn new(
        client: Client,
        producer: Producer,
        config: StageConfig,
        handler: Arc<dyn Handler>,
        metrics: PipelineMetrics,
    ) -> Result<Stage, StageError> {
        let consumer = Consumer::new(
            client.clone(),
            ConsumerConfig::new(config.group.clone())
                .auto_commit(false)
                .auto_offset_reset(OffsetReset::Earliest)
                .max_poll_records(config.max_poll_records)
                .session_timeout(config.session_timeout)
                .rebalance_timeout(config.rebalance_timeout)
                .heartbeat_interval(config.session_timeout / 4),
        )
        .await?;
        consumer
            .subscribe(&[config.source_topic.as_str(), config.retry_topic.as_str()])
            .await?;
        Ok(Stage {
            config,
            client,
            consumer,
            producer,
            handler,
            metrics,
            held: BTreeMap::new(),
            next_lag_at: Duration::ZERO,
        })
    }

    pub fn config(&self) -> &StageConfig {
        &self.config
    }

    pub fn consumer(&self) -> &Consumer {
        &self.consumer
    }

    /// Runs rounds until `stop` turns true, then leaves the group.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), StageError> {
        while !*stop.borrow() {
            tokio::select! {
                biased;
                _ = stop.changed() => {}
                round = self.round() => { round?; }
            }
        }
        self.consumer.close().await?;
        Ok(())
    }

    /// One round: release due partitions, poll, hand the ready events to the handler in one
    /// batch, hand its failures on to the retry or dead-letter topic in order, commit what was
    /// done. Returns how many records were handled or handed on.
    pub async fn round(&mut self) -> Result<usize, StageError> {
        let now_ms = self.client_wall_ms();
        self.release_due(now_ms);
        self.measure_lag().await;
        let records = self.consumer.poll(self.config.poll_wait).await?;
        if records.is_empty() {
            self.wait_for_held(now_ms).await;
        }
        if self.config.sabotage_commit_before_process && !records.is_empty() {
            let polled: BTreeMap<TopicPartition, OffsetAndMetadata> = records
                .iter()
                .map(|record| {
                    (
                        TopicPartition::new(record.topic.clone(), record.partition),
                        OffsetAndMetadata::new(record.offset + 1),
                    )
                })
                .collect();
            let _ = self.consumer.commit_sync(Some(polled)).await;
        }
        // Which records to handle: a partition's records after one that must wait (a retry
        // not due yet) are left for a later poll, as the partition was rewound to it. The
        // records before it are planned, and must be carried out below whatever happens to
        // that partition later: the rewind passed them, so nothing would bring them back.
        let mut not_due: BTreeSet<TopicPartition> = BTreeSet::new();
        let mut plans: Vec<(usize, Plan)> = Vec::with_capacity(records.len());
        let mut batch: Vec<Incoming> = Vec::new();
        for (index, record) in records.iter().enumerate() {
            let tp = TopicPartition::new(record.topic.clone(), record.partition);
            if not_due.contains(&tp) {
                continue;
            }
            match self.prepare(record, now_ms).await {
                Prepared::Skip => plans.push((index, Plan::Skip)),
                Prepared::Wait => {
                    not_due.insert(tp);
                }
                Prepared::Handle(incoming) => {
                    plans.push((index, Plan::Handle(batch.len())));
                    batch.push(*incoming);
                }
            }
        }

        // One call for the whole batch: the shipped handlers commit it in one transaction.
        let mut results = if batch.is_empty() {
            Vec::new()
        } else {
            self.handler.handle_batch(&batch).await
        };
        if results.len() != batch.len() {
            let error = HandlerError::new(format!(
                "handler returned {} results for {} events",
                results.len(),
                batch.len()
            ));
            results.resize(batch.len(), Err(error));
        }
        let applied = results.iter().filter(|result| result.is_ok()).count();
        if applied > 0 {
            for _ in 0..applied {
                self.metrics.inc_processed(&self.config.group);
            }
            // Applied (and committed to the store), their offsets not yet committed to Kafka.
            tidepool_io::crash_point!(self.client.env().disk, "stage.effect.applied");
        }

        // Failures are handed on in poll order; a partition whose hand-on failed is rewound to
        // that record, so nothing after it there is handed on or committed past.
        let mut waiting: BTreeSet<TopicPartition> = BTreeSet::new();
        let mut done: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        let mut handled = 0;
        for (index, plan) in plans {
            let record = &records[index];
            let tp = TopicPartition::new(record.topic.clone(), record.partition);
            if waiting.contains(&tp) {
                continue;
            }
            let outcome = match plan {
                Plan::Skip => Outcome::Done,
                Plan::Handle(slot) => match &results[slot] {
                    Ok(()) => Outcome::Done,
                    Err(error) => {
                        let error = error.clone();
                        self.hand_on(record, &batch[slot], &error, now_ms).await
                    }
                },
            };
            match outcome {
                Outcome::Done => {
                    done.insert(tp, record.offset + 1);
                    handled += 1;
                }
                Outcome::Wait => {
                    waiting.insert(tp);
                }
            }
        }
        if !done.is_empty() {
            let offsets = done
                .into_iter()
                .map(|(tp, offset)| (tp, OffsetAndMetadata::new(offset)))
                .collect();
            // A failed commit (a rebalance took the partition) only means redelivery, which the
            // handlers' dedup absorbs.
            if let Err(error) = self.consumer.commit_sync(Some(offsets)).await {
                tracing::debug!(group = %self.config.group, %error, "commit failed; records will be redelivered");
            }
        }
        // A round's store work runs on this task without awaiting anything: let the runtime's
        // other tasks (the collector, the producers, other stages) in before the next one.
        tokio::task::yield_now().await;
        Ok(handled)
    }

    fn client_wall_ms(&self) -> i64 {
        self.client.env().clock.wall_ms()
    }

    /// A poll with every partition held returns at once; without this pause the stage would
    /// spin (and starve its runtime) until the first retry is due.
    async fn wait_for_held(&self, now_ms: i64) {
        let Some(first_due) = self.held.values().min().copied() else {
            return;
        };
        let wait_ms = u64::try_from(first_due.saturating_sub(now_ms)).unwrap_or(0);
        let wait = Duration::from_millis(wait_ms).min(self.config.poll_wait);
        if !wait.is_zero() {
            self.client.sleep(wait).await;
        }
    }

    fn release_due(&mut self, now_ms: i64) {
        let due: Vec<TopicPartition> = self
            .held
            .iter()
            .filter(|(_, due_ms)| **due_ms <= now_ms)
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in due {
            self.held.remove(&tp);
            self.consumer.resume(std::slice::from_ref(&tp));
        }
    }

    /// Rewinds the partition to `record` and pauses it until `until_ms`.
    async fn hold(&mut self, record: &ConsumerRecord, until_ms: i64) {
        let tp = TopicPartition::new(record.topic.clone(), record.partition);
        if self.consumer.seek(&tp, record.offset).await.is_ok() {
            self.consumer.pause(std::slice::from_ref(&tp));
            self.held.insert(tp, until_ms);
        }
    }

    /// The event a record carries for this stage, or why it is not handled now.
    async fn prepare(&mut self, record: &ConsumerRecord, now_ms: i64) -> Prepared {
        let from_retry = record.topic == self.config.retry_topic;
        if from_retry {
            if header_str(&record.headers, headers::STAGE).as_deref()
                != Some(self.config.group.as_str())
            {
                // Another stage's retry.
                return Prepared::Skip;
            }
            let due_ms = header_number(&record.headers, headers::DUE_MS).unwrap_or(0);
            if due_ms > now_ms {
                self.hold(record, due_ms).await;
                return Prepared::Wait;
            }
        }
        let attempt = if from_retry {
            header_number(&record.headers, headers::ATTEMPT)
                .and_then(|attempt| u32::try_from(attempt).ok())
                .unwrap_or(2)
        } else {
            1
        };
        let incoming = Incoming {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            key: record.key.clone(),
            value: record.value.clone(),
            headers: record
                .headers
                .iter()
                .filter(|header| !is_runtime_header(&header.key))
                .cloned()
                .collect(),
            attempt,
            event_id: header_str(&record.headers, headers::EVENT_ID),
            source: header_str(&record.headers, headers::SOURCE).unwrap_or_else(|| {
                format!("{}/{}@{}", record.topic, record.partition, record.offset)
            }),
        };
        Prepared::Handle(Box::new(incoming))
    }

    /// Produces a failed event to the retry topic, or after its last attempt to the
    /// dead-letter topic, and waits for the acknowledgement: only then may its offset be
    /// committed.
    async fn hand_on(
        &mut self,
        record: &ConsumerRecord,
        incoming: &Incoming,
        error: &HandlerError,
        now_ms: i64,
    ) -> Outcome {
        let last = incoming.attempt >= self.config.max_attempts;
        let (topic, extra) = if last {
            (
                self.config.dead_letter_topic.clone(),
                vec![
                    (headers::STAGE, self.config.group.clone()),
                    (headers::ATTEMPT, incoming.attempt.to_string()),
                ],
            )
        } else {
            let next = incoming.attempt + 1;
            let delay = self.config.delay_before(next);
            let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            (
                self.config.retry_topic.clone(),
                vec![
                    (headers::STAGE, self.config.group.clone()),
                    (headers::ATTEMPT, next.to_string()),
                    (headers::DUE_MS, now_ms.saturating_add(delay_ms).to_string()),
                    (headers::DELAY_MS, delay_ms.to_string()),
                ],
            )
        };
        let mut out = ProducerRecord::new(topic, incoming.value.clone().unwrap_or_default());
        out.value = incoming.value.clone();
        out.key = incoming.key.clone();
        for header in &incoming.headers {
            out.headers.push(header.clone());
        }
        for (key, value) in extra {
            out = out.header(key, Bytes::from(value.into_bytes()));
        }
        out = out
            .header(headers::ERROR, Bytes::from(error.0.clone().into_bytes()))
            .header(
                headers::SOURCE,
                Bytes::from(incoming.source.clone().into_bytes()),
            );
        let acknowledged = match self.producer.send(out).await {
            Ok(delivery) => delivery.await.is_ok(),
            Err(_) => false,
        };
        if !acknowledged {
            // Not handed on: process it again shortly rather than commit past it.
            let retry_at = now_ms.saturating_add(
                i64::try_from(self.config.retry_backoff.as_millis()).unwrap_or(i64::MAX),
            );
            self.hold(record, retry_at).await;
            return Outcome::Wait;
        }
        // Handed on and acknowledged, the source offset not yet committed.
        tidepool_io::crash_point!(self.client.env().disk, "stage.handed_on");
        if last {
            self.metrics.inc_dead_letter(&self.config.group);
        } else {
            self.metrics.inc_retry(&self.config.group);
        }
        Outcome::Done
    }

    /// Consumer lag per assigned partition (log end − committed), every `lag_interval`.
    async fn measure_lag(&mut self) {
        let now = self.client.now();
        if now < self.next_lag_at {
            return;
        }
        self.next_lag_at = now + self.config.lag_interval;
        let assigned = self.consumer.assignment();
        if assigned.is_empty() {
            return;
        }
        let specs = assigned
            .iter()
            .map(|tp| (tp.clone(), OffsetSpec::Latest))
            .collect();
        let Ok(ends) = Admin::new(self.client.clone()).list_offsets(specs).await else {
            return;
        };
        let Ok(committed) = self.consumer.committed(&assigned).await else {
            return;
        };
        for tp in &assigned {
            let end = ends.get(tp).map_or(0, |listed| listed.offset);
            let at = committed
                .get(tp)
                .and_then(|committed| committed.as_ref())
                .map_or(0, |committed| committed.offset);
            self.metrics.set_lag(
                &self.config.group,
                &tp.topic,
                tp.partition,
                (end - at).max(0),
            );
        }
    }
}
