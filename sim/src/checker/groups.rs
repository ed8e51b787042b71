//! Checks of consumer groups' offset commits, in history order: committed-offset-regress,
//! old-generation-commit and committed-unread.
//!
//! Only `ok` commits count: a failed commit changed nothing and an unknown one proves nothing.
//! A `reset` (or `delete-group`) is an explicit administrative change and starts each check
//! afresh for what it touched.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{CommitOp, EventKind, History, Op, TopicPartition};

use super::facts::Facts;
use super::log::sorted_unique;
use super::{Anomaly, Findings, Witness};

/// One stretch of a group's consumption of a partition, from the group's start or a reset to
/// the next reset or the end of the history.
#[derive(Default)]
struct Segment {
    /// Where the reset that began this segment put the group (`None` for the first).
    reset_to: Option<i64>,
    first_commit: Option<i64>,
    /// The highest acknowledged commit and its `ok` event.
    highest_commit: Option<(i64, u64)>,
    /// Offsets some member of the group received by an `ok` poll.
    delivered: BTreeSet<i64>,
}

#[derive(Default)]
struct PartitionCommits {
    /// What committed offsets may not fall below: the highest acknowledged commit (or reset)
    /// and the event that set it.
    floor: Option<(i64, u64)>,
    /// Bumped by every reset, so a commit that straddles a reset is not judged against a floor
    /// from before it.
    epoch: u64,
    segment: Segment,
}

#[derive(Default)]
struct Group {
    /// The highest generation known to be in use and the event that showed it.
    generation: Option<(i32, u64)>,
    partitions: BTreeMap<TopicPartition, PartitionCommits>,
}

impl Group {
    fn raise_generation(&mut self, generation: Option<i32>, index: u64) {
        let Some(generation) = generation else { return };
        if self.generation.is_none_or(|(known, _)| generation > known) {
            self.generation = Some((generation, index));
        }
    }
}

/// What was known when a commit was invoked.
struct Invoked<'h> {
    group: &'h str,
    generation: Option<(i32, u64)>,
    /// Per partition: the floor and the reset epoch at the time.
    floors: BTreeMap<TopicPartition, (Option<(i64, u64)>, u64)>,
}

pub(super) fn check(history: &History, facts: &Facts<'_>, findings: &mut Findings) {
    let mut groups: BTreeMap<&str, Group> = BTreeMap::new();
    let mut invoked: BTreeMap<u64, Invoked<'_>> = BTreeMap::new();
    for event in &history.events {
        let index = event.index;
        match &event.kind {
            EventKind::Invoke {
                op: Op::Commit(commit),
            } => {
                let group = groups.entry(&commit.group).or_default();
                let floors = commit
                    .offsets
                    .iter()
                    .map(|entry| {
                        let partition =
                            group.partitions.entry(entry.topic_partition()).or_default();
                        (entry.topic_partition(), (partition.floor, partition.epoch))
                    })
                    .collect();
                invoked.insert(
                    index,
                    Invoked {
                        group: &commit.group,
                        generation: group.generation,
                        floors,
                    },
                );
            }
            EventKind::Ok {
                invoke,
                op: Op::Commit(commit),
            } => {
                let before = invoke.and_then(|invoke| invoked.remove(&invoke));
                let group = groups.entry(&commit.group).or_default();
                acknowledged_commit(findings, group, commit, *invoke, before.as_ref(), index);
            }
            EventKind::Fail {
                invoke: Some(invoke),
                op: Op::Commit(_),
                ..
            }
            | EventKind::Info {
                invoke: Some(invoke),
                op: Op::Commit(_),
                ..
            } => {
                invoked.remove(invoke);
            }
            EventKind::Ok {
                op: Op::Assign(assign),
                ..
            } => {
                if let Some(group) = &assign.group {
                    groups
                        .entry(group)
                        .or_default()
                        .raise_generation(assign.generation, index);
                }
            }
            EventKind::Ok {
                op: Op::Poll(poll), ..
            } => {
                let Some(group_id) = &poll.group else {
                    continue;
                };
                let group = groups.entry(group_id).or_default();
                group.raise_generation(poll.generation, index);
                for record in &poll.records {
                    group
                        .partitions
                        .entry(record.topic_partition())
                        .or_default()
                        .segment
                        .delivered
                        .insert(record.offset);
                }
            }
            EventKind::Ok {
                op: Op::Reset(reset),
                ..
            }
            | EventKind::Info {
                op: Op::Reset(reset),
                ..
            } => {
                // A reset of unknown outcome may or may not have moved the group: judge what
                // follows by neither the old floor nor the reset's target.
                let known = matches!(event.kind, EventKind::Ok { .. });
                let group = groups.entry(&reset.group).or_default();
                for entry in &reset.offsets {
                    let topic_partition = entry.topic_partition();
                    let partition = group.partitions.entry(topic_partition.clone()).or_default();
                    let ended = std::mem::take(&mut partition.segment);
                    unread(facts, findings, &reset.group, &topic_partition, &ended);
                    partition.segment.reset_to = known.then_some(entry.offset);
                    partition.floor = known.then_some((entry.offset, index));
                    partition.epoch += 1;
                }
            }
            // A deletion of unknown outcome is taken as done: that only forgets.
            EventKind::Ok {
                op: Op::DeleteGroup(delete),
                ..
            }
            | EventKind::Info {
                op: Op::DeleteGroup(delete),
                ..
            } => {
                if let Some(group) = groups.remove(delete.group.as_str()) {
                    for (topic_partition, partition) in &group.partitions {
                        unread(
                            facts,
                            findings,
                            &delete.group,
                            topic_partition,
                            &partition.segment,
                        );
                    }
                }
                // Commits in flight across the deletion judge against a group that no longer
                // exists: forget what they saw.
                for before in invoked.values_mut() {
                    if before.group == delete.group {
                        before.floors.clear();
                        before.generation = None;
                    }
                }
            }
            _ => {}
        }
    }
    for (group_id, group) in &groups {
        for (topic_partition, partition) in &group.partitions {
            unread(
                facts,
                findings,
                group_id,
                topic_partition,
                &partition.segment,
            );
        }
    }
}

