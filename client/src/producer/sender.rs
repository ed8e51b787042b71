//! The background task: drains ready batches into requests, keeps one ordered lane of
//! in-flight requests per node, asks for the producer id and refreshes metadata.
//!
//! Requests to a node are written in the order they were drained: a lane polls its requests
//! oldest first in one task, and every wait inside a send (the connection slot, the in-flight
//! permit, the write queue) is first come, first served. So an idempotent partition's batches
//! reach the broker in sequence order, and a plain producer's in send order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, ProducerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::mpsc;

use super::accumulator::{Accumulator, Batch, Limits, TopicInfo};
use super::delivery::Ack;
use super::{Acks, Shared};
use crate::client::Client;
use crate::error::{Error, KafkaCode, Result};
use crate::versions;

/// How often cached leaders are re-read from the client's metadata when nothing else prompts
/// it (the client's own refresher may have learned of a leader move).
const INFO_REFRESH: Duration = Duration::from_secs(1);
/// An idempotent producer's InitProducerId carries a transaction timeout the broker checks
/// even though there is no transaction; the Java client's default.
const TRANSACTION_TIMEOUT_MS: i32 = 60_000;

type Lane = mpsc::UnboundedSender<Vec<Batch>>;

/// A background chore that runs at most once at a time, with backoff after failures.
#[derive(Debug, Default)]
struct Chore {
    wanted: bool,
    running: bool,
    not_before: Duration,
    attempt: u32,
}

impl Chore {
    fn may_start(&self, now: Duration) -> bool {
        self.wanted && !self.running && now >= self.not_before
    }

    fn start(&mut self) {
        self.wanted = false;
        self.running = true;
    }

    fn succeeded(&mut self) {
        self.running = false;
        self.attempt = 0;
    }

    fn failed(&mut self, now: Duration, backoff: Duration) {
        self.running = false;
        self.wanted = true;
        self.not_before = now + backoff;
        self.attempt += 1;
    }

    /// When the sender must look again, if the chore waits out a backoff.
    fn due(&self) -> Option<Duration> {
        (self.wanted && !self.running).then_some(self.not_before)
    }
}

pub(crate) struct State {
    pub acc: Accumulator,
    lanes: BTreeMap<i32, Lane>,
    /// Requests handed to each node's lane and not yet answered.
    in_flight: BTreeMap<i32, usize>,
    /// Flushes under way: while any is, every batch is ready whatever its linger.
    pub flushing: usize,
    pub closing: bool,
    /// The sender has finished; nothing will be sent any more.
    pub stopped: bool,
    metadata: Chore,
    init: Chore,
    infos_at: Duration,
    /// Topics `try_send` wants metadata for.
    pub looking_up: BTreeSet<String>,
}

impl State {
    pub(crate) fn new(limits: Limits, idempotent: bool) -> State {
        State {
            acc: Accumulator::new(limits, idempotent),
            lanes: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            flushing: 0,
            closing: false,
            stopped: false,
            metadata: Chore::default(),
            init: Chore::default(),
            infos_at: Duration::ZERO,
            looking_up: BTreeSet::new(),
        }
    }

    pub(crate) fn wants_metadata(&mut self) {
        self.metadata.wanted = true;
    }

    fn lane(&mut self, shared: &Arc<Shared>, node: i32) -> &Lane {
        self.lanes.entry(node).or_insert_with(|| {
            let (lane, requests) = mpsc::unbounded_channel();
            tokio::spawn(run_lane(Arc::clone(shared), node, requests));
            lane
        })
    }
}

fn refresh_infos(client: &Client, state: &mut State, now: Duration) {
    state.acc.update_infos(|topic| {
        client
            .cached_topic(topic)
            .filter(|known| !known.partitions.is_empty())
            .map(|known| TopicInfo::from_metadata(&known))
    });
    state.infos_at = now;
}

