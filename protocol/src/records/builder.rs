//! Builds Kafka v2 record batches: the write side of [`super::decode`].
//!
//! Used by Tidepool's tests to hand the broker batches it did not write itself, and by the
//! pure-Rust producer. The output has the layout drawn in [`crate::batch`] and passes
//! [`crate::batch::validate`]; producers send base offset 0 and the broker assigns offsets.

use bytes::Bytes;
use thiserror::Error;

use super::Record;
use super::varint::{write_varint, write_varlong};
use crate::batch::{self, Compression, HEADER_BYTES, LOG_OVERHEAD, MAGIC_V2};
use crate::compression::{self, CompressionError};

const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;
const CRC_AT: usize = 17;
/// Kafka's "no producer id / epoch / sequence" and "no leader epoch" sentinel.
const NONE: i32 = -1;

/// Who chose the records' timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// The producer did; each record carries its own.
    #[default]
    CreateTime,
    /// The broker did, on append. Consumers report the batch's max timestamp for every record.
    LogAppendTime,
}

/// Why [`BatchBuilder::build`] refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BuildError {
    #[error("a batch needs at least one record")]
    Empty,
    #[error("record offset {offset} does not follow {previous} (offsets must increase)")]
    OffsetNotIncreasing { previous: i64, offset: i64 },
    #[error("record offset {offset} is out of range for base offset {base_offset}")]
    OffsetOutOfRange { base_offset: i64, offset: i64 },
    #[error("record timestamp {timestamp} is too far from the first, {base_timestamp}")]
    TimestampOutOfRange { base_timestamp: i64, timestamp: i64 },
    #[error("{field} of {bytes} bytes does not fit a Kafka length")]
    TooLarge { field: &'static str, bytes: usize },
    #[error(transparent)]
    Compression(#[from] CompressionError),
}

/// Builds one v2 record batch from records.
///
/// Defaults are those of a non-idempotent producer: base offset 0, partition leader epoch -1,
/// producer id, epoch and base sequence -1, no compression, CreateTime, neither transactional
/// nor control. The builder does not enforce Kafka's producer rules (a transactional batch
/// needs a producer id), so tests can build the batches a broker must refuse.
///
/// ```
/// use bytes::Bytes;
/// use tidepool_protocol::batch::{self, Compression};
/// use tidepool_protocol::records::{BatchBuilder, Header};
///
/// let mut builder = BatchBuilder::new();
/// builder
///     .compression(Compression::Snappy)
///     .producer(4_000, 0, 17)
///     .append(1_700_000_000_000, Some(Bytes::from_static(b"order-1")), Some(Bytes::from_static(b"placed")), vec![])
///     .append(
///         1_700_000_000_005,
///         None,
///         Some(Bytes::from_static(b"paid")),
///         vec![Header { key: "trace".into(), value: Some(Bytes::from_static(b"abc")) }],
///     );
/// let bytes = builder.build().unwrap();
/// let header = batch::validate(&bytes).unwrap();
/// assert_eq!((header.records_count, header.last_offset_delta, header.base_sequence), (2, 1, 17));
/// ```
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    base_offset: i64,
    partition_leader_epoch: i32,
    compression: Compression,
    timestamp_type: TimestampType,
    transactional: bool,
    control: bool,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    records: Vec<Record>,
}

impl Default for BatchBuilder {
    fn default() -> BatchBuilder {
        BatchBuilder::new()
    }
}

impl BatchBuilder {
    pub fn new() -> BatchBuilder {
        BatchBuilder {
            base_offset: 0,
            partition_leader_epoch: NONE,
            compression: Compression::None,
            timestamp_type: TimestampType::CreateTime,
            transactional: false,
            control: false,
            producer_id: i64::from(NONE),
            producer_epoch: NONE as i16,
            base_sequence: NONE,
            records: Vec::new(),
        }
    }

