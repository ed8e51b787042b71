//! Checks of each consumer's reading, in history order: poll-skip, nonmonotonic-poll and
//! compaction-lost-latest.
//!
//! A consumer reads each assigned partition forward from where it was positioned: every poll
//! continues right after the previous one (Jepsen's "poll-skip" and "nonmonotonic-poll"). That
//! promise holds only within one *session*: one consumer, in one process, under one
//! assignment. A session ends when the consumer records an `assign` (a rebalance, manual
//! assign or seek can legally move its positions), when a poll carries another generation (a
//! rebalance it did not record), and when its host crashes or restarts (a new consumer starts
//! from the committed offsets, which may lie behind or ahead of the old one).

use std::collections::BTreeMap;

use crate::history::{EventKind, Fault, History, Op, PollOp, Record, TopicPartition};

use super::facts::Facts;
use super::log::sorted_unique;
use super::{Anomaly, Findings, Witness};

/// How many skipped offsets a witness lists before eliding the rest.
const LISTED_OFFSETS: usize = 5;

/// What one consumer has read in its current session.
struct Session {
    generation: Option<i32>,
    /// The last offset read per partition and the poll that returned it.
    last: BTreeMap<TopicPartition, (i64, u64)>,
}

impl Session {
    fn new(generation: Option<i32>) -> Session {
        Session {
            generation,
            last: BTreeMap::new(),
        }
    }
}

pub(super) fn check(history: &History, facts: &Facts<'_>, findings: &mut Findings) {
    // (process, consumer) -> session
    let mut sessions: BTreeMap<(&str, &str), Session> = BTreeMap::new();
    for event in &history.events {
        let process = event.process.as_str();
        match &event.kind {
            EventKind::Fault { fault } => {
                if let Some(host) = fault.stopped_host() {
                    sessions.retain(|(owner, _), _| *owner != host);
                }
                if let Fault::Other { .. } = fault {
                    // An unknown fault might have stopped anything: start afresh everywhere.
                    sessions.clear();
                }
            }
            EventKind::Ok {
                op: Op::Assign(assign),
                ..
            } => {
                sessions.insert((process, &assign.consumer), Session::new(assign.generation));
            }
            EventKind::Ok {
                op: Op::Poll(poll), ..
            } => {
                let session = sessions
                    .entry((process, &poll.consumer))
                    .or_insert_with(|| Session::new(poll.generation));
                if session.generation != poll.generation {
                    *session = Session::new(poll.generation);
                }
                read(facts, findings, session, process, poll, event.index);
            }
            _ => {}
        }
    }
}

/// Checks one poll against the session's last reads and itself, then advances the session.
fn read(
    facts: &Facts<'_>,
    findings: &mut Findings,
    session: &mut Session,
    process: &str,
    poll: &PollOp,
    index: u64,
) {
    let mut by_partition: BTreeMap<TopicPartition, Vec<&Record>> = BTreeMap::new();
    for record in &poll.records {
        by_partition
            .entry(record.topic_partition())
            .or_default()
            .push(record);
    }
    let reader = Reader {
        facts,
        process,
        consumer: &poll.consumer,
        index,
    };
    for (topic_partition, records) in by_partition {
        let mut previous = session.last.get(&topic_partition).copied();
        for record in &records {
            if let Some(previous) = previous {
                reader.step(findings, &topic_partition, previous, record.offset);
            }
            previous = Some((record.offset, index));
        }
        if facts.config.is_compacted(&topic_partition.topic) {
            reader.resurrections(findings, &topic_partition, &records);
        }
        if let Some(last) = previous {
            session.last.insert(topic_partition, last);
        }
    }
}

/// The poll being checked.
struct Reader<'a, 'h> {
    facts: &'a Facts<'h>,
    process: &'a str,
    consumer: &'a str,
    index: u64,
}

