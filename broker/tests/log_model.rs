//! The partition log (`tidepool_broker::log::Log`) and its cleaner checked against a reference
//! model with proptest-state-machine.
//!
//! **The model** (`Model`) holds the partition as segments of batches of records — each record
//! an (offset, key, value or tombstone, timestamp) — plus the log start offset, the clock, and
//! the cleaner's memory (cleaned-up-to offset; when each tombstone was first kept). It decides
//! everything `Log` decides, byte sizes included: a batch's size is that of the batch
//! `BatchBuilder` makes of its records (the stored bytes of an untouched batch are the
//! producer's; a batch the cleaner thins is re-encoded in its own codec; an idempotent
//! producer's last batch emptied by the cleaner stays as a 61-byte header). Sizes decide rolls,
//! the dirty ratio, which cleaned segments merge and size retention, so the model predicts the
//! segment files exactly. Its rules, from Kafka and `compact.rs`:
//! - appends take offsets from the log end; a segment rolls when the batch would pass
//!   `segment.bytes` or its record time is more than `segment.ms` after the segment's first
//!   batch (wall time since creation when that batch has no timestamp);
//! - a cleaner pass cleans every inactive segment before the first one holding a record younger
//!   than `min.compaction.lag.ms` (never the active segment). It runs when forced, when dirty
//!   bytes reach `min.cleanable.dirty.ratio` of the cleanable bytes, or when a dirty segment is
//!   older than `max.compaction.lag.ms`. It keeps, per key, only the record with the highest
//!   offset in the cleanable range. Kafka maps only the dirty part and keeps clean-part records
//!   whose key the dirty part lacks; the result is the same once a pass has run, and here one
//!   pass leaves exactly one record per key in the cleaned range;
//! - a tombstone that is its key's latest in the cleanable range is kept by the first pass that
//!   sees it (time t0) and removed by the first pass at a time t with t − t0 ≥ that pass's
//!   `delete.retention.ms`. Kafka stamps t0 + delete.retention.ms into the batch (KIP-534),
//!   so its horizon survives restarts and later config changes, and a tombstone always
//!   outlives the pass that first sees it; here t0 is in memory (a reopen times tombstones
//!   again, keeping them longer), the horizon uses the current pass's setting, and with
//!   `delete.retention.ms = 0` the first pass removes the tombstone;
//! - a batch left with no records disappears, except an idempotent producer's last batch in the
//!   log, which stays as an empty batch with its offsets and sequence range; a thinned
//!   idempotent batch keeps its last offset delta;
//! - retention removes the oldest inactive segments while they are older than `retention.ms`
//!   (newest record time) or the log without them is at least `retention.bytes`; DeleteRecords
//!   moves the log start (never past the end, never back) and removes a segment once the next
//!   one starts at or below it (Kafka's rule: after compaction a segment can end well before the
//!   next begins, and removing it by its own end would leave the log start in front of the first
//!   segment, where a reopen or a retention check moves it up); a reopen (`Log::open`, then the
//!   log start restored as `cluster/open.rs` does) keeps everything, log start included;
//! - ListOffsets by timestamp finds the first record at or above the log start whose time
//!   reaches the target, looking past batches without one (Kafka's `searchForTimestamp`);
//! - a segment whose records carry no timestamp counts as time −1: time retention removes it
//!   and `min.compaction.lag.ms` never holds it back. The model follows the code here; Kafka
//!   falls back to the file's modification time, which the Disk seam does not have.
//!
//! **Transitions:** appends of 1–5 keyed records over four keys (some tombstones; some batches
//! from an idempotent producer; every codec; some LogAppendTime, some without timestamps),
//! rolls, cleaner passes (clock skew, compaction lags, delete retention, dirty ratio, forced or
//! not, merging or not), time and size retention, DeleteRecords, time passing, and reopening
//! the log from its files.
//!
//! **After every transition** the log is compared with the model (offsets, segment files and
//! sizes, every stored batch and record, what a read from each offset returns first, timestamp
//! look-ups, each call's answer), and, without the model, against the history of appends:
//! every record present has its original offset, key, value and timestamp; a read from any
//! offset in [log start, log end) returns first the batch holding (or, for an emptied
//! idempotent batch, spanning) the first surviving offset at or after it; each key's latest
//! record, at or above the log start and not a tombstone, is readable; an idempotent producer's
//! last batch keeps its offsets and sequence range. Around each transition: only a cleaner pass
//! removes records above the log start; it removes only records superseded inside its cleaned
//! range, and tombstones whose time has come (never earlier; always once it has); it leaves
//! one record per key in the cleaned range, never touches the active segment or anything from
//! the cleaned-up-to offset on, never removes a record younger than `min.compaction.lag.ms`;
//! a pass that does not run changes no byte; a reopen changes nothing a reader sees.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::FileFailurePersistence;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};
use tidepool_broker::log::compact::{CompactionParams, CompactionStats};
use tidepool_broker::log::{Appended, Log, LogConfig, ReadError, RetentionStats};
use tidepool_io::{Disk, MemDisk, OpenMode};
use tidepool_protocol::batch::{self, BatchHeader, Compression, HEADER_BYTES};
use tidepool_protocol::records::{self, BatchBuilder, DecodeLimits, Record, TimestampType};

const DIR: &str = "/data/topic-0";
const KEYS: u8 = 4;
const PRODUCERS: [i64; 2] = [7, 8];
const LEADER_EPOCH: i32 = 3;
/// Kafka's "no timestamp": some clients send it, and a segment of such batches rolls and ages by
/// wall time.
const NO_TIMESTAMP: i64 = -1;
const START_MS: i64 = 1_000_000;
const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

fn key_bytes(key: u8) -> Bytes {
    Bytes::from(format!("k{key}"))
}

/// A batch of `records` at their offsets, as a producer (base offset 0, CreateTime) or the
/// cleaner (its own base offset and timestamp type) builds it.
fn build_batch(
    base_offset: i64,
    records: &[ModelRecord],
    compression: Compression,
    log_append_time: bool,
    producer: Option<(i64, i32)>,
) -> Bytes {
    let mut builder = BatchBuilder::new();
    builder
        .base_offset(base_offset)
        .compression(compression)
        .timestamp_type(if log_append_time {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        });
    if let Some((producer_id, base_sequence)) = producer {
        builder.producer(producer_id, 0, base_sequence);
    }
    for record in records {
        builder.push(Record {
            offset: record.offset,
            timestamp: record.timestamp,
            key: Some(key_bytes(record.key)),
            value: record.value.clone(),
            headers: Vec::new(),
        });
    }
    builder.build().expect("the model's batches are valid")
}

