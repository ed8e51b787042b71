//! The consumer protocol's member metadata, as far as the coordinator needs it: which topics
//! a subscription names (OffsetDelete refuses to delete offsets of a subscribed topic) and
//! which partitions an assignment holds (describing a group). Parsed by hand with bounds, so
//! client-supplied bytes cannot make us allocate what they claim.
//!
//! Both start with an i16 version, then an array of topics: ConsumerProtocolSubscription has
//! topic names; ConsumerProtocolAssignment has (topic, array of i32 partitions). Later fields
//! (user data, owned partitions, rack) are not needed here.

/// Topics named by a consumer-protocol subscription, or none if the bytes do not parse.
pub fn subscribed_topics(metadata: &[u8]) -> Vec<String> {
    let mut reader = Reader(metadata);
    let mut parse = || -> Option<Vec<String>> {
        reader.i16()?;
        let count = reader.count()?;
        let mut topics = Vec::new();
        for _ in 0..count {
            topics.push(reader.string()?);
        }
        Some(topics)
    };
    parse().unwrap_or_default()
}

/// (topic, partition) pairs of a consumer-protocol assignment, or none if they do not parse.
pub fn assigned_partitions(assignment: &[u8]) -> Vec<(String, i32)> {
    let mut reader = Reader(assignment);
    let mut parse = || -> Option<Vec<(String, i32)>> {
        reader.i16()?;
        let topics = reader.count()?;
        let mut assigned = Vec::new();
        for _ in 0..topics {
            let topic = reader.string()?;
            let partitions = reader.count()?;
            for _ in 0..partitions {
                assigned.push((topic.clone(), reader.i32()?));
            }
        }
        Some(assigned)
    };
    parse().unwrap_or_default()
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

    /// An array count no larger than the bytes left could hold (every element takes ≥ 2).
    fn count(&mut self) -> Option<usize> {
        let count = self.i32()?;
        let count = usize::try_from(count).ok()?;
        (count <= self.0.len() / 2).then_some(count)
    }

    fn string(&mut self) -> Option<String> {
        let length = usize::try_from(self.i16()?).ok()?;
        Some(String::from_utf8_lossy(self.take(length)?).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn string(buf: &mut Vec<u8>, value: &str) {
        buf.put_i16(value.len() as i16);
        buf.put_slice(value.as_bytes());
    }

    #[test]
    fn subscriptions_and_assignments_are_read() {
        let mut subscription = Vec::new();
        subscription.put_i16(3);
        subscription.put_i32(2);
        string(&mut subscription, "orders");
        string(&mut subscription, "payments");
        subscription.put_i32(-1);
        assert_eq!(subscribed_topics(&subscription), vec!["orders", "payments"]);

        let mut assignment = Vec::new();
        assignment.put_i16(0);
        assignment.put_i32(1);
        string(&mut assignment, "orders");
        assignment.put_i32(2);
        assignment.put_i32(0);
        assignment.put_i32(4);
        assignment.put_i32(-1);
        assert_eq!(
            assigned_partitions(&assignment),
            vec![("orders".to_owned(), 0), ("orders".to_owned(), 4)]
        );
    }

    #[test]
    fn lying_counts_and_garbage_give_nothing() {
        let mut lie = Vec::new();
        lie.put_i16(0);
        lie.put_i32(i32::MAX);
        assert!(subscribed_topics(&lie).is_empty());
        assert!(assigned_partitions(&lie).is_empty());
        assert!(assigned_partitions(&[1]).is_empty());
    }
}
