//! Leadership over the wire: moves bump the epoch, old leaders refuse, Metadata tells the
//! truth, nodes go down and come back.
#![allow(
    clippy::disallowed_methods,
    reason = "one test times a parked fetch against a real-time broker, outside the simulation"
)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{FetchRequest, MetadataRequest, OffsetForLeaderEpochRequest};
use tidepool_broker::cluster::TopicRequest;
use tidepool_broker::{Broker, BrokerHandle, Config};

async fn three_nodes() -> BrokerHandle {
    Broker::builder()
        .memory()
        .nodes(3)
        .config(Config::default())
        .start()
        .await
        .unwrap()
}

fn create(broker: &BrokerHandle, name: &str, partitions: i32, replication_factor: i16) {
    let request = TopicRequest {
        name: name.into(),
        partitions,
        replication_factor,
        ..TopicRequest::default()
    };
    broker
        .cluster()
        .create_topic(&request, false)
        .map_err(|r| r.message)
        .unwrap();
}

async fn connect_to_node(broker: &BrokerHandle, node: i32) -> Client {
    let info = broker
        .nodes()
        .into_iter()
        .find(|info| info.id == node)
        .unwrap();
    Client::connect_to(&format!("{}:{}", info.host, info.port)).await
}

async fn metadata_leader(client: &mut Client, topic: &str, partition: usize) -> (i32, i32, i16) {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(topic))),
        ]))
        .with_allow_auto_topic_creation(false);
    let response = client.call(12, request).await;
    let answer = &response.topics[0].partitions[partition];
    (answer.leader_id.0, answer.leader_epoch, answer.error_code)
}

#[tokio::test]
async fn a_moved_leader_refuses_and_the_new_one_serves_with_a_new_epoch() {
    let broker = three_nodes().await;
    create(&broker, "t", 1, 3);
    let (old_leader, old_epoch) = broker.control().leader("t", 0).unwrap();
    let mut old = connect_to_node(&broker, old_leader).await;
    assert_eq!(produce(&mut old, "t", 0, batch(2, 1)).await.error_code, 0);

    let new_leader = old_leader % 3 + 1;
    let epoch = broker.control().move_leader("t", 0, new_leader).unwrap();
    assert_eq!(epoch, old_epoch + 1);

    let refused = produce(&mut old, "t", 0, batch(1, 2)).await;
    assert_eq!(
        refused.error_code,
        ResponseError::NotLeaderOrFollower.code()
    );
    assert_eq!(
        metadata_leader(&mut old, "t", 0).await,
        (new_leader, epoch, 0)
    );

    let mut new = connect_to_node(&broker, new_leader).await;
    let accepted = produce(&mut new, "t", 0, batch(1, 3)).await;
    assert_eq!(
        (accepted.error_code, accepted.base_offset),
        (0, 2),
        "the same log, continued"
    );
    let data = fetch(&mut new, fetch_request("t", 0, 0)).await;
    assert_eq!(records_of(&data.records).len(), 3);
    let stored = data.records.unwrap();
    let batches = tidepool_protocol::batch::split(&stored).unwrap();
    let epoch_of = |index: usize| {
        let header = tidepool_protocol::batch::BatchHeader::parse(&stored[batches[index].clone()]);
        header.unwrap().partition_leader_epoch
    };
    assert_eq!(
        (epoch_of(0), epoch_of(1)),
        (old_epoch, epoch),
        "batches keep the epoch they were written in"
    );
}

#[tokio::test]
async fn requests_naming_an_old_or_future_epoch_are_fenced() {
    let broker = three_nodes().await;
    create(&broker, "t", 1, 3);
    let (leader, _) = broker.control().leader("t", 0).unwrap();
    let epoch = broker.control().move_leader("t", 0, leader).unwrap();
    let mut client = connect_to_node(&broker, leader).await;
    let mut stale = fetch_request("t", 0, 0);
    stale.topics[0].partitions[0].current_leader_epoch = epoch - 1;
    assert_eq!(
        fetch(&mut client, stale).await.error_code,
        ResponseError::FencedLeaderEpoch.code()
    );
    let mut future = fetch_request("t", 0, 0);
    future.topics[0].partitions[0].current_leader_epoch = epoch + 1;
    assert_eq!(
        fetch(&mut client, future).await.error_code,
        ResponseError::UnknownLeaderEpoch.code()
    );
    let mut current = fetch_request("t", 0, 0);
    current.topics[0].partitions[0].current_leader_epoch = epoch;
    assert_eq!(fetch(&mut client, current).await.error_code, 0);
}

#[tokio::test]
async fn epoch_end_offsets_follow_the_moves() {
    let broker = three_nodes().await;
    create(&broker, "t", 1, 3);
    let (first, _) = broker.control().leader("t", 0).unwrap();
    let mut client = connect_to_node(&broker, first).await;
    produce(&mut client, "t", 0, batch(3, 1)).await;
    let second = first % 3 + 1;
    broker.control().move_leader("t", 0, second).unwrap();
    let mut client = connect_to_node(&broker, second).await;
    produce(&mut client, "t", 0, batch(2, 1)).await;
    let ask = |epoch| {
        OffsetForLeaderEpochRequest::default().with_topics(vec![
            OffsetForLeaderTopic::default()
                .with_topic(topic_name("t"))
                .with_partitions(vec![
                    OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_leader_epoch(epoch),
                ]),
        ])
    };
    let end_of_zero = client.call(4, ask(0)).await.topics[0].partitions[0].clone();
    assert_eq!((end_of_zero.leader_epoch, end_of_zero.end_offset), (0, 3));
    let end_of_one = client.call(4, ask(1)).await.topics[0].partitions[0].clone();
    assert_eq!((end_of_one.leader_epoch, end_of_one.end_offset), (1, 5));
}

