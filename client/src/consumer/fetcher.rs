//! Fetching: one sessionless FetchRequest per leader for its fetchable partitions, at most one
//! in flight per node; responses decoded into per-partition buffers the consumer drains.
//!
//! A buffer is tied to the position it was fetched from. Draining checks that the partition
//! is still assigned, not paused, and at that position; a seek, a pause or a reassignment in
//! the meantime makes the buffer stale and it is dropped, never returned. So a fetch that was
//! in flight during a seek cannot move the position anywhere.
//!
//! Memory: fetch requests are only sent while buffered plus requested bytes stay under
//! `buffered_bytes_max`, and each request asks for at most what is left. (A broker returns
//! the first batch of a partition even when it is larger than asked, so one batch may exceed
//! the bound; Kafka consumers have the same allowance.)

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, TopicName,
    fetch_request::{FetchPartition, FetchTopic},
};
use tidepool_protocol::batch::{BatchHeader, HEADER_BYTES};
use tidepool_protocol::records::{self, DecodeLimits};
use tokio::task::AbortHandle;

use super::group::text;
use super::{ConsumerConfig, ConsumerRecord, PartitionState, Position};
use crate::client::Client;
use crate::error::{Error, KafkaCode};
use crate::types::TopicPartition;

/// Decoded records of one partition from one fetch, waiting to be returned by poll.
#[derive(Debug)]
pub(crate) struct PartitionBuffer {
    /// The position these records continue from; if the partition's position differs, the
    /// buffer is stale.
    next_offset: i64,
    records: VecDeque<ConsumerRecord>,
    /// The position once every record is returned: past the last whole batch, which may be
    /// beyond the last record (compacted-away records, control batches).
    end: Position,
    /// A batch that could not be decoded, after `records`: poll reports it when it gets there.
    error: Option<Error>,
    bytes: usize,
}

/// One fetch request to send: where to, and from which offsets.
#[derive(Debug, Clone)]
pub(crate) struct FetchPlan {
    pub node: i32,
    pub max_wait: Duration,
    pub min_bytes: i32,
    pub max_bytes: i32,
    /// (partition, fetch offset, current leader epoch, partition max bytes).
    pub partitions: Vec<(TopicPartition, i64, i32, i32)>,
}

/// What a fetch brought back.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    buffers: Vec<(TopicPartition, PartitionBuffer)>,
    /// Partitions answered OFFSET_OUT_OF_RANGE, with the offset we asked for.
    pub out_of_range: Vec<(TopicPartition, i64)>,
    /// Some partition's leadership moved (or the request failed): refresh metadata.
    pub stale_metadata: bool,
    /// Each answered partition's high watermark.
    high_watermarks: Vec<(TopicPartition, i64)>,
}

impl Fetched {
    /// A fetch that got no answer: nothing to add, and the leader may have moved.
    pub fn failed() -> Fetched {
        Fetched {
            stale_metadata: true,
            ..Fetched::default()
        }
    }
}

struct InFlight {
    task: AbortHandle,
    reserved: usize,
}

#[derive(Default)]
pub(crate) struct FetchState {
    in_flight: BTreeMap<i32, InFlight>,
    buffers: BTreeMap<TopicPartition, PartitionBuffer>,
    buffered_bytes: usize,
    reserved_bytes: usize,
    out_of_range: Vec<(TopicPartition, i64)>,
    /// A metadata refresh for leaderless partitions is under way.
    pub refreshing_metadata: bool,
    /// Draining resumes after this partition, so one busy partition cannot starve others.
    drain_after: Option<TopicPartition>,
    /// The high watermark each partition's last fetch reported: a partition fetched from
    /// there has nothing to read yet.
    high_watermarks: BTreeMap<TopicPartition, i64>,
}

impl FetchState {
    pub fn drop_partition(&mut self, tp: &TopicPartition) {
        if let Some(buffer) = self.buffers.remove(tp) {
            self.buffered_bytes = self.buffered_bytes.saturating_sub(buffer.bytes);
        }
    }

