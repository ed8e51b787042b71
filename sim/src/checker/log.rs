//! Checks of what the partition logs held, judged from all sends and polls together: lost-write,
//! unseen, duplicate, inconsistent-offsets, aborted-read, compaction-moved-offset and
//! nonmonotonic-send.

use std::collections::BTreeMap;

use crate::history::TopicPartition;

use super::facts::{Facts, Outcome};
use super::{Anomaly, Findings, Witness};

/// `loss_possible`: the run may have lost acknowledged writes, so a sighting at an offset that
/// was later handed out again can be of a lost tail (see `rewritten`).
pub(super) fn check(facts: &Facts<'_>, findings: &mut Findings, loss_possible: bool) {
    lost_and_unseen(facts, findings);
    duplicates(facts, findings, loss_possible);
    inconsistent_offsets(facts, findings);
    aborted_reads(facts, findings);
    compaction_moved_offsets(facts, findings, loss_possible);
    nonmonotonic_sends(facts, findings);
}

/// lost-write: an acknowledged send at offset `o` of a partition whose value no poll ever
/// returned, although some poll returned an offset `>= o` of that partition (so a reader got
/// past it). unseen: an acknowledged send whose value no poll ever returned by the end of the
/// history (Jepsen reports it as a count; with a final drain it must be zero). In compacted
/// topics only records that must survive compaction count (see `Facts::must_survive`).
fn lost_and_unseen(facts: &Facts<'_>, findings: &mut Findings) {
    for send in &facts.sends {
        let Outcome::Ok { at, offset } = send.outcome else {
            continue;
        };
        // Tombstones are not identifiable by value (and may be compacted away).
        let Some(value) = send.value else { continue };
        if facts.polled.contains_key(value) {
            continue;
        }
        let topic_partition = send.topic_partition();
        if facts.config.is_compacted(send.topic) {
            // Where it landed is unknown (acks=0), so whether compaction may drop it is too.
            let (Some(topic_partition), Some(offset)) = (&topic_partition, offset) else {
                continue;
            };
            if !facts.must_survive(topic_partition, offset, send.content()) {
                continue;
            }
        }
        let place = match (&topic_partition, offset) {
            (Some(topic_partition), Some(offset)) => format!("{topic_partition} offset {offset}"),
            (Some(topic_partition), None) => format!("{topic_partition}"),
            (None, _) => send.topic.to_owned(),
        };
        findings.add(Anomaly::Unseen, || Witness {
            events: vec![send.invoke, at],
            partition: topic_partition.clone(),
            detail: format!("value {value:?} acknowledged at {place} was never polled"),
        });
        let (Some(topic_partition), Some(offset)) = (topic_partition, offset) else {
            continue;
        };
        let Some(&(highest, reader)) = facts.highest_polled.get(&topic_partition) else {
            continue;
        };
        if offset <= highest {
            findings.add(Anomaly::LostWrite, || Witness {
                events: vec![send.invoke, at, reader],
                partition: Some(topic_partition.clone()),
                detail: format!(
                    "value {value:?} acknowledged at {topic_partition} offset {offset} was never \
                     polled, though event {reader} polled offset {highest}"
                ),
            });
        }
    }
}

/// duplicate: one sent value seen (acknowledged or polled) at more than one position.
fn duplicates(facts: &Facts<'_>, findings: &mut Findings, loss_possible: bool) {
    for (value, positions) in &facts.positions {
        // When writes may be lost, a sighting at an offset that was also seen holding another
        // record is of a lost tail: the offset was handed out again. That rewrite is
        // inconsistent-offsets (judged on its own); the value written again after the loss is
        // not a second copy. Without a possible loss, both sightings count.
        let kept = positions
            .keys()
            .filter(|(topic_partition, offset)| {
                !(loss_possible && rewritten(facts, topic_partition, *offset))
            })
            .count();
        if kept < 2 {
            continue;
        }
        findings.add(Anomaly::Duplicate, || Witness {
            events: sorted_unique(positions.values().copied()),
            partition: positions
                .keys()
                .next()
                .map(|(topic_partition, _)| topic_partition.clone()),
            detail: format!("value {value:?} is at {}", list_positions(positions.keys())),
        });
    }
}

/// Whether `offset` of `topic_partition` was seen holding more than one record: a lost tail's
/// offset handed out again (reported as inconsistent-offsets).
fn rewritten(facts: &Facts<'_>, topic_partition: &TopicPartition, offset: i64) -> bool {
    facts
        .held
        .get(topic_partition)
        .and_then(|offsets| offsets.get(&offset))
        .is_some_and(|contents| contents.len() > 1)
}

