//! Fetch: read whole stored batches from the requested offsets, as they were received.
//!
//! A long poll parks until `min_bytes` are available, a partition errors, or `max_wait_ms`
//! passes — but answers as soon as there is enough data, as Kafka does. Appends wake parked
//! fetches through each partition's watcher list. Fetch sessions (KIP-227) are declined:
//! every answer carries session id 0, so clients keep sending full fetches.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::{
    EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use tidepool_io::buggify;
use tidepool_protocol::batch::BatchHeader;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::cluster::Topic;
use crate::log::ReadError;
use crate::partition::{Partition, PartitionState};
use crate::server::Node;

const TOPIC_IDS_FROM_VERSION: i16 = 13;
const CURRENT_LEADER_EPOCH_FROM_VERSION: i16 = 9;
const LAST_FETCHED_EPOCH_FROM_VERSION: i16 = 12;
const READ_COMMITTED: i8 = 1;

/// One requested topic, resolved once for the whole long poll.
struct TopicPlan {
    name: TopicName,
    id: Uuid,
    topic: Result<Arc<Topic>, ResponseError>,
    partitions: Vec<FetchPartition>,
}

/// What one pass over the requested partitions produced.
struct Pass {
    topics: Vec<FetchableTopicResponse>,
    bytes: usize,
    errors: bool,
}

pub async fn handle(
    node: &Node,
    version: i16,
    request: FetchRequest,
    scratch: &mut BytesMut,
) -> FetchResponse {
    if let Some(error) = session_error(&request) {
        return FetchResponse::default()
            .with_error_code(error.code())
            .with_session_id(0);
    }
    let plans = resolve(node, version, &request);
    let clock = Arc::clone(&node.cluster.env.clock);
    let wait_ms = u64::try_from(request.max_wait_ms)
        .unwrap_or(0)
        .min(node.cluster.config.fetch_wait_ms_max);
    let deadline = clock.now() + Duration::from_millis(wait_ms);
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    let waker = Arc::new(Notify::new());
    if wait_ms > 0 && min_bytes > 0 {
        // Registered before the first read: an append between read and wait leaves a permit.
        for partition in partitions_of(&plans) {
            partition.watch(&waker);
        }
    }
    let mut parked = None;
    loop {
        let pass = read_all(node, version, &request, &plans, scratch);
        let now = clock.now();
        if pass.bytes >= min_bytes || pass.errors || now >= deadline {
            return response(pass);
        }
        if parked.is_none() {
            match Arc::clone(&node.cluster.parked_fetches).try_acquire_owned() {
                Ok(permit) => parked = Some(permit),
                // Too many parked fetches: answer now rather than queue without bound.
                Err(_) => return response(pass),
            }
        }
        tokio::select! {
            biased;
            () = waker.notified() => {}
            () = clock.sleep(deadline - now) => {}
        }
    }
}

fn response(pass: Pass) -> FetchResponse {
    FetchResponse::default()
        .with_session_id(0)
        .with_responses(pass.topics)
}

/// Session id 0 with epoch 0 (open a session) or -1 (no session) is a full fetch; we never
/// hand out a session, so any other id or epoch cannot be ours.
fn session_error(request: &FetchRequest) -> Option<ResponseError> {
    if request.session_id != 0 {
        Some(ResponseError::FetchSessionIdNotFound)
    } else if request.session_epoch != 0 && request.session_epoch != -1 {
        Some(ResponseError::InvalidFetchSessionEpoch)
    } else {
        None
    }
}

fn resolve(node: &Node, version: i16, request: &FetchRequest) -> Vec<TopicPlan> {
    request
        .topics
        .iter()
        .map(|wanted| {
            let topic = if version >= TOPIC_IDS_FROM_VERSION {
                node.cluster
                    .topic_by_id(wanted.topic_id)
                    .ok_or(ResponseError::UnknownTopicId)
            } else {
                node.cluster
                    .topic(&wanted.topic.0)
                    .ok_or(ResponseError::UnknownTopicOrPartition)
            };
            TopicPlan {
                name: wanted.topic.clone(),
                id: wanted.topic_id,
                topic,
                partitions: wanted.partitions.clone(),
            }
        })
        .collect()
}

fn partitions_of(plans: &[TopicPlan]) -> impl Iterator<Item = &Arc<Partition>> {
    plans.iter().flat_map(|plan| {
        plan.partitions.iter().filter_map(move |wanted| {
            plan.topic
                .as_ref()
                .ok()
                .and_then(|topic| topic.partitions.get(wanted.partition as usize))
        })
    })
}

