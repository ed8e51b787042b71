//! Topic and broker configs over the wire: DescribeConfigs reports every topic config with
//! Kafka's defaults and sources (and synonyms, types and documentation on request);
//! AlterConfigs replaces a topic's override set; IncrementalAlterConfigs edits it; bad values
//! are INVALID_CONFIG with Kafka's messages; validate_only changes nothing; broker configs are
//! described read-only; changes reach the log and survive a restart.

mod common;
#[path = "common/disk.rs"]
mod disk;

use common::*;
use disk::*;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::incremental_alter_configs_request as incremental;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tidepool_broker::{Broker, Config, TopicConfig};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// The 33 topic configs Kafka 4.3 describes.
const KAFKA_TOPIC_CONFIGS: usize = 33;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

async fn create_topic_with(client: &mut Client, name: &str, configs: &[(&str, &str)]) {
    let configs = configs
        .iter()
        .map(|(key, value)| {
            CreatableTopicConfig::default()
                .with_name(text(key))
                .with_value(Some(text(value)))
        })
        .collect();
    let request = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(configs),
    ]);
    let response = client.call(7, request).await;
    assert_eq!(
        response.topics[0].error_code, 0,
        "{:?}",
        response.topics[0].error_message
    );
}

/// DescribeConfigs v4 of one resource, with synonyms and documentation.
async fn describe(
    client: &mut Client,
    resource_type: i8,
    name: &str,
    keys: Option<&[&str]>,
) -> DescribeConfigsResult {
    let resource = DescribeConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(text(name))
        .with_configuration_keys(keys.map(|keys| keys.iter().map(|key| text(key)).collect()));
    let request = DescribeConfigsRequest::default()
        .with_resources(vec![resource])
        .with_include_synonyms(true)
        .with_include_documentation(true);
    client.call(4, request).await.results.remove(0)
}

fn entry<'a>(result: &'a DescribeConfigsResult, name: &str) -> &'a DescribeConfigsResourceResult {
    result
        .configs
        .iter()
        .find(|config| config.name.as_str() == name)
        .unwrap_or_else(|| panic!("{name} is described"))
}

/// A config's value and source.
fn value_of(result: &DescribeConfigsResult, name: &str) -> (String, i8) {
    let config = entry(result, name);
    (
        config.value.as_deref().unwrap_or_default().to_owned(),
        config.config_source,
    )
}

fn synonyms_of(result: &DescribeConfigsResult, name: &str) -> Vec<(String, String, i8)> {
    entry(result, name)
        .synonyms
        .iter()
        .map(|synonym| {
            (
                synonym.name.to_string(),
                synonym.value.as_deref().unwrap_or_default().to_owned(),
                synonym.source,
            )
        })
        .collect()
}

async fn topic_configs(client: &mut Client, topic: &str) -> DescribeConfigsResult {
    let result = describe(client, TOPIC, topic, None).await;
    assert_eq!(result.error_code, 0, "{:?}", result.error_message);
    result
}

/// AlterConfigs v2 of one resource; returns its error code and message.
async fn alter(
    client: &mut Client,
    resource_type: i8,
    name: &str,
    configs: &[(&str, Option<&str>)],
    validate_only: bool,
) -> (i16, Option<String>) {
    let configs = configs
        .iter()
        .map(|(key, value)| {
            AlterableConfig::default()
                .with_name(text(key))
                .with_value(value.map(text))
        })
        .collect();
    let request = AlterConfigsRequest::default()
        .with_validate_only(validate_only)
        .with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(text(name))
                .with_configs(configs),
        ]);
    let response = client.call(2, request).await;
    let answer = &response.responses[0];
    assert_eq!(answer.resource_name.as_str(), name);
    (
        answer.error_code,
        answer.error_message.as_ref().map(|m| m.to_string()),
    )
}

async fn alter_topic(client: &mut Client, name: &str, configs: &[(&str, &str)]) {
    let configs: Vec<(&str, Option<&str>)> = configs
        .iter()
        .map(|(key, value)| (*key, Some(*value)))
        .collect();
    let (code, message) = alter(client, TOPIC, name, &configs, false).await;
    assert_eq!(code, 0, "{message:?}");
}

