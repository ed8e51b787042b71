//! The partition log: an ordered map of segments, the offsets that bound it, and the leader
//! epoch history that OffsetForLeaderEpoch and truncation detection read.
//!
//! **Invariants:** `log_start_offset ≤ high_watermark ≤ log_end_offset`; offsets only grow;
//! only the last segment is written; batches are stored exactly as received except for the
//! base offset, the partition leader epoch and, for LogAppendTime, the timestamp and CRC.

pub mod compact;
mod index;
mod segment;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tidepool_io::{Disk, crash_point};
use tidepool_protocol::batch::{self, BatchHeader, HEADER_BYTES};
use tidepool_protocol::records::{self, DecodeLimits, RecordTimestamp};

use segment::{BatchLocation, Segment};

/// The parts of a topic's config the log acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub index_interval_bytes: u64,
}

/// Where a batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("offset {offset} is outside [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    #[error("log read failed: {0}")]
    Io(#[from] io::Error),
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionStats {
    pub segments_removed: usize,
    pub bytes_removed: u64,
    pub log_start_offset: i64,
}

/// A record found by timestamp, with the leader epoch of the batch holding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampedOffset {
    pub timestamp: i64,
    pub offset: i64,
    pub leader_epoch: i32,
}

/// Picks a record of a stored batch. A batch whose records cannot be read (compressed bytes
/// the codec rejects: produce checks only the batch CRC) falls back to its header: base offset
/// and max timestamp.
fn pick_record(
    batch: &[u8],
    pick: impl Fn(&[RecordTimestamp]) -> Option<RecordTimestamp>,
) -> Option<TimestampedOffset> {
    let header = BatchHeader::parse(batch).ok()?;
    let picked = match records::timestamps(batch, &DecodeLimits::default()) {
        Ok(timestamps) => pick(&timestamps),
        Err(error) => {
            tracing::warn!(%error, base_offset = header.base_offset, "stored batch has unreadable records");
            Some(RecordTimestamp {
                offset: header.base_offset,
                timestamp: header.max_timestamp,
            })
        }
    };
    picked.map(|record| TimestampedOffset {
        timestamp: record.timestamp,
        offset: record.offset,
        leader_epoch: header.partition_leader_epoch,
    })
}

/// A log opened from its files, and what recovery had to cut.
pub struct Recovered {
    pub log: Log,
    /// Bytes removed from torn or corrupt tails and from segments after them.
    pub removed_bytes: u64,
    pub removed_segments: usize,
    /// Why recovery cut the log, if it did.
    pub reason: Option<String>,
}

/// Base offsets of the segments in `dir`, ascending. Index files without a segment (left by
/// a crash between creating them) are removed.
fn segment_bases(disk: &dyn Disk, dir: &Path) -> io::Result<Vec<i64>> {
    let names = disk.list(dir)?;
    let base_of = |name: &str, suffix: &str| {
        name.strip_suffix(suffix)
            .and_then(|stem| stem.parse::<i64>().ok())
    };
    let bases: Vec<i64> = names
        .iter()
        .filter_map(|name| base_of(name, ".log"))
        .collect();
    for name in &names {
        let orphan = [".index", ".timeindex"]
            .iter()
            .filter_map(|suffix| base_of(name, suffix))
            .any(|base| !bases.contains(&base));
        if orphan {
            disk.remove_file(&dir.join(name))?;
        }
    }
    let mut sorted = bases;
    sorted.sort_unstable();
    Ok(sorted)
}

/// Removes a segment's files; returns the log bytes removed.
fn remove_segment_files(disk: &dyn Disk, dir: &Path, base: i64) -> io::Result<u64> {
    let stem = segment::file_stem(base);
    let log_path = dir.join(format!("{stem}.log"));
    let bytes = disk
        .open(&log_path, tidepool_io::OpenMode::Existing)?
        .len()?;
    for suffix in ["log", "index", "timeindex"] {
        let path = dir.join(format!("{stem}.{suffix}"));
        if disk.exists(&path) {
            disk.remove_file(&path)?;
        }
        if suffix == "log" {
            crash_point!(disk, "log.segment.log_removed");
        }
    }
    Ok(bytes)
}

/// One entry of the leader epoch history: `epoch` began at `start_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochStart {
    pub epoch: i32,
    pub start_offset: i64,
}

