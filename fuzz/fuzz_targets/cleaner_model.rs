//! The compaction cleaner (`Log::compact`) against a model of what it must keep.
//!
//! The input is a sequence of operations (`arbitrary`): append a batch of keyed records and
//! tombstones over five keys in any codec, roll the segment, run a forced cleaner pass (with a
//! delete retention and a key-map bound), let time pass, reopen the log from its files. The
//! model is a map offset → record of what the log should hold, plus, per tombstone, the time
//! the cleaner first kept it. Its rules, from Kafka's cleaner:
//! - a pass cleans every segment below the active one, or, when its key map fills
//!   (`keys_max`), the segments before the one where it filled; that offset is the clean point;
//! - below the clean point a record survives only if it is the latest of its key below the
//!   clean point; a surviving tombstone is removed by the first pass at least
//!   `delete.retention.ms` after the pass that first kept it (timing restarts after a reopen);
//! - nothing at or above the clean point changes.
//!
//! After every operation the log must hold exactly the model's records, at their original
//! offsets, in strictly increasing order, each with its key, value and timestamp.

#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tidepool_broker::log::compact::CompactionParams;
use tidepool_broker::log::{Log, LogConfig};
use tidepool_io::{Disk, MemDisk};
use tidepool_protocol::batch::{self, Compression};
use tidepool_protocol::records::{self, BatchBuilder, DecodeLimits};

const DIR: &str = "/data/compacted-0";
const KEYS: u8 = 5;
const START_MS: i64 = 1_700_000_000_000;
/// Segments roll only when asked: the model then knows every segment boundary.
const CONFIG: LogConfig = LogConfig {
    segment_bytes: 1 << 30,
    segment_ms: i64::MAX,
    index_interval_bytes: 128,
};

#[derive(Debug, Arbitrary)]
enum Op {
    /// One batch; each entry is (key, value): `None` is a tombstone.
    Append {
        records: Vec<(u8, Option<u8>)>,
        codec: u8,
    },
    Roll,
    Clean {
        delete_retention_ms: u8,
        keys_max: u8,
        merge: bool,
    },
    Wait {
        ms: u8,
    },
    Reopen,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelRecord {
    key: u8,
    value: Option<u8>,
    timestamp: i64,
}

#[derive(Default)]
struct Model {
    records: BTreeMap<i64, ModelRecord>,
    log_end: i64,
    /// Base offsets of the segments; the last is the active one.
    segment_bases: Vec<i64>,
    /// Tombstone offset → time of the pass that first kept it.
    tombstones_kept_since: BTreeMap<i64, i64>,
    now_ms: i64,
}

impl Model {
    fn active_base(&self) -> i64 {
        *self.segment_bases.last().expect("a log has a segment")
    }

    /// Where a pass with a key map of `keys_max` keys stops: the active segment, or the first
    /// segment it reaches with the map already full. None when there is nothing to clean.
    fn clean_point(&self, keys_max: usize) -> Option<i64> {
        let active = self.active_base();
        let cleanable: Vec<i64> = self
            .segment_bases
            .iter()
            .copied()
            .filter(|base| *base < active)
            .collect();
        // The log skips a pass when the cleanable segments hold no bytes, which, with no
        // producer ids (whose emptied last batch would stay), means no records.
        self.records.range(..active).next()?;
        let mut keys = BTreeSet::new();
        for (index, base) in cleanable.iter().enumerate() {
            if keys.len() >= keys_max {
                return Some(*base);
            }
            let end = cleanable.get(index + 1).copied().unwrap_or(active);
            keys.extend(self.records.range(base..&end).map(|(_, record)| record.key));
        }
        Some(active)
    }

