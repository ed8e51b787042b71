//! The `tidepool topics` and `tidepool groups` commands, run as a user runs them: the built
//! binary against an embedded broker, judged by its stdout, stderr and exit status, and by
//! what the cluster holds afterwards (read back through tidepool-client, not the CLI).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, GroupId, JoinGroupRequest,
    ProduceRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use tidepool::{Broker, BrokerHandle};
use tidepool_client::{
    Admin, Client, ClientConfig, ConfigResource, ConfigSource, KafkaCode, NewTopic, TopicPartition,
    versions,
};
use tidepool_protocol::records::BatchBuilder;

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn succeeded(self) -> String {
        assert_eq!(self.status, 0, "stderr: {}", self.stderr);
        self.stdout
    }

    fn failed(self) -> String {
        assert_eq!(self.status, 1, "stdout: {}", self.stdout);
        assert!(self.stderr.starts_with("error: "), "{}", self.stderr);
        self.stderr
    }
}

async fn tidepool(broker: &BrokerHandle, args: &[&str]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidepool"))
        .args(args)
        .args(["--bootstrap", &broker.bootstrap()])
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("run the tidepool binary");
    Run {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn start() -> (BrokerHandle, Admin) {
    let broker = Broker::builder()
        .nodes(3)
        .start()
        .await
        .expect("start a broker");
    let config = ClientConfig::new(broker.bootstrap()).request_timeout(Duration::from_secs(10));
    let client = Client::connect(tidepool::Env::real(), config)
        .await
        .unwrap();
    (broker, Admin::new(client))
}

/// The whitespace-separated cells of the table row whose first cells are `first`.
fn row<'a>(table: &'a str, first: &[&str]) -> Vec<&'a str> {
    table
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.starts_with(first))
        .unwrap_or_else(|| panic!("no row starting {first:?} in\n{table}"))
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

// ---------------------------------------------------------------------------------------------
// Topics

#[tokio::test]
async fn a_topic_is_created_listed_described_altered_and_deleted_from_the_command_line() {
    let (broker, admin) = start().await;

    let created = tidepool(
        &broker,
        &[
            "topics",
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention.ms=60000",
            "--config",
            "cleanup.policy=compact",
        ],
    )
    .await
    .succeeded();
    assert_eq!(created, "Created topic orders.\n");
    assert_eq!(
        admin
            .client()
            .topic("orders")
            .await
            .unwrap()
            .partitions
            .len(),
        3
    );

    let listed = tidepool(&broker, &["topics", "list"]).await.succeeded();
    assert_eq!(
        row(&listed, &["TOPIC"]),
        ["TOPIC", "PARTITIONS", "REPLICATION-FACTOR"]
    );
    assert_eq!(row(&listed, &["orders"]), ["orders", "3", "1"]);

    let described = tidepool(&broker, &["topics", "describe", "orders"])
        .await
        .succeeded();
    assert!(described.starts_with("Topic: orders\n"), "{described}");
    assert!(described.contains("Partitions: 3\n"), "{described}");
    assert_eq!(
        row(&described, &["2"]).len(),
        6,
        "partition 2 row: {described}"
    );
    assert_eq!(
        row(&described, &["retention.ms"]),
        ["retention.ms", "60000", "DYNAMIC_TOPIC_CONFIG"]
    );

    let altered = tidepool(
        &broker,
        &[
            "topics",
            "alter-config",
            "orders",
            "segment.ms=3600000",
            "--delete-config",
            "retention.ms",
        ],
    )
    .await
    .succeeded();
    assert!(
        altered.starts_with("Updated configs of topic orders"),
        "{altered}"
    );
    let configs = admin
        .describe_configs(ConfigResource::Topic("orders".into()))
        .await
        .unwrap();
    let source = |name: &str| configs.iter().find(|c| c.name == name).unwrap().source;
    assert_eq!(source("segment.ms"), ConfigSource::DynamicTopic);
    assert_eq!(source("retention.ms"), ConfigSource::Default);
    assert_eq!(source("cleanup.policy"), ConfigSource::DynamicTopic);

    let deleted = tidepool(&broker, &["topics", "delete", "orders"])
        .await
        .succeeded();
    assert_eq!(deleted, "Deleted topic orders.\n");
    let listed = tidepool(&broker, &["topics", "list"]).await.succeeded();
    assert!(!listed.contains("orders"), "{listed}");
    broker.shutdown().await;
}