pub struct Log {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    config: LogConfig,
    /// Keyed by base offset; never empty; only the last one is written.
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    /// Ascending by epoch and by start offset.
    epochs: Vec<EpochStart>,
    /// A segment file was created since the directory was last fsynced: the next sync must
    /// make its directory entry durable too.
    directory_dirty: bool,
    cleaner: compact::CleanerState,
}

impl Log {
    /// Creates an empty log in `dir` (which must not hold one).
    /// The directory and its entry in the parent are fsynced before this returns, so a topic
    /// recorded after its logs were created finds them after a crash.
    pub fn create(
        disk: Arc<dyn Disk>,
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
    ) -> io::Result<Log> {
        disk.create_dir_all(dir)?;
        let first = Segment::create(disk.as_ref(), dir, 0, config.index_interval_bytes, now_ms)?;
        disk.sync_dir(dir)?;
        if let Some(parent) = dir.parent() {
            disk.sync_dir(parent)?;
        }
        Ok(Log {
            disk,
            dir: dir.to_path_buf(),
            config,
            segments: BTreeMap::from([(0, first)]),
            log_start_offset: 0,
            epochs: Vec::new(),
            directory_dirty: false,
            cleaner: compact::CleanerState::default(),
        })
    }

    /// Opens the log in `dir`, recovering it: every segment's batch headers are checked, and
    /// with `verify_all_crcs` every batch's CRC-32C too; the last segment's always are. The
    /// log is cut at the first batch that fails — a torn write or corruption — and segments
    /// after it are removed, so what remains is a prefix of what was written. Indexes and the
    /// leader epoch history are rebuilt from the batches; `on_batch` sees each kept batch
    /// header in order (the partition rebuilds its producer state from them).
    pub fn open(
        disk: Arc<dyn Disk>,
        dir: &Path,
        config: LogConfig,
        verify_all_crcs: bool,
        now_ms: i64,
        on_batch: &mut dyn FnMut(&BatchHeader),
    ) -> io::Result<Recovered> {
        compact::recover_swaps(disk.as_ref(), dir)?;
        let bases = segment_bases(disk.as_ref(), dir)?;
        if bases.is_empty() {
            let log = Log::create(disk, dir, config, now_ms)?;
            return Ok(Recovered {
                log,
                removed_bytes: 0,
                removed_segments: 0,
                reason: None,
            });
        }
        let mut segments: BTreeMap<i64, Segment> = BTreeMap::new();
        let mut epochs: Vec<EpochStart> = Vec::new();
        let mut removed_bytes = 0;
        let mut removed_segments = 0;
        let mut reason = None;
        // The batch headers of the last segment kept so far, and whether its CRCs were checked.
        // A cut can leave an earlier, unchecked segment last (and so active); its CRCs are then
        // checked before anything of it reaches `on_batch` or the epoch history. Otherwise the
        // next recovery, which always checks the last segment, could cut batches this one kept
        // — and every append acknowledged into the segment since.
        let mut held: Vec<BatchHeader> = Vec::new();
        let mut held_verified = true;
        for (index, &base) in bases.iter().enumerate() {
            let after_previous = segments
                .values()
                .next_back()
                .is_none_or(|previous| base >= previous.next_offset());
            if reason.is_some() || !after_previous {
                reason.get_or_insert_with(|| format!("segment {base} overlaps the one before it"));
                removed_bytes += remove_segment_files(disk.as_ref(), dir, base)?;
                removed_segments += 1;
                continue;
            }
            let verify = verify_all_crcs || index + 1 == bases.len();
            let mut headers = Vec::new();
            let (segment, truncation) = Segment::open(
                disk.as_ref(),
                dir,
                base,
                config.index_interval_bytes,
                verify,
                now_ms,
                &mut |header: &BatchHeader| headers.push(*header),
            )?;
            removed_bytes += truncation.removed_bytes;
            if let Some(why) = truncation.reason {
                reason = Some(format!("segment {base}: {why}"));
            }
            // A later segment was kept: the one before it is final.
            release_headers(&mut held, &mut epochs, on_batch);
            held = headers;
            held_verified = verify;
            segments.insert(base, segment);
        }
        if !held_verified && let Some((&base, _)) = segments.last_key_value() {
            segments.remove(&base);
            let mut headers = Vec::new();
            let (segment, truncation) = Segment::open(
                disk.as_ref(),
                dir,
                base,
                config.index_interval_bytes,
                true,
                now_ms,
                &mut |header: &BatchHeader| headers.push(*header),
            )?;
            removed_bytes += truncation.removed_bytes;
            if let Some(why) = truncation.reason {
                reason = Some(format!("segment {base}: {why}"));
            }
            held = headers;
            segments.insert(base, segment);
        }
        release_headers(&mut held, &mut epochs, on_batch);
        let log_start_offset = *segments
            .keys()
            .next()
            .expect("at least one segment was kept");
        let log = Log {
            disk,
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset,
            epochs,
            directory_dirty: false,
            cleaner: compact::CleanerState::default(),
        };
        Ok(Recovered {
            log,
            removed_bytes,
            removed_segments,
            reason,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The disk the log's files are on (for crash points and buggify sites above the log).
    pub fn disk(&self) -> &dyn Disk {
        self.disk.as_ref()
    }

    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// One past the last offset written.
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    /// Everything written is committed: replicas share this log in one process, so the high
    /// watermark is the log end offset (kept as its own name for when that stops being true).
    pub fn high_watermark(&self) -> i64 {
        self.log_end_offset()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log has a segment")
    }

    /// Appends one validated batch: assigns its offsets from the log end, stamps the leader
    /// epoch and, if given, LogAppendTime. Rolls the active segment first when it is full or old.
    pub fn append(
        &mut self,
        batch: &[u8],
        leader_epoch: i32,
        log_append_time: Option<i64>,
        now_ms: i64,
    ) -> io::Result<Appended> {
        // Only the header changes, so only the header is copied: the records go to the
        // segment straight from the request.
        let (received_header, records) = batch.split_at(HEADER_BYTES);
        let mut header = [0u8; HEADER_BYTES];
        header.copy_from_slice(received_header);
        let base_offset = self.log_end_offset();
        batch::set_base_offset(&mut header, base_offset);
        batch::set_partition_leader_epoch(&mut header, leader_epoch);
        if let Some(timestamp) = log_append_time {
            batch::stamp_log_append_time(&mut header, records, timestamp);
        }
        let parsed = BatchHeader::parse(&header).map_err(io::Error::other)?;
        self.maybe_roll(
            batch.len() as u64,
            parsed.max_timestamp,
            parsed.last_offset(),
            now_ms,
        )?;
        self.assign_epoch(leader_epoch, base_offset);
        let disk: &dyn Disk = self.disk.as_ref();
        let active = self
            .segments
            .values_mut()
            .next_back()
            .expect("a log has a segment");
        active.append(disk, &header, records)?;
        Ok(Appended {
            base_offset,
            last_offset: parsed.last_offset(),
        })
    }

    /// Rolls when the incoming batch would pass `segment.bytes`, or when the active segment
    /// has been open longer than `segment.ms` by Kafka's rule (record time of the incoming batch
    /// against the segment's first batch; see `Segment::time_waited_for_roll`), or when the
    /// batch's last offset is too far from the segment's base for the 32-bit relative offsets
    /// of the indexes (Kafka rolls then too: a batch can claim two billion offsets).
    fn maybe_roll(
        &mut self,
        incoming_bytes: u64,
        incoming_timestamp: i64,
        incoming_last_offset: i64,
        now_ms: i64,
    ) -> io::Result<()> {
        let active = self.active();
        let full = active.size() + incoming_bytes > self.config.segment_bytes;
        let old = active
            .time_waited_for_roll(incoming_timestamp, now_ms)
            .is_some_and(|waited| waited > self.config.segment_ms);
        let far = u32::try_from(incoming_last_offset.saturating_sub(active.base_offset)).is_err();
        if !active.is_empty() && (full || old || far) {
            self.roll(now_ms)?;
        }
        Ok(())
    }

    /// Starts a new active segment at the log end offset. A no-op on an empty active segment.
    pub fn roll(&mut self, now_ms: i64) -> io::Result<()> {
        if self.active().is_empty() {
            return Ok(());
        }
        self.active().sync()?;
        let base_offset = self.log_end_offset();
        let segment = Segment::create(
            self.disk.as_ref(),
            &self.dir,
            base_offset,
            self.config.index_interval_bytes,
            now_ms,
        )?;
        self.segments.insert(base_offset, segment);
        self.directory_dirty = true;
        crash_point!(self.disk, "log.roll.created");
        Ok(())
    }

    /// Moves the log start offset forward (DeleteRecords, or restoring it on open): offsets
    /// below it are gone, and segments wholly below it are removed. Never past the high
    /// watermark, never backwards.
    pub fn advance_log_start(&mut self, offset: i64) -> io::Result<()> {
        let offset = offset.min(self.high_watermark());
        if offset <= self.log_start_offset {
            return Ok(());
        }
        self.log_start_offset = offset;
        // Kafka's rule: a segment goes when the next one starts at or below the log start. So
        // the first segment never starts past the log start, and a reopen (which starts the
        // log at its first segment, then restores the saved log start) finds the same one.
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        let below: Vec<i64> = bases
            .windows(2)
            .take_while(|pair| pair[1] <= offset)
            .map(|pair| pair[0])
            .collect();
        for base in below {
            self.remove_segment(base)?;
        }
        Ok(())
    }

    /// Deletes the oldest inactive segments while they are older than `retention_ms` (by
    /// their newest record) or the log is larger than `retention_bytes` without them; -1
    /// disables either. The active segment is never deleted. Kafka's time and size retention.
    pub fn apply_retention(
        &mut self,
        now_ms: i64,
        retention_ms: i64,
        retention_bytes: i64,
    ) -> io::Result<RetentionStats> {
        let mut stats = RetentionStats::default();
        let mut total: u64 = self.segments.values().map(Segment::size).sum();
        let active_base = self.active().base_offset;
        let candidates: Vec<(i64, u64, i64)> = self
            .segments
            .values()
            .take_while(|segment| segment.base_offset != active_base)
            .map(|segment| (segment.base_offset, segment.size(), segment.max_timestamp()))
            .collect();
        for (base, size, max_timestamp) in candidates {
            let expired = retention_ms >= 0 && max_timestamp < now_ms.saturating_sub(retention_ms);
            let oversized =
                retention_bytes >= 0 && total.saturating_sub(size) >= retention_bytes as u64;
            if !(expired || oversized) {
                break;
            }
            self.remove_segment(base)?;
            total -= size;
            stats.segments_removed += 1;
            stats.bytes_removed += size;
        }
        let first_base = self.segments.keys().next().copied().unwrap_or(active_base);
        self.log_start_offset = self.log_start_offset.max(first_base);
        stats.log_start_offset = self.log_start_offset;
        Ok(stats)
    }

    fn remove_segment(&mut self, base: i64) -> io::Result<()> {
        self.segments.remove(&base);
        remove_segment_files(self.disk.as_ref(), &self.dir, base)?;
        self.directory_dirty = true;
        Ok(())
    }

    /// Records that `epoch` starts at `start_offset` (a new leader, or the first batch of it).
    pub fn assign_epoch(&mut self, epoch: i32, start_offset: i64) {
        match self.epochs.last() {
            Some(last) if last.epoch >= epoch => {}
            _ => self.epochs.push(EpochStart {
                epoch,
                start_offset,
            }),
        }
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.last().map(|entry| entry.epoch)
    }

    /// Kafka's `endOffsetFor`: the largest epoch ≤ `requested` and the offset where the next
    /// epoch starts (the log end for the latest epoch); `(-1, -1)` when unknown.
    pub fn end_offset_for_epoch(&self, requested: i32) -> (i32, i64) {
        const UNDEFINED: (i32, i64) = (-1, -1);
        if requested < 0 {
            return UNDEFINED;
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, self.log_end_offset());
        }
        let higher = self
            .epochs
            .partition_point(|entry| entry.epoch <= requested);
        let Some(next) = self.epochs.get(higher) else {
            return UNDEFINED;
        };
        match higher.checked_sub(1).map(|floor| self.epochs[floor]) {
            Some(floor) => (floor.epoch, next.start_offset),
            None => (requested, next.start_offset),
        }
    }

    /// Whole batches from the one holding `offset`, up to `bytes_max` (at least one batch when
    /// `first_batch_always`), never past the high watermark. Read through `scratch` (see
    /// `Segment::read_batches`).
    pub fn read(
        &self,
        offset: i64,
        bytes_max: usize,
        first_batch_always: bool,
        scratch: &mut BytesMut,
    ) -> Result<Bytes, ReadError> {
        let log_end_offset = self.log_end_offset();
        if offset < self.log_start_offset || offset > log_end_offset {
            return Err(ReadError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset,
            });
        }
        let Some((segment, start)) = self.locate(offset)? else {
            return Ok(Bytes::new());
        };
        let high_watermark = self.high_watermark();
        Ok(segment.read_batches(
            start,
            bytes_max,
            high_watermark,
            first_batch_always,
            scratch,
        )?)
    }

    /// The segment and batch holding `offset`, looking past segments that end before it.
    fn locate(&self, offset: i64) -> io::Result<Option<(&Segment, BatchLocation)>> {
        let floor = self
            .segments
            .range(..=offset)
            .next_back()
            .map_or(self.log_start_offset, |(&base, _)| base);
        for segment in self.segments.range(floor..).map(|(_, segment)| segment) {
            if let Some(location) = segment.find_batch(offset)? {
                return Ok(Some((segment, location)));
            }
        }
        Ok(None)
    }

    /// The first record with a timestamp at or past `target` (ListOffsets by timestamp).
    ///
    /// Searching goes on past a batch that has no such record at or above the log start (an
    /// empty batch the cleaner kept for its producer still carries its old max timestamp), and
    /// past the end of its segment. Kafka stops at the end of the first segment whose largest
    /// timestamp reaches the target, answering "none" in that corner; we answer the record.
    pub fn offset_for_timestamp(&self, target: i64) -> io::Result<Option<TimestampedOffset>> {
        let floor = self.log_start_offset;
        let candidates = self
            .segments
            .values()
            .filter(|segment| segment.max_timestamp() >= target && segment.next_offset() > floor);
        for segment in candidates {
            let mut next = segment.find_batch_by_timestamp(target)?;
            while let Some(location) = next {
                if location.header.last_offset() >= floor {
                    let batch = segment.read_batch(location)?;
                    let found = pick_record(&batch, |records| {
                        records
                            .iter()
                            .find(|r| r.timestamp >= target && r.offset >= floor)
                            .copied()
                    });
                    if found.is_some() {
                        return Ok(found);
                    }
                }
                next = segment.next_batch_by_timestamp(target, location)?;
            }
        }
        Ok(None)
    }

    /// The first record carrying the largest timestamp in the log (ListOffsets, KIP-734).
    pub fn offset_of_max_timestamp(&self) -> io::Result<Option<TimestampedOffset>> {
        Ok(self.batch_with_max_timestamp()?.and_then(|batch| {
            pick_record(&batch, |records| {
                let max = records.iter().map(|r| r.timestamp).max()?;
                records.iter().find(|r| r.timestamp == max).copied()
            })
        }))
    }

    /// The first batch with a max timestamp at or past `timestamp`, as raw bytes.
    pub fn batch_by_timestamp(&self, timestamp: i64) -> io::Result<Option<Bytes>> {
        for segment in self.segments.values() {
            if let Some(location) = segment.find_batch_by_timestamp(timestamp)? {
                return Ok(Some(segment.read_batch(location)?));
            }
        }
        Ok(None)
    }

    /// The batch carrying the largest timestamp in the log (the earliest such, on ties).
    pub fn batch_with_max_timestamp(&self) -> io::Result<Option<Bytes>> {
        let best = self
            .segments
            .values()
            .filter(|segment| !segment.is_empty())
            .fold(None::<&Segment>, |best, segment| match best {
                Some(best) if best.max_timestamp() >= segment.max_timestamp() => Some(best),
                _ => Some(segment),
            });
        let Some(segment) = best else {
            return Ok(None);
        };
        match segment.find_batch(segment.offset_of_max_timestamp())? {
            Some(location) => Ok(Some(segment.read_batch(location)?)),
            None => Ok(None),
        }
    }

    /// Makes every appended byte durable.
    pub fn sync(&mut self) -> io::Result<()> {
        self.active().sync()?;
        if self.directory_dirty {
            self.disk.sync_dir(&self.dir)?;
            self.directory_dirty = false;
        }
        Ok(())
    }
}

/// Hands recovered batch headers to `on_batch` in order, and rebuilds the leader epoch history
/// from them: an epoch starts at the first batch that carries it.
fn release_headers(
    headers: &mut Vec<BatchHeader>,
    epochs: &mut Vec<EpochStart>,
    on_batch: &mut dyn FnMut(&BatchHeader),
) {
    for header in headers.drain(..) {
        if header.partition_leader_epoch >= 0
            && epochs
                .last()
                .is_none_or(|last| header.partition_leader_epoch > last.epoch)
        {
            epochs.push(EpochStart {
                epoch: header.partition_leader_epoch,
                start_offset: header.base_offset,
            });
        }
        on_batch(&header);
    }
}

#[cfg(test)]
mod tests;
