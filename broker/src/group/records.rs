//! The records the coordinator keeps in `__consumer_offsets`, in Kafka's layouts, so the topic
//! reads the same to tools that know Kafka's: an offset commit is key version 1 (group, topic,
//! partition) with value version 3 (offset, leader epoch, metadata, commit timestamp); a group's
//! generation is key version 2 (group) with value version 3 (protocol type, generation,
//! protocol, leader, state timestamp, members — written empty: members rejoin after a restart).
//! A null value (tombstone) deletes the key, which compaction then removes.

use bytes::{BufMut, Bytes, BytesMut};

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordValue {
    Offset(OffsetValue),
    Group(GroupValue),
}

fn put_string(buf: &mut BytesMut, value: &str) {
    // Kafka strings are at most i16::MAX bytes; group ids and topics are far below.
    let bytes = &value.as_bytes()[..value.len().min(i16::MAX as usize)];
    buf.put_i16(bytes.len() as i16);
    buf.put_slice(bytes);
}

fn put_nullable_string(buf: &mut BytesMut, value: Option<&str>) {
    match value {
        Some(value) => put_string(buf, value),
        None => buf.put_i16(-1),
    }
}

impl RecordKey {
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            RecordKey::Offset {
                group,
                topic,
                partition,
            } => {
                buf.put_i16(OFFSET_KEY_VERSION);
                put_string(&mut buf, group);
                put_string(&mut buf, topic);
                buf.put_i32(*partition);
            }
            RecordKey::Group { group } => {
                buf.put_i16(GROUP_KEY_VERSION);
                put_string(&mut buf, group);
            }
        }
        buf.freeze()
    }

    /// None for key versions this broker does not write (transaction markers and the like).
    pub fn decode(bytes: &[u8]) -> Option<RecordKey> {
        let mut reader = Reader(bytes);
        match reader.i16()? {
            0 | 1 => Some(RecordKey::Offset {
                group: reader.string()?,
                topic: reader.string()?,
                partition: reader.i32()?,
            }),
            2 => Some(RecordKey::Group {
                group: reader.string()?,
            }),
            _ => None,
        }
    }
}

impl RecordValue {
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            RecordValue::Offset(value) => {
                buf.put_i16(OFFSET_VALUE_VERSION);
                buf.put_i64(value.offset);
                buf.put_i32(value.leader_epoch);
                put_string(&mut buf, &value.metadata);
                buf.put_i64(value.commit_timestamp_ms);
            }
            RecordValue::Group(value) => {
                buf.put_i16(GROUP_VALUE_VERSION);
                put_string(&mut buf, &value.protocol_type);
                buf.put_i32(value.generation);
                put_nullable_string(&mut buf, value.protocol.as_deref());
                put_nullable_string(&mut buf, value.leader.as_deref());
                buf.put_i64(value.state_timestamp_ms);
                buf.put_i32(0);
            }
        }
        buf.freeze()
    }

    /// Reads the value for `key`; versions 0-3 of offset values and 0-3 of group values.
    pub fn decode(key: &RecordKey, bytes: &[u8]) -> Option<RecordValue> {
        let mut reader = Reader(bytes);
        let version = reader.i16()?;
        match key {
            RecordKey::Offset { .. } => {
                let offset = reader.i64()?;
                let leader_epoch = if version >= 3 { reader.i32()? } else { -1 };
                let metadata = reader.string()?;
                let commit_timestamp_ms = reader.i64()?;
                Some(RecordValue::Offset(OffsetValue {
                    offset,
                    leader_epoch,
                    metadata,
                    commit_timestamp_ms,
                }))
            }
            RecordKey::Group { .. } => {
                let protocol_type = reader.string()?;
                let generation = reader.i32()?;
                let protocol = reader.nullable_string()?;
                let leader = reader.nullable_string()?;
                let state_timestamp_ms = if version >= 2 { reader.i64()? } else { -1 };
                Some(RecordValue::Group(GroupValue {
                    protocol_type,
                    generation,
                    protocol,
                    leader,
                    state_timestamp_ms,
                }))
            }
        }
    }
}

/// A bounds-checked big-endian reader: every read returns None past the end.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, count: usize) -> Option<&[u8]> {
        if self.0.len() < count {
            return None;
        }
        let (taken, rest) = self.0.split_at(count);
        self.0 = rest;
        Some(taken)
    }

    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    fn nullable_string(&mut self) -> Option<Option<String>> {
        let length = self.i16()?;
        if length < 0 {
            return Some(None);
        }
        let bytes = self.take(length as usize)?;
        Some(Some(String::from_utf8_lossy(bytes).into_owned()))
    }

    fn string(&mut self) -> Option<String> {
        self.nullable_string()?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip_in_kafka_layouts() {
        let key = RecordKey::Offset {
            group: "g".into(),
            topic: "orders".into(),
            partition: 3,
        };
        let encoded = key.encode();
        assert_eq!(&encoded[..2], &[0, 1]);
        assert_eq!(RecordKey::decode(&encoded), Some(key.clone()));
        let value = RecordValue::Offset(OffsetValue {
            offset: 42,
            leader_epoch: 7,
            metadata: "m".into(),
            commit_timestamp_ms: 1_700_000_000_000,
        });
        assert_eq!(RecordValue::decode(&key, &value.encode()), Some(value));

        let group_key = RecordKey::Group { group: "g".into() };
        let group_value = RecordValue::Group(GroupValue {
            protocol_type: "consumer".into(),
            generation: 9,
            protocol: Some("range".into()),
            leader: None,
            state_timestamp_ms: 5,
        });
        assert_eq!(
            RecordKey::decode(&group_key.encode()),
            Some(group_key.clone())
        );
        assert_eq!(
            RecordValue::decode(&group_key, &group_value.encode()),
            Some(group_value)
        );
    }

    #[test]
    fn truncated_or_foreign_bytes_decode_to_nothing() {
        assert_eq!(RecordKey::decode(&[0, 1, 0, 5, b'a']), None);
        assert_eq!(RecordKey::decode(&[0, 9]), None);
        assert_eq!(RecordKey::decode(&[]), None);
        let key = RecordKey::Group { group: "g".into() };
        assert_eq!(RecordValue::decode(&key, &[0, 3, 0]), None);
    }
}
