//! One topic partition: its log, its idempotent producer state, who leads it, and who is
//! waiting for it to grow (parked fetches).

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tidepool_io::crash_point;
use tidepool_protocol::batch::{self, BatchHeader};
use tidepool_protocol::records::DecodeLimits;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::{Sabotage, TimestampType, TopicConfig};
use crate::log::compact::{CompactionParams, CompactionStats};
use crate::log::{Log, LogConfig, RetentionStats};
use crate::producer_state::{ProducerStates, RememberedBatch, SequenceCheck};

pub struct Partition {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
    state: Mutex<PartitionState>,
    /// Fetches parked on this partition. Weak, so a fetch that gave up needs no unregistering;
    /// dead entries are pruned on every registration and wake-up, which bounds the list by the
    /// number of live parked fetches.
    watchers: Mutex<Vec<Weak<Notify>>>,
}

pub struct PartitionState {
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub log: Log,
    pub producers: ProducerStates,
    pub config: TopicConfig,
    /// Set when the topic is deleted while a request still holds the partition.
    pub deleted: bool,
    /// Records appended since the last fsync, against `flush.messages`.
    unflushed_records: u64,
    /// Wall-clock time of the oldest append not yet fsynced, against `flush.ms`.
    oldest_unflushed_ms: Option<i64>,
    /// Set by a failed write or fsync: what was acknowledged may not be on disk, so the
    /// partition refuses further writes rather than guess (redb's rule).
    poisoned: Option<String>,
    /// Guarantees broken on purpose (the broker's `Config::sabotage`); none by default.
    sabotage: Sabotage,
}

/// What a Produce response says for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceOutcome {
    pub error: Option<ResponseError>,
    pub error_message: Option<String>,
    pub base_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    /// Records refused one by one (Produce v8+ `record_errors`): index in its batch, why.
    pub record_errors: Vec<(i32, String)>,
}

impl ProduceOutcome {
    fn failed(error: ResponseError, message: impl Into<String>) -> ProduceOutcome {
        ProduceOutcome {
            error: Some(error),
            error_message: Some(message.into()),
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
            record_errors: Vec::new(),
        }
    }
}

/// Why a produce's batches were refused before any was appended.
struct Refusal {
    error: ResponseError,
    message: String,
    /// Refused record by record, as Kafka's log validation does (`record_errors` then name them).
    per_record: bool,
    record_errors: Vec<(i32, String)>,
}

impl Refusal {
    fn new(error: ResponseError, message: impl Into<String>) -> Refusal {
        Refusal {
            error,
            message: message.into(),
            per_record: false,
            record_errors: Vec::new(),
        }
    }

    /// Kafka's refusal of records one by one: INVALID_TIMESTAMP has its own summary; any other
    /// lists the first three record errors.
    fn per_record(error: ResponseError, record_errors: Vec<(i32, String)>) -> Refusal {
        let message = if error == ResponseError::InvalidTimestamp {
            "One or more records have been rejected due to invalid timestamp".to_owned()
        } else {
            let shown: Vec<String> = record_errors
                .iter()
                .take(3)
                .map(|(index, message)| {
                    format!("RecordError(batchIndex={index}, message='{message}')")
                })
                .collect();
            format!(
                "One or more records have been rejected due to {} record errors in total, and \
                 only showing the first three errors at most: [{}]",
                record_errors.len(),
                shown.join(", ")
            )
        };
        Refusal {
            error,
            message,
            per_record: true,
            record_errors,
        }
    }
}

/// Facts an append needs from outside the partition.
#[derive(Debug, Clone, Copy)]
pub struct AppendContext {
    pub node_id: i32,
    pub now_ms: i64,
    pub producers_max: usize,
}

pub fn log_config(config: &TopicConfig) -> LogConfig {
    LogConfig {
        segment_bytes: config.segment_bytes,
        segment_ms: config.segment_ms,
        index_interval_bytes: config.index_interval_bytes,
    }
}

/// A record's timestamp when the producer set none (Kafka's `RecordBatch.NO_TIMESTAMP`).
const NO_TIMESTAMP: i64 = -1;