/// IncrementalAlterConfigs v1 of one resource; returns its error code and message.
async fn alter_incrementally(
    client: &mut Client,
    resource_type: i8,
    name: &str,
    changes: &[(&str, i8, Option<&str>)],
    validate_only: bool,
) -> (i16, Option<String>) {
    let configs = changes
        .iter()
        .map(|(key, operation, value)| {
            incremental::AlterableConfig::default()
                .with_name(text(key))
                .with_config_operation(*operation)
                .with_value(value.map(text))
        })
        .collect();
    let request = IncrementalAlterConfigsRequest::default()
        .with_validate_only(validate_only)
        .with_resources(vec![
            incremental::AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(text(name))
                .with_configs(configs),
        ]);
    let response = client.call(1, request).await;
    let answer = &response.responses[0];
    (
        answer.error_code,
        answer.error_message.as_ref().map(|m| m.to_string()),
    )
}

fn owned(value: &str, source: i8) -> (String, i8) {
    (value.to_owned(), source)
}

#[tokio::test]
async fn describe_reports_every_topic_config_with_kafkas_defaults_and_sources() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    create_topic_with(&mut client, "t", &[("segment.bytes", "1048576")]).await;
    let described = topic_configs(&mut client, "t").await;
    assert_eq!(described.configs.len(), KAFKA_TOPIC_CONFIGS);
    for (name, value) in [
        ("cleanup.policy", "delete"),
        ("compression.type", "producer"),
        ("retention.ms", "604800000"),
        ("retention.bytes", "-1"),
        ("segment.ms", "604800000"),
        ("min.cleanable.dirty.ratio", "0.5"),
        ("min.compaction.lag.ms", "0"),
        ("max.compaction.lag.ms", "9223372036854775807"),
        ("delete.retention.ms", "86400000"),
        ("max.message.bytes", "1048588"),
        ("message.timestamp.type", "CreateTime"),
        ("min.insync.replicas", "1"),
        ("local.retention.ms", "-2"),
        ("leader.replication.throttled.replicas", ""),
    ] {
        assert_eq!(
            value_of(&described, name),
            owned(value, DEFAULT_CONFIG),
            "{name}"
        );
    }
    assert_eq!(
        value_of(&described, "segment.bytes"),
        owned("1048576", DYNAMIC_TOPIC_CONFIG)
    );
    assert_eq!(
        synonyms_of(&described, "segment.bytes"),
        vec![
            (
                "segment.bytes".into(),
                "1048576".into(),
                DYNAMIC_TOPIC_CONFIG
            ),
            (
                "log.segment.bytes".into(),
                "1073741824".into(),
                DEFAULT_CONFIG
            ),
        ]
    );
    let policy = entry(&described, "cleanup.policy");
    assert_eq!(policy.config_type, 7, "LIST");
    assert_eq!(entry(&described, "retention.ms").config_type, 5, "LONG");
    assert_eq!(entry(&described, "segment.bytes").config_type, 3, "INT");
    assert_eq!(
        entry(&described, "min.cleanable.dirty.ratio").config_type,
        6
    );
    assert!(described.configs.iter().all(|config| {
        !config.read_only
            && !config.is_sensitive
            && config
                .documentation
                .as_ref()
                .is_some_and(|doc| !doc.is_empty())
    }));
    broker.shutdown().await;
}

#[tokio::test]
async fn a_broker_setting_that_differs_from_kafkas_default_is_a_static_broker_config() {
    let config = Config {
        topic_defaults: TopicConfig {
            retention_ms: 60_000,
            ..TopicConfig::default()
        },
        ..Config::default()
    };
    let broker = start(config).await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "t", 1).await;
    let described = topic_configs(&mut client, "t").await;
    assert_eq!(
        value_of(&described, "retention.ms"),
        owned("60000", STATIC_BROKER_CONFIG)
    );
    assert_eq!(
        synonyms_of(&described, "retention.ms"),
        vec![
            (
                "log.retention.ms".into(),
                "60000".into(),
                STATIC_BROKER_CONFIG
            ),
            (
                "log.retention.ms".into(),
                "604800000".into(),
                DEFAULT_CONFIG
            ),
        ]
    );
    alter_topic(&mut client, "t", &[("retention.ms", "5000")]).await;
    let described = topic_configs(&mut client, "t").await;
    assert_eq!(
        synonyms_of(&described, "retention.ms")
            .into_iter()
            .map(|(_, _, source)| source)
            .collect::<Vec<_>>(),
        vec![DYNAMIC_TOPIC_CONFIG, STATIC_BROKER_CONFIG, DEFAULT_CONFIG]
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn configuration_keys_and_versions_shape_the_answer() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "t", 1).await;
    let some = describe(
        &mut client,
        TOPIC,
        "t",
        Some(&["retention.ms", "no.such.config", "cleanup.policy"]),
    )
    .await;
    let mut names: Vec<&str> = some.configs.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, vec!["cleanup.policy", "retention.ms"]);
    // An empty key list asks for everything, as in Kafka.
    assert_eq!(
        describe(&mut client, TOPIC, "t", Some(&[]))
            .await
            .configs
            .len(),
        KAFKA_TOPIC_CONFIGS
    );
    // Without include_synonyms and include_documentation: neither.
    let plain = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(text("t"))
            .with_configuration_keys(Some(vec![text("segment.bytes")])),
    ]);
    let answer = client.call(4, plain).await.results.remove(0);
    assert!(answer.configs[0].synonyms.is_empty());
    assert_eq!(answer.configs[0].documentation, None);
    broker.shutdown().await;
}

