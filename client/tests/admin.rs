//! The admin client against a cluster: an embedded Tidepool, or the Kafka named by
//! `TIDEPOOL_TEST_BOOTSTRAP`. Every test names its own topics and groups, so runs against a
//! shared cluster do not see each other.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, GroupId, JoinGroupRequest,
    SyncGroupRequest, TopicName, join_group_request::JoinGroupRequestProtocol,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use support::produce::{produce_raw, produce_raw_at};
use support::topics::create_topic;
use support::{TestCluster, unique_topic};
use tidepool_client::{
    Admin, AlterOp, Client, ConfigEntry, ConfigResource, ConfigSource, Error, KafkaCode,
    ListedOffset, NewTopic, OffsetSpec, TopicPartition, versions,
};

async fn admin(cluster: &TestCluster) -> Admin {
    Admin::new(cluster.client().await)
}

fn code_name(error: &Error) -> String {
    error
        .code()
        .map(KafkaCode::name)
        .unwrap_or_else(|| format!("not a Kafka error: {error}"))
}

fn message(error: &Error) -> String {
    match error {
        Error::Kafka { message, .. } => message.clone().unwrap_or_default(),
        other => panic!("not a Kafka error: {other}"),
    }
}

fn config<'a>(entries: &'a [ConfigEntry], name: &str) -> &'a ConfigEntry {
    entries
        .iter()
        .find(|entry| entry.name == name)
        .unwrap_or_else(|| panic!("no config {name}"))
}

fn records(count: usize) -> Vec<(Option<Bytes>, Option<Bytes>)> {
    (0..count)
        .map(|i| (None, Some(Bytes::from(format!("record {i}")))))
        .collect()
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

/// Polls `check` until it holds: Kafka applies some admin changes (deletions) asynchronously.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 10 s");
}

async fn topic_names(admin: &Admin) -> Vec<String> {
    let topics = admin.client().list_topics().await.unwrap();
    topics.into_iter().map(|topic| topic.name).collect()
}

// ---------------------------------------------------------------------------------------------
// Topics

#[tokio::test]
async fn a_created_topic_has_its_partitions_leaders_and_configs() {
    let cluster = TestCluster::start(3).await;
    let admin = admin(&cluster).await;
    let topic = unique_topic("admin-create");
    admin
        .create_topic(NewTopic::new(&topic, 3, -1).config("retention.ms", "123456"))
        .await
        .unwrap();

    let metadata = admin.client().topic(&topic).await.unwrap();
    assert_eq!(metadata.partitions.len(), 3);
    assert!(metadata.partitions.iter().all(|p| p.leader >= 0));
    let configs = admin
        .describe_configs(ConfigResource::Topic(topic.clone()))
        .await
        .unwrap();
    let retention = config(&configs, "retention.ms");
    assert_eq!(retention.value.as_deref(), Some("123456"));
    assert_eq!(retention.source, ConfigSource::DynamicTopic);
    assert!(!retention.is_default && !retention.read_only && !retention.sensitive);
    let untouched = config(&configs, "min.compaction.lag.ms");
    assert_eq!(untouched.value.as_deref(), Some("0"));
    assert_eq!(untouched.source, ConfigSource::Default);
    assert!(untouched.is_default);
}

#[tokio::test]
async fn creating_an_existing_topic_is_topic_already_exists_for_that_topic_only() {
    let cluster = TestCluster::start(1).await;
    let admin = admin(&cluster).await;
    let existing = unique_topic("admin-existing");
    let fresh = unique_topic("admin-fresh");
    create_topic(admin.client(), &existing, 1).await;

    let outcomes = admin
        .create_topics(
            vec![
                NewTopic::new(&existing, 1, -1),
                NewTopic::new(&fresh, 2, -1),
            ],
            false,
        )
        .await
        .unwrap();
    let refused = outcomes[&existing].as_ref().unwrap_err();
    assert_eq!(code_name(refused), "TOPIC_ALREADY_EXISTS");
    assert!(message(refused).contains(&existing), "{refused}");
    assert!(outcomes[&fresh].is_ok());
    let error = admin
        .create_topic(NewTopic::new(&existing, 1, -1))
        .await
        .unwrap_err();
    assert_eq!(code_name(&error), "TOPIC_ALREADY_EXISTS");
}

