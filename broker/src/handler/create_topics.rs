//! CreateTopics: validated against Kafka's rules (names, counts, assignments, configs); the
//! answer lists every topic config as DescribeConfigs would (v5+).

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::configs::{describe_topic, topic_config_with};
use crate::cluster::{Created, Refusal, TopicRequest, validate_topic_name};
use crate::config::Config;
use crate::server::Node;

pub fn handle(node: &Node, _version: i16, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut name_counts: BTreeMap<&str, usize> = BTreeMap::new();
    for topic in &request.topics {
        *name_counts.entry(topic.name.0.as_str()).or_default() += 1;
    }
    let mut results: Vec<CreatableTopicResult> = request
        .topics
        .iter()
        .filter(|wanted| name_counts[wanted.name.0.as_str()] == 1)
        .map(|wanted| {
            let result = CreatableTopicResult::default().with_name(wanted.name.clone());
            let outcome = topic_request(wanted, &node.cluster.config)
                .and_then(|wanted| node.cluster.create_topic(&wanted, request.validate_only));
            match outcome {
                Ok(done) => created(result, &done, &node.cluster.config),
                Err(refusal) => result
                    .with_error_code(refusal.error.code())
                    .with_error_message(Some(StrBytes::from_string(refusal.message)))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            }
        })
        .collect();
    // A name given more than once is refused, and answered once, after the others (Kafka's
    // controller does the same).
    let mut answered = BTreeMap::new();
    for wanted in &request.topics {
        let name = wanted.name.0.as_str();
        if name_counts[name] > 1 && answered.insert(name, ()).is_none() {
            results.push(
                CreatableTopicResult::default()
                    .with_name(wanted.name.clone())
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(StrBytes::from_static_str("Duplicate topic name.")))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            );
        }
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// The request as the controller takes it, its configs checked with Kafka's messages and kept
/// as Kafka prints them. A config named twice takes its last value, as in Kafka; a null value
/// is INVALID_CONFIG, as in Kafka 4.
fn topic_request(wanted: &CreatableTopic, broker: &Config) -> Result<TopicRequest, Refusal> {
    let invalid_config = |message: String| Refusal {
        error: ResponseError::InvalidConfig,
        message,
    };
    // A bad name is reported before bad configs, as the controller would.
    validate_topic_name(wanted.name.0.as_str())?;
    let mut overrides = BTreeMap::new();
    for config in &wanted.configs {
        let value = config.value.as_ref().ok_or_else(|| {
            invalid_config(format!(
                "Null value not supported for topic configs: {}",
                config.name.as_str()
            ))
        })?;
        overrides.insert(config.name.to_string(), value.to_string());
    }
    let checked = topic_config_with(&broker.topic_defaults, &overrides)
        .map_err(|invalid| invalid_config(invalid.message))?;
    Ok(TopicRequest {
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
        configs: checked.overrides.into_iter().collect(),
    })
}

fn created(result: CreatableTopicResult, done: &Created, broker: &Config) -> CreatableTopicResult {
    let configs = describe_topic(&done.topic.config, broker)
        .into_iter()
        .map(|config| {
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_string(config.name))
                .with_value(Some(StrBytes::from_string(config.value)))
                .with_read_only(config.read_only)
                .with_config_source(config.source as i8)
                .with_is_sensitive(false)
        })
        .collect();
    result
        .with_error_message(None)
        .with_topic_id(done.topic.id)
        .with_num_partitions(done.partitions as i32)
        .with_replication_factor(done.replication_factor as i16)
        .with_configs(Some(configs))
}
