//! The hosts of a run: the broker, producers, group consumers and the standalone reader. Each
//! client host records what it does into the shared history and takes orders from its
//! mailbox, which outlives the host's crashes (the driver owns it).
//!
//! Recording follows the conventions in [`crate::history`]: a send is `ok` only once
//! acknowledged, an error whose effect is unknown is `info`, a consumer records `assign`
//! whenever its positions are re-established, and every value is unique in the run.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tidepool_broker::{Broker, Config as BrokerConfig, Control};
use tidepool_client::{
    Acks, Admin, Client, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, KafkaCode,
    NewTopic, OffsetAndMetadata, OffsetReset, OffsetSpec, Producer, ProducerConfig, ProducerRecord,
    RebalanceListener, TopicPartition,
};
use tidepool_io::{BoxFuture, Env};
use tokio::sync::Notify;

use crate::env::FaultSites;
use crate::history::{
    AssignOp, CommitOp, EventKind, Op, PartitionOffset, PollOp, Record, Recorder, SendOp,
    TopicPartition as HistoryPartition,
};
use crate::scenario::{Swarm, Variant};

pub const BROKER_PORT: u16 = 9092;
pub const NODES: usize = 3;
pub const DATA_DIR: &str = "/var/lib/tidepool";
pub const TOPIC: &str = "events";
pub const GROUP: &str = "sim-group";
/// Keys per topic: few enough that a compacted topic has something to compact.
const KEYS: u64 = 7;
/// On compacted topics, one send in this many is a tombstone.
const TOMBSTONE_EVERY: u64 = 5;
/// How long one group-member poll waits for records.
const POLL_WAIT: Duration = Duration::from_millis(40);

/// An order from the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Produce(u8),
    /// Settle every send made so far (heal phase).
    Flush,
    Poll,
    Commit,
    Join,
    Leave,
    /// Read every partition to its end (heal phase, the reader).
    Drain,
}

/// A host's orders. Owned by the driver, so orders given while a host restarts wait for it.
#[derive(Default)]
pub struct Mailbox {
    queue: Mutex<VecDeque<Command>>,
    notify: Notify,
}

impl Mailbox {
    pub fn send(&self, command: Command) {
        lock(&self.queue).push_back(command);
        self.notify.notify_one();
    }

    fn try_next(&self) -> Option<Command> {
        lock(&self.queue).pop_front()
    }

    async fn next(&self) -> Command {
        loop {
            if let Some(command) = self.try_next() {
                return command;
            }
            self.notify.notified().await;
        }
    }
}

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the hosts and the driver share (one thread: the simulation's).
pub struct Shared {
    pub recorder: Mutex<Recorder>,
    pub mailboxes: BTreeMap<String, Arc<Mailbox>>,
    pub sites: Arc<FaultSites>,
    pub swarm: Swarm,
    pub variant: Variant,
    pub control: Mutex<Option<Control>>,
    /// Next value number per producer: values stay unique across the producer's restarts.
    pub next_value: Mutex<BTreeMap<String, u64>>,
    /// Heal phase: group members commit after every poll so the group's lag reaches zero.
    pub healing: AtomicBool,
    /// Producers whose `Flush` finished (heal phase).
    pub flushed: Mutex<BTreeMap<String, bool>>,
    /// The reader reached the end of every partition after a `Drain`.
    pub drained: AtomicBool,
    /// The end offset of each partition when the reader finished draining.
    pub ends: Mutex<BTreeMap<i32, i64>>,
    /// Per producer host, sends of its current incarnation not settled yet.
    pub unsettled: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    pub fn mailbox(&self, host: &str) -> Arc<Mailbox> {
        self.mailboxes
            .get(host)
            .cloned()
            .unwrap_or_else(|| Arc::new(Mailbox::default()))
    }

    fn record(&self, process: &str, kind: EventKind) -> u64 {
        lock(&self.recorder).record(now_ms(), process, kind)
    }

    fn invoke(&self, process: &str, op: Op) -> u64 {
        lock(&self.recorder).invoke(now_ms(), process, op)
    }

    fn ok(&self, process: &str, invoke: u64, op: Op) {
        lock(&self.recorder).ok(now_ms(), process, invoke, op);
    }

    fn info(&self, process: &str, invoke: u64, op: Op, reason: String) {
        lock(&self.recorder).info(now_ms(), process, invoke, op, Some(reason));
    }

    fn fail(&self, process: &str, invoke: u64, op: Op, code: Option<i16>, reason: String) {
        lock(&self.recorder).fail(now_ms(), process, invoke, op, code, Some(reason));
    }

    /// A workload crash point: if the scenario armed it, this incarnation of the host stops
    /// here for good (the driver crashes the host at its next step).
    async fn crash_point(&self, host: &str, site: &'static str) {
        if self.sites.hit(host, site) {
            std::future::pending::<()>().await;
        }
    }
}

/// Virtual milliseconds since the run began.
pub fn now_ms() -> u64 {
    turmoil::sim_elapsed().map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(0))
}