#[tokio::test]
async fn alter_configs_sets_overrides_that_describe_and_the_partitions_see() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "t", 1).await;
    alter_topic(
        &mut client,
        "t",
        &[
            ("cleanup.policy", "compact,delete"),
            ("retention.ms", "1000"),
            ("min.cleanable.dirty.ratio", "1"),
            ("compression.type", "zstd"),
        ],
    )
    .await;
    let described = topic_configs(&mut client, "t").await;
    assert_eq!(
        value_of(&described, "cleanup.policy"),
        owned("compact,delete", DYNAMIC_TOPIC_CONFIG)
    );
    assert_eq!(
        value_of(&described, "retention.ms"),
        owned("1000", DYNAMIC_TOPIC_CONFIG)
    );
    // Printed as Kafka prints a double.
    assert_eq!(
        value_of(&described, "min.cleanable.dirty.ratio"),
        owned("1.0", DYNAMIC_TOPIC_CONFIG)
    );
    assert_eq!(
        value_of(&described, "compression.type"),
        owned("zstd", DYNAMIC_TOPIC_CONFIG)
    );
    let topic = broker.cluster().topic("t").unwrap();
    assert_eq!(topic.config.retention_ms, 1000);
    let partition = topic.partitions[0].state();
    assert_eq!(partition.config.retention_ms, 1000);
    assert!(partition.config.cleanup_policy.compact && partition.config.cleanup_policy.delete);
    drop(partition);
    broker.shutdown().await;
}

