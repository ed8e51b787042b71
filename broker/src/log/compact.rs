//! Log compaction: keep the latest record of every key in the segments that may be cleaned,
//! keep offsets (gaps are legal), keep tombstones for `delete.retention.ms` after the cleaner
//! first kept them, merge small cleaned segments, and swap the cleaned segments in crash-safely.
//!
//! A pass cleans every inactive segment before the first one holding records younger than
//! `min.compaction.lag.ms`; the active segment is never touched, as in Kafka. The key map
//! covers everything cleanable (Kafka maps only the dirty part), so one pass leaves exactly
//! one record per key in the cleaned range.
//!
//! **Swap protocol** (per group of merged source segments, named after the first, base B):
//! write `B.log.cleaned` and the manifest `B.sources` (the source base offsets), fsync both and
//! the directory; rename `B.log.cleaned` → `B.log.swap` and fsync the directory — the commit
//! point; remove the sources' files; rename `B.log.swap` → `B.log`; remove the manifest; fsync
//! the directory. Recovery (`recover_swaps`, run by `Log::open`) discards a `.cleaned` file and
//! finishes a `.swap` from its manifest, so a crash leaves the old segments or the new one.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, DefaultHasher};
use std::io;
use std::path::Path;

use bytes::Bytes;
use tidepool_io::{Disk, OpenMode, crash_point};
use tidepool_protocol::batch::{self, BatchHeader};
use tidepool_protocol::records::{self, BatchBuilder, DecodeLimits, Record, TimestampType};

use super::Log;
use super::segment::{self, Segment};

/// What a compaction pass decides from, beyond the log itself.
#[derive(Debug, Clone, Copy)]
pub struct CompactionParams {
    pub now_ms: i64,
    pub segment_bytes: u64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    pub delete_retention_ms: i64,
    /// Clean even below the dirty ratio (a test asked for a pass now).
    pub force: bool,
    /// Keys one pass may map (Kafka bounds its map with `log.cleaner.dedupe.buffer.size`); a
    /// log with more distinct keys is cleaned a prefix at a time.
    pub keys_max: usize,
}

/// Key → latest offset. Hashed with a fixed key (SipHash with zero keys via `DefaultHasher`),
/// so a pass behaves the same in every run; only looked up, never iterated, so order cannot
/// leak. Hashing beat a `BTreeMap` of full keys threefold on a million keys.
type KeyMap = HashMap<Bytes, i64, BuildHasherDefault<DefaultHasher>>;

/// What one pass did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompactionStats {
    pub segments_before: usize,
    pub segments_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_before: u64,
    pub records_removed: u64,
    pub tombstones_removed: u64,
    /// Distinct keys with a record left in the cleaned range.
    pub keys_kept: u64,
    /// Everything below this offset is clean now.
    pub cleaned_up_to: i64,
}

/// Per-log cleaner bookkeeping, in memory. After a restart everything counts as dirty and
/// tombstones are timed again from the next pass: both keep data longer, never shorter.
#[derive(Debug, Default)]
pub struct CleanerState {
    /// Offsets below this were cleaned by the last pass (Kafka's cleaner checkpoint).
    pub cleaned_up_to: i64,
    /// Tombstone offset → wall-clock time the cleaner first kept it.
    tombstones_kept_since: BTreeMap<i64, i64>,
}