/// Reads every requested partition, sharing the response's byte budget in request order.
fn read_all(
    node: &Node,
    version: i16,
    request: &FetchRequest,
    plans: &[TopicPlan],
    scratch: &mut BytesMut,
) -> Pass {
    let response_bytes_max = usize::try_from(request.max_bytes)
        .unwrap_or(0)
        .min(node.cluster.config.fetch_bytes_max)
        .min(node.cluster.config.fetch_response_bytes_max);
    let mut budget = Budget {
        remaining: response_bytes_max,
        first_with_data: true,
    };
    let mut pass = Pass {
        topics: Vec::with_capacity(plans.len()),
        bytes: 0,
        errors: false,
    };
    for plan in plans {
        let mut partitions = Vec::with_capacity(plan.partitions.len());
        for wanted in &plan.partitions {
            let data = match &plan.topic {
                Err(error) => error_data(wanted.partition, *error),
                Ok(topic) => match topic.partitions.get(wanted.partition as usize) {
                    None => error_data(wanted.partition, ResponseError::UnknownTopicOrPartition),
                    Some(partition) => {
                        let state = partition.state();
                        read_partition(
                            node.id,
                            version,
                            request,
                            wanted,
                            &state,
                            &mut budget,
                            scratch,
                        )
                    }
                },
            };
            pass.errors |= data.error_code != 0;
            pass.bytes += data.records.as_ref().map_or(0, Bytes::len);
            partitions.push(data);
        }
        let mut topic = FetchableTopicResponse::default().with_partitions(partitions);
        if version >= TOPIC_IDS_FROM_VERSION {
            topic.topic_id = plan.id;
        } else {
            topic.topic = plan.name.clone();
        }
        pass.topics.push(topic);
    }
    pass
}

/// The response's remaining bytes, and whether no partition returned data yet (KIP-74: the
/// first batch of the first partition with data is returned even when over the limits).
struct Budget {
    remaining: usize,
    first_with_data: bool,
}

fn read_partition(
    node_id: i32,
    version: i16,
    request: &FetchRequest,
    wanted: &FetchPartition,
    state: &PartitionState,
    budget: &mut Budget,
    scratch: &mut BytesMut,
) -> PartitionData {
    let current_leader_epoch = if version >= CURRENT_LEADER_EPOCH_FROM_VERSION {
        wanted.current_leader_epoch
    } else {
        -1
    };
    if let Err(error) = state.check_leader(node_id, current_leader_epoch) {
        let mut data = error_data(wanted.partition, error);
        // KIP-951: Kafka names the current leader only when the fetch went to the wrong
        // node or used an old epoch (not for an epoch newer than the leader's).
        let moved = matches!(
            error,
            ResponseError::NotLeaderOrFollower | ResponseError::FencedLeaderEpoch
        );
        if moved && version >= LAST_FETCHED_EPOCH_FROM_VERSION && !state.deleted {
            data.current_leader = LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(state.leader))
                .with_leader_epoch(state.leader_epoch);
        }
        return data;
    }
    let log = &state.log;
    let mut data = PartitionData::default()
        .with_partition_index(wanted.partition)
        .with_high_watermark(log.high_watermark())
        .with_last_stable_offset(log.high_watermark())
        .with_log_start_offset(log.log_start_offset())
        .with_aborted_transactions((request.isolation_level == READ_COMMITTED).then(Vec::new))
        .with_records(Some(Bytes::new()));
    if version >= LAST_FETCHED_EPOCH_FROM_VERSION && wanted.last_fetched_epoch >= 0 {
        let (epoch, end_offset) = log.end_offset_for_epoch(wanted.last_fetched_epoch);
        if epoch < wanted.last_fetched_epoch || end_offset < wanted.fetch_offset {
            data.diverging_epoch = EpochEndOffset::default()
                .with_epoch(epoch)
                .with_end_offset(end_offset);
            return data;
        }
    }
    let partition_bytes_max = usize::try_from(wanted.partition_max_bytes).unwrap_or(0);
    let limit = partition_bytes_max.min(budget.remaining);
    match log.read(wanted.fetch_offset, limit, budget.first_with_data, scratch) {
        Ok(mut bytes) => {
            // A broker may answer with fewer batches than it has (Kafka's stop at a segment's
            // end does): a client must fetch again from where the answer ends.
            if let Some(first) = first_batch_bytes(&bytes)
                && first < bytes.len()
                && buggify!(log.disk(), "fetch.short")
            {
                bytes.truncate(first);
            }
            budget.remaining = budget.remaining.saturating_sub(bytes.len());
            budget.first_with_data &= bytes.is_empty();
            data.records = Some(bytes);
            data
        }
        // As Kafka answers: no high watermark, stable offset or log start offset.
        Err(ReadError::OffsetOutOfRange { .. }) => {
            error_data(wanted.partition, ResponseError::OffsetOutOfRange)
        }
        Err(ReadError::Io(error)) => {
            tracing::error!(%error, "log read failed");
            error_data(wanted.partition, ResponseError::KafkaStorageError)
        }
    }
}

/// The length of the first whole batch of `bytes`, if it holds one.
fn first_batch_bytes(bytes: &[u8]) -> Option<usize> {
    let header = BatchHeader::parse(bytes).ok()?;
    Some(header.total_bytes()).filter(|length| *length <= bytes.len())
}

fn error_data(partition: i32, error: ResponseError) -> PartitionData {
    // Kafka answers a partition it does not know with an empty (not null) list of aborted
    // transactions, and other errors with null.
    let unknown = matches!(
        error,
        ResponseError::UnknownTopicOrPartition | ResponseError::UnknownTopicId
    );
    PartitionData::default()
        .with_partition_index(partition)
        .with_error_code(error.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_aborted_transactions(unknown.then(Vec::new))
        .with_records(Some(Bytes::new()))
}
