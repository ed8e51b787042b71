//! OffsetDelete: a group's committed offsets for some partitions, unless its members are
//! subscribed to the topic.

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use crate::server::Node;

pub fn handle(node: &Node, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group_id = request.group_id.0.as_str();
    let wanted: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|p| (topic.name.0.to_string(), p.partition_index))
        })
        .collect();
    let outcome = node
        .cluster
        .check_coordinator(node.id, group_id)
        .and_then(|()| {
            node.cluster
                .groups
                .delete_offsets(&node.cluster, group_id, wanted)
        });
    let results = match outcome {
        Ok(results) => results,
        Err(error) => return OffsetDeleteResponse::default().with_error_code(error.code()),
    };
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let partitions = results
                .iter()
                .filter(|(t, _, _)| *t == name)
                .map(|(_, partition, result)| {
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(*partition)
                        .with_error_code(result.err().map_or(0, |error| error.code()))
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
