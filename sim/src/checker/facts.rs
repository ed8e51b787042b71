//! One pass over the history that pairs completions with invokes and gathers what the
//! individual checks share: every send and its outcome, what each offset was seen holding, where
//! each value was seen, and which offsets a reader may never pass over.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{Config, EventKind, History, Op, Phase, PollOp, SendOp, TopicPartition};

use super::{OpCounts, Problem, Stats};

/// What a send came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Invoked, never completed.
    Pending,
    /// Acknowledged at event `at`; `offset` is `None` with `acks=0`.
    Ok { at: u64, offset: Option<i64> },
    /// Certainly not written (or, transactional, its transaction aborted).
    Fail { at: u64 },
    /// Unknown: may or may not have been written.
    Info { at: u64 },
}

/// One send operation, from its invoke (what was sent) and its completion (where it landed).
#[derive(Debug, Clone)]
pub(super) struct Send<'h> {
    /// The invoke's index (the completion's, for a send recorded without an invoke).
    pub invoke: u64,
    pub process: &'h str,
    pub topic: &'h str,
    pub partition: Option<i32>,
    pub key: Option<&'h str>,
    pub value: Option<&'h str>,
    pub outcome: Outcome,
}

impl<'h> Send<'h> {
    pub fn topic_partition(&self) -> Option<TopicPartition> {
        self.partition
            .map(|partition| TopicPartition::new(self.topic, partition))
    }

    /// The acknowledged partition and offset, if the send is `ok` with both known.
    pub fn acked_at(&self) -> Option<(TopicPartition, i64, u64)> {
        match self.outcome {
            Outcome::Ok {
                at,
                offset: Some(offset),
            } => self
                .topic_partition()
                .map(|topic_partition| (topic_partition, offset, at)),
            _ => None,
        }
    }

    pub fn content(&self) -> Content<'h> {
        Content {
            key: self.key,
            value: self.value,
        }
    }
}

/// A record's key and value: what an offset holds. Two different contents at one offset are an
/// inconsistency; one value at two offsets is a duplicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Content<'h> {
    pub key: Option<&'h str>,
    pub value: Option<&'h str>,
}

impl std::fmt::Display for Content<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(key) = self.key {
            write!(f, "{key}=")?;
        }
        match self.value {
            Some(value) => write!(f, "{value}"),
            None => write!(f, "null"),
        }
    }
}

/// The highest offset a key is known at in one partition of a compacted topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Latest {
    pub offset: i64,
    pub tombstone: bool,
}

/// Everything the checks share. All maps are ordered, so every check visits in the same order
/// on every run.
pub(super) struct Facts<'h> {
    pub config: &'h Config,
    /// In invoke order.
    pub sends: Vec<Send<'h>>,
    /// The send that wrote each (non-null) value.
    pub send_of_value: BTreeMap<&'h str, usize>,
    /// For each offset: each content it was seen holding (by an ack or a poll) and the first
    /// event that showed it.
    pub held: BTreeMap<TopicPartition, BTreeMap<i64, BTreeMap<Content<'h>, u64>>>,
    /// For each value: each position it was seen at and the first event that showed it.
    pub positions: BTreeMap<&'h str, BTreeMap<(TopicPartition, i64), u64>>,
    /// The first `ok` poll that returned each value.
    pub polled: BTreeMap<&'h str, u64>,
    /// The highest offset any `ok` poll returned per partition, and that poll.
    pub highest_polled: BTreeMap<TopicPartition, (i64, u64)>,
    /// Compacted topics: the highest offset each key is known at.
    pub latest_of_key: BTreeMap<(TopicPartition, &'h str), Latest>,
    /// Compacted topics: (topic, key) pairs with a send of unknown outcome or position, which
    /// may have superseded every record of the key we know of.
    pub unresolved_keys: BTreeSet<(&'h str, &'h str)>,
    /// Offsets that must still hold a record: a reader passing over one skipped it.
    pub required: BTreeMap<TopicPartition, BTreeSet<i64>>,
    /// The first `drained` phase marker.
    pub drained_at: Option<u64>,
    pub problems: Vec<Problem>,
    pub stats: Stats,
}