impl CleanerState {
    /// The batch with only the records to keep, re-encoded in its own codec and timestamp
    /// type, at its own offsets; the original bytes when everything stays.
    #[allow(
        clippy::too_many_arguments,
        reason = "one call site, all parts of one pass"
    )]
    fn clean_batch(
        &mut self,
        bytes: &[u8],
        header: &BatchHeader,
        latest: &KeyMap,
        last_batch_of_producer: &BTreeMap<i64, i64>,
        params: &CompactionParams,
        stats: &mut CompactionStats,
        keys_kept: &mut u64,
    ) -> Vec<u8> {
        if header.is_control() {
            return bytes.to_vec();
        }
        let Ok(decoded) = records::decode(bytes, &decode_limits()) else {
            tracing::warn!(
                base_offset = header.base_offset,
                "kept an unreadable batch uncleaned"
            );
            return bytes.to_vec();
        };
        stats.records_before += decoded.len() as u64;
        let total = decoded.len();
        let mut kept: Vec<Record> = Vec::with_capacity(total);
        for record in decoded {
            if self.keep(&record, latest, params, stats) {
                // Each record kept is its key's latest in the cleaned range: keys are distinct.
                *keys_kept += u64::from(record.key.is_some());
                kept.push(record);
            }
        }
        stats.records_removed += (total - kept.len()) as u64;
        if kept.len() == total {
            return bytes.to_vec();
        }
        if kept.is_empty() {
            let producers_last = header.has_producer_id()
                && last_batch_of_producer.get(&header.producer_id) == Some(&header.base_offset);
            return if producers_last {
                batch::empty_like(header)
            } else {
                Vec::new()
            };
        }
        rebuild(header, kept)
    }

    /// Kafka's retention rule for one record of the cleaned range.
    fn keep(
        &mut self,
        record: &Record,
        latest: &KeyMap,
        params: &CompactionParams,
        stats: &mut CompactionStats,
    ) -> bool {
        // A compacted topic refuses keyless records; any left from before it was compacted go.
        let Some(key) = &record.key else {
            return false;
        };
        if latest.get(key) != Some(&record.offset) {
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
}

fn decode_limits() -> DecodeLimits {
    DecodeLimits::default()
}

impl Log {
    /// The first offset a pass must not clean: the active segment's base, or earlier the
    /// first segment holding records younger than `min.compaction.lag.ms`.
    fn first_uncleanable(&self, params: &CompactionParams) -> i64 {
        let active_base = self.active().base_offset;
        let young = params.now_ms.saturating_sub(params.min_compaction_lag_ms);
        self.segments
            .values()
            .take_while(|segment| segment.base_offset < active_base)
            .find(|segment| params.min_compaction_lag_ms > 0 && segment.max_timestamp() > young)
            .map_or(active_base, |segment| segment.base_offset)
    }

    /// Whether a pass is due: enough of the cleanable log is dirty, or a dirty segment is
    /// older than `max.compaction.lag.ms`.
    fn compaction_due(&self, params: &CompactionParams, first_uncleanable: i64) -> bool {
        let cleanable: Vec<&Segment> = self
            .segments
            .values()
            .filter(|segment| segment.base_offset < first_uncleanable)
            .collect();
        let total: u64 = cleanable.iter().map(|segment| segment.size()).sum();
        if total == 0 {
            return false;
        }
        if params.force {
            return true;
        }
        let dirty: Vec<&&Segment> = cleanable
            .iter()
            .filter(|segment| segment.next_offset() > self.cleaner.cleaned_up_to)
            .collect();
        let dirty_bytes: u64 = dirty.iter().map(|segment| segment.size()).sum();
        let ratio_reached = dirty_bytes as f64 / total as f64 >= params.min_cleanable_dirty_ratio;
        let overdue = dirty.iter().any(|segment| {
            segment
                .time_waited_for_roll(params.now_ms, params.now_ms)
                .is_some_and(|waited| waited > params.max_compaction_lag_ms)
        });
        dirty_bytes > 0 && (ratio_reached || overdue)
    }

    /// One compaction pass; None when nothing was due.
    pub fn compact(&mut self, params: CompactionParams) -> io::Result<Option<CompactionStats>> {
        let mut first_uncleanable = self.first_uncleanable(&params);
        if !self.compaction_due(&params, first_uncleanable) {
            return Ok(None);
        }
        let mut bases: Vec<i64> = self
            .segments
            .keys()
            .copied()
            .filter(|base| *base < first_uncleanable)
            .collect();
        let last_batch_of_producer = self.last_batch_of_each_producer()?;
        let (latest, covered) = self.latest_offset_per_key(&bases, params.keys_max)?;
        if covered < bases.len() {
            // The key map is full: clean the part it covers; the rest waits for a later pass.
            first_uncleanable = bases[covered];
            bases.truncate(covered);
        }
        let mut stats = CompactionStats {
            segments_before: bases.len(),
            cleaned_up_to: first_uncleanable,
            ..CompactionStats::default()
        };
        let mut keys_kept = 0u64;
        for group in self.group_by_size(&bases, params.segment_bytes) {
            let mut output = Vec::new();
            for base in &group {
                let segment = &self.segments[base];
                stats.bytes_before += segment.size();
                for location in segment.batches()? {
                    let bytes = segment.read_batch(location)?;
                    let cleaned = self.cleaner.clean_batch(
                        &bytes,
                        &location.header,
                        &latest,
                        &last_batch_of_producer,
                        &params,
                        &mut stats,
                        &mut keys_kept,
                    );
                    output.extend_from_slice(&cleaned);
                }
            }
            stats.bytes_after += output.len() as u64;
            self.swap_in(&group, &output, params.now_ms)?;
            stats.segments_after += 1;
        }
        stats.keys_kept = keys_kept;
        self.cleaner.cleaned_up_to = first_uncleanable;
        let live_tombstones: Vec<i64> =
            self.cleaner.tombstones_kept_since.keys().copied().collect();
        for offset in live_tombstones {
            if offset < self.log_start_offset {
                self.cleaner.tombstones_kept_since.remove(&offset);
            }
        }
        Ok(Some(stats))
    }

    /// Producer id → base offset of its last batch anywhere in the log, so the cleaner keeps
    /// (at least an empty stand-in for) that batch and the producer's state survives.
    fn last_batch_of_each_producer(&self) -> io::Result<BTreeMap<i64, i64>> {
        let mut last = BTreeMap::new();
        for segment in self.segments.values() {
            for location in segment.batches()? {
                if location.header.has_producer_id() {
                    last.insert(location.header.producer_id, location.header.base_offset);
                }
            }
        }
        Ok(last)
    }

    /// Each key's latest offset over `bases`, in order, until the map holds `keys_max` keys:
    /// then the pass stops after that segment (as Kafka's cleaner stops where its dedupe buffer
    /// fills). Returns the map and how many of `bases` it covers.
    fn latest_offset_per_key(&self, bases: &[i64], keys_max: usize) -> io::Result<(KeyMap, usize)> {
        let mut latest = KeyMap::default();
        for (covered, base) in bases.iter().enumerate() {
            if latest.len() >= keys_max {
                return Ok((latest, covered));
            }
            let segment = &self.segments[base];
            for location in segment.batches()? {
                if location.header.is_control() {
                    continue;
                }
                let bytes = segment.read_batch(location)?;
                // An unreadable batch is kept whole (see clean_batch); its keys are not mapped.
                let Ok(decoded) = records::decode(&bytes, &decode_limits()) else {
                    continue;
                };
                for record in decoded {
                    if let Some(key) = record.key {
                        // A copy: the decoded key is a slice of the whole batch, which a map
                        // entry would otherwise keep alive.
                        latest.insert(Bytes::copy_from_slice(&key), record.offset);
                    }
                }
            }
        }
        Ok((latest, bases.len()))
    }

    /// Consecutive segments whose sizes together stay within `segment.bytes`, as Kafka groups
    /// them: small cleaned segments merge, none grows past the limit.
    fn group_by_size(&self, bases: &[i64], segment_bytes: u64) -> Vec<Vec<i64>> {
        let mut groups: Vec<Vec<i64>> = Vec::new();
        let mut group_bytes = 0u64;
        for base in bases {
            let size = self.segments[base].size();
            match groups.last_mut() {
                Some(group) if group_bytes + size <= segment_bytes => {
                    group.push(*base);
                    group_bytes += size;
                }
                _ => {
                    groups.push(vec![*base]);
                    group_bytes = size;
                }
            }
        }
        groups
    }

    /// Replaces the segments `sources` with one segment of `output` (see the module's swap
    /// protocol), in the files and in memory.
    fn swap_in(&mut self, sources: &[i64], output: &[u8], now_ms: i64) -> io::Result<()> {
        let base = sources[0];
        write_swap(self.disk.as_ref(), &self.dir, sources, output)?;
        finish_swap(self.disk.as_ref(), &self.dir, base, sources)?;
        for source in sources {
            self.segments.remove(source);
        }
        let (segment, truncation) = Segment::open(
            self.disk.as_ref(),
            &self.dir,
            base,
            self.config.index_interval_bytes,
            false,
            now_ms,
            &mut |_| {},
        )?;
        debug_assert_eq!(truncation.removed_bytes, 0, "a cleaned segment is whole");
        self.segments.insert(base, segment);
        Ok(())
    }
}

/// Re-encodes `kept` records as `header`'s batch would: same base offset, leader epoch,
/// codec, timestamp type, producer and (for idempotent producers) sequence range.
fn rebuild(header: &BatchHeader, kept: Vec<Record>) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    builder
        .base_offset(header.base_offset)
        .partition_leader_epoch(header.partition_leader_epoch)
        .compression(header.compression().unwrap_or(batch::Compression::None))
        .timestamp_type(if header.is_log_append_time() {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        })
        .producer(
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
        )
        .transactional(header.is_transactional());
    for record in kept {
        builder.push(record);
    }
    let Ok(built) = builder.build() else {
        tracing::warn!(
            base_offset = header.base_offset,
            "could not re-encode a cleaned batch; kept nothing of it"
        );
        return Vec::new();
    };
    let mut bytes = built.to_vec();
    if header.is_log_append_time() {
        batch::set_log_append_time(&mut bytes, header.max_timestamp);
    }
    if header.has_producer_id() {
        batch::set_last_offset_delta(&mut bytes, header.last_offset_delta);
    }
    bytes
}

