//! Topic and broker configs: DescribeConfigs, and IncrementalAlterConfigs with a fallback to
//! AlterConfigs for brokers older than Kafka 2.3.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    AlterConfigsRequest, DescribeConfigsRequest, IncrementalAlterConfigsRequest,
    alter_configs_request, incremental_alter_configs_request,
};
use kafka_protocol::protocol::StrBytes;

use super::{Admin, Route, check};
use crate::error::{Error, Result};
use crate::versions;

/// What a config belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConfigResource {
    Topic(String),
    /// A broker by node id. Its configs are asked of that broker itself, as Kafka requires.
    Broker(i32),
}

impl ConfigResource {
    /// Kafka's `ConfigResource.Type` id.
    fn type_id(&self) -> i8 {
        match self {
            ConfigResource::Topic(_) => 2,
            ConfigResource::Broker(_) => 4,
        }
    }

    fn name(&self) -> String {
        match self {
            ConfigResource::Topic(topic) => topic.clone(),
            ConfigResource::Broker(node) => node.to_string(),
        }
    }

    fn route(&self) -> Route<'static> {
        match self {
            ConfigResource::Topic(_) => Route::Any,
            ConfigResource::Broker(node) => Route::Node(*node),
        }
    }

    /// The source of a value set on this resource itself (what AlterConfigs replaces).
    fn own_source(&self) -> ConfigSource {
        match self {
            ConfigResource::Topic(_) => ConfigSource::DynamicTopic,
            ConfigResource::Broker(_) => ConfigSource::DynamicBroker,
        }
    }
}

impl std::fmt::Display for ConfigResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigResource::Topic(topic) => write!(f, "topic {topic}"),
            ConfigResource::Broker(node) => write!(f, "broker {node}"),
        }
    }
}

/// Where a config's value comes from (Kafka's `ConfigEntry.ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigSource {
    /// Set on the topic (`DYNAMIC_TOPIC_CONFIG`).
    DynamicTopic,
    /// Set at run time for this broker (`DYNAMIC_BROKER_CONFIG`).
    DynamicBroker,
    /// Set at run time for every broker (`DYNAMIC_DEFAULT_BROKER_CONFIG`).
    DynamicDefaultBroker,
    /// From the broker's configuration file (`STATIC_BROKER_CONFIG`).
    StaticBroker,
    /// Kafka's built-in default (`DEFAULT_CONFIG`).
    Default,
    DynamicBrokerLogger,
    ClientMetrics,
    Group,
    /// A source this client does not know, or none given.
    Unknown(i8),
}

impl ConfigSource {
    pub fn from_id(id: i8) -> ConfigSource {
        match id {
            1 => ConfigSource::DynamicTopic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            6 => ConfigSource::DynamicBrokerLogger,
            7 => ConfigSource::ClientMetrics,
            8 => ConfigSource::Group,
            other => ConfigSource::Unknown(other),
        }
    }

    /// The name Kafka's tools print (`DYNAMIC_TOPIC_CONFIG`).
    pub fn name(self) -> &'static str {
        match self {
            ConfigSource::DynamicTopic => "DYNAMIC_TOPIC_CONFIG",
            ConfigSource::DynamicBroker => "DYNAMIC_BROKER_CONFIG",
            ConfigSource::DynamicDefaultBroker => "DYNAMIC_DEFAULT_BROKER_CONFIG",
            ConfigSource::StaticBroker => "STATIC_BROKER_CONFIG",
            ConfigSource::Default => "DEFAULT_CONFIG",
            ConfigSource::DynamicBrokerLogger => "DYNAMIC_BROKER_LOGGER_CONFIG",
            ConfigSource::ClientMetrics => "CLIENT_METRICS_CONFIG",
            ConfigSource::Group => "GROUP_CONFIG",
            ConfigSource::Unknown(_) => "UNKNOWN",
        }
    }
}

/// One config as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    /// `None` for sensitive configs (passwords), which brokers never reveal.
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub sensitive: bool,
    /// Whether the value is Kafka's built-in default.
    pub is_default: bool,
}

/// One change to a resource's configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterOp {
    /// Set `name` to a value.
    Set(String, String),
    /// Remove the override: the config goes back to what it inherits.
    Delete(String),
    /// Add items to a list config (`cleanup.policy`) unless they are there.
    Append(String, String),
    /// Remove items from a list config.
    Subtract(String, String),
}

impl AlterOp {
    fn name(&self) -> &str {
        match self {
            AlterOp::Set(name, _)
            | AlterOp::Delete(name)
            | AlterOp::Append(name, _)
            | AlterOp::Subtract(name, _) => name,
        }
    }