/// The sender: runs until the producer is closed and everything buffered is settled.
pub(crate) async fn run(shared: Arc<Shared>) {
    let client = &shared.client;
    loop {
        let now = client.now();
        let (wake_at, settled, stopped) = {
            let mut guard = shared.lock();
            let state = &mut *guard;
            if now >= state.infos_at + INFO_REFRESH {
                refresh_infos(client, state, now);
            }
            if let Some(identity) = &state.acc.identity {
                state.init.wanted = identity.wants_init() && state.acc.has_queued();
            }
            if state.init.may_start(now) {
                state.init.start();
                tokio::spawn(init_producer_id(Arc::clone(&shared)));
            }
            let force = state.flushing > 0 || state.closing;
            let drained = state.acc.drain(now, force, &state.in_flight);
            for (node, batches) in drained.requests {
                *state.in_flight.entry(node).or_default() += 1;
                if let Err(refused) = state.lane(&shared, node).send(batches) {
                    // The lane's task is gone (it only ends when its sender is dropped, so
                    // this is a panic): fail rather than strand the batches.
                    let backoff = |attempt| client.backoff(attempt);
                    for batch in refused.0 {
                        state.acc.settle(batch, Err(Error::Closed), now, backoff);
                    }
                    state.lanes.remove(&node);
                    if let Some(count) = state.in_flight.get_mut(&node) {
                        *count = count.saturating_sub(1);
                    }
                }
            }
            if drained.leaderless {
                state.metadata.wanted = true;
            }
            if state.metadata.may_start(now) {
                state.metadata.start();
                tokio::spawn(refresh_metadata(Arc::clone(&shared)));
            }
            let stopped = state.closing && state.acc.is_empty();
            if stopped {
                state.stopped = true;
                state.lanes.clear();
            }
            let wake_at = [drained.wake_at, state.metadata.due(), state.init.due()]
                .into_iter()
                .flatten()
                .min()
                // Queued batches wait for leaders the client's own refresher may learn of.
                .or_else(|| state.acc.has_queued().then_some(now + INFO_REFRESH));
            (wake_at, drained.settled, stopped)
        };
        if settled || stopped {
            shared.progress.notify_waiters();
        }
        if stopped {
            tracing::debug!("producer sender stopped");
            return;
        }
        match wake_at {
            Some(at) => {
                let wait = at.saturating_sub(now).min(INFO_REFRESH);
                tokio::select! {
                    biased;
                    () = shared.wake.notified() => {}
                    () = client.sleep(wait) => {}
                }
            }
            // Nothing waits on time: the next record, answer or flush wakes the sender.
            None => shared.wake.notified().await,
        }
    }
}

/// Refreshes the metadata of every topic the producer writes to or `try_send` asked about,
/// then re-reads leaders.
async fn refresh_metadata(shared: Arc<Shared>) {
    let topics: BTreeSet<String> = {
        let state = shared.lock();
        let mut topics: BTreeSet<String> = state.acc.topic_names().into_iter().collect();
        topics.extend(state.looking_up.iter().cloned());
        topics
    };
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let result = shared.client.refresh_topics(&names).await;
    let now = shared.client.now();
    {
        let mut state = shared.lock();
        // A topic still unknown is forgotten: the next `try_send` to it asks again.
        for topic in std::mem::take(&mut state.looking_up) {
            if let Some(known) = shared.client.cached_topic(&topic)
                && !known.partitions.is_empty()
            {
                state.acc.set_info(&topic, TopicInfo::from_metadata(&known));
            }
        }
        match result {
            Ok(()) => {
                state.metadata.succeeded();
                // Not again before a backoff, or a partition without leader would spin.
                state.metadata.not_before = now + shared.client.config().retry_backoff;
                refresh_infos(&shared.client, &mut state, now);
            }
            Err(error) => {
                let backoff = shared.client.backoff(state.metadata.attempt);
                tracing::debug!(%error, ?backoff, "producer metadata refresh failed");
                state.metadata.failed(now, backoff);
            }
        }
    }
    shared.wake.notify_one();
}

