//! Idempotent producer state of one partition: per producer id, its epoch and the sequence
//! ranges of its last few batches, so a retried batch is recognised and answered with the
//! offset it got the first time (Kafka's ProducerStateManager, without transactions yet).

use std::collections::{BTreeMap, VecDeque};

use kafka_protocol::ResponseError;
use tidepool_protocol::batch::BatchHeader;

/// Kafka remembers the last five batches per producer; clients keep at most five in flight.
pub const BATCHES_REMEMBERED: usize = 5;

/// A batch already appended, as remembered for duplicate detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RememberedBatch {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    /// The batch's max timestamp (its append time on a LogAppendTime topic): Kafka answers a
    /// duplicate of the batch with it as `log_append_time_ms`, whatever the timestamp type.
    pub timestamp_ms: i64,
}

#[derive(Debug, Clone)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<RememberedBatch>,
    /// Wall-clock time of the last append, to choose whom to forget when over the bound.
    last_append_ms: i64,
}

/// What to do with an incoming idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Append,
    /// Already appended: answer with the original placement, do not append again.
    Duplicate(RememberedBatch),
}

#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: BTreeMap<i64, ProducerEntry>,
}

fn in_sequence(last_sequence: i32, next_sequence: i32) -> bool {
    next_sequence == last_sequence.wrapping_add(1)
        || (last_sequence == i32::MAX && next_sequence == 0)
}

impl ProducerStates {
    /// Checks `batch` against what this partition knows of its producer. Errors are the Kafka
    /// codes a Produce response carries for the partition.
    pub fn check(&self, batch: &BatchHeader) -> Result<SequenceCheck, ResponseError> {
        if !batch.has_producer_id() {
            return Ok(SequenceCheck::Append);
        }
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            // Unknown producer (new, or its state was forgotten): any sequence is accepted,
            // as Kafka does since KIP-360.
            return Ok(SequenceCheck::Append);
        };
        if batch.producer_epoch < entry.epoch {
            return Err(ResponseError::InvalidProducerEpoch);
        }
        if batch.producer_epoch > entry.epoch {
            return if batch.base_sequence == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(ResponseError::OutOfOrderSequenceNumber)
            };
        }
        let last_sequence = batch.last_sequence();
        if let Some(duplicate) = entry.batches.iter().find(|remembered| {
            remembered.first_sequence == batch.base_sequence
                && remembered.last_sequence == last_sequence
        }) {
            return Ok(SequenceCheck::Duplicate(*duplicate));
        }
        match entry.batches.back() {
            Some(last) if !in_sequence(last.last_sequence, batch.base_sequence) => {
                Err(ResponseError::OutOfOrderSequenceNumber)
            }
            _ => Ok(SequenceCheck::Append),
        }
    }

    /// Remembers an appended batch. Forgets the least recently active producer beyond
    /// `producers_max`.
    pub fn record(
        &mut self,
        batch: &BatchHeader,
        appended: RememberedBatch,
        now_ms: i64,
        producers_max: usize,
    ) {
        if !batch.has_producer_id() {
            return;
        }
        let entry = self
            .producers
            .entry(batch.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: batch.producer_epoch,
                batches: VecDeque::with_capacity(BATCHES_REMEMBERED),
                last_append_ms: now_ms,
            });
        if batch.producer_epoch != entry.epoch {
            entry.epoch = batch.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == BATCHES_REMEMBERED {
            entry.batches.pop_front();
        }
        entry.batches.push_back(appended);
        entry.last_append_ms = now_ms;
        if self.producers.len() > producers_max {
            self.forget_least_recent();
        }
    }

    fn forget_least_recent(&mut self) {
        let oldest = self
            .producers
            .iter()
            .min_by_key(|(id, entry)| (entry.last_append_ms, **id))
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.producers.remove(&id);
        }
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(producer_id: i64, epoch: i16, base_sequence: i32, records: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            records_count: records,
        }
    }

    fn append(states: &mut ProducerStates, batch: &BatchHeader, base_offset: i64) {
        assert_eq!(states.check(batch), Ok(SequenceCheck::Append));
        let remembered = RememberedBatch {
            first_sequence: batch.base_sequence,
            last_sequence: batch.last_sequence(),
            base_offset,
            last_offset: base_offset + i64::from(batch.last_offset_delta),
            timestamp_ms: -1,
        };
        states.record(batch, remembered, 0, 100);
    }

    #[test]
    fn a_retried_batch_is_a_duplicate_with_its_original_offset() {
        let mut states = ProducerStates::default();
        append(&mut states, &header(1, 0, 0, 5), 0);
        append(&mut states, &header(1, 0, 5, 5), 5);
        match states.check(&header(1, 0, 0, 5)) {
            Ok(SequenceCheck::Duplicate(original)) => assert_eq!(original.base_offset, 0),
            other => panic!("expected a duplicate, got {other:?}"),
        }
    }

    #[test]
    fn a_gap_in_sequences_is_out_of_order() {
        let mut states = ProducerStates::default();
        append(&mut states, &header(1, 0, 0, 5), 0);
        assert_eq!(
            states.check(&header(1, 0, 7, 1)),
            Err(ResponseError::OutOfOrderSequenceNumber)
        );
    }

    #[test]
    fn an_older_epoch_is_fenced_and_a_newer_one_must_start_at_zero() {
        let mut states = ProducerStates::default();
        append(&mut states, &header(1, 3, 0, 1), 0);
        assert_eq!(
            states.check(&header(1, 2, 1, 1)),
            Err(ResponseError::InvalidProducerEpoch)
        );
        assert_eq!(
            states.check(&header(1, 4, 9, 1)),
            Err(ResponseError::OutOfOrderSequenceNumber)
        );
        append(&mut states, &header(1, 4, 0, 1), 1);
    }

    #[test]
    fn only_the_last_five_batches_are_recognised_as_duplicates() {
        let mut states = ProducerStates::default();
        for index in 0..6 {
            append(&mut states, &header(1, 0, index, 1), i64::from(index));
        }
        assert_eq!(
            states.check(&header(1, 0, 0, 1)),
            Err(ResponseError::OutOfOrderSequenceNumber)
        );
        assert!(matches!(
            states.check(&header(1, 0, 1, 1)),
            Ok(SequenceCheck::Duplicate(_))
        ));
    }

    #[test]
    fn sequences_continue_across_the_wrap() {
        let mut states = ProducerStates::default();
        append(&mut states, &header(1, 0, i32::MAX, 1), 0);
        append(&mut states, &header(1, 0, 0, 1), 1);
    }

    #[test]
    fn the_least_recent_producer_is_forgotten_beyond_the_bound() {
        let mut states = ProducerStates::default();
        for producer in 0..3 {
            let batch = header(producer, 0, 0, 1);
            let remembered = RememberedBatch {
                first_sequence: 0,
                last_sequence: 0,
                base_offset: producer,
                last_offset: producer,
                timestamp_ms: -1,
            };
            states.record(&batch, remembered, producer, 2);
        }
        assert_eq!(states.len(), 2);
        assert!(!states.producers.contains_key(&0));
    }
}