thread_local! {
    /// Partition locks this thread holds. Guards are never held across an await, so a task
    /// cannot move threads while holding one and the count is exact.
    static PARTITION_LOCKS_HELD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Lock order: the controller's lock may be taken before a partition's, never after (a
/// produce that did so deadlocked against a leader move). Checked where the controller's lock
/// is taken, in debug builds.
pub fn assert_no_partition_lock_held() {
    debug_assert_eq!(
        PARTITION_LOCKS_HELD.with(std::cell::Cell::get),
        0,
        "the controller's lock was taken while holding a partition's lock"
    );
}

/// A held partition lock; counts itself for [`assert_no_partition_lock_held`].
pub struct StateGuard<'a> {
    guard: MutexGuard<'a, PartitionState>,
}

impl std::ops::Deref for StateGuard<'_> {
    type Target = PartitionState;

    fn deref(&self) -> &PartitionState {
        &self.guard
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut PartitionState {
        &mut self.guard
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        PARTITION_LOCKS_HELD.with(|held| held.set(held.get() - 1));
    }
}

/// Whether every record of a batch has a key (compacted topics need one). A batch whose
/// records cannot be read counts as not keyed.
fn all_keyed(batch: &[u8]) -> bool {
    tidepool_protocol::records::decode(batch, &tidepool_protocol::records::DecodeLimits::default())
        .is_ok_and(|records| records.iter().all(|record| record.key.is_some()))
}

/// Kafka's per-record errors for keyless records on a compacted topic, over every batch of the
/// entry: each record's index in its batch, and the message naming the partition.
fn keyless_record_errors(records: &[u8], name: PartitionName<'_>) -> Vec<(i32, String)> {
    let Ok(ranges) = batch::split(records) else {
        return Vec::new();
    };
    ranges
        .into_iter()
        .filter_map(|range| {
            tidepool_protocol::records::decode(&records[range], &DecodeLimits::default()).ok()
        })
        .flat_map(|batch| {
            batch
                .into_iter()
                .enumerate()
                .filter(|(_, record)| record.key.is_none())
                .map(|(index, _)| {
                    let message = format!(
                        "Compacted topic cannot accept message without key in topic partition {name}"
                    );
                    (index as i32, message)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Partition {
    pub fn new(topic: &str, topic_id: Uuid, index: i32, state: PartitionState) -> Partition {
        Partition {
            topic: topic.to_owned(),
            topic_id,
            index,
            state: Mutex::new(state),
            watchers: Mutex::new(Vec::new()),
        }
    }

    /// Exclusive access to the partition's state. Held only for in-memory work and disk
    /// writes, never across an await, and never while taking the controller's lock.
    pub fn state(&self) -> StateGuard<'_> {
        let guard = lock(&self.state);
        PARTITION_LOCKS_HELD.with(|held| held.set(held.get() + 1));
        StateGuard { guard }
    }

    /// Parks `waker` on this partition: the next append wakes it.
    pub fn watch(&self, waker: &Arc<Notify>) {
        let mut watchers = lock(&self.watchers);
        watchers.retain(|watcher| watcher.strong_count() > 0);
        watchers.push(Arc::downgrade(waker));
    }

    /// Wakes every parked fetch: after an append, or a leader change they must notice.
    pub fn wake_watchers(&self) {
        let mut watchers = lock(&self.watchers);
        watchers.retain(|watcher| match watcher.upgrade() {
            Some(waker) => {
                waker.notify_one();
                true
            }
            None => false,
        });
    }

    /// Appends records the broker itself writes (the group coordinator's offsets), through
    /// the same checks and flush policy as a produce, as the partition's current leader.
    pub fn append_internal(
        &self,
        records: &Bytes,
        now_ms: i64,
        producers_max: usize,
    ) -> ProduceOutcome {
        let outcome = {
            let mut state = self.state();
            let context = AppendContext {
                node_id: state.leader,
                now_ms,
                producers_max,
            };
            state.produce(records, context, self.name())
        };
        if outcome.error.is_none() {
            self.wake_watchers();
        }
        outcome
    }

    /// Validates and appends the record set of one Produce partition entry.
    pub fn produce(&self, records: &Bytes, context: AppendContext) -> ProduceOutcome {
        let outcome = self.state().produce(records, context, self.name());
        if outcome.error.is_none() {
            self.wake_watchers();
        }
        outcome
    }

    fn name(&self) -> PartitionName<'_> {
        PartitionName {
            topic: &self.topic,
            index: self.index,
        }
    }
}

/// `topic-partition`, as Kafka's record errors name a partition; formatted only for an error.
#[derive(Debug, Clone, Copy)]
struct PartitionName<'a> {
    topic: &'a str,
    index: i32,
}

impl std::fmt::Display for PartitionName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.index)
    }
}

