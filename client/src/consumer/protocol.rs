//! The consumer protocol's embedded metadata: what a member puts in JoinGroup (its
//! subscription) and what the leader hands back through SyncGroup (each member's assignment).
//! Both start with an i16 version and use Kafka's classic (non-flexible) encoding.
//!
//! Written by hand rather than with `kafka-protocol`'s `ConsumerProtocolSubscription`: these
//! bytes come from other group members, possibly other clients, and that crate sizes vectors
//! from wire counts before checking the bytes exist (see ARCHITECTURE.md, `guard`). Here every
//! count is checked against the bytes left. The unit tests compare our bytes with the crate's.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};

use crate::types::TopicPartition;

/// The newest version of both structures we write (and the newest whose fields we read; later
/// versions only append fields, so their prefix reads as this one).
pub(crate) const VERSION: i16 = 3;

/// A member's subscription, as carried in JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Subscription {
    pub topics: Vec<String>,
    pub user_data: Option<Bytes>,
    /// Partitions the member owns now (v1+): cooperative assignors keep them where they are.
    pub owned: Vec<TopicPartition>,
    /// The generation in which the member got `owned` (v2+), -1 if none.
    pub generation: i32,
    pub rack: Option<String>,
}

/// A member's assignment, as carried in SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Assignment {
    pub partitions: Vec<TopicPartition>,
    pub user_data: Option<Bytes>,
}

pub(crate) fn encode_subscription(subscription: &Subscription) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(VERSION);
    put_array_len(&mut buf, subscription.topics.len());
    for topic in &subscription.topics {
        put_string(&mut buf, topic);
    }
    put_nullable_bytes(&mut buf, subscription.user_data.as_ref());
    put_partitions(&mut buf, &subscription.owned);
    buf.put_i32(subscription.generation);
    put_nullable_string(&mut buf, subscription.rack.as_deref());
    buf.freeze()
}

pub(crate) fn encode_assignment(assignment: &Assignment, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(version.clamp(0, VERSION));
    put_partitions(&mut buf, &assignment.partitions);
    put_nullable_bytes(&mut buf, assignment.user_data.as_ref());
    buf.freeze()
}

/// The subscription and the version it was written with, or `None` if the bytes are not one.
pub(crate) fn decode_subscription(bytes: &[u8]) -> Option<(i16, Subscription)> {
    let mut reader = Reader(bytes);
    let version = reader.i16()?;
    if version < 0 {
        return None;
    }
    let count = reader.count(2)?;
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        topics.push(reader.string()?);
    }
    let user_data = reader.nullable_bytes()?;
    let mut subscription = Subscription {
        topics,
        user_data,
        owned: Vec::new(),
        generation: -1,
        rack: None,
    };
    if version >= 1 {
        subscription.owned = reader.partitions()?;
    }
    if version >= 2 {
        subscription.generation = reader.i32()?;
    }
    if version >= 3 {
        subscription.rack = reader.nullable_string()?;
    }
    Some((version, subscription))
}

/// An assignment, or `None` if the bytes are not one. Empty bytes are the empty assignment
/// (what a coordinator hands a member the leader left out).
pub(crate) fn decode_assignment(bytes: &[u8]) -> Option<Assignment> {
    if bytes.is_empty() {
        return Some(Assignment::default());
    }
    let mut reader = Reader(bytes);
    if reader.i16()? < 0 {
        return None;
    }
    let partitions = reader.partitions()?;
    let user_data = reader.nullable_bytes()?;
    Some(Assignment {
        partitions,
        user_data,
    })
}

fn put_array_len(buf: &mut BytesMut, len: usize) {
    buf.put_i32(i32::try_from(len).unwrap_or(i32::MAX));
}

