//! OffsetDelete: a group's committed offsets for some partitions, unless its members are
//! subscribed to the topic.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use crate::server::Node;

pub fn handle(node: &Node, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group_id = request.group_id.0.as_str();
    // Partitions the cluster does not have are answered UNKNOWN_TOPIC_OR_PARTITION without
    // asking the group, as Kafka does.
    let exists = |topic: &str, partition: i32| {
        node.cluster.topic(topic).is_some_and(|found| {
            usize::try_from(partition).is_ok_and(|index| index < found.partitions.len())
        })
    };
    let wanted: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|p| (topic.name.0.to_string(), p.partition_index))
        })
        .filter(|(topic, partition)| exists(topic, *partition))
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
            let partitions = topic
                .partitions
                .iter()
                .map(|wanted| {
                    let index = wanted.partition_index;
                    let error = if exists(&name, index) {
                        results
                            .iter()
                            .find(|(t, p, _)| *t == name && *p == index)
                            .and_then(|(_, _, result)| result.err())
                            .map_or(0, |error| error.code())
                    } else {
                        ResponseError::UnknownTopicOrPartition.code()
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(index)
                        .with_error_code(error)
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