    /// Forgets everything buffered and stops every fetch in flight.
    pub fn clear(&mut self) {
        for (_, in_flight) in std::mem::take(&mut self.in_flight) {
            in_flight.task.abort();
        }
        self.buffers.clear();
        self.buffered_bytes = 0;
        self.reserved_bytes = 0;
        self.out_of_range.clear();
        self.high_watermarks.clear();
    }

    pub fn take_out_of_range(&mut self) -> Vec<(TopicPartition, i64)> {
        std::mem::take(&mut self.out_of_range)
    }

    /// The fetches to send now: per leader without a fetch in flight, its assigned partitions
    /// that have a position, are not paused and have nothing buffered. The second value says
    /// whether some partition has no known leader.
    pub fn plan(
        &self,
        assignment: &BTreeMap<TopicPartition, PartitionState>,
        client: &Client,
        config: &ConsumerConfig,
    ) -> (Vec<FetchPlan>, bool) {
        let mut by_node: BTreeMap<i32, Vec<(TopicPartition, i64, i32)>> = BTreeMap::new();
        // Nodes with partitions still buffered: their next fetch will have data to ask for.
        let mut draining: Vec<i32> = Vec::new();
        let mut leaderless = false;
        for (tp, partition) in assignment {
            let Some(position) = partition.position else {
                continue;
            };
            if partition.paused {
                continue;
            }
            if self.buffers.contains_key(tp) {
                if let Some((node, _)) = client.leader(&tp.topic, tp.partition) {
                    draining.push(node);
                }
                continue;
            }
            match client.leader(&tp.topic, tp.partition) {
                Some((node, _)) if self.in_flight.contains_key(&node) => {}
                Some((node, epoch)) => {
                    by_node
                        .entry(node)
                        .or_default()
                        .push((tp.clone(), position.offset, epoch));
                }
                None => leaderless = true,
            }
        }
        // A fetch of only caught-up partitions waits the broker's max_wait for new records, and
        // while it is in flight no other fetch goes to that node: the partitions still being
        // drained would stall behind it. Hold it until they can join it (then the broker answers
        // at once with their records), or until nothing is left to drain (then it long-polls as
        // it should).
        by_node.retain(|node, partitions| {
            !draining.contains(node)
                || partitions.iter().any(|(tp, offset, _)| {
                    self.high_watermarks
                        .get(tp)
                        .is_none_or(|high_watermark| offset < high_watermark)
                })
        });
        let used = self.buffered_bytes + self.reserved_bytes;
        let budget = config.buffered_bytes_max.saturating_sub(used);
        if by_node.is_empty() || budget == 0 {
            return (Vec::new(), leaderless);
        }
        let share = (budget / by_node.len()).max(1);
        let max_bytes = clamp_i32(share).min(config.fetch_max_bytes.max(1));
        let partition_max = config.max_partition_fetch_bytes.max(1).min(max_bytes);
        let plans = by_node
            .into_iter()
            .map(|(node, partitions)| FetchPlan {
                node,
                max_wait: config.fetch_max_wait,
                min_bytes: config.fetch_min_bytes,
                max_bytes,
                partitions: partitions
                    .into_iter()
                    .map(|(tp, offset, epoch)| (tp, offset, epoch, partition_max))
                    .collect(),
            })
            .collect();
        (plans, leaderless)
    }

    pub fn begin(&mut self, plan: &FetchPlan, task: AbortHandle) {
        let reserved = usize::try_from(plan.max_bytes).unwrap_or(0);
        self.reserved_bytes += reserved;
        self.in_flight
            .insert(plan.node, InFlight { task, reserved });
    }

    pub fn complete(&mut self, node: i32, fetched: Fetched) {
        if let Some(done) = self.in_flight.remove(&node) {
            self.reserved_bytes = self.reserved_bytes.saturating_sub(done.reserved);
        }
        for (tp, buffer) in fetched.buffers {
            self.drop_partition(&tp);
            self.buffered_bytes += buffer.bytes;
            self.buffers.insert(tp, buffer);
        }
        self.out_of_range.extend(fetched.out_of_range);
        self.high_watermarks.extend(fetched.high_watermarks);
    }

