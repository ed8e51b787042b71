//! One segment: a `.log` file of whole v2 record batches plus its sparse indexes.
//!
//! Only the active (last) segment of a log is ever written; once rolled it is immutable.

use std::io;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use tidepool_io::{Disk, DiskFile, OpenMode, crash_point};
use tidepool_protocol::batch::{BatchHeader, HEADER_BYTES};

use super::index::{OffsetIndex, TimeIndex};

/// Kafka names segment files after their base offset, zero-padded to 20 digits.
pub fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

/// What opening a segment kept and cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    pub kept_bytes: u64,
    pub removed_bytes: u64,
    /// Why the scan stopped before the end of the file, if it did.
    pub reason: Option<String>,
}

/// Where a batch sits in a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLocation {
    pub position: u64,
    pub header: BatchHeader,
}

pub struct Segment {
    pub base_offset: i64,
    file: Box<dyn DiskFile>,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    /// Bytes of whole batches in the file.
    size: u64,
    /// One past the last offset stored here (= base offset while empty).
    next_offset: i64,
    /// Largest batch max-timestamp stored here, and the last offset of the batch carrying it.
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    /// The first batch's max timestamp: `segment.ms` counts from it, in record time, as in
    /// Kafka, so a restart does not change when a segment rolls.
    rolling_timestamp: Option<i64>,
    /// Wall-clock time the segment was created or opened: `segment.ms` counts from it instead
    /// when the first batch carries no timestamp.
    created_ms: i64,
    bytes_since_index_entry: u64,
    index_interval_bytes: u64,
}

impl Segment {
    pub fn create(
        disk: &dyn Disk,
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u64,
        created_ms: i64,
    ) -> io::Result<Segment> {
        let stem = file_stem(base_offset);
        let file = disk.open(&dir.join(format!("{stem}.log")), OpenMode::CreateNew)?;
        let offset_index = disk.open(&dir.join(format!("{stem}.index")), OpenMode::CreateNew)?;
        let time_index = disk.open(&dir.join(format!("{stem}.timeindex")), OpenMode::CreateNew)?;
        Ok(Segment::empty(
            created_ms,
            base_offset,
            file,
            offset_index,
            time_index,
            index_interval_bytes,
        ))
    }

    fn empty(
        created_ms: i64,
        base_offset: i64,
        file: Box<dyn DiskFile>,
        offset_index: Box<dyn DiskFile>,
        time_index: Box<dyn DiskFile>,
        index_interval_bytes: u64,
    ) -> Segment {
        Segment {
            base_offset,
            file,
            offset_index: OffsetIndex::new(offset_index),
            time_index: TimeIndex::new(time_index),
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            rolling_timestamp: None,
            created_ms,
            bytes_since_index_entry: 0,
            index_interval_bytes,
        }
    }

    /// Opens an existing segment and scans it: every batch's header is checked for a sane
    /// length, magic, codec and offsets that only grow, and, with `verify_crc`, its CRC-32C.
    /// The file is truncated at the first batch that fails (a torn or corrupt tail) and the
    /// indexes are rebuilt from what remains. `on_batch` sees every kept batch, in order.
    pub fn open(
        disk: &dyn Disk,
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u64,
        verify_crc: bool,
        opened_ms: i64,
        on_batch: &mut dyn FnMut(&BatchHeader),
    ) -> io::Result<(Segment, Truncation)> {
        let stem = file_stem(base_offset);
        let file = disk.open(&dir.join(format!("{stem}.log")), OpenMode::Existing)?;
        // The indexes are derived data: rebuilding them is cheaper than trusting a torn one.
        let offset_index = disk.open(&dir.join(format!("{stem}.index")), OpenMode::CreateOrOpen)?;
        let time_index = disk.open(
            &dir.join(format!("{stem}.timeindex")),
            OpenMode::CreateOrOpen,
        )?;
        offset_index.set_len(0)?;
        time_index.set_len(0)?;
        let mut segment = Segment::empty(
            opened_ms,
            base_offset,
            file,
            offset_index,
            time_index,
            index_interval_bytes,
        );
        let file_bytes = segment.file.len()?;
        let mut position = 0;
        let reason = loop {
            if position == file_bytes {
                break None;
            }
            match segment.check_stored_batch(position, file_bytes, verify_crc)? {
                Ok(header) => {
                    segment.account_batch(&header, position, header.total_bytes() as u64)?;
                    on_batch(&header);
                    position += header.total_bytes() as u64;
                }
                Err(reason) => break Some(reason),
            }
        };
        let truncation = Truncation {
            kept_bytes: position,
            removed_bytes: file_bytes - position,
            reason,
        };
        if truncation.removed_bytes > 0 {
            segment.file.set_len(position)?;
            segment.file.sync()?;
        }
        Ok((segment, truncation))
    }

