//! The records inside a Kafka v2 batch: decode them, list their timestamps, build new batches.
//!
//! [`crate::batch`] treats a batch as opaque bytes behind a 61-byte header; this module reads
//! what follows the header. It is our own parser rather than `kafka-protocol`'s because that one
//! collapses duplicate header keys and forgets LogAppendTime (DESIGN.md §8).
//!
//! # Layout
//! - [`decode`]: one whole batch to owned [`Record`]s with absolute offsets and timestamps.
//! - [`timestamps`]: `(offset, timestamp)` per record, without building keys, values or
//!   headers, for ListOffsets by timestamp.
//! - [`BatchBuilder`] (`builder.rs`): records to a v2 batch that [`crate::batch::validate`]
//!   accepts.
//! - `reader.rs`: the record walker both decoders share; `varint.rs`: Kafka's zigzag varints.
//!
//! # Bounds
//! Each call takes [`DecodeLimits`]. The records section is decompressed into at most
//! `records_bytes_max` bytes, a batch may hold at most `records_count_max` records and
//! `headers_count_max` headers in all, and no vector is sized from a wire count larger than
//! the bytes present could hold. So memory is bounded by the limits, whatever the input.
//!
//! ```
//! use bytes::Bytes;
//! use tidepool_protocol::batch::Compression;
//! use tidepool_protocol::records::{self, BatchBuilder, DecodeLimits};
//!
//! let mut builder = BatchBuilder::new();
//! builder.compression(Compression::Lz4);
//! builder.append(1_000, Some(Bytes::from_static(b"tenant-7")), Some(Bytes::from_static(b"hello")), vec![]);
//! let batch = builder.build().unwrap();
//!
//! let decoded = records::decode(&batch, &DecodeLimits::default()).unwrap();
//! assert_eq!(decoded[0].value.as_deref(), Some(&b"hello"[..]));
//! ```

mod builder;
mod reader;
mod varint;

use std::borrow::Cow;

use bytes::Bytes;
use thiserror::Error;

use crate::batch::{self, BatchError, BatchHeader, Compression, HEADER_BYTES};
use crate::compression::{self, CompressionError};

pub use builder::{BatchBuilder, BuildError, TimestampType};
use reader::{Cursor, HEADER_BYTES_MIN, RECORD_BYTES_MIN, RecordParts, read_record};

/// One record with its absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The batch's base offset plus the record's offset delta.
    pub offset: i64,
    /// Base timestamp plus delta for CreateTime batches; the batch's max timestamp for
    /// LogAppendTime batches, which is what Kafka consumers report.
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// In wire order, duplicates kept: Kafka headers are a list, not a map.
    pub headers: Vec<Header>,
}

/// A record header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header keys are strings in Kafka's model. Bytes that are not UTF-8 (librdkafka lets a
    /// producer send any) become U+FFFD, as the Java consumer's decoding does.
    pub key: String,
    pub value: Option<Bytes>,
}

/// One record's position in the log and its timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordTimestamp {
    pub offset: i64,
    pub timestamp: i64,
}

/// How much one batch may make the decoder hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// The records section after decompression. Applies to uncompressed batches too, so the
    /// limit means the same whatever the codec.
    pub records_bytes_max: usize,
    /// Records in one batch. A decoded record takes about 100 bytes beyond its key and value,
    /// against 7 bytes on the wire, so this caps the amplification.
    pub records_count_max: usize,
    /// Headers across all records of one batch (about 56 bytes each decoded, 2 on the wire).
    pub headers_count_max: usize,
}

impl Default for DecodeLimits {
    /// 64 MiB of records, and a million records and headers: librdkafka's largest
    /// `batch.num.messages` is a million. Brokers should derive tighter limits from their own
    /// `message.max.bytes`.
    fn default() -> DecodeLimits {
        DecodeLimits {
            records_bytes_max: 64 * 1024 * 1024,
            records_count_max: 1_000_000,
            headers_count_max: 1_000_000,
        }
    }
}

/// Why a batch's records could not be read. The batch header itself is checked by
/// [`crate::batch::validate`], whose errors arrive as [`RecordsError::Batch`].
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordsError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Compression(#[from] CompressionError),
    #[error("batch declares {records_count} records, above the limit of {records_count_max}")]
    TooManyRecords {
        records_count: usize,
        records_count_max: usize,
    },
    #[error("batch holds more than {headers_count_max} headers")]
    TooManyHeaders { headers_count_max: usize },
    #[error("record {record_index}: {field} runs past the end of the record")]
    Truncated {
        record_index: usize,
        field: &'static str,
    },
    #[error("record {record_index}: {field} is not a well-formed varint")]
    BadVarint {
        record_index: usize,
        field: &'static str,
    },
    #[error("record {record_index}: {field} has invalid length {length}")]
    BadLength {
        record_index: usize,
        field: &'static str,
        length: i32,
    },
    #[error("record {record_index} declares {declared} bytes but its fields take {read}")]
    RecordLengthMismatch {
        record_index: usize,
        declared: usize,
        read: usize,
    },
    #[error("batch declares {declared} records but the records section ends after {found}")]
    RecordsCountMismatch { declared: usize, found: usize },
    #[error("{remaining} bytes remain after the batch's {records_count} declared records")]
    TrailingBytes {
        records_count: usize,
        remaining: usize,
    },
    #[error("record {record_index}: absolute {field} overflows 64 bits")]
    Overflow {
        record_index: usize,
        field: &'static str,
    },
}