// ---- Transitions -------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct RecordSpec {
    key: u8,
    /// None is a tombstone.
    value: Option<Bytes>,
    /// Record time relative to the clock.
    timestamp_delta_ms: i64,
}

#[derive(Clone, Debug)]
enum Transition {
    Append {
        records: Vec<RecordSpec>,
        /// Every record carries NO_TIMESTAMP.
        no_timestamps: bool,
        compression: Compression,
        /// An idempotent producer; its sequence numbers continue from its previous batch.
        producer: Option<i64>,
        /// The topic stamps LogAppendTime (the clock) on the batch.
        log_append_time: bool,
    },
    Roll,
    Compact {
        /// The cleaner's wall clock against the model's (wall clocks step).
        clock_skew_ms: i64,
        min_compaction_lag_ms: i64,
        max_compaction_lag_ms: i64,
        delete_retention_ms: i64,
        min_cleanable_dirty_ratio: f64,
        force: bool,
        /// `segment.bytes` for merging cleaned segments: huge (merge all) or 0 (merge none
        /// but empty ones).
        merge: bool,
        /// The cleaner's key map bound: a pass stops after the segment that fills it.
        keys_max: usize,
    },
    RetainByTime {
        retention_ms: i64,
    },
    RetainBySize {
        retention_bytes: i64,
    },
    DeleteRecords {
        offset: i64,
    },
    AdvanceTime {
        ms: i64,
    },
    Reopen,
}

impl Transition {
    fn compaction_params(&self, now_ms: i64) -> Option<CompactionParams> {
        match *self {
            Transition::Compact {
                clock_skew_ms,
                min_compaction_lag_ms,
                max_compaction_lag_ms,
                delete_retention_ms,
                min_cleanable_dirty_ratio,
                force,
                merge,
                keys_max,
            } => Some(CompactionParams {
                now_ms: now_ms + clock_skew_ms,
                segment_bytes: if merge { 1 << 40 } else { 0 },
                min_compaction_lag_ms,
                max_compaction_lag_ms,
                min_cleanable_dirty_ratio,
                delete_retention_ms,
                force,
                keys_max,
            }),
            _ => None,
        }
    }
}

/// The producer's records of an Append: offsets from 0, its own timestamps.
fn producer_records(records: &[RecordSpec], no_timestamps: bool, now_ms: i64) -> Vec<ModelRecord> {
    records
        .iter()
        .zip(0..)
        .map(|(spec, offset)| ModelRecord {
            offset,
            key: spec.key,
            value: spec.value.clone(),
            timestamp: if no_timestamps {
                NO_TIMESTAMP
            } else {
                now_ms + spec.timestamp_delta_ms
            },
        })
        .collect()
}

// ---- The model ---------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
struct ModelRecord {
    offset: i64,
    key: u8,
    value: Option<Bytes>,
    /// As a reader sees it: the batch's LogAppendTime for such batches.
    timestamp: i64,
}

#[derive(Clone, Debug)]
struct ModelBatch {
    base_offset: i64,
    last_offset: i64,
    records: Vec<ModelRecord>,
    compression: Compression,
    log_append_time: bool,
    /// Producer id and base sequence of an idempotent batch.
    producer: Option<(i64, i32)>,
    max_timestamp: i64,
    bytes: u64,
}

#[derive(Clone, Debug)]
struct ModelSegment {
    base_offset: i64,
    batches: Vec<ModelBatch>,
    /// Wall time of creation (or of the last open): `segment.ms` counts from it when the first
    /// batch has no timestamp.
    created_ms: i64,
}

impl ModelSegment {
    fn new(base_offset: i64, created_ms: i64) -> ModelSegment {
        ModelSegment {
            base_offset,
            batches: Vec::new(),
            created_ms,
        }
    }

    fn bytes(&self) -> u64 {
        self.batches.iter().map(|batch| batch.bytes).sum()
    }

    fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    fn next_offset(&self) -> i64 {
        self.batches
            .last()
            .map_or(self.base_offset, |batch| batch.last_offset + 1)
    }

    fn max_timestamp(&self) -> i64 {
        self.batches
            .iter()
            .map(|batch| batch.max_timestamp)
            .fold(NO_TIMESTAMP, i64::max)
    }

    /// Kafka's rule for how long a segment has been open: record time from its first batch,
    /// or wall time since creation when that batch has none.
    fn time_waited_for_roll(&self, incoming_timestamp: i64, now_ms: i64) -> Option<i64> {
        let first = self.batches.first()?.max_timestamp;
        Some(if first >= 0 {
            incoming_timestamp.saturating_sub(first)
        } else {
            now_ms.saturating_sub(self.created_ms)
        })
    }
}

/// What the last transition's call must have answered.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Nothing,
    Appended(Appended),
    Compacted(Option<CompactionStats>),
    Retained(RetentionStats),
}

#[derive(Clone, Debug)]
struct Model {
    config: LogConfig,
    now_ms: i64,
    /// Ascending by base offset; never empty; the last one is the active segment.
    segments: Vec<ModelSegment>,
    log_start_offset: i64,
    /// The cleaner's memory, lost on reopen.
    cleaned_up_to: i64,
    tombstones_kept_since: BTreeMap<i64, i64>,
    next_sequence: BTreeMap<i64, i32>,
    outcome: Outcome,
}

impl Model {
    fn new(config: LogConfig) -> Model {
        Model {
            config,
            now_ms: START_MS,
            segments: vec![ModelSegment::new(0, START_MS)],
            log_start_offset: 0,
            cleaned_up_to: 0,
            tombstones_kept_since: BTreeMap::new(),
            next_sequence: BTreeMap::new(),
            outcome: Outcome::Nothing,
        }
    }

    fn active(&self) -> &ModelSegment {
        self.segments.last().expect("a log has a segment")
    }

    fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    fn total_bytes(&self) -> u64 {
        self.segments.iter().map(ModelSegment::bytes).sum()
    }

    fn batches(&self) -> impl Iterator<Item = &ModelBatch> {
        self.segments.iter().flat_map(|segment| &segment.batches)
    }

    /// The batches a reader can reach: those ending at or after the log start.
    fn visible_batches(&self) -> Vec<&ModelBatch> {
        self.batches()
            .filter(|batch| batch.last_offset >= self.log_start_offset)
            .collect()
    }