#[tokio::test]
async fn topic_errors_go_to_stderr_with_the_brokers_reason_and_exit_status_1() {
    let (broker, admin) = start().await;
    admin
        .create_topic(NewTopic::new("existing", 1, -1))
        .await
        .unwrap();

    let duplicate = tidepool(&broker, &["topics", "create", "existing"])
        .await
        .failed();
    assert!(duplicate.contains("TOPIC_ALREADY_EXISTS"), "{duplicate}");
    let invalid = tidepool(
        &broker,
        &["topics", "alter-config", "existing", "retention.ms=soon"],
    )
    .await
    .failed();
    assert!(
        invalid.contains("INVALID_CONFIG") && invalid.contains("retention.ms"),
        "{invalid}"
    );
    let missing = tidepool(&broker, &["topics", "describe", "missing"])
        .await
        .failed();
    assert_eq!(missing, "error: topic missing does not exist\n");
    let missing = tidepool(&broker, &["topics", "delete", "missing"])
        .await
        .failed();
    assert_eq!(missing, "error: topic missing does not exist\n");
    let nothing = tidepool(&broker, &["topics", "alter-config", "existing"])
        .await
        .failed();
    assert!(nothing.contains("nothing to change"), "{nothing}");
    broker.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_cluster_is_an_error_not_a_hang() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidepool"))
        .args(["topics", "list", "--bootstrap", &address])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&address), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Groups

