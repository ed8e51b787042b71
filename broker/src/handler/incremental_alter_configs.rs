//! IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT on single topic configs; the
//! resulting override set is checked as AlterConfigs checks it. APPEND and SUBTRACT apply to
//! list configs only (`cleanup.policy` and the throttled-replica lists), as in Kafka.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::alter_configs::{check_no_duplicates, error_fields, null_value, refuse_broker_change};
use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC, unsupported_resource_type};
use crate::cluster::configs::{inherited_value, is_list_config};
use crate::cluster::{Refusal, validate_topic_name};
use crate::config::Config;
use crate::server::Node;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Set,
    Delete,
    Append,
    Subtract,
}

impl Operation {
    /// Kafka's `AlterConfigOp.OpType` ids. Kafka answers an unknown id with
    /// UNKNOWN_SERVER_ERROR (its decoding throws); so does Tidepool, with a message.
    fn from_id(id: i8) -> Result<Operation, Refusal> {
        match id {
            0 => Ok(Operation::Set),
            1 => Ok(Operation::Delete),
            2 => Ok(Operation::Append),
            3 => Ok(Operation::Subtract),
            other => Err(Refusal {
                error: ResponseError::UnknownServerError,
                message: format!("Unknown config operation {other}"),
            }),
        }
    }
}

/// One requested change: config name, operation, value (none for DELETE).
struct Change {
    name: String,
    operation: Operation,
    value: String,
}

pub fn handle(
    node: &Node,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let responses = request
        .resources
        .iter()
        .map(|resource| {
            let (error_code, error_message) =
                error_fields(alter(node, resource, request.validate_only));
            AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone())
                .with_error_code(error_code)
                .with_error_message(error_message)
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

fn alter(node: &Node, resource: &AlterConfigsResource, validate_only: bool) -> Result<(), Refusal> {
    let names: Vec<&str> = resource.configs.iter().map(|c| c.name.as_str()).collect();
    check_no_duplicates(&names)?;
    let changes = resource
        .configs
        .iter()
        .map(|config| {
            let operation = Operation::from_id(config.config_operation)?;
            let value = match (&config.value, operation) {
                (_, Operation::Delete) => String::new(),
                (Some(value), _) => value.to_string(),
                (None, _) => return Err(null_value(&config.name)),
            };
            Ok(Change {
                name: config.name.to_string(),
                operation,
                value,
            })
        })
        .collect::<Result<Vec<Change>, Refusal>>()?;
    let name = resource.resource_name.as_str();
    match resource.resource_type {
        RESOURCE_TOPIC => {
            validate_topic_name(name)?;
            let broker = &node.cluster.config;
            node.cluster.update_topic_config(
                name,
                |current| apply(current, &changes, broker),
                validate_only,
            )
        }
        RESOURCE_BROKER => refuse_broker_change(node.id, name, &names),
        other => Err(unsupported_resource_type(other)),
    }
}

/// The override set after `changes`, in order. DELETE of a config that is not set (or not a
/// config at all) changes nothing, as in Kafka.
fn apply(
    current: &BTreeMap<String, String>,
    changes: &[Change],
    broker: &Config,
) -> Result<BTreeMap<String, String>, Refusal> {
    let mut overrides = current.clone();
    for change in changes {
        match change.operation {
            Operation::Set => {
                overrides.insert(change.name.clone(), change.value.clone());
            }
            Operation::Delete => {
                overrides.remove(&change.name);
            }
            Operation::Append | Operation::Subtract => {
                let list = edit_list(&overrides, change, broker)?;
                overrides.insert(change.name.clone(), list);
            }
        }
    }
    Ok(overrides)
}

/// APPEND adds the items not there yet; SUBTRACT removes every occurrence. Without an override
/// the list starts from what the topic inherits (the broker's setting, which is Kafka's
/// default unless the broker was configured otherwise; Kafka starts from its built-in
/// default).
fn edit_list(
    overrides: &BTreeMap<String, String>,
    change: &Change,
    broker: &Config,
) -> Result<String, Refusal> {
    if !is_list_config(&change.name) {
        let verb = match change.operation {
            Operation::Append => "APPEND",
            _ => "SUBTRACT",
        };
        return Err(Refusal {
            error: ResponseError::InvalidConfig,
            message: format!(
                "Can't {verb} to key {} because its type is not LIST.",
                change.name
            ),
        });
    }
    let base = overrides
        .get(&change.name)
        .cloned()
        .or_else(|| inherited_value(broker, &change.name))
        .unwrap_or_default();
    let mut items: Vec<String> = base
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect();
    for item in change.value.split(',').map(str::trim) {
        if change.operation == Operation::Append {
            if !items.iter().any(|have| have == item) {
                items.push(item.to_owned());
            }
        } else {
            items.retain(|have| have != item);
        }
    }
    Ok(items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(name: &str, operation: Operation, value: &str) -> Change {
        Change {
            name: name.to_owned(),
            operation,
            value: value.to_owned(),
        }
    }

    #[test]
    fn append_and_subtract_edit_the_inherited_list() {
        let broker = Config::default();
        let none = BTreeMap::new();
        let appended = apply(
            &none,
            &[change("cleanup.policy", Operation::Append, "compact")],
            &broker,
        )
        .unwrap();
        assert_eq!(appended["cleanup.policy"], "delete,compact");
        let again = apply(
            &appended,
            &[change("cleanup.policy", Operation::Append, "delete")],
            &broker,
        )
        .unwrap();
        assert_eq!(again["cleanup.policy"], "delete,compact");
        let subtracted = apply(
            &again,
            &[change("cleanup.policy", Operation::Subtract, "delete")],
            &broker,
        )
        .unwrap();
        assert_eq!(subtracted["cleanup.policy"], "compact");
    }

    #[test]
    fn append_to_a_scalar_config_is_invalid_config() {
        let refused = apply(
            &BTreeMap::new(),
            &[change("segment.bytes", Operation::Append, "5")],
            &Config::default(),
        )
        .unwrap_err();
        assert_eq!(refused.error, ResponseError::InvalidConfig);
        assert_eq!(
            refused.message,
            "Can't APPEND to key segment.bytes because its type is not LIST."
        );
    }
}