    fn clean(&mut self, clean_point: i64, delete_retention_ms: i64) {
        let mut latest: BTreeMap<u8, i64> = BTreeMap::new();
        for (offset, record) in self.records.range(..clean_point) {
            latest.insert(record.key, *offset);
        }
        let below: Vec<i64> = self
            .records
            .range(..clean_point)
            .map(|(offset, _)| *offset)
            .collect();
        for offset in below {
            let record = &self.records[&offset];
            let is_latest = latest[&record.key] == offset;
            let keep = if !is_latest {
                false
            } else if record.value.is_some() {
                true
            } else {
                let since = *self
                    .tombstones_kept_since
                    .entry(offset)
                    .or_insert(self.now_ms);
                self.now_ms - since < delete_retention_ms
            };
            if !keep {
                self.records.remove(&offset);
                self.tombstones_kept_since.remove(&offset);
            }
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let disk: Arc<dyn Disk> = Arc::new(MemDisk::new());
    let dir = Path::new(DIR);
    let mut log = Log::create(disk.clone(), dir, CONFIG, START_MS).unwrap();
    let mut model = Model {
        segment_bases: vec![0],
        now_ms: START_MS,
        ..Model::default()
    };
    for op in ops.into_iter().take(64) {
        match op {
            Op::Append { records, codec } => {
                if records.is_empty() {
                    continue;
                }
                let mut builder = BatchBuilder::new();
                builder.compression(codec_of(codec));
                for (index, (key, value)) in records.iter().take(8).enumerate() {
                    let record = ModelRecord {
                        key: key % KEYS,
                        value: *value,
                        timestamp: model.now_ms + index as i64,
                    };
                    builder.append(
                        record.timestamp,
                        Some(key_bytes(record.key)),
                        record.value.map(value_bytes),
                        vec![],
                    );
                    model.records.insert(model.log_end + index as i64, record);
                }
                let count = builder.len() as i64;
                let appended = log
                    .append(&builder.build().unwrap(), 0, None, model.now_ms)
                    .unwrap();
                assert_eq!(appended.base_offset, model.log_end);
                assert_eq!(appended.last_offset, model.log_end + count - 1);
                model.log_end += count;
            }
            Op::Roll => {
                log.roll(model.now_ms).unwrap();
                // Log::roll does nothing on an empty active segment.
                if log.log_end_offset() > model.active_base() {
                    model.segment_bases.push(model.log_end);
                }
            }
            Op::Clean {
                delete_retention_ms,
                keys_max,
                merge,
            } => {
                let keys_max = 1 + usize::from(keys_max % (KEYS + 1));
                let delete_retention_ms = i64::from(delete_retention_ms % 8) * 10;
                let params = CompactionParams {
                    now_ms: model.now_ms,
                    segment_bytes: if merge { 1 << 30 } else { 1 },
                    min_compaction_lag_ms: 0,
                    max_compaction_lag_ms: i64::MAX,
                    min_cleanable_dirty_ratio: 0.5,
                    delete_retention_ms,
                    force: true,
                    keys_max,
                };
                let expected = model.clean_point(keys_max);
                let stats = log.compact(params).unwrap();
                assert_eq!(
                    stats.as_ref().map(|stats| stats.cleaned_up_to),
                    expected,
                    "clean point"
                );
                if let Some(clean_point) = expected {
                    model.clean(clean_point, delete_retention_ms);
                    // Cleaned segments are replaced (merged or not): from here the model knows
                    // only that they all lie below the clean point; re-read their bases.
                    model.segment_bases = segment_bases(&*disk, dir);
                }
            }
            Op::Wait { ms } => model.now_ms += i64::from(ms) * 5,
            Op::Reopen => {
                drop(log);
                let recovered =
                    Log::open(disk.clone(), dir, CONFIG, true, model.now_ms, &mut |_| {}).unwrap();
                assert_eq!(
                    recovered.removed_bytes, 0,
                    "a clean shutdown leaves nothing to cut: {:?}",
                    recovered.reason
                );
                log = recovered.log;
                model.tombstones_kept_since.clear();
            }
        }
        check(&log, &model);
    }
});

fn codec_of(pick: u8) -> Compression {
    [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ][usize::from(pick % 5)]
}

fn key_bytes(key: u8) -> Bytes {
    Bytes::from(vec![b'k', key])
}

fn value_bytes(value: u8) -> Bytes {
    Bytes::from(vec![b'v', value])
}

fn segment_bases(disk: &dyn Disk, dir: &Path) -> Vec<i64> {
    let mut bases: Vec<i64> = disk
        .list(dir)
        .unwrap()
        .iter()
        .filter_map(|name| name.strip_suffix(".log")?.parse().ok())
        .collect();
    bases.sort_unstable();
    bases
}

/// The log holds exactly the model's records, in order, at their offsets.
fn check(log: &Log, model: &Model) {
    assert_eq!(log.log_end_offset(), model.log_end);
    assert_eq!(log.log_start_offset(), 0);
    let mut found = BTreeMap::new();
    let mut scratch = BytesMut::new();
    let mut offset = 0;
    let mut previous = None;
    while offset < log.log_end_offset() {
        let bytes = log.read(offset, usize::MAX, true, &mut scratch).unwrap();
        if bytes.is_empty() {
            break;
        }
        for range in batch::split(&bytes).unwrap() {
            let stored = &bytes[range];
            let header = batch::validate(stored).expect("stored batches stay valid");
            for record in records::decode(stored, &DecodeLimits::default()).unwrap() {
                assert!(
                    previous.is_none_or(|previous| record.offset > previous),
                    "offsets increase"
                );
                previous = Some(record.offset);
                let key = record.key.expect("every record has a key");
                found.insert(
                    record.offset,
                    ModelRecord {
                        key: key[1],
                        value: record.value.map(|value| value[1]),
                        timestamp: record.timestamp,
                    },
                );
            }
            offset = header.last_offset() + 1;
        }
    }
    assert_eq!(found, model.records, "the log holds the model's records");
}
