//! Produce and Fetch over the wire: offsets, limits, long polls and timestamps.
#![allow(
    clippy::disallowed_methods,
    reason = "these tests time real long polls against a real-time broker, outside the simulation"
)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::{CreateTopicsRequest, FetchResponse};
use kafka_protocol::protocol::StrBytes;
use tidepool_broker::Config;
use tidepool_protocol::batch;

#[tokio::test]
async fn produced_records_come_back_from_fetch_with_consecutive_offsets() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "orders", 3).await;
    let first = produce(&mut client, "orders", 1, batch(5, 1_000)).await;
    let second = produce(&mut client, "orders", 1, batch(3, 2_000)).await;
    assert_eq!((first.error_code, first.base_offset), (0, 0));
    assert_eq!((second.error_code, second.base_offset), (0, 5));

    let data = fetch(&mut client, fetch_request("orders", 1, 0)).await;
    assert_eq!(data.error_code, 0);
    assert_eq!(data.high_watermark, 8);
    assert_eq!(data.log_start_offset, 0);
    let records = records_of(&data.records);
    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..8).collect::<Vec<_>>());
    assert_eq!(records[5].key.as_deref(), Some(&b"key-0"[..]));
    assert_eq!(records[5].timestamp, 2_000);
}

#[tokio::test]
async fn produce_auto_creates_unknown_topics_by_default() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    let answer = produce(&mut client, "fresh", 0, batch(1, 1)).await;
    assert_eq!(answer.error_code, 0);
    assert!(broker.cluster().topic("fresh").is_some());
}

#[tokio::test]
async fn produce_to_an_unknown_topic_fails_when_auto_creation_is_off() {
    let broker = start(Config {
        auto_create_topics: false,
        ..Config::default()
    })
    .await;
    let mut client = Client::connect(&broker).await;
    let answer = produce(&mut client, "missing", 0, batch(1, 1)).await;
    assert_eq!(
        answer.error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let data = fetch(&mut client, fetch_request("missing", 0, 0)).await;
    assert_eq!(
        data.error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
}

#[tokio::test]
async fn a_partition_beyond_the_topic_is_unknown() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "small", 1).await;
    let answer = produce(&mut client, "small", 4, batch(1, 1)).await;
    assert_eq!(
        answer.error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
}

#[tokio::test]
async fn fetching_from_inside_a_batch_returns_the_whole_batch() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    produce(&mut client, "t", 0, batch(10, 1)).await;
    let data = fetch(&mut client, fetch_request("t", 0, 7)).await;
    let records = records_of(&data.records);
    assert_eq!(
        records.first().map(|r| r.offset),
        Some(0),
        "clients skip what they did not ask for"
    );
}

#[tokio::test]
async fn fetching_past_the_end_is_offset_out_of_range_and_at_the_end_is_empty() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    produce(&mut client, "t", 0, batch(2, 1)).await;
    let at_end = fetch(&mut client, fetch_request("t", 0, 2)).await;
    assert_eq!(at_end.error_code, 0);
    assert!(at_end.records.unwrap().is_empty());
    let past = fetch(&mut client, fetch_request("t", 0, 3)).await;
    assert_eq!(past.error_code, ResponseError::OffsetOutOfRange.code());
    // As Kafka answers (tests/differential.rs): an error carries no offsets.
    assert_eq!(past.high_watermark, -1);
}

#[tokio::test]
async fn fetch_max_bytes_limits_the_response_but_never_below_one_batch() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    for _ in 0..4 {
        produce(&mut client, "t", 0, batch(20, 1)).await;
    }
    let one_batch = batch::split(
        &fetch(&mut client, fetch_request("t", 0, 0))
            .await
            .records
            .unwrap(),
    )
    .unwrap()[0]
        .len();
    let mut tiny = fetch_request("t", 0, 0);
    tiny.max_bytes = 1;
    let data = fetch(&mut client, tiny).await;
    assert_eq!(
        data.records.unwrap().len(),
        one_batch,
        "KIP-74: the first batch always comes"
    );

    let mut two = fetch_request("t", 0, 0);
    two.topics[0].partitions[0].partition_max_bytes = (2 * one_batch + 1) as i32;
    let data = fetch(&mut client, two).await;
    assert_eq!(data.records.unwrap().len(), 2 * one_batch);
}