pub fn broker_config(swarm: &Swarm, variant: Variant) -> BrokerConfig {
    let mut config = BrokerConfig {
        group_initial_rebalance_delay_ms: 0,
        group_min_session_timeout_ms: 500,
        cleaner_backoff_ms: 200,
        ..BrokerConfig::default()
    };
    if swarm.sync_before_ack {
        config.topic_defaults.flush_messages = 1;
    }
    config.sabotage.ack_before_fsync = variant == Variant::AckBeforeFsync;
    config.sabotage.forget_producer_state = variant == Variant::ForgetProducerState;
    config
}

/// One incarnation of the broker host: recovers from its disk and serves until crashed.
pub async fn serve_broker(
    env: Env,
    config: BrokerConfig,
    on_start: impl FnOnce(Control),
) -> turmoil::Result {
    let broker = loop {
        let started = Broker::builder()
            .env(env.clone())
            .data_dir(DATA_DIR)
            .nodes(NODES)
            .listen(SocketAddr::from(([0, 0, 0, 0], BROKER_PORT)))
            .advertised_host(crate::runner::BROKER)
            .config(config.clone())
            .start()
            .await;
        match started {
            Ok(broker) => break broker,
            // A crash point fired during recovery, or the disk refused: the driver crashes
            // this incarnation; until then, stay quiet.
            Err(error) => {
                tracing::debug!(%error, "broker did not start");
                std::future::pending::<()>().await;
            }
        }
    };
    on_start(broker.control());
    std::future::pending::<()>().await;
    drop(broker);
    Ok(())
}

pub(crate) fn client_config() -> ClientConfig {
    ClientConfig::new(format!("{}:{BROKER_PORT}", crate::runner::BROKER))
        .request_timeout(Duration::from_secs(3))
        .retry_backoff(Duration::from_millis(50), Duration::from_millis(500))
}

/// Connects (retrying while the broker is down) and makes sure the topic exists.
async fn connect(env: &Env, swarm: &Swarm) -> Client {
    let mut attempt = 0u32;
    loop {
        if let Ok(client) = Client::connect(env.clone(), client_config()).await {
            if ensure_topic(&client, swarm).await {
                return client;
            }
            client.close();
        }
        env.clock
            .sleep(Duration::from_millis(50 * u64::from(attempt.min(10) + 1)))
            .await;
        attempt += 1;
    }
}

async fn ensure_topic(client: &Client, swarm: &Swarm) -> bool {
    let mut topic = NewTopic::new(TOPIC, swarm.partitions, 1);
    if swarm.compacted {
        topic = topic
            .config("cleanup.policy", "compact")
            .config("segment.ms", "300")
            .config("min.cleanable.dirty.ratio", "0.01");
    }
    match Admin::new(client.clone()).create_topic(topic).await {
        Ok(()) => true,
        Err(error) => error.code() == Some(KafkaCode::TOPIC_ALREADY_EXISTS),
    }
}

fn send_op(topic: &str, key: &str, value: &str) -> SendOp {
    SendOp {
        topic: topic.to_owned(),
        partition: None,
        key: Some(key.to_owned()),
        value: Some(value.to_owned()),
        offset: None,
    }
}

