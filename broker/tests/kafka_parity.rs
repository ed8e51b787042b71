//! Answers the differential harness (tests/differential.rs) found differing from Apache
//! Kafka 4.3.1, fixed to Kafka's: each test asserts what Kafka answered to the same request.

mod common;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tidepool_broker::Config;
use tidepool_protocol::records::BatchBuilder;

/// Kafka's "authorized operations" when a client asks for them and no authorizer is set:
/// every operation the resource type supports.
const TOPIC_OPERATIONS: i32 = 3576;
const CLUSTER_OPERATIONS: i32 = 8096;
const GROUP_OPERATIONS: i32 = 3400;
/// Kafka's "not asked for".
const OPERATIONS_NOT_ASKED: i32 = i32::MIN;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// Like tests/java/kafka-broker.sh's Kafka: topics are created, not auto-created.
async fn broker() -> tidepool_broker::BrokerHandle {
    start(Config {
        auto_create_topics: false,
        group_initial_rebalance_delay_ms: 0,
        ..Config::default()
    })
    .await
}

async fn create_with_configs(client: &mut Client, name: &str, configs: &[(&str, &str)]) {
    let request = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(key, value)| {
                        CreatableTopicConfig::default()
                            .with_name(text(key))
                            .with_value(Some(text(value)))
                    })
                    .collect(),
            ),
    ]);
    let response = client.call(7, request).await;
    assert_eq!(response.topics[0].error_code, 0);
}

fn by_name(name: &str) -> MetadataRequestTopic {
    MetadataRequestTopic::default().with_name(Some(topic_name(name)))
}

#[tokio::test]
async fn metadata_tells_illegal_names_from_unknown_topics_and_looks_up_by_id() {
    let broker = broker().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "t", 2).await;
    let answer = client
        .call(
            12,
            MetadataRequest::default().with_topics(Some(vec![by_name("bad name!"), by_name("u")])),
        )
        .await;
    let codes: Vec<i16> = answer.topics.iter().map(|topic| topic.error_code).collect();
    assert_eq!(
        codes,
        vec![
            ResponseError::InvalidTopicException.code(),
            ResponseError::UnknownTopicOrPartition.code()
        ]
    );

    let id = client
        .call(
            12,
            MetadataRequest::default().with_topics(Some(vec![by_name("t")])),
        )
        .await
        .topics[0]
        .topic_id;
    // A request naming ids is answered by id, whatever names come with them.
    let answer = client
        .call(
            12,
            MetadataRequest::default()
                .with_topics(Some(vec![by_name("ignored").with_topic_id(id)])),
        )
        .await;
    let found = &answer.topics[0];
    assert_eq!(
        (found.error_code, found.name.as_ref().map(|n| n.0.as_str())),
        (0, Some("t"))
    );
    assert_eq!(found.partitions.len(), 2);

    let unknown = "6ba7b810-9dad-11d1-80b4-00c04fd430c8".parse().unwrap();
    let answer = client
        .call(
            12,
            MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default()
                    .with_name(None)
                    .with_topic_id(unknown),
            ])),
        )
        .await;
    let missing = &answer.topics[0];
    assert_eq!(
        (missing.error_code, missing.name.clone(), missing.topic_id),
        (ResponseError::UnknownTopicId.code(), None, unknown)
    );
}

#[tokio::test]
async fn authorized_operations_are_all_operations_when_asked_for() {
    let broker = broker().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "t", 1).await;
    let asked = client
        .call(
            9,
            MetadataRequest::default()
                .with_topics(Some(vec![by_name("t")]))
                .with_include_cluster_authorized_operations(true)
                .with_include_topic_authorized_operations(true),
        )
        .await;
    assert_eq!(
        (
            asked.cluster_authorized_operations,
            asked.topics[0].topic_authorized_operations
        ),
        (CLUSTER_OPERATIONS, TOPIC_OPERATIONS)
    );
    let not_asked = client
        .call(
            9,
            MetadataRequest::default().with_topics(Some(vec![by_name("t")])),
        )
        .await;
    assert_eq!(
        (
            not_asked.cluster_authorized_operations,
            not_asked.topics[0].topic_authorized_operations
        ),
        (OPERATIONS_NOT_ASKED, OPERATIONS_NOT_ASKED)
    );
    let cluster = client
        .call(
            0,
            DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
        )
        .await;
    assert_eq!(cluster.cluster_authorized_operations, CLUSTER_OPERATIONS);

    let mut member = client_for_group(&broker, "g").await;
    let first = member.call(9, join_request("g", "")).await;
    let joined = member
        .call(9, join_request("g", first.member_id.as_str()))
        .await;
    assert_eq!(joined.error_code, 0);
    let described = member
        .call(
            3,
            DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(text("g"))])
                .with_include_authorized_operations(true),
        )
        .await;
    assert_eq!(described.groups[0].authorized_operations, GROUP_OPERATIONS);
}

