//! Topic and broker configs as Kafka describes and changes them: Kafka's validation and
//! messages for every topic config, where each value comes from (a topic override, the broker's
//! setting, or Kafka's built-in default), and altering a topic's override set.
//!
//! Kafka semantics: a topic's overrides are one set that AlterConfigs replaces whole;
//! IncrementalAlterConfigs edits it and the result is checked the same way. Broker configs are
//! read-only here: Tidepool's `Config` is fixed when the broker starts.

mod catalog;

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;

use super::{Cluster, Refusal, Topic, lock, storage_refusal};
use crate::config::{Config, InvalidConfig, TopicConfig};
use crate::partition::log_config;
use catalog::{Rule, TOPIC_CONFIGS};

/// Kafka's `ConfigSource`: where a described value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigSource {
    /// Set on the topic (`DYNAMIC_TOPIC_CONFIG`).
    DynamicTopic = 1,
    /// Set in the broker's configuration (`STATIC_BROKER_CONFIG`): Tidepool reports this when
    /// its `Config` differs from Kafka's built-in default.
    StaticBroker = 4,
    /// Kafka's built-in default (`DEFAULT_CONFIG`).
    Default = 5,
}

/// Kafka's `ConfigType` in DescribeConfigs v3+.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
}

/// One link of a config's chain of sources, most specific first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synonym {
    pub name: String,
    pub value: String,
    pub source: ConfigSource,
}

/// One config as DescribeConfigs (and CreateTopics) report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedConfig {
    pub name: String,
    pub value: String,
    pub source: ConfigSource,
    pub read_only: bool,
    /// Topic override, then broker setting, then Kafka's default; each only when it exists.
    pub synonyms: Vec<Synonym>,
    pub config_type: ConfigType,
    pub documentation: &'static str,
}

fn refused(name: &str, shown: impl std::fmt::Display, why: &str) -> InvalidConfig {
    InvalidConfig {
        message: format!("Invalid value {shown} for configuration {name}: {why}"),
    }
}

/// Kafka's range messages, for a number already parsed.
fn check_range(name: &str, number: i64, at_least: i64, at_most: i64) -> Result<(), InvalidConfig> {
    if number < at_least {
        return Err(refused(
            name,
            number,
            &format!("Value must be at least {at_least}"),
        ));
    }
    if number > at_most {
        return Err(refused(
            name,
            number,
            &format!("Value must be no more than {at_most}"),
        ));
    }
    Ok(())
}

/// Doubles as Java prints them (Kafka describes `1` as `1.0`).
fn render_double(number: f64) -> String {
    if number.fract() == 0.0 && number.abs() < 1e7 {
        format!("{number:.1}")
    } else {
        number.to_string()
    }
}

/// Kafka's LIST parsing: an empty value is an empty list, otherwise every comma-separated
/// item, trimmed.
fn list_items(value: &str) -> Vec<&str> {
    if value.is_empty() {
        Vec::new()
    } else {
        value.split(',').map(str::trim).collect()
    }
}

