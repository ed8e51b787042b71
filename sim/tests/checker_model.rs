//! Property tests of the checker against a simple, correct model of Kafka: producers append
//! unique values to partitions, a consumer group reads every partition in order and commits
//! after each poll, rebalances move partitions between members, and a final drain reads
//! everything. Such a history must pass under every configuration; the same history with one
//! polled record deleted, repeated, reordered or given another record's value must be caught
//! as the matching anomaly.
//!
//! The case count is proptest's (256); `PROPTEST_CASES=5000 cargo test -p tidepool-sim --test
//! checker_model` runs more.

use proptest::prelude::*;

use tidepool_sim::checker::{Anomaly, Report, check};
use tidepool_sim::history::{
    Acks, AssignOp, CommitOp, CommitOrder, Config, EventKind, History, Isolation, Op,
    PartitionOffset, Phase, PollOp, Record, Recorder, RunMeta, SendOp, TopicPartition,
};

const TOPIC: &str = "t";
const GROUP: &str = "g";

#[derive(Debug, Clone)]
enum Step {
    /// One acknowledged send; `keyed` leaves the partition to the partitioner.
    Send {
        producer: usize,
        partition: usize,
        keyed: bool,
    },
    /// Two sends in flight at once, acknowledged in order.
    SendPair { producer: usize, partition: usize },
    /// One consumer polls up to `max` records per owned partition, then commits.
    Poll { consumer: usize, max: usize },
    /// A new generation: partitions move between members.
    Rebalance,
}

#[derive(Debug, Clone)]
struct Workload {
    partitions: usize,
    consumers: usize,
    steps: Vec<Step>,
}

fn workload() -> impl Strategy<Value = Workload> {
    (1usize..=3, 1usize..=3).prop_flat_map(|(partitions, consumers)| {
        let step = prop_oneof![
            4 => (0..2usize, 0..partitions, any::<bool>()).prop_map(|(producer, partition, keyed)| {
                Step::Send { producer, partition, keyed }
            }),
            1 => (0..2usize, 0..partitions)
                .prop_map(|(producer, partition)| Step::SendPair { producer, partition }),
            3 => (0..consumers, 1..4usize).prop_map(|(consumer, max)| Step::Poll { consumer, max }),
            1 => Just(Step::Rebalance),
        ];
        proptest::collection::vec(step, 1..50).prop_map(move |steps| Workload {
            partitions,
            consumers,
            steps,
        })
    })
}

fn config() -> impl Strategy<Value = Config> {
    (
        any::<bool>(),
        prop_oneof![Just(Acks::One), Just(Acks::All)],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(idempotent, acks, sync_before_ack, before, committed, transactional)| Config {
                idempotent,
                acks,
                sync_before_ack,
                commit_order: if before {
                    CommitOrder::BeforeProcessing
                } else {
                    CommitOrder::AfterProcessing
                },
                compacted_topics: Default::default(),
                isolation: if committed {
                    Isolation::ReadCommitted
                } else {
                    Isolation::ReadUncommitted
                },
                transactional,
            },
        )
}

/// The model: a correct broker and a correct at-least-once consumer group.
struct Model {
    recorder: Recorder,
    time: u64,
    consumers: usize,
    /// The (key, value) records in each partition, by offset.
    logs: Vec<Vec<(Option<String>, String)>>,
    /// The group's committed offset per partition. Members commit after every poll, so this
    /// is also where each owner's position is.
    committed: Vec<i64>,
    generation: i32,
    sent: usize,
}

impl Model {
    fn run(workload: &Workload, config: &Config) -> History {
        let mut model = Model {
            recorder: Recorder::new(RunMeta::new(config.clone())),
            time: 0,
            consumers: workload.consumers,
            logs: vec![Vec::new(); workload.partitions],
            committed: vec![0; workload.partitions],
            generation: 0,
            sent: 0,
        };
        model.rebalance();
        for step in &workload.steps {
            match *step {
                Step::Send {
                    producer,
                    partition,
                    keyed,
                } => {
                    let invoke = model.invoke_send(producer, partition, keyed);
                    model.ack_send(invoke);
                }
                Step::SendPair {
                    producer,
                    partition,
                } => {
                    let first = model.invoke_send(producer, partition, false);
                    let second = model.invoke_send(producer, partition, false);
                    model.ack_send(first);
                    model.ack_send(second);
                }
                Step::Poll { consumer, max } => model.poll(consumer, max),
                Step::Rebalance => model.rebalance(),
            }
        }
        // The heal phase: one last rebalance, then every member reads to the end.
        let time = model.tick();
        model.recorder.phase(time, "sim", Phase::Heal);
        model.rebalance();
        for consumer in 0..model.consumers {
            model.poll(consumer, usize::MAX);
        }
        let time = model.tick();
        model.recorder.phase(time, "sim", Phase::Drained);
        model.recorder.finish().expect("in memory")
    }

