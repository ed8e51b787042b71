//! Idempotent delivery: the producer id and epoch, per-partition sequence numbers, and what a
//! sequence error means.
//!
//! A partition's sequences belong to one generation (producer id and epoch). A batch takes its
//! sequence when first drained and keeps it across retries, so the broker recognises a resent
//! batch it already wrote. When a partition's sequence breaks (a batch failed without being
//! written, or the broker forgot the producer), the partition is *stale*: the producer asks for a
//! new epoch, and once nothing of the partition is in flight its waiting batches are numbered
//! afresh from zero under it.

use std::collections::VecDeque;

use super::accumulator::{Batch, PartitionQueue};
use crate::error::{Error, KafkaCode};

/// Kafka keeps the last five batches per producer and partition, so at most five may be in
/// flight without losing the ability to spot a duplicate.
pub(crate) const MAX_IN_FLIGHT_PER_PARTITION: usize = 5;

/// A producer id and epoch, as InitProducerId hands them out.
pub(crate) type Generation = (i64, i16);

/// The producer fields of a sequenced batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sequence {
    pub producer_id: i64,
    pub epoch: i16,
    pub base: i32,
}

impl Sequence {
    pub(crate) fn generation(&self) -> Generation {
        (self.producer_id, self.epoch)
    }
}

/// The producer-wide half: who we are to the brokers.
#[derive(Debug, Default)]
pub(crate) struct Identity {
    pub current: Option<Generation>,
    /// A partition's sequence broke; no batch is sequenced until InitProducerId answers.
    pub bump_wanted: bool,
    /// InitProducerId failed for good; every batch fails with this.
    pub fatal: Option<Error>,
}

impl Identity {
    /// The generation new sequences may be assigned under, if any.
    fn usable(&self) -> Option<Generation> {
        if self.bump_wanted || self.fatal.is_some() {
            return None;
        }
        self.current
    }

    /// Whether InitProducerId must be asked (first batch, or an epoch bump).
    pub(crate) fn wants_init(&self) -> bool {
        self.fatal.is_none() && (self.current.is_none() || self.bump_wanted)
    }
}

/// The per-partition half.
#[derive(Debug, Default)]
pub(crate) struct PartitionSequence {
    generation: Option<Generation>,
    next: i32,
    /// A batch of this generation was acknowledged, so the broker knows the producer here.
    acknowledged: bool,
    /// The sequence broke: renumber under a new generation before sending more.
    pub stale: bool,
}

impl PartitionSequence {
    fn fresh(generation: Generation) -> PartitionSequence {
        PartitionSequence {
            generation: Some(generation),
            ..PartitionSequence::default()
        }
    }

    /// Notes an acknowledged batch of `generation`.
    pub(crate) fn acknowledge(&mut self, generation: Generation) {
        if self.generation == Some(generation) {
            self.acknowledged = true;
        }
    }
}

/// Kafka sequences wrap from `i32::MAX` to 0.
fn advance(sequence: i32, records: usize) -> i32 {
    let records = i64::try_from(records).unwrap_or(i64::MAX);
    ((i64::from(sequence) + records) % (i64::from(i32::MAX) + 1)) as i32
}

/// What to do with a partition's front batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Send,
    Wait,
    /// The front changed (batches were failed while renumbering); look again.
    Changed,
}

