//! Bad input: each gets a Kafka error code or a closed connection, other connections keep
//! working, and nothing panics or aborts.

mod common;

use bytes::{BufMut, BytesMut};
use common::*;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiVersionsRequest;
use tidepool_broker::{BrokerHandle, Config, TopicConfig};
use tokio::io::AsyncWriteExt;

/// A frame with the given API key, version and body after a v1 header (client id null).
fn frame(api_key: i16, version: i16, body: &[u8]) -> Vec<u8> {
    let mut frame = BytesMut::new();
    frame.put_i16(api_key);
    frame.put_i16(version);
    frame.put_i32(1);
    frame.put_i16(-1);
    frame.extend_from_slice(body);
    let mut wire = (frame.len() as i32).to_be_bytes().to_vec();
    wire.extend_from_slice(&frame);
    wire
}

/// Sends `bytes` on a fresh connection, expects the broker to close it, then proves the broker
/// still serves a new connection.
async fn assert_closes_and_broker_survives(broker: &BrokerHandle, bytes: &[u8]) {
    let mut hostile = Client::connect(broker).await;
    let mut bystander = Client::connect(broker).await;
    hostile.send_raw(bytes).await;
    assert!(
        hostile.is_closed_by_broker().await,
        "the broker closes the connection"
    );
    let response = bystander.call(3, ApiVersionsRequest::default()).await;
    assert_eq!(response.error_code, 0, "an open connection keeps working");
    let mut newcomer = Client::connect(broker).await;
    assert_eq!(
        newcomer
            .call(3, ApiVersionsRequest::default())
            .await
            .error_code,
        0
    );
}

#[tokio::test]
async fn an_oversize_frame_closes_the_connection_before_allocating() {
    let broker = start_default().await;
    assert_closes_and_broker_survives(&broker, &i32::MAX.to_be_bytes()).await;
    assert_closes_and_broker_survives(&broker, &(-5i32).to_be_bytes()).await;
}

#[tokio::test]
async fn a_frame_too_small_for_a_header_closes_the_connection() {
    let broker = start_default().await;
    assert_closes_and_broker_survives(&broker, &[0, 0, 0, 3, 0, 18, 0]).await;
}

#[tokio::test]
async fn a_frame_whose_body_is_cut_short_closes_the_connection() {
    let broker = start_default().await;
    // Metadata v1: a topics array of 3 names, but only half of the first name is there.
    let mut body = BytesMut::new();
    body.put_i32(3);
    body.put_i16(10);
    body.extend_from_slice(b"orde");
    assert_closes_and_broker_survives(&broker, &frame(3, 1, &body)).await;
}

#[tokio::test]
async fn a_peer_that_hangs_up_mid_frame_leaves_the_broker_serving() {
    let broker = start_default().await;
    let mut quitter = Client::connect(&broker).await;
    quitter.send_raw(&frame(18, 3, &[0, 0, 0])[..9]).await;
    drop(quitter);
    let mut client = Client::connect(&broker).await;
    assert_eq!(
        client
            .call(3, ApiVersionsRequest::default())
            .await
            .error_code,
        0
    );
}