/// Checks one topic config value as Kafka's `ConfigDef` does (values are trimmed first) and
/// returns it as Kafka prints it back.
pub(crate) fn normalize(name: &str, value: &str) -> Result<String, InvalidConfig> {
    let def = catalog::topic_config(name).ok_or_else(|| InvalidConfig {
        message: format!("Unknown topic config name: {name}"),
    })?;
    let trimmed = value.trim();
    match def.rule {
        Rule::Int { at_least, at_most } => {
            let number: i32 = trimmed
                .parse()
                .map_err(|_| refused(name, value, "Not a number of type INT"))?;
            check_range(name, number.into(), at_least, at_most)?;
            Ok(number.to_string())
        }
        Rule::Long { at_least } => {
            let number: i64 = trimmed
                .parse()
                .map_err(|_| refused(name, value, "Not a number of type LONG"))?;
            check_range(name, number, at_least, i64::MAX)?;
            Ok(number.to_string())
        }
        Rule::GzipLevel => {
            let number: i32 = trimmed
                .parse()
                .map_err(|_| refused(name, value, "Not a number of type INT"))?;
            if number != -1 && !(1..=9).contains(&number) {
                return Err(refused(
                    name,
                    number,
                    "Value must be between 1 and 9 or equal to -1",
                ));
            }
            Ok(number.to_string())
        }
        Rule::Ratio => {
            let number: f64 = trimmed
                .parse()
                .ok()
                .filter(|number: &f64| !number.is_nan())
                .ok_or_else(|| refused(name, value, "Not a number of type DOUBLE"))?;
            if number < 0.0 {
                return Err(refused(
                    name,
                    render_double(number),
                    "Value must be at least 0",
                ));
            }
            if number > 1.0 {
                return Err(refused(
                    name,
                    render_double(number),
                    "Value must be no more than 1",
                ));
            }
            Ok(render_double(number))
        }
        Rule::Boolean | Rule::RemoteStorage => {
            let flag = trimmed.to_ascii_lowercase();
            if flag != "true" && flag != "false" {
                return Err(refused(
                    name,
                    value,
                    "Expected value to be either true or false",
                ));
            }
            if def.rule == Rule::RemoteStorage && flag == "true" {
                return Err(InvalidConfig {
                    message: "Tiered Storage functionality is disabled in the broker. \
                              Topic cannot be configured with remote log storage."
                        .to_owned(),
                });
            }
            Ok(flag)
        }
        Rule::OneOf(allowed) => {
            if !allowed.contains(&trimmed) {
                let why = format!("String must be one of: {}", allowed.join(", "));
                return Err(refused(name, value, &why));
            }
            Ok(trimmed.to_owned())
        }
        Rule::ListOf(allowed) => {
            let items = list_items(trimmed);
            if items.iter().any(|item| item.is_empty()) {
                return Err(InvalidConfig {
                    message: format!("Configuration '{name}' values must not be empty."),
                });
            }
            if let Some(item) = items.iter().find(|item| !allowed.contains(item)) {
                let why = format!("String must be one of: {}", allowed.join(", "));
                return Err(refused(name, item, &why));
            }
            Ok(items.join(","))
        }
        Rule::ThrottledReplicas => {
            let items: Vec<&str> = list_items(trimmed)
                .into_iter()
                .filter(|item| !item.is_empty())
                .collect();
            let pair = |item: &str| {
                item.split_once(':').is_some_and(|(partition, broker)| {
                    [partition, broker].iter().all(|part| {
                        !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit())
                    })
                })
            };
            if items != ["*"] && !items.iter().all(|item| pair(item)) {
                let why = format!(
                    "{name} must be the literal '*' or a list of replicas in the following \
                     format: [partitionId]:[brokerId],[partitionId]:[brokerId],..."
                );
                return Err(refused(name, format!("[{}]", items.join(", ")), &why));
            }
            Ok(items.join(","))
        }
    }
}

/// The topic config an override set gives on `defaults`, checked as Kafka checks it: each
/// value (Kafka's messages), then the whole (`TopicConfig::with_overrides`, and
/// `min.compaction.lag.ms` ≤ `max.compaction.lag.ms`). Overrides are kept as Kafka prints them.
pub fn topic_config_with(
    defaults: &TopicConfig,
    overrides: &BTreeMap<String, String>,
) -> Result<TopicConfig, InvalidConfig> {
    let normalized = overrides
        .iter()
        .map(|(name, value)| Ok((name.as_str(), normalize(name, value)?)))
        .collect::<Result<Vec<_>, InvalidConfig>>()?;
    let config = defaults.with_overrides(
        normalized
            .iter()
            .map(|(name, value)| (*name, value.as_str())),
    )?;
    if config.min_compaction_lag_ms > config.max_compaction_lag_ms {
        return Err(InvalidConfig {
            message: format!(
                "conflict topic config setting min.compaction.lag.ms ({}) > \
                 max.compaction.lag.ms ({})",
                config.min_compaction_lag_ms, config.max_compaction_lag_ms
            ),
        });
    }
    Ok(config)
}