    /// The header of the stored batch at `position` if it is whole and sane, else why not.
    fn check_stored_batch(
        &self,
        position: u64,
        file_bytes: u64,
        verify_crc: bool,
    ) -> io::Result<Result<BatchHeader, String>> {
        if file_bytes - position < HEADER_BYTES as u64 {
            return Ok(Err(format!(
                "{} bytes at {position} are too few for a batch header",
                file_bytes - position
            )));
        }
        let header = self.header_at(position)?;
        if header.magic != tidepool_protocol::batch::MAGIC_V2 {
            return Ok(Err(format!(
                "batch at {position} has magic {}",
                header.magic
            )));
        }
        let total = header.total_bytes() as u64;
        // As i64: a negative length must fail here, not wrap to a huge usize and pass.
        if i64::from(header.batch_length)
            < (HEADER_BYTES - tidepool_protocol::batch::LOG_OVERHEAD) as i64
            || position + total > file_bytes
        {
            return Ok(Err(format!(
                "batch at {position} declares {total} bytes, {} remain",
                file_bytes - position
            )));
        }
        // Checked: the offsets are whatever the file holds. The indexes keep offsets relative to
        // the segment base in 32 bits, as Kafka's do, and one past the last must be an offset.
        let last_offset = header
            .base_offset
            .checked_add(i64::from(header.last_offset_delta))
            .filter(|last| *last >= header.base_offset && *last < i64::MAX)
            .filter(|last| {
                last.checked_sub(self.base_offset)
                    .is_some_and(|relative| u32::try_from(relative).is_ok())
            });
        if header.base_offset < self.next_offset || last_offset.is_none() {
            return Ok(Err(format!(
                "batch at {position} has offsets from {} (last offset delta {}) after offset {} \
                 in the segment at {}",
                header.base_offset, header.last_offset_delta, self.next_offset, self.base_offset
            )));
        }
        if verify_crc {
            let location = BatchLocation { position, header };
            if let Err(error) = tidepool_protocol::batch::validate(&self.read_batch(location)?) {
                return Ok(Err(format!("batch at {position}: {error}")));
            }
        }
        Ok(Ok(header))
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    pub fn offset_of_max_timestamp(&self) -> i64 {
        self.offset_of_max_timestamp
    }

    /// How long this segment has been open by Kafka's rule: in record time from its first
    /// batch to `incoming_timestamp`, or in wall time since creation if that has none.
    pub fn time_waited_for_roll(&self, incoming_timestamp: i64, now_ms: i64) -> Option<i64> {
        if self.is_empty() {
            return None;
        }
        Some(match self.rolling_timestamp {
            Some(first) if first >= 0 => incoming_timestamp.saturating_sub(first),
            _ => now_ms.saturating_sub(self.created_ms),
        })
    }

    /// Appends one whole batch, given as its header (base offset already this segment's next
    /// offset) and its records. `disk` is the one holding the segment, for its crash points.
    pub fn append(&mut self, disk: &dyn Disk, header: &[u8], records: &[u8]) -> io::Result<()> {
        let parsed = BatchHeader::parse(header).map_err(io::Error::other)?;
        let batch_bytes = header.len() + records.len();
        assert_eq!(
            parsed.base_offset, self.next_offset,
            "offsets only grow, without gaps"
        );
        assert_eq!(parsed.total_bytes(), batch_bytes);
        let position = self.size;
        self.file.write_at(position, header)?;
        crash_point!(disk, "log.append.header");
        self.file
            .write_at(position + header.len() as u64, records)?;
        crash_point!(disk, "log.append.written");
        self.account_batch(&parsed, position, batch_bytes as u64)?;
        crash_point!(disk, "log.append.indexed");
        Ok(())
    }

    /// Bookkeeping for a batch now stored at `position`: size, offsets, timestamps, indexes.
    fn account_batch(
        &mut self,
        header: &BatchHeader,
        position: u64,
        batch_bytes: u64,
    ) -> io::Result<()> {
        self.size = position + batch_bytes;
        self.rolling_timestamp.get_or_insert(header.max_timestamp);
        self.next_offset = header.last_offset() + 1;
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.last_offset();
        }
        if self.bytes_since_index_entry >= self.index_interval_bytes {
            let relative = self.relative(header.last_offset());
            self.offset_index.append(relative, position as u32)?;
            // Batches without timestamps (-1) leave nothing to index by time.
            if self.offset_of_max_timestamp >= self.base_offset {
                let relative_max = self.relative(self.offset_of_max_timestamp);
                self.time_index
                    .maybe_append(self.max_timestamp, relative_max)?;
            }
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += batch_bytes;
        Ok(())
    }

    fn relative(&self, offset: i64) -> u32 {
        u32::try_from(offset - self.base_offset).expect("a segment spans under 2^32 offsets")
    }

    /// Reads the header of the batch starting at `position`.
    pub fn header_at(&self, position: u64) -> io::Result<BatchHeader> {
        let mut bytes = [0u8; HEADER_BYTES];
        self.file.read_exact_at(position, &mut bytes)?;
        BatchHeader::parse(&bytes).map_err(io::Error::other)
    }

    /// The first batch whose last offset is at or past `offset`, if any.
    pub fn find_batch(&self, offset: i64) -> io::Result<Option<BatchLocation>> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let relative = self.relative(offset.max(self.base_offset));
        let position = u64::from(self.offset_index.scan_start(relative));
        self.scan_from(position, |header| header.last_offset() >= offset)
    }

