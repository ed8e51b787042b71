//! The consumer (DESIGN.md §4): classic group membership with range, round-robin and
//! cooperative-sticky assignment, or partitions assigned by hand; manual and automatic
//! commits; seek, pause and resume; rebalance callbacks; pipelined fetching; generation
//! fencing. It behaves as the Java consumer does wherever the two can be compared.
//!
//! # How it runs
//! Everything the caller sees happens in [`Consumer::poll`]: it drives the group (starts a
//! join, and when one finishes runs the callbacks), resolves positions (committed offsets,
//! then `auto_offset_reset`), returns buffered records and keeps the next fetches in flight.
//! Background tasks do only what must not wait for the caller:
//! - heartbeats, every `heartbeat_interval` while in a stable generation; they flag a
//!   rebalance for the next poll, and leave the group when poll was not called within
//!   `rebalance_timeout` (Java's `max.poll.interval.ms`);
//! - the JoinGroup/SyncGroup exchange, so a long rebalance never blocks poll past its
//!   timeout;
//! - fetches, one per leader, whose results wait in a bounded buffer;
//! - commits, one at a time in the order they were asked for, so an older `commit_async`
//!   never overwrites a newer commit.
//!
//! The state lives behind one `std` mutex never held across an await, so any method may be
//! called from anywhere — including `commit_sync` from inside a rebalance callback, which runs
//! inside poll. poll and close take an async lock of their own, so they do not overlap.

mod assignor;
// pub(crate): the fuzz entry point (`crate::fuzzing`) reads Fetch answers through it.
pub(crate) mod fetcher;
mod group;
mod offsets;
// pub(crate): the fuzz entry point (`crate::fuzzing`) reads member metadata through it.
pub(crate) mod protocol;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::FetchRequest;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::AbortHandle;

pub use assignor::AssignorKind;
pub use tidepool_io::BoxFuture;

use fetcher::FetchState;
use group::{GroupConnection, JoinFailure, JoinReport, JoinSpec, Membership, Phase};

use crate::client::Client;
use crate::error::{Error, KafkaCode, Result};
use crate::types::TopicPartition;
use crate::versions;
use tidepool_protocol::records::Header;

/// Where to start a partition that has no committed offset (or whose offset left the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The log start.
    Earliest,
    /// The end of the log: only records written from now on.
    #[default]
    Latest,
    /// Fail: poll returns an error until the caller seeks.
    None,
}

/// How a consumer behaves. Defaults are the Java consumer's.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Needed to subscribe and to commit; a consumer without one can only `assign`.
    pub group_id: Option<String>,
    /// Static membership (KIP-345): a restarted member with the same id takes its place back
    /// without a rebalance, and closing does not leave the group.
    pub group_instance_id: Option<String>,
    /// The coordinator drops a member it has not heard from for this long.
    pub session_timeout: Duration,
    /// How long a rebalance waits for members to rejoin, and how long poll may go uncalled
    /// before this member leaves the group (Java's `max.poll.interval.ms`).
    pub rebalance_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// Offered to the coordinator in order of preference. If any is eager (range,
    /// round-robin), the eager protocol is used: every partition is revoked before a
    /// rebalance. With only cooperative-sticky, members keep their partitions through one.
    pub assignors: Vec<AssignorKind>,
    pub auto_commit: bool,
    pub auto_commit_interval: Duration,
    pub auto_offset_reset: OffsetReset,
    pub fetch_min_bytes: i32,
    pub fetch_max_wait: Duration,
    pub fetch_max_bytes: i32,
    pub max_partition_fetch_bytes: i32,
    /// The most records one poll returns.
    pub max_poll_records: usize,
    /// Fetched bytes held, buffered or asked for, before fetching stops until poll drains.
    pub buffered_bytes_max: usize,
}

impl Default for ConsumerConfig {
    fn default() -> ConsumerConfig {
        ConsumerConfig {
            group_id: None,
            group_instance_id: None,
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(3),
            assignors: vec![AssignorKind::Range, AssignorKind::CooperativeSticky],
            auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            auto_offset_reset: OffsetReset::Latest,
            fetch_min_bytes: 1,
            fetch_max_wait: Duration::from_millis(500),
            fetch_max_bytes: 50 << 20,
            max_partition_fetch_bytes: 1 << 20,
            max_poll_records: 500,
            buffered_bytes_max: 64 << 20,
        }
    }
}

impl ConsumerConfig {
    /// A consumer in `group_id`, with Java's defaults otherwise.
    pub fn new(group_id: impl Into<String>) -> ConsumerConfig {
        ConsumerConfig {
            group_id: Some(group_id.into()),
            ..ConsumerConfig::default()
        }
    }

    pub fn group_instance_id(mut self, id: impl Into<String>) -> ConsumerConfig {
        self.group_instance_id = Some(id.into());
        self
    }

    pub fn session_timeout(mut self, timeout: Duration) -> ConsumerConfig {
        self.session_timeout = timeout;
        self
    }

    pub fn rebalance_timeout(mut self, timeout: Duration) -> ConsumerConfig {
        self.rebalance_timeout = timeout;
        self
    }

    pub fn heartbeat_interval(mut self, interval: Duration) -> ConsumerConfig {
        self.heartbeat_interval = interval;
        self
    }

    pub fn assignors(mut self, assignors: Vec<AssignorKind>) -> ConsumerConfig {
        self.assignors = assignors;
        self
    }

    pub fn auto_commit(mut self, enabled: bool) -> ConsumerConfig {
        self.auto_commit = enabled;
        self
    }

    pub fn auto_commit_interval(mut self, interval: Duration) -> ConsumerConfig {
        self.auto_commit_interval = interval;
        self
    }

    pub fn auto_offset_reset(mut self, reset: OffsetReset) -> ConsumerConfig {
        self.auto_offset_reset = reset;
        self
    }

    pub fn fetch_min_bytes(mut self, bytes: i32) -> ConsumerConfig {
        self.fetch_min_bytes = bytes;
        self
    }

    pub fn fetch_max_wait(mut self, wait: Duration) -> ConsumerConfig {
        self.fetch_max_wait = wait;
        self
    }

    pub fn fetch_max_bytes(mut self, bytes: i32) -> ConsumerConfig {
        self.fetch_max_bytes = bytes;
        self
    }

    pub fn max_partition_fetch_bytes(mut self, bytes: i32) -> ConsumerConfig {
        self.max_partition_fetch_bytes = bytes;
        self
    }

    pub fn max_poll_records(mut self, records: usize) -> ConsumerConfig {
        self.max_poll_records = records;
        self
    }