    fn tick(&mut self) -> u64 {
        self.time += 1;
        self.time
    }

    fn owner(&self, partition: usize) -> usize {
        (partition + self.generation as usize) % self.consumers
    }

    fn owned(&self, consumer: usize) -> Vec<usize> {
        (0..self.logs.len())
            .filter(|&partition| self.owner(partition) == consumer)
            .collect()
    }

    fn invoke_send(
        &mut self,
        producer: usize,
        partition: usize,
        keyed: bool,
    ) -> (u64, usize, SendOp) {
        let value = format!("v{}", self.sent);
        self.sent += 1;
        let op = SendOp {
            topic: TOPIC.to_owned(),
            partition: (!keyed).then_some(partition as i32),
            key: keyed.then(|| format!("k{partition}")),
            value: Some(value),
            offset: None,
        };
        let time = self.tick();
        let invoke =
            self.recorder
                .invoke(time, format!("producer-{producer}"), Op::Send(op.clone()));
        (invoke, partition, op)
    }

    fn ack_send(&mut self, (invoke, partition, op): (u64, usize, SendOp)) {
        let log = &mut self.logs[partition];
        let offset = log.len() as i64;
        log.push((
            op.key.clone(),
            op.value.clone().expect("sends carry values"),
        ));
        let done = SendOp {
            partition: Some(partition as i32),
            offset: Some(offset),
            ..op
        };
        let process = self.recorder.history().events[invoke as usize]
            .process
            .clone();
        let time = self.tick();
        self.recorder.ok(time, process, invoke, Op::Send(done));
    }

    fn rebalance(&mut self) {
        self.generation += 1;
        for consumer in 0..self.consumers {
            let partitions = self
                .owned(consumer)
                .into_iter()
                .map(|partition| TopicPartition::new(TOPIC, partition as i32))
                .collect();
            let time = self.tick();
            self.recorder.observe(
                time,
                format!("consumer-{consumer}"),
                Op::Assign(AssignOp {
                    consumer: format!("c{consumer}"),
                    group: Some(GROUP.to_owned()),
                    generation: Some(self.generation),
                    partitions,
                }),
            );
        }
    }

    fn poll(&mut self, consumer: usize, max: usize) {
        let process = format!("consumer-{consumer}");
        let owned = self.owned(consumer);
        let mut op = PollOp {
            consumer: format!("c{consumer}"),
            group: Some(GROUP.to_owned()),
            generation: Some(self.generation),
            records: Vec::new(),
        };
        let time = self.tick();
        let invoke = self.recorder.invoke(time, &process, Op::Poll(op.clone()));
        for &partition in &owned {
            let start = self.committed[partition] as usize;
            let log = &self.logs[partition];
            let end = log.len().min(start.saturating_add(max));
            for (offset, (key, value)) in log.iter().enumerate().take(end).skip(start) {
                op.records.push(Record {
                    topic: TOPIC.to_owned(),
                    partition: partition as i32,
                    offset: offset as i64,
                    key: key.clone(),
                    value: Some(value.clone()),
                });
            }
            self.committed[partition] = end as i64;
        }
        let time = self.tick();
        self.recorder.ok(time, &process, invoke, Op::Poll(op));
        if owned.is_empty() {
            return;
        }
        // Processed (recorded): now commit.
        let commit = Op::Commit(CommitOp {
            group: GROUP.to_owned(),
            generation: Some(self.generation),
            member: format!("c{consumer}"),
            offsets: owned
                .iter()
                .map(|&partition| {
                    PartitionOffset::new(TOPIC, partition as i32, self.committed[partition])
                })
                .collect(),
        });
        let time = self.tick();
        let invoke = self.recorder.invoke(time, &process, commit.clone());
        let time = self.tick();
        self.recorder.ok(time, &process, invoke, commit);
    }
}

/// Positions (event, record) of polled records, in history order.
fn polled_records(history: &History) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    for (position, event) in history.events.iter().enumerate() {
        if let Some(Op::Poll(poll)) = event.ok_op() {
            found.extend((0..poll.records.len()).map(|record| (position, record)));
        }
    }
    found
}

fn records(history: &History, event: usize) -> &[Record] {
    match history.events[event].ok_op() {
        Some(Op::Poll(poll)) => &poll.records,
        other => panic!("event {event} is not an ok poll: {other:?}"),
    }
}

fn records_mut(history: &mut History, event: usize) -> &mut Vec<Record> {
    match &mut history.events[event].kind {
        EventKind::Ok {
            op: Op::Poll(poll), ..
        } => &mut poll.records,
        other => panic!("event {event} is not an ok poll: {other:?}"),
    }
}

/// Every polled record, in history order.
fn all_polled(history: &History) -> Vec<Record> {
    polled_records(history)
        .into_iter()
        .map(|(event, record)| records(history, event)[record].clone())
        .collect()
}

