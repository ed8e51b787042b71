//! The test control plane over the wire: interceptions, injected errors, round-trip delays,
//! the version cap, forced rebalances and the logs, as a raw client experiences them.
#![allow(
    clippy::disallowed_methods,
    reason = "delay tests time a real-clock broker from outside the simulation"
)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    ListOffsetsRequest, MetadataRequest, ProduceRequest, ProduceResponse, ResponseKind,
    SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;
use tidepool_broker::{BrokerHandle, InjectedError, InterceptAction, Interception};

const NOT_LEADER: i16 = 6;
const REQUEST_TIMED_OUT: i16 = 7;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;

async fn with_topic(name: &str, partitions: i32) -> (BrokerHandle, Client) {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, name, partitions).await;
    (broker, client)
}

async fn end_offset(client: &mut Client, topic: &str, partition: i32) -> i64 {
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(partition)
                        .with_timestamp(-1),
                ]),
        ]);
    let response = client.call(7, request).await;
    let answer = &response.topics[0].partitions[0];
    assert_eq!(answer.error_code, 0);
    answer.offset
}

#[tokio::test]
async fn an_error_interception_answers_produce_with_the_code_and_writes_nothing() {
    let (broker, mut client) = with_topic("refused", 1).await;
    let control = broker.control();
    control
        .intercept(Interception::new(ApiKey::Produce, InterceptAction::Error(NOT_LEADER)).times(1))
        .unwrap();

    let refused = produce(&mut client, "refused", 0, batch(3, 1_000)).await;
    assert_eq!(refused.error_code, NOT_LEADER);
    assert_eq!(end_offset(&mut client, "refused", 0).await, 0);

    let accepted = produce(&mut client, "refused", 0, batch(3, 1_000)).await;
    assert_eq!(accepted.error_code, 0, "the interception was used up");
    assert_eq!(end_offset(&mut client, "refused", 0).await, 3);
    assert!(control.interceptions().is_empty());
}

#[tokio::test]
async fn pushed_errors_answer_the_next_requests_in_order_then_the_broker_serves_again() {
    let (broker, mut client) = with_topic("stacked", 1).await;
    broker
        .control()
        .push_errors(
            ApiKey::Produce,
            None,
            &[
                InjectedError::new(REQUEST_TIMED_OUT),
                InjectedError::new(NOT_LEADER),
            ],
        )
        .unwrap();

    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(
            produce(&mut client, "stacked", 0, batch(1, 1_000))
                .await
                .error_code,
        );
    }
    assert_eq!(codes, vec![REQUEST_TIMED_OUT, NOT_LEADER, 0]);
    assert_eq!(end_offset(&mut client, "stacked", 0).await, 1);
}

#[tokio::test]
async fn errors_pushed_for_one_node_spare_the_others() {
    let broker = tidepool_broker::Broker::builder()
        .memory()
        .nodes(2)
        .start()
        .await
        .unwrap();
    let control = broker.control();
    control
        .push_errors(
            ApiKey::Metadata,
            Some(2),
            &[InjectedError::new(COORDINATOR_LOAD_IN_PROGRESS)],
        )
        .unwrap();
    let addresses: Vec<String> = broker.bootstrap().split(',').map(str::to_owned).collect();
    let request = || {
        MetadataRequest::default()
            .with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(topic_name("spared"))),
            ]))
            .with_allow_auto_topic_creation(true)
    };

    let mut node_1 = Client::connect_to(&addresses[0]).await;
    let answer = node_1.call(12, request()).await;
    assert_eq!(
        answer.topics[0].error_code, 0,
        "node 1 has no errors pushed"
    );

    let mut node_2 = Client::connect_to(&addresses[1]).await;
    let answer = node_2.call(12, request()).await;
    assert_eq!(answer.topics[0].error_code, COORDINATOR_LOAD_IN_PROGRESS);
    let answer = node_2.call(12, request()).await;
    assert_eq!(answer.topics[0].error_code, 0, "one error was pushed");
}

#[tokio::test]
async fn a_partition_error_refuses_that_partition_and_serves_the_others_of_the_request() {
    let (broker, mut client) = with_topic("split", 2).await;
    broker
        .control()
        .push_partition_errors("split", 1, Some(ApiKey::Produce), &[NOT_LEADER])
        .unwrap();

    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic_name("split"))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch(2, 1_000))),
                    PartitionProduceData::default()
                        .with_index(1)
                        .with_records(Some(batch(2, 1_000))),
                ]),
        ]);
    let response: ProduceResponse = client.call(9, request).await;
    let mut codes: Vec<(i32, i16)> = response.responses[0]
        .partition_responses
        .iter()
        .map(|partition| (partition.index, partition.error_code))
        .collect();
    codes.sort();
    assert_eq!(codes, vec![(0, 0), (1, NOT_LEADER)]);
    assert_eq!(end_offset(&mut client, "split", 0).await, 2);
    assert_eq!(end_offset(&mut client, "split", 1).await, 0);
}