    fn apply(&mut self, transition: &Transition) {
        self.outcome = Outcome::Nothing;
        match transition {
            Transition::Append {
                records,
                no_timestamps,
                compression,
                producer,
                log_append_time,
            } => {
                let appended = self.append(
                    records,
                    *no_timestamps,
                    *compression,
                    *producer,
                    *log_append_time,
                );
                self.outcome = Outcome::Appended(appended);
            }
            Transition::Roll => self.roll(),
            Transition::Compact { .. } => {
                let params = transition
                    .compaction_params(self.now_ms)
                    .expect("a Compact transition");
                let stats = self.compact(&params);
                self.outcome = Outcome::Compacted(stats);
            }
            Transition::RetainByTime { retention_ms } => {
                let stats = self.apply_retention(*retention_ms, -1);
                self.outcome = Outcome::Retained(stats);
            }
            Transition::RetainBySize { retention_bytes } => {
                let stats = self.apply_retention(-1, *retention_bytes);
                self.outcome = Outcome::Retained(stats);
            }
            Transition::DeleteRecords { offset } => self.advance_log_start(*offset),
            Transition::AdvanceTime { ms } => self.now_ms += ms,
            Transition::Reopen => self.reopen(),
        }
    }

    fn append(
        &mut self,
        specs: &[RecordSpec],
        no_timestamps: bool,
        compression: Compression,
        producer: Option<i64>,
        log_append_time: bool,
    ) -> Appended {
        let count = specs.len() as i32;
        let producer = producer.map(|producer_id| {
            let next = self.next_sequence.entry(producer_id).or_insert(0);
            let base_sequence = *next;
            *next += count;
            (producer_id, base_sequence)
        });
        let sent = producer_records(specs, no_timestamps, self.now_ms);
        let bytes = build_batch(0, &sent, compression, false, producer).len() as u64;
        let max_timestamp = if log_append_time {
            self.now_ms
        } else {
            sent.iter()
                .map(|record| record.timestamp)
                .max()
                .expect("a batch has records")
        };
        let active = self.active();
        let full = active.bytes() + bytes > self.config.segment_bytes;
        let old = active
            .time_waited_for_roll(max_timestamp, self.now_ms)
            .is_some_and(|waited| waited > self.config.segment_ms);
        if !active.is_empty() && (full || old) {
            self.roll();
        }
        let base_offset = self.log_end_offset();
        let records = sent
            .into_iter()
            .map(|record| ModelRecord {
                offset: base_offset + record.offset,
                timestamp: if log_append_time {
                    max_timestamp
                } else {
                    record.timestamp
                },
                ..record
            })
            .collect();
        let last_offset = base_offset + i64::from(count) - 1;
        self.segments
            .last_mut()
            .expect("a log has a segment")
            .batches
            .push(ModelBatch {
                base_offset,
                last_offset,
                records,
                compression,
                log_append_time,
                producer,
                max_timestamp,
                bytes,
            });
        Appended {
            base_offset,
            last_offset,
        }
    }

    fn roll(&mut self) {
        if !self.active().is_empty() {
            let segment = ModelSegment::new(self.log_end_offset(), self.now_ms);
            self.segments.push(segment);
        }
    }

    fn advance_log_start(&mut self, offset: i64) {
        let offset = offset.min(self.log_end_offset());
        if offset <= self.log_start_offset {
            return;
        }
        self.log_start_offset = offset;
        // Kafka's rule: a segment goes when the next one starts at or below the log start, so
        // the first segment never starts past it and a reopen finds the same log start.
        while self.segments.len() > 1 && self.segments[1].base_offset <= offset {
            self.segments.remove(0);
        }
    }

