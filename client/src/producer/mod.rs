//! The producer: records are batched per partition, sent by a background task in one request
//! per leader, retried with fresh metadata, and acknowledged through a future per record.
//!
//! # Layout
//! - `accumulator`: per-partition batches, the buffer bound, sticky partitioning, draining
//!   ready batches into per-node requests, and what each answer means for a batch.
//! - `idempotence`: producer id and epoch, sequence numbers, renumbering after a broken sequence.
//! - `sender`: the background task, one ordered lane of in-flight requests per node,
//!   InitProducerId and metadata refreshes.
//! - `delivery`: a batch's shared outcome and the per-record [`DeliveryFuture`].
//!
//! # Delivery guarantees
//! With idempotence (the default) a batch keeps its sequence number across retries, so a batch
//! resent after a timeout or a lost connection is written once. Without it, such a batch fails
//! with [`Error::UnknownOutcome`]: it may or may not have been written, and retrying could
//! write it twice.

mod accumulator;
mod delivery;
mod idempotence;
mod sender;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tidepool_protocol::batch::HEADER_BYTES;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::error::{Error, KafkaCode, Result};
use crate::partitioner::{DefaultPartitioner, Partitioner};
use crate::{Compression, Header};
use accumulator::{Limits, Refused, TopicInfo, record_bytes};
pub use delivery::DeliveryFuture;
use sender::State;

/// How many replicas must have a batch before the leader answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// No answer at all (`acks=0`): a record counts as delivered once written to the socket.
    None,
    /// The leader wrote it (`acks=1`).
    Leader,
    /// Every in-sync replica has it (`acks=all`).
    #[default]
    All,
}

impl Acks {
    /// The value a ProduceRequest carries.
    pub fn code(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// How the producer batches, bounds and retries. The defaults are the Java client's.
#[derive(Clone)]
pub struct ProducerConfig {
    pub acks: Acks,
    /// Sequence numbers so retries never duplicate (`enable.idempotence`); needs `Acks::All`
    /// and at most 5 requests in flight.
    pub idempotence: bool,
    /// How long a batch waits for more records before it is sent (`linger.ms`).
    pub linger: Duration,
    /// A batch is sent once it holds this many bytes (`batch.size`, uncompressed estimate).
    pub batch_bytes: usize,
    /// The largest request, and so the largest record (`max.request.size`).
    pub max_request_bytes: usize,
    /// Requests in flight per broker (`max.in.flight.requests.per.connection`).
    pub max_in_flight: usize,
    pub compression: Compression,
    /// Bytes of records buffered and not yet acknowledged, across all partitions
    /// (`buffer.memory`).
    pub buffer_bytes: usize,
    /// How long [`Producer::send`] waits for metadata or buffer space (`max.block.ms`).
    pub max_block: Duration,
    /// How long a record may take from `send` to its acknowledgement, retries included
    /// (`delivery.timeout.ms`).
    pub delivery_timeout: Duration,
    /// Chooses the partition of keyed records without one. Keyless records always use
    /// sticky partitioning, as the Java client's built-in partitioner does.
    pub partitioner: Arc<dyn Partitioner>,
}

impl Default for ProducerConfig {
    fn default() -> ProducerConfig {
        ProducerConfig {
            acks: Acks::All,
            idempotence: true,
            linger: Duration::from_millis(5),
            batch_bytes: 1 << 20,
            max_request_bytes: 1 << 20,
            max_in_flight: 5,
            compression: Compression::None,
            buffer_bytes: 32 << 20,
            max_block: Duration::from_secs(60),
            delivery_timeout: Duration::from_secs(120),
            partitioner: Arc::new(DefaultPartitioner),
        }
    }
}

impl std::fmt::Debug for ProducerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerConfig")
            .field("acks", &self.acks)
            .field("idempotence", &self.idempotence)
            .field("linger", &self.linger)
            .field("batch_bytes", &self.batch_bytes)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("max_in_flight", &self.max_in_flight)
            .field("compression", &self.compression)
            .field("buffer_bytes", &self.buffer_bytes)
            .field("max_block", &self.max_block)
            .field("delivery_timeout", &self.delivery_timeout)
            .finish_non_exhaustive()
    }
}

impl ProducerConfig {
    /// Sets acks. Anything but `All` also turns idempotence off, as the Java client does when
    /// idempotence was not asked for explicitly; call [`ProducerConfig::idempotence`] after it
    /// to insist (and be refused by [`Producer::new`]).
    pub fn acks(mut self, acks: Acks) -> ProducerConfig {
        self.acks = acks;
        if acks != Acks::All {
            self.idempotence = false;
        }
        self
    }

    pub fn idempotence(mut self, idempotence: bool) -> ProducerConfig {
        self.idempotence = idempotence;
        self
    }

