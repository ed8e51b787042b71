//! Kafka v2 record batches as bytes: parse and check the 61-byte header, verify CRC-32C, and
//! rewrite the few fields a broker owns (base offset, partition leader epoch, LogAppendTime).
//!
//! The broker never re-encodes a client's batch; it stores and serves the bytes it received.
//!
//! ```text
//! offset  size  field                  covered by CRC
//!      0     8  base_offset            no
//!      8     4  batch_length           no   (bytes after this field)
//!     12     4  partition_leader_epoch no
//!     16     1  magic (= 2)            no
//!     17     4  crc (CRC-32C)          no
//!     21     2  attributes             yes  (bits 0-2 codec, 3 timestamp type, 4 transactional, 5 control)
//!     23     4  last_offset_delta      yes
//!     27     8  base_timestamp         yes
//!     35     8  max_timestamp          yes
//!     43     8  producer_id            yes
//!     51     2  producer_epoch         yes
//!     53     4  base_sequence          yes
//!     57     4  records_count          yes
//!     61     …  records                yes
//! ```

use thiserror::Error;

/// Bytes before `batch_length`'s count starts: base offset and the length itself.
pub const LOG_OVERHEAD: usize = 12;
/// The fixed header of a v2 batch.
pub const HEADER_BYTES: usize = 61;
pub const MAGIC_V2: i8 = 2;

const BATCH_LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const MAX_TIMESTAMP_AT: usize = 35;
const LAST_OFFSET_DELTA_AT: usize = 23;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// Why bytes are not a usable record batch. Each maps to a Kafka error code at the broker.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("record batch truncated: needs {needed} bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    #[error("record batch length {0} is below the v2 header size")]
    BadLength(i32),
    #[error("record batch magic {0} is not supported (only v2)")]
    UnsupportedMagic(i8),
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("record batch declares {0} records")]
    BadRecordCount(i32),
    #[error("record batch uses unknown compression codec {0}")]
    UnknownCompression(i16),
}

/// The compression codec in a batch's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn from_attributes(attributes: i16) -> Result<Compression, BatchError> {
        match attributes & COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(BatchError::UnknownCompression(other)),
        }
    }

    pub fn attribute_bits(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

/// The decoded fixed header of a v2 batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn i16_at(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn i32_at(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn i64_at(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

impl BatchHeader {
    /// Reads the header from the start of `bytes` without checking the CRC or the magic.
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        if bytes.len() < HEADER_BYTES {
            return Err(BatchError::Truncated {
                needed: HEADER_BYTES,
                available: bytes.len(),
            });
        }
        Ok(BatchHeader {
            base_offset: i64_at(bytes, 0),
            batch_length: i32_at(bytes, BATCH_LENGTH_AT),
            partition_leader_epoch: i32_at(bytes, LEADER_EPOCH_AT),
            magic: bytes[MAGIC_AT] as i8,
            crc: i32_at(bytes, CRC_AT) as u32,
            attributes: i16_at(bytes, ATTRIBUTES_AT),
            last_offset_delta: i32_at(bytes, LAST_OFFSET_DELTA_AT),
            base_timestamp: i64_at(bytes, 27),
            max_timestamp: i64_at(bytes, MAX_TIMESTAMP_AT),
            producer_id: i64_at(bytes, 43),
            producer_epoch: i16_at(bytes, 51),
            base_sequence: i32_at(bytes, 53),
            records_count: i32_at(bytes, 57),
        })
    }

    /// The whole batch's size on the wire and on disk.
    pub fn total_bytes(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_attributes(self.attributes)
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// The sequence number of the batch's last record, wrapping at `i32::MAX` as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return self.base_sequence;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        (last % (i64::from(i32::MAX) + 1)) as i32
    }
}

/// The CRC-32C a batch should carry: over everything from the attributes to the end.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_AT..])
}