/// Decides whether the front batch of `queue` may be sent now, giving it a sequence if it has
/// none and renumbering a stale partition first.
pub(crate) fn admit(
    identity: &Identity,
    queue: &mut PartitionQueue,
    failed: &mut Vec<(Batch, Error)>,
) -> Admission {
    let Some(current) = identity.usable() else {
        return Admission::Wait;
    };
    let Some(front) = queue.batches.front() else {
        return Admission::Wait;
    };
    if front.sequence.is_some() {
        // A retry goes alone: everything after it must wait until it is written, so the
        // broker sees the partition's batches in sequence order.
        if !queue.in_flight.is_empty() {
            return Admission::Wait;
        }
        if !queue.sequence.stale {
            return Admission::Send;
        }
        let before = queue.batches.len();
        renumber(current, queue, failed);
        return if queue.batches.len() == before {
            Admission::Send
        } else {
            Admission::Changed
        };
    }
    if queue.sequence.generation != Some(current) || queue.sequence.stale {
        // Batches of the old generation must be settled before the first of the new one goes.
        if !queue.in_flight.is_empty() {
            return Admission::Wait;
        }
        queue.sequence = PartitionSequence::fresh(current);
    }
    // A broker that does not know the producer on this partition takes any sequence as its
    // first (KIP-360). So until one batch is acknowledged, one goes at a time: were the first
    // refused (a leader not ready yet) and the second taken, the first could never follow.
    let limit = if queue.sequence.acknowledged {
        MAX_IN_FLIGHT_PER_PARTITION
    } else {
        1
    };
    if queue.in_flight.len() >= limit {
        return Admission::Wait;
    }
    let next = queue.sequence.next;
    let Some(front) = queue.batches.front_mut() else {
        return Admission::Wait;
    };
    front.sequence = Some(Sequence {
        producer_id: current.0,
        epoch: current.1,
        base: next,
    });
    queue.sequence.next = advance(next, front.records.len());
    Admission::Send
}

/// Numbers the partition's waiting retries afresh under `current`. They were refused with a
/// sequence error, so none was written, except those whose last attempt had no answer: those
/// may have been, and renumbering them could write them twice, so they fail as unknown.
fn renumber(current: Generation, queue: &mut PartitionQueue, failed: &mut Vec<(Batch, Error)>) {
    queue.sequence = PartitionSequence::fresh(current);
    let mut kept = VecDeque::new();
    while queue
        .batches
        .front()
        .is_some_and(|batch| batch.sequence.is_some())
    {
        let Some(mut batch) = queue.batches.pop_front() else {
            break;
        };
        if batch.maybe_written {
            let error = Error::UnknownOutcome(format!(
                "{} records for {}-{}: an attempt had no answer, and the partition's sequence \
                 was reset before the broker confirmed it",
                batch.records.len(),
                batch.topic,
                batch.partition
            ));
            failed.push((batch, error));
            continue;
        }
        batch.sequence = Some(Sequence {
            producer_id: current.0,
            epoch: current.1,
            base: queue.sequence.next,
        });
        queue.sequence.next = advance(queue.sequence.next, batch.records.len());
        kept.push_back(batch);
    }
    while let Some(batch) = kept.pop_back() {
        queue.batches.push_front(batch);
    }
    tracing::debug!(
        producer_id = current.0,
        epoch = current.1,
        renumbered = queue
            .batches
            .iter()
            .filter(|b| b.sequence.is_some())
            .count(),
        "renumbered a partition's batches under a new producer epoch"
    );
}

/// The errors that say the broker did not take the batch because of its producer fields.
pub(crate) fn is_sequence_error(code: KafkaCode) -> bool {
    matches!(
        code,
        KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER
            | KafkaCode::UNKNOWN_PRODUCER_ID
            | KafkaCode::INVALID_PRODUCER_EPOCH
    )
}

/// How to take a sequence error for `batch`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SequenceVerdict {
    /// Not written, and only because of an earlier failure or an older generation: resend
    /// (renumbered if the partition is stale).
    Retry,
    /// The sequence is broken at this batch: fail it, bump the epoch, renumber the rest.
    Fatal,
}

pub(crate) fn judge_sequence_error(
    identity: &Identity,
    queue: &PartitionQueue,
    batch: &Batch,
    code: KafkaCode,
) -> SequenceVerdict {
    let Some(sequence) = batch.sequence else {
        return SequenceVerdict::Fatal;
    };
    if identity.current != Some(sequence.generation()) || queue.sequence.stale {
        return SequenceVerdict::Retry;
    }
    let earlier_outstanding = queue.in_flight.first().is_some_and(|&id| id < batch.id)
        || queue
            .batches
            .front()
            .is_some_and(|front| front.sequence.is_some() && front.id < batch.id);
    if code == KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER && earlier_outstanding {
        SequenceVerdict::Retry
    } else {
        SequenceVerdict::Fatal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_from_the_largest_i32_to_zero() {
        assert_eq!(advance(0, 5), 5);
        assert_eq!(advance(i32::MAX, 1), 0);
        assert_eq!(advance(i32::MAX - 1, 3), 1);
    }
}