    pub fn buffered_bytes_max(mut self, bytes: usize) -> ConsumerConfig {
        self.buffered_bytes_max = bytes;
        self
    }

    fn validate(&self) -> Result<()> {
        let invalid = |what: &str| Err(Error::Invalid(format!("consumer config: {what}")));
        if self.group_id.as_deref() == Some("") {
            return invalid("group_id is empty");
        }
        if self.group_instance_id.is_some() && self.group_id.is_none() {
            return invalid("group_instance_id needs a group_id");
        }
        if self.assignors.is_empty() {
            return invalid("no assignors");
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.session_timeout {
            return invalid("heartbeat_interval must be above zero and below session_timeout");
        }
        if self.max_poll_records == 0 || self.buffered_bytes_max == 0 {
            return invalid("max_poll_records and buffered_bytes_max must be above zero");
        }
        if self.fetch_max_bytes <= 0 || self.max_partition_fetch_bytes <= 0 {
            return invalid("fetch_max_bytes and max_partition_fetch_bytes must be above zero");
        }
        Ok(())
    }

    /// Cooperative only if every assignor offered supports it (as Java decides).
    fn cooperative(&self) -> bool {
        self.assignors.iter().all(|kind| kind.is_cooperative())
    }
}

/// A record as poll returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// The leader epoch the record was written in, if the broker recorded one.
    pub leader_epoch: Option<i32>,
}

/// A committed position: the offset of the next record to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    pub offset: i64,
    pub metadata: Option<String>,
    pub leader_epoch: Option<i32>,
}

impl OffsetAndMetadata {
    pub fn new(offset: i64) -> OffsetAndMetadata {
        OffsetAndMetadata {
            offset,
            metadata: None,
            leader_epoch: None,
        }
    }
}

/// Told when partitions come and go in a rebalance. Runs inside poll (or close), so it may
/// use the consumer — commit, seek, read positions — but must not call poll.
///
/// - `on_revoked`: before a rebalance takes partitions away, while they are still assigned,
///   so committing their positions works (eager: all of them; cooperative: those moving).
/// - `on_assigned`: after a rebalance, with the new partitions (eager: the whole assignment;
///   cooperative: those added, possibly none). Positions are looked up after it returns, so a
///   seek here decides where consumption starts.
/// - `on_lost`: the generation ended without us (session expired, fenced): the partitions
///   may already belong to others, so committing for them would fail.
pub trait RebalanceListener: Send + Sync {
    fn on_assigned<'a>(
        &'a self,
        consumer: &'a Consumer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        let _ = (consumer, partitions);
        Box::pin(std::future::ready(()))
    }

    fn on_revoked<'a>(
        &'a self,
        consumer: &'a Consumer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        let _ = (consumer, partitions);
        Box::pin(std::future::ready(()))
    }

    fn on_lost<'a>(
        &'a self,
        consumer: &'a Consumer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        let _ = (consumer, partitions);
        Box::pin(std::future::ready(()))
    }
}

#[derive(Debug, Clone, Copy)]
enum Callback {
    Assigned,
    Revoked,
    Lost,
}

/// Where consumption of a partition continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub offset: i64,
    /// The epoch of the last record consumed, committed alongside the offset.
    pub leader_epoch: Option<i32>,
}

#[derive(Debug, Default)]
pub(crate) struct PartitionState {
    /// `None` until resolved from the committed offset or a reset.
    pub position: Option<Position>,
    pub paused: bool,
    /// A reset waiting for ListOffsets (a seek to the beginning or end, or the policy after
    /// OFFSET_OUT_OF_RANGE or a missing commit).
    pub reset: Option<OffsetReset>,
    /// Counts seeks, so a look-up started before one cannot overwrite it.
    pub seeks: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Idle,
    Subscribed(BTreeSet<String>),
    Assigned,
}

struct State {
    mode: Mode,
    assignment: BTreeMap<TopicPartition, PartitionState>,
    group: Membership,
    fetch: FetchState,
    fatal: Option<Error>,
    closed: bool,
    last_poll: Duration,
    next_auto_commit: Duration,
    positions_retry_at: Duration,
    position_failures: u32,
}

impl State {
    fn usable(&self) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        if let Some(error) = &self.fatal {
            return Err(error.clone());
        }
        if self.mode == Mode::Idle {
            return Err(Error::Invalid(
                "poll needs a subscription or an assignment first".into(),
            ));
        }
        Ok(())
    }

    fn remove_partitions(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            self.assignment.remove(tp);
            self.fetch.drop_partition(tp);
        }
    }

    /// The position of every assigned partition that has one: what a commit of "where we
    /// are" writes.
    fn consumed(&self) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        self.assignment
            .iter()
            .filter_map(|(tp, partition)| {
                let position = partition.position?;
                Some((
                    tp.clone(),
                    OffsetAndMetadata {
                        offset: position.offset,
                        metadata: None,
                        leader_epoch: position.leader_epoch,
                    },
                ))
            })
            .collect()
    }

    /// Flags a rejoin if the subscription changed since the last join or a watched topic's
    /// partition count changed in the metadata.
    fn note_group_changes(&mut self, client: &Client) {
        let Mode::Subscribed(topics) = &self.mode else {
            return;
        };
        if self.group.phase != Phase::Stable || self.group.rejoin_needed {
            return;
        }
        if *topics != self.group.joined_topics {
            self.group.rejoin_needed = true;
            return;
        }
        for (topic, count) in &self.group.watched {
            let now = client.cached_topic(topic).map_or(0, |t| t.partitions.len());
            if now != *count {
                tracing::info!(
                    topic,
                    before = count,
                    now,
                    "partition count changed; rejoining"
                );
                self.group.rejoin_needed = true;
                return;
            }
        }
    }
}

struct CommitJob {
    offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
    /// `None` for auto-commits, whose failures are only logged.
    reply: Option<oneshot::Sender<Result<()>>>,
}

#[derive(Default)]
struct PollState {
    /// The join under way: its answer, and the task to stop if we close first.
    join: Option<(oneshot::Receiver<JoinReport>, AbortHandle)>,
}

impl Drop for PollState {
    fn drop(&mut self) {
        if let Some((_, task)) = self.join.take() {
            task.abort();
        }
    }
}