/// Judges an `ok` commit against what was known when it was invoked, then records it.
///
/// old-generation-commit: the commit names generation `g` (a group member's commit) and some
/// member was already seen in a generation above `g` before the commit was invoked; the
/// coordinator must have rejected it (ILLEGAL_GENERATION).
///
/// committed-offset-regress: the commit sets a partition below an offset the group had already
/// committed (acknowledged before this commit was invoked) with no reset in between.
fn acknowledged_commit(
    findings: &mut Findings,
    group: &mut Group,
    commit: &CommitOp,
    invoke: Option<u64>,
    before: Option<&Invoked<'_>>,
    index: u64,
) {
    let invoke_events: Vec<u64> = invoke.into_iter().collect();
    let known_then = before.and_then(|before| before.generation);
    if let (Some(generation), Some((known, shown_at))) = (commit.generation, known_then)
        && generation < known
    {
        findings.add(Anomaly::OldGenerationCommit, || Witness {
            events: sorted_unique(invoke_events.iter().copied().chain([shown_at, index])),
            partition: None,
            detail: format!(
                "group {:?}: member {:?} committed with generation {generation} and was \
                 acknowledged (event {index}), though generation {known} was in use since \
                 event {shown_at}",
                commit.group, commit.member
            ),
        });
    }
    for entry in &commit.offsets {
        let topic_partition = entry.topic_partition();
        let partition = group.partitions.entry(topic_partition.clone()).or_default();
        let floor_then = before
            .and_then(|before| before.floors.get(&topic_partition))
            .filter(|(_, epoch)| *epoch == partition.epoch)
            .and_then(|(floor, _)| *floor);
        match floor_then {
            Some((floor, floor_at)) if entry.offset < floor => {
                findings.add(Anomaly::CommittedOffsetRegress, || Witness {
                    events: sorted_unique(invoke_events.iter().copied().chain([floor_at, index])),
                    partition: Some(topic_partition.clone()),
                    detail: format!(
                        "group {:?} committed {topic_partition} offset {} (event {index}) after \
                         offset {floor} was committed (event {floor_at})",
                        commit.group, entry.offset
                    ),
                });
                // Judge later commits against this one, so one regression is one finding.
                partition.floor = Some((entry.offset, index));
            }
            _ => {
                if partition
                    .floor
                    .is_none_or(|(floor, _)| entry.offset > floor)
                {
                    partition.floor = Some((entry.offset, index));
                }
            }
        }
        let segment = &mut partition.segment;
        segment.first_commit.get_or_insert(entry.offset);
        if segment
            .highest_commit
            .is_none_or(|(highest, _)| entry.offset > highest)
        {
            segment.highest_commit = Some((entry.offset, index));
        }
    }
    group.raise_generation(commit.generation, index);
}

/// committed-unread: the group committed a partition up to offset `C`, yet a record below `C`
/// that must exist (see `Facts::must_survive`) never reached any member of the group. With
/// commits after processing, everything below a committed offset was processed, so this is a
/// consumer that committed what it never processed.
///
/// The obligation starts where the group started: a reset's target, or else the lower of the
/// group's first commit and the lowest offset it received (a group that started at the log
/// end, `auto.offset.reset=latest`, owes nothing before it).
fn unread(
    facts: &Facts<'_>,
    findings: &mut Findings,
    group: &str,
    topic_partition: &TopicPartition,
    segment: &Segment,
) {
    let Some((committed, commit_at)) = segment.highest_commit else {
        return;
    };
    let start = segment.reset_to.unwrap_or_else(|| {
        let first_commit = segment.first_commit.unwrap_or(committed);
        segment
            .delivered
            .first()
            .map_or(first_commit, |&lowest| lowest.min(first_commit))
    });
    let Some(required) = facts.required.get(topic_partition) else {
        return;
    };
    if start >= committed {
        return;
    }
    for &offset in required.range(start..committed) {
        if segment.delivered.contains(&offset) {
            continue;
        }
        let sighting = facts.first_sighting(topic_partition, offset);
        findings.add(Anomaly::CommittedUnread, || Witness {
            events: sorted_unique(sighting.into_iter().chain([commit_at])),
            partition: Some(topic_partition.clone()),
            detail: format!(
                "group {group:?} committed {topic_partition} up to offset {committed} (event \
                 {commit_at}), but no member received offset {offset}"
            ),
        });
    }
}