fn stem_path(dir: &Path, base: i64, suffix: &str) -> std::path::PathBuf {
    dir.join(format!("{}{suffix}", segment::file_stem(base)))
}

fn write_file(disk: &dyn Disk, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let file = disk.open(path, OpenMode::CreateOrOpen)?;
    file.set_len(0)?;
    file.write_at(0, bytes)?;
    file.sync()
}

/// Writes the cleaned segment and its manifest, then renames it to `.swap`: the commit point.
fn write_swap(disk: &dyn Disk, dir: &Path, sources: &[i64], output: &[u8]) -> io::Result<()> {
    let base = sources[0];
    let cleaned = stem_path(dir, base, ".log.cleaned");
    write_file(disk, &cleaned, output)?;
    let manifest: Vec<String> = sources.iter().map(i64::to_string).collect();
    write_file(
        disk,
        &stem_path(dir, base, ".sources"),
        manifest.join(",").as_bytes(),
    )?;
    disk.sync_dir(dir)?;
    crash_point!(disk, "cleaner.swap.written");
    disk.rename(&cleaned, &stem_path(dir, base, ".log.swap"))?;
    disk.sync_dir(dir)?;
    crash_point!(disk, "cleaner.swap.committed");
    Ok(())
}

/// Removes the source segments' files and puts the `.swap` in place as `B.log`.
fn finish_swap(disk: &dyn Disk, dir: &Path, base: i64, sources: &[i64]) -> io::Result<()> {
    for source in sources {
        for suffix in [".log", ".index", ".timeindex"] {
            let path = stem_path(dir, *source, suffix);
            if disk.exists(&path) {
                disk.remove_file(&path)?;
            }
        }
    }
    crash_point!(disk, "cleaner.swap.finished");
    disk.rename(
        &stem_path(dir, base, ".log.swap"),
        &stem_path(dir, base, ".log"),
    )?;
    disk.sync_dir(dir)?;
    crash_point!(disk, "cleaner.swap.renamed");
    let manifest = stem_path(dir, base, ".sources");
    if disk.exists(&manifest) {
        disk.remove_file(&manifest)?;
    }
    disk.sync_dir(dir)
}