/// Decodes every record of one whole batch (see [`crate::batch::split`]), decompressing it per
/// its attributes. The batch is validated first, CRC included, so bytes read back from disk
/// are checked again before anyone trusts them.
///
/// Keys, values and header values are slices of one shared buffer: holding on to one keeps the
/// batch's whole records section alive.
pub fn decode(batch: &[u8], limits: &DecodeLimits) -> Result<Vec<Record>, RecordsError> {
    let (header, records_count) = validate(batch, limits)?;
    let section = Bytes::from(records_section(batch, &header, limits)?.into_owned());
    let mut records = Vec::with_capacity(records_count.min(section.len() / RECORD_BYTES_MIN));
    walk(&section, records_count, limits, |record_index, parts| {
        records.push(materialize(&section, &header, record_index, parts)?);
        Ok(())
    })?;
    Ok(records)
}

/// Lists each record's absolute offset and timestamp, checking the records as [`decode`] does
/// but building no keys, values or headers. Uncompressed batches are read in place.
pub fn timestamps(
    batch: &[u8],
    limits: &DecodeLimits,
) -> Result<Vec<RecordTimestamp>, RecordsError> {
    let (header, records_count) = validate(batch, limits)?;
    let section = records_section(batch, &header, limits)?;
    let mut timestamps = Vec::with_capacity(records_count.min(section.len() / RECORD_BYTES_MIN));
    walk(&section, records_count, limits, |record_index, parts| {
        timestamps.push(RecordTimestamp {
            offset: absolute_offset(&header, record_index, &parts)?,
            timestamp: absolute_timestamp(&header, record_index, &parts)?,
        });
        Ok(())
    })?;
    Ok(timestamps)
}

fn validate(batch: &[u8], limits: &DecodeLimits) -> Result<(BatchHeader, usize), RecordsError> {
    let header = batch::validate(batch)?;
    // validate() refuses negative counts, so the conversion cannot fail.
    let records_count = usize::try_from(header.records_count)
        .map_err(|_| BatchError::BadRecordCount(header.records_count))?;
    if records_count > limits.records_count_max {
        return Err(RecordsError::TooManyRecords {
            records_count,
            records_count_max: limits.records_count_max,
        });
    }
    Ok((header, records_count))
}

/// The records section as plain bytes: borrowed when uncompressed, decompressed otherwise.
fn records_section<'a>(
    batch: &'a [u8],
    header: &BatchHeader,
    limits: &DecodeLimits,
) -> Result<Cow<'a, [u8]>, RecordsError> {
    let stored = &batch[HEADER_BYTES..];
    let codec = header.compression()?;
    if codec == Compression::None {
        if stored.len() > limits.records_bytes_max {
            return Err(CompressionError::OutputTooLarge {
                codec,
                output_bytes_max: limits.records_bytes_max,
            }
            .into());
        }
        return Ok(Cow::Borrowed(stored));
    }
    let section = compression::decompress(codec, stored, limits.records_bytes_max)?;
    Ok(Cow::Owned(section))
}

/// Reads exactly `records_count` records, then insists the section is used up: Kafka refuses
/// both a short batch and bytes after the last record.
fn walk(
    section: &[u8],
    records_count: usize,
    limits: &DecodeLimits,
    mut visit: impl FnMut(usize, RecordParts) -> Result<(), RecordsError>,
) -> Result<(), RecordsError> {
    let mut position = 0;
    let mut headers_count_left = limits.headers_count_max;
    for record_index in 0..records_count {
        if position == section.len() {
            return Err(RecordsError::RecordsCountMismatch {
                declared: records_count,
                found: record_index,
            });
        }
        let (parts, next) = read_record(
            section,
            position,
            record_index,
            &mut headers_count_left,
            limits.headers_count_max,
        )?;
        visit(record_index, parts)?;
        position = next;
    }
    if position != section.len() {
        return Err(RecordsError::TrailingBytes {
            records_count,
            remaining: section.len() - position,
        });
    }
    Ok(())
}

fn materialize(
    section: &Bytes,
    header: &BatchHeader,
    record_index: usize,
    parts: RecordParts,
) -> Result<Record, RecordsError> {
    let offset = absolute_offset(header, record_index, &parts)?;
    let timestamp = absolute_timestamp(header, record_index, &parts)?;
    let mut headers = Vec::with_capacity(
        parts
            .headers_count
            .min(parts.headers.len() / HEADER_BYTES_MIN),
    );
    let mut cursor = Cursor::new(section, parts.headers.clone(), record_index);
    for _ in 0..parts.headers_count {
        let (key, value) = cursor.header()?;
        headers.push(Header {
            key: String::from_utf8_lossy(&section[key]).into_owned(),
            value: value.map(|range| section.slice(range)),
        });
    }
    Ok(Record {
        offset,
        timestamp,
        key: parts.key.map(|range| section.slice(range)),
        value: parts.value.map(|range| section.slice(range)),
        headers,
    })
}

fn absolute_offset(
    header: &BatchHeader,
    record_index: usize,
    parts: &RecordParts,
) -> Result<i64, RecordsError> {
    header
        .base_offset
        .checked_add(i64::from(parts.offset_delta))
        .ok_or(RecordsError::Overflow {
            record_index,
            field: "offset",
        })
}

fn absolute_timestamp(
    header: &BatchHeader,
    record_index: usize,
    parts: &RecordParts,
) -> Result<i64, RecordsError> {
    if header.is_log_append_time() {
        return Ok(header.max_timestamp);
    }
    header
        .base_timestamp
        .checked_add(parts.timestamp_delta)
        .ok_or(RecordsError::Overflow {
            record_index,
            field: "timestamp",
        })
}
