//! Consumer groups over the wire: coordinators, the join/sync dance, heartbeats, commits,
//! group administration, restarts.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tidepool_broker::admin::ResetTarget;
use tidepool_broker::group::GroupState;
use tidepool_broker::{Broker, BrokerHandle, Config};

fn group(id: &str) -> GroupId {
    GroupId(StrBytes::from_string(id.to_owned()))
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// ConsumerProtocolSubscription v0 for `topics`.
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

/// ConsumerProtocolAssignment v0 of `partitions` of one topic.
fn assignment(topic: &str, partitions: &[i32]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    buf.put_i32(1);
    buf.put_i16(topic.len() as i16);
    buf.put_slice(topic.as_bytes());
    buf.put_i32(partitions.len() as i32);
    for partition in partitions {
        buf.put_i32(*partition);
    }
    buf.put_i32(-1);
    buf.freeze()
}

async fn coordinator_client(broker: &BrokerHandle, group_id: &str) -> Client {
    let mut client = Client::connect(broker).await;
    let response = client
        .call(
            3,
            FindCoordinatorRequest::default().with_key(text(group_id)),
        )
        .await;
    assert_eq!(response.error_code, 0);
    Client::connect_to(&format!("{}:{}", response.host, response.port)).await
}

fn join_request(group_id: &str, member_id: &str, topics: &[&str]) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(group(group_id))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(text(member_id))
        .with_protocol_type(text("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(text("range"))
                .with_metadata(subscription(topics)),
        ])
}

/// Joins through MEMBER_ID_REQUIRED; returns the member id and the JoinGroup answer (sent on
/// its own connection, since the answer may wait for a rebalance).
async fn join(client: &mut Client, group_id: &str, topics: &[&str]) -> (String, JoinGroupResponse) {
    let first = client.call(9, join_request(group_id, "", topics)).await;
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
    let member_id = first.member_id.to_string();
    let answer = client
        .call(9, join_request(group_id, &member_id, topics))
        .await;
    (member_id, answer)
}

async fn sync(
    client: &mut Client,
    group_id: &str,
    member_id: &str,
    generation: i32,
    assignments: Vec<(String, Bytes)>,
) -> SyncGroupResponse {
    let request = SyncGroupRequest::default()
        .with_group_id(group(group_id))
        .with_generation_id(generation)
        .with_member_id(text(member_id))
        .with_protocol_type(Some(text("consumer")))
        .with_protocol_name(Some(text("range")))
        .with_assignments(
            assignments
                .into_iter()
                .map(|(member, bytes)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(text(&member))
                        .with_assignment(bytes)
                })
                .collect(),
        );
    client.call(5, request).await
}

async fn heartbeat(client: &mut Client, group_id: &str, member_id: &str, generation: i32) -> i16 {
    let request = HeartbeatRequest::default()
        .with_group_id(group(group_id))
        .with_generation_id(generation)
        .with_member_id(text(member_id));
    client.call(4, request).await.error_code
}

async fn commit(
    client: &mut Client,
    group_id: &str,
    member_id: &str,
    generation: i32,
    topic: &str,
    offsets: &[(i32, i64)],
) -> Vec<i16> {
    let request = OffsetCommitRequest::default()
        .with_group_id(group(group_id))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(text(member_id))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    offsets
                        .iter()
                        .map(|(partition, offset)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(*partition)
                                .with_committed_offset(*offset)
                                .with_committed_metadata(Some(text("m")))
                        })
                        .collect(),
                ),
        ]);
    let response = client.call(8, request).await;
    response.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect()
}

async fn committed(
    client: &mut Client,
    group_id: &str,
    topic: &str,
    partitions: &[i32],
) -> Vec<i64> {
    let request = OffsetFetchRequest::default()
        .with_group_id(group(group_id))
        .with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partition_indexes(partitions.to_vec()),
        ]));
    let response = client.call(7, request).await;
    assert_eq!(response.error_code, 0);
    response.topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect()
}