#[tokio::test]
async fn garbage_bytes_close_the_connection() {
    let broker = start_default().await;
    let garbage: Vec<u8> = (0..64u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    let mut wire = 64i32.to_be_bytes().to_vec();
    wire.extend_from_slice(&garbage);
    assert_closes_and_broker_survives(&broker, &wire).await;
}

#[tokio::test]
async fn an_unknown_api_key_closes_the_connection() {
    let broker = start_default().await;
    assert_closes_and_broker_survives(&broker, &frame(9_999, 0, &[])).await;
}

#[tokio::test]
async fn an_api_we_do_not_implement_closes_the_connection() {
    let broker = start_default().await;
    // JoinGroup (11) is a real Kafka API that this broker does not advertise.
    assert_closes_and_broker_survives(&broker, &frame(11, 5, &[])).await;
}

#[tokio::test]
async fn an_unsupported_version_closes_the_connection() {
    let broker = start_default().await;
    assert_closes_and_broker_survives(&broker, &frame(0, 99, &[])).await;
    assert_closes_and_broker_survives(&broker, &frame(0, 2, &[])).await;
}

#[tokio::test]
async fn an_array_count_of_billions_is_refused_without_allocating() {
    let broker = start_default().await;
    // Produce v3: null transactional id, acks, timeout, then a topic array claiming i32::MAX
    // entries in a frame of a few bytes. Decoded unguarded, this asks for ~150 GB and aborts.
    let mut produce = BytesMut::new();
    produce.put_i16(-1);
    produce.put_i16(-1);
    produce.put_i32(1_000);
    produce.put_i32(i32::MAX);
    assert_closes_and_broker_survives(&broker, &frame(0, 3, &produce)).await;
    // Metadata v1 with the same lie.
    assert_closes_and_broker_survives(&broker, &frame(3, 1, &i32::MAX.to_be_bytes())).await;
    // Fetch v12 (flexible): a compact array count of u32::MAX as an unsigned varint, after a
    // header v2 (so a tagged-field byte follows the client id).
    let mut fetch = BytesMut::new();
    fetch.put_u8(0);
    fetch.put_i32(-1);
    fetch.put_i32(500);
    fetch.put_i32(1);
    fetch.put_i32(1_000_000);
    fetch.put_i8(0);
    fetch.put_i32(0);
    fetch.put_i32(-1);
    fetch.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert_closes_and_broker_survives(&broker, &frame(1, 12, &fetch)).await;
}

#[tokio::test]
async fn a_corrupt_batch_crc_is_corrupt_message() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    let mut corrupt = batch(3, 1).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let answer = produce(&mut client, "t", 0, corrupt.into()).await;
    assert_eq!(answer.error_code, ResponseError::CorruptMessage.code());
    assert!(answer.error_message.is_some());
    assert_eq!(
        fetch(&mut client, fetch_request("t", 0, 0))
            .await
            .high_watermark,
        0
    );
}

#[tokio::test]
async fn a_torn_batch_is_corrupt_message() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    let whole = batch(3, 1);
    let answer = produce(&mut client, "t", 0, whole.slice(..whole.len() - 5)).await;
    assert_eq!(answer.error_code, ResponseError::CorruptMessage.code());
}

#[tokio::test]
async fn a_batch_over_max_message_bytes_is_message_too_large() {
    let config = Config {
        topic_defaults: TopicConfig {
            max_message_bytes: 200,
            ..TopicConfig::default()
        },
        ..Config::default()
    };
    let broker = start(config).await;
    let mut client = Client::connect(&broker).await;
    let answer = produce(&mut client, "t", 0, batch(50, 1)).await;
    assert_eq!(answer.error_code, ResponseError::MessageTooLarge.code());
    let small = produce(&mut client, "t", 0, batch(1, 1)).await;
    assert_eq!((small.error_code, small.base_offset), (0, 0));
}

#[tokio::test]
async fn a_failed_acks_zero_produce_closes_the_connection() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    let mut corrupt = batch(1, 1).to_vec();
    corrupt[70] ^= 0xff;
    let (_, bytes) = client.encode(9, &produce_request("t", 0, corrupt.into(), 0));
    client.send_raw(&bytes).await;
    assert!(client.is_closed_by_broker().await);
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_and_earlier_ones_keep_working() {
    let broker = start(Config {
        connections_max: 2,
        ..Config::default()
    })
    .await;
    let mut first = Client::connect(&broker).await;
    let mut second = Client::connect(&broker).await;
    first.call(3, ApiVersionsRequest::default()).await;
    second.call(3, ApiVersionsRequest::default()).await;
    let mut third = Client::connect(&broker).await;
    assert!(third.is_closed_by_broker().await);
    assert_eq!(
        first
            .call(3, ApiVersionsRequest::default())
            .await
            .error_code,
        0
    );
}

#[tokio::test]
async fn shutdown_stops_accepting_and_closes_idle_connections() {
    let broker = start_default().await;
    let address = broker.bootstrap();
    let mut idle = Client::connect(&broker).await;
    idle.call(3, ApiVersionsRequest::default()).await;
    broker.shutdown().await;
    assert!(idle.is_closed_by_broker().await);
    assert!(tokio::net::TcpStream::connect(&address).await.is_err());
}

#[tokio::test]
async fn a_half_closed_client_still_gets_its_answer() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    let (correlation_id, bytes) = client.encode(3, &ApiVersionsRequest::default());
    client.send_raw(&bytes).await;
    client.shutdown_write().await;
    let frame = client
        .read_frame()
        .await
        .expect("answered before the close");
    assert_eq!(
        Client::decode::<ApiVersionsRequest>(3, correlation_id, frame).error_code,
        0
    );
}

trait ShutdownWrite {
    async fn shutdown_write(&mut self);
}

impl ShutdownWrite for Client {
    async fn shutdown_write(&mut self) {
        self.stream_mut().shutdown().await.unwrap();
    }
}
