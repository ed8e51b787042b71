//! CreateTopics: validated against Kafka's rules (names, counts, assignments, configs).

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::{Created, TopicRequest};
use crate::server::Node;

/// Kafka's `ConfigSource` values in config descriptions.
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

pub fn handle(node: &Node, _version: i16, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut name_counts: BTreeMap<&str, usize> = BTreeMap::new();
    for topic in &request.topics {
        *name_counts.entry(topic.name.0.as_str()).or_default() += 1;
    }
    let results = request
        .topics
        .iter()
        .map(|wanted| {
            let result = CreatableTopicResult::default().with_name(wanted.name.clone());
            if name_counts[wanted.name.0.as_str()] > 1 {
                return result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "Create topics request from client contains a duplicate topic name",
                    )));
            }
            match node
                .cluster
                .create_topic(&topic_request(wanted), request.validate_only)
            {
                Ok(done) => created(result, &done),
                Err(refusal) => result
                    .with_error_code(refusal.error.code())
                    .with_error_message(Some(StrBytes::from_string(refusal.message)))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(results)
}

fn topic_request(wanted: &CreatableTopic) -> TopicRequest {
    TopicRequest {
        name: wanted.name.0.to_string(),
        partitions: wanted.num_partitions,
        replication_factor: wanted.replication_factor,
        assignments: wanted
            .assignments
            .iter()
            .map(|assignment| {
                let replicas = assignment.broker_ids.iter().map(|id| id.0).collect();
                (assignment.partition_index, replicas)
            })
            .collect(),
        // A null value asks for the default, which is what leaving it out gives.
        configs: wanted
            .configs
            .iter()
            .filter_map(|config| {
                Some((config.name.to_string(), config.value.as_ref()?.to_string()))
            })
            .collect(),
    }
}

fn created(result: CreatableTopicResult, done: &Created) -> CreatableTopicResult {
    let configs = done
        .topic
        .config
        .entries()
        .into_iter()
        .map(|entry| {
            let source = if entry.is_default {
                SOURCE_DEFAULT
            } else {
                SOURCE_DYNAMIC_TOPIC
            };
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_string(entry.name))
                .with_value(Some(StrBytes::from_string(entry.value)))
                .with_config_source(source)
        })
        .collect();
    result
        .with_topic_id(done.topic.id)
        .with_num_partitions(done.partitions as i32)
        .with_replication_factor(done.replication_factor as i16)
        .with_configs(Some(configs))
}
