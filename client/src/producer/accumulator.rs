//! The record accumulator: per-partition queues of batches, the bound on buffered bytes, the
//! sticky choice for keyless records, and draining ready batches into per-node requests.
//!
//! It does no I/O and reads no clock (time is passed in), so its rules are unit-tested here and
//! the sender only has to run it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tidepool_io::Entropy;
use tidepool_protocol::batch::{self, HEADER_BYTES};
use tidepool_protocol::records::{BatchBuilder, BuildError, Header};

use super::ProducerRecord;
use super::delivery::{Ack, DeliveryFuture, Outcome};
use super::idempotence::{self, Admission, Identity, PartitionSequence, Sequence, SequenceVerdict};
use crate::client::TopicMetadata;
use crate::error::{Error, KafkaCode, Result};
use crate::partitioner::Partitioner;
use tidepool_protocol::compression::Compression;

/// Where the producer id, epoch and base sequence sit in a v2 batch header, back to back (see
/// `tidepool_protocol::batch`), and the CRC that covers them.
const PRODUCER_FIELDS_AT: usize = 43;
const PRODUCER_FIELDS_BYTES: usize = 14;
const CRC_AT: usize = 17;
/// Written to the leader but to fewer in-sync replicas than required.
const NOT_ENOUGH_REPLICAS_AFTER_APPEND: KafkaCode = KafkaCode(20);

/// The accumulator's bounds and timings, from the producer's config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub linger: Duration,
    pub batch_bytes: usize,
    pub max_request_bytes: usize,
    pub buffer_bytes: usize,
    pub compression: Compression,
    pub delivery_timeout: Duration,
    /// Requests in flight per node.
    pub max_in_flight: usize,
}

/// An upper bound of a record's size inside a batch: the fields plus their varints at full
/// width. Buffer accounting and batch closing use it, so neither depends on the codec.
pub(crate) fn record_bytes(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header]) -> usize {
    // length 5, attributes 1, timestamp delta 10, offset delta 5, key and value lengths 5 each,
    // header count 5.
    const RECORD_OVERHEAD: usize = 36;
    const HEADER_OVERHEAD: usize = 10;
    RECORD_OVERHEAD
        + key.map_or(0, <[u8]>::len)
        + value.map_or(0, <[u8]>::len)
        + headers
            .iter()
            .map(|h| HEADER_OVERHEAD + h.key.len() + h.value.as_ref().map_or(0, Bytes::len))
            .sum::<usize>()
}

/// What the producer needs of a topic's metadata, cached so a record costs no metadata copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicInfo {
    /// Leader node by partition, -1 where there is none.
    pub leaders: Vec<i32>,
    /// Partitions that have a leader.
    pub available: Vec<i32>,
}

impl TopicInfo {
    pub(crate) fn new(leaders: Vec<i32>) -> TopicInfo {
        let available = (0..leaders.len())
            .filter(|&p| leaders[p] >= 0)
            .filter_map(|p| i32::try_from(p).ok())
            .collect();
        TopicInfo { leaders, available }
    }

    pub(crate) fn from_metadata(topic: &TopicMetadata) -> TopicInfo {
        let count = topic
            .partitions
            .iter()
            .map(|p| usize::try_from(p.partition).map_or(0, |p| p + 1))
            .max()
            .unwrap_or(0);
        let mut leaders = vec![-1; count];
        for partition in &topic.partitions {
            if let Ok(index) = usize::try_from(partition.partition) {
                leaders[index] = partition.leader;
            }
        }
        TopicInfo::new(leaders)
    }

    fn partitions(&self) -> i32 {
        i32::try_from(self.leaders.len()).unwrap_or(i32::MAX)
    }

    fn leader(&self, partition: i32) -> i32 {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.leaders.get(p).copied())
            .unwrap_or(-1)
    }
}

/// Records bound for one partition, sent and retried together.
pub(crate) struct Batch {
    /// Creation order across the producer; also the order of a partition's batches.
    pub id: u64,
    pub topic: Arc<str>,
    pub partition: i32,
    /// The records, until the batch is first encoded.
    pub records: BatchBuilder,
    pub count: usize,
    /// The estimate counted against the buffer.
    pub bytes: usize,
    pub created: Duration,
    /// Still taking records (only ever the last batch of a partition).
    pub open: bool,
    pub outcome: Arc<Outcome>,
    pub attempts: u32,
    pub retry_at: Duration,
    pub sequence: Option<Sequence>,
    /// An attempt ended without an answer, so the broker may hold the records.
    pub maybe_written: bool,
    pub last_error: Option<Error>,
    encoded: Option<Bytes>,
}

impl Batch {
    /// The batch as sent: encoded (and compressed) once, then only its producer fields are
    /// rewritten if it is renumbered, as the Java client does.
    pub(crate) fn encode(&mut self) -> std::result::Result<Bytes, BuildError> {
        let (producer_id, epoch, base) = self
            .sequence
            .map_or((-1, -1, -1), |s| (s.producer_id, s.epoch, s.base));
        let mut fields = [0u8; PRODUCER_FIELDS_BYTES];
        fields[..8].copy_from_slice(&producer_id.to_be_bytes());
        fields[8..10].copy_from_slice(&epoch.to_be_bytes());
        fields[10..].copy_from_slice(&base.to_be_bytes());
        if let Some(encoded) = &self.encoded {
            let at = PRODUCER_FIELDS_AT..PRODUCER_FIELDS_AT + PRODUCER_FIELDS_BYTES;
            if encoded[at.clone()] == fields {
                return Ok(encoded.clone());
            }
            let mut patched = encoded.to_vec();
            patched[at].copy_from_slice(&fields);
            let crc = batch::compute_crc(&patched);
            patched[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
            let patched = Bytes::from(patched);
            self.encoded = Some(patched.clone());
            return Ok(patched);
        }
        self.records.producer(producer_id, epoch, base);
        let encoded = self.records.build()?;
        // The keys and values now live in the encoded bytes; let the originals go.
        self.records = BatchBuilder::new();
        self.encoded = Some(encoded.clone());
        Ok(encoded)
    }

    fn due(&self, linger: Duration, force: bool) -> Duration {
        if self.attempts > 0 {
            self.retry_at
        } else if !self.open || force {
            self.created
        } else {
            self.created + linger
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} records for {}-{}",
            self.count, self.topic, self.partition
        )
    }
}

