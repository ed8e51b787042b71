//! CreatePartitions: grow a topic, placing new partitions or following explicit assignments.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::server::Node;

pub fn handle(node: &Node, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let results = request
        .topics
        .into_iter()
        .map(|wanted| {
            let assignments: Option<Vec<Vec<i32>>> = wanted.assignments.map(|assignments| {
                assignments
                    .into_iter()
                    .map(|assignment| assignment.broker_ids.into_iter().map(|id| id.0).collect())
                    .collect()
            });
            let outcome = node.cluster.create_partitions(
                &wanted.name.0,
                wanted.count,
                assignments.as_deref(),
                request.validate_only,
            );
            let result = CreatePartitionsTopicResult::default().with_name(wanted.name);
            match outcome {
                Ok(()) => result,
                Err(refusal) => result
                    .with_error_code(refusal.error.code())
                    .with_error_message(Some(StrBytes::from_string(refusal.message))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
