//! The fixed binary encoding of outbox rows (the value of the `outbox` table).
//!
//! Not JSON: an outbox row is mostly opaque bytes (key, value, header values), which JSON would
//! spell as arrays of numbers at three to four times their size. All integers big-endian:
//!
//! ```text
//! version: u8 = 1
//! created_ms: i64
//! topic: u32 length, UTF-8 bytes
//! key: u8 (0 = none, 1 = some), then u32 length and bytes when some
//! value: u32 length, bytes
//! headers: u32 count, then per header: u32 length, UTF-8 name; u32 length, value bytes
//! ```
//!
//! The sequence number is the row's key in the table and is not repeated here.

use super::{NewOutboxRow, OutboxRow, StoreError};

const VERSION: u8 = 1;

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8], what: &str) -> Result<(), StoreError> {
    let len = u32::try_from(bytes.len()).map_err(|_| {
        StoreError::Invalid(format!(
            "outbox {what} of {} bytes is over 4 GiB",
            bytes.len()
        ))
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

pub(super) fn encode(row: &NewOutboxRow, created_ms: i64) -> Result<Vec<u8>, StoreError> {
    let headers_len: usize = row
        .headers
        .iter()
        .map(|(name, value)| 8 + name.len() + value.len())
        .sum();
    let mut out = Vec::with_capacity(
        26 + row.topic.len() + row.key.as_ref().map_or(0, Vec::len) + row.value.len() + headers_len,
    );
    out.push(VERSION);
    out.extend_from_slice(&created_ms.to_be_bytes());
    put_bytes(&mut out, row.topic.as_bytes(), "topic")?;
    match &row.key {
        None => out.push(0),
        Some(key) => {
            out.push(1);
            put_bytes(&mut out, key, "key")?;
        }
    }
    put_bytes(&mut out, &row.value, "value")?;
    let count = u32::try_from(row.headers.len())
        .map_err(|_| StoreError::Invalid("more than 2^32 outbox headers".to_owned()))?;
    out.extend_from_slice(&count.to_be_bytes());
    for (name, value) in &row.headers {
        put_bytes(&mut out, name.as_bytes(), "header name")?;
        put_bytes(&mut out, value, "header value")?;
    }
    Ok(out)
}

/// Reads fields off the front of an encoded row; every shortfall is a corrupt row.
struct Reader<'a> {
    rest: &'a [u8],
    seq: u64,
}

impl<'a> Reader<'a> {
    fn corrupt(&self, what: &str) -> StoreError {
        StoreError::Corrupt(format!("outbox row {}: {what}", self.seq))
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], StoreError> {
        if self.rest.len() < n {
            return Err(self.corrupt(&format!("truncated {what}")));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], StoreError> {
        let bytes = self.take(N, what)?;
        Ok(bytes.try_into().expect("take returned N bytes"))
    }

    fn bytes(&mut self, what: &str) -> Result<Vec<u8>, StoreError> {
        let len = u32::from_be_bytes(self.array(what)?) as usize;
        Ok(self.take(len, what)?.to_vec())
    }

    fn string(&mut self, what: &str) -> Result<String, StoreError> {
        let bytes = self.bytes(what)?;
        String::from_utf8(bytes).map_err(|_| self.corrupt(&format!("{what} is not UTF-8")))
    }
}

pub(super) fn decode(seq: u64, bytes: &[u8]) -> Result<OutboxRow, StoreError> {
    let mut reader = Reader { rest: bytes, seq };
    let [version] = reader.array("version")?;
    if version != VERSION {
        return Err(reader.corrupt(&format!("unknown encoding version {version}")));
    }
    let created_ms = i64::from_be_bytes(reader.array("created_ms")?);
    let topic = reader.string("topic")?;
    let key = match reader.array("key flag")? {
        [0] => None,
        [1] => Some(reader.bytes("key")?),
        [flag] => return Err(reader.corrupt(&format!("key flag {flag}"))),
    };
    let value = reader.bytes("value")?;
    let count = u32::from_be_bytes(reader.array("header count")?);
    // Each header takes at least 8 bytes, so a count the rest cannot hold is refused before
    // anything is allocated for it.
    if u64::from(count) * 8 > reader.rest.len() as u64 {
        return Err(reader.corrupt(&format!("{count} headers in {} bytes", reader.rest.len())));
    }
    let mut headers = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let name = reader.string("header name")?;
        let value = reader.bytes("header value")?;
        headers.push((name, value));
    }
    if !reader.rest.is_empty() {
        return Err(reader.corrupt(&format!("{} trailing bytes", reader.rest.len())));
    }
    Ok(OutboxRow {
        seq,
        topic,
        key,
        value,
        headers,
        created_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: Option<&[u8]>, headers: &[(&str, &[u8])]) -> NewOutboxRow {
        NewOutboxRow {
            topic: "events.persisted".to_owned(),
            key: key.map(<[u8]>::to_vec),
            value: b"{\"id\":\"e1\"}".to_vec(),
            headers: headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.to_vec()))
                .collect(),
        }
    }

    #[test]
    fn rows_read_back_as_written() {
        for new in [
            row(None, &[]),
            row(Some(b""), &[("a", b"")]),
            row(
                Some(b"tenant-1"),
                &[("event-id", b"e1"), ("attempt", b"\x00\x01")],
            ),
        ] {
            let bytes = encode(&new, -5).unwrap();
            let back = decode(7, &bytes).unwrap();
            assert_eq!(back.seq, 7);
            assert_eq!(back.created_ms, -5);
            assert_eq!(back.topic, new.topic);
            assert_eq!(back.key, new.key);
            assert_eq!(back.value, new.value);
            assert_eq!(back.headers, new.headers);
        }
    }

    #[test]
    fn every_truncation_and_any_trailing_byte_is_corrupt() {
        let bytes = encode(&row(Some(b"k"), &[("h", b"v")]), 1).unwrap();
        for cut in 0..bytes.len() {
            assert!(matches!(
                decode(1, &bytes[..cut]),
                Err(StoreError::Corrupt(_))
            ));
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decode(1, &longer), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn a_huge_header_count_is_refused_before_allocating() {
        let mut bytes = encode(&row(None, &[]), 1).unwrap();
        let at = bytes.len() - 4;
        bytes[at..].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(decode(1, &bytes), Err(StoreError::Corrupt(_))));
    }
}