    pub fn linger(mut self, linger: Duration) -> ProducerConfig {
        self.linger = linger;
        self
    }

    pub fn batch_bytes(mut self, bytes: usize) -> ProducerConfig {
        self.batch_bytes = bytes;
        self
    }

    pub fn max_request_bytes(mut self, bytes: usize) -> ProducerConfig {
        self.max_request_bytes = bytes;
        self
    }

    pub fn max_in_flight(mut self, requests: usize) -> ProducerConfig {
        self.max_in_flight = requests;
        self
    }

    pub fn compression(mut self, compression: Compression) -> ProducerConfig {
        self.compression = compression;
        self
    }

    pub fn buffer_bytes(mut self, bytes: usize) -> ProducerConfig {
        self.buffer_bytes = bytes;
        self
    }

    pub fn max_block(mut self, max_block: Duration) -> ProducerConfig {
        self.max_block = max_block;
        self
    }

    pub fn delivery_timeout(mut self, timeout: Duration) -> ProducerConfig {
        self.delivery_timeout = timeout;
        self
    }

    pub fn partitioner(mut self, partitioner: Arc<dyn Partitioner>) -> ProducerConfig {
        self.partitioner = partitioner;
        self
    }

    fn validate(&self) -> Result<()> {
        let invalid = |reason: &str| Err(Error::Invalid(format!("producer config: {reason}")));
        if self.idempotence && self.acks != Acks::All {
            return invalid("idempotence needs acks=all (turn it off for acks 0 or 1)");
        }
        if self.idempotence && self.max_in_flight > idempotence::MAX_IN_FLIGHT_PER_PARTITION {
            return invalid("idempotence allows at most 5 requests in flight");
        }
        if self.max_in_flight == 0 {
            return invalid("max_in_flight must be at least 1");
        }
        if self.batch_bytes == 0 || self.max_request_bytes <= HEADER_BYTES {
            return invalid("batch_bytes and max_request_bytes must leave room for a record");
        }
        if i32::try_from(self.max_request_bytes).is_err() {
            return invalid("max_request_bytes must fit a Kafka length");
        }
        Ok(())
    }

    fn limits(&self) -> Limits {
        Limits {
            linger: self.linger,
            batch_bytes: self.batch_bytes,
            max_request_bytes: self.max_request_bytes,
            buffer_bytes: self.buffer_bytes,
            compression: self.compression,
            delivery_timeout: self.delivery_timeout,
            max_in_flight: self.max_in_flight,
        }
    }
}

/// A record to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    pub topic: String,
    /// Where to write it; else by key, else the sticky partition.
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    /// `None` is a tombstone on a compacted topic.
    pub value: Option<Bytes>,
    /// In order; keys may repeat.
    pub headers: Vec<Header>,
    /// Milliseconds since the epoch; the client's wall clock when `None`.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> ProducerRecord {
        ProducerRecord {
            topic: topic.into(),
            partition: None,
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    pub fn key(mut self, key: impl Into<Bytes>) -> ProducerRecord {
        self.key = Some(key.into());
        self
    }

    pub fn partition(mut self, partition: i32) -> ProducerRecord {
        self.partition = Some(partition);
        self
    }

    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> ProducerRecord {
        self.headers.push(Header {
            key: key.into(),
            value: Some(value.into()),
        });
        self
    }

    pub fn timestamp(mut self, timestamp: i64) -> ProducerRecord {
        self.timestamp = Some(timestamp);
        self
    }
}

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    pub topic: String,
    pub partition: i32,
    /// -1 with acks=0, where the broker does not say.
    pub offset: i64,
    /// The broker's LogAppendTime if the topic uses it, else the record's own timestamp.
    pub timestamp: i64,
}

/// What the producer's handles and its background task share.
pub(crate) struct Shared {
    client: Client,
    config: ProducerConfig,
    state: Mutex<State>,
    /// Wakes the sender: a batch started or filled, a flush, an answer, a refresh.
    wake: Notify,
    /// Wakes callers waiting for buffer space or a flush: batches were settled.
    progress: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses a record that could never be sent, before any waiting.
    fn check(&self, record: &ProducerRecord) -> Result<()> {
        let size = HEADER_BYTES
            + record_bytes(
                record.key.as_deref(),
                record.value.as_deref(),
                &record.headers,
            );
        if size > self.config.max_request_bytes {
            return Err(Error::Invalid(format!(
                "a record of {size} bytes (in a batch) is larger than max_request_bytes ({})",
                self.config.max_request_bytes
            )));
        }
        if size > self.config.buffer_bytes {
            return Err(Error::Invalid(format!(
                "a record of {size} bytes (in a batch) is larger than buffer_bytes ({})",
                self.config.buffer_bytes
            )));
        }
        Ok(())
    }