    fn apply_retention(&mut self, retention_ms: i64, retention_bytes: i64) -> RetentionStats {
        let mut stats = RetentionStats::default();
        let mut total = self.total_bytes();
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let size = oldest.bytes();
            let expired = retention_ms >= 0
                && oldest.max_timestamp() < self.now_ms.saturating_sub(retention_ms);
            let oversized =
                retention_bytes >= 0 && total.saturating_sub(size) >= retention_bytes as u64;
            if !(expired || oversized) {
                break;
            }
            self.segments.remove(0);
            total -= size;
            stats.segments_removed += 1;
            stats.bytes_removed += size;
        }
        self.log_start_offset = self.log_start_offset.max(self.segments[0].base_offset);
        stats.log_start_offset = self.log_start_offset;
        stats
    }

    fn reopen(&mut self) {
        self.cleaned_up_to = 0;
        self.tombstones_kept_since.clear();
        for segment in &mut self.segments {
            segment.created_ms = self.now_ms;
        }
        let restored = self.log_start_offset;
        self.log_start_offset = self.segments[0].base_offset;
        self.advance_log_start(restored);
    }

    // ---- The cleaner ---------------------------------------------------------------------------

    fn first_uncleanable(&self, params: &CompactionParams) -> i64 {
        let active_base = self.active().base_offset;
        let young = params.now_ms.saturating_sub(params.min_compaction_lag_ms);
        self.segments
            .iter()
            .take_while(|segment| segment.base_offset < active_base)
            .find(|segment| params.min_compaction_lag_ms > 0 && segment.max_timestamp() > young)
            .map_or(active_base, |segment| segment.base_offset)
    }

    fn compaction_due(&self, params: &CompactionParams, first_uncleanable: i64) -> bool {
        let cleanable: Vec<&ModelSegment> = self
            .segments
            .iter()
            .filter(|segment| segment.base_offset < first_uncleanable)
            .collect();
        let total: u64 = cleanable.iter().map(|segment| segment.bytes()).sum();
        if total == 0 {
            return false;
        }
        if params.force {
            return true;
        }
        let dirty: Vec<&ModelSegment> = cleanable
            .into_iter()
            .filter(|segment| segment.next_offset() > self.cleaned_up_to)
            .collect();
        let dirty_bytes: u64 = dirty.iter().map(|segment| segment.bytes()).sum();
        let ratio_reached = dirty_bytes as f64 / total as f64 >= params.min_cleanable_dirty_ratio;
        let overdue = dirty.iter().any(|segment| {
            segment
                .time_waited_for_roll(params.now_ms, params.now_ms)
                .is_some_and(|waited| waited > params.max_compaction_lag_ms)
        });
        dirty_bytes > 0 && (ratio_reached || overdue)
    }

    fn compact(&mut self, params: &CompactionParams) -> Option<CompactionStats> {
        let first_uncleanable = self.first_uncleanable(params);
        if !self.compaction_due(params, first_uncleanable) {
            return None;
        }
        let mut first_uncleanable = first_uncleanable;
        let mut cleanable = self
            .segments
            .iter()
            .take_while(|segment| segment.base_offset < first_uncleanable)
            .count();
        let mut last_batch_of_producer = BTreeMap::new();
        for batch in self.batches() {
            if let Some((producer_id, _)) = batch.producer {
                last_batch_of_producer.insert(producer_id, batch.base_offset);
            }
        }
        let mut latest: BTreeMap<u8, i64> = BTreeMap::new();
        for (index, segment) in self.segments[..cleanable].iter().enumerate() {
            if latest.len() >= params.keys_max {
                // The key map is full: this pass cleans the segments before this one.
                cleanable = index;
                first_uncleanable = segment.base_offset;
                break;
            }
            for record in segment.batches.iter().flat_map(|batch| &batch.records) {
                latest.insert(record.key, record.offset);
            }
        }
        let mut stats = CompactionStats {
            segments_before: cleanable,
            cleaned_up_to: first_uncleanable,
            ..CompactionStats::default()
        };
        let mut groups: Vec<Vec<ModelSegment>> = Vec::new();
        let mut group_bytes = 0;
        for segment in self.segments.drain(..cleanable) {
            let size = segment.bytes();
            stats.bytes_before += size;
            match groups.last_mut() {
                Some(group) if group_bytes + size <= params.segment_bytes => {
                    group.push(segment);
                    group_bytes += size;
                }
                _ => {
                    groups.push(vec![segment]);
                    group_bytes = size;
                }
            }
        }
        let mut kept_keys = BTreeSet::new();
        let mut cleaned = Vec::new();
        for group in groups {
            let mut segment = ModelSegment::new(group[0].base_offset, params.now_ms);
            for batch in group.into_iter().flat_map(|segment| segment.batches) {
                let cleaned_batch = self.clean_batch(
                    batch,
                    &latest,
                    &last_batch_of_producer,
                    params,
                    &mut stats,
                    &mut kept_keys,
                );
                segment.batches.extend(cleaned_batch);
            }
            stats.bytes_after += segment.bytes();
            cleaned.push(segment);
        }
        stats.segments_after = cleaned.len();
        stats.keys_kept = kept_keys.len() as u64;
        cleaned.append(&mut self.segments);
        self.segments = cleaned;
        self.cleaned_up_to = first_uncleanable;
        let log_start_offset = self.log_start_offset;
        self.tombstones_kept_since
            .retain(|offset, _| *offset >= log_start_offset);
        Some(stats)
    }

    fn clean_batch(
        &mut self,
        batch: ModelBatch,
        latest: &BTreeMap<u8, i64>,
        last_batch_of_producer: &BTreeMap<i64, i64>,
        params: &CompactionParams,
        stats: &mut CompactionStats,
        kept_keys: &mut BTreeSet<u8>,
    ) -> Option<ModelBatch> {
        let total = batch.records.len();
        stats.records_before += total as u64;
        let mut kept = Vec::with_capacity(total);
        for record in &batch.records {
            if self.keep(record, latest, params, stats) {
                kept_keys.insert(record.key);
                kept.push(record.clone());
            }
        }
        stats.records_removed += (total - kept.len()) as u64;
        if kept.len() == total {
            return Some(batch);
        }
        let Some(last_kept) = kept.last() else {
            let producers_last = batch.producer.is_some_and(|(producer_id, _)| {
                last_batch_of_producer.get(&producer_id) == Some(&batch.base_offset)
            });
            return producers_last.then_some(ModelBatch {
                records: Vec::new(),
                compression: Compression::None,
                bytes: HEADER_BYTES as u64,
                ..batch
            });
        };
        let last_offset = if batch.producer.is_some() {
            batch.last_offset
        } else {
            last_kept.offset
        };
        let max_timestamp = if batch.log_append_time {
            batch.max_timestamp
        } else {
            kept.iter()
                .map(|record| record.timestamp)
                .max()
                .expect("records were kept")
        };
        let bytes = build_batch(
            batch.base_offset,
            &kept,
            batch.compression,
            batch.log_append_time,
            batch.producer,
        )
        .len() as u64;
        Some(ModelBatch {
            last_offset,
            records: kept,
            max_timestamp,
            bytes,
            ..batch
        })
    }

    fn keep(
        &mut self,
        record: &ModelRecord,
        latest: &BTreeMap<u8, i64>,
        params: &CompactionParams,
        stats: &mut CompactionStats,
    ) -> bool {
        if latest.get(&record.key) != Some(&record.offset) {
            if record.value.is_none() {
                stats.tombstones_removed += 1;
                self.tombstones_kept_since.remove(&record.offset);
            }
            return false;
        }
        if record.value.is_some() {
            return true;
        }
        let since = *self
            .tombstones_kept_since
            .entry(record.offset)
            .or_insert(params.now_ms);
        if params.now_ms.saturating_sub(since) >= params.delete_retention_ms {
            self.tombstones_kept_since.remove(&record.offset);
            stats.tombstones_removed += 1;
            return false;
        }
        true
    }

    // ---- What readers must see -----------------------------------------------------------------

    /// The first batch a read from `offset` returns: the first whose last offset reaches it.
    fn first_batch_from(&self, offset: i64) -> Option<&ModelBatch> {
        self.batches().find(|batch| batch.last_offset >= offset)
    }

    /// ListOffsets by timestamp: the first record at or above the log start whose time is at or
    /// past `target` (with each batch's max timestamp that of its records, this is Kafka's
    /// "first batch whose max timestamp reaches it, then its first record that does").
    fn offset_for_timestamp(&self, target: i64) -> Option<(i64, i64)> {
        self.batches()
            .flat_map(|batch| &batch.records)
            .find(|record| record.offset >= self.log_start_offset && record.timestamp >= target)
            .map(|record| (record.timestamp, record.offset))
    }
}

// ---- Generating transitions --------------------------------------------------------------------

fn record_spec() -> impl Strategy<Value = RecordSpec> {
    (
        0..KEYS,
        prop::option::weighted(0.75, (any::<u16>(), 0_usize..40)),
        prop::sample::select(vec![-3_000_i64, -500, 0, 0, 0, 200]),
    )
        .prop_map(|(key, value, timestamp_delta_ms)| RecordSpec {
            key,
            value: value
                .map(|(tag, padding)| Bytes::from(format!("{tag:04x}:{}", "v".repeat(padding)))),
            timestamp_delta_ms,
        })
}

fn append() -> impl Strategy<Value = Transition> {
    (
        prop::collection::vec(record_spec(), 1..=5),
        prop::bool::weighted(0.1),
        prop::sample::select(CODECS.to_vec()),
        prop::sample::select(vec![
            None,
            None,
            None,
            Some(PRODUCERS[0]),
            Some(PRODUCERS[1]),
        ]),
        prop::bool::weighted(0.15),
    )
        .prop_map(
            |(records, no_timestamps, compression, producer, log_append_time)| Transition::Append {
                records,
                no_timestamps,
                compression,
                producer,
                log_append_time,
            },
        )
}