impl Reader<'_, '_> {
    /// One step of reading a partition: from `previous` (offset, poll that read it) to
    /// `offset`.
    ///
    /// nonmonotonic-poll: `offset` is not above the previous one (a re-read or a step back).
    /// poll-skip: offsets strictly between the two still hold records a reader must see (see
    /// `Facts::must_survive`); in a compacted topic that is compaction-lost-latest instead, as
    /// the skipped record is some key's latest value.
    fn step(
        &self,
        findings: &mut Findings,
        topic_partition: &TopicPartition,
        previous: (i64, u64),
        offset: i64,
    ) {
        let (previous_offset, previous_poll) = previous;
        let within = if previous_poll == self.index {
            "within one poll"
        } else {
            "between polls"
        };
        let who = format!("{} consumer {}", self.process, self.consumer);
        if offset <= previous_offset {
            findings.add(Anomaly::NonmonotonicPoll, || Witness {
                events: sorted_unique([previous_poll, self.index]),
                partition: Some(topic_partition.clone()),
                detail: format!(
                    "{who} read {topic_partition} offset {previous_offset} (event {previous_poll}) \
                     then offset {offset} (event {}), {within}",
                    self.index
                ),
            });
            return;
        }
        let skipped = self
            .facts
            .required_between(topic_partition, previous_offset, offset);
        if skipped.is_empty() {
            return;
        }
        let anomaly = if self.facts.config.is_compacted(&topic_partition.topic) {
            Anomaly::CompactionLostLatest
        } else {
            Anomaly::PollSkip
        };
        findings.add(anomaly, || {
            let mut events = vec![previous_poll, self.index];
            events.extend(
                skipped
                    .iter()
                    .take(LISTED_OFFSETS)
                    .filter_map(|&skipped| self.facts.first_sighting(topic_partition, skipped)),
            );
            Witness {
                events: sorted_unique(events),
                partition: Some(topic_partition.clone()),
                detail: format!(
                    "{who} read {topic_partition} offset {previous_offset} (event {previous_poll}) \
                     then offset {offset} (event {}), {within}, skipping {}",
                    self.index,
                    list_offsets(&skipped)
                ),
            }
        });
    }

    /// compaction-lost-latest, tombstone case: within one poll (one view of the log), an older
    /// value of a key whose latest record is a tombstone, and records past the tombstone, but
    /// neither the tombstone nor anything later for the key. The cleaner may drop a tombstone
    /// only after the older values it deletes, so the reader has the key back from the dead.
    fn resurrections(
        &self,
        findings: &mut Findings,
        topic_partition: &TopicPartition,
        records: &[&Record],
    ) {
        let Some(highest) = records.iter().map(|record| record.offset).max() else {
            return;
        };
        // key -> (lowest offset with a value, highest offset of any record) in this poll
        let mut seen: BTreeMap<&str, (Option<i64>, i64)> = BTreeMap::new();
        for record in records {
            let Some(key) = record.key.as_deref() else {
                continue;
            };
            let entry = seen.entry(key).or_insert((None, record.offset));
            if record.value.is_some() {
                entry.0 = Some(
                    entry
                        .0
                        .map_or(record.offset, |low: i64| low.min(record.offset)),
                );
            }
            entry.1 = entry.1.max(record.offset);
        }
        for (key, (older_value, highest_of_key)) in seen {
            let Some(older) = older_value else { continue };
            let Some(latest) = self
                .facts
                .latest_of_key
                .get(&(topic_partition.clone(), key))
            else {
                continue;
            };
            let resurrected = latest.tombstone
                && older < latest.offset
                && highest > latest.offset
                && highest_of_key < latest.offset
                && !self
                    .facts
                    .unresolved_keys
                    .contains(&(topic_partition.topic.as_str(), key));
            if resurrected {
                let tombstone_event = self.facts.first_sighting(topic_partition, latest.offset);
                findings.add(Anomaly::CompactionLostLatest, || Witness {
                    events: sorted_unique(tombstone_event.into_iter().chain([self.index])),
                    partition: Some(topic_partition.clone()),
                    detail: format!(
                        "{} consumer {} read key {key:?} at {topic_partition} offset {older} and \
                         read past offset {highest}, but not its tombstone at offset {} \
                         (event {})",
                        self.process, self.consumer, latest.offset, self.index
                    ),
                });
            }
        }
    }
}

fn list_offsets(offsets: &[i64]) -> String {
    let mut listed: Vec<String> = offsets
        .iter()
        .take(LISTED_OFFSETS)
        .map(i64::to_string)
        .collect();
    if offsets.len() > LISTED_OFFSETS {
        listed.push(format!("and {} more", offsets.len() - LISTED_OFFSETS));
    }
    format!("offset(s) {}", listed.join(", "))
}