    /// Kafka's `AlterConfigOp.OpType` id and the value sent with it.
    fn wire(&self) -> (i8, Option<&str>) {
        match self {
            AlterOp::Set(_, value) => (0, Some(value)),
            AlterOp::Delete(_) => (1, None),
            AlterOp::Append(_, value) => (2, Some(value)),
            AlterOp::Subtract(_, value) => (3, Some(value)),
        }
    }
}

impl Admin {
    /// Every config of a topic or broker with its value and where the value comes from,
    /// sorted by name.
    pub async fn describe_configs(&self, resource: ConfigResource) -> Result<Vec<ConfigEntry>> {
        let request = DescribeConfigsRequest::default()
            .with_include_synonyms(false)
            .with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(resource.type_id())
                    .with_resource_name(StrBytes::from_string(resource.name()))
                    .with_configuration_keys(None),
            ]);
        self.call(resource.route(), |node| {
            let request = request.clone();
            let resource = &resource;
            async move {
                let response = self
                    .client
                    .send(node, versions::DESCRIBE_CONFIGS, |_| request)
                    .await?;
                let result = response
                    .results
                    .into_iter()
                    .next()
                    .ok_or_else(|| super::no_answer(&resource.to_string()))?;
                check(
                    result.error_code,
                    || format!("DescribeConfigs for {resource}"),
                    result.error_message,
                )?;
                let mut entries: Vec<ConfigEntry> = result
                    .configs
                    .into_iter()
                    .map(|config| {
                        let source = ConfigSource::from_id(config.config_source);
                        ConfigEntry {
                            name: config.name.to_string(),
                            value: config.value.map(|value| value.to_string()),
                            source,
                            read_only: config.read_only,
                            sensitive: config.is_sensitive,
                            is_default: source == ConfigSource::Default,
                        }
                    })
                    .collect();
                entries.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(entries)
            }
        })
        .await
    }

    /// Applies `ops` in one IncrementalAlterConfigs request: the broker checks the resulting
    /// config set as a whole, so either every change is made or none (`INVALID_CONFIG` with the
    /// broker's reason). Against a broker without IncrementalAlterConfigs (before Kafka 2.3)
    /// it reads the overrides, applies `ops` to them and writes them back with AlterConfigs,
    /// which is not atomic against a concurrent change.
    pub async fn alter_configs(&self, resource: ConfigResource, ops: Vec<AlterOp>) -> Result<()> {
        match self.incremental_alter_configs(&resource, &ops).await {
            Err(Error::UnsupportedVersion { .. }) => {
                tracing::debug!(%resource, "no IncrementalAlterConfigs: read, modify, write");
                let current = self.describe_configs(resource.clone()).await?;
                let overrides = apply_to_overrides(&resource, &current, &ops)?;
                self.replace_configs(&resource, overrides).await
            }
            outcome => outcome,
        }
    }

    async fn incremental_alter_configs(
        &self,
        resource: &ConfigResource,
        ops: &[AlterOp],
    ) -> Result<()> {
        use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
        let configs = ops
            .iter()
            .map(|op| {
                let (operation, value) = op.wire();
                AlterableConfig::default()
                    .with_name(StrBytes::from_string(op.name().to_string()))
                    .with_config_operation(operation)
                    .with_value(value.map(|value| StrBytes::from_string(value.to_string())))
            })
            .collect();
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(resource.type_id())
                .with_resource_name(StrBytes::from_string(resource.name()))
                .with_configs(configs),
        ]);
        self.call(resource.route(), |node| {
            let request = request.clone();
            async move {
                let response = self
                    .client
                    .send(node, versions::INCREMENTAL_ALTER_CONFIGS, |_| request)
                    .await?;
                let answer = response
                    .responses
                    .into_iter()
                    .next()
                    .ok_or_else(|| super::no_answer(&resource.to_string()))?;
                check(
                    answer.error_code,
                    || format!("IncrementalAlterConfigs for {resource}"),
                    answer.error_message,
                )
            }
        })
        .await
    }

    /// AlterConfigs: the resource's whole override set becomes `overrides`.
    async fn replace_configs(
        &self,
        resource: &ConfigResource,
        overrides: BTreeMap<String, String>,
    ) -> Result<()> {
        use alter_configs_request::{AlterConfigsResource, AlterableConfig};
        let configs = overrides
            .into_iter()
            .map(|(name, value)| {
                AlterableConfig::default()
                    .with_name(StrBytes::from_string(name))
                    .with_value(Some(StrBytes::from_string(value)))
            })
            .collect();
        let request = AlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(resource.type_id())
                .with_resource_name(StrBytes::from_string(resource.name()))
                .with_configs(configs),
        ]);
        self.call(resource.route(), |node| {
            let request = request.clone();
            async move {
                let response = self
                    .client
                    .send(node, versions::ALTER_CONFIGS, |_| request)
                    .await?;
                let answer = response
                    .responses
                    .into_iter()
                    .next()
                    .ok_or_else(|| super::no_answer(&resource.to_string()))?;
                check(
                    answer.error_code,
                    || format!("AlterConfigs for {resource}"),
                    answer.error_message,
                )
            }
        })
        .await
    }
}