#[tokio::test]
async fn describe_cluster_refuses_other_endpoint_types_as_kafka_brokers_do() {
    let broker = broker().await;
    let mut client = Client::connect(&broker).await;
    let controllers = client
        .call(1, DescribeClusterRequest::default().with_endpoint_type(2))
        .await;
    assert_eq!(
        (
            controllers.error_code,
            controllers.controller_id.0,
            controllers.cluster_id.as_str(),
            controllers.brokers.len()
        ),
        (ResponseError::MismatchedEndpointType.code(), -1, "", 0)
    );
    let unknown = client
        .call(1, DescribeClusterRequest::default().with_endpoint_type(9))
        .await;
    assert_eq!(
        (unknown.error_code, unknown.controller_id.0),
        (ResponseError::UnsupportedEndpointType.code(), -1)
    );
    assert_eq!(
        unknown.error_message.as_deref(),
        Some("Unsupported endpoint type 9")
    );
}

#[tokio::test]
async fn a_name_given_twice_is_refused_once() {
    let broker = broker().await;
    let mut client = Client::connect(&broker).await;
    let topic = |name: &str| {
        CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(1)
            .with_replication_factor(1)
    };
    let created = client
        .call(
            7,
            CreateTopicsRequest::default().with_topics(vec![
                topic("twice"),
                topic("once"),
                topic("twice"),
            ]),
        )
        .await;
    let answers: Vec<(&str, i16)> = created
        .topics
        .iter()
        .map(|answer| (answer.name.0.as_str(), answer.error_code))
        .collect();
    assert_eq!(
        answers,
        vec![("once", 0), ("twice", ResponseError::InvalidRequest.code())]
    );
    assert_eq!(
        created.topics[1].error_message.as_deref(),
        Some("Duplicate topic name.")
    );

    let grow = |count: i32| {
        CreatePartitionsTopic::default()
            .with_name(topic_name("once"))
            .with_count(count)
            .with_assignments(None)
    };
    let grown = client
        .call(
            3,
            CreatePartitionsRequest::default().with_topics(vec![grow(3), grow(4)]),
        )
        .await;
    let answers: Vec<(&str, i16)> = grown
        .results
        .iter()
        .map(|answer| (answer.name.0.as_str(), answer.error_code))
        .collect();
    assert_eq!(
        answers,
        vec![("once", ResponseError::InvalidRequest.code())]
    );

    let query = || ListOffsetsPartition::default().with_timestamp(-1);
    let listed = client
        .call(
            8,
            ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![
                    ListOffsetsTopic::default()
                        .with_name(topic_name("once"))
                        .with_partitions(vec![query(), query()]),
                ]),
        )
        .await;
    let partitions = &listed.topics[0].partitions;
    assert_eq!(partitions.len(), 1, "answered once");
    assert_eq!(
        (partitions[0].error_code, partitions[0].offset),
        (ResponseError::InvalidRequest.code(), -1)
    );
}