#[tokio::test]
async fn coordinators_spread_over_nodes_and_others_say_not_coordinator() {
    let broker = Broker::builder().memory().nodes(3).start().await.unwrap();
    let mut client = Client::connect(&broker).await;
    let mut coordinators = std::collections::BTreeSet::new();
    for index in 0..30 {
        let response = client
            .call(
                3,
                FindCoordinatorRequest::default().with_key(text(&format!("group-{index}"))),
            )
            .await;
        assert_eq!(response.error_code, 0);
        coordinators.insert(response.node_id.0);
    }
    assert_eq!(coordinators.len(), 3, "{coordinators:?}");
    let batched = client
        .call(
            4,
            FindCoordinatorRequest::default().with_coordinator_keys(vec![text("a"), text("b")]),
        )
        .await;
    assert_eq!(batched.coordinators.len(), 2);
    assert!(
        broker
            .cluster()
            .topic("__consumer_offsets")
            .unwrap()
            .internal
    );

    let coordinator = broker.cluster().coordinator_for("g").unwrap().id;
    let other = broker
        .nodes()
        .into_iter()
        .find(|node| node.id != coordinator)
        .unwrap();
    let mut wrong = Client::connect_to(&format!("{}:{}", other.host, other.port)).await;
    let answer = wrong.call(9, join_request("g", "", &["t"])).await;
    assert_eq!(answer.error_code, ResponseError::NotCoordinator.code());
}

#[tokio::test]
async fn two_members_rebalance_and_each_gets_the_leaders_assignment() {
    let broker = start_default().await;
    let mut first = coordinator_client(&broker, "g").await;
    let (a, joined) = join(&mut first, "g", &["t"]).await;
    assert_eq!(
        (
            joined.error_code,
            joined.generation_id,
            joined.leader.as_str()
        ),
        (0, 1, a.as_str())
    );
    let synced = sync(
        &mut first,
        "g",
        &a,
        1,
        vec![(a.clone(), assignment("t", &[0, 1]))],
    )
    .await;
    assert_eq!(synced.assignment, assignment("t", &[0, 1]));
    assert_eq!(heartbeat(&mut first, "g", &a, 1).await, 0);

    // A second member joins on its own connection; the first learns of it by heartbeat.
    let mut second = coordinator_client(&broker, "g").await;
    let first_answer = second.call(9, join_request("g", "", &["t"])).await;
    let b = first_answer.member_id.to_string();
    let (correlation_id, bytes) = second.encode(9, &join_request("g", &b, &["t"]));
    second.send_raw(&bytes).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(
        heartbeat(&mut first, "g", &a, 1).await,
        ResponseError::RebalanceInProgress.code()
    );
    let leader_view = first.call(9, join_request("g", &a, &["t"])).await;
    let follower_view =
        Client::decode::<JoinGroupRequest>(9, correlation_id, second.read_frame().await.unwrap());
    assert_eq!(
        (leader_view.generation_id, follower_view.generation_id),
        (2, 2)
    );
    assert_eq!(leader_view.members.len(), 2);
    assert!(follower_view.members.is_empty());

    let (correlation_id, bytes) = second.encode(
        5,
        &SyncGroupRequest::default()
            .with_group_id(group("g"))
            .with_generation_id(2)
            .with_member_id(text(&b))
            .with_protocol_type(Some(text("consumer")))
            .with_protocol_name(Some(text("range"))),
    );
    second.send_raw(&bytes).await;
    let leader_sync = sync(
        &mut first,
        "g",
        &a,
        2,
        vec![
            (a.clone(), assignment("t", &[0])),
            (b.clone(), assignment("t", &[1])),
        ],
    )
    .await;
    let follower_sync =
        Client::decode::<SyncGroupRequest>(5, correlation_id, second.read_frame().await.unwrap());
    assert_eq!(leader_sync.assignment, assignment("t", &[0]));
    assert_eq!(follower_sync.assignment, assignment("t", &[1]));

    let described = broker.control().describe_group("g").unwrap();
    assert_eq!(described.state, GroupState::Stable);
    assert_eq!(described.generation, 2);
    let mut owned: Vec<(String, i32)> = described
        .members
        .iter()
        .flat_map(|m| m.assignment.clone())
        .collect();
    owned.sort();
    assert_eq!(owned, vec![("t".to_owned(), 0), ("t".to_owned(), 1)]);
}