#[tokio::test]
async fn validate_only_checks_a_topic_and_creates_nothing() {
    let cluster = TestCluster::start(1).await;
    let admin = admin(&cluster).await;
    let topic = unique_topic("admin-validate");

    let valid = admin
        .create_topics(vec![NewTopic::new(&topic, 2, -1)], true)
        .await
        .unwrap();
    assert!(valid[&topic].is_ok());
    let invalid = admin
        .create_topics(
            vec![NewTopic::new(&topic, 2, -1).config("retention.ms", "soon")],
            true,
        )
        .await
        .unwrap();
    assert_eq!(
        code_name(invalid[&topic].as_ref().unwrap_err()),
        "INVALID_CONFIG"
    );
    assert!(!topic_names(&admin).await.contains(&topic));
    let error = admin.client().topic(&topic).await.unwrap_err();
    assert_eq!(error.code(), Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION));
}

#[tokio::test]
async fn a_deleted_topic_leaves_the_cluster_and_deleting_it_again_is_unknown_topic() {
    let cluster = TestCluster::start(1).await;
    let admin = admin(&cluster).await;
    let topic = unique_topic("admin-delete");
    create_topic(admin.client(), &topic, 2).await;

    let outcomes = admin.delete_topics(&[&topic]).await.unwrap();
    assert!(outcomes[&topic].is_ok(), "{outcomes:?}");
    eventually("the topic leaving the topic list", async || {
        !topic_names(&admin).await.contains(&topic)
    })
    .await;
    let again = admin.delete_topics(&[&topic]).await.unwrap();
    assert_eq!(
        code_name(again[&topic].as_ref().unwrap_err()),
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
}

#[tokio::test]
async fn create_partitions_grows_a_topic_and_refuses_to_shrink_it() {
    let cluster = TestCluster::start(3).await;
    let admin = admin(&cluster).await;
    let topic = unique_topic("admin-partitions");
    create_topic(admin.client(), &topic, 1).await;

    admin.create_partitions(&topic, 3).await.unwrap();
    let metadata = admin.client().topic(&topic).await.unwrap();
    assert_eq!(metadata.partitions.len(), 3);
    assert!(metadata.partitions.iter().all(|p| p.leader >= 0));
    let error = admin.create_partitions(&topic, 2).await.unwrap_err();
    assert_eq!(code_name(&error), "INVALID_PARTITIONS");
    assert!(!message(&error).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Configs

#[tokio::test]
async fn alter_configs_sets_appends_and_deletes_overrides() {
    let cluster = TestCluster::start(1).await;
    let admin = admin(&cluster).await;
    let topic = unique_topic("admin-alter");
    create_topic(admin.client(), &topic, 1).await;
    let resource = ConfigResource::Topic(topic.clone());

    admin
        .alter_configs(
            resource.clone(),
            vec![
                AlterOp::Set("retention.ms".into(), "86400000".into()),
                AlterOp::Append("cleanup.policy".into(), "compact".into()),
            ],
        )
        .await
        .unwrap();
    let configs = admin.describe_configs(resource.clone()).await.unwrap();
    assert_eq!(
        config(&configs, "retention.ms").value.as_deref(),
        Some("86400000")
    );
    assert_eq!(
        config(&configs, "retention.ms").source,
        ConfigSource::DynamicTopic
    );
    assert_eq!(
        config(&configs, "cleanup.policy").value.as_deref(),
        Some("delete,compact")
    );

    admin
        .alter_configs(
            resource.clone(),
            vec![
                AlterOp::Delete("retention.ms".into()),
                AlterOp::Subtract("cleanup.policy".into(), "delete".into()),
            ],
        )
        .await
        .unwrap();
    let configs = admin.describe_configs(resource).await.unwrap();
    let retention = config(&configs, "retention.ms");
    assert_ne!(retention.source, ConfigSource::DynamicTopic);
    assert_ne!(retention.value.as_deref(), Some("86400000"));
    assert_eq!(
        config(&configs, "cleanup.policy").value.as_deref(),
        Some("compact")
    );
}

#[tokio::test]
async fn an_invalid_config_value_is_invalid_config_with_the_brokers_reason_and_changes_nothing() {
    let cluster = TestCluster::start(1).await;
    let admin = admin(&cluster).await;
    let topic = unique_topic("admin-invalid");
    create_topic(admin.client(), &topic, 1).await;
    let resource = ConfigResource::Topic(topic.clone());

    let error = admin
        .alter_configs(
            resource.clone(),
            vec![
                AlterOp::Set("segment.ms".into(), "600000".into()),
                AlterOp::Set("retention.ms".into(), "not-a-number".into()),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(code_name(&error), "INVALID_CONFIG");
    let reason = message(&error);
    assert!(
        reason.contains("not-a-number") && reason.contains("retention.ms"),
        "{reason}"
    );
    let configs = admin.describe_configs(resource).await.unwrap();
    assert_eq!(config(&configs, "segment.ms").source, ConfigSource::Default);
}

#[tokio::test]
async fn describing_an_unknown_topic_is_unknown_topic_and_a_broker_has_configs() {
    let cluster = TestCluster::start(1).await;
    let admin = admin(&cluster).await;

    let error = admin
        .describe_configs(ConfigResource::Topic(unique_topic("admin-missing")))
        .await
        .unwrap_err();
    assert_eq!(code_name(&error), "UNKNOWN_TOPIC_OR_PARTITION");
    let node = *admin.client().metadata().brokers.keys().next().unwrap();
    let broker = admin
        .describe_configs(ConfigResource::Broker(node))
        .await
        .unwrap();
    assert!(broker.iter().any(|entry| entry.name == "log.retention.ms"));
}

// ---------------------------------------------------------------------------------------------
// Offsets and records

#[tokio::test]
async fn list_offsets_finds_the_earliest_the_latest_and_the_first_at_a_timestamp() {
    let cluster = TestCluster::start(3).await;
    let admin = admin(&cluster).await;
    let topic = unique_topic("admin-offsets");
    create_topic(admin.client(), &topic, 2).await;
    let base = admin.client().wall_ms() - 60_000;
    assert_eq!(
        produce_raw_at(admin.client(), &topic, 0, base, records(3)).await,
        0
    );
    assert_eq!(
        produce_raw_at(admin.client(), &topic, 0, base + 10_000, records(1)).await,
        3
    );

    let wanted = BTreeMap::from([
        (tp(&topic, 0), OffsetSpec::Earliest),
        (tp(&topic, 1), OffsetSpec::Latest),
    ]);
    let found = admin.list_offsets(wanted).await.unwrap();
    assert_eq!(found[&tp(&topic, 0)].offset, 0);
    assert_eq!(found[&tp(&topic, 1)].offset, 0, "partition 1 is empty");
    let offset = async |spec| {
        let wanted = BTreeMap::from([(tp(&topic, 0), spec)]);
        admin.list_offsets(wanted).await.unwrap()[&tp(&topic, 0)]
    };
    assert_eq!(offset(OffsetSpec::Latest).await.offset, 4);
    let between = offset(OffsetSpec::Timestamp(base + 5_000)).await;
    assert_eq!((between.offset, between.timestamp), (3, base + 10_000));
    assert_eq!(offset(OffsetSpec::Timestamp(base)).await.offset, 0);
    let newest = offset(OffsetSpec::MaxTimestamp).await;
    assert_eq!((newest.offset, newest.timestamp), (3, base + 10_000));
    let future = offset(OffsetSpec::Timestamp(base + 3_600_000)).await;
    assert_eq!(
        future,
        ListedOffset {
            offset: -1,
            timestamp: -1,
            leader_epoch: future.leader_epoch,
        }
    );
}

#[tokio::test]
async fn list_offsets_of_a_topic_that_does_not_exist_fails_without_waiting() {
    let cluster = TestCluster::start(1).await;
    let admin = admin(&cluster).await;
    let topic = unique_topic("admin-nowhere");
    create_topic(admin.client(), &topic, 1).await;

    let started = admin.client().now();
    let missing = BTreeMap::from([(tp(&unique_topic("admin-nowhere"), 0), OffsetSpec::Latest)]);
    let error = admin.list_offsets(missing).await.unwrap_err();
    assert_eq!(code_name(&error), "UNKNOWN_TOPIC_OR_PARTITION");
    let beyond = BTreeMap::from([(tp(&topic, 5), OffsetSpec::Latest)]);
    let error = admin.list_offsets(beyond).await.unwrap_err();
    assert_eq!(code_name(&error), "UNKNOWN_TOPIC_OR_PARTITION");
    assert!(admin.client().now() - started < Duration::from_secs(5));
}

#[tokio::test]
async fn delete_records_moves_the_earliest_offset_and_minus_one_means_everything() {
    let cluster = TestCluster::start(3).await;
    let admin = admin(&cluster).await;
    let topic = unique_topic("admin-delete-records");
    create_topic(admin.client(), &topic, 2).await;
    produce_raw(admin.client(), &topic, 0, records(5)).await;
    produce_raw(admin.client(), &topic, 1, records(2)).await;

    let low = admin
        .delete_records(BTreeMap::from([(tp(&topic, 0), 3), (tp(&topic, 1), -1)]))
        .await
        .unwrap();
    assert_eq!(
        low,
        BTreeMap::from([(tp(&topic, 0), 3), (tp(&topic, 1), 2)])
    );
    let earliest = admin
        .list_offsets(BTreeMap::from([
            (tp(&topic, 0), OffsetSpec::Earliest),
            (tp(&topic, 1), OffsetSpec::Earliest),
        ]))
        .await
        .unwrap();
    assert_eq!(earliest[&tp(&topic, 0)].offset, 3);
    assert_eq!(earliest[&tp(&topic, 1)].offset, 2);
    let error = admin
        .delete_records(BTreeMap::from([(tp(&topic, 0), 99)]))
        .await
        .unwrap_err();
    assert_eq!(code_name(&error), "OFFSET_OUT_OF_RANGE");
}

// ---------------------------------------------------------------------------------------------
// Groups

#[tokio::test]
async fn offsets_committed_from_outside_make_an_empty_group_that_can_be_read_and_deleted() {
    let cluster = TestCluster::start(3).await;
    let admin = admin(&cluster).await;
    let topic = unique_topic("admin-group-offsets");
    let group = unique_topic("admin-group");
    create_topic(admin.client(), &topic, 2).await;
    let committed = BTreeMap::from([(tp(&topic, 0), 2), (tp(&topic, 1), 5)]);

    admin
        .alter_group_offsets(&group, committed.clone())
        .await
        .unwrap();
    assert_eq!(admin.list_group_offsets(&group).await.unwrap(), committed);
    let listed = admin.list_groups().await.unwrap();
    let listing = listed.iter().find(|g| g.group_id == group).expect("listed");
    assert_eq!(listing.state.as_deref(), Some("Empty"));
    let described = admin.describe_groups(&[&group]).await.unwrap();
    assert_eq!(described[0].state, "Empty");
    assert!(described[0].members.is_empty());

    admin
        .delete_group_offsets(&group, &[tp(&topic, 1)])
        .await
        .unwrap();
    assert_eq!(
        admin.list_group_offsets(&group).await.unwrap(),
        BTreeMap::from([(tp(&topic, 0), 2)])
    );
    let deleted = admin.delete_groups(&[&group]).await.unwrap();
    assert!(deleted[&group].is_ok(), "{deleted:?}");
    assert_eq!(
        admin.describe_groups(&[&group]).await.unwrap()[0].state,
        "Dead"
    );
    assert!(admin.list_group_offsets(&group).await.unwrap().is_empty());
    let again = admin.delete_groups(&[&group]).await.unwrap();
    assert_eq!(
        code_name(again[&group].as_ref().unwrap_err()),
        "GROUP_ID_NOT_FOUND"
    );
}

#[tokio::test]
async fn a_group_with_a_member_shows_its_assignment_and_refuses_outside_commits_and_deletion() {
    let cluster = TestCluster::start(3).await;
    let admin = admin(&cluster).await;
    let topic = unique_topic("admin-member-topic");
    let group = unique_topic("admin-member-group");
    create_topic(admin.client(), &topic, 2).await;
    let member = join_as_only_member(admin.client(), &group, &topic, &[0, 1]).await;

    let described = admin.describe_groups(&[&group]).await.unwrap().remove(0);
    assert_eq!(described.state, "Stable");
    assert_eq!(described.protocol_type, "consumer");
    assert_eq!(described.protocol, "range");
    assert_eq!(described.members.len(), 1);
    assert_eq!(described.members[0].member_id, member);
    assert_eq!(described.members[0].client_id, "tidepool-client");
    assert_eq!(
        described.members[0].assignment,
        vec![tp(&topic, 0), tp(&topic, 1)]
    );
    let listed = admin.list_groups().await.unwrap();
    let listing = listed.iter().find(|g| g.group_id == group).expect("listed");
    assert_eq!(listing.protocol_type, "consumer");
    assert_eq!(listing.state.as_deref(), Some("Stable"));

    let error = admin
        .alter_group_offsets(&group, BTreeMap::from([(tp(&topic, 0), 1)]))
        .await
        .unwrap_err();
    assert_eq!(code_name(&error), "UNKNOWN_MEMBER_ID");
    let refused = admin.delete_groups(&[&group]).await.unwrap();
    assert_eq!(
        code_name(refused[&group].as_ref().unwrap_err()),
        "NON_EMPTY_GROUP"
    );
}

#[tokio::test]
async fn admin_calls_can_be_spawned_on_a_multi_threaded_runtime() {
    let cluster = TestCluster::start(1).await;
    let admin = admin(&cluster).await;
    let groups = tokio::spawn(async move { admin.list_groups().await });
    groups.await.unwrap().unwrap();
}

/// Joins `group` as its only consumer with the classic protocol (JoinGroup, then SyncGroup as
/// leader assigning itself `partitions` of `topic`) and returns the member id. The member
/// stays until its 30 s session times out, long enough for a test.
async fn join_as_only_member(
    client: &Client,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> String {
    let subscription = consumer_protocol(
        0,
        &ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_string(topic.to_string())]),
    );
    let assignment = consumer_protocol(
        0,
        &ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            AssignedTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(partitions.to_vec()),
        ]),
    );
    let group_id = GroupId(StrBytes::from_string(group.to_string()));
    let mut member_id = StrBytes::default();
    for _ in 0..50 {
        let coordinator = client.coordinator(group).await.unwrap();
        let joined = client
            .send(coordinator, versions::JOIN_GROUP, |_| {
                JoinGroupRequest::default()
                    .with_group_id(group_id.clone())
                    .with_session_timeout_ms(30_000)
                    .with_rebalance_timeout_ms(30_000)
                    .with_member_id(member_id.clone())
                    .with_protocol_type(StrBytes::from_static_str("consumer"))
                    .with_protocols(vec![
                        JoinGroupRequestProtocol::default()
                            .with_name(StrBytes::from_static_str("range"))
                            .with_metadata(subscription.clone()),
                    ])
            })
            .await
            .unwrap();
        match KafkaCode::from_code(joined.error_code) {
            // KIP-394: the first join only hands out a member id.
            Some(KafkaCode::MEMBER_ID_REQUIRED) => {
                member_id = joined.member_id;
                continue;
            }
            Some(code) if code.is_coordinator_error() => {
                client.forget_coordinator(group);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Some(code) => panic!("JoinGroup: {code}"),
            None => {}
        }
        assert_eq!(joined.leader, joined.member_id, "the only member leads");
        let synced = client
            .send(coordinator, versions::SYNC_GROUP, |_| {
                SyncGroupRequest::default()
                    .with_group_id(group_id.clone())
                    .with_generation_id(joined.generation_id)
                    .with_member_id(joined.member_id.clone())
                    .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
                    .with_protocol_name(Some(StrBytes::from_static_str("range")))
                    .with_assignments(vec![
                        SyncGroupRequestAssignment::default()
                            .with_member_id(joined.member_id.clone())
                            .with_assignment(assignment.clone()),
                    ])
            })
            .await
            .unwrap();
        assert_eq!(KafkaCode::from_code(synced.error_code), None, "SyncGroup");
        return joined.member_id.to_string();
    }
    panic!("could not join {group}");
}

/// A consumer-protocol message as members exchange it: its version, then its fields.
fn consumer_protocol(version: i16, message: &impl Encodable) -> Bytes {
    let mut bytes = BytesMut::new();
    bytes.put_i16(version);
    message.encode(&mut bytes, version).unwrap();
    bytes.freeze()
}