struct Inner {
    client: Client,
    config: ConsumerConfig,
    state: Mutex<State>,
    poll: tokio::sync::Mutex<PollState>,
    listener: Mutex<Option<Arc<dyn RebalanceListener>>>,
    /// Wakes a waiting poll: a fetch, a join or a metadata refresh finished, or a heartbeat
    /// changed the group state.
    wakeup: Arc<Notify>,
    commits: mpsc::UnboundedSender<CommitJob>,
    tasks: Mutex<Vec<AbortHandle>>,
    group_connection: Arc<GroupConnection>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        lock(&self.state).fetch.clear();
        self.group_connection.close();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A Kafka consumer. Cheap to clone; clones are the same consumer.
#[derive(Clone)]
pub struct Consumer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("group_id", &self.inner.config.group_id)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl Consumer {
    pub async fn new(client: Client, config: ConsumerConfig) -> Result<Consumer> {
        config.validate()?;
        let (commits, jobs) = mpsc::unbounded_channel();
        let group_connection = Arc::new(GroupConnection::new(&client, config.rebalance_timeout));
        let now = client.now();
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                mode: Mode::Idle,
                assignment: BTreeMap::new(),
                group: Membership::new(),
                fetch: FetchState::default(),
                fatal: None,
                closed: false,
                last_poll: now,
                next_auto_commit: now + config.auto_commit_interval,
                positions_retry_at: Duration::ZERO,
                position_failures: 0,
            }),
            poll: tokio::sync::Mutex::new(PollState::default()),
            listener: Mutex::new(None),
            wakeup: Arc::new(Notify::new()),
            commits,
            tasks: Mutex::new(Vec::new()),
            group_connection,
            client,
            config,
        });
        let weak = Arc::downgrade(&inner);
        let mut tasks = vec![tokio::spawn(commit_worker(weak.clone(), jobs)).abort_handle()];
        if inner.config.group_id.is_some() {
            tasks.push(tokio::spawn(heartbeat_loop(weak)).abort_handle());
        }
        *lock(&inner.tasks) = tasks;
        Ok(Consumer { inner })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Joins the group for `topics` (replacing an earlier subscription; the group rebalances
    /// at the next poll).
    pub async fn subscribe(&self, topics: &[&str]) -> Result<()> {
        if self.inner.config.group_id.is_none() {
            return Err(Error::Invalid("subscribe needs a group_id".into()));
        }
        if topics.is_empty() || topics.iter().any(|topic| topic.is_empty()) {
            return Err(Error::Invalid("subscribe needs topic names".into()));
        }
        {
            let mut state = self.state();
            state.usable().or_else(|error| match error {
                Error::Invalid(_) => Ok(()),
                other => Err(other),
            })?;
            if state.mode == Mode::Assigned {
                return Err(Error::Invalid(
                    "this consumer assigns partitions itself; it cannot also subscribe".into(),
                ));
            }
            state.mode = Mode::Subscribed(topics.iter().map(|t| t.to_string()).collect());
        }
        // Registers the topics with the metadata refresher; a topic that does not exist yet
        // is not an error (the group rebalances when it appears).
        if let Err(error) = self.client().refresh_topics(topics).await {
            tracing::debug!(%error, "metadata for the subscription");
        }
        self.inner.wakeup.notify_one();
        Ok(())
    }

    pub fn set_rebalance_listener(&self, listener: Arc<dyn RebalanceListener>) {
        *lock(&self.inner.listener) = Some(listener);
    }

    /// Consumes exactly `partitions`, without group membership (commits still go to the
    /// group, if one is configured). Partitions kept from the previous assignment keep their
    /// positions.
    pub async fn assign(&self, partitions: Vec<TopicPartition>) -> Result<()> {
        let topics: BTreeSet<String> = partitions.iter().map(|tp| tp.topic.clone()).collect();
        {
            let mut state = self.state();
            if state.closed {
                return Err(Error::Closed);
            }
            if matches!(state.mode, Mode::Subscribed(_)) {
                return Err(Error::Invalid(
                    "this consumer is subscribed to a group; it cannot also assign".into(),
                ));
            }
            let wanted: BTreeSet<TopicPartition> = partitions.into_iter().collect();
            let gone: Vec<TopicPartition> = state
                .assignment
                .keys()
                .filter(|tp| !wanted.contains(*tp))
                .cloned()
                .collect();
            state.remove_partitions(&gone);
            for tp in wanted {
                state.assignment.entry(tp).or_default();
            }
            state.mode = if state.assignment.is_empty() {
                Mode::Idle
            } else {
                Mode::Assigned
            };
        }
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.client().refresh_topics(&names).await?;
        self.inner.wakeup.notify_one();
        Ok(())
    }

    /// Returns up to `max_poll_records` records, waiting up to `timeout` for some. Also where
    /// the group is joined and rebalance callbacks run.
    pub async fn poll(&self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let client = self.client().clone();
        let deadline = client.now().saturating_add(timeout);
        let mut poll = self.inner.poll.lock().await;
        loop {
            let subscribed = {
                let mut state = self.state();
                state.usable()?;
                state.last_poll = client.now();
                matches!(state.mode, Mode::Subscribed(_))
            };
            if subscribed {
                self.drive_group(&mut poll).await?;
            }
            self.maybe_auto_commit();
            self.update_positions(deadline).await?;
            let records = self.drain()?;
            // Sent before returning, so the next records arrive while the caller works.
            self.send_fetches();
            if !records.is_empty() {
                return Ok(records);
            }
            let now = client.now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let wake_at = self.next_wakeup(deadline, poll.join.is_some());
            let notified = self.inner.wakeup.notified();
            tokio::select! {
                biased;
                () = notified => {}
                () = client.sleep(wake_at.saturating_sub(now)) => {}
            }
        }
    }

    /// The earliest time poll has something to do without being woken.
    fn next_wakeup(&self, deadline: Duration, joining: bool) -> Duration {
        let state = self.state();
        let mut at = deadline;
        if self.inner.config.auto_commit && self.inner.config.group_id.is_some() {
            at = at.min(state.next_auto_commit);
        }
        if state.assignment.values().any(|p| p.position.is_none()) {
            at = at.min(state.positions_retry_at);
        }
        if matches!(state.mode, Mode::Subscribed(_)) && !joining {
            if state.group.phase == Phase::Unjoined {
                at = at.min(state.group.next_join_at);
            }
            // Group checks (metadata changes, the heartbeat task's findings) and the
            // last-poll time the heartbeat task judges liveness by are updated per round.
            at = at.min(self.client().now() + self.inner.config.heartbeat_interval);
        }
        at
    }

    // ---- the group -------------------------------------------------------------------------

    /// Moves membership along without waiting for the coordinator: handles a finished join,
    /// or starts one (after the revocation step) when the group needs it.
    async fn drive_group(&self, poll: &mut PollState) -> Result<()> {
        if let Some((answer, _)) = poll.join.as_mut() {
            match answer.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => return Ok(()),
                Ok(report) => {
                    poll.join = None;
                    self.finish_join(report).await?;
                }
                Err(oneshot::error::TryRecvError::Closed) => {
                    poll.join = None;
                    let mut state = self.state();
                    state.group.phase = Phase::Unjoined;
                    state.group.next_join_at = self.client().now();
                }
            }
        }
        let needs_join = {
            let mut state = self.state();
            if let Some(error) = &state.fatal {
                return Err(error.clone());
            }
            let client = self.client().clone();
            state.note_group_changes(&client);
            state.group.phase != Phase::Stable || state.group.rejoin_needed
        };
        if !needs_join {
            return Ok(());
        }
        if self.state().group.needs_prepare {
            self.prepare_join().await;
        }
        let spec = {
            let mut state = self.state();
            let client = self.client();
            if client.now() < state.group.next_join_at {
                return Ok(());
            }
            let Mode::Subscribed(topics) = &state.mode else {
                return Ok(());
            };
            let topics = topics.clone();
            let owned: Vec<TopicPartition> = state.assignment.keys().cloned().collect();
            let group = &mut state.group;
            group.phase = Phase::Joining;
            group.rejoin_needed = false;
            let config = &self.inner.config;
            JoinSpec {
                client: client.clone(),
                connection: Arc::clone(&self.inner.group_connection),
                group_id: config.group_id.clone().unwrap_or_default(),
                instance_id: config.group_instance_id.clone(),
                member_id: group.member_id.clone(),
                session_timeout: config.session_timeout,
                rebalance_timeout: config.rebalance_timeout,
                assignors: config.assignors.clone(),
                topics,
                owned,
                generation: group.generation.as_ref().map_or(-1, |g| g.id),
            }
        };
        let (reply, answer) = oneshot::channel();
        let wakeup = Arc::clone(&self.inner.wakeup);
        let task = tokio::spawn(async move {
            let report = group::join_and_sync(spec).await;
            let _ = reply.send(report);
            wakeup.notify_one();
        });
        poll.join = Some((answer, task.abort_handle()));
        Ok(())
    }

    /// Java's onJoinPrepare: before joining, give up what we must. A generation that ended
    /// without us loses its partitions; otherwise commit (auto-commit) and revoke — all of
    /// them under the eager protocol, only those of topics no longer subscribed under the
    /// cooperative one.
    async fn prepare_join(&self) {
        let (owned, generation_valid, unsubscribed) = {
            let state = self.state();
            let owned: Vec<TopicPartition> = state.assignment.keys().cloned().collect();
            let unsubscribed = match &state.mode {
                Mode::Subscribed(topics) => owned
                    .iter()
                    .filter(|tp| !topics.contains(&tp.topic))
                    .cloned()
                    .collect(),
                _ => owned.clone(),
            };
            (owned, state.group.generation.is_some(), unsubscribed)
        };
        if !generation_valid {
            if !owned.is_empty() {
                self.call_listener(Callback::Lost, &owned).await;
                self.state().remove_partitions(&owned);
            }
        } else {
            if self.inner.config.auto_commit
                && !owned.is_empty()
                && let Err(error) = self.commit_sync(None).await
            {
                tracing::warn!(%error, "auto-commit before the rebalance failed");
            }
            let revoked = if self.inner.config.cooperative() {
                unsubscribed
            } else {
                owned
            };
            if !revoked.is_empty() {
                self.call_listener(Callback::Revoked, &revoked).await;
                self.state().remove_partitions(&revoked);
            }
        }
        self.state().group.needs_prepare = false;
    }

    /// Java's onJoinComplete: take the new assignment, revoke what moved away (cooperative,
    /// then rejoin for the follow-up rebalance), and tell the listener.
    async fn finish_join(&self, report: JoinReport) -> Result<()> {
        let client = self.client().clone();
        let now = client.now();
        let outcome = {
            let mut state = self.state();
            state.group.member_id = report.member_id;
            match report.result {
                Ok(outcome) => outcome,
                Err(failure) => {
                    let group = &mut state.group;
                    group.phase = Phase::Unjoined;
                    group.next_join_at = now + client.backoff(group.failed_joins);
                    group.failed_joins = group.failed_joins.saturating_add(1);
                    return match failure {
                        JoinFailure::Retry(error) => {
                            tracing::debug!(%error, "rejoining");
                            Ok(())
                        }
                        JoinFailure::ResetGeneration(error) => {
                            tracing::info!(%error, "generation lost; rejoining");
                            group.reset_generation(false);
                            Ok(())
                        }
                        JoinFailure::ResetMember(error) => {
                            tracing::info!(%error, "member id unknown; rejoining as a new member");
                            group.reset_generation(true);
                            Ok(())
                        }
                        JoinFailure::Failed(error) => Err(error),
                        JoinFailure::Fatal(error) => {
                            state.fatal = Some(error.clone());
                            Err(error)
                        }
                    };
                }
            }
        };
        let cooperative = self.inner.config.cooperative();
        let (added, revoked, assigned) = {
            let mut state = self.state();
            let owned: BTreeSet<TopicPartition> = state.assignment.keys().cloned().collect();
            let assigned = outcome.assignment;
            let revoked: Vec<TopicPartition> = owned.difference(&assigned).cloned().collect();
            let added: Vec<TopicPartition> = assigned.difference(&owned).cloned().collect();
            tracing::info!(
                generation = outcome.generation.id,
                member = %outcome.generation.member_id,
                protocol = outcome.generation.protocol.protocol_name(),
                assigned = assigned.len(),
                "joined the group"
            );
            let group = &mut state.group;
            group.generation = Some(outcome.generation);
            group.phase = Phase::Stable;
            group.failed_joins = 0;
            group.needs_prepare = true;
            group.watched = outcome.watched;
            group.joined_topics = outcome.topics;
            // KIP-429: partitions we give up go to their new owner in a follow-up rebalance.
            if cooperative && !revoked.is_empty() {
                group.rejoin_needed = true;
            }
            for tp in &added {
                state.assignment.entry(tp.clone()).or_default();
            }
            state.next_auto_commit = now + self.inner.config.auto_commit_interval;
            (added, revoked, assigned.into_iter().collect::<Vec<_>>())
        };
        if !revoked.is_empty() {
            // Still assigned while the listener runs, so it can commit their positions.
            self.call_listener(Callback::Revoked, &revoked).await;
            self.state().remove_partitions(&revoked);
        }
        let told = if cooperative { added } else { assigned };
        self.call_listener(Callback::Assigned, &told).await;
        Ok(())
    }

    async fn call_listener(&self, callback: Callback, partitions: &[TopicPartition]) {
        let listener = lock(&self.inner.listener).clone();
        let Some(listener) = listener else {
            return;
        };
        match callback {
            Callback::Assigned => listener.on_assigned(self, partitions).await,
            Callback::Revoked => listener.on_revoked(self, partitions).await,
            Callback::Lost => listener.on_lost(self, partitions).await,
        }
    }

    // ---- positions -------------------------------------------------------------------------

    /// Gives every partition without a position one: its committed offset, else a reset.
    async fn update_positions(&self, deadline: Duration) -> Result<()> {
        let (committed, resets) = {
            let state = self.state();
            if self.client().now() < state.positions_retry_at {
                return Ok(());
            }
            let mut committed = Vec::new();
            let mut resets = Vec::new();
            for (tp, partition) in &state.assignment {
                if partition.position.is_some() {
                    continue;
                }
                match partition.reset {
                    Some(reset) => resets.push((tp.clone(), reset, partition.seeks)),
                    None => committed.push((tp.clone(), partition.seeks)),
                }
            }
            (committed, resets)
        };
        if committed.is_empty() && resets.is_empty() {
            return Ok(());
        }
        match self.resolve_positions(committed, resets, deadline).await {
            Ok(()) => {
                self.state().position_failures = 0;
                Ok(())
            }
            Err(error) if error.is_retriable() => {
                tracing::debug!(%error, "positions not resolved yet");
                let mut state = self.state();
                let backoff = self.client().backoff(state.position_failures);
                state.positions_retry_at = self.client().now() + backoff;
                state.position_failures = state.position_failures.saturating_add(1);
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    async fn resolve_positions(
        &self,
        committed: Vec<(TopicPartition, u64)>,
        mut resets: Vec<(TopicPartition, OffsetReset, u64)>,
        deadline: Duration,
    ) -> Result<()> {
        if !committed.is_empty() {
            let partitions: Vec<TopicPartition> =
                committed.iter().map(|(tp, _)| tp.clone()).collect();
            let found = if self.inner.config.group_id.is_some() {
                self.fetch_committed(&partitions).await?
            } else {
                BTreeMap::new()
            };
            let policy = self.inner.config.auto_offset_reset;
            let mut missing = Vec::new();
            let mut state = self.state();
            for (tp, seeks) in committed {
                let Some(partition) = state.assignment.get_mut(&tp) else {
                    continue;
                };
                if partition.seeks != seeks || partition.position.is_some() {
                    continue;
                }
                match found.get(&tp).cloned().flatten() {
                    Some(offset) => {
                        partition.position = Some(Position {
                            offset: offset.offset,
                            leader_epoch: offset.leader_epoch,
                        });
                    }
                    None if policy == OffsetReset::None => missing.push(tp),
                    None => {
                        partition.reset = Some(policy);
                        resets.push((tp, policy, seeks));
                    }
                }
            }
            if !missing.is_empty() {
                return Err(Error::kafka(
                    KafkaCode::OFFSET_OUT_OF_RANGE,
                    format!("no committed offset for {missing:?} and auto_offset_reset is None"),
                    None,
                ));
            }
        }
        for reset in [OffsetReset::Earliest, OffsetReset::Latest] {
            let wanted: Vec<(TopicPartition, u64)> = resets
                .iter()
                .filter(|(_, r, _)| *r == reset)
                .map(|(tp, _, seeks)| (tp.clone(), *seeks))
                .collect();
            if !wanted.is_empty() {
                self.reset_positions(&wanted, reset, deadline).await?;
            }
        }
        Ok(())
    }

    /// Looks up the reset offsets and applies each unless a seek happened in the meantime.
    async fn reset_positions(
        &self,
        partitions: &[(TopicPartition, u64)],
        reset: OffsetReset,
        deadline: Duration,
    ) -> Result<()> {
        let timestamp = match reset {
            OffsetReset::Earliest => offsets::EARLIEST,
            _ => offsets::LATEST,
        };
        let tps: Vec<TopicPartition> = partitions.iter().map(|(tp, _)| tp.clone()).collect();
        let found = self.list_offsets(&tps, timestamp, deadline).await?;
        let mut state = self.state();
        for (tp, seeks) in partitions {
            let (Some(partition), Some(position)) = (state.assignment.get_mut(tp), found.get(tp))
            else {
                continue;
            };
            if partition.seeks == *seeks && partition.reset == Some(reset) {
                partition.position = Some(*position);
                partition.reset = None;
            }
        }
        Ok(())
    }

    /// ListOffsets for `partitions` at their leaders, following leadership moves, until
    /// `deadline` (one round at least).
    async fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        timestamp: i64,
        deadline: Duration,
    ) -> Result<BTreeMap<TopicPartition, Position>> {
        let client = self.client();
        let mut pending: BTreeSet<TopicPartition> = partitions.iter().cloned().collect();
        let mut found = BTreeMap::new();
        let mut attempt = 0;
        loop {
            let mut by_node: BTreeMap<i32, Vec<(TopicPartition, i32)>> = BTreeMap::new();
            let mut last_error = None;
            for tp in &pending {
                match client.leader(&tp.topic, tp.partition) {
                    Some((node, epoch)) => {
                        by_node.entry(node).or_default().push((tp.clone(), epoch))
                    }
                    None => {
                        last_error = Some(Error::kafka(
                            KafkaCode::LEADER_NOT_AVAILABLE,
                            format!("ListOffsets for {tp}"),
                            None,
                        ));
                    }
                }
            }
            for (node, asked) in by_node {
                match offsets::list_offsets(client, node, &asked, timestamp).await {
                    Ok(answers) => {
                        for (tp, answer) in answers {
                            match answer {
                                Ok((offset, leader_epoch)) => {
                                    if pending.remove(&tp) {
                                        found.insert(
                                            tp,
                                            Position {
                                                offset,
                                                leader_epoch,
                                            },
                                        );
                                    }
                                }
                                Err(code) if code.invalidates_metadata() || code.is_retriable() => {
                                    last_error = Some(Error::kafka(
                                        code,
                                        format!("ListOffsets for {tp}"),
                                        None,
                                    ));
                                }
                                Err(code) => {
                                    return Err(Error::kafka(
                                        code,
                                        format!("ListOffsets for {tp}"),
                                        None,
                                    ));
                                }
                            }
                        }
                    }
                    Err(error) if error.is_retriable() => last_error = Some(error),
                    Err(error) => return Err(error),
                }
            }
            if pending.is_empty() {
                return Ok(found);
            }
            let error = last_error.unwrap_or_else(|| {
                Error::kafka(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION, "ListOffsets", None)
            });
            if client.now() >= deadline {
                return Err(error);
            }
            let topics: BTreeSet<&str> = pending.iter().map(|tp| tp.topic.as_str()).collect();
            let topics: Vec<&str> = topics.into_iter().collect();
            if let Err(error) = client.refresh_topics(&topics).await {
                tracing::debug!(%error, "metadata refresh for ListOffsets");
            }
            client.sleep(client.backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// One OffsetFetch round (following coordinator moves within the request timeout).
    async fn fetch_committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>> {
        let client = self.client();
        let group_id = self.group_id()?;
        let deadline = client.now() + client.config().request_timeout;
        let mut attempt = 0;
        loop {
            let error = match self.fetch_committed_once(group_id, partitions).await {
                Ok(found) => return Ok(found),
                Err(error) if error.is_retriable() && client.now() < deadline => error,
                Err(error) => return Err(error),
            };
            tracing::debug!(%error, "OffsetFetch will be retried");
            client.sleep(client.backoff(attempt)).await;
            attempt += 1;
        }
    }

    async fn fetch_committed_once(
        &self,
        group_id: &str,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>> {
        let client = self.client();
        let node = client.coordinator(group_id).await?;
        let answer = offsets::fetch_committed(client, node, group_id, partitions)
            .await
            .inspect_err(|error| {
                if error.is_retriable() {
                    client.forget_coordinator(group_id);
                }
            })?;
        let context = || format!("OffsetFetch for group {group_id}");
        match answer {
            offsets::Committed::Group(code) => {
                if code.is_coordinator_error() {
                    client.forget_coordinator(group_id);
                }
                Err(Error::kafka(code, context(), None))
            }
            offsets::Committed::Partitions(mut answers) => partitions
                .iter()
                .map(|tp| match answers.remove(tp) {
                    Some(Ok(found)) => Ok((tp.clone(), found)),
                    Some(Err(code)) => Err(Error::kafka(code, context(), Some(tp.to_string()))),
                    None => Ok((tp.clone(), None)),
                })
                .collect(),
        }
    }

    fn group_id(&self) -> Result<&str> {
        self.inner
            .config
            .group_id
            .as_deref()
            .ok_or_else(|| Error::Invalid("this needs a consumer with a group_id".into()))
    }

    // ---- fetching --------------------------------------------------------------------------

    fn drain(&self) -> Result<Vec<ConsumerRecord>> {
        let policy = self.inner.config.auto_offset_reset;
        let mut state = self.state();
        let State {
            assignment, fetch, ..
        } = &mut *state;
        let mut reset_scheduled = false;
        for (tp, offset) in fetch.take_out_of_range() {
            let Some(partition) = assignment.get_mut(&tp) else {
                continue;
            };
            if partition.position.map(|p| p.offset) != Some(offset) {
                continue;
            }
            if policy == OffsetReset::None {
                return Err(Error::kafka(
                    KafkaCode::OFFSET_OUT_OF_RANGE,
                    format!(
                        "fetch offset {offset} of {tp} is out of range and auto_offset_reset is None"
                    ),
                    None,
                ));
            }
            tracing::info!(%tp, offset, ?policy, "fetch offset out of range; resetting");
            partition.position = None;
            partition.reset = Some(policy);
            reset_scheduled = true;
        }
        if reset_scheduled {
            self.inner.wakeup.notify_one();
        }
        fetch.drain(assignment, self.inner.config.max_poll_records)
    }

    fn send_fetches(&self) {
        let client = self.client();
        let mut state = self.state();
        if state.closed {
            return;
        }
        let (plans, leaderless) = state
            .fetch
            .plan(&state.assignment, client, &self.inner.config);
        for plan in plans {
            let task = tokio::spawn(fetch_task(
                Arc::downgrade(&self.inner),
                client.clone(),
                plan.clone(),
                Arc::clone(&self.inner.wakeup),
            ));
            state.fetch.begin(&plan, task.abort_handle());
        }
        if leaderless && !state.fetch.refreshing_metadata {
            state.fetch.refreshing_metadata = true;
            tokio::spawn(refresh_task(
                Arc::downgrade(&self.inner),
                client.clone(),
                Arc::clone(&self.inner.wakeup),
            ));
        }
    }

    // ---- commits ---------------------------------------------------------------------------

    fn maybe_auto_commit(&self) {
        if !self.inner.config.auto_commit || self.inner.config.group_id.is_none() {
            return;
        }
        let offsets = {
            let mut state = self.state();
            let now = self.client().now();
            if now < state.next_auto_commit {
                return;
            }
            state.next_auto_commit = now + self.inner.config.auto_commit_interval;
            if matches!(state.mode, Mode::Subscribed(_))
                && state.group.stable_generation().is_none()
            {
                return;
            }
            state.consumed()
        };
        if !offsets.is_empty() {
            let _ = self.inner.commits.send(CommitJob {
                offsets,
                reply: None,
            });
        }
    }

    /// Commits `offsets` (each the offset of the next record to read), or the current
    /// positions of every assigned partition, and waits for the answer. A member that is not
    /// in the current generation gets an error (as Java's CommitFailedException) and rejoins
    /// at the next poll.
    pub async fn commit_sync(
        &self,
        offsets: Option<BTreeMap<TopicPartition, OffsetAndMetadata>>,
    ) -> Result<()> {
        self.commit_async(offsets).await
    }

    /// Like [`Consumer::commit_sync`], but the commit is queued now and the future only
    /// reports its outcome; dropping it does not cancel the commit. Commits are sent in the
    /// order they were made.
    pub fn commit_async(
        &self,
        offsets: Option<BTreeMap<TopicPartition, OffsetAndMetadata>>,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let offsets = offsets.unwrap_or_else(|| self.state().consumed());
        let (reply, answer) = oneshot::channel();
        if offsets.is_empty() {
            let _ = reply.send(Ok(()));
        } else {
            // If the worker is gone (closed), the reply is dropped and the answer is Closed.
            let _ = self.inner.commits.send(CommitJob {
                offsets,
                reply: Some(reply),
            });
        }
        async move { answer.await.unwrap_or(Err(Error::Closed)) }
    }

    /// The committed offsets of `partitions` (`None`: nothing committed).
    pub async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>> {
        self.fetch_committed(partitions).await
    }

    // ---- positions, seeking, pausing -----------------------------------------------------

    /// Consumption of `tp` continues at `offset` from the next poll.
    pub async fn seek(&self, tp: &TopicPartition, offset: i64) -> Result<()> {
        if offset < 0 {
            return Err(Error::Invalid(format!("cannot seek {tp} to {offset}")));
        }
        let mut state = self.state();
        let State {
            assignment, fetch, ..
        } = &mut *state;
        let partition = assignment.get_mut(tp).ok_or_else(|| not_assigned(tp))?;
        partition.position = Some(Position {
            offset,
            leader_epoch: None,
        });
        partition.reset = None;
        partition.seeks += 1;
        fetch.drop_partition(tp);
        Ok(())
    }

    /// Moves `partitions` (all assigned ones if empty) to their log start.
    pub async fn seek_to_beginning(&self, partitions: &[TopicPartition]) -> Result<()> {
        self.seek_to(partitions, OffsetReset::Earliest).await
    }

    /// Moves `partitions` (all assigned ones if empty) to their log end.
    pub async fn seek_to_end(&self, partitions: &[TopicPartition]) -> Result<()> {
        self.seek_to(partitions, OffsetReset::Latest).await
    }

    async fn seek_to(&self, partitions: &[TopicPartition], reset: OffsetReset) -> Result<()> {
        let targets = {
            let mut state = self.state();
            let State {
                assignment, fetch, ..
            } = &mut *state;
            let wanted: Vec<TopicPartition> = if partitions.is_empty() {
                assignment.keys().cloned().collect()
            } else {
                partitions.to_vec()
            };
            let mut targets = Vec::with_capacity(wanted.len());
            for tp in wanted {
                let partition = assignment.get_mut(&tp).ok_or_else(|| not_assigned(&tp))?;
                partition.position = None;
                partition.reset = Some(reset);
                partition.seeks += 1;
                fetch.drop_partition(&tp);
                targets.push((tp, partition.seeks));
            }
            targets
        };
        // Resolved now, so position() answers at once; if this fails, poll retries it.
        let deadline = self.client().now() + self.client().config().request_timeout;
        self.reset_positions(&targets, reset, deadline).await
    }

    /// The offset of the next record poll returns for `tp`, once known.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.state()
            .assignment
            .get(tp)
            .and_then(|partition| partition.position)
            .map(|position| position.offset)
    }

    /// Stops returning and fetching records of `partitions` until resumed; what was buffered
    /// for them is dropped and fetched again later.
    pub fn pause(&self, partitions: &[TopicPartition]) {
        let mut state = self.state();
        let State {
            assignment, fetch, ..
        } = &mut *state;
        for tp in partitions {
            if let Some(partition) = assignment.get_mut(tp) {
                partition.paused = true;
                fetch.drop_partition(tp);
            }
        }
    }

    pub fn resume(&self, partitions: &[TopicPartition]) {
        let mut state = self.state();
        for tp in partitions {
            if let Some(partition) = state.assignment.get_mut(tp) {
                partition.paused = false;
            }
        }
        self.inner.wakeup.notify_one();
    }

    pub fn paused(&self) -> Vec<TopicPartition> {
        self.state()
            .assignment
            .iter()
            .filter(|(_, partition)| partition.paused)
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.state().assignment.keys().cloned().collect()
    }

    /// The generation id and member id of the last completed rebalance, while it stands.
    pub fn generation(&self) -> Option<(i32, String)> {
        self.state()
            .group
            .generation
            .as_ref()
            .map(|generation| (generation.id, generation.member_id.clone()))
    }

    /// Commits (with auto-commit), revokes and leaves the group (dynamic members; a static
    /// member's place is kept for its restart, as in Java), and stops every task. Later calls
    /// answer [`Error::Closed`].
    pub async fn close(&self) -> Result<()> {
        let mut poll = self.inner.poll.lock().await;
        if self.state().closed {
            return Ok(());
        }
        if let Some((_, task)) = poll.join.take() {
            task.abort();
        }
        let (mode, generation, owned) = {
            let state = self.state();
            (
                state.mode.clone(),
                state.group.stable_generation().cloned(),
                state.assignment.keys().cloned().collect::<Vec<_>>(),
            )
        };
        if let Some(group_id) = self.inner.config.group_id.clone() {
            let subscribed = matches!(mode, Mode::Subscribed(_));
            let can_commit = mode == Mode::Assigned || generation.is_some();
            if self.inner.config.auto_commit
                && can_commit
                && let Err(error) = self.commit_sync(None).await
            {
                tracing::warn!(%error, "auto-commit on close failed");
            }
            if subscribed && self.inner.config.group_instance_id.is_none() {
                match &generation {
                    Some(generation) => {
                        if !owned.is_empty() {
                            self.call_listener(Callback::Revoked, &owned).await;
                        }
                        if let Err(error) =
                            group::leave(self.client(), &group_id, &generation.member_id).await
                        {
                            tracing::debug!(%error, "LeaveGroup on close");
                        }
                    }
                    None if !owned.is_empty() => {
                        self.call_listener(Callback::Lost, &owned).await;
                    }
                    None => {}
                }
            }
        }
        {
            let mut state = self.state();
            state.closed = true;
            state.fetch.clear();
            state.assignment.clear();
            state.group = Membership::new();
        }
        for task in lock(&self.inner.tasks).drain(..) {
            task.abort();
        }
        self.inner.group_connection.close();
        self.inner.wakeup.notify_one();
        Ok(())
    }
}

fn not_assigned(tp: &TopicPartition) -> Error {
    Error::Invalid(format!("{tp} is not assigned to this consumer"))
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// One commit, retried while the coordinator moves or is busy, up to the request timeout.
    async fn commit_now(
        &self,
        offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
    ) -> Result<()> {
        let client = &self.client;
        let group_id = self
            .config
            .group_id
            .as_deref()
            .ok_or_else(|| Error::Invalid("committing needs a group_id".into()))?;
        let instance_id = self.config.group_instance_id.as_deref();
        let deadline = client.now() + client.config().request_timeout;
        let mut attempt = 0;
        loop {
            let generation = {
                let state = self.state();
                let group = &state.group;
                match (&state.mode, group.phase, &group.generation) {
                    (Mode::Subscribed(_), Phase::Stable, Some(generation)) => {
                        Some(generation.clone())
                    }
                    // Joining, or between join attempts of a generation not yet lost: the
                    // caller may commit again once poll completes the rebalance.
                    (Mode::Subscribed(_), Phase::Joining, _)
                    | (Mode::Subscribed(_), _, Some(_)) => {
                        return Err(Error::kafka(
                            KafkaCode::REBALANCE_IN_PROGRESS,
                            format!("OffsetCommit for group {group_id}"),
                            Some("the consumer is rebalancing; commit after the next poll".into()),
                        ));
                    }
                    (Mode::Subscribed(_), _, None) => {
                        return Err(commit_failed(group_id, "not in an active generation"));
                    }
                    _ => None,
                }
            };
            let committer = offsets::Committer {
                group_id,
                generation: generation.as_ref().map_or(-1, |g| g.id),
                member_id: generation.as_ref().map_or("", |g| g.member_id.as_str()),
                instance_id: generation.as_ref().and(instance_id),
            };
            let sent = async {
                let node = client.coordinator(group_id).await?;
                offsets::commit(client, node, &committer, offsets).await
            }
            .await;
            let retry_error = match sent {
                Ok(answers) => {
                    let Some((tp, code)) = answers
                        .iter()
                        .find_map(|(tp, code)| code.map(|code| (tp.clone(), code)))
                    else {
                        return Ok(());
                    };
                    let error = Error::kafka(
                        code,
                        format!("OffsetCommit for group {group_id}"),
                        Some(tp.to_string()),
                    );
                    match code {
                        code if code.is_coordinator_error() => {
                            client.forget_coordinator(group_id);
                            error
                        }
                        KafkaCode::REBALANCE_IN_PROGRESS => {
                            let mut state = self.state();
                            if state.group.generation == generation {
                                state.group.rejoin_needed = true;
                            }
                            drop(state);
                            self.wakeup.notify_one();
                            return Err(error);
                        }
                        KafkaCode::ILLEGAL_GENERATION | KafkaCode::UNKNOWN_MEMBER_ID => {
                            let mut state = self.state();
                            if generation.is_some() && state.group.generation == generation {
                                state
                                    .group
                                    .reset_generation(code == KafkaCode::UNKNOWN_MEMBER_ID);
                            }
                            drop(state);
                            self.wakeup.notify_one();
                            return Err(error);
                        }
                        KafkaCode::FENCED_INSTANCE_ID => {
                            let fatal = group::fenced(instance_id);
                            self.state().fatal = Some(fatal.clone());
                            self.wakeup.notify_one();
                            return Err(fatal);
                        }
                        code if code.is_retriable() => error,
                        _ => return Err(error),
                    }
                }
                Err(error) if error.is_retriable() => {
                    client.forget_coordinator(group_id);
                    error
                }
                Err(error) => return Err(error),
            };
            if client.now() >= deadline {
                return Err(retry_error);
            }
            tracing::debug!(error = %retry_error, "OffsetCommit will be retried");
            client.sleep(client.backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// One heartbeat round: or, if poll has not been called within the rebalance timeout,
    /// leave the group as Java does (the partitions go to members that are making progress).
    async fn heartbeat_once(&self) {
        let Some(group_id) = self.config.group_id.as_deref() else {
            return;
        };
        let client = &self.client;
        let instance_id = self.config.group_instance_id.as_deref();
        let (generation, poll_expired) = {
            let mut state = self.state();
            if state.closed || state.fatal.is_some() {
                return;
            }
            let Some(generation) = state.group.stable_generation().cloned() else {
                return;
            };
            let expired =
                client.now().saturating_sub(state.last_poll) > self.config.rebalance_timeout;
            if expired {
                state.group.reset_generation(true);
            }
            (generation, expired)
        };
        if poll_expired {
            tracing::warn!(
                group_id,
                "poll was not called within the rebalance timeout; leaving the group"
            );
            if instance_id.is_none()
                && let Err(error) = group::leave(client, group_id, &generation.member_id).await
            {
                tracing::debug!(%error, "LeaveGroup after the poll timeout");
            }
            self.wakeup.notify_one();
            return;
        }
        match group::heartbeat(client, group_id, instance_id, &generation).await {
            Ok(None) => {}
            Ok(Some(code)) => {
                let mut state = self.state();
                if state.group.generation.as_ref() != Some(&generation) {
                    return;
                }
                match code {
                    KafkaCode::REBALANCE_IN_PROGRESS => state.group.rejoin_needed = true,
                    KafkaCode::ILLEGAL_GENERATION => state.group.reset_generation(false),
                    KafkaCode::UNKNOWN_MEMBER_ID => state.group.reset_generation(true),
                    KafkaCode::FENCED_INSTANCE_ID => state.fatal = Some(group::fenced(instance_id)),
                    code if code.is_coordinator_error() => client.forget_coordinator(group_id),
                    code => tracing::debug!(%code, "heartbeat error"),
                }
                drop(state);
                self.wakeup.notify_one();
            }
            Err(error) => {
                tracing::debug!(%error, "heartbeat failed");
                if error.is_retriable() {
                    client.forget_coordinator(group_id);
                }
            }
        }
    }
}

fn commit_failed(group_id: &str, why: &str) -> Error {
    Error::kafka(
        KafkaCode::ILLEGAL_GENERATION,
        format!("OffsetCommit for group {group_id}"),
        Some(format!(
            "commit failed: {why}; the partitions may have been given to another member"
        )),
    )
}

async fn heartbeat_loop(inner: Weak<Inner>) {
    loop {
        let Some((client, interval)) = inner
            .upgrade()
            .map(|inner| (inner.client.clone(), inner.config.heartbeat_interval))
        else {
            return;
        };
        client.sleep(interval).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.heartbeat_once().await;
    }
}

async fn commit_worker(inner: Weak<Inner>, mut jobs: mpsc::UnboundedReceiver<CommitJob>) {
    while let Some(job) = jobs.recv().await {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let result = strong.commit_now(&job.offsets).await;
        drop(strong);
        match job.reply {
            Some(reply) => {
                let _ = reply.send(result);
            }
            None => {
                if let Err(error) = result {
                    tracing::warn!(%error, "auto-commit failed");
                }
            }
        }
    }
}

async fn fetch_task(
    inner: Weak<Inner>,
    client: Client,
    plan: fetcher::FetchPlan,
    wakeup: Arc<Notify>,
) {
    let fetched = match client
        .send::<FetchRequest>(plan.node, versions::FETCH, |version| {
            fetcher::request(&plan, version)
        })
        .await
    {
        Ok(response) => fetcher::parse(plan.node, response, &plan),
        Err(error) => {
            tracing::debug!(node = plan.node, %error, "fetch failed");
            fetcher::Fetched::failed()
        }
    };
    if fetched.stale_metadata {
        if let Err(error) = client.refresh_metadata().await {
            tracing::debug!(%error, "metadata refresh after a fetch error");
        }
        // Not straight back to a leader that just failed us.
        client.sleep(client.backoff(0)).await;
    }
    if let Some(inner) = inner.upgrade() {
        inner.state().fetch.complete(plan.node, fetched);
    }
    wakeup.notify_one();
}

async fn refresh_task(inner: Weak<Inner>, client: Client, wakeup: Arc<Notify>) {
    if let Err(error) = client.refresh_metadata().await {
        tracing::debug!(%error, "metadata refresh for leaderless partitions");
    }
    client.sleep(client.backoff(0)).await;
    if let Some(inner) = inner.upgrade() {
        inner.state().fetch.refreshing_metadata = false;
    }
    wakeup.notify_one();
}
