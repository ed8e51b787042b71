//! OffsetForLeaderEpoch: where a leader epoch ended, so a client can detect log truncation.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::server::Node;

pub fn handle(node: &Node, request: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|wanted| {
            let topic = node.cluster.topic(&wanted.topic.0);
            let partitions = wanted
                .partitions
                .iter()
                .map(|partition| {
                    let answer = EpochEndOffset::default().with_partition(partition.partition);
                    let Some(found) = topic
                        .as_ref()
                        .and_then(|t| t.partitions.get(partition.partition as usize))
                    else {
                        return answer
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    let state = found.state();
                    if let Err(error) = state.check_leader(node.id, partition.current_leader_epoch)
                    {
                        return answer.with_error_code(error.code());
                    }
                    let (epoch, end_offset) =
                        state.log.end_offset_for_epoch(partition.leader_epoch);
                    answer.with_leader_epoch(epoch).with_end_offset(end_offset)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(wanted.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