#[tokio::test]
async fn a_long_poll_is_answered_as_soon_as_a_produce_arrives() {
    let broker = start_default().await;
    let mut poller = Client::connect(&broker).await;
    let mut producer = Client::connect(&broker).await;
    create_topic(&mut producer, "t", 1).await;
    let mut request = fetch_request("t", 0, 0);
    request.max_wait_ms = 10_000;
    let started = Instant::now();
    let (correlation_id, bytes) = poller.encode(12, &request);
    poller.send_raw(&bytes).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    produce(&mut producer, "t", 0, batch(1, 1)).await;
    let frame = poller.read_frame().await.unwrap();
    let response: FetchResponse =
        Client::decode::<kafka_protocol::messages::FetchRequest>(12, correlation_id, frame);
    assert_eq!(
        records_of(&response.responses[0].partitions[0].records).len(),
        1
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken by the append, not the timeout"
    );
}

#[tokio::test]
async fn a_long_poll_without_data_waits_for_max_wait() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "t", 1).await;
    let mut request = fetch_request("t", 0, 0);
    request.max_wait_ms = 300;
    let started = Instant::now();
    let data = fetch(&mut client, request).await;
    assert!(data.records.unwrap().is_empty());
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_fetch_with_enough_data_is_answered_without_waiting() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    produce(&mut client, "t", 0, batch(1, 1)).await;
    let mut request = fetch_request("t", 0, 0);
    request.max_wait_ms = 10_000;
    let started = Instant::now();
    fetch(&mut client, request).await;
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn fetch_by_topic_id_works_from_version_13() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    produce(&mut client, "t", 0, batch(3, 1)).await;
    let id = broker.cluster().topic("t").unwrap().id;
    let mut request = fetch_request("t", 0, 0);
    request.topics[0].topic_id = id;
    let response: FetchResponse = client.call(16, request.clone()).await;
    assert_eq!(response.responses[0].topic_id, id);
    assert_eq!(
        records_of(&response.responses[0].partitions[0].records).len(),
        3
    );
    request.topics[0].topic_id = uuid::Uuid::from_u128(42);
    let response: FetchResponse = client.call(16, request).await;
    assert_eq!(
        response.responses[0].partitions[0].error_code,
        ResponseError::UnknownTopicId.code()
    );
}

#[tokio::test]
async fn log_append_time_topics_stamp_the_broker_time() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    let request = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(topic_name("lat"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("message.timestamp.type"))
                    .with_value(Some(StrBytes::from_static_str("LogAppendTime"))),
            ]),
    ]);
    assert_eq!(client.call(7, request).await.topics[0].error_code, 0);
    let answer = produce(&mut client, "lat", 0, batch(2, 5)).await;
    assert!(answer.log_append_time_ms > 1_600_000_000_000);
    let records = records_of(&fetch(&mut client, fetch_request("lat", 0, 0)).await.records);
    assert!(
        records
            .iter()
            .all(|r| r.timestamp == answer.log_append_time_ms)
    );
}

#[tokio::test]
async fn acks_zero_gets_no_response_but_the_records_are_stored() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    let (_, bytes) = client.encode(9, &produce_request("t", 0, batch(4, 1), 0));
    client.send_raw(&bytes).await;
    let data = fetch(&mut client, fetch_request("t", 0, 0)).await;
    assert_eq!(
        records_of(&data.records).len(),
        4,
        "the next answer is the fetch's own"
    );
}

#[tokio::test]
async fn invalid_acks_are_refused_per_partition() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    let response = client
        .call(9, produce_request("t", 0, batch(1, 1), 2))
        .await;
    let answer = &response.responses[0].partition_responses[0];
    assert_eq!(answer.error_code, ResponseError::InvalidRequiredAcks.code());
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    let mut sent = Vec::new();
    let mut wire = Vec::new();
    for index in 0..20 {
        let (correlation_id, bytes) =
            client.encode(9, &produce_request("t", 0, batch(1, index), -1));
        sent.push(correlation_id);
        wire.extend_from_slice(&bytes);
    }
    client.send_raw(&wire).await;
    for (index, correlation_id) in sent.into_iter().enumerate() {
        let frame = client.read_frame().await.unwrap();
        let response =
            Client::decode::<kafka_protocol::messages::ProduceRequest>(9, correlation_id, frame);
        assert_eq!(
            response.responses[0].partition_responses[0].base_offset,
            index as i64
        );
    }
}

#[tokio::test]
async fn an_empty_record_set_is_refused_and_appends_nothing() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    let answer = produce(&mut client, "t", 0, Bytes::new()).await;
    // As Kafka answers (tests/differential.rs).
    assert_eq!(answer.error_code, ResponseError::InvalidRecord.code());
    assert_eq!(
        fetch(&mut client, fetch_request("t", 0, 0))
            .await
            .high_watermark,
        0
    );
}