impl<'h> Facts<'h> {
    pub fn gather(history: &'h History, config: &'h Config) -> Facts<'h> {
        let mut facts = Facts {
            config,
            sends: Vec::new(),
            send_of_value: BTreeMap::new(),
            held: BTreeMap::new(),
            positions: BTreeMap::new(),
            polled: BTreeMap::new(),
            highest_polled: BTreeMap::new(),
            latest_of_key: BTreeMap::new(),
            unresolved_keys: BTreeSet::new(),
            required: BTreeMap::new(),
            drained_at: None,
            problems: Vec::new(),
            stats: Stats::default(),
        };
        facts.pair_and_collect(history);
        facts.add_acknowledged_positions();
        facts.find_latest_of_keys();
        facts.find_required_offsets();
        facts
    }

    /// Walks the events once: pairs completions with invokes, builds the sends, records polls.
    fn pair_and_collect(&mut self, history: &'h History) {
        // Invokes still waiting for their completion: index -> (process, operation name).
        let mut open: BTreeMap<u64, (&'h str, &'static str)> = BTreeMap::new();
        let mut send_of_invoke: BTreeMap<u64, usize> = BTreeMap::new();
        self.stats.events = history.events.len() as u64;
        let mut previous: Option<u64> = None;
        for event in &history.events {
            if let Some(previous) = previous
                && event.index <= previous
            {
                // Pairing and "before" both lean on the order (read_jsonl refuses such files;
                // a history built by hand may still have it).
                self.problem(
                    vec![previous, event.index],
                    format!("event index {} follows index {previous}", event.index),
                );
            }
            previous = Some(event.index);
            let process = event.process.as_str();
            match &event.kind {
                EventKind::Invoke { op } => {
                    open.insert(event.index, (process, op.name()));
                    self.count(op, |counts| counts.invoked += 1);
                    if let Op::Send(send) = op {
                        send_of_invoke.insert(event.index, self.sends.len());
                        self.add_send(event.index, process, send, Outcome::Pending);
                    }
                }
                EventKind::Ok { invoke, op }
                | EventKind::Fail { invoke, op, .. }
                | EventKind::Info { invoke, op, .. } => {
                    let outcome = match &event.kind {
                        EventKind::Ok { .. } => Outcome::Ok {
                            at: event.index,
                            offset: None,
                        },
                        EventKind::Fail { .. } => Outcome::Fail { at: event.index },
                        _ => Outcome::Info { at: event.index },
                    };
                    self.count(op, |counts| match outcome {
                        Outcome::Ok { .. } => counts.ok += 1,
                        Outcome::Fail { .. } => counts.fail += 1,
                        _ => counts.info += 1,
                    });
                    if let Some(invoke) = *invoke {
                        // A broken link is reported; the completion still counts below.
                        self.check_link(&mut open, event.index, process, op, invoke);
                    }
                    if let Op::Send(send) = op {
                        let outcome = match outcome {
                            Outcome::Ok { at, .. } => Outcome::Ok {
                                at,
                                offset: send.offset,
                            },
                            other => other,
                        };
                        match invoke.and_then(|invoke| send_of_invoke.get(&invoke)) {
                            Some(&position) if self.sends[position].outcome == Outcome::Pending => {
                                self.complete_send(position, event.index, send, outcome);
                            }
                            // Completed twice (a problem already): the first completion stands.
                            Some(_) => {}
                            None => self.add_send(event.index, process, send, outcome),
                        }
                    }
                    if let (Outcome::Ok { .. }, Op::Poll(poll)) = (outcome, op) {
                        self.add_poll(event.index, poll);
                    }
                }
                EventKind::Fault { fault } => {
                    *self
                        .stats
                        .faults
                        .entry(fault.name().to_owned())
                        .or_default() += 1;
                }
                EventKind::Phase { phase } => {
                    if *phase == Phase::Drained && self.drained_at.is_none() {
                        self.drained_at = Some(event.index);
                    }
                }
            }
        }
        self.stats.sends.pending = send_of_invoke
            .values()
            .filter(|&&position| self.sends[position].outcome == Outcome::Pending)
            .count() as u64;
        self.stats.polls.pending =
            self.stats.polls.invoked.saturating_sub(
                self.stats.polls.ok + self.stats.polls.fail + self.stats.polls.info,
            );
        self.stats.commits.pending = self.stats.commits.invoked.saturating_sub(
            self.stats.commits.ok + self.stats.commits.fail + self.stats.commits.info,
        );
    }

    fn count(&mut self, op: &Op, bump: impl FnOnce(&mut OpCounts)) {
        match op {
            Op::Send(_) => bump(&mut self.stats.sends),
            Op::Poll(_) => bump(&mut self.stats.polls),
            Op::Commit(_) => bump(&mut self.stats.commits),
            Op::Assign(_) | Op::Reset(_) | Op::DeleteGroup(_) => {}
        }
    }

    /// Reports a completion that does not name an open invoke of the same process and
    /// operation.
    fn check_link(
        &mut self,
        open: &mut BTreeMap<u64, (&'h str, &'static str)>,
        index: u64,
        process: &str,
        op: &Op,
        invoke: u64,
    ) {
        let detail = match open.get(&invoke) {
            None => {
                format!("event {index} completes event {invoke}, which is not an invoke still open")
            }
            Some(&(invoker, _)) if invoker != process => {
                format!("event {index} by {process} completes event {invoke}, invoked by {invoker}")
            }
            Some(&(_, name)) if name != op.name() => format!(
                "event {index} completes a {} but event {invoke} invoked a {name}",
                op.name()
            ),
            Some(_) => {
                open.remove(&invoke);
                return;
            }
        };
        self.problem(vec![invoke, index], detail);
    }

    fn add_send(&mut self, index: u64, process: &'h str, send: &'h SendOp, outcome: Outcome) {
        let position = self.sends.len();
        if let Some(value) = send.value.as_deref() {
            if let Some(&earlier) = self.send_of_value.get(value) {
                let earlier_index = self.sends[earlier].invoke;
                self.problem(
                    vec![earlier_index, index],
                    format!(
                        "value {value:?} is sent twice (events {earlier_index} and {index}); \
                         the checker needs every sent value to be unique"
                    ),
                );
            } else {
                self.send_of_value.insert(value, position);
            }
        }
        self.sends.push(Send {
            invoke: index,
            process,
            topic: &send.topic,
            partition: send.partition,
            key: send.key.as_deref(),
            value: send.value.as_deref(),
            outcome,
        });
    }

    fn complete_send(&mut self, position: usize, index: u64, done: &'h SendOp, outcome: Outcome) {
        let invoke = self.sends[position].invoke;
        let invoked = &self.sends[position];
        if invoked.value != done.value.as_deref()
            || invoked.key != done.key.as_deref()
            || invoked.topic != done.topic
        {
            self.problem(
                vec![invoke, index],
                format!("event {index} completes send {invoke} with a different record"),
            );
        }
        let send = &mut self.sends[position];
        // The partitioner chose the partition if the invoke left it open.
        send.partition = done.partition.or(send.partition);
        send.outcome = outcome;
    }

    fn add_poll(&mut self, index: u64, poll: &'h PollOp) {
        for record in &poll.records {
            self.stats.records_polled += 1;
            let topic_partition = record.topic_partition();
            let content = Content {
                key: record.key.as_deref(),
                value: record.value.as_deref(),
            };
            self.saw(topic_partition.clone(), record.offset, content, index);
            if let Some(value) = content.value {
                self.polled.entry(value).or_insert(index);
            }
            let highest = self
                .highest_polled
                .entry(topic_partition)
                .or_insert((record.offset, index));
            if record.offset > highest.0 {
                *highest = (record.offset, index);
            }
        }
    }

    /// Notes that `event` showed `content` at this position.
    fn saw(
        &mut self,
        topic_partition: TopicPartition,
        offset: i64,
        content: Content<'h>,
        event: u64,
    ) {
        if let Some(value) = content.value {
            self.positions
                .entry(value)
                .or_default()
                .entry((topic_partition.clone(), offset))
                .or_insert(event);
        }
        self.held
            .entry(topic_partition)
            .or_default()
            .entry(offset)
            .or_default()
            .entry(content)
            .or_insert(event);
    }

    /// An acknowledgement is a sighting too: the broker said the record is at that offset.
    fn add_acknowledged_positions(&mut self) {
        let sightings: Vec<(Option<TopicPartition>, i64, Content<'h>, u64)> = self
            .sends
            .iter()
            .filter_map(|send| match send.outcome {
                Outcome::Ok {
                    at,
                    offset: Some(offset),
                } => Some((send.topic_partition(), offset, send.content(), at)),
                _ => None,
            })
            .collect();
        for (topic_partition, offset, content, at) in sightings {
            match topic_partition {
                Some(topic_partition) => self.saw(topic_partition, offset, content, at),
                None => self.problem(
                    vec![at],
                    format!("event {at} acknowledges a send with an offset but no partition"),
                ),
            }
        }
    }

    fn find_latest_of_keys(&mut self) {
        for (topic_partition, offsets) in &self.held {
            if !self.config.is_compacted(&topic_partition.topic) {
                continue;
            }
            for (&offset, contents) in offsets {
                for content in contents.keys() {
                    let Some(key) = content.key else { continue };
                    // Offsets ascend, so the last write wins.
                    let latest = Latest {
                        offset,
                        tombstone: content.value.is_none(),
                    };
                    self.latest_of_key
                        .insert((topic_partition.clone(), key), latest);
                }
            }
        }
        for send in &self.sends {
            if !self.config.is_compacted(send.topic) {
                continue;
            }
            let Some(key) = send.key else { continue };
            let position_known = match send.outcome {
                Outcome::Ok {
                    offset: Some(_), ..
                } => true,
                Outcome::Fail { .. } => true,
                // A send that may have landed somewhere we never saw could be the key's latest.
                Outcome::Pending | Outcome::Info { .. } | Outcome::Ok { offset: None, .. } => send
                    .value
                    .is_some_and(|value| self.positions.contains_key(value)),
            };
            if !position_known {
                self.unresolved_keys.insert((send.topic, key));
            }
        }
    }

    /// Whether a record seen at this position must still be there for any reader: always in a
    /// plain topic; in a compacted topic only if it is its key's latest record, not a
    /// tombstone (the cleaner drops those after `delete.retention.ms`), and no send of unknown
    /// position could have superseded it.
    pub fn must_survive(
        &self,
        topic_partition: &TopicPartition,
        offset: i64,
        content: Content<'_>,
    ) -> bool {
        if !self.config.is_compacted(&topic_partition.topic) {
            return true;
        }
        match (content.key, content.value) {
            (_, None) => false,
            // Kafka rejects keyless records in compacted topics; if one got in, the cleaner
            // has no key to supersede it by.
            (None, Some(_)) => true,
            (Some(key), Some(_)) => {
                let latest = self.latest_of_key.get(&(topic_partition.clone(), key));
                latest.is_some_and(|latest| latest.offset == offset)
                    && !self
                        .unresolved_keys
                        .contains(&(topic_partition.topic.as_str(), key))
            }
        }
    }

    fn find_required_offsets(&mut self) {
        let mut required: BTreeMap<TopicPartition, BTreeSet<i64>> = BTreeMap::new();
        for (topic_partition, offsets) in &self.held {
            for (&offset, contents) in offsets {
                if contents
                    .keys()
                    .any(|&content| self.must_survive(topic_partition, offset, content))
                {
                    required
                        .entry(topic_partition.clone())
                        .or_default()
                        .insert(offset);
                }
            }
        }
        self.required = required;
    }

    /// Required offsets strictly between `low` and `high`.
    pub fn required_between(
        &self,
        topic_partition: &TopicPartition,
        low: i64,
        high: i64,
    ) -> Vec<i64> {
        if high <= low.saturating_add(1) {
            return Vec::new();
        }
        self.required
            .get(topic_partition)
            .map(|offsets| offsets.range(low + 1..high).copied().collect())
            .unwrap_or_default()
    }

    /// The first event that showed a record at this offset.
    pub fn first_sighting(&self, topic_partition: &TopicPartition, offset: i64) -> Option<u64> {
        self.held
            .get(topic_partition)
            .and_then(|offsets| offsets.get(&offset))
            .and_then(|contents| contents.values().min().copied())
    }

    fn problem(&mut self, events: Vec<u64>, detail: String) {
        self.problems.push(Problem { events, detail });
    }
}