/// A producer host: sends what it is told, each delivery settled by a task of its own.
pub async fn producer_host(env: Env, host: String, shared: Arc<Shared>) -> turmoil::Result {
    let mailbox = shared.mailbox(&host);
    let swarm = shared.swarm.clone();
    // A crashed incarnation's delivery tasks died with it.
    lock(&shared.unsettled).insert(host.clone(), 0);
    let client = connect(&env, &swarm).await;
    let config = ProducerConfig::default()
        .acks(if swarm.acks_one {
            Acks::Leader
        } else {
            Acks::All
        })
        .idempotence(swarm.idempotent)
        .linger(Duration::from_millis(2))
        .delivery_timeout(Duration::from_secs(30));
    let producer = loop {
        match Producer::new(client.clone(), config.clone()).await {
            Ok(producer) => break producer,
            Err(_) => env.clock.sleep(Duration::from_millis(100)).await,
        }
    };
    loop {
        match mailbox.next().await {
            Command::Produce(count) => {
                for _ in 0..count {
                    send_one(&producer, &host, &shared).await;
                }
            }
            Command::Flush => {
                let _ = producer.flush().await;
                // Deliveries are recorded by their own tasks: let them run.
                while lock(&shared.unsettled).get(&host).copied().unwrap_or(0) > 0 {
                    env.clock.sleep(Duration::from_millis(5)).await;
                }
                lock(&shared.flushed).insert(host.clone(), true);
            }
            _ => {}
        }
    }
}

async fn send_one(producer: &Producer, host: &str, shared: &Arc<Shared>) {
    let number = {
        let mut next = lock(&shared.next_value);
        let slot = next.entry(host.to_owned()).or_insert(0);
        *slot += 1;
        *slot
    };
    let key = format!("k{}", number % KEYS);
    let value = format!("{host}-{number}");
    // On a compacted topic every fifth send deletes its key, so the cleaner has tombstones to
    // keep (and then drop) too.
    let tombstone = shared.swarm.compacted && number % TOMBSTONE_EVERY == 0;
    let mut op = send_op(TOPIC, &key, &value);
    let mut record = ProducerRecord::new(TOPIC, Bytes::from(value.clone().into_bytes()))
        .key(Bytes::from(key.clone().into_bytes()));
    if tombstone {
        op.value = None;
        record.value = None;
    }
    let invoke = shared.invoke(host, Op::Send(op.clone()));
    match producer.send(record).await {
        Ok(delivery) => {
            *lock(&shared.unsettled).entry(host.to_owned()).or_insert(0) += 1;
            let shared = Arc::clone(shared);
            let host = host.to_owned();
            tokio::spawn(async move {
                match delivery.await {
                    Ok(metadata) => {
                        let mut done = op;
                        done.partition = Some(metadata.partition);
                        done.offset = (metadata.offset >= 0).then_some(metadata.offset);
                        shared.ok(&host, invoke, Op::Send(done));
                    }
                    Err(error) => shared.info(&host, invoke, Op::Send(op), error.to_string()),
                }
                if let Some(count) = lock(&shared.unsettled).get_mut(&host) {
                    *count = count.saturating_sub(1);
                }
            });
        }
        // Refused before it reached the accumulator: certainly not written.
        Err(error) => shared.fail(host, invoke, Op::Send(op), None, error.to_string()),
    }
}

fn history_partition(tp: &TopicPartition) -> HistoryPartition {
    HistoryPartition::new(tp.topic.clone(), tp.partition)
}

fn history_record(record: &ConsumerRecord) -> Record {
    let text = |bytes: &Option<Bytes>| {
        bytes
            .as_ref()
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
    };
    Record {
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
        key: text(&record.key),
        value: text(&record.value),
    }
}

/// Records each assignment a rebalance hands the consumer: its positions are re-established.
struct AssignRecorder {
    host: String,
    shared: Arc<Shared>,
}

impl RebalanceListener for AssignRecorder {
    fn on_assigned<'a>(
        &'a self,
        consumer: &'a Consumer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        let op = AssignOp {
            consumer: self.host.clone(),
            group: Some(GROUP.to_owned()),
            generation: consumer.generation().map(|(generation, _)| generation),
            partitions: partitions.iter().map(history_partition).collect(),
        };
        self.shared.record(
            &self.host,
            EventKind::Ok {
                invoke: None,
                op: Op::Assign(op),
            },
        );
        Box::pin(std::future::ready(()))
    }
}