/// A partition's batches, oldest first (retries go back to their place by id).
#[derive(Default)]
pub(crate) struct PartitionQueue {
    pub batches: VecDeque<Batch>,
    /// Ids of this partition's batches awaiting an answer.
    pub in_flight: BTreeSet<u64>,
    pub sequence: PartitionSequence,
}

#[derive(Default)]
struct TopicQueue {
    info: Option<TopicInfo>,
    partitions: Vec<PartitionQueue>,
    /// The partition keyless records go to, while the batch with this id takes records.
    sticky: Option<(i32, u64)>,
}

/// Why a record was not taken.
#[derive(Debug)]
pub(crate) enum Refused {
    /// No metadata for the topic yet.
    UnknownTopic,
    BufferFull,
    Invalid(String),
}

pub(crate) struct Appended {
    pub delivery: DeliveryFuture,
    /// A batch was started or closed: the sender has a new deadline or a ready batch.
    pub wake: bool,
}

/// One drain's result.
#[derive(Default)]
pub(crate) struct Drained {
    /// Per node, requests to send in this order; each holds at most one batch per partition.
    pub requests: Vec<(i32, Vec<Batch>)>,
    /// The earliest time something not ready now will be (a linger, a backoff, an expiry).
    pub wake_at: Option<Duration>,
    /// A ready batch has no leader: metadata should be refreshed.
    pub leaderless: bool,
    /// Batches were settled (expired or failed): buffer space was freed.
    pub settled: bool,
}

/// What an answer asks of the sender.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Settled {
    pub refresh_metadata: bool,
}

pub(crate) struct Accumulator {
    limits: Limits,
    topics: BTreeMap<Arc<str>, TopicQueue>,
    /// `Some` for an idempotent producer.
    pub identity: Option<Identity>,
    buffered: usize,
    next_id: u64,
    /// Batches created and not yet settled, queued or in flight.
    incomplete: BTreeSet<u64>,
    rotation: usize,
}