#[tokio::test]
async fn commits_need_the_current_generation_and_fetch_returns_them() {
    let broker = start_default().await;
    create_topic(&mut Client::connect(&broker).await, "t", 2).await;
    let mut client = coordinator_client(&broker, "g").await;
    let (a, joined) = join(&mut client, "g", &["t"]).await;
    sync(
        &mut client,
        "g",
        &a,
        joined.generation_id,
        vec![(a.clone(), assignment("t", &[0, 1]))],
    )
    .await;
    assert_eq!(
        commit(&mut client, "g", &a, 1, "t", &[(0, 5), (1, 7)]).await,
        vec![0, 0]
    );
    assert_eq!(
        commit(&mut client, "g", &a, 0, "t", &[(0, 9)]).await,
        vec![ResponseError::IllegalGeneration.code()]
    );
    assert_eq!(
        commit(&mut client, "g", "stranger", 1, "t", &[(0, 9)]).await,
        vec![ResponseError::UnknownMemberId.code()]
    );
    assert_eq!(
        commit(&mut client, "g", &a, 1, "missing", &[(0, 1)]).await,
        vec![ResponseError::UnknownTopicOrPartition.code()]
    );
    assert_eq!(committed(&mut client, "g", "t", &[0, 1]).await, vec![5, 7]);
    assert_eq!(
        committed(&mut client, "unknown-group", "t", &[0]).await,
        vec![-1]
    );

    let many = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(group("g"))
            .with_topics(Some(vec![
                OffsetFetchRequestTopics::default()
                    .with_name(topic_name("t"))
                    .with_partition_indexes(vec![1]),
            ])),
        OffsetFetchRequestGroup::default()
            .with_group_id(group("g"))
            .with_topics(None),
    ]);
    let response = client.call(8, many).await;
    assert_eq!(
        response.groups[0].topics[0].partitions[0].committed_offset,
        7
    );
    assert_eq!(
        response.groups[1].topics[0].partitions.len(),
        2,
        "null topics: everything committed"
    );
}

#[tokio::test]
async fn a_simple_consumer_commits_to_an_empty_group() {
    let broker = start_default().await;
    create_topic(&mut Client::connect(&broker).await, "t", 1).await;
    let mut client = coordinator_client(&broker, "simple").await;
    assert_eq!(
        commit(&mut client, "simple", "", -1, "t", &[(0, 3)]).await,
        vec![0]
    );
    assert_eq!(committed(&mut client, "simple", "t", &[0]).await, vec![3]);
    let listed = client.call(4, ListGroupsRequest::default()).await;
    assert!(
        listed
            .groups
            .iter()
            .any(|g| g.group_id.0.as_str() == "simple" && g.group_state.as_str() == "Empty")
    );
}

#[tokio::test]
async fn admin_describes_lag_and_resets_only_an_empty_group() {
    let broker = start_default().await;
    let mut producer = Client::connect(&broker).await;
    create_topic(&mut producer, "t", 2).await;
    produce(&mut producer, "t", 0, batch(10, 1_000)).await;
    produce(&mut producer, "t", 1, batch(4, 5_000)).await;
    let mut client = coordinator_client(&broker, "g").await;
    let (a, joined) = join(&mut client, "g", &["t"]).await;
    sync(
        &mut client,
        "g",
        &a,
        joined.generation_id,
        vec![(a.clone(), assignment("t", &[0, 1]))],
    )
    .await;
    commit(&mut client, "g", &a, 1, "t", &[(0, 6)]).await;

    let lag = broker.control().lag("g");
    assert_eq!(lag.len(), 2);
    assert_eq!(
        (lag[0].committed, lag[0].end_offset, lag[0].lag),
        (Some(6), 10, Some(4))
    );
    assert_eq!(
        (lag[1].committed, lag[1].end_offset, lag[1].lag),
        (None, 4, None)
    );

    let refused = broker
        .control()
        .reset_offsets("g", "t", ResetTarget::Earliest);
    assert!(refused.is_err(), "the group has a member");
    let leave = LeaveGroupRequest::default()
        .with_group_id(group("g"))
        .with_members(vec![MemberIdentity::default().with_member_id(text(&a))]);
    assert_eq!(client.call(5, leave).await.members[0].error_code, 0);
    assert_eq!(
        broker
            .control()
            .reset_offsets("g", "t", ResetTarget::Latest)
            .unwrap(),
        vec![(0, 10), (1, 4)]
    );
    assert_eq!(committed(&mut client, "g", "t", &[0, 1]).await, vec![10, 4]);
    assert_eq!(
        broker
            .control()
            .reset_offsets("g", "t", ResetTarget::Timestamp(5_002))
            .unwrap(),
        vec![(0, 10), (1, 2)]
    );
    assert_eq!(
        broker
            .control()
            .reset_offsets("g", "t", ResetTarget::Offset(-5))
            .unwrap(),
        vec![(0, 0), (1, 0)]
    );
}