/// True for configs whose value is a list, the only ones IncrementalAlterConfigs may APPEND
/// to or SUBTRACT from.
pub fn is_list_config(name: &str) -> bool {
    catalog::topic_config(name).is_some_and(|def| def.rule.config_type() == ConfigType::List)
}

/// What a topic without an override for `name` gets: the broker's setting, else Kafka's
/// default. Unknown names have none.
pub fn inherited_value(broker: &Config, name: &str) -> Option<String> {
    let def = catalog::topic_config(name)?;
    Some(broker_value(&broker_entries(broker), def))
}

/// The broker's own values for the topic configs it models (`log.segment.bytes` and friends),
/// by topic config name.
fn broker_entries(broker: &Config) -> BTreeMap<String, String> {
    broker
        .topic_defaults
        .entries()
        .into_iter()
        .map(|entry| (entry.name, entry.value))
        .collect()
}

fn broker_value(
    broker_entries: &BTreeMap<String, String>,
    def: &catalog::TopicConfigDef,
) -> String {
    match broker_entries.get(def.name) {
        Some(value) => normalize(def.name, value).unwrap_or_else(|_| value.clone()),
        None => def.kafka_default.to_owned(),
    }
}

/// The broker-level links of a chain: the broker's setting when it differs from Kafka's
/// default, then Kafka's default.
fn broker_synonyms(name: &str, value: &str, kafka_default: Option<&str>) -> Vec<Synonym> {
    let mut synonyms = Vec::with_capacity(2);
    if kafka_default != Some(value) {
        synonyms.push(Synonym {
            name: name.to_owned(),
            value: value.to_owned(),
            source: ConfigSource::StaticBroker,
        });
    }
    if let Some(default) = kafka_default {
        synonyms.push(Synonym {
            name: name.to_owned(),
            value: default.to_owned(),
            source: ConfigSource::Default,
        });
    }
    synonyms
}

/// Every topic config of a topic, by name, as Kafka 4 describes them (none read-only).
pub fn describe_topic(topic: &TopicConfig, broker: &Config) -> Vec<DescribedConfig> {
    let broker_entries = broker_entries(broker);
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let inherited = broker_value(&broker_entries, def);
            let mut synonyms = Vec::new();
            let value = if let Some(set) = topic.overrides.get(def.name) {
                // As set (a list keeps its order), printed as Kafka prints it.
                let value = normalize(def.name, set).unwrap_or_else(|_| set.clone());
                synonyms.push(Synonym {
                    name: def.name.to_owned(),
                    value: value.clone(),
                    source: ConfigSource::DynamicTopic,
                });
                value
            } else {
                inherited.clone()
            };
            if let Some(broker_name) = def.broker_name {
                synonyms.extend(broker_synonyms(
                    broker_name,
                    &inherited,
                    Some(def.kafka_default),
                ));
            }
            DescribedConfig {
                name: def.name.to_owned(),
                value,
                source: synonyms
                    .first()
                    .map_or(ConfigSource::Default, |first| first.source),
                read_only: false,
                synonyms,
                config_type: def.rule.config_type(),
                documentation: def.documentation,
            }
        })
        .collect()
}

/// The configs of broker node `node_id`, by name: the broker-wide settings behind each topic
/// config, and the limits and defaults of `Config`. All read-only: Tidepool's configuration is
/// fixed at start.
pub fn describe_broker(broker: &Config, node_id: i32) -> Vec<DescribedConfig> {
    let broker_entries = broker_entries(broker);
    let behind_topics = TOPIC_CONFIGS.iter().filter_map(|def| {
        Some(catalog::BrokerConfigDef {
            name: def.broker_name?,
            config_type: def.rule.config_type(),
            value: broker_value(&broker_entries, def),
            kafka_default: Some(def.kafka_default),
            documentation: def.documentation,
        })
    });
    let mut described: Vec<DescribedConfig> = behind_topics
        .chain(catalog::broker_only_configs(broker, node_id))
        .map(|def| {
            let synonyms = broker_synonyms(def.name, &def.value, def.kafka_default);
            DescribedConfig {
                name: def.name.to_owned(),
                source: synonyms
                    .first()
                    .map_or(ConfigSource::Default, |first| first.source),
                value: def.value,
                read_only: true,
                synonyms,
                config_type: def.config_type,
                documentation: def.documentation,
            }
        })
        .collect();
    described.sort_by(|a, b| a.name.cmp(&b.name));
    described
}