impl Accumulator {
    pub(crate) fn new(limits: Limits, idempotent: bool) -> Accumulator {
        Accumulator {
            limits,
            topics: BTreeMap::new(),
            identity: idempotent.then(Identity::default),
            buffered: 0,
            next_id: 0,
            incomplete: BTreeSet::new(),
            rotation: 0,
        }
    }

    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.buffered
    }

    pub(crate) fn has_info(&self, topic: &str) -> bool {
        self.topics.get(topic).is_some_and(|t| t.info.is_some())
    }

    pub(crate) fn set_info(&mut self, topic: &str, info: TopicInfo) {
        match self.topics.get_mut(topic) {
            Some(known) => known.info = Some(info),
            None => {
                self.topics.insert(
                    Arc::from(topic),
                    TopicQueue {
                        info: Some(info),
                        ..TopicQueue::default()
                    },
                );
            }
        }
    }

    pub(crate) fn topic_names(&self) -> Vec<String> {
        self.topics.keys().map(|name| name.to_string()).collect()
    }

    /// Replaces each topic's cached metadata with `lookup`'s, where it has one.
    pub(crate) fn update_infos(&mut self, mut lookup: impl FnMut(&str) -> Option<TopicInfo>) {
        for (name, topic) in &mut self.topics {
            if let Some(info) = lookup(name) {
                topic.info = Some(info);
            }
        }
    }

    /// The id the next batch will get: every batch below it holds records sent before now.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Whether every batch created before `id` is settled.
    pub(crate) fn settled_before(&self, id: u64) -> bool {
        self.incomplete.first().is_none_or(|&first| first >= id)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.incomplete.is_empty()
    }

    pub(crate) fn has_queued(&self) -> bool {
        self.topics
            .values()
            .any(|t| t.partitions.iter().any(|q| !q.batches.is_empty()))
    }

    /// Adds a record to its partition's open batch, starting a batch if needed.
    pub(crate) fn append(
        &mut self,
        record: ProducerRecord,
        timestamp: i64,
        // Read only when a batch starts: a clock read per record is measurable.
        now: &dyn Fn() -> Duration,
        partitioner: &dyn Partitioner,
        entropy: &dyn Entropy,
    ) -> std::result::Result<Appended, (Refused, Box<ProducerRecord>)> {
        let limits = self.limits;
        let size = record_bytes(
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
        );
        let Some((name, topic)) = self.topics.get_key_value(record.topic.as_str()) else {
            return Err((Refused::UnknownTopic, Box::new(record)));
        };
        let name = Arc::clone(name);
        let Some(info) = &topic.info else {
            return Err((Refused::UnknownTopic, Box::new(record)));
        };
        // Counting a batch header whether or not the record starts a batch keeps the bound
        // simple and never exceeded.
        if self.buffered + size + HEADER_BYTES > limits.buffer_bytes {
            return Err((Refused::BufferFull, Box::new(record)));
        }
        let partitions = info.partitions();
        if partitions == 0 {
            return Err((Refused::UnknownTopic, Box::new(record)));
        }
        let (partition, sticky) = match (record.partition, record.key.as_deref()) {
            (Some(partition), _) => (partition, false),
            (None, Some(key)) => (
                partitioner.partition(&record.topic, Some(key), partitions, &info.available),
                false,
            ),
            (None, None) => match sticky_partition(topic, size, limits.batch_bytes) {
                Some(partition) => (partition, false),
                None => (choose_partition(topic, info, entropy), true),
            },
        };
        if !(0..partitions).contains(&partition) {
            return Err((
                Refused::Invalid(format!(
                    "partition {partition} of {} (it has {partitions})",
                    record.topic
                )),
                Box::new(record),
            ));
        }
        let Some(topic) = self.topics.get_mut(record.topic.as_str()) else {
            return Err((Refused::UnknownTopic, Box::new(record)));
        };
        if sticky
            && let Some((previous, id)) = topic.sticky
            && let Some(batch) = topic
                .partitions
                .get_mut(previous as usize)
                .and_then(|q| q.batches.back_mut())
            && batch.id == id
            && batch.open
        {
            // The record moved on because it did not fit: the batch is as full as it gets.
            batch.open = false;
        }
        let index = partition as usize;
        if topic.partitions.len() <= index {
            topic
                .partitions
                .resize_with(index + 1, PartitionQueue::default);
        }
        let queue = &mut topic.partitions[index];
        let mut wake = false;
        let fits = queue.batches.back().is_some_and(|batch| {
            batch.open && (batch.count == 0 || batch.bytes + size <= limits.batch_bytes)
        });
        if !fits {
            if let Some(back) = queue.batches.back_mut()
                && back.open
            {
                back.open = false;
            }
            let id = self.next_id;
            self.next_id += 1;
            self.incomplete.insert(id);
            let mut records = BatchBuilder::new();
            records.compression(limits.compression);
            let now = now();
            queue.batches.push_back(Batch {
                id,
                topic: Arc::clone(&name),
                partition,
                records,
                count: 0,
                bytes: HEADER_BYTES,
                created: now,
                open: true,
                outcome: Outcome::new(name, partition),
                attempts: 0,
                retry_at: now,
                sequence: None,
                maybe_written: false,
                last_error: None,
                encoded: None,
            });
            self.buffered += HEADER_BYTES;
            wake = true;
        }
        let Some(batch) = queue.batches.back_mut() else {
            return Err((Refused::UnknownTopic, Box::new(record)));
        };
        let delivery = DeliveryFuture::new(Arc::clone(&batch.outcome), batch.count, timestamp);
        batch
            .records
            .append(timestamp, record.key, record.value, record.headers);
        batch.count += 1;
        batch.bytes += size;
        self.buffered += size;
        if batch.bytes >= limits.batch_bytes {
            batch.open = false;
            wake = true;
        }
        if sticky {
            topic.sticky = Some((partition, batch.id));
        }
        Ok(Appended { delivery, wake })
    }

    /// Takes the batches that are ready and whose leader can take another request, grouped
    /// into requests per node; expires batches past the delivery timeout.
    pub(crate) fn drain(
        &mut self,
        now: Duration,
        force: bool,
        in_flight: &BTreeMap<i32, usize>,
    ) -> Drained {
        let limits = self.limits;
        let mut drained = Drained::default();
        let mut plans: BTreeMap<i32, NodePlan> = BTreeMap::new();
        let mut failed: Vec<(Batch, Error)> = Vec::new();
        let topics = self.topics.len().max(1);
        let start = self.rotation % topics;
        self.rotation = self.rotation.wrapping_add(1);
        let rotation = self.rotation;
        // Two passes starting at a rotating topic, so no topic always goes last when requests
        // fill up.
        for pass in 0..2 {
            for (position, (_, topic)) in self.topics.iter_mut().enumerate() {
                if (pass == 0) != (position >= start) {
                    continue;
                }
                let Some(info) = &topic.info else {
                    continue;
                };
                let count = topic.partitions.len();
                for step in 0..count {
                    let index = (rotation + step) % count;
                    let leader = info.leader(index as i32);
                    drain_partition(
                        &limits,
                        self.identity.as_ref(),
                        &mut topic.partitions[index],
                        leader,
                        now,
                        force,
                        in_flight,
                        &mut plans,
                        &mut drained,
                        &mut failed,
                    );
                }
            }
        }
        drained.settled = !failed.is_empty();
        for (batch, error) in failed {
            self.fail(batch, error);
        }
        for (node, plan) in plans {
            for request in plan.requests {
                drained.requests.push((node, request.batches));
            }
        }
        drained
    }

    /// Takes a batch's answer: settles it, or queues it again for a retry.
    pub(crate) fn settle(
        &mut self,
        mut batch: Batch,
        result: Result<Ack>,
        now: Duration,
        backoff: impl Fn(u32) -> Duration,
    ) -> Settled {
        let Accumulator {
            topics, identity, ..
        } = self;
        let Some(queue) = topics
            .get_mut(&*batch.topic)
            .and_then(|topic| topic.partitions.get_mut(batch.partition as usize))
        else {
            self.finish(batch, result);
            return Settled::default();
        };
        queue.in_flight.remove(&batch.id);
        let error = match result {
            Ok(ack) => {
                if let Some(sequence) = batch.sequence {
                    queue.sequence.acknowledge(sequence.generation());
                }
                self.finish(batch, Ok(ack));
                return Settled::default();
            }
            Err(error) => error,
        };
        let sequenced = batch.sequence.is_some();
        let mut settled = Settled::default();
        let verdict = match &error {
            Error::Kafka { code, .. }
                if sequenced && *code == KafkaCode::DUPLICATE_SEQUENCE_NUMBER =>
            {
                if let Some(sequence) = batch.sequence {
                    queue.sequence.acknowledge(sequence.generation());
                }
                Verdict::Done(Ack::UNKNOWN)
            }
            Error::Kafka { code, message, .. }
                if sequenced && idempotence::is_sequence_error(*code) =>
            {
                let identity = identity.get_or_insert_with(Identity::default);
                let old_generation = identity.current != batch.sequence.map(|s| s.generation());
                if old_generation {
                    queue.sequence.stale = true;
                }
                match idempotence::judge_sequence_error(identity, queue, &batch, *code) {
                    SequenceVerdict::Retry => Verdict::Retry {
                        maybe_written: false,
                    },
                    SequenceVerdict::Fatal => {
                        tracing::debug!(
                            topic = %batch.topic,
                            partition = batch.partition,
                            %code,
                            "sequence broke; bumping the producer epoch"
                        );
                        Verdict::Fail(Error::kafka(
                            *code,
                            format!(
                                "Produce of {}: the partition's sequence broke, so the \
                                 producer takes a new epoch and renumbers later batches",
                                batch.describe()
                            ),
                            message.clone(),
                        ))
                    }
                }
            }
            Error::Kafka { code, .. }
                if *code == KafkaCode::REQUEST_TIMED_OUT
                    || *code == NOT_ENOUGH_REPLICAS_AFTER_APPEND =>
            {
                // The leader may have written the records before answering this.
                if sequenced {
                    Verdict::Retry {
                        maybe_written: true,
                    }
                } else {
                    Verdict::Fail(Error::UnknownOutcome(format!(
                        "{}: {error}",
                        batch.describe()
                    )))
                }
            }
            Error::Kafka { code, .. } if code.is_retriable() => {
                settled.refresh_metadata = code.invalidates_metadata();
                Verdict::Retry {
                    maybe_written: false,
                }
            }
            Error::Connect { .. } => {
                settled.refresh_metadata = true;
                Verdict::Retry {
                    maybe_written: false,
                }
            }
            Error::Timeout { .. } | Error::Disconnected { .. } | Error::Protocol { .. } => {
                settled.refresh_metadata = true;
                if sequenced {
                    Verdict::Retry {
                        maybe_written: true,
                    }
                } else {
                    Verdict::Fail(Error::UnknownOutcome(format!(
                        "{}: {error}",
                        batch.describe()
                    )))
                }
            }
            _ => Verdict::Fail(error.clone()),
        };
        match verdict {
            Verdict::Done(ack) => self.finish(batch, Ok(ack)),
            Verdict::Fail(error) => self.fail(batch, error),
            Verdict::Retry { maybe_written } => {
                batch.maybe_written |= maybe_written;
                if now >= batch.created + self.limits.delivery_timeout {
                    batch.last_error = Some(error);
                    let error = expiry_error(&batch, &self.limits);
                    self.fail(batch, error);
                } else {
                    tracing::debug!(
                        topic = %batch.topic,
                        partition = batch.partition,
                        attempt = batch.attempts + 1,
                        %error,
                        "retrying a batch"
                    );
                    batch.retry_at = now + backoff(batch.attempts);
                    batch.attempts += 1;
                    batch.last_error = Some(error);
                    self.requeue(batch);
                }
            }
        }
        settled
    }

    /// Puts a batch back in its partition's queue at its place by creation order.
    fn requeue(&mut self, batch: Batch) {
        let Some(queue) = self
            .topics
            .get_mut(&*batch.topic)
            .and_then(|topic| topic.partitions.get_mut(batch.partition as usize))
        else {
            self.finish(batch, Err(Error::Closed));
            return;
        };
        let at = queue.batches.partition_point(|queued| queued.id < batch.id);
        queue.batches.insert(at, batch);
    }

    /// Fails a batch. A sequenced batch leaves a gap in its partition's sequence that the
    /// broker will not skip, so the partition is renumbered under a new epoch.
    fn fail(&mut self, batch: Batch, error: Error) {
        if batch.sequence.is_some()
            && let Some(queue) = self
                .topics
                .get_mut(&*batch.topic)
                .and_then(|topic| topic.partitions.get_mut(batch.partition as usize))
        {
            queue.sequence.stale = true;
            if let Some(identity) = &mut self.identity {
                identity.bump_wanted = true;
            }
        }
        self.finish(batch, Err(error));
    }

    /// Settles a batch's futures and frees its buffer space.
    fn finish(&mut self, batch: Batch, result: Result<Ack>) {
        self.buffered = self.buffered.saturating_sub(batch.bytes);
        self.incomplete.remove(&batch.id);
        batch.outcome.settle(result);
    }

    /// Fails every queued batch (the producer cannot go on).
    pub(crate) fn fail_queued(&mut self, error: &Error) {
        let mut failed = Vec::new();
        for topic in self.topics.values_mut() {
            for queue in &mut topic.partitions {
                failed.extend(queue.batches.drain(..));
            }
        }
        for batch in failed {
            self.finish(batch, Err(error.clone()));
        }
    }
}

