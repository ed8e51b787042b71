//! CreatePartitions: grow a topic, placing new partitions or following explicit assignments.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::server::Node;

pub fn handle(node: &Node, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut name_counts: BTreeMap<String, usize> = BTreeMap::new();
    for topic in &request.topics {
        *name_counts.entry(topic.name.0.to_string()).or_default() += 1;
    }
    // A topic named more than once is refused, and answered once, after the others (as
    // Kafka's controller does).
    let mut duplicates = Vec::new();
    for topic in &request.topics {
        if name_counts[topic.name.0.as_str()] > 1 && !duplicates.contains(&topic.name) {
            duplicates.push(topic.name.clone());
        }
    }
    let mut results: Vec<CreatePartitionsTopicResult> = request
        .topics
        .into_iter()
        .filter(|wanted| name_counts[wanted.name.0.as_str()] == 1)
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
    results.extend(duplicates.into_iter().map(|name| {
        CreatePartitionsTopicResult::default()
            .with_name(name)
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(StrBytes::from_static_str("Duplicate topic name.")))
    }));
    CreatePartitionsResponse::default().with_results(results)
}