fn unknown_topic(name: &str) -> Refusal {
    Refusal::new(
        ResponseError::UnknownTopicOrPartition,
        format!("The topic '{name}' does not exist."),
    )
}

fn invalid_config(invalid: InvalidConfig) -> Refusal {
    Refusal::new(ResponseError::InvalidConfig, invalid.message)
}

impl Cluster {
    /// Replaces topic `name`'s override set with `overrides` (AlterConfigs): checked as Kafka
    /// checks it, then published to the topic and its partitions and recorded in
    /// `cluster.json`. With `validate_only`, only checked. Internal topics may be altered, as
    /// in Kafka.
    pub fn alter_topic_config(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), Refusal> {
        // Kafka reports a bad value before an unknown topic.
        topic_config_with(&self.config.topic_defaults, &overrides).map_err(invalid_config)?;
        self.update_topic_config(name, |_| Ok(overrides), validate_only)
    }

    /// Edits topic `name`'s override set (IncrementalAlterConfigs): `change` gets the current
    /// set and returns the new one, under the controller's lock so concurrent edits do not
    /// lose each other's changes.
    pub fn update_topic_config(
        &self,
        name: &str,
        change: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, Refusal>,
        validate_only: bool,
    ) -> Result<(), Refusal> {
        let mut state = lock(&self.state);
        let topic = state
            .topics
            .get(name)
            .cloned()
            .ok_or_else(|| unknown_topic(name))?;
        let overrides = change(&topic.config.overrides)?;
        let config =
            topic_config_with(&self.config.topic_defaults, &overrides).map_err(invalid_config)?;
        if validate_only {
            return Ok(());
        }
        let altered = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            config: config.clone(),
            partitions: topic.partitions.clone(),
            internal: topic.internal,
        });
        state.topics.insert(name.to_owned(), altered);
        if let Err(error) = self.persist(&state) {
            state.topics.insert(name.to_owned(), topic);
            return Err(storage_refusal("recording topic configs", &error));
        }
        // Controller lock, then each partition's: the permitted order.
        for partition in &topic.partitions {
            let mut partition = partition.state();
            partition.config = config.clone();
            partition.log.set_config(log_config(&config));
        }
        tracing::info!(topic = %name, overrides = ?config.overrides, "altered topic configs");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(name: &str, value: &str) -> String {
        normalize(name, value).unwrap_err().message
    }

    #[test]
    fn values_are_refused_with_kafkas_messages() {
        assert_eq!(
            message("segment.bytes", "abc"),
            "Invalid value abc for configuration segment.bytes: Not a number of type INT"
        );
        assert_eq!(
            message("segment.bytes", "2147483648"),
            "Invalid value 2147483648 for configuration segment.bytes: Not a number of type INT"
        );
        assert_eq!(
            message("retention.ms", "-2"),
            "Invalid value -2 for configuration retention.ms: Value must be at least -1"
        );
        assert_eq!(
            message("min.cleanable.dirty.ratio", "2"),
            "Invalid value 2.0 for configuration min.cleanable.dirty.ratio: \
             Value must be no more than 1"
        );
        assert_eq!(
            message("cleanup.policy", "compact,bogus"),
            "Invalid value bogus for configuration cleanup.policy: \
             String must be one of: compact, delete"
        );
        assert_eq!(
            message("cleanup.policy", "delete,,compact"),
            "Configuration 'cleanup.policy' values must not be empty."
        );
        assert_eq!(
            message("preallocate", "maybe"),
            "Invalid value maybe for configuration preallocate: \
             Expected value to be either true or false"
        );
        assert_eq!(
            message("compression.gzip.level", "0"),
            "Invalid value 0 for configuration compression.gzip.level: \
             Value must be between 1 and 9 or equal to -1"
        );
        assert_eq!(
            message("no.such", "1"),
            "Unknown topic config name: no.such"
        );
    }

    #[test]
    fn values_are_kept_as_kafka_prints_them() {
        assert_eq!(normalize("segment.bytes", " 1048576").unwrap(), "1048576");
        assert_eq!(normalize("retention.ms", "+5").unwrap(), "5");
        assert_eq!(
            normalize("cleanup.policy", " compact , delete ").unwrap(),
            "compact,delete"
        );
        assert_eq!(normalize("cleanup.policy", "").unwrap(), "");
        assert_eq!(normalize("min.cleanable.dirty.ratio", "1").unwrap(), "1.0");
        assert_eq!(
            normalize("unclean.leader.election.enable", "TRUE").unwrap(),
            "true"
        );
        assert_eq!(
            normalize("leader.replication.throttled.replicas", "0:1, 1:2").unwrap(),
            "0:1,1:2"
        );
    }

    #[test]
    fn min_compaction_lag_may_not_exceed_max() {
        let overrides = BTreeMap::from([
            ("min.compaction.lag.ms".to_owned(), "10".to_owned()),
            ("max.compaction.lag.ms".to_owned(), "5".to_owned()),
        ]);
        let refused = topic_config_with(&TopicConfig::default(), &overrides).unwrap_err();
        assert_eq!(
            refused.message,
            "conflict topic config setting min.compaction.lag.ms (10) > max.compaction.lag.ms (5)"
        );
    }

    #[test]
    fn sources_follow_the_chain_topic_then_broker_then_default() {
        let broker = Config {
            topic_defaults: TopicConfig {
                retention_ms: 1_000,
                ..TopicConfig::default()
            },
            ..Config::default()
        };
        let overrides = BTreeMap::from([("segment.bytes".to_owned(), "2048".to_owned())]);
        let topic = topic_config_with(&broker.topic_defaults, &overrides).unwrap();
        let described = describe_topic(&topic, &broker);
        let find = |name: &str| described.iter().find(|c| c.name == name).unwrap().clone();
        let segment = find("segment.bytes");
        assert_eq!(
            (segment.value.as_str(), segment.source),
            ("2048", ConfigSource::DynamicTopic)
        );
        assert_eq!(segment.synonyms.len(), 2);
        assert_eq!(segment.synonyms[1].name, "log.segment.bytes");
        let retention = find("retention.ms");
        assert_eq!(
            (retention.value.as_str(), retention.source),
            ("1000", ConfigSource::StaticBroker)
        );
        let compression = find("compression.type");
        assert_eq!(
            (compression.value.as_str(), compression.source),
            ("producer", ConfigSource::Default)
        );
        let jitter = find("segment.jitter.ms");
        assert!(jitter.synonyms.is_empty());
        assert_eq!(described.len(), TOPIC_CONFIGS.len());
    }

    #[test]
    fn broker_configs_are_read_only_and_sourced() {
        let described = describe_broker(&Config::default(), 2);
        assert!(described.iter().all(|config| config.read_only));
        let find = |name: &str| described.iter().find(|c| c.name == name).unwrap().clone();
        assert_eq!(find("log.segment.bytes").source, ConfigSource::Default);
        // Tidepool's default differs from Kafka's 3000 on purpose (ARCHITECTURE.md).
        let delay = find("group.initial.rebalance.delay.ms");
        assert_eq!(
            (delay.value.as_str(), delay.source),
            ("0", ConfigSource::StaticBroker)
        );
        assert_eq!(find("node.id").value, "2");
    }
}