#[tokio::test]
async fn a_round_trip_delay_holds_every_answer_of_that_node() {
    let (broker, mut client) = with_topic("slow", 1).await;
    broker
        .control()
        .set_round_trip(1, Duration::from_millis(300));
    let started = Instant::now();
    client.call(3, ApiVersionsRequest::default()).await;
    assert!(started.elapsed() >= Duration::from_millis(300));

    broker.control().set_round_trip(1, Duration::ZERO);
    let started = Instant::now();
    client.call(3, ApiVersionsRequest::default()).await;
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn a_dropped_request_is_never_answered_but_the_next_one_is() {
    let (broker, mut client) = with_topic("dropped", 1).await;
    broker
        .control()
        .intercept(Interception::new(ApiKey::ApiVersions, InterceptAction::Drop).times(1))
        .unwrap();
    let (_, dropped) = client.encode(3, &ApiVersionsRequest::default());
    client.send_raw(&dropped).await;
    let (second, answered) = client.encode(3, &ApiVersionsRequest::default());
    client.send_raw(&answered).await;
    let frame = client
        .read_frame()
        .await
        .expect("the second request is answered");
    let response = Client::decode::<ApiVersionsRequest>(3, second, frame);
    assert_eq!(response.error_code, 0);
}

#[tokio::test]
async fn a_close_interception_closes_the_connection_instead_of_answering() {
    let (broker, mut client) = with_topic("closed", 1).await;
    broker
        .control()
        .intercept(Interception::new(
            ApiKey::Metadata,
            InterceptAction::CloseConnection,
        ))
        .unwrap();
    let (_, bytes) = client.encode(12, &MetadataRequest::default());
    client.send_raw(&bytes).await;
    assert!(client.is_closed_by_broker().await);
}

#[tokio::test]
async fn a_respond_interception_answers_with_what_the_test_builds() {
    let (broker, mut client) = with_topic("built", 1).await;
    let responder: tidepool_broker::control::Responder = Arc::new(|_, _| {
        Some(ResponseKind::Heartbeat(
            HeartbeatResponse::default().with_error_code(ResponseError::RebalanceInProgress.code()),
        ))
    });
    broker
        .control()
        .intercept(Interception::new(
            ApiKey::Heartbeat,
            InterceptAction::Respond(responder),
        ))
        .unwrap();
    let answer = client
        .call(
            4,
            HeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("nobody")))
                .with_member_id(StrBytes::from_static_str("m")),
        )
        .await;
    assert_eq!(answer.error_code, ResponseError::RebalanceInProgress.code());
}

#[tokio::test]
async fn an_observing_interception_sees_requests_without_changing_them() {
    let (broker, mut client) = with_topic("watched", 1).await;
    let control = broker.control();
    let id = control
        .intercept(Interception::new(ApiKey::Produce, InterceptAction::Observe))
        .unwrap();
    assert_eq!(
        produce(&mut client, "watched", 0, batch(1, 1_000))
            .await
            .error_code,
        0
    );
    assert_eq!(
        produce(&mut client, "watched", 0, batch(1, 1_000))
            .await
            .error_code,
        0
    );
    let seen = control.observed(id).unwrap();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|entry| entry.api == "Produce" && entry.version == 9)
    );
    control.remove_interception(id).unwrap();
    assert!(control.observed(id).is_none());
}

#[tokio::test]
async fn a_version_cap_advertises_and_accepts_only_what_that_kafka_release_answered() {
    let (broker, mut client) = with_topic("old", 1).await;
    broker.control().cap_versions(Some("2.8")).unwrap();
    let advertised = client.call(3, ApiVersionsRequest::default()).await;
    let newest = |key: ApiKey| {
        advertised
            .api_keys
            .iter()
            .find(|api| api.api_key == key as i16)
            .map(|api| api.max_version)
    };
    assert_eq!(newest(ApiKey::Produce), Some(9));
    assert_eq!(newest(ApiKey::Fetch), Some(12));
    assert_eq!(newest(ApiKey::Metadata), Some(11));
    assert_eq!(newest(ApiKey::ApiVersions), Some(3));

    assert_eq!(
        produce(&mut client, "old", 0, batch(1, 1_000))
            .await
            .error_code,
        0
    );
    let (_, too_new) = client.encode(11, &produce_request("old", 0, batch(1, 1_000), -1));
    client.send_raw(&too_new).await;
    assert!(
        client.is_closed_by_broker().await,
        "Produce v11 is above Kafka 2.8"
    );

    broker.control().cap_versions(None).unwrap();
    let mut client = Client::connect(&broker).await;
    let advertised = client.call(3, ApiVersionsRequest::default()).await;
    let produce_max = advertised
        .api_keys
        .iter()
        .find(|api| api.api_key == ApiKey::Produce as i16)
        .map(|api| api.max_version);
    assert!(produce_max > Some(9));
    assert!(broker.control().cap_versions(Some("1.0")).is_err());
}