    /// Takes up to `max` records from the buffers, advancing the positions past them. An
    /// undecodable batch is an error when reached with nothing else to return.
    pub fn drain(
        &mut self,
        assignment: &mut BTreeMap<TopicPartition, PartitionState>,
        max: usize,
    ) -> Result<Vec<ConsumerRecord>, Error> {
        let mut order: Vec<TopicPartition> = self.buffers.keys().cloned().collect();
        if let Some(after) = &self.drain_after {
            let start = order.partition_point(|tp| tp <= after);
            order.rotate_left(start);
        }
        let mut out = Vec::new();
        for tp in order {
            if out.len() >= max {
                break;
            }
            let usable = assignment.get(&tp).is_some_and(|partition| {
                !partition.paused
                    && partition.position.map(|p| p.offset) == Some(self.buffers[&tp].next_offset)
            });
            if !usable {
                self.drop_partition(&tp);
                continue;
            }
            let partition = assignment.get_mut(&tp).expect("checked above");
            let buffer = self.buffers.get_mut(&tp).expect("listed above");
            while out.len() < max {
                let Some(record) = buffer.records.pop_front() else {
                    break;
                };
                let position = Position {
                    offset: record.offset + 1,
                    leader_epoch: record.leader_epoch,
                };
                partition.position = Some(position);
                buffer.next_offset = position.offset;
                out.push(record);
            }
            self.drain_after = Some(tp.clone());
            if !buffer.records.is_empty() {
                continue;
            }
            match buffer.error.take() {
                Some(error) if out.is_empty() => {
                    self.drop_partition(&tp);
                    return Err(error);
                }
                Some(error) => buffer.error = Some(error),
                None => {
                    if buffer.end.offset > buffer.next_offset {
                        partition.position = Some(buffer.end);
                    }
                    self.drop_partition(&tp);
                }
            }
        }
        Ok(out)
    }
}

fn clamp_i32(value: usize) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// The FetchRequest for `plan` at `version`: sessionless (id 0, epoch -1), read uncommitted.
pub(crate) fn request(plan: &FetchPlan, version: i16) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (tp, offset, epoch, partition_max) in &plan.partitions {
        let mut partition = FetchPartition::default()
            .with_partition(tp.partition)
            .with_fetch_offset(*offset)
            .with_partition_max_bytes(*partition_max);
        if version >= 9 {
            // Lets the leader refuse us if our metadata is older or newer than its epoch.
            partition = partition.with_current_leader_epoch(*epoch);
        }
        match topics.last_mut() {
            Some(topic) if topic.topic.0.as_str() == tp.topic => topic.partitions.push(partition),
            _ => topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(text(&tp.topic)))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(i32::try_from(plan.max_wait.as_millis()).unwrap_or(i32::MAX))
        .with_min_bytes(plan.min_bytes)
        .with_max_bytes(plan.max_bytes)
        .with_isolation_level(0)
        .with_topics(topics)
}

/// Reads a FetchResponse into buffers and the errors the consumer must act on.
pub(crate) fn parse(node: i32, response: FetchResponse, plan: &FetchPlan) -> Fetched {
    let mut fetched = Fetched::default();
    if let Some(code) = KafkaCode::from_code(response.error_code) {
        tracing::debug!(node, %code, "fetch failed");
        fetched.stale_metadata = true;
        return fetched;
    }
    let asked: BTreeMap<&TopicPartition, i64> = plan
        .partitions
        .iter()
        .map(|(tp, offset, _, _)| (tp, *offset))
        .collect();
    for topic in response.responses {
        let name = topic.topic.0.to_string();
        for partition in topic.partitions {
            let tp = TopicPartition::new(name.clone(), partition.partition_index);
            let Some(&offset) = asked.get(&tp) else {
                continue;
            };
            match KafkaCode::from_code(partition.error_code) {
                None => {
                    fetched
                        .high_watermarks
                        .push((tp.clone(), partition.high_watermark));
                    let bytes = partition.records.unwrap_or_default();
                    if let Some(buffer) = decode(node, &tp, offset, bytes) {
                        fetched.buffers.push((tp, buffer));
                    }
                }
                Some(KafkaCode::OFFSET_OUT_OF_RANGE) => fetched.out_of_range.push((tp, offset)),
                Some(code) if code.invalidates_metadata() => {
                    tracing::debug!(node, %tp, %code, "leadership moved; refreshing metadata");
                    fetched.stale_metadata = true;
                }
                Some(code) => {
                    tracing::debug!(node, %tp, %code, "fetch error");
                    fetched.stale_metadata |= code.is_retriable();
                }
            }
        }
    }
    fetched
}