fn compact() -> impl Strategy<Value = Transition> {
    (
        prop::sample::select(vec![0_i64, 0, 0, -1_500, 1_500]),
        prop::sample::select(vec![0_i64, 0, 1_000, 4_000]),
        prop::sample::select(vec![i64::MAX, i64::MAX, 2_000]),
        prop::sample::select(vec![0_i64, 500, 2_000, 6_000]),
        prop::sample::select(vec![0.0_f64, 0.3, 0.5, 0.99, 1.0]),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec![usize::MAX, usize::MAX, 1, 2]),
    )
        .prop_map(
            |(clock_skew_ms, lag, max_lag, delete_retention_ms, ratio, force, merge, keys_max)| {
                Transition::Compact {
                    clock_skew_ms,
                    min_compaction_lag_ms: lag,
                    max_compaction_lag_ms: max_lag,
                    delete_retention_ms,
                    min_cleanable_dirty_ratio: ratio,
                    force,
                    merge,
                    keys_max,
                }
            },
        )
}

/// Appends of one uncompressed record that leave the active segment one byte short of
/// `segment.bytes`, exactly full, or one byte over (a roll), where a value length does that.
fn fill_the_active_segment(model: &Model) -> Vec<Transition> {
    let active_bytes = model.active().bytes();
    let Some(room) = model.config.segment_bytes.checked_sub(active_bytes) else {
        return Vec::new();
    };
    let specs = |padding: usize| {
        vec![RecordSpec {
            key: 0,
            value: Some(Bytes::from(format!("fill:{}", "v".repeat(padding)))),
            timestamp_delta_ms: 0,
        }]
    };
    let size = |padding: usize| {
        let sent = producer_records(&specs(padding), false, model.now_ms);
        build_batch(0, &sent, Compression::None, false, None).len() as u64
    };
    let unpadded = size(0);
    let mut fills = Vec::new();
    for wanted in [room.saturating_sub(1), room, room + 1] {
        // Each byte of value adds a byte, except where a length varint grows: look near.
        let Some(guess) = wanted.checked_sub(unpadded).filter(|guess| *guess < 1_000) else {
            continue;
        };
        let guess = guess as usize;
        let fitting = (guess.saturating_sub(2)..=guess).find(|&padding| size(padding) == wanted);
        if let Some(padding) = fitting {
            fills.push(Transition::Append {
                records: specs(padding),
                no_timestamps: false,
                compression: Compression::None,
                producer: None,
                log_append_time: false,
            });
        }
    }
    fills
}

struct Reference;

impl ReferenceStateMachine for Reference {
    type State = Model;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<Model> {
        (
            prop::sample::select(vec![350_u64, 700, 1 << 20]),
            prop::sample::select(vec![i64::MAX, 3_000]),
            prop::sample::select(vec![0_u64, 100, 4_096]),
        )
            .prop_map(|(segment_bytes, segment_ms, index_interval_bytes)| {
                Model::new(LogConfig {
                    segment_bytes,
                    segment_ms,
                    index_interval_bytes,
                })
            })
            .boxed()
    }

    fn transitions(model: &Model) -> BoxedStrategy<Transition> {
        let log_start_offset = model.log_start_offset;
        let log_end_offset = model.log_end_offset();
        let total_bytes = model.total_bytes() as i64;
        // Sizes at which size retention changes its mind: the log without its oldest segments.
        let mut boundaries = vec![0_i64];
        let mut remaining = total_bytes;
        for segment in &model.segments {
            remaining -= segment.bytes() as i64;
            boundaries.extend([remaining, remaining + 1]);
        }
        let mut arms: Vec<(u32, BoxedStrategy<Transition>)> = vec![
            (8, append().boxed()),
            (3, Just(Transition::Roll).boxed()),
            (5, compact().boxed()),
            (
                1,
                prop::sample::select(vec![0_i64, 1_000, 5_000, 30_000])
                    .prop_map(|retention_ms| Transition::RetainByTime { retention_ms })
                    .boxed(),
            ),
            (
                1,
                prop_oneof![0..=total_bytes + 100, prop::sample::select(boundaries)]
                    .prop_map(|retention_bytes| Transition::RetainBySize { retention_bytes })
                    .boxed(),
            ),
            (
                1,
                (log_start_offset..=log_end_offset + 2)
                    .prop_map(|offset| Transition::DeleteRecords { offset })
                    .boxed(),
            ),
            (
                3,
                prop::sample::select(vec![100_i64, 1_000, 2_500, 7_000])
                    .prop_map(|ms| Transition::AdvanceTime { ms })
                    .boxed(),
            ),
            (1, Just(Transition::Reopen).boxed()),
        ];
        let fills = fill_the_active_segment(model);
        if !fills.is_empty() {
            arms.push((1, prop::sample::select(fills).boxed()));
        }
        Union::new_weighted(arms).boxed()
    }

    fn apply(mut model: Model, transition: &Transition) -> Model {
        model.apply(transition);
        model
    }
}

// ---- The log under test ------------------------------------------------------------------------

/// A record as written, by offset: what the log must return there, if anything.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Written {
    key: u8,
    value: Option<Bytes>,
    timestamp: i64,
}

/// A stored batch as a reader gets it.
#[derive(Clone, Debug)]
struct StoredBatch {
    header: BatchHeader,
    records: Vec<Record>,
}

/// What a reader sees, and the segment files behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Snapshot {
    log_start_offset: i64,
    log_end_offset: i64,
    /// Every readable record, by offset.
    records: BTreeMap<i64, Written>,
    /// Segment base offset → the bytes of its `.log` file.
    files: BTreeMap<i64, Vec<u8>>,
}

struct Harness {
    disk: Arc<dyn Disk>,
    log: Option<Log>,
    config: LogConfig,
    now_ms: i64,
    next_sequence: BTreeMap<i64, i32>,
    history: BTreeMap<i64, Written>,
    /// Producer id → (base offset, last offset, base sequence) of its last batch.
    producer_last: BTreeMap<i64, (i64, i64, i32)>,
    /// Tombstone offset → the time of the first pass (since the log was opened) that kept it as
    /// its key's latest record in the cleaned range.
    tombstones_first_kept: BTreeMap<i64, i64>,
}

fn key_of(record: &Record) -> u8 {
    let key = record.key.as_ref().expect("every record has a key");
    std::str::from_utf8(key)
        .ok()
        .and_then(|text| text.strip_prefix('k'))
        .and_then(|index| index.parse().ok())
        .unwrap_or_else(|| panic!("unexpected key {key:?}"))
}

fn written(record: &Record) -> Written {
    Written {
        key: key_of(record),
        value: record.value.clone(),
        timestamp: record.timestamp,
    }
}