impl PartitionState {
    pub fn new(
        leader: i32,
        leader_epoch: i32,
        replicas: Vec<i32>,
        log: Log,
        producers: ProducerStates,
        config: TopicConfig,
    ) -> PartitionState {
        PartitionState {
            leader,
            leader_epoch,
            replicas,
            log,
            producers,
            config,
            deleted: false,
            unflushed_records: 0,
            oldest_unflushed_ms: None,
            poisoned: None,
            sabotage: Sabotage::default(),
        }
    }

    /// Breaks guarantees on purpose, for the simulator's known-bad variants (see
    /// `Config::sabotage`).
    pub fn set_sabotage(&mut self, sabotage: Sabotage) {
        self.sabotage = sabotage;
    }

    /// Fsyncs the log when `flush.messages` records or `flush.ms` of time are unflushed
    /// (`force` fsyncs whatever is unflushed, for a clean stop). Returns whether it synced.
    pub fn flush_if_due(&mut self, now_ms: i64, force: bool) -> Result<bool, ResponseError> {
        let Some(oldest) = self.oldest_unflushed_ms else {
            return Ok(false);
        };
        let due = force
            || self.unflushed_records >= self.config.flush_messages
            || now_ms.saturating_sub(oldest) >= self.config.flush_ms;
        if !due {
            return Ok(false);
        }
        if let Err(error) = self.log.sync() {
            return Err(self.poison(format!("fsync failed: {error}")));
        }
        self.unflushed_records = 0;
        self.oldest_unflushed_ms = None;
        Ok(true)
    }

    /// One compaction pass if the topic is compacted (`force` ignores the dirty ratio).
    pub fn compact(
        &mut self,
        now_ms: i64,
        force: bool,
        keys_max: usize,
    ) -> Result<Option<CompactionStats>, ResponseError> {
        if !self.config.cleanup_policy.compact {
            return Ok(None);
        }
        let params = CompactionParams {
            now_ms,
            segment_bytes: self.config.segment_bytes,
            min_compaction_lag_ms: self.config.min_compaction_lag_ms,
            max_compaction_lag_ms: self.config.max_compaction_lag_ms,
            min_cleanable_dirty_ratio: self.config.min_cleanable_dirty_ratio,
            delete_retention_ms: self.config.delete_retention_ms,
            force,
            keys_max,
        };
        self.log
            .compact(params)
            .map_err(|error| self.poison(format!("compaction failed: {error}")))
    }

