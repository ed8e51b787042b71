//! OffsetCommit: a member of the current generation (or a "simple" consumer of an empty
//! group) records offsets; they are kept in `__consumer_offsets`.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use crate::group::CommittedOffset;
use crate::server::Node;

pub fn handle(node: &Node, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let group_id = request.group_id.0.to_string();
    let now_ms = node.cluster.env.clock.wall_ms();
    let offsets: Vec<(String, i32, CommittedOffset)> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(move |partition| {
                let committed = CommittedOffset {
                    offset: partition.committed_offset,
                    leader_epoch: partition.committed_leader_epoch,
                    metadata: partition.committed_metadata.as_ref().map(|m| m.to_string()),
                    commit_timestamp_ms: now_ms,
                };
                (
                    topic.name.0.to_string(),
                    partition.partition_index,
                    committed,
                )
            })
        })
        .collect();
    let outcome = if group_id.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else {
        node.cluster
            .check_coordinator(node.id, &group_id)
            .and_then(|()| {
                let member = (
                    request.member_id.as_str(),
                    request.group_instance_id.as_deref(),
                    request.generation_id_or_member_epoch,
                );
                node.cluster
                    .groups
                    .commit(&node.cluster, &group_id, member, offsets.clone())
            })
    };
    let per_partition: Vec<(String, i32, i16)> = match outcome {
        Ok(results) => results
            .into_iter()
            .map(|(topic, partition, result)| {
                (topic, partition, result.err().map_or(0, |e| e.code()))
            })
            .collect(),
        Err(error) => offsets
            .into_iter()
            .map(|(topic, partition, _)| (topic, partition, error.code()))
            .collect(),
    };
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let partitions = per_partition
                .iter()
                .filter(|(t, _, _)| *t == name)
                .map(|(_, partition, code)| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(*partition)
                        .with_error_code(*code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