    /// The first batch whose max timestamp is at or past `timestamp`, if any.
    pub fn find_batch_by_timestamp(&self, timestamp: i64) -> io::Result<Option<BatchLocation>> {
        if self.max_timestamp < timestamp {
            return Ok(None);
        }
        let relative = self.time_index.scan_from(timestamp);
        let position = u64::from(self.offset_index.scan_start(relative));
        self.scan_from(position, |header| header.max_timestamp >= timestamp)
    }

    /// The next batch after `previous` with a max timestamp at or past `timestamp`.
    pub fn next_batch_by_timestamp(
        &self,
        timestamp: i64,
        previous: BatchLocation,
    ) -> io::Result<Option<BatchLocation>> {
        let position = previous.position + previous.header.total_bytes() as u64;
        self.scan_from(position, |header| header.max_timestamp >= timestamp)
    }

    /// Every batch in the segment, in order.
    pub fn batches(&self) -> io::Result<Vec<BatchLocation>> {
        let mut locations = Vec::new();
        let mut position = 0;
        while position < self.size {
            let header = self.header_at(position)?;
            locations.push(BatchLocation { position, header });
            position += header.total_bytes() as u64;
        }
        Ok(locations)
    }

    fn scan_from(
        &self,
        mut position: u64,
        wanted: impl Fn(&BatchHeader) -> bool,
    ) -> io::Result<Option<BatchLocation>> {
        while position < self.size {
            let header = self.header_at(position)?;
            if wanted(&header) {
                return Ok(Some(BatchLocation { position, header }));
            }
            position += header.total_bytes() as u64;
        }
        Ok(None)
    }

    /// The bytes of whole batches starting at `start`, stopping before a batch that would pass
    /// `bytes_max` or reach `offset_end`; the first batch is included regardless of size when
    /// `first_batch_always` (KIP-74), so a large batch cannot stall a consumer.
    /// The bytes are appended to `scratch` and split off it, so a caller that reuses one
    /// scratch buffer reads into warm memory.
    pub fn read_batches(
        &self,
        start: BatchLocation,
        bytes_max: usize,
        offset_end: i64,
        first_batch_always: bool,
        scratch: &mut BytesMut,
    ) -> io::Result<Bytes> {
        let mut end = start.position;
        let mut header = start.header;
        loop {
            if header.base_offset >= offset_end {
                break;
            }
            let batch_bytes = header.total_bytes() as u64;
            let taken = (end - start.position) as usize;
            let fits = taken + batch_bytes as usize <= bytes_max;
            let oversized_first = first_batch_always && taken == 0;
            if !(fits || oversized_first) {
                break;
            }
            end += batch_bytes;
            if end >= self.size {
                break;
            }
            header = self.header_at(end)?;
        }
        let length = (end - start.position) as usize;
        self.file.read_append(start.position, length, scratch)?;
        Ok(scratch.split().freeze())
    }

    /// The whole batch at `location`.
    pub fn read_batch(&self, location: BatchLocation) -> io::Result<Bytes> {
        let mut bytes = BytesMut::new();
        self.file
            .read_append(location.position, location.header.total_bytes(), &mut bytes)?;
        Ok(bytes.freeze())
    }

    /// Makes the batches durable. The indexes are not synced: recovery rebuilds them from the
    /// batches, so a torn index costs time at start, never data.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync()
    }
}