#[tokio::test]
async fn produce_refusals_carry_what_kafka_reports() {
    let broker = broker().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "t", 1).await;
    create_with_configs(&mut client, "compacted", &[("cleanup.policy", "compact")]).await;

    let empty: ProduceResponse = client
        .call(11, produce_request("t", 0, Bytes::new(), 1))
        .await;
    let empty = &empty.responses[0].partition_responses[0];
    assert_eq!(
        (empty.error_code, empty.base_offset, empty.log_start_offset),
        (ResponseError::InvalidRecord.code(), -1, -1)
    );

    let init = client
        .call(
            4,
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
        )
        .await;
    let producer = init.producer_id.0;
    assert_eq!(
        produce(&mut client, "t", 0, idempotent_batch(producer, 0, 0, 3))
            .await
            .error_code,
        0
    );
    let gap = produce(&mut client, "t", 0, idempotent_batch(producer, 0, 9, 1)).await;
    assert_eq!(
        (gap.error_code, gap.log_start_offset, gap.error_message),
        (ResponseError::OutOfOrderSequenceNumber.code(), 0, None)
    );

    let mut builder = BatchBuilder::new();
    builder.append(
        1_000,
        Some(Bytes::from_static(b"k")),
        Some(Bytes::from_static(b"a")),
        vec![],
    );
    builder.append(1_001, None, Some(Bytes::from_static(b"b")), vec![]);
    let keyless = produce(&mut client, "compacted", 0, builder.build().unwrap()).await;
    let message =
        "Compacted topic cannot accept message without key in topic partition compacted-0";
    assert_eq!(
        (keyless.error_code, keyless.log_start_offset),
        (ResponseError::InvalidRecord.code(), 0)
    );
    let record_errors: Vec<(i32, Option<&str>)> = keyless
        .record_errors
        .iter()
        .map(|error| {
            (
                error.batch_index,
                error.batch_index_error_message.as_deref(),
            )
        })
        .collect();
    assert_eq!(record_errors, vec![(1, Some(message))]);
    assert_eq!(
        keyless.error_message.as_deref(),
        Some(
            format!(
                "One or more records have been rejected due to 1 record errors in total, and only \
                 showing the first three errors at most: [RecordError(batchIndex=1, message='{message}')]"
            )
            .as_str()
        )
    );
}

#[tokio::test]
async fn fetch_errors_carry_no_offsets_and_name_no_leader_for_a_future_epoch() {
    let broker = broker().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "t", 1).await;
    produce(&mut client, "t", 0, batch(3, 1)).await;

    let past = fetch(&mut client, fetch_request("t", 0, 10)).await;
    assert_eq!(
        (
            past.error_code,
            past.high_watermark,
            past.last_stable_offset,
            past.log_start_offset,
            past.aborted_transactions.clone()
        ),
        (ResponseError::OffsetOutOfRange.code(), -1, -1, -1, None)
    );

    let unknown = fetch(&mut client, fetch_request("t", 5, 0)).await;
    assert_eq!(
        (unknown.error_code, unknown.aborted_transactions.clone()),
        (ResponseError::UnknownTopicOrPartition.code(), Some(vec![]))
    );

    let mut ahead = fetch_request("t", 0, 0);
    ahead.topics[0].partitions[0].current_leader_epoch = 5;
    let ahead = fetch(&mut client, ahead).await;
    assert_eq!(
        (
            ahead.error_code,
            ahead.current_leader.leader_id.0,
            ahead.current_leader.leader_epoch
        ),
        (ResponseError::UnknownLeaderEpoch.code(), -1, -1)
    );
}

fn subscription(topics: &[&str]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    buf.put_i32(topics.len() as i32);
    for topic in topics {
        buf.put_i16(topic.len() as i16);
        buf.put_slice(topic.as_bytes());
    }
    buf.put_i32(-1);
    buf.freeze()
}