/// The sticky partition, while the batch it was chosen for takes records and has room.
fn sticky_partition(topic: &TopicQueue, size: usize, batch_bytes: usize) -> Option<i32> {
    let (partition, id) = topic.sticky?;
    let batch = topic.partitions.get(partition as usize)?.batches.back()?;
    (batch.id == id && batch.open && batch.bytes + size <= batch_bytes).then_some(partition)
}

/// A new sticky partition: a random one with a leader (any, if none has), not the previous one
/// when there is a choice, so keyless records spread over the partitions batch by batch.
fn choose_partition(topic: &TopicQueue, info: &TopicInfo, entropy: &dyn Entropy) -> i32 {
    let all = info.partitions();
    let pool = if info.available.is_empty() {
        usize::try_from(all).unwrap_or(0)
    } else {
        info.available.len()
    };
    let candidate = |index: usize| {
        if info.available.is_empty() {
            i32::try_from(index).unwrap_or(0)
        } else {
            info.available[index]
        }
    };
    let excluded = topic
        .sticky
        .map(|(previous, _)| previous)
        .filter(|&previous| pool > 1 && (0..pool).any(|i| candidate(i) == previous));
    let choices = pool - usize::from(excluded.is_some());
    let mut pick = usize::try_from(entropy.next_u64() % choices.max(1) as u64).unwrap_or(0);
    for index in 0..pool {
        let partition = candidate(index);
        if Some(partition) == excluded {
            continue;
        }
        if pick == 0 {
            return partition;
        }
        pick -= 1;
    }
    0
}

