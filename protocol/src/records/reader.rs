//! Walks the records section of a v2 batch (already decompressed), one record at a time,
//! checking every length and varint and returning byte ranges instead of copies.
//!
//! ```text
//! record := length:varint  attributes:i8  timestamp_delta:varlong  offset_delta:varint
//!           key_length:varint key  value_length:varint value  headers_count:varint header*
//! header := key_length:varint key  value_length:varint value        (length -1 = null)
//! ```
//!
//! `length` counts the bytes after itself; a record whose fields do not fill exactly that many
//! bytes is malformed, as in Kafka's `DefaultRecord.readFrom`.

use std::ops::Range;

use super::RecordsError;
use super::varint::{read_varint, read_varlong};

/// The smallest record on the wire: a one-byte length and six one-byte fields.
pub(crate) const RECORD_BYTES_MIN: usize = 7;
/// The smallest header on the wire: an empty key and a null value.
pub(crate) const HEADER_BYTES_MIN: usize = 2;

/// One record as positions in the records section.
pub(crate) struct RecordParts {
    pub(crate) timestamp_delta: i64,
    pub(crate) offset_delta: i32,
    pub(crate) key: Option<Range<usize>>,
    pub(crate) value: Option<Range<usize>>,
    /// The encoded headers, already checked; read them with [`Cursor::header`].
    pub(crate) headers: Range<usize>,
    pub(crate) headers_count: usize,
}

/// A position in the records section, bounded by `end` (the end of the current record once its
/// length is known), and the record index for error messages.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
    end: usize,
    record_index: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8], range: Range<usize>, record_index: usize) -> Cursor<'a> {
        Cursor {
            bytes,
            position: range.start,
            end: range.end,
            record_index,
        }
    }

    pub(crate) fn position(&self) -> usize {
        self.position
    }

    fn remaining(&self) -> &'a [u8] {
        &self.bytes[self.position..self.end]
    }

    fn truncated(&self, field: &'static str) -> RecordsError {
        RecordsError::Truncated {
            record_index: self.record_index,
            field,
        }
    }

    fn byte(&mut self, field: &'static str) -> Result<u8, RecordsError> {
        let byte = *self
            .remaining()
            .first()
            .ok_or_else(|| self.truncated(field))?;
        self.position += 1;
        Ok(byte)
    }

    fn varint(&mut self, field: &'static str) -> Result<i32, RecordsError> {
        let (value, length) = read_varint(self.remaining()).ok_or(RecordsError::BadVarint {
            record_index: self.record_index,
            field,
        })?;
        self.position += length;
        Ok(value)
    }

    fn varlong(&mut self, field: &'static str) -> Result<i64, RecordsError> {
        let (value, length) = read_varlong(self.remaining()).ok_or(RecordsError::BadVarint {
            record_index: self.record_index,
            field,
        })?;
        self.position += length;
        Ok(value)
    }

    /// A varint length that must be zero or more.
    fn length(&mut self, field: &'static str) -> Result<usize, RecordsError> {
        let length = self.varint(field)?;
        usize::try_from(length).map_err(|_| RecordsError::BadLength {
            record_index: self.record_index,
            field,
            length,
        })
    }

    /// A varint length then that many bytes; length -1 means null, below -1 is malformed.
    fn nullable_bytes(
        &mut self,
        field: &'static str,
    ) -> Result<Option<Range<usize>>, RecordsError> {
        let length = self.varint(field)?;
        if length == -1 {
            return Ok(None);
        }
        let length = usize::try_from(length).map_err(|_| RecordsError::BadLength {
            record_index: self.record_index,
            field,
            length,
        })?;
        if length > self.remaining().len() {
            return Err(self.truncated(field));
        }
        let start = self.position;
        self.position += length;
        Ok(Some(start..self.position))
    }

    /// One header: a key that may not be null (Kafka refuses null header keys) and a value
    /// that may.
    pub(crate) fn header(&mut self) -> Result<(Range<usize>, Option<Range<usize>>), RecordsError> {
        let key = self
            .nullable_bytes("header key")?
            .ok_or(RecordsError::BadLength {
                record_index: self.record_index,
                field: "header key",
                length: -1,
            })?;
        let value = self.nullable_bytes("header value")?;
        Ok((key, value))
    }
}

/// Reads the record starting at `start`, returning it and where the next one starts.
/// `headers_count_left` is the batch's remaining header allowance; it shrinks by this record's
/// headers so one batch cannot make the caller build more `Header`s than the limit.
pub(crate) fn read_record(
    section: &[u8],
    start: usize,
    record_index: usize,
    headers_count_left: &mut usize,
    headers_count_max: usize,
) -> Result<(RecordParts, usize), RecordsError> {
    let mut cursor = Cursor::new(section, start..section.len(), record_index);
    let record_length = cursor.length("record length")?;
    let body_start = cursor.position();
    if record_length > section.len() - body_start {
        return Err(cursor.truncated("record body"));
    }
    let body_end = body_start + record_length;
    let mut cursor = Cursor::new(section, body_start..body_end, record_index);
    let _attributes = cursor.byte("attributes")?;
    let timestamp_delta = cursor.varlong("timestamp delta")?;
    let offset_delta = cursor.varint("offset delta")?;
    let key = cursor.nullable_bytes("key")?;
    let value = cursor.nullable_bytes("value")?;
    let headers_count = cursor.length("headers count")?;
    if headers_count > *headers_count_left {
        return Err(RecordsError::TooManyHeaders { headers_count_max });
    }
    *headers_count_left -= headers_count;
    let headers_start = cursor.position();
    for _ in 0..headers_count {
        cursor.header()?;
    }
    let headers = headers_start..cursor.position();
    if cursor.position() != body_end {
        return Err(RecordsError::RecordLengthMismatch {
            record_index,
            declared: record_length,
            read: cursor.position() - body_start,
        });
    }
    let parts = RecordParts {
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers,
        headers_count,
    };
    Ok((parts, body_end))
}
