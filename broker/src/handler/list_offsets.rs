//! ListOffsets: the earliest and latest offsets, the offset for a timestamp, and the record
//! with the largest timestamp (KIP-734).

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_request::ListOffsetsPartition;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::partition::PartitionState;
use crate::server::Node;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const CURRENT_LEADER_EPOCH_FROM_VERSION: i16 = 4;
const LEADER_EPOCH_FROM_VERSION: i16 = 4;

/// An answer: (timestamp, offset, leader epoch); all -1 when nothing matches.
type Found = (i64, i64, i32);
const NOT_FOUND: Found = (-1, -1, -1);

pub fn handle(node: &Node, version: i16, request: ListOffsetsRequest) -> ListOffsetsResponse {
    // A partition asked for more than once is answered once, with INVALID_REQUEST, as Kafka
    // does.
    let mut counts: BTreeMap<(String, i32), usize> = BTreeMap::new();
    for topic in &request.topics {
        for partition in &topic.partitions {
            *counts
                .entry((topic.name.0.to_string(), partition.partition_index))
                .or_default() += 1;
        }
    }
    let mut answered = BTreeSet::new();
    let topics = request
        .topics
        .into_iter()
        .map(|wanted| {
            let topic = node.cluster.topic(&wanted.name.0);
            let partitions = wanted
                .partitions
                .iter()
                .filter(|partition| {
                    answered.insert((wanted.name.0.to_string(), partition.partition_index))
                })
                .map(|partition| {
                    let key = (wanted.name.0.to_string(), partition.partition_index);
                    if counts[&key] > 1 {
                        return respond(
                            version,
                            partition.partition_index,
                            Err(ResponseError::InvalidRequest),
                        );
                    }
                    let answer = match topic
                        .as_ref()
                        .and_then(|t| t.partitions.get(partition.partition_index as usize))
                    {
                        None => Err(ResponseError::UnknownTopicOrPartition),
                        Some(found) => lookup(node.id, version, partition, &found.state()),
                    };
                    respond(version, partition.partition_index, answer)
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(wanted.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

fn respond(
    version: i16,
    partition_index: i32,
    answer: Result<Found, ResponseError>,
) -> ListOffsetsPartitionResponse {
    let response = ListOffsetsPartitionResponse::default().with_partition_index(partition_index);
    // v4 added the leader epoch; the encoder refuses a non-default value before that.
    let epoch_known = version >= LEADER_EPOCH_FROM_VERSION;
    match answer {
        Ok((timestamp, offset, leader_epoch)) => response
            .with_timestamp(timestamp)
            .with_offset(offset)
            .with_leader_epoch(if epoch_known { leader_epoch } else { -1 }),
        Err(error) => response.with_error_code(error.code()),
    }
}

fn lookup(
    node_id: i32,
    version: i16,
    wanted: &ListOffsetsPartition,
    state: &PartitionState,
) -> Result<Found, ResponseError> {
    let current_leader_epoch = if version >= CURRENT_LEADER_EPOCH_FROM_VERSION {
        wanted.current_leader_epoch
    } else {
        -1
    };
    state.check_leader(node_id, current_leader_epoch)?;
    let log = &state.log;
    let found = match wanted.timestamp {
        LATEST => return Ok((-1, log.high_watermark(), state.leader_epoch)),
        EARLIEST | EARLIEST_LOCAL => return Ok((-1, log.log_start_offset(), state.leader_epoch)),
        MAX_TIMESTAMP => log.offset_of_max_timestamp(),
        target => log.offset_for_timestamp(target),
    };
    match found {
        Ok(Some(found)) => Ok((found.timestamp, found.offset, found.leader_epoch)),
        Ok(None) => Ok(NOT_FOUND),
        Err(error) => {
            tracing::error!(%error, "log read failed");
            Err(ResponseError::KafkaStorageError)
        }
    }
}