#[tokio::test]
async fn groups_with_members_cannot_be_deleted_nor_their_subscribed_offsets() {
    let broker = start_default().await;
    create_topic(&mut Client::connect(&broker).await, "t", 1).await;
    create_topic(&mut Client::connect(&broker).await, "other", 1).await;
    let mut client = coordinator_client(&broker, "g").await;
    let (a, joined) = join(&mut client, "g", &["t"]).await;
    sync(
        &mut client,
        "g",
        &a,
        joined.generation_id,
        vec![(a.clone(), assignment("t", &[0]))],
    )
    .await;
    commit(&mut client, "g", &a, 1, "t", &[(0, 1)]).await;
    commit(&mut client, "g", &a, 1, "other", &[(0, 1)]).await;

    let delete = |name: &str| DeleteGroupsRequest::default().with_groups_names(vec![group(name)]);
    assert_eq!(
        client.call(2, delete("g")).await.results[0].error_code,
        ResponseError::NonEmptyGroup.code()
    );
    assert_eq!(
        client.call(2, delete("nope")).await.results[0].error_code,
        ResponseError::GroupIdNotFound.code()
    );

    let offset_delete = |topic: &str| {
        OffsetDeleteRequest::default()
            .with_group_id(group("g"))
            .with_topics(vec![
                OffsetDeleteRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0),
                    ]),
            ])
    };
    let subscribed = client.call(0, offset_delete("t")).await;
    assert_eq!(
        subscribed.topics[0].partitions[0].error_code,
        ResponseError::GroupSubscribedToTopic.code()
    );
    let other = client.call(0, offset_delete("other")).await;
    assert_eq!(other.topics[0].partitions[0].error_code, 0);
    assert_eq!(committed(&mut client, "g", "other", &[0]).await, vec![-1]);

    let leave = LeaveGroupRequest::default()
        .with_group_id(group("g"))
        .with_members(vec![MemberIdentity::default().with_member_id(text(&a))]);
    client.call(5, leave).await;
    assert_eq!(client.call(2, delete("g")).await.results[0].error_code, 0);
    assert_eq!(
        committed(&mut client, "g", "t", &[0]).await,
        vec![-1],
        "its offsets went with it"
    );
}

#[tokio::test]
async fn describe_groups_reports_members_and_unknown_groups() {
    let broker = start_default().await;
    let mut client = coordinator_client(&broker, "g").await;
    let (a, joined) = join(&mut client, "g", &["t"]).await;
    sync(
        &mut client,
        "g",
        &a,
        joined.generation_id,
        vec![(a.clone(), assignment("t", &[0]))],
    )
    .await;
    let response = client
        .call(
            5,
            DescribeGroupsRequest::default().with_groups(vec![group("g"), group("ghost")]),
        )
        .await;
    let described = &response.groups[0];
    assert_eq!(
        (
            described.group_state.as_str(),
            described.protocol_data.as_str()
        ),
        ("Stable", "range")
    );
    assert_eq!(
        described.members[0].member_assignment,
        assignment("t", &[0])
    );
    assert_eq!(described.members[0].client_id.as_str(), "tidepool-test");
    assert_eq!(response.groups[1].group_state.as_str(), "Dead");
    let v6 = client
        .call(
            6,
            DescribeGroupsRequest::default().with_groups(vec![group("ghost")]),
        )
        .await;
    assert_eq!(
        v6.groups[0].error_code,
        ResponseError::GroupIdNotFound.code()
    );
}