/// Checks one whole batch: length, magic, codec, record count and CRC-32C.
/// `batch` must be exactly the batch (see [`split`]).
pub fn validate(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.magic != MAGIC_V2 {
        return Err(BatchError::UnsupportedMagic(header.magic));
    }
    if (header.batch_length as i64) < (HEADER_BYTES - LOG_OVERHEAD) as i64 {
        return Err(BatchError::BadLength(header.batch_length));
    }
    if header.total_bytes() != batch.len() {
        return Err(BatchError::Truncated {
            needed: header.total_bytes(),
            available: batch.len(),
        });
    }
    header.compression()?;
    if header.records_count < 0 {
        return Err(BatchError::BadRecordCount(header.records_count));
    }
    let computed = compute_crc(batch);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// Splits a record set (the concatenated batches of one partition) into whole batches.
/// Fails on the first batch whose length field is impossible or runs past the end.
pub fn split(records: &[u8]) -> Result<Vec<std::ops::Range<usize>>, BatchError> {
    let mut ranges = Vec::new();
    let mut position = 0;
    while position < records.len() {
        let rest = &records[position..];
        if rest.len() < LOG_OVERHEAD {
            return Err(BatchError::Truncated {
                needed: LOG_OVERHEAD,
                available: rest.len(),
            });
        }
        let batch_length = i32_at(rest, BATCH_LENGTH_AT);
        if (batch_length as i64) < (HEADER_BYTES - LOG_OVERHEAD) as i64 {
            return Err(BatchError::BadLength(batch_length));
        }
        let total = LOG_OVERHEAD + batch_length as usize;
        if total > rest.len() {
            return Err(BatchError::Truncated {
                needed: total,
                available: rest.len(),
            });
        }
        ranges.push(position..position + total);
        position += total;
    }
    Ok(ranges)
}

/// Rewrites the base offset. Outside the CRC, so the CRC stays valid.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Rewrites the partition leader epoch. Outside the CRC, so the CRC stays valid.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Rewrites the last offset delta and recomputes the CRC. The cleaner keeps an idempotent
/// batch's original delta when it drops the batch's last records, so the batch still spans the
/// producer's sequence range (base sequence + last offset delta).
pub fn set_last_offset_delta(batch: &mut [u8], delta: i32) {
    batch[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4].copy_from_slice(&delta.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A batch of no records standing in for `header`'s batch: same offsets, producer and
/// sequence range, no codec. The cleaner leaves one where it removed every record of a
/// producer's last batch, so the producer's state survives, as Kafka does.
pub fn empty_like(header: &BatchHeader) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_BYTES);
    bytes.extend_from_slice(&header.base_offset.to_be_bytes());
    bytes.extend_from_slice(&((HEADER_BYTES - LOG_OVERHEAD) as i32).to_be_bytes());
    bytes.extend_from_slice(&header.partition_leader_epoch.to_be_bytes());
    bytes.push(MAGIC_V2 as u8);
    bytes.extend_from_slice(&0u32.to_be_bytes());
    bytes.extend_from_slice(&(header.attributes & !COMPRESSION_MASK).to_be_bytes());
    bytes.extend_from_slice(&header.last_offset_delta.to_be_bytes());
    bytes.extend_from_slice(&header.base_timestamp.to_be_bytes());
    bytes.extend_from_slice(&header.max_timestamp.to_be_bytes());
    bytes.extend_from_slice(&header.producer_id.to_be_bytes());
    bytes.extend_from_slice(&header.producer_epoch.to_be_bytes());
    bytes.extend_from_slice(&header.base_sequence.to_be_bytes());
    bytes.extend_from_slice(&0i32.to_be_bytes());
    let crc = compute_crc(&bytes);
    bytes[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    bytes
}

/// Marks the batch LogAppendTime with `timestamp_ms` as its max timestamp and recomputes the
/// CRC, as Kafka does for topics with `message.timestamp.type=LogAppendTime`.
pub fn set_log_append_time(batch: &mut [u8], timestamp_ms: i64) {
    let (header, records) = batch.split_at_mut(HEADER_BYTES);
    stamp_log_append_time(header, records, timestamp_ms);
}

/// [`set_log_append_time`] for a batch held as its 61-byte header and, elsewhere, its records:
/// the broker rewrites a copy of the header and stores the records straight from the request.
pub fn stamp_log_append_time(header: &mut [u8], records: &[u8], timestamp_ms: i64) {
    let attributes = i16_at(header, ATTRIBUTES_AT) | TIMESTAMP_TYPE_BIT;
    header[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    header[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&timestamp_ms.to_be_bytes());
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&header[ATTRIBUTES_AT..HEADER_BYTES]),
        records,
    );
    header[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid batch with `count` empty-bodied records region (records are opaque here).
    fn batch_with(records: &[u8], count: i32, attributes: i16) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0i64.to_be_bytes());
        let batch_length = (HEADER_BYTES - LOG_OVERHEAD + records.len()) as i32;
        bytes.extend_from_slice(&batch_length.to_be_bytes());
        bytes.extend_from_slice(&(-1i32).to_be_bytes());
        bytes.push(2);
        bytes.extend_from_slice(&0u32.to_be_bytes());
        bytes.extend_from_slice(&attributes.to_be_bytes());
        bytes.extend_from_slice(&(count - 1).to_be_bytes());
        bytes.extend_from_slice(&1_000i64.to_be_bytes());
        bytes.extend_from_slice(&1_005i64.to_be_bytes());
        bytes.extend_from_slice(&7i64.to_be_bytes());
        bytes.extend_from_slice(&0i16.to_be_bytes());
        bytes.extend_from_slice(&10i32.to_be_bytes());
        bytes.extend_from_slice(&count.to_be_bytes());
        bytes.extend_from_slice(records);
        let crc = compute_crc(&bytes);
        bytes[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        bytes
    }

    #[test]
    fn a_well_formed_batch_validates_and_reports_its_header() {
        let batch = batch_with(b"opaque", 3, 0);
        let header = validate(&batch).unwrap();
        assert_eq!(header.records_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.producer_id, 7);
        assert_eq!(header.base_sequence, 10);
        assert_eq!(header.last_sequence(), 12);
        assert_eq!(header.total_bytes(), batch.len());
        assert_eq!(header.compression(), Ok(Compression::None));
    }

    #[test]
    fn a_flipped_bit_inside_the_crc_range_is_a_crc_mismatch() {
        let mut batch = batch_with(b"opaque", 1, 0);
        let last = batch.len() - 1;
        batch[last] ^= 0x01;
        assert!(matches!(
            validate(&batch),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn broker_rewrites_outside_the_crc_keep_the_batch_valid() {
        let mut batch = batch_with(b"opaque", 2, 0);
        set_base_offset(&mut batch, 42);
        set_partition_leader_epoch(&mut batch, 5);
        let header = validate(&batch).unwrap();
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.last_offset(), 43);
        assert_eq!(header.partition_leader_epoch, 5);
    }

    #[test]
    fn log_append_time_sets_the_flag_and_max_timestamp_and_a_fresh_crc() {
        let mut batch = batch_with(b"opaque", 1, 0);
        set_log_append_time(&mut batch, 99_999);
        let header = validate(&batch).unwrap();
        assert!(header.is_log_append_time());
        assert_eq!(header.max_timestamp, 99_999);
    }

    #[test]
    fn split_finds_each_batch_and_rejects_a_torn_tail() {
        let first = batch_with(b"a", 1, 0);
        let second = batch_with(b"bb", 1, 0);
        let mut set = first.clone();
        set.extend_from_slice(&second);
        let ranges = split(&set).unwrap();
        assert_eq!(ranges, vec![0..first.len(), first.len()..set.len()]);
        assert!(matches!(
            split(&set[..set.len() - 1]),
            Err(BatchError::Truncated { .. })
        ));
    }

    #[test]
    fn other_magics_and_codecs_are_rejected() {
        let mut old = batch_with(b"x", 1, 0);
        old[MAGIC_AT] = 1;
        assert_eq!(validate(&old), Err(BatchError::UnsupportedMagic(1)));
        let bad_codec = batch_with(b"x", 1, 6);
        assert_eq!(validate(&bad_codec), Err(BatchError::UnknownCompression(6)));
    }

    #[test]
    fn an_empty_stand_in_keeps_offsets_producer_and_sequences() {
        let original = BatchHeader::parse(&batch_with(b"opaque", 3, 1)).unwrap();
        let empty = empty_like(&original);
        let header = validate(&empty).unwrap();
        assert_eq!(header.records_count, 0);
        assert_eq!(header.last_offset(), original.last_offset());
        assert_eq!((header.producer_id, header.base_sequence), (7, 10));
        assert_eq!(header.last_sequence(), original.last_sequence());
        assert_eq!(header.compression(), Ok(Compression::None));
    }

    #[test]
    fn the_last_offset_delta_can_be_widened_keeping_the_crc_valid() {
        let mut batch = batch_with(b"opaque", 1, 0);
        set_last_offset_delta(&mut batch, 4);
        assert_eq!(validate(&batch).unwrap().last_offset_delta, 4);
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut header = BatchHeader::parse(&batch_with(b"x", 3, 0)).unwrap();
        header.base_sequence = i32::MAX - 1;
        assert_eq!(header.last_sequence(), 0, "MAX-1, MAX, then 0");
    }
}