/// InitProducerId: the first producer id, or a new epoch after a broken sequence (KIP-360:
/// the current id and epoch are presented where the broker speaks v3+; otherwise, or when the
/// epoch is exhausted, a fresh id is asked for).
async fn init_producer_id(shared: Arc<Shared>) {
    let previous = {
        let state = shared.lock();
        state
            .acc
            .identity
            .as_ref()
            .filter(|identity| identity.bump_wanted)
            .and_then(|identity| identity.current)
    };
    let result = shared
        .client
        .send_any(versions::INIT_PRODUCER_ID, |version| {
            let request = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(TRANSACTION_TIMEOUT_MS);
            match previous {
                Some((id, epoch)) if version >= 3 && epoch < i16::MAX => request
                    .with_producer_id(ProducerId(id))
                    .with_producer_epoch(epoch),
                _ => request
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            }
        })
        .await
        .and_then(|response| match KafkaCode::from_code(response.error_code) {
            None => Ok((response.producer_id.0, response.producer_epoch)),
            Some(code) => Err(Error::kafka(code, "InitProducerId", None)),
        });
    let now = shared.client.now();
    {
        let mut guard = shared.lock();
        let state = &mut *guard;
        let Some(identity) = &mut state.acc.identity else {
            return;
        };
        match result {
            Ok(generation) => {
                tracing::debug!(
                    producer_id = generation.0,
                    epoch = generation.1,
                    bumped_from = ?previous,
                    "producer id assigned"
                );
                identity.current = Some(generation);
                identity.bump_wanted = false;
                state.init.succeeded();
            }
            Err(error) if error.is_retriable() => {
                let backoff = shared.client.backoff(state.init.attempt);
                tracing::debug!(%error, ?backoff, "InitProducerId failed; retrying");
                state.init.failed(now, backoff);
            }
            Err(error) => {
                let fatal = Error::Fatal(format!("the producer cannot get a producer id: {error}"));
                identity.fatal = Some(fatal.clone());
                state.init.succeeded();
                state.acc.fail_queued(&fatal);
            }
        }
    }
    shared.wake.notify_one();
    shared.progress.notify_waiters();
}