#[tokio::test]
async fn a_group_is_listed_described_with_its_lag_and_reset_from_the_command_line() {
    let (broker, admin) = start().await;
    admin
        .create_topic(NewTopic::new("events", 2, -1))
        .await
        .unwrap();
    produce(admin.client(), "events", 0, 5).await;
    produce(admin.client(), "events", 1, 3).await;
    admin
        .alter_group_offsets(
            "billing",
            BTreeMap::from([(tp("events", 0), 1), (tp("events", 1), 3)]),
        )
        .await
        .unwrap();

    let listed = tidepool(&broker, &["groups", "list"]).await.succeeded();
    assert_eq!(row(&listed, &["billing"]), ["billing", "Empty", "-"]);
    let described = tidepool(&broker, &["groups", "describe", "billing"])
        .await
        .succeeded();
    assert!(described.contains("State: Empty\n"), "{described}");
    assert!(described.contains("Members: none\n"), "{described}");
    assert_eq!(
        row(&described, &["events", "0"]),
        ["events", "0", "1", "5", "4", "-"]
    );
    assert_eq!(
        row(&described, &["events", "1"]),
        ["events", "1", "3", "3", "0", "-"]
    );

    let dry_run = tidepool(
        &broker,
        &[
            "groups",
            "reset-offsets",
            "billing",
            "--to-earliest",
            "--dry-run",
        ],
    )
    .await
    .succeeded();
    assert_eq!(row(&dry_run, &["events", "0"]), ["events", "0", "1", "0"]);
    assert!(dry_run.contains("Dry run"), "{dry_run}");
    let committed = admin.list_group_offsets("billing").await.unwrap();
    assert_eq!(committed[&tp("events", 0)], 1, "a dry run changes nothing");

    tidepool(
        &broker,
        &["groups", "reset-offsets", "billing", "--to-earliest"],
    )
    .await
    .succeeded();
    let described = tidepool(&broker, &["groups", "describe", "billing"])
        .await
        .succeeded();
    assert_eq!(
        row(&described, &["events", "0"]),
        ["events", "0", "0", "5", "5", "-"]
    );
    assert_eq!(
        row(&described, &["events", "1"]),
        ["events", "1", "0", "3", "3", "-"]
    );

    // Offset 4 is beyond partition 1's end (3), so it is clamped there.
    tidepool(
        &broker,
        &[
            "groups",
            "reset-offsets",
            "billing",
            "--to-offset",
            "4",
            "--topic",
            "events",
        ],
    )
    .await
    .succeeded();
    let committed = admin.list_group_offsets("billing").await.unwrap();
    assert_eq!(
        committed,
        BTreeMap::from([(tp("events", 0), 4), (tp("events", 1), 3)])
    );

    tidepool(
        &broker,
        &[
            "groups",
            "reset-offsets",
            "billing",
            "--to-datetime",
            "1970-01-01T00:00:00Z",
        ],
    )
    .await
    .succeeded();
    let committed = admin.list_group_offsets("billing").await.unwrap();
    assert_eq!(
        committed,
        BTreeMap::from([(tp("events", 0), 0), (tp("events", 1), 0)])
    );
    tidepool(
        &broker,
        &[
            "groups",
            "reset-offsets",
            "billing",
            "--to-latest",
            "--topic",
            "events:1",
        ],
    )
    .await
    .succeeded();
    let committed = admin.list_group_offsets("billing").await.unwrap();
    assert_eq!(
        committed,
        BTreeMap::from([(tp("events", 0), 0), (tp("events", 1), 3)])
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn resetting_a_group_with_members_is_refused_and_changes_nothing() {
    let (broker, admin) = start().await;
    admin
        .create_topic(NewTopic::new("clicks", 2, -1))
        .await
        .unwrap();
    produce(admin.client(), "clicks", 0, 4).await;
    let member = join_as_only_member(admin.client(), "live", "clicks", &[0, 1]).await;
    let before = admin.list_group_offsets("live").await.unwrap();

    let described = tidepool(&broker, &["groups", "describe", "live"])
        .await
        .succeeded();
    assert!(described.contains("State: Stable\n"), "{described}");
    assert!(described.contains("Assignor: range\n"), "{described}");
    let member_row = row(&described, &[member.as_str()]);
    assert_eq!(
        member_row[member_row.len() - 1],
        "clicks:0,1",
        "{described}"
    );
    assert_eq!(
        row(&described, &["clicks", "0"]),
        ["clicks", "0", "-", "4", "-", &member]
    );

    let refused = tidepool(
        &broker,
        &[
            "groups",
            "reset-offsets",
            "live",
            "--to-latest",
            "--topic",
            "clicks",
        ],
    )
    .await
    .failed();
    assert!(
        refused.contains("inactive") && refused.contains("Stable"),
        "{refused}"
    );
    assert_eq!(admin.list_group_offsets("live").await.unwrap(), before);
    let missing = tidepool(&broker, &["groups", "describe", "nobody"])
        .await
        .failed();
    assert_eq!(missing, "error: group nobody does not exist\n");
    broker.shutdown().await;
}

#[tokio::test]
async fn reset_offsets_needs_exactly_one_target() {
    let (broker, _admin) = start().await;
    let none = tidepool(&broker, &["groups", "reset-offsets", "g"]).await;
    assert_ne!(none.status, 0);
    let two = tidepool(
        &broker,
        &[
            "groups",
            "reset-offsets",
            "g",
            "--to-earliest",
            "--to-latest",
        ],
    )
    .await;
    assert_ne!(two.status, 0);
    let bad_time = tidepool(
        &broker,
        &["groups", "reset-offsets", "g", "--to-datetime", "yesterday"],
    )
    .await;
    assert_ne!(bad_time.status, 0);
    assert!(bad_time.stderr.contains("RFC 3339"), "{}", bad_time.stderr);
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Helpers speaking the protocol directly, so these tests do not depend on the producer and
// consumer they might otherwise be debugging.

/// Appends `count` records to a partition with acks=all.
async fn produce(client: &Client, topic: &str, partition: i32, count: usize) {
    let mut batch = BatchBuilder::new();
    for i in 0..count {
        batch.append(
            client.wall_ms(),
            None,
            Some(Bytes::from(format!("{i}"))),
            Vec::new(),
        );
    }
    let batch = batch.build().unwrap();
    client.refresh_topics(&[topic]).await.unwrap();
    let (leader, _) = client.leader(topic, partition).expect("a leader");
    let response = client
        .send(leader, versions::PRODUCE, |_| {
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(10_000)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partition_data(vec![
                            PartitionProduceData::default()
                                .with_index(partition)
                                .with_records(Some(batch)),
                        ]),
                ])
        })
        .await
        .unwrap();
    let code = response.responses[0].partition_responses[0].error_code;
    assert_eq!(
        KafkaCode::from_code(code),
        None,
        "produce to {topic}-{partition}"
    );
}

/// Joins `group` as its only consumer (JoinGroup, then SyncGroup as leader assigning itself
/// `partitions` of `topic`) and returns the member id. It stays for its 30 s session.
async fn join_as_only_member(
    client: &Client,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> String {
    let subscription = consumer_protocol(
        &ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_string(topic.to_string())]),
    );
    let assignment = consumer_protocol(
        &ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            AssignedTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(partitions.to_vec()),
        ]),
    );
    let group_id = GroupId(StrBytes::from_string(group.to_string()));
    let coordinator = client.coordinator(group).await.unwrap();
    let mut member_id = StrBytes::default();
    let joined = loop {
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
            Some(KafkaCode::MEMBER_ID_REQUIRED) if member_id.is_empty() => {
                member_id = joined.member_id;
            }
            None => break joined,
            Some(code) => panic!("JoinGroup: {code}"),
        }
    };
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
                        .with_assignment(assignment),
                ])
        })
        .await
        .unwrap();
    assert_eq!(KafkaCode::from_code(synced.error_code), None, "SyncGroup");
    joined.member_id.to_string()
}

/// A consumer-protocol message (version 0) as members exchange it: version, then fields.
fn consumer_protocol(message: &impl Encodable) -> Bytes {
    let mut bytes = BytesMut::new();
    bytes.put_i16(0);
    message.encode(&mut bytes, 0).unwrap();
    bytes.freeze()
}