#[tokio::test]
async fn a_forced_rebalance_reaches_members_through_their_heartbeat() {
    let broker = start_default().await;
    let control = broker.control();
    let mut client = Client::connect(&broker).await;
    let group = GroupId(StrBytes::from_static_str("forced"));
    let join = |member: &str| {
        JoinGroupRequest::default()
            .with_group_id(group.clone())
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(StrBytes::from_string(member.to_owned()))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str("range"))
                    .with_metadata(Default::default()),
            ])
    };
    let first = client.call(9, join("")).await;
    let member = first.member_id.clone();
    let joined = client.call(9, join(&member)).await;
    assert_eq!(joined.error_code, 0);
    let synced = client
        .call(
            5,
            SyncGroupRequest::default()
                .with_group_id(group.clone())
                .with_generation_id(joined.generation_id)
                .with_member_id(member.clone())
                .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
                .with_protocol_name(Some(StrBytes::from_static_str("range"))),
        )
        .await;
    assert_eq!(synced.error_code, 0);
    let heartbeat = HeartbeatRequest::default()
        .with_group_id(group.clone())
        .with_member_id(member.clone())
        .with_generation_id(joined.generation_id);
    assert_eq!(client.call(4, heartbeat.clone()).await.error_code, 0);

    control.force_rebalance("forced").unwrap();
    assert_eq!(
        client.call(4, heartbeat).await.error_code,
        ResponseError::RebalanceInProgress.code()
    );
    assert!(
        control.force_rebalance("no-such-group").is_err(),
        "nothing to rebalance"
    );
}

#[tokio::test]
async fn the_request_log_and_the_action_log_tell_what_happened_and_when() {
    let (broker, mut client) = with_topic("logged", 1).await;
    let control = broker.control();
    let start = control
        .request_log(0)
        .last()
        .map_or(0, |entry| entry.seq + 1);
    control
        .push_errors(ApiKey::Produce, None, &[InjectedError::new(NOT_LEADER)])
        .unwrap();
    produce(&mut client, "logged", 0, batch(1, 1_000)).await;
    produce(&mut client, "logged", 0, batch(1, 1_000)).await;

    let log = control.request_log(start);
    let produces: Vec<_> = log.iter().filter(|entry| entry.api == "Produce").collect();
    assert_eq!(produces.len(), 2);
    assert_eq!(produces[0].error_codes, vec![NOT_LEADER]);
    assert_eq!(produces[0].outcome, format!("injected error {NOT_LEADER}"));
    assert!(produces[1].error_codes.is_empty());
    assert_eq!(produces[1].outcome, "handled");
    assert_eq!(produces[0].client_id, "tidepool-test");
    assert_eq!(produces[0].node, 1);

    control.set_round_trip(1, Duration::ZERO);
    let actions = control.actions();
    let described: Vec<&str> = actions
        .iter()
        .map(|action| action.action.as_str())
        .collect();
    assert_eq!(
        described,
        vec![
            "push errors Produce on any node: [6]",
            "round trip of node 1: 0 ms"
        ]
    );
    assert!(actions.iter().all(|action| action.time_ms > 0));
}

#[tokio::test]
async fn a_request_cut_off_by_its_node_going_down_is_logged_unanswered_not_pending() {
    let broker = tidepool_broker::Broker::builder()
        .memory()
        .nodes(2)
        .start()
        .await
        .expect("broker starts");
    let control = broker.control();
    let second = broker.bootstrap().split(',').nth(1).unwrap().to_owned();
    let mut client = Client::connect_to(&second).await;
    // Held long enough that the node goes down while the request waits, as a long-polling
    // Fetch does when a real client's node is taken down.
    control
        .intercept(
            Interception::new(
                ApiKey::ApiVersions,
                InterceptAction::Delay(Duration::from_secs(30)),
            )
            .on_node(2),
        )
        .unwrap();
    let (_, bytes) = client.encode(3, &ApiVersionsRequest::default());
    client.send_raw(&bytes).await;
    let logged = |control: &tidepool_broker::Control| {
        control
            .request_log(0)
            .into_iter()
            .find(|entry| entry.api == "ApiVersions" && entry.node == 2)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while logged(&control).is_none() {
        assert!(
            Instant::now() < deadline,
            "the request never reached node 2"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(logged(&control).unwrap().outcome.starts_with("pending: "));

    control.node_down(2).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let entry = logged(&control).unwrap();
        if !entry.outcome.starts_with("pending") {
            assert_eq!(
                entry.outcome,
                "intercepted #0: delay 30s, unanswered: connection closed"
            );
            assert!(entry.error_codes.is_empty());
            break;
        }
        assert!(Instant::now() < deadline, "still {}", entry.outcome);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