    /// The offset of the batch's first offset slot; record offsets are stored relative to it.
    /// Producers leave it at 0; a broker rewriting retained records (compaction) sets it.
    pub fn base_offset(&mut self, base_offset: i64) -> &mut BatchBuilder {
        self.base_offset = base_offset;
        self
    }

    pub fn partition_leader_epoch(&mut self, partition_leader_epoch: i32) -> &mut BatchBuilder {
        self.partition_leader_epoch = partition_leader_epoch;
        self
    }

    pub fn compression(&mut self, compression: Compression) -> &mut BatchBuilder {
        self.compression = compression;
        self
    }

    /// With LogAppendTime every record reads back with the batch's max timestamp, here the
    /// largest record timestamp. A broker stamping a client's batch on append rewrites the
    /// header instead ([`crate::batch::set_log_append_time`]), as Kafka does.
    pub fn timestamp_type(&mut self, timestamp_type: TimestampType) -> &mut BatchBuilder {
        self.timestamp_type = timestamp_type;
        self
    }

    /// Idempotent or transactional producer state: the id and epoch from InitProducerId and
    /// the sequence number of the batch's first record.
    pub fn producer(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> &mut BatchBuilder {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn transactional(&mut self, transactional: bool) -> &mut BatchBuilder {
        self.transactional = transactional;
        self
    }

    /// Control batches hold transaction markers; only brokers write them.
    pub fn control(&mut self, control: bool) -> &mut BatchBuilder {
        self.control = control;
        self
    }

    /// Adds a record at the next offset: the base offset for the first record, then one past
    /// the previous record.
    pub fn append(
        &mut self,
        timestamp: i64,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: Vec<super::Header>,
    ) -> &mut BatchBuilder {
        let offset = match self.records.last() {
            Some(previous) => previous.offset.saturating_add(1),
            None => self.base_offset,
        };
        self.push(Record {
            offset,
            timestamp,
            key,
            value,
            headers,
        })
    }

    /// Adds a record at its own absolute offset, which must be above the previous record's
    /// (gaps are allowed, as compaction leaves them). Checked by [`BatchBuilder::build`].
    pub fn push(&mut self, record: Record) -> &mut BatchBuilder {
        self.records.push(record);
        self
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Encodes the batch: records, then compression, then the header and its CRC-32C.
    pub fn build(&self) -> Result<Bytes, BuildError> {
        let (first, last) = match (self.records.first(), self.records.last()) {
            (Some(first), Some(last)) => (first, last),
            _ => return Err(BuildError::Empty),
        };
        let base_timestamp = first.timestamp;
        let max_timestamp = self
            .records
            .iter()
            .map(|record| record.timestamp)
            .max()
            .unwrap_or(base_timestamp);
        let last_offset_delta = self.offset_delta(last.offset)?;
        let records_section = self.encode_records(base_timestamp)?;
        let stored = compression::compress(self.compression, &records_section)?;

        let batch_length =
            i32::try_from(HEADER_BYTES - LOG_OVERHEAD + stored.len()).map_err(|_| {
                BuildError::TooLarge {
                    field: "batch",
                    bytes: HEADER_BYTES + stored.len(),
                }
            })?;
        let records_count =
            i32::try_from(self.records.len()).map_err(|_| BuildError::TooLarge {
                field: "records count",
                bytes: self.records.len(),
            })?;
        let mut output = Vec::with_capacity(HEADER_BYTES + stored.len());
        output.extend_from_slice(&self.base_offset.to_be_bytes());
        output.extend_from_slice(&batch_length.to_be_bytes());
        output.extend_from_slice(&self.partition_leader_epoch.to_be_bytes());
        output.push(MAGIC_V2 as u8);
        output.extend_from_slice(&0u32.to_be_bytes());
        output.extend_from_slice(&self.attributes().to_be_bytes());
        output.extend_from_slice(&last_offset_delta.to_be_bytes());
        output.extend_from_slice(&base_timestamp.to_be_bytes());
        output.extend_from_slice(&max_timestamp.to_be_bytes());
        output.extend_from_slice(&self.producer_id.to_be_bytes());
        output.extend_from_slice(&self.producer_epoch.to_be_bytes());
        output.extend_from_slice(&self.base_sequence.to_be_bytes());
        output.extend_from_slice(&records_count.to_be_bytes());
        debug_assert_eq!(output.len(), HEADER_BYTES);
        output.extend_from_slice(&stored);
        let crc = batch::compute_crc(&output);
        output[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        debug_assert!(batch::validate(&output).is_ok(), "built an invalid batch");
        Ok(Bytes::from(output))
    }

    fn attributes(&self) -> i16 {
        let mut attributes = self.compression.attribute_bits();
        if self.timestamp_type == TimestampType::LogAppendTime {
            attributes |= TIMESTAMP_TYPE_BIT;
        }
        if self.transactional {
            attributes |= TRANSACTIONAL_BIT;
        }
        if self.control {
            attributes |= CONTROL_BIT;
        }
        attributes
    }

    fn offset_delta(&self, offset: i64) -> Result<i32, BuildError> {
        offset
            .checked_sub(self.base_offset)
            .and_then(|delta| i32::try_from(delta).ok())
            .filter(|&delta| delta >= 0)
            .ok_or(BuildError::OffsetOutOfRange {
                base_offset: self.base_offset,
                offset,
            })
    }

    /// The uncompressed records section, each record prefixed with its length.
    fn encode_records(&self, base_timestamp: i64) -> Result<Vec<u8>, BuildError> {
        let mut section = Vec::new();
        let mut body = Vec::new();
        let mut previous_offset = None;
        for record in &self.records {
            match previous_offset {
                Some(previous) if record.offset <= previous => {
                    return Err(BuildError::OffsetNotIncreasing {
                        previous,
                        offset: record.offset,
                    });
                }
                _ => {}
            }
            previous_offset = Some(record.offset);
            let offset_delta = self.offset_delta(record.offset)?;
            let timestamp_delta = record.timestamp.checked_sub(base_timestamp).ok_or(
                BuildError::TimestampOutOfRange {
                    base_timestamp,
                    timestamp: record.timestamp,
                },
            )?;
            body.clear();
            encode_record_body(record, offset_delta, timestamp_delta, &mut body)?;
            write_varint(kafka_length("record", body.len())?, &mut section);
            section.extend_from_slice(&body);
        }
        Ok(section)
    }
}

fn encode_record_body(
    record: &Record,
    offset_delta: i32,
    timestamp_delta: i64,
    body: &mut Vec<u8>,
) -> Result<(), BuildError> {
    // Record attributes are unused in v2; Kafka writes zero.
    body.push(0);
    write_varlong(timestamp_delta, body);
    write_varint(offset_delta, body);
    write_nullable_bytes("key", record.key.as_deref(), body)?;
    write_nullable_bytes("value", record.value.as_deref(), body)?;
    write_varint(kafka_length("headers", record.headers.len())?, body);
    for header in &record.headers {
        write_nullable_bytes("header key", Some(header.key.as_bytes()), body)?;
        write_nullable_bytes("header value", header.value.as_deref(), body)?;
    }
    Ok(())
}

fn write_nullable_bytes(
    field: &'static str,
    bytes: Option<&[u8]>,
    output: &mut Vec<u8>,
) -> Result<(), BuildError> {
    match bytes {
        None => write_varint(-1, output),
        Some(bytes) => {
            write_varint(kafka_length(field, bytes.len())?, output);
            output.extend_from_slice(bytes);
        }
    }
    Ok(())
}

fn kafka_length(field: &'static str, bytes: usize) -> Result<i32, BuildError> {
    i32::try_from(bytes).map_err(|_| BuildError::TooLarge { field, bytes })
}