#[tokio::test]
async fn a_moved_coordinator_sends_members_to_the_new_node() {
    let broker = Broker::builder().memory().nodes(3).start().await.unwrap();
    let old = broker.cluster().coordinator_for("g").unwrap().id;
    let mut client = coordinator_client(&broker, "g").await;
    let (a, joined) = join(&mut client, "g", &["t"]).await;
    sync(&mut client, "g", &a, joined.generation_id, vec![]).await;
    let new = old % 3 + 1;
    broker.control().move_group_coordinator("g", new).unwrap();
    assert_eq!(
        heartbeat(&mut client, "g", &a, 1).await,
        ResponseError::NotCoordinator.code()
    );
    let mut moved = coordinator_client(&broker, "g").await;
    assert_eq!(
        heartbeat(&mut moved, "g", &a, 1).await,
        0,
        "the group and its member carried over"
    );
}

#[tokio::test]
async fn a_session_timeout_outside_the_brokers_bounds_is_refused() {
    let broker = start_default().await;
    let mut client = coordinator_client(&broker, "g").await;
    let answer = client
        .call(9, join_request("g", "", &["t"]).with_session_timeout_ms(10))
        .await;
    assert_eq!(
        answer.error_code,
        ResponseError::InvalidSessionTimeout.code()
    );
}

#[tokio::test]
async fn committed_offsets_and_generations_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("tidepool-groups-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let start = || {
        Broker::builder()
            .data_dir(&dir)
            .config(Config::default())
            .start()
    };
    let broker = start().await.unwrap();
    create_topic(&mut Client::connect(&broker).await, "t", 2).await;
    let mut client = coordinator_client(&broker, "g").await;
    let (a, joined) = join(&mut client, "g", &["t"]).await;
    sync(&mut client, "g", &a, joined.generation_id, vec![]).await;
    commit(&mut client, "g", &a, 1, "t", &[(0, 11), (1, 12)]).await;
    commit(&mut client, "g", &a, 1, "t", &[(0, 13)]).await;
    drop(client);
    broker.shutdown().await;

    let broker = start().await.unwrap();
    let mut client = coordinator_client(&broker, "g").await;
    assert_eq!(
        committed(&mut client, "g", "t", &[0, 1]).await,
        vec![13, 12]
    );
    assert_eq!(
        commit(&mut client, "g", &a, 1, "t", &[(0, 1)]).await,
        vec![ResponseError::UnknownMemberId.code()]
    );
    let (_, rejoined) = join(&mut client, "g", &["t"]).await;
    assert_eq!(
        rejoined.generation_id, 2,
        "generations continue after a restart"
    );
    broker.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Found by the simulator (`tidepool sim`, seed 280): a group restored without its protocol
/// type looked never-joined and was forgotten at the first tick, so generations restarted at
/// 1 and a zombie member of an old generation 1 could have committed again.
#[tokio::test]
async fn a_group_without_offsets_keeps_its_generation_across_a_restart() {
    let dir = std::env::temp_dir().join(format!("tidepool-groups-gen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let start = || {
        Broker::builder()
            .data_dir(&dir)
            .config(Config::default())
            .start()
    };
    let broker = start().await.unwrap();
    create_topic(&mut Client::connect(&broker).await, "t", 1).await;
    let mut client = coordinator_client(&broker, "g").await;
    let (a, joined) = join(&mut client, "g", &["t"]).await;
    sync(&mut client, "g", &a, joined.generation_id, vec![]).await;
    drop(client);
    broker.shutdown().await;

    let broker = start().await.unwrap();
    // Longer than the coordinator's housekeeping tick.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut client = coordinator_client(&broker, "g").await;
    let (_, rejoined) = join(&mut client, "g", &["t"]).await;
    assert_eq!(rejoined.generation_id, 2, "the generation continues");
    broker.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