impl Harness {
    fn new(config: LogConfig) -> Harness {
        let disk: Arc<dyn Disk> = Arc::new(MemDisk::new());
        let log = Log::create(Arc::clone(&disk), Path::new(DIR), config, START_MS)
            .expect("create the log");
        Harness {
            disk,
            log: Some(log),
            config,
            now_ms: START_MS,
            next_sequence: BTreeMap::new(),
            history: BTreeMap::new(),
            producer_last: BTreeMap::new(),
            tombstones_first_kept: BTreeMap::new(),
        }
    }

    fn log(&self) -> &Log {
        self.log.as_ref().expect("the log is open")
    }

    fn log_mut(&mut self) -> &mut Log {
        self.log.as_mut().expect("the log is open")
    }

    /// Every batch from the log start on, read as a consumer would: from the log start, then
    /// from one past the last batch read.
    fn stored_batches(&self) -> Vec<StoredBatch> {
        let log = self.log();
        let mut batches = Vec::new();
        let mut offset = log.log_start_offset();
        let mut scratch = BytesMut::new();
        while offset < log.log_end_offset() {
            let read = log
                .read(offset, 1 << 20, true, &mut scratch)
                .unwrap_or_else(|error| panic!("read at {offset}: {error}"));
            if read.is_empty() {
                break;
            }
            for range in batch::split(&read).expect("whole batches") {
                let bytes = &read[range];
                let header = batch::validate(bytes).expect("a stored batch is valid");
                assert!(
                    header.last_offset() >= offset,
                    "a read from {offset} returned batch {}..={}",
                    header.base_offset,
                    header.last_offset()
                );
                let records = records::decode(bytes, &DecodeLimits::default())
                    .expect("stored records decode");
                offset = header.last_offset() + 1;
                batches.push(StoredBatch { header, records });
            }
        }
        batches
    }

    /// Segment base offset → the bytes of its `.log` file. Every segment has both indexes, and
    /// nothing else is left in the directory (no half-swapped cleaner output, no orphans).
    fn segment_files(&self) -> BTreeMap<i64, Vec<u8>> {
        let dir = Path::new(DIR);
        let names = self.disk.list(dir).expect("list the log directory");
        let mut files = BTreeMap::new();
        let mut indexes = BTreeSet::new();
        for name in &names {
            let (stem, suffix) = name.split_once('.').unwrap_or((name, ""));
            let base: i64 = stem
                .parse()
                .unwrap_or_else(|_| panic!("a stray file is left: {name}"));
            match suffix {
                "log" => {
                    let file = self
                        .disk
                        .open(&dir.join(name), OpenMode::Existing)
                        .expect("open a segment");
                    let mut bytes = vec![0; file.len().expect("segment length") as usize];
                    file.read_exact_at(0, &mut bytes).expect("read a segment");
                    files.insert(base, bytes);
                }
                "index" | "timeindex" => {
                    indexes.insert((base, suffix.to_owned()));
                }
                _ => panic!("a stray file is left: {name}"),
            }
        }
        let expected_indexes: BTreeSet<(i64, String)> = files
            .keys()
            .flat_map(|base| [(*base, "index".to_owned()), (*base, "timeindex".to_owned())])
            .collect();
        assert_eq!(indexes, expected_indexes, "index files in {names:?}");
        files
    }

    fn snapshot(&self) -> Snapshot {
        let records = self
            .stored_batches()
            .iter()
            .flat_map(|batch| &batch.records)
            .filter(|record| record.offset >= self.log().log_start_offset())
            .map(|record| (record.offset, written(record)))
            .collect();
        Snapshot {
            log_start_offset: self.log().log_start_offset(),
            log_end_offset: self.log().log_end_offset(),
            records,
            files: self.segment_files(),
        }
    }

    /// Whether a record of `key` sits in (offset, below).
    fn superseded_below(&self, offset: i64, key: u8, below: i64) -> bool {
        self.history
            .range(offset + 1..below)
            .any(|(_, record)| record.key == key)
    }

    fn append(
        &mut self,
        specs: &[RecordSpec],
        no_timestamps: bool,
        compression: Compression,
        producer: Option<i64>,
        log_append_time: bool,
    ) -> Appended {
        let count = specs.len() as i32;
        let producer = producer.map(|producer_id| {
            let next = self.next_sequence.entry(producer_id).or_insert(0);
            let base_sequence = *next;
            *next += count;
            (producer_id, base_sequence)
        });
        let sent = producer_records(specs, no_timestamps, self.now_ms);
        let bytes = build_batch(0, &sent, compression, false, producer);
        let now_ms = self.now_ms;
        let appended = self
            .log_mut()
            .append(
                &bytes,
                LEADER_EPOCH,
                log_append_time.then_some(now_ms),
                now_ms,
            )
            .expect("append");
        for record in sent {
            let timestamp = if log_append_time {
                now_ms
            } else {
                record.timestamp
            };
            let previous = self.history.insert(
                appended.base_offset + record.offset,
                Written {
                    key: record.key,
                    value: record.value,
                    timestamp,
                },
            );
            assert!(
                previous.is_none(),
                "offset {} was given twice",
                record.offset
            );
        }
        if let Some((producer_id, base_sequence)) = producer {
            self.producer_last.insert(
                producer_id,
                (appended.base_offset, appended.last_offset, base_sequence),
            );
        }
        appended
    }

    fn reopen(&mut self) {
        let log_start_offset = self.log().log_start_offset();
        drop(self.log.take());
        let mut headers = Vec::new();
        let recovered = Log::open(
            Arc::clone(&self.disk),
            Path::new(DIR),
            self.config,
            true,
            self.now_ms,
            &mut |header| headers.push(*header),
        )
        .expect("reopen the log");
        assert_eq!(
            (
                recovered.removed_bytes,
                recovered.removed_segments,
                recovered.reason.as_deref()
            ),
            (0, 0, None),
            "recovery cut a cleanly written log"
        );
        let mut log = recovered.log;
        log.advance_log_start(log_start_offset)
            .expect("restore the log start");
        self.log = Some(log);
        self.tombstones_first_kept.clear();
    }