type Request = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A node's lane: its requests in flight, polled oldest first in one task so they are written
/// in the order they were drained. Ends when the sender drops the lane and all are answered.
async fn run_lane(
    shared: Arc<Shared>,
    node: i32,
    mut incoming: mpsc::UnboundedReceiver<Vec<Batch>>,
) {
    let mut running: VecDeque<Request> = VecDeque::new();
    let mut open = true;
    std::future::poll_fn(|cx| {
        while open {
            match incoming.poll_recv(cx) {
                Poll::Ready(Some(batches)) => {
                    running.push_back(Box::pin(produce(Arc::clone(&shared), node, batches)));
                }
                Poll::Ready(None) => open = false,
                Poll::Pending => break,
            }
        }
        running.retain_mut(|request| request.as_mut().poll(cx).is_pending());
        if open || !running.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
}

/// Sends one ProduceRequest and settles its batches with the answer.
async fn produce(shared: Arc<Shared>, node: i32, batches: Vec<Batch>) {
    let client = &shared.client;
    let mut sent = Vec::with_capacity(batches.len());
    let mut unbuildable = Vec::new();
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for mut batch in batches {
        match batch.encode() {
            Ok(records) => {
                // Drained topic by topic, so a topic's batches are adjacent.
                if topics
                    .last()
                    .is_none_or(|topic| topic.name.0.as_str() != &*batch.topic)
                {
                    topics.push(
                        TopicProduceData::default()
                            .with_name(TopicName(StrBytes::from_string(batch.topic.to_string()))),
                    );
                }
                if let Some(topic) = topics.last_mut() {
                    topic.partition_data.push(
                        PartitionProduceData::default()
                            .with_index(batch.partition)
                            .with_records(Some(records)),
                    );
                }
                sent.push(batch);
            }
            Err(error) => {
                let error = Error::Invalid(format!(
                    "cannot encode a batch for {}-{}: {error}",
                    batch.topic, batch.partition
                ));
                unbuildable.push((batch, error));
            }
        }
    }
    let result = if sent.is_empty() {
        Ok(None)
    } else {
        send(&shared, node, topics).await
    };
    let now = client.now();
    let backoff = |attempt| client.backoff(attempt);
    let mut refresh = false;
    {
        let mut guard = shared.lock();
        let state = &mut *guard;
        for (batch, error) in unbuildable {
            state.acc.settle(batch, Err(error), now, backoff);
        }
        match result {
            Ok(None) => {
                for batch in sent {
                    state.acc.settle(batch, Ok(Ack::UNKNOWN), now, backoff);
                }
            }
            Ok(Some(answers)) => {
                for batch in sent {
                    let answer = answers.get(&(Arc::clone(&batch.topic), batch.partition));
                    let result = read_answer(node, &batch, answer);
                    refresh |= state
                        .acc
                        .settle(batch, result, now, backoff)
                        .refresh_metadata;
                }
            }
            Err(error) => {
                for batch in sent {
                    refresh |= state
                        .acc
                        .settle(batch, Err(error.clone()), now, backoff)
                        .refresh_metadata;
                }
            }
        }
        if let Some(count) = state.in_flight.get_mut(&node) {
            *count = count.saturating_sub(1);
        }
        state.metadata.wanted |= refresh;
    }
    shared.wake.notify_one();
    shared.progress.notify_waiters();
}

type Answers = BTreeMap<(Arc<str>, i32), PartitionProduceResponse>;

/// Writes the request; `None` for acks=0, which has no answer.
async fn send(
    shared: &Shared,
    node: i32,
    topics: Vec<TopicProduceData>,
) -> Result<Option<Answers>> {
    let client = &shared.client;
    let timeout_ms = i32::try_from(client.config().request_timeout.as_millis()).unwrap_or(i32::MAX);
    let request = ProduceRequest::default()
        .with_acks(shared.config.acks.code())
        .with_timeout_ms(timeout_ms)
        .with_topic_data(topics);
    let result = if shared.config.acks == Acks::None {
        client
            .send_only(node, versions::PRODUCE, |_| request)
            .await
            .map(|()| None)
    } else {
        client
            .send(node, versions::PRODUCE, |_| request)
            .await
            .map(|response| {
                let mut answers = Answers::new();
                for topic in response.responses {
                    let name: Arc<str> = Arc::from(topic.name.0.as_str());
                    for partition in topic.partition_responses {
                        answers.insert((Arc::clone(&name), partition.index), partition);
                    }
                }
                Some(answers)
            })
    };
    result.map_err(|error| match error {
        // Our leader is a node the client no longer knows (it left the metadata): nothing was
        // sent, and fresh metadata will name another.
        Error::Invalid(reason) => Error::Connect {
            addr: format!("node {node}"),
            reason,
        },
        other => other,
    })
}

fn read_answer(node: i32, batch: &Batch, answer: Option<&PartitionProduceResponse>) -> Result<Ack> {
    let Some(answer) = answer else {
        return Err(Error::Protocol {
            addr: format!("node {node}"),
            reason: format!(
                "the Produce answer has no entry for {}-{}",
                batch.topic, batch.partition
            ),
        });
    };
    match KafkaCode::from_code(answer.error_code) {
        None => Ok(Ack {
            base_offset: answer.base_offset,
            log_append_time: answer.log_append_time_ms,
        }),
        Some(code) => Err(Error::kafka(
            code,
            format!("Produce to {}-{}", batch.topic, batch.partition),
            answer.error_message.as_ref().map(|m| m.to_string()),
        )),
    }
}