/// Before a log opens: discards cleaned segments that never reached the commit point and
/// finishes swaps that did.
pub fn recover_swaps(disk: &dyn Disk, dir: &Path) -> io::Result<()> {
    let names = disk.list(dir)?;
    let base_of = |name: &str, suffix: &str| {
        name.strip_suffix(suffix)
            .and_then(|stem| stem.parse::<i64>().ok())
    };
    for name in &names {
        if let Some(base) = base_of(name, ".log.cleaned") {
            disk.remove_file(&dir.join(name))?;
            let manifest = stem_path(dir, base, ".sources");
            if disk.exists(&manifest) {
                disk.remove_file(&manifest)?;
            }
        }
    }
    for name in &names {
        if let Some(base) = base_of(name, ".log.swap") {
            let sources = read_manifest(disk, &stem_path(dir, base, ".sources"))?;
            tracing::warn!(dir = %dir.display(), base, "finishing an interrupted compaction swap");
            finish_swap(disk, dir, base, &sources)?;
        }
    }
    for name in disk.list(dir)? {
        if base_of(&name, ".sources").is_some() {
            disk.remove_file(&dir.join(&name))?;
        }
    }
    Ok(())
}

fn read_manifest(disk: &dyn Disk, path: &Path) -> io::Result<Vec<i64>> {
    let file = disk.open(path, OpenMode::Existing)?;
    let mut bytes = vec![0u8; file.len()? as usize];
    file.read_exact_at(0, &mut bytes)?;
    String::from_utf8_lossy(&bytes)
        .split(',')
        .map(|base| {
            base.trim().parse::<i64>().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad swap manifest {}", path.display()),
                )
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "compact_tests.rs"]
mod tests;
