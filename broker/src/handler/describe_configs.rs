//! DescribeConfigs: every topic config of a topic (override, broker setting or Kafka's default,
//! with the chain of synonyms on request), and a broker node's configs, read-only.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::configs::{self, DescribedConfig};
use crate::cluster::{Refusal, validate_topic_name};
use crate::server::Node;

/// Kafka's `ConfigResource.Type` values.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// What the request asks to see of each config.
struct Wanted {
    synonyms: bool,
    documentation: bool,
}

pub fn handle(
    node: &Node,
    version: i16,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let wanted = Wanted {
        synonyms: request.include_synonyms,
        documentation: version >= 3 && request.include_documentation,
    };
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match describe(node, resource) {
                Ok(described) => {
                    let configs = described
                        .into_iter()
                        .filter(|config| is_asked_for(resource, &config.name))
                        .map(|config| render(config, &wanted))
                        .collect();
                    result.with_configs(configs)
                }
                Err(refusal) => result
                    .with_error_code(refusal.error.code())
                    .with_error_message(Some(StrBytes::from_string(refusal.message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// A null or empty key list asks for every config (Kafka treats both alike); unknown keys
/// are ignored.
fn is_asked_for(resource: &DescribeConfigsResource, name: &str) -> bool {
    match &resource.configuration_keys {
        Some(keys) if !keys.is_empty() => keys.iter().any(|key| key.as_str() == name),
        _ => true,
    }
}

fn describe(
    node: &Node,
    resource: &DescribeConfigsResource,
) -> Result<Vec<DescribedConfig>, Refusal> {
    let name = resource.resource_name.as_str();
    match resource.resource_type {
        RESOURCE_TOPIC => {
            validate_topic_name(name)?;
            let topic = node.cluster.topic(name).ok_or_else(|| Refusal {
                error: ResponseError::UnknownTopicOrPartition,
                message: format!("The topic '{name}' does not exist."),
            })?;
            Ok(configs::describe_topic(&topic.config, &node.cluster.config))
        }
        // The empty name is the cluster-wide default resource, which holds only configs set
        // dynamically for every broker: Tidepool has none.
        RESOURCE_BROKER if name.is_empty() => Ok(Vec::new()),
        RESOURCE_BROKER => {
            check_broker_id(node.id, name, " or empty string")?;
            Ok(configs::describe_broker(&node.cluster.config, node.id))
        }
        other => Err(unsupported_resource_type(other)),
    }
}

/// A broker resource names the node answering, as in Kafka (a client sends a broker's
/// configs request to that broker).
pub(crate) fn check_broker_id(node_id: i32, name: &str, or_empty: &str) -> Result<(), Refusal> {
    let invalid = |message: String| {
        Err(Refusal {
            error: ResponseError::InvalidRequest,
            message,
        })
    };
    match name.parse::<i32>() {
        Err(_) => invalid(format!("Broker id must be an integer, but it is: {name}")),
        Ok(id) if id != node_id => invalid(format!(
            "Unexpected broker id, expected {node_id}{or_empty}, but received {name}"
        )),
        Ok(_) => Ok(()),
    }
}

/// Kafka answers resource types it does not know with INVALID_REQUEST; Tidepool also does so
/// for the ones it does not serve (broker loggers, client metrics, groups).
pub(crate) fn unsupported_resource_type(resource_type: i8) -> Refusal {
    Refusal {
        error: ResponseError::InvalidRequest,
        message: format!("Unknown resource type {resource_type}"),
    }
}

fn render(config: DescribedConfig, wanted: &Wanted) -> DescribeConfigsResourceResult {
    let synonyms = if wanted.synonyms {
        config
            .synonyms
            .into_iter()
            .map(|synonym| {
                DescribeConfigsSynonym::default()
                    .with_name(StrBytes::from_string(synonym.name))
                    .with_value(Some(StrBytes::from_string(synonym.value)))
                    .with_source(synonym.source as i8)
            })
            .collect()
    } else {
        Vec::new()
    };
    let documentation = wanted
        .documentation
        .then(|| StrBytes::from_static_str(config.documentation));
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(config.name))
        .with_value(Some(StrBytes::from_string(config.value)))
        .with_read_only(config.read_only)
        .with_config_source(config.source as i8)
        .with_is_sensitive(false)
        .with_synonyms(synonyms)
        .with_config_type(config.config_type as i8)
        .with_documentation(documentation)
}