enum Verdict {
    Done(Ack),
    Retry { maybe_written: bool },
    Fail(Error),
}

/// The error of a batch that ran out of delivery time.
fn expiry_error(batch: &Batch, limits: &Limits) -> Error {
    if batch.maybe_written {
        return Error::UnknownOutcome(format!(
            "{}: no confirmation within the delivery timeout ({:?}) after an attempt without \
             an answer",
            batch.describe(),
            limits.delivery_timeout
        ));
    }
    let why = match &batch.last_error {
        Some(error) => format!("last error: {error}"),
        None => "never sent: no leader, or no room to send".to_string(),
    };
    Error::Timeout {
        context: format!("delivering {} ({why})", batch.describe()),
        after: limits.delivery_timeout,
    }
}

/// The requests being filled for one node.
struct NodePlan {
    slots: usize,
    requests: Vec<Building>,
}

#[derive(Default)]
struct Building {
    batches: Vec<Batch>,
    bytes: usize,
}

#[allow(
    clippy::too_many_arguments,
    reason = "the drain's working state, split for reading"
)]
fn drain_partition(
    limits: &Limits,
    identity: Option<&Identity>,
    queue: &mut PartitionQueue,
    leader: i32,
    now: Duration,
    force: bool,
    in_flight: &BTreeMap<i32, usize>,
    plans: &mut BTreeMap<i32, NodePlan>,
    drained: &mut Drained,
    failed: &mut Vec<(Batch, Error)>,
) {
    // A partition gives at most one batch to each request, so its next batch goes to a later
    // request than its previous one.
    let mut next_request = 0;
    while let Some(front) = queue.batches.front() {
        let expires = front.created + limits.delivery_timeout;
        if now >= expires {
            if let Some(batch) = queue.batches.pop_front() {
                let error = expiry_error(&batch, limits);
                failed.push((batch, error));
            }
            continue;
        }
        let due = front.due(limits.linger, force);
        if due > now {
            drained.wake_at = Some(drained.wake_at.map_or(due, |at| at.min(due)));
            return;
        }
        drained.wake_at = Some(drained.wake_at.map_or(expires, |at| at.min(expires)));
        if leader < 0 {
            drained.leaderless = true;
            return;
        }
        let size = front.bytes;
        let plan = plans.entry(leader).or_insert_with(|| NodePlan {
            slots: limits
                .max_in_flight
                .saturating_sub(in_flight.get(&leader).copied().unwrap_or(0)),
            requests: Vec::new(),
        });
        let target = (next_request..plan.requests.len())
            .find(|&i| plan.requests[i].bytes + size <= limits.max_request_bytes);
        let target = match target {
            Some(target) => target,
            None if plan.requests.len() < plan.slots => plan.requests.len(),
            None => return,
        };
        if let Some(identity) = identity {
            match idempotence::admit(identity, queue, failed) {
                Admission::Send => {}
                Admission::Wait => return,
                Admission::Changed => continue,
            }
        }
        if target == plan.requests.len() {
            plan.requests.push(Building::default());
        }
        let Some(mut batch) = queue.batches.pop_front() else {
            return;
        };
        batch.open = false;
        queue.in_flight.insert(batch.id);
        let request = &mut plan.requests[target];
        request.bytes += batch.bytes;
        request.batches.push(batch);
        next_request = target + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partitioner::DefaultPartitioner;
    use tidepool_io::SeededEntropy;

    const MS: Duration = Duration::from_millis(1);

    fn limits() -> Limits {
        Limits {
            linger: 5 * MS,
            batch_bytes: 1024,
            max_request_bytes: 4096,
            buffer_bytes: 16 * 1024,
            compression: Compression::None,
            delivery_timeout: 1000 * MS,
            max_in_flight: 5,
        }
    }

    fn accumulator(limits: Limits, partitions: usize) -> Accumulator {
        let mut accumulator = Accumulator::new(limits, false);
        accumulator.set_info("t", TopicInfo::new(vec![1; partitions]));
        accumulator
    }

    fn record(value_bytes: usize) -> ProducerRecord {
        ProducerRecord::new("t", vec![b'v'; value_bytes])
    }

    fn append(accumulator: &mut Accumulator, record: ProducerRecord, now: Duration) -> Appended {
        let entropy = SeededEntropy::new(7);
        accumulator
            .append(record, 0, &|| now, &DefaultPartitioner, &entropy)
            .map_err(|(refused, _)| refused)
            .expect("appended")
    }

    fn drained_partitions(drained: &Drained) -> Vec<Vec<i32>> {
        drained
            .requests
            .iter()
            .map(|(_, batches)| batches.iter().map(|b| b.partition).collect())
            .collect()
    }

    #[test]
    fn a_batch_is_held_for_the_linger_then_drained() {
        let mut accumulator = accumulator(limits(), 1);
        let first = append(&mut accumulator, record(10).partition(0), Duration::ZERO);
        assert!(first.wake, "a new batch gives the sender a deadline");
        let second = append(&mut accumulator, record(10).partition(0), MS);
        assert!(
            !second.wake,
            "a record joining an open batch changes nothing"
        );

        let early = accumulator.drain(4 * MS, false, &BTreeMap::new());
        assert!(early.requests.is_empty());
        assert_eq!(early.wake_at, Some(5 * MS));

        let due = accumulator.drain(5 * MS, false, &BTreeMap::new());
        assert_eq!(drained_partitions(&due), vec![vec![0]]);
        assert_eq!(due.requests[0].1[0].count, 2);
    }

    #[test]
    fn a_full_batch_is_ready_at_once_and_the_next_record_starts_another() {
        let mut accumulator = accumulator(limits(), 1);
        for _ in 0..3 {
            append(&mut accumulator, record(400).partition(0), Duration::ZERO);
        }
        let drained = accumulator.drain(Duration::ZERO, false, &BTreeMap::new());
        // 2 records fill a 1 KiB batch; the third waits for its linger in a batch of its own,
        // and one partition gives one batch per request.
        assert_eq!(drained_partitions(&drained), vec![vec![0]]);
        assert_eq!(drained.requests[0].1[0].count, 2);
        assert_eq!(drained.wake_at, Some(5 * MS));
    }

    #[test]
    fn a_flush_makes_every_batch_ready_regardless_of_linger() {
        let mut accumulator = accumulator(limits(), 2);
        append(&mut accumulator, record(10).partition(0), Duration::ZERO);
        append(&mut accumulator, record(10).partition(1), Duration::ZERO);
        let drained = accumulator.drain(Duration::ZERO, true, &BTreeMap::new());
        assert_eq!(
            drained.requests.len(),
            1,
            "both partitions share one request"
        );
        assert_eq!(drained.requests[0].1.len(), 2);
    }

    #[test]
    fn several_full_batches_of_one_partition_go_in_separate_requests() {
        let mut accumulator = accumulator(limits(), 1);
        for _ in 0..6 {
            append(&mut accumulator, record(400).partition(0), Duration::ZERO);
        }
        let drained = accumulator.drain(Duration::ZERO, true, &BTreeMap::new());
        assert_eq!(
            drained_partitions(&drained),
            vec![vec![0], vec![0], vec![0]]
        );
    }

    #[test]
    fn requests_stay_under_max_request_bytes_and_in_flight_slots() {
        let mut accumulator = accumulator(limits(), 8);
        for partition in 0..8 {
            append(
                &mut accumulator,
                record(1000).partition(partition),
                Duration::ZERO,
            );
        }
        let in_flight = BTreeMap::from([(1, 3)]);
        let drained = accumulator.drain(Duration::ZERO, true, &in_flight);
        // 1097 bytes per batch, 4 KiB per request, 2 free slots on node 1: 3 + 3 batches.
        assert_eq!(drained.requests.len(), 2);
        for (_, batches) in &drained.requests {
            assert_eq!(batches.len(), 3);
            assert!(batches.iter().map(|b| b.bytes).sum::<usize>() <= 4096);
        }
        assert!(accumulator.has_queued(), "the rest waits for a free slot");
    }

    #[test]
    fn a_partition_without_leader_waits_and_asks_for_metadata() {
        let mut accumulator = Accumulator::new(limits(), false);
        accumulator.set_info("t", TopicInfo::new(vec![-1]));
        append(&mut accumulator, record(10).partition(0), Duration::ZERO);
        let drained = accumulator.drain(10 * MS, false, &BTreeMap::new());
        assert!(drained.requests.is_empty());
        assert!(drained.leaderless);
    }

    #[test]
    fn keyless_records_stick_to_one_partition_until_its_batch_closes() {
        let mut accumulator = accumulator(limits(), 4);
        let entropy = SeededEntropy::new(3);
        let mut partitions = Vec::new();
        for _ in 0..20 {
            accumulator
                .append(
                    record(250),
                    0,
                    &|| Duration::ZERO,
                    &DefaultPartitioner,
                    &entropy,
                )
                .map_err(|(refused, _)| refused)
                .unwrap();
            partitions.push(sticky(&accumulator));
        }
        // Three 286-byte records fill a 1 KiB batch; then the sticky partition moves, never to
        // the same partition twice in a row.
        let runs: Vec<&[i32]> = partitions.chunk_by(|a, b| a == b).collect();
        assert!(runs.len() >= 6, "{partitions:?}");
        for run in &runs[..runs.len() - 1] {
            assert_eq!(run.len(), 3, "{partitions:?}");
        }
    }

    #[test]
    fn keyless_records_move_on_once_their_batch_is_drained() {
        let mut accumulator = accumulator(limits(), 2);
        append(&mut accumulator, record(10), Duration::ZERO);
        let first = sticky(&accumulator);
        let drained = accumulator.drain(10 * MS, false, &BTreeMap::new());
        assert_eq!(drained.requests.len(), 1);
        append(&mut accumulator, record(10), 10 * MS);
        assert_ne!(sticky(&accumulator), first);
    }

    fn sticky(accumulator: &Accumulator) -> i32 {
        accumulator
            .topics
            .get("t")
            .and_then(|t| t.sticky)
            .map(|(partition, _)| partition)
            .expect("a sticky partition")
    }

    #[test]
    fn keyless_records_avoid_partitions_without_a_leader() {
        let mut accumulator = Accumulator::new(limits(), false);
        accumulator.set_info("t", TopicInfo::new(vec![-1, 2, -1]));
        for _ in 0..10 {
            append(&mut accumulator, record(400), Duration::ZERO);
        }
        let drained = accumulator.drain(Duration::ZERO, true, &BTreeMap::new());
        for (node, batches) in &drained.requests {
            assert_eq!(*node, 2);
            assert!(batches.iter().all(|b| b.partition == 1));
        }
    }

    #[test]
    fn the_buffer_bound_refuses_records_until_batches_settle() {
        let mut accumulator = accumulator(
            Limits {
                buffer_bytes: 1000,
                ..limits()
            },
            1,
        );
        let entropy = SeededEntropy::new(1);
        append(&mut accumulator, record(400).partition(0), Duration::ZERO);
        append(&mut accumulator, record(400).partition(0), Duration::ZERO);
        let refused = accumulator
            .append(
                record(400).partition(0),
                0,
                &|| Duration::ZERO,
                &DefaultPartitioner,
                &entropy,
            )
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(refused.0, Refused::BufferFull));

        let drained = accumulator.drain(Duration::ZERO, true, &BTreeMap::new());
        let batch = drained
            .requests
            .into_iter()
            .next()
            .unwrap()
            .1
            .pop()
            .unwrap();
        accumulator.settle(batch, Ok(Ack::UNKNOWN), MS, |_| MS);
        assert_eq!(accumulator.buffered(), 0);
        assert!(accumulator.is_empty());
        append(&mut accumulator, record(400).partition(0), MS);
    }

    #[test]
    fn a_partition_outside_the_topic_is_invalid() {
        let mut accumulator = accumulator(limits(), 2);
        let entropy = SeededEntropy::new(1);
        let refused = accumulator
            .append(
                record(1).partition(2),
                0,
                &|| Duration::ZERO,
                &DefaultPartitioner,
                &entropy,
            )
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(refused.0, Refused::Invalid(_)));
    }

    #[test]
    fn a_retried_batch_goes_back_ahead_of_later_ones_after_its_backoff() {
        let mut accumulator = accumulator(limits(), 1);
        append(&mut accumulator, record(400).partition(0), Duration::ZERO);
        let drained = accumulator.drain(5 * MS, false, &BTreeMap::new());
        let batch = drained
            .requests
            .into_iter()
            .next()
            .unwrap()
            .1
            .pop()
            .unwrap();
        let first_id = batch.id;
        append(&mut accumulator, record(400).partition(0), 5 * MS);
        let not_leader = Error::kafka(KafkaCode::NOT_LEADER_OR_FOLLOWER, "test", None);
        let settled = accumulator.settle(batch, Err(not_leader), 6 * MS, |_| 10 * MS);
        assert!(settled.refresh_metadata);

        let waiting = accumulator.drain(7 * MS, true, &BTreeMap::new());
        assert!(
            waiting.requests.is_empty(),
            "the retry holds its partition during backoff"
        );
        assert_eq!(waiting.wake_at, Some(16 * MS));
        let retried = accumulator.drain(16 * MS, true, &BTreeMap::new());
        let ids: Vec<(u64, u32)> = retried
            .requests
            .iter()
            .map(|(_, batches)| (batches[0].id, batches[0].attempts))
            .collect();
        assert_eq!(ids, vec![(first_id, 1), (first_id + 1, 0)]);
    }

    #[test]
    fn a_timed_out_batch_of_a_plain_producer_has_an_unknown_outcome() {
        let mut accumulator = accumulator(limits(), 1);
        let delivery = append(&mut accumulator, record(10).partition(0), Duration::ZERO).delivery;
        let drained = accumulator.drain(Duration::ZERO, true, &BTreeMap::new());
        let batch = drained
            .requests
            .into_iter()
            .next()
            .unwrap()
            .1
            .pop()
            .unwrap();
        let timeout = Error::Timeout {
            context: "test".into(),
            after: MS,
        };
        accumulator.settle(batch, Err(timeout), MS, |_| MS);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let error = runtime.block_on(delivery).unwrap_err();
        assert!(matches!(error, Error::UnknownOutcome(_)), "{error}");
    }

    #[test]
    fn batches_expire_after_the_delivery_timeout() {
        let mut accumulator = Accumulator::new(limits(), false);
        accumulator.set_info("t", TopicInfo::new(vec![-1]));
        append(&mut accumulator, record(10).partition(0), Duration::ZERO);
        let drained = accumulator.drain(1000 * MS, false, &BTreeMap::new());
        assert!(drained.settled);
        assert!(accumulator.is_empty());
    }

    #[test]
    fn an_idempotent_partition_numbers_batches_and_waits_for_a_producer_id() {
        let mut accumulator = Accumulator::new(limits(), true);
        accumulator.set_info("t", TopicInfo::new(vec![1]));
        for _ in 0..5 {
            append(&mut accumulator, record(400).partition(0), Duration::ZERO);
        }
        let waiting = accumulator.drain(Duration::ZERO, true, &BTreeMap::new());
        assert!(
            waiting.requests.is_empty(),
            "no sequence without a producer id"
        );

        accumulator.identity.as_mut().unwrap().current = Some((42, 0));
        let first = accumulator.drain(Duration::ZERO, true, &BTreeMap::new());
        assert_eq!(sequences(&first), vec![(42, 0, 0)]);
        let unanswered = accumulator.drain(MS, true, &BTreeMap::new());
        assert!(
            unanswered.requests.is_empty(),
            "until a batch is acknowledged the broker may take any sequence as the first: \
             one at a time"
        );

        let batch = first.requests.into_iter().next().unwrap().1.pop().unwrap();
        accumulator.settle(batch, Ok(Ack::UNKNOWN), MS, |_| MS);
        let rest = accumulator.drain(MS, true, &BTreeMap::new());
        assert_eq!(sequences(&rest), vec![(42, 0, 2), (42, 0, 4)]);
    }

    fn sequences(drained: &Drained) -> Vec<(i64, i16, i32)> {
        drained
            .requests
            .iter()
            .flat_map(|(_, batches)| batches.iter().filter_map(|b| b.sequence))
            .map(|s| (s.producer_id, s.epoch, s.base))
            .collect()
    }

    /// An idempotent accumulator whose partition 0 has had a batch acknowledged, so several
    /// batches may be in flight.
    fn acknowledged_idempotent() -> Accumulator {
        let mut accumulator = Accumulator::new(limits(), true);
        accumulator.set_info("t", TopicInfo::new(vec![1]));
        accumulator.identity.as_mut().unwrap().current = Some((42, 0));
        append(&mut accumulator, record(10).partition(0), Duration::ZERO);
        let drained = accumulator.drain(Duration::ZERO, true, &BTreeMap::new());
        let batch = drained
            .requests
            .into_iter()
            .next()
            .unwrap()
            .1
            .pop()
            .unwrap();
        accumulator.settle(batch, Ok(Ack::UNKNOWN), Duration::ZERO, |_| MS);
        accumulator
    }

    #[test]
    fn out_of_order_after_an_earlier_failure_is_retried_and_alone_is_fatal() {
        let mut accumulator = acknowledged_idempotent();
        for _ in 0..4 {
            append(&mut accumulator, record(400).partition(0), Duration::ZERO);
        }
        let drained = accumulator.drain(Duration::ZERO, true, &BTreeMap::new());
        let mut batches: Vec<Batch> = drained
            .requests
            .into_iter()
            .flat_map(|(_, batches)| batches)
            .collect();
        assert_eq!(batches.len(), 2);
        let second = batches.pop().unwrap();
        let first = batches.pop().unwrap();
        let not_leader = Error::kafka(KafkaCode::NOT_LEADER_OR_FOLLOWER, "test", None);
        let out_of_order = Error::kafka(KafkaCode::OUT_OF_ORDER_SEQUENCE_NUMBER, "test", None);
        accumulator.settle(first, Err(not_leader), MS, |_| MS);
        let second_outcome = Arc::clone(&second.outcome);
        accumulator.settle(second, Err(out_of_order.clone()), MS, |_| MS);
        assert!(
            !second_outcome.is_settled(),
            "retried behind the failed first batch"
        );
        assert!(!accumulator.identity.as_ref().unwrap().bump_wanted);

        let retried = accumulator.drain(2 * MS, true, &BTreeMap::new());
        let alone: Vec<Batch> = retried.requests.into_iter().flat_map(|(_, b)| b).collect();
        assert_eq!(alone.len(), 1, "a retry goes alone");
        let first = alone.into_iter().next().unwrap();
        let first_outcome = Arc::clone(&first.outcome);
        accumulator.settle(first, Err(out_of_order), 2 * MS, |_| MS);
        assert!(
            first_outcome.is_settled(),
            "nothing earlier is outstanding: fatal"
        );
        assert!(accumulator.identity.as_ref().unwrap().bump_wanted);

        // After the bump the survivors are numbered afresh from zero under the new epoch.
        let identity = accumulator.identity.as_mut().unwrap();
        identity.current = Some((42, 1));
        identity.bump_wanted = false;
        let renumbered = accumulator.drain(3 * MS, true, &BTreeMap::new());
        let batch = &renumbered.requests[0].1[0];
        assert_eq!(
            batch.sequence,
            Some(Sequence {
                producer_id: 42,
                epoch: 1,
                base: 0
            })
        );
    }

    #[test]
    fn a_duplicate_sequence_counts_as_delivered() {
        let mut accumulator = Accumulator::new(limits(), true);
        accumulator.set_info("t", TopicInfo::new(vec![1]));
        accumulator.identity.as_mut().unwrap().current = Some((42, 0));
        append(&mut accumulator, record(10).partition(0), Duration::ZERO);
        let drained = accumulator.drain(Duration::ZERO, true, &BTreeMap::new());
        let batch = drained
            .requests
            .into_iter()
            .next()
            .unwrap()
            .1
            .pop()
            .unwrap();
        let outcome = Arc::clone(&batch.outcome);
        let duplicate = Error::kafka(KafkaCode::DUPLICATE_SEQUENCE_NUMBER, "test", None);
        accumulator.settle(batch, Err(duplicate), MS, |_| MS);
        assert!(outcome.is_settled());
        assert!(accumulator.is_empty());
        assert!(!accumulator.identity.as_ref().unwrap().bump_wanted);
    }

    #[test]
    fn renumbering_rewrites_the_encoded_producer_fields_and_crc() {
        let mut accumulator = accumulator(limits(), 1);
        append(&mut accumulator, record(10).partition(0), Duration::ZERO);
        let drained = accumulator.drain(Duration::ZERO, true, &BTreeMap::new());
        let mut batch = drained
            .requests
            .into_iter()
            .next()
            .unwrap()
            .1
            .pop()
            .unwrap();
        batch.sequence = Some(Sequence {
            producer_id: 7,
            epoch: 1,
            base: 0,
        });
        let first = batch.encode().unwrap();
        batch.sequence = Some(Sequence {
            producer_id: 7,
            epoch: 2,
            base: 0,
        });
        let second = batch.encode().unwrap();
        let header = batch::validate(&second).expect("a valid batch after the rewrite");
        assert_eq!((header.producer_id, header.producer_epoch), (7, 2));
        assert_eq!(first[61..], second[61..]);
    }
}