    /// Checks around a cleaner pass that ran, without the model.
    fn check_pass(
        &mut self,
        before: &Snapshot,
        after: &Snapshot,
        params: &CompactionParams,
        cleaned_up_to: i64,
    ) {
        let Some(&active_base) = before.files.keys().next_back() else {
            panic!("no segment files");
        };
        assert!(cleaned_up_to <= active_base);
        for (base, bytes) in before.files.range(cleaned_up_to..) {
            assert!(
                after.files.get(base) == Some(bytes),
                "the pass (cleaned up to {cleaned_up_to}) rewrote segment {base}"
            );
        }
        assert_eq!(
            (after.log_start_offset, after.log_end_offset),
            (before.log_start_offset, before.log_end_offset),
            "a pass moved the log's bounds"
        );
        let young = params.now_ms.saturating_sub(params.min_compaction_lag_ms);
        let mut kept_keys = BTreeSet::new();
        for (&offset, record) in &before.records {
            let present = after.records.contains_key(&offset);
            if params.min_compaction_lag_ms > 0 && record.timestamp > young {
                assert!(
                    present,
                    "offset {offset} (time {}) is younger than the compaction lag but was removed",
                    record.timestamp
                );
            }
            if offset >= cleaned_up_to {
                assert!(
                    present,
                    "offset {offset} is past the cleaned range but was removed"
                );
                continue;
            }
            if present {
                assert!(
                    kept_keys.insert(record.key),
                    "two records of key k{} remain in the cleaned range",
                    record.key
                );
            }
            if self.superseded_below(offset, record.key, cleaned_up_to) {
                assert!(
                    !present,
                    "offset {offset} is superseded in the cleaned range but stays"
                );
                continue;
            }
            if record.value.is_some() {
                assert!(present, "offset {offset}, its key's latest, was removed");
                continue;
            }
            let first_kept = self.tombstones_first_kept.get(&offset).copied();
            let due = match first_kept {
                Some(at) => params.now_ms.saturating_sub(at) >= params.delete_retention_ms,
                None => params.delete_retention_ms <= 0,
            };
            assert_eq!(
                present, !due,
                "tombstone {offset} (first kept at {first_kept:?}, pass at {}, \
                 delete.retention.ms {}): present after the pass: {present}",
                params.now_ms, params.delete_retention_ms
            );
            if present && first_kept.is_none() {
                self.tombstones_first_kept.insert(offset, params.now_ms);
            }
            if !present {
                self.tombstones_first_kept.remove(&offset);
            }
        }
    }

    /// Checks around a transition other than a cleaner pass: nothing at or above the new log
    /// start is removed, nothing changes but what was appended.
    fn check_nothing_removed(before: &Snapshot, after: &Snapshot, transition: &Transition) {
        assert!(
            after.log_start_offset >= before.log_start_offset,
            "{transition:?} moved the log start back"
        );
        assert!(
            after.log_end_offset >= before.log_end_offset,
            "{transition:?} moved the log end back"
        );
        let kept: BTreeMap<i64, Written> = before
            .records
            .range(after.log_start_offset..)
            .map(|(offset, record)| (*offset, record.clone()))
            .collect();
        let unchanged: BTreeMap<i64, Written> = after
            .records
            .range(..before.log_end_offset)
            .map(|(offset, record)| (*offset, record.clone()))
            .collect();
        assert_eq!(unchanged, kept, "{transition:?} changed what a reader sees");
    }

    /// Without the model: what is readable is what was written, at its offset.
    fn check_against_history(&self) {
        let log = self.log();
        let log_start_offset = log.log_start_offset();
        let log_end_offset = log.log_end_offset();
        assert!(0 <= log_start_offset && log_start_offset <= log_end_offset);
        assert_eq!(log.high_watermark(), log_end_offset);
        let batches = self.stored_batches();
        let mut previous_offset = -1;
        let mut readable = BTreeMap::new();
        for stored in &batches {
            assert_eq!(stored.header.partition_leader_epoch, LEADER_EPOCH);
            assert_eq!(stored.records.len(), stored.header.records_count as usize);
            for record in &stored.records {
                assert!(
                    record.offset > previous_offset,
                    "offsets go {previous_offset} then {}",
                    record.offset
                );
                assert!(
                    record.offset >= stored.header.base_offset
                        && record.offset <= stored.header.last_offset()
                );
                previous_offset = record.offset;
                let seen = written(record);
                assert_eq!(
                    Some(&seen),
                    self.history.get(&record.offset),
                    "offset {} holds another record",
                    record.offset
                );
                if record.offset >= log_start_offset {
                    readable.insert(record.offset, seen);
                }
            }
        }
        assert!(previous_offset < log_end_offset);
        let mut latest: BTreeMap<u8, (i64, &Written)> = BTreeMap::new();
        for (&offset, record) in &self.history {
            latest.insert(record.key, (offset, record));
        }
        for (key, (offset, record)) in latest {
            if offset >= log_start_offset && record.value.is_some() {
                assert!(
                    readable.contains_key(&offset),
                    "key k{key}'s latest value (offset {offset}) is not readable"
                );
            }
        }
        for (&producer_id, &(base_offset, last_offset, base_sequence)) in &self.producer_last {
            if last_offset < log_start_offset {
                continue;
            }
            let found = batches.iter().any(|stored| {
                let header = &stored.header;
                header.producer_id == producer_id
                    && header.base_offset == base_offset
                    && header.last_offset() == last_offset
                    && header.base_sequence == base_sequence
            });
            assert!(
                found,
                "producer {producer_id}'s last batch {base_offset}..={last_offset} \
                 (sequence {base_sequence}) is not readable"
            );
        }
        let mut scratch = BytesMut::new();
        for offset in log_start_offset..log_end_offset {
            let read = log
                .read(offset, 1, true, &mut scratch)
                .unwrap_or_else(|error| panic!("read at {offset}: {error}"));
            let expected = batches
                .iter()
                .find(|stored| stored.header.last_offset() >= offset);
            match expected {
                None => assert!(read.is_empty(), "a read from {offset} found a batch"),
                Some(stored) => {
                    let header = batch::validate(&read).expect("one whole batch");
                    assert_eq!(
                        (header.base_offset, header.last_offset()),
                        (stored.header.base_offset, stored.header.last_offset()),
                        "a read from {offset} starts at the wrong batch"
                    );
                }
            }
        }
        assert!(
            log.read(log_end_offset, 1 << 20, true, &mut scratch)
                .expect("a read at the log end")
                .is_empty()
        );
        for offset in [log_start_offset - 1, log_end_offset + 1] {
            if offset >= 0 {
                assert!(
                    matches!(
                        log.read(offset, 1 << 20, true, &mut scratch),
                        Err(ReadError::OffsetOutOfRange { .. })
                    ),
                    "a read at {offset} is outside [{log_start_offset}, {log_end_offset}]"
                );
            }
        }
    }