fn found(report: &Report) -> Vec<Anomaly> {
    report.anomalies.keys().copied().collect()
}

#[derive(Debug, Clone, Copy)]
enum Mutation {
    Delete,
    Repeat,
    Reorder,
    Misattribute,
}

proptest! {
    #[test]
    fn histories_of_a_correct_model_pass(workload in workload(), config in config()) {
        let history = Model::run(&workload, &config);
        let report = check(&history, &config);
        prop_assert!(
            report.anomalies.is_empty() && report.problem_count == 0,
            "{}\n{:#?}\n{:#?}",
            report.summary(),
            report.anomalies,
            report.problems
        );
        prop_assert!(report.is_valid());
        // Deterministic, and the same through the JSON-lines format.
        let text = history.to_jsonl();
        let reread = tidepool_sim::history::read_jsonl(text.as_bytes()).unwrap();
        prop_assert_eq!(&reread, &history);
        prop_assert_eq!(check(&reread, &config), report);
    }

    #[test]
    fn a_corrupted_poll_is_caught(
        workload in workload(),
        mutation in prop_oneof![
            Just(Mutation::Delete),
            Just(Mutation::Repeat),
            Just(Mutation::Reorder),
            Just(Mutation::Misattribute),
        ],
        pick in any::<prop::sample::Index>(),
    ) {
        let config = Config::default();
        let mut history = Model::run(&workload, &config);
        let everything = all_polled(&history);
        let candidates: Vec<(usize, usize)> = polled_records(&history)
            .into_iter()
            .filter(|&(event, record)| {
                let poll = records(&history, event);
                let this = &poll[record];
                match mutation {
                    Mutation::Delete | Mutation::Repeat => true,
                    // Needs a later record of the same partition in the same poll.
                    Mutation::Reorder => poll[record + 1..]
                        .iter()
                        .any(|other| other.partition == this.partition),
                    // Needs another record of the same partition anywhere.
                    Mutation::Misattribute => everything
                        .iter()
                        .any(|other| other.partition == this.partition && other.offset != this.offset),
                }
            })
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let (event, record) = candidates[pick.index(candidates.len())];
        let original = records(&history, event)[record].clone();
        let donor = everything
            .iter()
            .find(|other| other.partition == original.partition && other.offset != original.offset)
            .cloned();
        let records = records_mut(&mut history, event);
        match mutation {
            Mutation::Delete => {
                // Read on both sides of it within one poll: the consumer visibly skipped it.
                let same_partition = |other: &Record| other.partition == original.partition;
                let skipped_within_poll = records[..record].iter().any(same_partition)
                    && records[record + 1..].iter().any(same_partition);
                records.remove(record);
                let report = check(&history, &config);
                prop_assert!(!report.is_valid(), "{}", report.summary());
                // Every record is polled exactly once by the model, so the value is now never
                // seen: lost if a reader got past its offset, unseen after the drain if not.
                let highest = all_polled(&history)
                    .into_iter()
                    .filter(|other| other.partition == original.partition)
                    .map(|other| other.offset)
                    .max();
                if highest.is_some_and(|highest| highest > original.offset) {
                    prop_assert!(report.count(Anomaly::LostWrite) == 1, "{}", report.summary());
                } else {
                    prop_assert!(report.count(Anomaly::LostWrite) == 0, "{}", report.summary());
                }
                prop_assert!(report.count(Anomaly::Unseen) == 1, "{}", report.summary());
                if skipped_within_poll {
                    prop_assert!(report.count(Anomaly::PollSkip) >= 1, "{}", report.summary());
                }
            }
            Mutation::Repeat => {
                records.insert(record + 1, original.clone());
                let report = check(&history, &config);
                prop_assert_eq!(found(&report), vec![Anomaly::NonmonotonicPoll], "{}", report.summary());
            }
            Mutation::Reorder => {
                let next = record
                    + 1
                    + records[record + 1..]
                        .iter()
                        .position(|other| other.partition == original.partition)
                        .expect("a candidate has a later record of its partition");
                records.swap(record, next);
                let report = check(&history, &config);
                prop_assert!(report.count(Anomaly::NonmonotonicPoll) >= 1, "{}", report.summary());
                prop_assert!(
                    found(&report)
                        .iter()
                        .all(|anomaly| matches!(anomaly, Anomaly::NonmonotonicPoll | Anomaly::PollSkip)),
                    "{}",
                    report.summary()
                );
            }
            Mutation::Misattribute => {
                let donor = donor.expect("a candidate has a donor");
                records[record].value = donor.value.clone();
                let report = check(&history, &config);
                prop_assert!(report.count(Anomaly::Duplicate) >= 1, "{}", report.summary());
                prop_assert!(report.count(Anomaly::InconsistentOffsets) >= 1, "{}", report.summary());
            }
        }
    }
}