    /// One attempt to add a record: the outer error ends the send, the inner one says why the
    /// record was not taken (and hands it back).
    fn append(
        &self,
        record: ProducerRecord,
        timestamp: i64,
    ) -> Result<std::result::Result<DeliveryFuture, (Refused, Box<ProducerRecord>)>> {
        let mut state = self.lock();
        if state.closing {
            return Err(Error::Closed);
        }
        if let Some(fatal) = state.acc.identity.as_ref().and_then(|i| i.fatal.clone()) {
            return Err(fatal);
        }
        if !state.acc.has_info(&record.topic)
            && let Some(topic) = self.client.cached_topic(&record.topic)
            && !topic.partitions.is_empty()
        {
            state
                .acc
                .set_info(&record.topic, TopicInfo::from_metadata(&topic));
        }
        let appended = state.acc.append(
            record,
            timestamp,
            &|| self.client.now(),
            &*self.config.partitioner,
            &*self.client.env().entropy,
        );
        drop(state);
        Ok(appended.map(|appended| {
            if appended.wake {
                self.wake.notify_one();
            }
            appended.delivery
        }))
    }

    /// Waits until the topic's metadata is known, refreshing with backoff, up to `deadline`.
    async fn load_topic(&self, topic: &str, deadline: Duration, attempt: &mut u32) -> Result<()> {
        loop {
            if let Some(known) = self.client.cached_topic(topic)
                && !known.partitions.is_empty()
            {
                self.lock()
                    .acc
                    .set_info(topic, TopicInfo::from_metadata(&known));
                return Ok(());
            }
            let now = self.client.now();
            if now >= deadline {
                return Err(Error::kafka(
                    KafkaCode::UNKNOWN_TOPIC_OR_PARTITION,
                    format!(
                        "no metadata for topic {topic} within max_block ({:?})",
                        self.config.max_block
                    ),
                    None,
                ));
            }
            if *attempt > 0 {
                let pause = self.client.backoff(*attempt - 1).min(deadline - now);
                self.client.sleep(pause).await;
            }
            *attempt += 1;
            match self.client.refresh_topics(&[topic]).await {
                Ok(()) => {}
                Err(error) if error.is_retriable() => {
                    tracing::debug!(topic, %error, "metadata refresh failed; retrying");
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Has the sender fetch a topic's metadata (for `try_send`, which does not wait).
    fn look_up_in_background(&self, topic: &str) {
        let mut state = self.lock();
        if state.looking_up.insert(topic.to_string()) {
            state.wants_metadata();
            drop(state);
            self.wake.notify_one();
        }
    }

    /// No more records; the sender delivers what is buffered, then stops.
    fn begin_close(&self) {
        self.lock().closing = true;
        self.wake.notify_one();
    }
}

struct Handle {
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    /// Dropping the last handle does not lose records: the sender still delivers what was
    /// sent (within the delivery timeout), then stops.
    fn drop(&mut self) {
        self.shared.begin_close();
    }
}

/// A Kafka producer. Clones share one buffer and one background task.
#[derive(Clone)]
pub struct Producer {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("config", &self.handle.shared.config)
            .field("producer_id", &self.producer_id())
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// Starts a producer on `client`. Nothing is sent until the first record; an idempotent
    /// producer asks for its producer id before its first batch.
    pub async fn new(client: Client, config: ProducerConfig) -> Result<Producer> {
        config.validate()?;
        let state = State::new(config.limits(), config.idempotence);
        let shared = Arc::new(Shared {
            client,
            config,
            state: Mutex::new(state),
            wake: Notify::new(),
            progress: Notify::new(),
        });
        let task = tokio::spawn(sender::run(Arc::clone(&shared)));
        Ok(Producer {
            handle: Arc::new(Handle {
                shared,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// Buffers a record, waiting up to `max_block` for its topic's metadata or for buffer
    /// space. The returned future resolves once the record is acknowledged or has failed.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        let shared = &self.handle.shared;
        shared.check(&record)?;
        let client = &shared.client;
        let timestamp = record.timestamp.unwrap_or_else(|| client.wall_ms());
        // The common case first: room in the buffer and metadata known, no waiting set up.
        let mut record = match shared.append(record, timestamp)? {
            Ok(delivery) => return Ok(delivery),
            Err((Refused::Invalid(reason), _)) => return Err(Error::Invalid(reason)),
            Err((_, back)) => *back,
        };
        let deadline = client.now() + shared.config.max_block;
        let mut attempt = 0;
        loop {
            // Registered before the attempt, so space freed in between is not missed.
            let progress = shared.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            match shared.append(record, timestamp)? {
                Ok(delivery) => return Ok(delivery),
                Err((Refused::Invalid(reason), _)) => return Err(Error::Invalid(reason)),
                Err((Refused::UnknownTopic, back)) => {
                    record = *back;
                    shared
                        .load_topic(&record.topic, deadline, &mut attempt)
                        .await?;
                }
                Err((Refused::BufferFull, back)) => {
                    record = *back;
                    let now = client.now();
                    if now >= deadline {
                        return Err(Error::BufferFull);
                    }
                    tokio::select! {
                        biased;
                        () = &mut progress => {}
                        () = client.sleep(deadline - now) => {}
                    }
                }
            }
        }
    }

    /// Buffers a record without waiting: [`Error::BufferFull`] at once when the buffer is full.
    /// The topic's metadata must be cached; if it is not, this fails with
    /// UNKNOWN_TOPIC_OR_PARTITION (retriable) and fetches it in the background.
    pub fn try_send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        let shared = &self.handle.shared;
        shared.check(&record)?;
        let timestamp = record.timestamp.unwrap_or_else(|| shared.client.wall_ms());
        match shared.append(record, timestamp)? {
            Ok(delivery) => Ok(delivery),
            Err((Refused::BufferFull, _)) => Err(Error::BufferFull),
            Err((Refused::Invalid(reason), _)) => Err(Error::Invalid(reason)),
            Err((Refused::UnknownTopic, record)) => {
                shared.look_up_in_background(&record.topic);
                Err(Error::kafka(
                    KafkaCode::UNKNOWN_TOPIC_OR_PARTITION,
                    format!(
                        "try_send to {}: no metadata cached yet (being fetched)",
                        record.topic
                    ),
                    None,
                ))
            }
        }
    }

    /// Sends every buffered record now, whatever the linger, and waits until every record sent
    /// before the call is acknowledged or has failed (failures are reported by their futures).
    pub async fn flush(&self) -> Result<()> {
        let shared = &self.handle.shared;
        let target = {
            let mut state = shared.lock();
            state.flushing += 1;
            state.acc.next_id()
        };
        let _flushing = FlushGuard(shared);
        shared.wake.notify_one();
        loop {
            let progress = shared.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            {
                let state = shared.lock();
                if state.acc.settled_before(target) {
                    return Ok(());
                }
                if state.stopped {
                    return Err(Error::Closed);
                }
            }
            progress.await;
        }
    }

    /// Flushes, then stops the background task. Sends after this fail with [`Error::Closed`].
    pub async fn close(&self) -> Result<()> {
        let flushed = self.flush().await;
        self.handle.shared.begin_close();
        let task = self
            .handle
            .task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            task.await
                .map_err(|error| Error::Fatal(format!("the producer's sender failed: {error}")))?;
        }
        match flushed {
            Err(Error::Closed) | Ok(()) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// The producer id and epoch of an idempotent producer, once it has one.
    pub fn producer_id(&self) -> Option<(i64, i16)> {
        self.handle
            .shared
            .lock()
            .acc
            .identity
            .as_ref()
            .and_then(|identity| identity.current)
    }
}

/// Ends a flush's hold on the linger even if the flush is cancelled.
struct FlushGuard<'a>(&'a Shared);

impl Drop for FlushGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.flushing = state.flushing.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producers_and_their_futures_can_cross_tasks() {
        fn shareable<T: Send + Sync>() {}
        fn sendable<T: Send>() {}
        shareable::<Producer>();
        sendable::<DeliveryFuture>();
        shareable::<ProducerRecord>();
    }

    #[test]
    fn idempotence_is_refused_without_acks_all_or_with_more_than_five_in_flight() {
        let leader_acks = ProducerConfig::default()
            .acks(Acks::Leader)
            .idempotence(true);
        assert!(matches!(leader_acks.validate(), Err(Error::Invalid(_))));
        let many = ProducerConfig::default().max_in_flight(6);
        assert!(matches!(many.validate(), Err(Error::Invalid(_))));
        assert!(ProducerConfig::default().validate().is_ok());
    }

    #[test]
    fn choosing_weaker_acks_turns_idempotence_off() {
        let config = ProducerConfig::default().acks(Acks::None);
        assert!(!config.idempotence);
        assert!(config.validate().is_ok());
        assert_eq!(Acks::None.code(), 0);
        assert_eq!(Acks::Leader.code(), 1);
        assert_eq!(Acks::All.code(), -1);
    }

    #[test]
    fn a_record_is_built_with_its_key_partition_headers_and_timestamp_in_order() {
        let record = ProducerRecord::new("orders", "placed")
            .key("order-1")
            .partition(3)
            .header("trace", "a")
            .header("trace", "b")
            .timestamp(1_700_000_000_000);
        assert_eq!(record.key.as_deref(), Some(&b"order-1"[..]));
        assert_eq!(record.partition, Some(3));
        let values: Vec<_> = record.headers.iter().map(|h| h.value.clone()).collect();
        assert_eq!(values, vec![Some(Bytes::from("a")), Some(Bytes::from("b"))]);
        assert_eq!(record.timestamp, Some(1_700_000_000_000));
    }
}
