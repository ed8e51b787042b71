//! Produce: validate each partition's record batches, check idempotent sequences, append.
//!
//! acks=0 gets no response; if anything failed, the connection closes instead, which is how
//! Kafka tells an acks=0 producer that something went wrong.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use tidepool_io::buggify;

use crate::cluster::{Refusal, Topic};
use crate::partition::{AppendContext, ProduceOutcome};
use crate::server::Node;

use super::Outcome;

/// Produce v13 names topics by id instead of by name.
const TOPIC_IDS_FROM_VERSION: i16 = 13;
/// Produce v8 added per-record errors (KIP-467).
const RECORD_ERRORS_FROM_VERSION: i16 = 8;
/// Produce v10 added the current leader to NOT_LEADER_OR_FOLLOWER answers (KIP-951).
const CURRENT_LEADER_FROM_VERSION: i16 = 10;

pub fn handle(node: &Node, version: i16, request: ProduceRequest) -> Outcome {
    let acks = request.acks;
    let refusal = if !matches!(acks, -1..=1) {
        Some(ResponseError::InvalidRequiredAcks)
    } else if request.transactional_id.is_some() {
        Some(ResponseError::InvalidTxnState)
    } else {
        None
    };
    let context = AppendContext {
        node_id: node.id,
        now_ms: node.cluster.env.clock.wall_ms(),
        producers_max: node.cluster.config.producers_per_partition_max,
    };
    let mut response = ProduceResponse::default();
    let mut any_error = false;
    for topic_data in request.topic_data {
        let topic = resolve(node, version, &topic_data);
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for partition_data in topic_data.partition_data {
            let outcome = match (&topic, refusal) {
                (_, Some(error)) => failure(error),
                (Err(refusal), None) => failure(refusal.error),
                (Ok(topic), None) if topic.internal => {
                    failure(ResponseError::InvalidTopicException)
                }
                (Ok(topic), None) => match topic.partitions.get(partition_data.index as usize) {
                    Some(partition) => {
                        let records = partition_data.records.unwrap_or_default();
                        if records.is_empty() {
                            // Kafka refuses a partition entry without batches.
                            failure(ResponseError::InvalidRecord)
                        } else if acks == -1
                            && buggify!(node.cluster.env.disk, "produce.not_enough_replicas")
                        {
                            // As Kafka refuses acks=all while the in-sync replicas are fewer
                            // than min.insync.replicas: retriable, and nothing is appended.
                            failure(ResponseError::NotEnoughReplicas)
                        } else {
                            let mut outcome = partition.produce(&records, context);
                            if outcome.error.is_some_and(producer_state_error) {
                                // Kafka reports the log start offset with these refusals,
                                // and no message.
                                outcome.log_start_offset = partition.state().log.log_start_offset();
                                outcome.error_message = None;
                            }
                            outcome
                        }
                    }
                    None => failure(ResponseError::UnknownTopicOrPartition),
                },
            };
            any_error |= outcome.error.is_some();
            let record_errors = outcome
                .record_errors
                .iter()
                .map(|(index, message)| {
                    BatchIndexAndErrorMessage::default()
                        .with_batch_index(*index)
                        .with_batch_index_error_message(Some(StrBytes::from_string(
                            message.clone(),
                        )))
                })
                .collect();
            let mut answer = partition_response(
                node,
                version,
                topic.as_ref().ok(),
                partition_data.index,
                outcome,
                &mut response,
            );
            if version >= RECORD_ERRORS_FROM_VERSION {
                answer.record_errors = record_errors;
            }
            partitions.push(answer);
        }
        response.responses.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_topic_id(topic_data.topic_id)
                .with_partition_responses(partitions),
        );
    }
    match (acks, any_error) {
        (0, false) => Outcome::Silent,
        (0, true) => Outcome::Close("an acks=0 produce failed".into()),
        _ => Outcome::Respond(Box::new(ResponseKind::Produce(response))),
    }
}

fn resolve(
    node: &Node,
    version: i16,
    topic_data: &kafka_protocol::messages::produce_request::TopicProduceData,
) -> Result<Arc<Topic>, Refusal> {
    if version >= TOPIC_IDS_FROM_VERSION {
        return node
            .cluster
            .topic_by_id(topic_data.topic_id)
            .ok_or(Refusal {
                error: ResponseError::UnknownTopicId,
                message: String::new(),
            });
    }
    node.cluster.topic_or_auto_create(&topic_data.name.0)
}

/// Refusals Kafka makes inside the log (it answers them with the partition's log start
/// offset, where refusals made before reaching the log carry -1).
fn producer_state_error(error: ResponseError) -> bool {
    matches!(
        error,
        ResponseError::OutOfOrderSequenceNumber
            | ResponseError::InvalidProducerEpoch
            | ResponseError::UnknownProducerId
    )
}

fn failure(error: ResponseError) -> ProduceOutcome {
    ProduceOutcome {
        error: Some(error),
        error_message: None,
        base_offset: -1,
        log_append_time_ms: -1,
        log_start_offset: -1,
        record_errors: Vec::new(),
    }
}

fn partition_response(
    node: &Node,
    version: i16,
    topic: Option<&Arc<Topic>>,
    index: i32,
    outcome: ProduceOutcome,
    response: &mut ProduceResponse,
) -> PartitionProduceResponse {
    let mut partition = PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(outcome.error.map_or(0, |error| error.code()))
        .with_error_message(outcome.error_message.map(StrBytes::from_string))
        .with_base_offset(outcome.base_offset)
        .with_log_append_time_ms(outcome.log_append_time_ms)
        .with_log_start_offset(outcome.log_start_offset);
    let moved = outcome.error == Some(ResponseError::NotLeaderOrFollower)
        && version >= CURRENT_LEADER_FROM_VERSION;
    if moved && let Some(found) = topic.and_then(|topic| topic.partitions.get(index as usize)) {
        // Copied out so the partition lock is released before `add_endpoint` takes the
        // controller's: the controller lock is only ever taken before a partition lock.
        let (leader, leader_epoch) = {
            let state = found.state();
            (state.leader, state.leader_epoch)
        };
        partition.current_leader = LeaderIdAndEpoch::default()
            .with_leader_id(BrokerId(leader))
            .with_leader_epoch(leader_epoch);
        add_endpoint(node, leader, response);
    }
    partition
}

/// KIP-951: the endpoints of leaders named in `current_leader`, once each.
fn add_endpoint(node: &Node, leader: i32, response: &mut ProduceResponse) {
    if response
        .node_endpoints
        .iter()
        .any(|endpoint| endpoint.node_id.0 == leader)
    {
        return;
    }
    if let Some(info) = node
        .cluster
        .nodes()
        .into_iter()
        .find(|info| info.id == leader)
    {
        response.node_endpoints.push(
            NodeEndpoint::default()
                .with_node_id(BrokerId(info.id))
                .with_host(StrBytes::from_string(info.host))
                .with_port(i32::from(info.port)),
        );
    }
}