fn join_request(group_id: &str, member_id: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(text(group_id)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(text(member_id))
        .with_protocol_type(text("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(text("range"))
                .with_metadata(subscription(&["t"])),
        ])
}

async fn client_for_group(broker: &tidepool_broker::BrokerHandle, group_id: &str) -> Client {
    let mut client = Client::connect(broker).await;
    let found = client
        .call(
            3,
            FindCoordinatorRequest::default().with_key(text(group_id)),
        )
        .await;
    assert_eq!(found.error_code, 0);
    Client::connect_to(&format!("{}:{}", found.host, found.port)).await
}

#[tokio::test]
async fn join_refusals_name_no_protocol() {
    let broker = broker().await;
    let mut client = client_for_group(&broker, "g").await;
    let v9 = client.call(9, join_request("g", "")).await;
    assert_eq!(
        (v9.error_code, v9.protocol_name),
        (ResponseError::MemberIdRequired.code(), None)
    );
    // Before v7 the field is not nullable: an empty string.
    let v6 = client.call(6, join_request("g", "")).await;
    assert_eq!(
        (v6.error_code, v6.protocol_name),
        (ResponseError::MemberIdRequired.code(), Some(text("")))
    );
}

#[tokio::test]
async fn describe_groups_names_no_protocol_but_the_last_assignments_while_rebalancing() {
    let broker = broker().await;
    let mut first = client_for_group(&broker, "g").await;
    let id = first.call(9, join_request("g", "")).await.member_id;
    let joined = first.call(9, join_request("g", id.as_str())).await;
    let synced = first
        .call(
            5,
            SyncGroupRequest::default()
                .with_group_id(GroupId(text("g")))
                .with_generation_id(joined.generation_id)
                .with_member_id(id.clone())
                .with_protocol_type(Some(text("consumer")))
                .with_protocol_name(Some(text("range")))
                .with_assignments(vec![
                    SyncGroupRequestAssignment::default()
                        .with_member_id(id.clone())
                        .with_assignment(Bytes::from_static(b"all of t")),
                ]),
        )
        .await;
    assert_eq!(synced.error_code, 0);
    let describe = || DescribeGroupsRequest::default().with_groups(vec![GroupId(text("g"))]);
    let stable = first.call(5, describe()).await;
    assert_eq!(stable.groups[0].protocol_data.as_str(), "range");

    // A second member's join parks and starts a rebalance.
    let mut second = client_for_group(&broker, "g").await;
    let other = second.call(9, join_request("g", "")).await.member_id;
    let (_, bytes) = second.encode(9, &join_request("g", other.as_str()));
    second.send_raw(&bytes).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rebalancing = first.call(5, describe()).await;
    assert_eq!(
        (
            rebalancing.groups[0].group_state.as_str(),
            rebalancing.groups[0].protocol_data.as_str()
        ),
        ("PreparingRebalance", "")
    );
    // Kafka still shows what each member was last given (and no subscription metadata).
    let member = rebalancing.groups[0]
        .members
        .iter()
        .find(|member| member.member_id == id)
        .unwrap();
    assert_eq!(
        (
            member.member_assignment.as_ref(),
            member.member_metadata.as_ref()
        ),
        (&b"all of t"[..], &b""[..])
    );
}

#[tokio::test]
async fn an_emptied_group_stays_listed_as_empty_until_its_retention_passes() {
    let broker = start(Config {
        auto_create_topics: false,
        group_initial_rebalance_delay_ms: 0,
        group_empty_retention_ms: 1_500,
        ..Config::default()
    })
    .await;
    let mut client = client_for_group(&broker, "g").await;
    let id = client.call(9, join_request("g", "")).await.member_id;
    let joined = client.call(9, join_request("g", id.as_str())).await;
    assert_eq!(joined.error_code, 0);
    let left = client
        .call(
            4,
            LeaveGroupRequest::default()
                .with_group_id(GroupId(text("g")))
                .with_members(vec![
                    leave_group_request::MemberIdentity::default().with_member_id(id.clone()),
                ]),
        )
        .await;
    assert_eq!(left.error_code, 0);
    let describe = || DescribeGroupsRequest::default().with_groups(vec![GroupId(text("g"))]);
    // Several maintenance ticks later the group is still there, Empty, with its protocol type.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let empty = client.call(5, describe()).await;
    assert_eq!(
        (
            empty.groups[0].group_state.as_str(),
            empty.groups[0].protocol_type.as_str()
        ),
        ("Empty", "consumer")
    );
    let listed = client.call(4, ListGroupsRequest::default()).await;
    assert_eq!(
        listed
            .groups
            .iter()
            .map(|group| group.group_id.as_str())
            .collect::<Vec<_>>(),
        vec!["g"]
    );
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    let forgotten = client.call(5, describe()).await;
    assert_eq!(forgotten.groups[0].group_state.as_str(), "Dead");
}

#[tokio::test]
async fn offset_delete_answers_unknown_partitions_itself() {
    let broker = broker().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "t", 1).await;
    let mut coordinator = client_for_group(&broker, "g").await;
    let committed = coordinator
        .call(
            8,
            OffsetCommitRequest::default()
                .with_group_id(GroupId(text("g")))
                .with_topics(vec![
                    kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(topic_name("t"))
                        .with_partitions(vec![
                            kafka_protocol::messages::offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_committed_offset(0),
                        ]),
                ]),
        )
        .await;
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);
    let topic = |name: &str, partitions: &[i32]| {
        OffsetDeleteRequestTopic::default()
            .with_name(topic_name(name))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&index| {
                        OffsetDeleteRequestPartition::default().with_partition_index(index)
                    })
                    .collect(),
            )
    };
    let answer = coordinator
        .call(
            0,
            OffsetDeleteRequest::default()
                .with_group_id(GroupId(text("g")))
                .with_topics(vec![topic("t", &[0, 4]), topic("never-created", &[0])]),
        )
        .await;
    let codes: Vec<(&str, i32, i16)> = answer
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(move |p| (topic.name.0.as_str(), p.partition_index, p.error_code))
        })
        .collect();
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    assert_eq!(
        codes,
        vec![
            ("t", 0, 0),
            ("t", 4, unknown),
            ("never-created", 0, unknown)
        ]
    );
}