/// inconsistent-offsets: one offset of a partition seen holding two different records.
fn inconsistent_offsets(facts: &Facts<'_>, findings: &mut Findings) {
    for (topic_partition, offsets) in &facts.held {
        for (offset, contents) in offsets {
            if contents.len() < 2 {
                continue;
            }
            findings.add(Anomaly::InconsistentOffsets, || Witness {
                events: sorted_unique(contents.values().copied()),
                partition: Some(topic_partition.clone()),
                detail: format!(
                    "{topic_partition} offset {offset} held {}",
                    contents
                        .iter()
                        .map(|(content, event)| format!("{content} (event {event})"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            });
        }
    }
}

/// aborted-read: a poll returned a value whose send certainly failed (for a transactional
/// producer: whose transaction aborted).
fn aborted_reads(facts: &Facts<'_>, findings: &mut Findings) {
    for send in &facts.sends {
        let (Outcome::Fail { at }, Some(value)) = (send.outcome, send.value) else {
            continue;
        };
        let Some(&reader) = facts.polled.get(value) else {
            continue;
        };
        findings.add(Anomaly::AbortedRead, || Witness {
            events: vec![send.invoke, at, reader],
            partition: send.topic_partition(),
            detail: format!(
                "event {reader} polled value {value:?}, whose send failed at event {at}"
            ),
        });
    }
}

/// compaction-moved-offset: in a compacted topic, a value polled at another offset than the
/// one its send was acknowledged at (the cleaner must keep offsets).
fn compaction_moved_offsets(facts: &Facts<'_>, findings: &mut Findings, loss_possible: bool) {
    for send in &facts.sends {
        if !facts.config.is_compacted(send.topic) {
            continue;
        }
        let (Some((topic_partition, offset, at)), Some(value)) = (send.acked_at(), send.value)
        else {
            continue;
        };
        let Some(positions) = facts.positions.get(value) else {
            continue;
        };
        // A sighting in a lost tail (its offset rewritten since) is not a move by the cleaner.
        let moved = positions.iter().find(|((seen_partition, seen_offset), _)| {
            (*seen_partition != topic_partition || *seen_offset != offset)
                && !(loss_possible && rewritten(facts, seen_partition, *seen_offset))
        });
        if let Some(((seen_partition, seen_offset), &reader)) = moved {
            findings.add(Anomaly::CompactionMovedOffset, || Witness {
                events: vec![at, reader],
                partition: Some(topic_partition.clone()),
                detail: format!(
                    "value {value:?} acknowledged at {topic_partition} offset {offset} was read at \
                     {seen_partition} offset {seen_offset} (event {reader})"
                ),
            });
        }
    }
}

/// nonmonotonic-send: two acknowledged sends of one producer to one partition, in the order
/// they were invoked, got offsets that do not increase.
fn nonmonotonic_sends(facts: &Facts<'_>, findings: &mut Findings) {
    // (process, partition) -> (offset, ack event) in invoke order (facts.sends is).
    let mut acked: BTreeMap<(&str, TopicPartition), Vec<(i64, u64)>> = BTreeMap::new();
    for send in &facts.sends {
        if let Some((topic_partition, offset, at)) = send.acked_at() {
            acked
                .entry((send.process, topic_partition))
                .or_default()
                .push((offset, at));
        }
    }
    for ((process, topic_partition), offsets) in &acked {
        for pair in offsets.windows(2) {
            let [(earlier, earlier_at), (later, later_at)] = [pair[0], pair[1]];
            if later <= earlier {
                findings.add(Anomaly::NonmonotonicSend, || Witness {
                    events: vec![earlier_at, later_at],
                    partition: Some(topic_partition.clone()),
                    detail: format!(
                        "{process} sent to {topic_partition}: offset {earlier} (event {earlier_at}), \
                         then offset {later} (event {later_at})"
                    ),
                });
            }
        }
    }
}

pub(super) fn sorted_unique(events: impl IntoIterator<Item = u64>) -> Vec<u64> {
    let mut events: Vec<u64> = events.into_iter().collect();
    events.sort_unstable();
    events.dedup();
    events
}

fn list_positions<'a>(positions: impl Iterator<Item = &'a (TopicPartition, i64)>) -> String {
    positions
        .map(|(topic_partition, offset)| format!("{topic_partition} offset {offset}"))
        .collect::<Vec<_>>()
        .join(", ")
}