/// The override set AlterConfigs must write so the resource ends as `ops` would leave it.
/// APPEND and SUBTRACT start from the effective value when there is no override, as the
/// broker does for IncrementalAlterConfigs.
fn apply_to_overrides(
    resource: &ConfigResource,
    current: &[ConfigEntry],
    ops: &[AlterOp],
) -> Result<BTreeMap<String, String>> {
    let own = resource.own_source();
    let mut overrides = BTreeMap::new();
    for entry in current.iter().filter(|entry| entry.source == own) {
        // Writing the set back without a value the broker hid would erase it.
        let value = entry.value.clone().ok_or_else(|| {
            Error::Invalid(format!(
                "{resource} has a sensitive override {} that AlterConfigs would erase; \
                 this broker has no IncrementalAlterConfigs",
                entry.name
            ))
        })?;
        overrides.insert(entry.name.clone(), value);
    }
    let effective = |name: &str, overrides: &BTreeMap<String, String>| -> Vec<String> {
        let value = overrides.get(name).cloned().or_else(|| {
            current
                .iter()
                .find(|entry| entry.name == name)
                .and_then(|entry| entry.value.clone())
        });
        value
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_string)
            .collect()
    };
    for op in ops {
        match op {
            AlterOp::Set(name, value) => {
                overrides.insert(name.clone(), value.clone());
            }
            AlterOp::Delete(name) => {
                overrides.remove(name);
            }
            AlterOp::Append(name, value) => {
                let mut items = effective(name, &overrides);
                for item in value.split(',').map(str::trim) {
                    if !items.iter().any(|have| have == item) {
                        items.push(item.to_string());
                    }
                }
                overrides.insert(name.clone(), items.join(","));
            }
            AlterOp::Subtract(name, value) => {
                let mut items = effective(name, &overrides);
                let removed: Vec<&str> = value.split(',').map(str::trim).collect();
                items.retain(|have| !removed.contains(&have.as_str()));
                overrides.insert(name.clone(), items.join(","));
            }
        }
    }
    Ok(overrides)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, value: Option<&str>, source: ConfigSource) -> ConfigEntry {
        ConfigEntry {
            name: name.to_string(),
            value: value.map(str::to_string),
            source,
            read_only: false,
            sensitive: value.is_none(),
            is_default: source == ConfigSource::Default,
        }
    }

    fn topic() -> ConfigResource {
        ConfigResource::Topic("t".into())
    }

    #[test]
    fn the_fallback_keeps_other_overrides_and_applies_each_op() {
        let current = [
            entry("retention.ms", Some("1000"), ConfigSource::DynamicTopic),
            entry("segment.ms", Some("60000"), ConfigSource::DynamicTopic),
            entry("cleanup.policy", Some("delete"), ConfigSource::Default),
            entry("max.message.bytes", Some("1048588"), ConfigSource::Default),
        ];
        let ops = [
            AlterOp::Delete("segment.ms".into()),
            AlterOp::Set("max.message.bytes".into(), "2000".into()),
            AlterOp::Append("cleanup.policy".into(), "compact".into()),
        ];
        let overrides = apply_to_overrides(&topic(), &current, &ops).unwrap();
        let expected: BTreeMap<String, String> = [
            ("cleanup.policy", "delete,compact"),
            ("max.message.bytes", "2000"),
            ("retention.ms", "1000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(overrides, expected);
    }

    #[test]
    fn the_fallback_subtracts_from_the_override_when_there_is_one() {
        let current = [entry(
            "cleanup.policy",
            Some("compact,delete"),
            ConfigSource::DynamicTopic,
        )];
        let ops = [AlterOp::Subtract("cleanup.policy".into(), "delete".into())];
        let overrides = apply_to_overrides(&topic(), &current, &ops).unwrap();
        assert_eq!(overrides["cleanup.policy"], "compact");
    }

    #[test]
    fn the_fallback_refuses_to_erase_a_hidden_sensitive_override() {
        let broker = ConfigResource::Broker(1);
        let current = [entry("ssl.key.password", None, ConfigSource::DynamicBroker)];
        let ops = [AlterOp::Set("log.cleaner.threads".into(), "2".into())];
        let error = apply_to_overrides(&broker, &current, &ops).unwrap_err();
        assert!(matches!(error, Error::Invalid(_)), "{error}");
    }

    #[test]
    fn config_sources_read_as_kafka_names_them() {
        assert_eq!(ConfigSource::from_id(1).name(), "DYNAMIC_TOPIC_CONFIG");
        assert_eq!(ConfigSource::from_id(5), ConfigSource::Default);
        assert_eq!(ConfigSource::from_id(42), ConfigSource::Unknown(42));
    }
}