#[tokio::test]
async fn alter_configs_replaces_the_whole_override_set() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    create_topic_with(
        &mut client,
        "t",
        &[("segment.bytes", "1048576"), ("retention.ms", "1000")],
    )
    .await;
    alter_topic(&mut client, "t", &[("retention.ms", "2000")]).await;
    let described = topic_configs(&mut client, "t").await;
    assert_eq!(
        value_of(&described, "segment.bytes"),
        owned("1073741824", DEFAULT_CONFIG),
        "left out, so back to the default"
    );
    assert_eq!(
        value_of(&described, "retention.ms"),
        owned("2000", DYNAMIC_TOPIC_CONFIG)
    );
    // An empty set clears every override.
    alter_topic(&mut client, "t", &[]).await;
    let described = topic_configs(&mut client, "t").await;
    assert!(
        described
            .configs
            .iter()
            .all(|config| config.config_source == DEFAULT_CONFIG)
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn incremental_alter_configs_sets_deletes_appends_and_subtracts() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    create_topic_with(&mut client, "t", &[("retention.ms", "1000")]).await;
    let (code, message) = alter_incrementally(
        &mut client,
        TOPIC,
        "t",
        &[
            ("segment.bytes", SET, Some("2048")),
            ("cleanup.policy", APPEND, Some("compact")),
        ],
        false,
    )
    .await;
    assert_eq!(code, 0, "{message:?}");
    let described = topic_configs(&mut client, "t").await;
    assert_eq!(
        value_of(&described, "retention.ms"),
        owned("1000", DYNAMIC_TOPIC_CONFIG),
        "untouched by an incremental change"
    );
    assert_eq!(
        value_of(&described, "segment.bytes"),
        owned("2048", DYNAMIC_TOPIC_CONFIG)
    );
    assert_eq!(
        value_of(&described, "cleanup.policy").0,
        "delete,compact",
        "appended to the default"
    );
    let (code, _) = alter_incrementally(
        &mut client,
        TOPIC,
        "t",
        &[
            ("cleanup.policy", SUBTRACT, Some("delete")),
            ("segment.bytes", DELETE, None),
            ("no.such.config", DELETE, None),
        ],
        false,
    )
    .await;
    assert_eq!(code, 0, "DELETE of a name that is not set changes nothing");
    let described = topic_configs(&mut client, "t").await;
    assert_eq!(
        value_of(&described, "cleanup.policy"),
        owned("compact", DYNAMIC_TOPIC_CONFIG)
    );
    assert_eq!(
        value_of(&described, "segment.bytes"),
        owned("1073741824", DEFAULT_CONFIG)
    );
    assert!(
        broker.cluster().topic("t").unwrap().partitions[0]
            .state()
            .config
            .cleanup_policy
            .compact
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn bad_values_and_unknown_names_are_refused_with_kafkas_messages() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    create_topic_with(&mut client, "t", &[("retention.ms", "1000")]).await;
    let invalid_config = ResponseError::InvalidConfig.code();
    let invalid_request = ResponseError::InvalidRequest.code();
    for (configs, code, message) in [
        (
            vec![("segment.bytes", Some("abc"))],
            invalid_config,
            "Invalid value abc for configuration segment.bytes: Not a number of type INT",
        ),
        (
            vec![("retention.ms", Some("-2"))],
            invalid_config,
            "Invalid value -2 for configuration retention.ms: Value must be at least -1",
        ),
        (
            vec![("cleanup.policy", Some("bogus"))],
            invalid_config,
            "Invalid value bogus for configuration cleanup.policy: \
             String must be one of: compact, delete",
        ),
        (
            vec![("min.cleanable.dirty.ratio", Some("2"))],
            invalid_config,
            "Invalid value 2.0 for configuration min.cleanable.dirty.ratio: \
             Value must be no more than 1",
        ),
        (
            vec![("message.timestamp.type", Some("Whenever"))],
            invalid_config,
            "Invalid value Whenever for configuration message.timestamp.type: \
             String must be one of: CreateTime, LogAppendTime",
        ),
        (
            vec![("no.such.config", Some("1"))],
            invalid_config,
            "Unknown topic config name: no.such.config",
        ),
        (
            vec![
                ("min.compaction.lag.ms", Some("10")),
                ("max.compaction.lag.ms", Some("5")),
            ],
            invalid_config,
            "conflict topic config setting min.compaction.lag.ms (10) > max.compaction.lag.ms (5)",
        ),
        (
            vec![("retention.ms", None)],
            invalid_request,
            "Null value not supported for : retention.ms",
        ),
        (
            vec![("retention.ms", Some("1")), ("retention.ms", Some("2"))],
            invalid_request,
            "Error due to duplicate config keys",
        ),
    ] {
        let answer = alter(&mut client, TOPIC, "t", &configs, false).await;
        assert_eq!(answer, (code, Some(message.to_owned())), "{configs:?}");
    }
    for (changes, code, message) in [
        (
            vec![("segment.bytes", APPEND, Some("5"))],
            invalid_config,
            "Can't APPEND to key segment.bytes because its type is not LIST.",
        ),
        (
            vec![("retention.ms", SUBTRACT, Some("5"))],
            invalid_config,
            "Can't SUBTRACT to key retention.ms because its type is not LIST.",
        ),
        (
            vec![("cleanup.policy", APPEND, Some("bogus"))],
            invalid_config,
            "Invalid value bogus for configuration cleanup.policy: \
             String must be one of: compact, delete",
        ),
        (
            vec![("retention.ms", SET, None)],
            invalid_request,
            "Null value not supported for : retention.ms",
        ),
        (
            vec![
                ("retention.ms", SET, Some("5")),
                ("retention.ms", DELETE, None),
            ],
            invalid_request,
            "Error due to duplicate config keys",
        ),
    ] {
        let answer = alter_incrementally(&mut client, TOPIC, "t", &changes, false).await;
        assert_eq!(answer, (code, Some(message.to_owned())), "{changes:?}");
    }
    // Kafka answers an unknown operation with UNKNOWN_SERVER_ERROR.
    let (code, _) = alter_incrementally(
        &mut client,
        TOPIC,
        "t",
        &[("retention.ms", 7, Some("5"))],
        false,
    )
    .await;
    assert_eq!(code, ResponseError::UnknownServerError.code());
    // Nothing was changed by any of them.
    let described = topic_configs(&mut client, "t").await;
    let overridden: Vec<&str> = described
        .configs
        .iter()
        .filter(|config| config.config_source == DYNAMIC_TOPIC_CONFIG)
        .map(|config| config.name.as_str())
        .collect();
    assert_eq!(overridden, vec!["retention.ms"]);
    assert_eq!(value_of(&described, "retention.ms").0, "1000");
    broker.shutdown().await;
}

#[tokio::test]
async fn create_topics_refuses_null_and_bad_configs_and_reports_every_config() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    let creatable = |name: &str, key: &str, value: Option<&str>| {
        CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![
                CreatableTopicConfig::default()
                    .with_name(text(key))
                    .with_value(value.map(text)),
            ])
    };
    let request = CreateTopicsRequest::default().with_topics(vec![
        creatable("null", "segment.bytes", None),
        creatable("bad", "retention.ms", Some("abc")),
        creatable("fine", "retention.ms", Some(" 1000 ")),
    ]);
    let response = client.call(7, request).await;
    let answers: Vec<(i16, Option<String>)> = response
        .topics
        .iter()
        .map(|t| {
            (
                t.error_code,
                t.error_message.as_ref().map(|m| m.to_string()),
            )
        })
        .collect();
    let invalid_config = ResponseError::InvalidConfig.code();
    assert_eq!(
        answers,
        vec![
            (
                invalid_config,
                Some("Null value not supported for topic configs: segment.bytes".into())
            ),
            (
                invalid_config,
                Some(
                    "Invalid value abc for configuration retention.ms: Not a number of type LONG"
                        .into()
                )
            ),
            (0, None),
        ]
    );
    let configs = response.topics[2].configs.as_ref().unwrap();
    assert_eq!(configs.len(), KAFKA_TOPIC_CONFIGS);
    let retention = configs
        .iter()
        .find(|config| config.name.as_str() == "retention.ms")
        .unwrap();
    assert_eq!(
        (
            retention.value.as_deref(),
            retention.config_source,
            retention.read_only
        ),
        (Some("1000"), DYNAMIC_TOPIC_CONFIG, false)
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn validate_only_checks_but_changes_nothing() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "t", 1).await;
    let answer = alter(
        &mut client,
        TOPIC,
        "t",
        &[("retention.ms", Some("1000"))],
        true,
    )
    .await;
    assert_eq!(answer, (0, None));
    let answer = alter_incrementally(
        &mut client,
        TOPIC,
        "t",
        &[("cleanup.policy", SET, Some("compact"))],
        true,
    )
    .await;
    assert_eq!(answer, (0, None));
    let (code, _) = alter(
        &mut client,
        TOPIC,
        "t",
        &[("retention.ms", Some("x"))],
        true,
    )
    .await;
    assert_eq!(code, ResponseError::InvalidConfig.code(), "still checked");
    let described = topic_configs(&mut client, "t").await;
    assert!(
        described
            .configs
            .iter()
            .all(|config| config.config_source == DEFAULT_CONFIG)
    );
    assert_eq!(
        broker.cluster().topic("t").unwrap().partitions[0]
            .state()
            .config,
        TopicConfig::default()
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn unknown_topics_are_unknown_topic_or_partition() {
    let broker = start(Config {
        auto_create_topics: false,
        ..Config::default()
    })
    .await;
    let mut client = Client::connect(&broker).await;
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    assert_eq!(
        describe(&mut client, TOPIC, "gone", None).await.error_code,
        unknown
    );
    let (code, message) = alter(
        &mut client,
        TOPIC,
        "gone",
        &[("retention.ms", Some("1"))],
        false,
    )
    .await;
    assert_eq!(
        (code, message.as_deref()),
        (unknown, Some("The topic 'gone' does not exist."))
    );
    let (code, _) = alter_incrementally(
        &mut client,
        TOPIC,
        "gone",
        &[("retention.ms", SET, Some("1"))],
        false,
    )
    .await;
    assert_eq!(code, unknown);
    // A bad value is reported before the unknown topic, as Kafka does.
    let (code, _) = alter(
        &mut client,
        TOPIC,
        "gone",
        &[("retention.ms", Some("x"))],
        false,
    )
    .await;
    assert_eq!(code, ResponseError::InvalidConfig.code());
    // An illegal name is INVALID_TOPIC_EXCEPTION.
    assert_eq!(
        describe(&mut client, TOPIC, "bad/name", None)
            .await
            .error_code,
        ResponseError::InvalidTopicException.code()
    );
    assert!(broker.cluster().topic("gone").is_none(), "not auto-created");
    broker.shutdown().await;
}

#[tokio::test]
async fn internal_topics_may_be_altered_as_in_kafka() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    let found = client
        .call(3, FindCoordinatorRequest::default().with_key(text("g")))
        .await;
    assert_eq!(found.error_code, 0);
    let described = topic_configs(&mut client, "__consumer_offsets").await;
    assert_eq!(
        value_of(&described, "cleanup.policy"),
        owned("compact", DYNAMIC_TOPIC_CONFIG)
    );
    let (code, message) = alter_incrementally(
        &mut client,
        TOPIC,
        "__consumer_offsets",
        &[("retention.ms", SET, Some("86400000"))],
        false,
    )
    .await;
    assert_eq!(code, 0, "{message:?}");
    let described = topic_configs(&mut client, "__consumer_offsets").await;
    assert_eq!(value_of(&described, "retention.ms").0, "86400000");
    assert_eq!(value_of(&described, "cleanup.policy").0, "compact");
    broker.shutdown().await;
}