    /// Time and size retention if the topic's cleanup policy includes `delete`.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<RetentionStats, ResponseError> {
        if !self.config.cleanup_policy.delete {
            return Ok(RetentionStats {
                log_start_offset: self.log.log_start_offset(),
                ..RetentionStats::default()
            });
        }
        let (retention_ms, retention_bytes) =
            (self.config.retention_ms, self.config.retention_bytes);
        self.log
            .apply_retention(now_ms, retention_ms, retention_bytes)
            .map_err(|error| self.poison(format!("retention failed: {error}")))
    }

    /// DeleteRecords: moves the log start offset to `offset` (-1: the high watermark).
    /// Returns the new log start offset (Kafka's low watermark).
    pub fn delete_records(&mut self, offset: i64) -> Result<i64, ResponseError> {
        let high_watermark = self.log.high_watermark();
        let target = if offset == -1 { high_watermark } else { offset };
        if target < 0 || target > high_watermark {
            return Err(ResponseError::OffsetOutOfRange);
        }
        self.log
            .advance_log_start(target)
            .map_err(|error| self.poison(format!("deleting records failed: {error}")))?;
        Ok(self.log.log_start_offset())
    }

    fn poison(&mut self, why: String) -> ResponseError {
        tracing::error!(dir = %self.log.dir().display(), %why, "partition refuses further writes");
        self.poisoned.get_or_insert(why);
        ResponseError::KafkaStorageError
    }

    /// Kafka's leader checks for a request naming `current_leader_epoch` (-1: no check).
    pub fn check_leader(
        &self,
        node_id: i32,
        current_leader_epoch: i32,
    ) -> Result<(), ResponseError> {
        if self.deleted {
            return Err(ResponseError::UnknownTopicOrPartition);
        }
        if current_leader_epoch >= 0 {
            if current_leader_epoch > self.leader_epoch {
                return Err(ResponseError::UnknownLeaderEpoch);
            }
            if current_leader_epoch < self.leader_epoch {
                return Err(ResponseError::FencedLeaderEpoch);
            }
        }
        if self.leader != node_id {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        Ok(())
    }

    fn produce(
        &mut self,
        records: &Bytes,
        context: AppendContext,
        name: PartitionName<'_>,
    ) -> ProduceOutcome {
        if let Err(error) = self.check_leader(context.node_id, -1) {
            return ProduceOutcome::failed(error, error.to_string());
        }
        if let Some(why) = &self.poisoned {
            return ProduceOutcome::failed(ResponseError::KafkaStorageError, why.clone());
        }
        let headers = match self.validate(records, context.now_ms, name) {
            Ok(headers) => headers,
            Err(refusal) => {
                let mut outcome = ProduceOutcome::failed(refusal.error, refusal.message);
                if refusal.per_record {
                    // Kafka refuses records inside the log, so it names the log start offset.
                    outcome.log_start_offset = self.log.log_start_offset();
                    outcome.record_errors = refusal.record_errors;
                }
                return outcome;
            }
        };
        let log_append_time = (self.config.message_timestamp_type == TimestampType::LogAppendTime)
            .then_some(context.now_ms);
        let mut first: Option<(i64, i64)> = None;
        for (range, header) in headers {
            let (base_offset, append_time) =
                match self.append_one(&records[range], &header, log_append_time, context) {
                    Ok(placed) => placed,
                    Err(error) => return ProduceOutcome::failed(error, error.to_string()),
                };
            first.get_or_insert((base_offset, append_time));
        }
        let (base_offset, log_append_time_ms) = first.unwrap_or((-1, -1));
        // With flush.messages=1 this fsyncs before the answer, so an acknowledged batch
        // survives a crash of the process or the machine. The ack_before_fsync sabotage
        // skips it: the flusher, a roll or a clean stop syncs later, if anything does.
        if !self.sabotage.ack_before_fsync {
            match self.flush_if_due(context.now_ms, false) {
                Ok(true) => crash_point!(self.log.disk(), "log.append.synced"),
                Ok(false) => {}
                Err(error) => {
                    return ProduceOutcome::failed(error, "the append could not be made durable");
                }
            }
        }
        ProduceOutcome {
            error: None,
            error_message: None,
            base_offset,
            log_append_time_ms,
            log_start_offset: self.log.log_start_offset(),
            record_errors: Vec::new(),
        }
    }

    /// Checks every batch before any is appended, so a bad batch appends nothing.
    fn validate(
        &self,
        records: &Bytes,
        now_ms: i64,
        name: PartitionName<'_>,
    ) -> Result<Vec<(std::ops::Range<usize>, BatchHeader)>, Refusal> {
        let ranges = batch::split(records)
            .map_err(|error| Refusal::new(ResponseError::CorruptMessage, error.to_string()))?;
        let mut checked = Vec::with_capacity(ranges.len());
        for range in ranges {
            let bytes = &records[range.clone()];
            if bytes.len() > self.config.max_message_bytes {
                return Err(Refusal::new(
                    ResponseError::MessageTooLarge,
                    format!(
                        "record batch of {} bytes exceeds max.message.bytes {}",
                        bytes.len(),
                        self.config.max_message_bytes
                    ),
                ));
            }
            let header = batch::validate(bytes)
                .map_err(|error| Refusal::new(ResponseError::CorruptMessage, error.to_string()))?;
            if header.records_count == 0 {
                return Err(Refusal::new(
                    ResponseError::InvalidRecord,
                    "record batch has no records",
                ));
            }
            // Kafka's "inconsistent batch offset range": otherwise one record could claim 2^31
            // offsets, and a few such batches an offset the segment's 32-bit index cannot hold.
            if i64::from(header.last_offset_delta) + 1 != i64::from(header.records_count) {
                return Err(Refusal::new(
                    ResponseError::InvalidRecord,
                    format!(
                        "record batch of {} records has a last offset delta of {}",
                        header.records_count, header.last_offset_delta
                    ),
                ));
            }
            if self.config.cleanup_policy.compact && !all_keyed(bytes) {
                return Err(Refusal::per_record(
                    ResponseError::InvalidRecord,
                    keyless_record_errors(records, name),
                ));
            }
            if header.is_transactional() || header.is_control() {
                return Err(Refusal::new(
                    ResponseError::InvalidTxnState,
                    "transactions are not supported by this broker yet",
                ));
            }
            self.check_timestamps(bytes, &header, now_ms)?;
            checked.push((range, header));
        }
        Ok(checked)
    }

    /// Kafka's `message.timestamp.before.max.ms` / `after.max.ms`: on a CreateTime topic, a
    /// record stamped too far from the broker's clock refuses its whole batch, naming each
    /// such record. The batch's max timestamp answers the common case without reading the
    /// records (nothing can be too old with the default, unbounded, before.max.ms).
    fn check_timestamps(
        &self,
        bytes: &[u8],
        header: &BatchHeader,
        now_ms: i64,
    ) -> Result<(), Refusal> {
        if self.config.message_timestamp_type != TimestampType::CreateTime {
            return Ok(());
        }
        let before = self.config.message_timestamp_before_max_ms;
        let after = self.config.message_timestamp_after_max_ms;
        let out_of_range = |timestamp: i64| {
            timestamp != NO_TIMESTAMP
                && (now_ms.saturating_sub(timestamp) > before
                    || timestamp.saturating_sub(now_ms) > after)
        };
        if before == i64::MAX && !out_of_range(header.max_timestamp) {
            return Ok(());
        }
        let timestamps = tidepool_protocol::records::timestamps(bytes, &DecodeLimits::default())
            .map_err(|error| Refusal::new(ResponseError::CorruptMessage, error.to_string()))?;
        let record_errors: Vec<(i32, String)> = timestamps
            .iter()
            .enumerate()
            .filter(|(_, record)| out_of_range(record.timestamp))
            .map(|(index, record)| {
                let message = format!(
                    "Timestamp {} of message with offset {} is out of range. The timestamp \
                     should be within [{}, {}]",
                    record.timestamp,
                    record.offset,
                    now_ms.saturating_sub(before),
                    now_ms.saturating_add(after)
                );
                (index as i32, message)
            })
            .collect();
        if record_errors.is_empty() {
            return Ok(());
        }
        Err(Refusal::per_record(
            ResponseError::InvalidTimestamp,
            record_errors,
        ))
    }

    /// Appends one batch unless it is a duplicate; returns its base offset and append time.
    fn append_one(
        &mut self,
        bytes: &[u8],
        header: &BatchHeader,
        log_append_time: Option<i64>,
        context: AppendContext,
    ) -> Result<(i64, i64), ResponseError> {
        if let SequenceCheck::Duplicate(original) = self.producers.check(header)? {
            return Ok((original.base_offset, original.timestamp_ms));
        }
        let appended =
            match self
                .log
                .append(bytes, self.leader_epoch, log_append_time, context.now_ms)
            {
                Ok(appended) => appended,
                Err(error) => return Err(self.poison(format!("log append failed: {error}"))),
            };
        self.unflushed_records += header.records_count as u64;
        self.oldest_unflushed_ms.get_or_insert(context.now_ms);
        let log_append_time_ms = log_append_time.unwrap_or(-1);
        let remembered = RememberedBatch {
            first_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            base_offset: appended.base_offset,
            last_offset: appended.last_offset,
            timestamp_ms: log_append_time.unwrap_or(header.max_timestamp),
        };
        self.producers
            .record(header, remembered, context.now_ms, context.producers_max);
        Ok((appended.base_offset, log_append_time_ms))
    }
}
