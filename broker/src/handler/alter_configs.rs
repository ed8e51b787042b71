//! AlterConfigs: replaces a topic's whole override set (configs left out go back to their
//! defaults, as in Kafka). Broker configs cannot be altered: Tidepool's are fixed at start.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::describe_configs::{
    RESOURCE_BROKER, RESOURCE_TOPIC, check_broker_id, unsupported_resource_type,
};
use crate::cluster::{Refusal, validate_topic_name};
use crate::server::Node;

pub fn handle(node: &Node, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let responses = request
        .resources
        .iter()
        .map(|resource| {
            let outcome = alter(node, resource, request.validate_only);
            answer(resource.resource_type, &resource.resource_name, outcome)
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

fn alter(node: &Node, resource: &AlterConfigsResource, validate_only: bool) -> Result<(), Refusal> {
    let names: Vec<&str> = resource.configs.iter().map(|c| c.name.as_str()).collect();
    check_no_duplicates(&names)?;
    let name = resource.resource_name.as_str();
    match resource.resource_type {
        RESOURCE_TOPIC => {
            let mut overrides = BTreeMap::new();
            for config in &resource.configs {
                let value = config
                    .value
                    .as_ref()
                    .ok_or_else(|| null_value(&config.name))?;
                overrides.insert(config.name.to_string(), value.to_string());
            }
            validate_topic_name(name)?;
            node.cluster
                .alter_topic_config(name, overrides, validate_only)
        }
        RESOURCE_BROKER => refuse_broker_change(node.id, name, &names),
        other => Err(unsupported_resource_type(other)),
    }
}

fn answer(
    resource_type: i8,
    resource_name: &StrBytes,
    outcome: Result<(), Refusal>,
) -> AlterConfigsResourceResponse {
    let (error_code, error_message) = error_fields(outcome);
    AlterConfigsResourceResponse::default()
        .with_resource_type(resource_type)
        .with_resource_name(resource_name.clone())
        .with_error_code(error_code)
        .with_error_message(error_message)
}

/// A resource's error code and message, as both AlterConfigs and IncrementalAlterConfigs give
/// them (a null message on success).
pub(crate) fn error_fields(outcome: Result<(), Refusal>) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (0, None),
        Err(refusal) => (
            refusal.error.code(),
            Some(StrBytes::from_string(refusal.message)),
        ),
    }
}

/// Kafka refuses a resource naming one config twice, before anything else.
pub(crate) fn check_no_duplicates(names: &[&str]) -> Result<(), Refusal> {
    let distinct: BTreeSet<&str> = names.iter().copied().collect();
    if distinct.len() != names.len() {
        return Err(Refusal {
            error: ResponseError::InvalidRequest,
            message: "Error due to duplicate config keys".to_owned(),
        });
    }
    Ok(())
}

pub(crate) fn null_value(name: &str) -> Refusal {
    Refusal {
        error: ResponseError::InvalidRequest,
        message: format!("Null value not supported for : {name}"),
    }
}

/// Broker configs are read-only in Tidepool. Kafka refuses a broker config it cannot change
/// at run time with INVALID_REQUEST "Cannot update these configs dynamically: [...]"; Tidepool
/// gives that answer for every broker config. An empty change changes nothing and succeeds.
pub(crate) fn refuse_broker_change(
    node_id: i32,
    name: &str,
    names: &[&str],
) -> Result<(), Refusal> {
    if !name.is_empty() {
        check_broker_id(node_id, name, "")?;
    }
    if names.is_empty() {
        return Ok(());
    }
    Err(Refusal {
        error: ResponseError::InvalidRequest,
        message: format!(
            "Cannot update these configs dynamically: [{}]",
            names.join(", ")
        ),
    })
}