fn member_config() -> ConsumerConfig {
    ConsumerConfig::new(GROUP)
        .auto_commit(false)
        .auto_offset_reset(OffsetReset::Earliest)
        .session_timeout(Duration::from_secs(3))
        .heartbeat_interval(Duration::from_millis(300))
        .rebalance_timeout(Duration::from_secs(5))
        .max_poll_records(20)
}

/// A group member host: polls continuously while joined (a member must poll to stay in its
/// group), processes (records) what it polls, commits when told.
pub async fn consumer_host(env: Env, host: String, shared: Arc<Shared>) -> turmoil::Result {
    let mailbox = shared.mailbox(&host);
    let client = connect(&env, &shared.swarm).await;
    // Every incarnation starts as a member, as a restarted service would.
    let mut member: Option<Consumer> = join(&client, &host, &shared).await;
    // What this member last committed, and in which generation, so the heal phase commits only
    // what moved (a new generation may come with a coordinator that lost the old commits).
    let mut committed = BTreeMap::new();
    loop {
        while let Some(command) = mailbox.try_next() {
            match command {
                Command::Join if member.is_none() => {
                    member = join(&client, &host, &shared).await;
                }
                Command::Leave => {
                    if let Some(consumer) = member.take() {
                        let _ = consumer.close().await;
                    }
                }
                Command::Commit => {
                    if let Some(consumer) = &member {
                        commit(consumer, &host, &shared, &mut committed).await;
                    }
                }
                _ => {}
            }
        }
        match &member {
            Some(consumer) => poll_member(consumer, &host, &shared, &mut committed).await,
            None => {
                let _ = tokio::time::timeout(Duration::from_millis(100), mailbox.notify.notified())
                    .await;
            }
        }
    }
}

async fn join(client: &Client, host: &str, shared: &Arc<Shared>) -> Option<Consumer> {
    let consumer = Consumer::new(client.clone(), member_config()).await.ok()?;
    consumer.set_rebalance_listener(Arc::new(AssignRecorder {
        host: host.to_owned(),
        shared: Arc::clone(shared),
    }));
    consumer.subscribe(&[TOPIC]).await.ok()?;
    Some(consumer)
}

async fn poll_member(
    consumer: &Consumer,
    host: &str,
    shared: &Arc<Shared>,
    committed: &mut BTreeMap<TopicPartition, (String, i32, i64)>,
) {
    let healing = shared.healing.load(Ordering::SeqCst);
    let Ok(records) = consumer.poll(POLL_WAIT).await else {
        return;
    };
    if records.is_empty() {
        if healing {
            // Positions can move without records (a member takes over a partition it read
            // up to before); the group's lag only reaches zero once they are committed.
            commit(consumer, host, shared, committed).await;
        }
        return;
    }
    let generation = consumer.generation().map(|(generation, _)| generation);
    let poll = PollOp {
        consumer: host.to_owned(),
        group: Some(GROUP.to_owned()),
        generation,
        records: Vec::new(),
    };
    if shared.variant == Variant::ClientCommitBeforeProcess {
        // The known-bad order: what was polled is committed before it is processed.
        commit(consumer, host, shared, committed).await;
    }
    let invoke = shared.invoke(host, Op::Poll(poll.clone()));
    let done = PollOp {
        records: records.iter().map(history_record).collect(),
        ..poll
    };
    shared.ok(host, invoke, Op::Poll(done));
    shared.crash_point(host, "consumer.processed").await;
    if healing && shared.variant != Variant::ClientCommitBeforeProcess {
        commit(consumer, host, shared, committed).await;
    }
}