#[tokio::test]
async fn broker_configs_are_described_read_only_and_cannot_be_altered() {
    let broker = Broker::builder()
        .memory()
        .nodes(2)
        .config(Config::default())
        .start()
        .await
        .unwrap();
    let second = broker.bootstrap().split(',').nth(1).unwrap().to_owned();
    let mut client = Client::connect_to(&second).await;
    let described = describe(&mut client, BROKER, "2", None).await;
    assert_eq!(described.error_code, 0, "{:?}", described.error_message);
    assert!(described.configs.iter().all(|config| config.read_only));
    for (name, value, source) in [
        ("log.segment.bytes", "1073741824", DEFAULT_CONFIG),
        ("log.roll.ms", "604800000", DEFAULT_CONFIG),
        ("log.retention.ms", "604800000", DEFAULT_CONFIG),
        ("log.retention.bytes", "-1", DEFAULT_CONFIG),
        ("log.cleanup.policy", "delete", DEFAULT_CONFIG),
        ("log.cleaner.min.cleanable.ratio", "0.5", DEFAULT_CONFIG),
        ("log.cleaner.min.compaction.lag.ms", "0", DEFAULT_CONFIG),
        (
            "log.cleaner.max.compaction.lag.ms",
            "9223372036854775807",
            DEFAULT_CONFIG,
        ),
        (
            "log.cleaner.delete.retention.ms",
            "86400000",
            DEFAULT_CONFIG,
        ),
        ("message.max.bytes", "1048588", DEFAULT_CONFIG),
        ("log.message.timestamp.type", "CreateTime", DEFAULT_CONFIG),
        ("log.index.interval.bytes", "4096", DEFAULT_CONFIG),
        (
            "log.flush.interval.messages",
            "9223372036854775807",
            DEFAULT_CONFIG,
        ),
        (
            "log.flush.interval.ms",
            "9223372036854775807",
            DEFAULT_CONFIG,
        ),
        ("num.partitions", "1", DEFAULT_CONFIG),
        ("default.replication.factor", "1", DEFAULT_CONFIG),
        ("auto.create.topics.enable", "true", DEFAULT_CONFIG),
        ("offsets.topic.num.partitions", "50", DEFAULT_CONFIG),
        (
            "group.initial.rebalance.delay.ms",
            "0",
            STATIC_BROKER_CONFIG,
        ),
        ("node.id", "2", STATIC_BROKER_CONFIG),
    ] {
        assert_eq!(value_of(&described, name), owned(value, source), "{name}");
    }
    assert_eq!(
        synonyms_of(&described, "group.initial.rebalance.delay.ms"),
        vec![
            (
                "group.initial.rebalance.delay.ms".into(),
                "0".into(),
                STATIC_BROKER_CONFIG
            ),
            (
                "group.initial.rebalance.delay.ms".into(),
                "3000".into(),
                DEFAULT_CONFIG
            ),
        ]
    );
    // The cluster-wide default resource holds only dynamic defaults: none here.
    let defaults = describe(&mut client, BROKER, "", None).await;
    assert_eq!((defaults.error_code, defaults.configs.len()), (0, 0));
    let other = describe(&mut client, BROKER, "1", None).await;
    assert_eq!(
        (other.error_code, other.error_message.as_deref()),
        (
            ResponseError::InvalidRequest.code(),
            Some("Unexpected broker id, expected 2 or empty string, but received 1")
        )
    );
    let answer = alter(
        &mut client,
        BROKER,
        "2",
        &[
            ("log.retention.ms", Some("1000")),
            ("num.partitions", Some("3")),
        ],
        false,
    )
    .await;
    assert_eq!(
        answer,
        (
            ResponseError::InvalidRequest.code(),
            Some(
                "Cannot update these configs dynamically: [log.retention.ms, num.partitions]"
                    .into()
            )
        )
    );
    let (code, _) = alter_incrementally(
        &mut client,
        BROKER,
        "",
        &[("num.partitions", SET, Some("3"))],
        true,
    )
    .await;
    assert_eq!(code, ResponseError::InvalidRequest.code());
    let (code, _) = alter(&mut client, 16, "x", &[("a", Some("b"))], false).await;
    assert_eq!(
        code,
        ResponseError::InvalidRequest.code(),
        "unknown resource type"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn altered_configs_survive_a_restart() {
    let dir = TempDir::new("configs");
    let broker = start_on(dir.path(), 1, Config::default()).await;
    let mut client = Client::connect(&broker).await;
    create_topic_with(&mut client, "t", &[("segment.bytes", "1048576")]).await;
    alter_topic(
        &mut client,
        "t",
        &[("cleanup.policy", "compact"), ("retention.ms", "1000")],
    )
    .await;
    broker.shutdown().await;

    let broker = start_on(dir.path(), 1, Config::default()).await;
    let mut client = Client::connect(&broker).await;
    let described = topic_configs(&mut client, "t").await;
    assert_eq!(
        value_of(&described, "cleanup.policy"),
        owned("compact", DYNAMIC_TOPIC_CONFIG)
    );
    assert_eq!(
        value_of(&described, "retention.ms"),
        owned("1000", DYNAMIC_TOPIC_CONFIG)
    );
    assert_eq!(
        value_of(&described, "segment.bytes"),
        owned("1073741824", DEFAULT_CONFIG),
        "replaced by the alter, and still gone"
    );
    let partition = &broker.cluster().topic("t").unwrap().partitions[0];
    assert!(partition.state().config.cleanup_policy.compact);
    // An abrupt stop right after an alter keeps it too: it is recorded before the answer.
    let (code, _) = alter_incrementally(
        &mut client,
        TOPIC,
        "t",
        &[("retention.ms", DELETE, None)],
        false,
    )
    .await;
    assert_eq!(code, 0);
    drop(broker);
    let broker = start_on(dir.path(), 1, Config::default()).await;
    let mut client = Client::connect(&broker).await;
    let described = topic_configs(&mut client, "t").await;
    assert_eq!(
        value_of(&described, "retention.ms"),
        owned("604800000", DEFAULT_CONFIG)
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn an_altered_segment_bytes_rolls_segments_on_the_next_appends() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "t", 1).await;
    let segments = || {
        broker.cluster().topic("t").unwrap().partitions[0]
            .state()
            .log
            .segment_count()
    };
    for round in 0..5 {
        let answer = produce(&mut client, "t", 0, batch(5, 1_000 + round)).await;
        assert_eq!(answer.error_code, 0);
    }
    assert_eq!(segments(), 1, "the default segment.bytes is 1 GiB");
    alter_topic(&mut client, "t", &[("segment.bytes", "300")]).await;
    for round in 0..5 {
        let answer = produce(&mut client, "t", 0, batch(5, 2_000 + round)).await;
        assert_eq!(answer.error_code, 0);
    }
    assert!(
        segments() >= 5,
        "each batch of about 200 bytes rolls a 300-byte segment: {} segments",
        segments()
    );
    broker.shutdown().await;
}