#[tokio::test]
async fn a_parked_fetch_on_the_old_leader_answers_at_once_when_the_leader_moves() {
    let broker = three_nodes().await;
    create(&broker, "t", 1, 3);
    let (leader, _) = broker.control().leader("t", 0).unwrap();
    let mut client = connect_to_node(&broker, leader).await;
    let mut parked: FetchRequest = fetch_request("t", 0, 0);
    parked.max_wait_ms = 20_000;
    let (correlation_id, bytes) = client.encode(12, &parked);
    client.send_raw(&bytes).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    broker
        .control()
        .move_leader("t", 0, leader % 3 + 1)
        .unwrap();
    let frame = client.read_frame().await.unwrap();
    let response = Client::decode::<FetchRequest>(12, correlation_id, frame);
    assert_eq!(
        response.responses[0].partitions[0].error_code,
        ResponseError::NotLeaderOrFollower.code()
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_node_taken_down_drops_out_of_metadata_and_its_partitions_move() {
    let broker = three_nodes().await;
    create(&broker, "replicated", 3, 3);
    create(&broker, "single", 3, 1);
    let control = broker.control();
    let victim = control.leader("replicated", 0).unwrap().0;
    let mut doomed = connect_to_node(&broker, victim).await;
    let survivor = victim % 3 + 1;
    control.node_down(victim).await.unwrap();
    assert!(doomed.is_closed_by_broker().await, "its connections drop");

    let mut client = connect_to_node(&broker, survivor).await;
    let response = client
        .call(12, MetadataRequest::default().with_topics(None))
        .await;
    assert_eq!(response.brokers.len(), 2);
    assert!(response.brokers.iter().all(|b| b.node_id.0 != victim));
    let replicated = response
        .topics
        .iter()
        .find(|t| t.name.as_ref().unwrap().0.as_str() == "replicated")
        .unwrap();
    for partition in &replicated.partitions {
        assert_ne!(partition.leader_id.0, victim);
        assert_eq!(partition.error_code, 0);
        assert!(partition.offline_replicas.iter().any(|id| id.0 == victim));
    }
    let single = response
        .topics
        .iter()
        .find(|t| t.name.as_ref().unwrap().0.as_str() == "single")
        .unwrap();
    let orphaned: Vec<_> = single
        .partitions
        .iter()
        .filter(|p| p.replica_nodes[0].0 == victim)
        .collect();
    assert_eq!(orphaned.len(), 1);
    assert_eq!(orphaned[0].leader_id.0, -1);
    assert_eq!(
        orphaned[0].error_code,
        ResponseError::LeaderNotAvailable.code()
    );

    control.node_up(victim).await.unwrap();
    let mut back = connect_to_node(&broker, victim).await;
    let index = orphaned[0].partition_index;
    assert_eq!(
        metadata_leader(&mut back, "single", index as usize).await.0,
        victim,
        "it leads its orphans again"
    );
    assert_eq!(
        produce(&mut back, "single", index, batch(1, 1))
            .await
            .error_code,
        0
    );
    assert!(control.node_up(victim).await.is_err(), "already up");
}

#[tokio::test]
async fn moving_to_a_node_that_is_not_a_replica_or_is_down_is_refused() {
    let broker = three_nodes().await;
    create(&broker, "t", 1, 1);
    let control = broker.control();
    let (leader, epoch) = control.leader("t", 0).unwrap();
    assert!(control.move_leader("t", 0, leader % 3 + 1).is_err());
    assert!(control.move_leader("t", 7, leader).is_err());
    assert!(control.move_leader("missing", 0, leader).is_err());
    assert_eq!(
        control.leader("t", 0),
        Some((leader, epoch)),
        "nothing changed"
    );
}

#[tokio::test]
async fn a_produce_refused_by_a_moved_leader_names_the_new_leader_and_its_address() {
    let broker = three_nodes().await;
    create(&broker, "t", 1, 3);
    let (old_leader, _) = broker.control().leader("t", 0).unwrap();
    let new_leader = old_leader % 3 + 1;
    let epoch = broker.control().move_leader("t", 0, new_leader).unwrap();
    let mut old = connect_to_node(&broker, old_leader).await;
    // v10+ answers NOT_LEADER_OR_FOLLOWER with the current leader and its endpoint (KIP-951);
    // building that answer once took the controller's lock under the partition's.
    let response = old.call(10, produce_request("t", 0, batch(1, 1), -1)).await;
    let answer = &response.responses[0].partition_responses[0];
    assert_eq!(answer.error_code, ResponseError::NotLeaderOrFollower.code());
    assert_eq!(
        (
            answer.current_leader.leader_id.0,
            answer.current_leader.leader_epoch
        ),
        (new_leader, epoch)
    );
    assert_eq!(response.node_endpoints.len(), 1);
    let endpoint = &response.node_endpoints[0];
    let expected = broker
        .nodes()
        .into_iter()
        .find(|node| node.id == new_leader)
        .unwrap();
    assert_eq!(
        (endpoint.node_id.0, endpoint.port),
        (new_leader, i32::from(expected.port))
    );
}