/// Commits the consumer's positions (the next record to process) on every assigned partition.
/// Only positions that moved since this member's last commit are sent.
async fn commit(
    consumer: &Consumer,
    host: &str,
    shared: &Arc<Shared>,
    committed: &mut BTreeMap<TopicPartition, (String, i32, i64)>,
) {
    let Some((generation, member_id)) = consumer.generation() else {
        return;
    };
    let mut offsets = BTreeMap::new();
    for tp in consumer.assignment() {
        if let Some(position) = consumer.position(&tp)
            && committed.get(&tp) != Some(&(member_id.clone(), generation, position))
        {
            offsets.insert(tp, OffsetAndMetadata::new(position));
        }
    }
    if offsets.is_empty() {
        return;
    }
    let op = CommitOp {
        group: GROUP.to_owned(),
        generation: Some(generation),
        member: member_id.clone(),
        offsets: offsets
            .iter()
            .map(|(tp, at)| PartitionOffset::new(tp.topic.clone(), tp.partition, at.offset))
            .collect(),
    };
    let invoke = shared.invoke(host, Op::Commit(op.clone()));
    match consumer.commit_sync(Some(offsets)).await {
        Ok(()) => {
            for entry in &op.offsets {
                committed.insert(
                    TopicPartition::new(entry.topic.clone(), entry.partition),
                    (member_id.clone(), generation, entry.offset),
                );
            }
            shared.ok(host, invoke, Op::Commit(op));
            shared.crash_point(host, "consumer.committed").await;
        }
        // The coordinator answered with an error: the commit did not happen.
        Err(error) if error.code().is_some() => {
            let code = error.code().map(|code| code.0);
            shared.fail(host, invoke, Op::Commit(op), code, error.to_string());
        }
        Err(error) => shared.info(host, invoke, Op::Commit(op), error.to_string()),
    }
}

/// The standalone reader: every partition assigned, from the start; polls when told and
/// reads everything to the end in the heal phase.
pub async fn reader_host(env: Env, host: String, shared: Arc<Shared>) -> turmoil::Result {
    let mailbox = shared.mailbox(&host);
    let client = connect(&env, &shared.swarm).await;
    let partitions: Vec<TopicPartition> = (0..shared.swarm.partitions)
        .map(|partition| TopicPartition::new(TOPIC, partition))
        .collect();
    let consumer = loop {
        let config = ConsumerConfig::default()
            .auto_offset_reset(OffsetReset::Earliest)
            .max_poll_records(50);
        if let Ok(consumer) = Consumer::new(client.clone(), config).await
            && consumer.assign(partitions.clone()).await.is_ok()
        {
            break consumer;
        }
        env.clock.sleep(Duration::from_millis(100)).await;
    };
    shared.record(
        &host,
        EventKind::Ok {
            invoke: None,
            op: Op::Assign(AssignOp {
                consumer: host.clone(),
                group: None,
                generation: None,
                partitions: partitions.iter().map(history_partition).collect(),
            }),
        },
    );
    loop {
        match mailbox.next().await {
            Command::Poll => read_once(&consumer, &host, &shared).await,
            Command::Drain => {
                loop {
                    if let Some(ends) = caught_up(&client, &consumer, &partitions).await {
                        *lock(&shared.ends) = ends;
                        break;
                    }
                    read_once(&consumer, &host, &shared).await;
                }
                shared.drained.store(true, Ordering::SeqCst);
            }
            _ => {}
        }
    }
}

async fn read_once(consumer: &Consumer, host: &str, shared: &Shared) {
    let Ok(records) = consumer.poll(Duration::from_millis(100)).await else {
        return;
    };
    if records.is_empty() {
        return;
    }
    let poll = PollOp {
        consumer: host.to_owned(),
        group: None,
        generation: None,
        records: Vec::new(),
    };
    let invoke = shared.invoke(host, Op::Poll(poll.clone()));
    let done = PollOp {
        records: records.iter().map(history_record).collect(),
        ..poll
    };
    shared.ok(host, invoke, Op::Poll(done));
}

/// The end offset of every partition, if the reader's position has reached each.
async fn caught_up(
    client: &Client,
    consumer: &Consumer,
    partitions: &[TopicPartition],
) -> Option<BTreeMap<i32, i64>> {
    let specs = partitions
        .iter()
        .map(|tp| (tp.clone(), OffsetSpec::Latest))
        .collect();
    let listed = Admin::new(client.clone()).list_offsets(specs).await.ok()?;
    let mut ends = BTreeMap::new();
    for tp in partitions {
        let end = listed.get(tp)?.offset;
        if consumer.position(tp).is_none_or(|position| position < end) {
            return None;
        }
        ends.insert(tp.partition, end);
    }
    Some(ends)
}
