//! DeleteRecords: moves partitions' log start offsets forward; ListOffsets earliest and
//! fetches follow.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use tidepool_io::crash_point;

use crate::server::Node;

pub fn handle(node: &Node, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut moved = false;
    let topics = request
        .topics
        .into_iter()
        .map(|wanted| {
            let topic = node.cluster.topic(&wanted.name.0);
            let partitions = wanted
                .partitions
                .iter()
                .map(|partition| {
                    let outcome = match topic
                        .as_ref()
                        .and_then(|t| t.partitions.get(partition.partition_index as usize))
                    {
                        None => Err(ResponseError::UnknownTopicOrPartition),
                        Some(found) => {
                            let mut state = found.state();
                            state
                                .check_leader(node.id, -1)
                                .and_then(|()| state.delete_records(partition.offset))
                        }
                    };
                    moved |= outcome.is_ok();
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(partition.partition_index);
                    match outcome {
                        Ok(low_watermark) => result.with_low_watermark(low_watermark),
                        Err(error) => result.with_low_watermark(-1).with_error_code(error.code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(wanted.name)
                .with_partitions(partitions)
        })
        .collect();
    if moved {
        // Segments below the new log start are gone; the log start is not recorded yet.
        crash_point!(node.cluster.env.disk, "delete_records.applied");
    }
    if moved && let Err(error) = node.cluster.record_metadata() {
        tracing::error!(%error, "recording moved log start offsets failed");
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