/// Decodes the whole batches of a partition's record set, skipping records before `offset`
/// (a fetch returns the whole batch holding it) and control batches; a trailing partial batch
/// (cut by the size limit) is left for the next fetch. `None` if there is nothing to return
/// and nothing to skip.
fn decode(node: i32, tp: &TopicPartition, offset: i64, bytes: Bytes) -> Option<PartitionBuffer> {
    let mut buffer = PartitionBuffer {
        next_offset: offset,
        records: VecDeque::new(),
        end: Position {
            offset,
            leader_epoch: None,
        },
        error: None,
        bytes: bytes.len(),
    };
    let limits = DecodeLimits::default();
    let mut at = 0;
    while bytes.len() - at >= HEADER_BYTES {
        let header = match BatchHeader::parse(&bytes[at..]) {
            Ok(header) => header,
            Err(error) => {
                buffer.error = Some(corrupt(node, tp, buffer.end.offset, &error));
                break;
            }
        };
        let total = header.total_bytes();
        if total > bytes.len() - at {
            break;
        }
        // Checked: a broker's offsets can be anything, and one past the batch must be an offset.
        let Some(next_offset) = header
            .base_offset
            .checked_add(i64::from(header.last_offset_delta))
            .and_then(|last| last.checked_add(1))
        else {
            let error = format!(
                "batch offsets {}+{} overflow",
                header.base_offset, header.last_offset_delta
            );
            buffer.error = Some(corrupt(node, tp, buffer.end.offset, &error));
            break;
        };
        let batch = bytes.slice(at..at + total);
        at += total;
        if next_offset <= buffer.end.offset {
            continue;
        }
        let epoch = (header.partition_leader_epoch >= 0).then_some(header.partition_leader_epoch);
        if !header.is_control() {
            match records::decode(&batch, &limits) {
                Ok(decoded) => {
                    for record in decoded {
                        if record.offset < buffer.end.offset {
                            continue;
                        }
                        buffer.records.push_back(ConsumerRecord {
                            topic: tp.topic.clone(),
                            partition: tp.partition,
                            offset: record.offset,
                            timestamp: record.timestamp,
                            key: record.key,
                            value: record.value,
                            headers: record.headers,
                            leader_epoch: epoch,
                        });
                    }
                }
                Err(error) => {
                    buffer.error = Some(corrupt(node, tp, buffer.end.offset, &error));
                    break;
                }
            }
        }
        buffer.end = Position {
            offset: next_offset,
            leader_epoch: epoch,
        };
    }
    let progressed = !buffer.records.is_empty() || buffer.end.offset > offset;
    (progressed || buffer.error.is_some()).then_some(buffer)
}

