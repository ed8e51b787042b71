//! Sparse indexes of a segment, kept in memory and mirrored to Kafka's on-disk formats:
//! `.index` holds 8-byte entries (relative offset u32, file position u32) and `.timeindex`
//! holds 12-byte entries (timestamp i64, relative offset u32), both big-endian.

use std::io;

use tidepool_io::DiskFile;

/// Maps offsets to file positions, one entry every `index.interval.bytes` of log.
pub struct OffsetIndex {
    file: Box<dyn DiskFile>,
    /// (last offset of a batch − segment base offset, file position of that batch); ascending.
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    pub const ENTRY_BYTES: u64 = 8;

    pub fn new(file: Box<dyn DiskFile>) -> OffsetIndex {
        OffsetIndex {
            file,
            entries: Vec::new(),
        }
    }

    pub fn append(&mut self, relative_offset: u32, position: u32) -> io::Result<()> {
        debug_assert!(
            self.entries
                .last()
                .is_none_or(|&(last, _)| last < relative_offset)
        );
        let mut entry = [0u8; Self::ENTRY_BYTES as usize];
        entry[..4].copy_from_slice(&relative_offset.to_be_bytes());
        entry[4..].copy_from_slice(&position.to_be_bytes());
        self.file
            .write_at(self.entries.len() as u64 * Self::ENTRY_BYTES, &entry)?;
        self.entries.push((relative_offset, position));
        Ok(())
    }

    /// The position to start scanning from for `relative_offset`: the batch of the greatest
    /// entry at or below it, else the segment's start.
    pub fn scan_start(&self, relative_offset: u32) -> u32 {
        let after = self
            .entries
            .partition_point(|&(offset, _)| offset <= relative_offset);
        if after == 0 {
            0
        } else {
            self.entries[after - 1].1
        }
    }
}

/// Maps timestamps to offsets: an entry whenever the segment's max timestamp grows at an
/// offset-index point, so a lookup never starts after the first record at or past a time.
pub struct TimeIndex {
    file: Box<dyn DiskFile>,
    /// (max timestamp so far, relative offset of the batch holding it); both ascending.
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    pub const ENTRY_BYTES: u64 = 12;

    pub fn new(file: Box<dyn DiskFile>) -> TimeIndex {
        TimeIndex {
            file,
            entries: Vec::new(),
        }
    }

    pub fn maybe_append(&mut self, timestamp: i64, relative_offset: u32) -> io::Result<()> {
        if self
            .entries
            .last()
            .is_some_and(|&(last_timestamp, last_offset)| {
                timestamp <= last_timestamp || relative_offset <= last_offset
            })
        {
            return Ok(());
        }
        let mut entry = [0u8; Self::ENTRY_BYTES as usize];
        entry[..8].copy_from_slice(&timestamp.to_be_bytes());
        entry[8..].copy_from_slice(&relative_offset.to_be_bytes());
        self.file
            .write_at(self.entries.len() as u64 * Self::ENTRY_BYTES, &entry)?;
        self.entries.push((timestamp, relative_offset));
        Ok(())
    }

    /// A relative offset from which scanning finds the first record with timestamp ≥ `target`:
    /// the offset of the greatest entry whose timestamp is below `target`.
    pub fn scan_from(&self, target: i64) -> u32 {
        let below = self
            .entries
            .partition_point(|&(timestamp, _)| timestamp < target);
        if below == 0 {
            0
        } else {
            self.entries[below - 1].1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use tidepool_io::{Disk, MemDisk, OpenMode};

    fn file(disk: &MemDisk, name: &str) -> Box<dyn DiskFile> {
        disk.open(Path::new(name), OpenMode::CreateNew).unwrap()
    }

    #[test]
    fn offset_index_points_at_the_greatest_entry_not_after_the_target() {
        let disk = MemDisk::new();
        let mut index = OffsetIndex::new(file(&disk, "/0.index"));
        index.append(9, 4096).unwrap();
        index.append(19, 8192).unwrap();
        assert_eq!(index.scan_start(3), 0);
        assert_eq!(index.scan_start(9), 4096);
        assert_eq!(index.scan_start(15), 4096);
        assert_eq!(index.scan_start(40), 8192);
        let on_disk = disk
            .open(Path::new("/0.index"), OpenMode::Existing)
            .unwrap();
        assert_eq!(on_disk.len().unwrap(), 16);
    }

    #[test]
    fn time_index_only_grows_and_starts_scans_before_the_target() {
        let disk = MemDisk::new();
        let mut index = TimeIndex::new(file(&disk, "/0.timeindex"));
        index.maybe_append(1_000, 5).unwrap();
        index.maybe_append(900, 9).unwrap();
        index.maybe_append(2_000, 12).unwrap();
        assert_eq!(index.scan_from(500), 0);
        assert_eq!(index.scan_from(1_500), 5);
        assert_eq!(index.scan_from(2_000), 5);
        assert_eq!(index.scan_from(9_000), 12);
    }
}