    /// The log is what the model says it is.
    fn check_against(&self, model: &Model) {
        let log = self.log();
        assert_eq!(
            (log.log_start_offset(), log.log_end_offset()),
            (model.log_start_offset, model.log_end_offset()),
            "log start and end offsets"
        );
        let files: Vec<(i64, u64)> = self
            .segment_files()
            .iter()
            .map(|(base, bytes)| (*base, bytes.len() as u64))
            .collect();
        let expected_files: Vec<(i64, u64)> = model
            .segments
            .iter()
            .map(|segment| (segment.base_offset, segment.bytes()))
            .collect();
        assert_eq!(files, expected_files, "segments (base offset, bytes)");
        assert_eq!(log.segment_count(), model.segments.len());
        let stored = self.stored_batches();
        let expected = model.visible_batches();
        let describe = |header: &BatchHeader| {
            (
                header.base_offset,
                header.last_offset(),
                header.records_count,
                header.compression().expect("a known codec"),
                header.is_log_append_time(),
                header
                    .has_producer_id()
                    .then_some((header.producer_id, header.base_sequence)),
                header.max_timestamp,
                header.total_bytes() as u64,
            )
        };
        let model_describe = |batch: &ModelBatch| {
            (
                batch.base_offset,
                batch.last_offset,
                batch.records.len() as i32,
                batch.compression,
                batch.log_append_time,
                batch.producer,
                batch.max_timestamp,
                batch.bytes,
            )
        };
        assert_eq!(
            stored
                .iter()
                .map(|stored| describe(&stored.header))
                .collect::<Vec<_>>(),
            expected
                .iter()
                .map(|batch| model_describe(batch))
                .collect::<Vec<_>>(),
            "batches (base, last, records, codec, LogAppendTime, producer, max time, bytes)"
        );
        for (stored, batch) in stored.iter().zip(&expected) {
            let records: Vec<ModelRecord> = stored
                .records
                .iter()
                .map(|record| ModelRecord {
                    offset: record.offset,
                    key: key_of(record),
                    value: record.value.clone(),
                    timestamp: record.timestamp,
                })
                .collect();
            assert_eq!(
                records, batch.records,
                "records of batch {}",
                batch.base_offset
            );
        }
        let mut scratch = BytesMut::new();
        for offset in model.log_start_offset..model.log_end_offset() {
            let read = log.read(offset, 1, true, &mut scratch).expect("a read");
            let first = (!read.is_empty()).then(|| {
                let header = BatchHeader::parse(&read).expect("a batch");
                (header.base_offset, header.last_offset())
            });
            let expected = model
                .first_batch_from(offset)
                .map(|batch| (batch.base_offset, batch.last_offset));
            assert_eq!(
                first, expected,
                "the first batch a read from {offset} returns"
            );
        }
        let mut targets: BTreeSet<i64> = model
            .batches()
            .flat_map(|batch| &batch.records)
            .map(|record| record.timestamp)
            .filter(|timestamp| *timestamp >= 0)
            .collect();
        targets.extend([0, model.now_ms + 100_000]);
        for target in targets {
            let found = log
                .offset_for_timestamp(target)
                .expect("a timestamp look-up")
                .map(|found| (found.timestamp, found.offset));
            assert_eq!(
                found,
                model.offset_for_timestamp(target),
                "the (time, offset) found for time {target}"
            );
        }
    }
}

struct LogAgainstModel;

impl StateMachineTest for LogAgainstModel {
    type SystemUnderTest = Harness;
    type Reference = Reference;

    fn init_test(model: &Model) -> Harness {
        Harness::new(model.config)
    }

    fn apply(mut harness: Harness, model: &Model, transition: Transition) -> Harness {
        let before = harness.snapshot();
        let outcome = match &transition {
            Transition::Append {
                records,
                no_timestamps,
                compression,
                producer,
                log_append_time,
            } => {
                let appended = harness.append(
                    records,
                    *no_timestamps,
                    *compression,
                    *producer,
                    *log_append_time,
                );
                assert_eq!(
                    (appended.base_offset, appended.last_offset),
                    (
                        before.log_end_offset,
                        before.log_end_offset + records.len() as i64 - 1
                    ),
                    "an append takes offsets from the log end"
                );
                Outcome::Appended(appended)
            }
            Transition::Roll => {
                let now_ms = harness.now_ms;
                harness.log_mut().roll(now_ms).expect("roll");
                Outcome::Nothing
            }
            Transition::Compact { .. } => {
                let params = transition
                    .compaction_params(harness.now_ms)
                    .expect("a Compact transition");
                let stats = harness.log_mut().compact(params).expect("compact");
                Outcome::Compacted(stats)
            }
            Transition::RetainByTime { retention_ms } => {
                let now_ms = harness.now_ms;
                let stats = harness
                    .log_mut()
                    .apply_retention(now_ms, *retention_ms, -1)
                    .expect("retention");
                Outcome::Retained(stats)
            }
            Transition::RetainBySize { retention_bytes } => {
                let now_ms = harness.now_ms;
                let stats = harness
                    .log_mut()
                    .apply_retention(now_ms, -1, *retention_bytes)
                    .expect("retention");
                Outcome::Retained(stats)
            }
            Transition::DeleteRecords { offset } => {
                harness
                    .log_mut()
                    .advance_log_start(*offset)
                    .expect("delete records");
                let expected = before
                    .log_start_offset
                    .max((*offset).min(before.log_end_offset));
                assert_eq!(harness.log().log_start_offset(), expected, "DeleteRecords");
                Outcome::Nothing
            }
            Transition::AdvanceTime { ms } => {
                harness.now_ms += ms;
                Outcome::Nothing
            }
            Transition::Reopen => {
                harness.reopen();
                Outcome::Nothing
            }
        };
        let after = harness.snapshot();
        match (&transition, &outcome) {
            (Transition::Compact { .. }, Outcome::Compacted(Some(stats))) => {
                let params = transition
                    .compaction_params(harness.now_ms)
                    .expect("a Compact transition");
                harness.check_pass(&before, &after, &params, stats.cleaned_up_to);
            }
            (Transition::Compact { .. }, _) => {
                assert_eq!(after, before, "a pass that did not run changed the log");
            }
            (Transition::Reopen, _) => {
                assert_eq!(after.log_start_offset, before.log_start_offset, "reopen");
                assert_eq!(after.log_end_offset, before.log_end_offset, "reopen");
                assert_eq!(
                    after.records, before.records,
                    "a reopen changed the records"
                );
            }
            _ => Harness::check_nothing_removed(&before, &after, &transition),
        }
        assert_eq!(outcome, model.outcome, "the answer to {transition:?}");
        harness
    }

    fn check_invariants(harness: &Harness, model: &Model) {
        harness.check_against_history();
        harness.check_against(model);
    }
}

// 192 cases of up to 40 transitions unless PROPTEST_CASES says otherwise (PROPTEST_CASES=5000
// makes a longer campaign). Failing cases are saved to the regressions file (relative to the
// package directory, where cargo runs integration tests) and replayed first.
prop_state_machine! {
    #![proptest_config(ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            ProptestConfig::default().cases
        } else {
            192
        },
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/log_model.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_log_and_its_cleaner_agree_with_the_reference_model(
        sequential 1..=40 => LogAgainstModel
    );
}
