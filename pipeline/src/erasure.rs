//! Erasure, the "delete arbitrary messages" recipe (DESIGN.md §5): Kafka deletes single
//! records only through compaction, which keeps the latest record *per key*. So every record
//! gets a key of its own — the business key plus a unique suffix — on a compacted topic
//! (`cleanup.policy=compact`); compaction then never merges two of them, and a tombstone
//! (a null value) for one key+suffix deletes exactly that record at the cleaner's next pass,
//! from the segment files themselves.
//!
//! - The producer writes keys made by [`erasable_key`], through [`SuffixIgnoringPartitioner`]:
//!   it partitions by the business key alone, so one key's records stay in one partition, in
//!   order, as without the suffix.
//! - To erase a record, produce [`tombstone`] with the same key and suffix.
//! - Consumers split keys with [`strip_suffix`].
//!
//! # Key format
//!
//! `key` `U+001F` `suffix`, as UTF-8. U+001F (ASCII "unit separator") exists to separate fields,
//! never appears in readable keys and is one byte, so the key stays a valid string for logs
//! and tools. The key is split at the first separator: the business key must not contain one;
//! the suffix may. A key without a separator is a business key without a suffix, partitioned
//! exactly as the default partitioner would, so a topic can move to erasable keys without
//! moving any key's records to another partition.

use bytes::Bytes;
use tidepool_client::{DefaultPartitioner, Partitioner, ProducerRecord};

/// Separates the business key from the unique suffix.
pub const SEPARATOR: u8 = 0x1f;

/// `key` with `suffix` appended after [`SEPARATOR`]. The suffix must be unique among the
/// topic's records of `key` (an event id, say), else compaction keeps only the latest of the
/// records sharing it.
///
/// # Panics
///
/// If `key` contains the separator: its records would be partitioned and stripped by a prefix
/// of it.
pub fn erasable_key(key: &str, suffix: &str) -> Bytes {
    assert!(
        !key.as_bytes().contains(&SEPARATOR),
        "a business key must not contain U+001F, the suffix separator: {key:?}"
    );
    let mut bytes = Vec::with_capacity(key.len() + 1 + suffix.len());
    bytes.extend_from_slice(key.as_bytes());
    bytes.push(SEPARATOR);
    bytes.extend_from_slice(suffix.as_bytes());
    Bytes::from(bytes)
}

/// Splits a record key into the business key and, if it has one, the suffix.
pub fn strip_suffix(key: &[u8]) -> (&[u8], Option<&[u8]>) {
    match key.iter().position(|byte| *byte == SEPARATOR) {
        Some(at) => (&key[..at], Some(&key[at + 1..])),
        None => (key, None),
    }
}

/// Kafka's default partitioning (murmur2 of the key) applied to the business key only, so
/// `acme␟evt-1` and `acme␟evt-2` land where `acme` would: together, in order.
#[derive(Debug, Default, Clone, Copy)]
pub struct SuffixIgnoringPartitioner;

impl Partitioner for SuffixIgnoringPartitioner {
    fn partition(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        partitions: i32,
        available: &[i32],
    ) -> i32 {
        let base = key.map(|key| strip_suffix(key).0);
        DefaultPartitioner.partition(topic, base, partitions, available)
    }
}

/// The record that erases the one produced with `key` and `suffix`: same key, null value.
/// Produced through [`SuffixIgnoringPartitioner`], it lands in that record's partition.
pub fn tombstone(topic: impl Into<String>, key: &str, suffix: &str) -> ProducerRecord {
    let mut record = ProducerRecord::new(topic, Bytes::new()).key(erasable_key(key, suffix));
    record.value = None;
    record
}

#[cfg(test)]
mod tests {
    use tidepool_client::partitioner::partition_for_key;

    use super::*;

    #[test]
    fn a_suffixed_key_splits_back_into_its_key_and_suffix() {
        let key = erasable_key("acme", "evt-17");
        assert_eq!(&key[..], b"acme\x1fevt-17");
        assert_eq!(strip_suffix(&key), (&b"acme"[..], Some(&b"evt-17"[..])));
        assert_eq!(strip_suffix(b"acme"), (&b"acme"[..], None));
        assert_eq!(strip_suffix(b"acme\x1f"), (&b"acme"[..], Some(&b""[..])));
        assert_eq!(
            strip_suffix(&erasable_key("acme", "a\u{1f}b")),
            (&b"acme"[..], Some(&b"a\x1fb"[..]))
        );
    }

    #[test]
    fn every_suffix_of_a_key_lands_where_the_bare_key_would() {
        for key in ["acme", "globex", "initech", "", "tenant-42"] {
            for partitions in [1, 3, 6, 50] {
                let expected = partition_for_key(key.as_bytes(), partitions);
                for suffix in ["evt-1", "evt-2", "0190a3c4-7d1e", ""] {
                    let suffixed = erasable_key(key, suffix);
                    let chosen =
                        SuffixIgnoringPartitioner.partition("t", Some(&suffixed), partitions, &[]);
                    assert_eq!(chosen, expected, "{key:?} + {suffix:?} of {partitions}");
                }
                let bare =
                    SuffixIgnoringPartitioner.partition("t", Some(key.as_bytes()), partitions, &[]);
                assert_eq!(bare, expected);
            }
        }
    }

    #[test]
    fn a_tombstone_has_the_erased_records_key_and_no_value() {
        let record = tombstone("events.erasable", "acme", "evt-17");
        assert_eq!(record.topic, "events.erasable");
        assert_eq!(record.key, Some(erasable_key("acme", "evt-17")));
        assert_eq!(record.value, None);
    }

    #[test]
    #[should_panic(expected = "must not contain U+001F")]
    fn a_business_key_holding_the_separator_is_refused() {
        erasable_key("ac\u{1f}me", "evt-1");
    }
}