/// The time the embedded broker sees: the same Clock seam its default environment uses.
fn wall_ms() -> i64 {
    use tidepool_io::Clock;
    tidepool_io::SystemClock::new().wall_ms()
}

fn stamped(timestamps: &[i64]) -> Bytes {
    let mut builder = BatchBuilder::new();
    for (index, timestamp) in timestamps.iter().enumerate() {
        builder.push(record(index, *timestamp));
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn records_stamped_outside_the_topics_bounds_refuse_the_batch_naming_each_one() {
    let broker = broker().await;
    let mut client = Client::connect(&broker).await;
    create_with_configs(
        &mut client,
        "hour",
        &[("message.timestamp.before.max.ms", "3600000")],
    )
    .await;
    let now = wall_ms();
    let refused = produce(&mut client, "hour", 0, stamped(&[now, 1_000, now])).await;
    assert_eq!(
        (
            refused.error_code,
            refused.base_offset,
            refused.log_start_offset,
            refused.error_message.as_deref()
        ),
        (
            ResponseError::InvalidTimestamp.code(),
            -1,
            0,
            Some("One or more records have been rejected due to invalid timestamp")
        )
    );
    assert_eq!(refused.record_errors.len(), 1);
    assert_eq!(refused.record_errors[0].batch_index, 1);
    let message = refused.record_errors[0]
        .batch_index_error_message
        .as_deref()
        .unwrap();
    assert!(
        message.starts_with(
            "Timestamp 1000 of message with offset 1 is out of range. The timestamp should be within ["
        ),
        "{message}"
    );

    // Kafka 4's default message.timestamp.after.max.ms is one hour; before is unbounded.
    create_topic(&mut client, "default", 1).await;
    let ahead = produce(&mut client, "default", 0, stamped(&[now + 2 * 3_600_000])).await;
    assert_eq!(ahead.error_code, ResponseError::InvalidTimestamp.code());
    let accepted = produce(&mut client, "default", 0, stamped(&[1_000, now + 600_000])).await;
    assert_eq!((accepted.error_code, accepted.base_offset), (0, 0));

    // A LogAppendTime topic stamps records itself, whatever the producer said.
    create_with_configs(
        &mut client,
        "append-time",
        &[("message.timestamp.type", "LogAppendTime")],
    )
    .await;
    let stamped_by_broker = produce(
        &mut client,
        "append-time",
        0,
        stamped(&[now + 2 * 3_600_000]),
    )
    .await;
    assert_eq!(stamped_by_broker.error_code, 0);
}

#[tokio::test]
async fn a_duplicate_batch_is_answered_with_the_original_batchs_max_timestamp() {
    let broker = broker().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "t", 1).await;
    let init = client
        .call(
            4,
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
        )
        .await;
    let batch = idempotent_batch(init.producer_id.0, 0, 0, 3);
    let first = produce(&mut client, "t", 0, batch.clone()).await;
    assert_eq!((first.base_offset, first.log_append_time_ms), (0, -1));
    let duplicate = produce(&mut client, "t", 0, batch).await;
    // idempotent_batch stamps its records 1000, 1001, 1002.
    assert_eq!(
        (
            duplicate.error_code,
            duplicate.base_offset,
            duplicate.log_append_time_ms
        ),
        (0, 0, 1_002)
    );
}

#[tokio::test]
async fn a_member_id_handed_out_survives_maintenance_ticks_until_its_join() {
    let broker = broker().await;
    let mut client = client_for_group(&broker, "slow").await;
    let required = client.call(9, join_request("slow", "")).await;
    assert_eq!(required.error_code, ResponseError::MemberIdRequired.code());
    // Several 50 ms maintenance ticks pass before the member comes back with its id.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let joined = client
        .call(9, join_request("slow", required.member_id.as_str()))
        .await;
    assert_eq!((joined.error_code, joined.generation_id), (0, 1));
}