fn corrupt(node: i32, tp: &TopicPartition, offset: i64, error: &dyn std::fmt::Display) -> Error {
    Error::Protocol {
        addr: format!("node {node}"),
        reason: format!(
            "{tp}: the batch at offset {offset} cannot be read ({error}); seek past it to continue"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidepool_protocol::batch;
    use tidepool_protocol::records::BatchBuilder;

    fn batch_at(base: i64, values: &[&str], control: bool) -> Vec<u8> {
        let mut builder = BatchBuilder::new();
        builder.base_offset(base).control(control);
        for value in values {
            builder.append(
                1_000,
                None,
                Some(Bytes::copy_from_slice(value.as_bytes())),
                vec![],
            );
        }
        builder.build().unwrap().to_vec()
    }

    fn values(buffer: &PartitionBuffer) -> Vec<(i64, String)> {
        buffer
            .records
            .iter()
            .map(|r| {
                (
                    r.offset,
                    String::from_utf8_lossy(r.value.as_ref().unwrap()).into(),
                )
            })
            .collect()
    }

    fn tp() -> TopicPartition {
        TopicPartition::new("t", 0)
    }

    #[test]
    fn records_before_the_fetch_offset_and_control_batches_are_skipped() {
        let mut set = batch_at(0, &["a", "b", "c"], false);
        set.extend(batch_at(3, &["marker"], true));
        set.extend(batch_at(4, &["d"], false));
        let buffer = decode(1, &tp(), 1, Bytes::from(set)).unwrap();
        assert_eq!(
            values(&buffer),
            vec![(1, "b".into()), (2, "c".into()), (4, "d".into())]
        );
        assert_eq!(buffer.end.offset, 5);
    }

    #[test]
    fn a_partial_trailing_batch_is_left_for_the_next_fetch() {
        let mut set = batch_at(0, &["a"], false);
        let second = batch_at(1, &["b"], false);
        set.extend(&second[..second.len() - 3]);
        let buffer = decode(1, &tp(), 0, Bytes::from(set)).unwrap();
        assert_eq!(values(&buffer), vec![(0, "a".into())]);
        assert_eq!(buffer.end.offset, 1, "resumes at the cut batch");
    }

    #[test]
    fn a_batch_of_only_control_records_still_moves_the_position() {
        let buffer = decode(1, &tp(), 7, Bytes::from(batch_at(7, &["m"], true))).unwrap();
        assert!(buffer.records.is_empty());
        assert_eq!(buffer.end.offset, 8);
        assert!(decode(1, &tp(), 0, Bytes::new()).is_none());
    }

    #[test]
    fn a_corrupt_batch_is_reported_after_the_good_ones() {
        let mut set = batch_at(0, &["a"], false);
        let mut bad = batch_at(1, &["b"], false);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        set.extend(bad);
        let buffer = decode(1, &tp(), 0, Bytes::from(set)).unwrap();
        assert_eq!(values(&buffer), vec![(0, "a".into())]);
        assert!(buffer.error.is_some());
        assert!(batch::validate(&batch_at(0, &["x"], false)).is_ok());
    }

    #[test]
    fn draining_stops_at_a_stale_buffer_and_at_the_record_limit() {
        let mut state = FetchState::default();
        let mut set = batch_at(0, &["a", "b", "c"], false);
        set.extend(batch_at(5, &["f"], false));
        state.complete(
            1,
            Fetched {
                buffers: vec![(tp(), decode(1, &tp(), 0, Bytes::from(set)).unwrap())],
                ..Fetched::default()
            },
        );
        let mut assignment = BTreeMap::new();
        assignment.insert(
            tp(),
            PartitionState {
                position: Some(Position {
                    offset: 0,
                    leader_epoch: None,
                }),
                ..PartitionState::default()
            },
        );
        let first = state.drain(&mut assignment, 2).unwrap();
        assert_eq!(
            first.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_eq!(assignment[&tp()].position.unwrap().offset, 2);
        let rest = state.drain(&mut assignment, 10).unwrap();
        assert_eq!(
            rest.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![2, 5]
        );
        assert_eq!(assignment[&tp()].position.unwrap().offset, 6);
        assert_eq!(state.buffered_bytes, 0);

        // A seek between fetch and drain makes the buffer stale.
        state.complete(
            1,
            Fetched {
                buffers: vec![(
                    tp(),
                    decode(1, &tp(), 6, Bytes::from(batch_at(6, &["g"], false))).unwrap(),
                )],
                ..Fetched::default()
            },
        );
        assignment.get_mut(&tp()).unwrap().position = Some(Position {
            offset: 1,
            leader_epoch: None,
        });
        assert!(state.drain(&mut assignment, 10).unwrap().is_empty());
        assert!(state.buffers.is_empty());
    }
}