fn put_string(buf: &mut BytesMut, value: &str) {
    // Topic names are at most 249 bytes; a longer string cannot be a valid one anyway.
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

fn put_nullable_bytes(buf: &mut BytesMut, value: Option<&Bytes>) {
    match value {
        Some(value) => {
            put_array_len(buf, value.len());
            buf.put_slice(value);
        }
        None => buf.put_i32(-1),
    }
}

/// `[topic, [partition]]`, topics in name order (as Java writes them).
fn put_partitions(buf: &mut BytesMut, partitions: &[TopicPartition]) {
    let mut by_topic: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
    for tp in partitions {
        by_topic.entry(&tp.topic).or_default().insert(tp.partition);
    }
    put_array_len(buf, by_topic.len());
    for (topic, partitions) in by_topic {
        put_string(buf, topic);
        put_array_len(buf, partitions.len());
        for partition in partitions {
            buf.put_i32(partition);
        }
    }
}

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

    /// An array count no larger than the bytes left could hold, each element taking at least
    /// `element_bytes`.
    fn count(&mut self, element_bytes: usize) -> Option<usize> {
        let count = usize::try_from(self.i32()?).ok()?;
        (count <= self.0.len() / element_bytes).then_some(count)
    }

    fn string(&mut self) -> Option<String> {
        let length = usize::try_from(self.i16()?).ok()?;
        Some(String::from_utf8_lossy(self.take(length)?).into_owned())
    }

    fn nullable_string(&mut self) -> Option<Option<String>> {
        let length = self.i16()?;
        if length < 0 {
            return Some(None);
        }
        let bytes = self.take(usize::try_from(length).ok()?)?;
        Some(Some(String::from_utf8_lossy(bytes).into_owned()))
    }

    fn nullable_bytes(&mut self) -> Option<Option<Bytes>> {
        let length = self.i32()?;
        if length < 0 {
            return Some(None);
        }
        let bytes = self.take(usize::try_from(length).ok()?)?;
        Some(Some(Bytes::copy_from_slice(bytes)))
    }

    fn partitions(&mut self) -> Option<Vec<TopicPartition>> {
        // A topic entry is at least a 2-byte name length and a 4-byte count.
        let topics = self.count(6)?;
        let mut partitions = Vec::new();
        for _ in 0..topics {
            let topic = self.string()?;
            let count = self.count(4)?;
            for _ in 0..count {
                partitions.push(TopicPartition::new(topic.clone(), self.i32()?));
            }
        }
        Some(partitions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{
        ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
        consumer_protocol_assignment, consumer_protocol_subscription,
    };
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    fn name(value: &str) -> StrBytes {
        StrBytes::from_string(value.to_string())
    }

    fn subscription() -> Subscription {
        Subscription {
            topics: vec!["orders".into(), "payments".into()],
            user_data: Some(Bytes::from_static(&[0, 0, 0, 7])),
            owned: vec![
                TopicPartition::new("orders", 0),
                TopicPartition::new("orders", 2),
                TopicPartition::new("payments", 1),
            ],
            generation: 7,
            rack: None,
        }
    }

    #[test]
    fn our_subscription_bytes_are_kafkas() {
        let ours = encode_subscription(&subscription());
        let theirs = ConsumerProtocolSubscription::default()
            .with_topics(vec![name("orders"), name("payments")])
            .with_user_data(Some(Bytes::from_static(&[0, 0, 0, 7])))
            .with_owned_partitions(vec![
                consumer_protocol_subscription::TopicPartition::default()
                    .with_topic(TopicName(name("orders")))
                    .with_partitions(vec![0, 2]),
                consumer_protocol_subscription::TopicPartition::default()
                    .with_topic(TopicName(name("payments")))
                    .with_partitions(vec![1]),
            ])
            .with_generation_id(7);
        let mut expected = BytesMut::new();
        expected.put_i16(VERSION);
        theirs.encode(&mut expected, VERSION).unwrap();
        assert_eq!(ours, expected.freeze());
        assert_eq!(
            decode_subscription(&ours),
            Some((VERSION, subscription())),
            "and they read back"
        );
    }

    #[test]
    fn our_assignment_bytes_are_kafkas_and_read_back() {
        let assignment = Assignment {
            partitions: vec![TopicPartition::new("a", 1), TopicPartition::new("b", 0)],
            user_data: None,
        };
        let ours = encode_assignment(&assignment, 1);
        let mut bytes = ours.clone();
        let version = bytes::Buf::get_i16(&mut bytes);
        let theirs = ConsumerProtocolAssignment::decode(&mut bytes, version).unwrap();
        assert_eq!(
            theirs.assigned_partitions,
            vec![
                consumer_protocol_assignment::TopicPartition::default()
                    .with_topic(TopicName(name("a")))
                    .with_partitions(vec![1]),
                consumer_protocol_assignment::TopicPartition::default()
                    .with_topic(TopicName(name("b")))
                    .with_partitions(vec![0]),
            ]
        );
        assert_eq!(decode_assignment(&ours), Some(assignment));
        assert_eq!(decode_assignment(&[]), Some(Assignment::default()));
    }

    #[test]
    fn older_subscription_versions_read_with_defaults() {
        let mut v0 = BytesMut::new();
        v0.put_i16(0);
        v0.put_i32(1);
        put_string(&mut v0, "orders");
        v0.put_i32(-1);
        let (version, read) = decode_subscription(&v0).unwrap();
        assert_eq!(version, 0);
        assert_eq!(read.topics, vec!["orders".to_string()]);
        assert!(read.owned.is_empty());
        assert_eq!(read.generation, -1);
    }

    #[test]
    fn lying_counts_and_truncations_are_refused_without_allocating() {
        let mut lie = BytesMut::new();
        lie.put_i16(3);
        lie.put_i32(i32::MAX);
        assert_eq!(decode_subscription(&lie), None);
        assert_eq!(decode_assignment(&lie), None);
        let whole = encode_subscription(&subscription());
        for cut in 1..whole.len() {
            assert_eq!(decode_subscription(&whole[..cut]), None, "cut at {cut}");
        }
    }
}
