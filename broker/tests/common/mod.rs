//! A raw Kafka wire client for broker tests: encodes requests with `kafka-protocol`, sends
//! them over TCP, and decodes responses — or sends arbitrary bytes, for hostile input.

#![allow(
    dead_code,
    reason = "each test file uses a different part of this helper"
)]

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tidepool_broker::{Broker, BrokerHandle, Config};
use tidepool_protocol::records::{BatchBuilder, Record};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Logs to the test's captured output; `RUST_LOG=debug` shows why connections close.
fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}

pub async fn start(config: Config) -> BrokerHandle {
    init_logging();
    Broker::builder()
        .memory()
        .config(config)
        .start()
        .await
        .expect("broker starts")
}

pub async fn start_default() -> BrokerHandle {
    start(Config::default()).await
}

pub struct Client {
    stream: TcpStream,
    correlation_id: i32,
}

/// How long a test waits for any single response before failing.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

impl Client {
    pub async fn connect(broker: &BrokerHandle) -> Client {
        let address = broker.bootstrap().split(',').next().unwrap().to_owned();
        Client::connect_to(&address).await
    }

    pub async fn connect_to(address: &str) -> Client {
        let stream = TcpStream::connect(address).await.expect("connects");
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            correlation_id: 0,
        }
    }

    /// Encodes a framed request at `version` and returns (correlation id, bytes).
    pub fn encode<R: Request>(&mut self, version: i16, request: &R) -> (i32, Bytes) {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("tidepool-test")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .unwrap();
        request.encode(&mut body, version).unwrap();
        let mut framed = BytesMut::with_capacity(body.len() + 4);
        framed.put_i32(body.len() as i32);
        framed.extend_from_slice(&body);
        (self.correlation_id, framed.freeze())
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("writes");
    }

    /// Reads one response frame; `None` if the broker closed the connection.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let read = async {
            let size = self.stream.read_i32().await.ok()?;
            let mut frame = vec![0u8; size as usize];
            self.stream.read_exact(&mut frame).await.ok()?;
            Some(Bytes::from(frame))
        };
        tokio::time::timeout(RESPONSE_TIMEOUT, read)
            .await
            .expect("a response or a close in time")
    }

    pub fn decode<R: Request>(version: i16, correlation_id: i32, mut frame: Bytes) -> R::Response {
        let header_version = <R::Response as HeaderVersion>::header_version(version);
        let header = ResponseHeader::decode(&mut frame, header_version).unwrap();
        assert_eq!(
            header.correlation_id, correlation_id,
            "responses come back in order"
        );
        let response = R::Response::decode(&mut frame, version).unwrap();
        assert_eq!(frame.remaining(), 0, "the whole response was decoded");
        response
    }

    pub async fn call<R: Request>(&mut self, version: i16, request: R) -> R::Response {
        let (correlation_id, bytes) = self.encode(version, &request);
        self.send_raw(&bytes).await;
        let frame = self.read_frame().await.expect("the broker answers");
        Client::decode::<R>(version, correlation_id, frame)
    }

    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// True once the broker has closed the connection (reads see end of stream).
    pub async fn is_closed_by_broker(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(RESPONSE_TIMEOUT, self.stream.read(&mut byte)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(_)) => false,
            Err(_) => false,
        }
    }
}

/// A batch of `count` records `key-i`/`value-i` with headers, as a producer would send it.
pub fn batch(count: usize, first_timestamp: i64) -> Bytes {
    let mut builder = BatchBuilder::new();
    for index in 0..count {
        builder.push(record(index, first_timestamp + index as i64));
    }
    builder.build().unwrap()
}

pub fn record(index: usize, timestamp: i64) -> Record {
    Record {
        offset: index as i64,
        timestamp,
        key: Some(Bytes::from(format!("key-{index}"))),
        value: Some(Bytes::from(format!("value-{index}"))),
        headers: Vec::new(),
    }
}

/// An idempotent batch from producer `producer_id` at `epoch`, starting at `base_sequence`.
pub fn idempotent_batch(producer_id: i64, epoch: i16, base_sequence: i32, count: usize) -> Bytes {
    let mut builder = BatchBuilder::new();
    builder.producer(producer_id, epoch, base_sequence);
    for index in 0..count {
        builder.push(record(index, 1_000 + index as i64));
    }
    builder.build().unwrap()
}

pub fn api_key_of<R: Request>() -> ApiKey {
    ApiKey::try_from(R::KEY).unwrap()
}

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse, TopicName,
};

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

pub async fn create_topic(client: &mut Client, name: &str, partitions: i32) {
    let request = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1),
    ]);
    let response = client.call(7, request).await;
    assert_eq!(
        response.topics[0].error_code, 0,
        "{:?}",
        response.topics[0].error_message
    );
}

pub fn produce_request(topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ]),
        ])
}

/// Produces one record set at Produce v9 and returns the partition's answer.
pub async fn produce(
    client: &mut Client,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> kafka_protocol::messages::produce_response::PartitionProduceResponse {
    let response: ProduceResponse = client
        .call(9, produce_request(topic, partition, records, -1))
        .await;
    response.responses[0].partition_responses[0].clone()
}

pub fn fetch_request(topic: &str, partition: i32, offset: i64) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(50 * 1024 * 1024)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1024 * 1024),
                ]),
        ])
}

/// Fetches at v12 (topics by name) and returns the first partition's data.
pub async fn fetch(
    client: &mut Client,
    request: FetchRequest,
) -> kafka_protocol::messages::fetch_response::PartitionData {
    let response: FetchResponse = client.call(12, request).await;
    assert_eq!(response.error_code, 0);
    response.responses[0].partitions[0].clone()
}

/// The records of every batch in a fetched record set.
pub fn records_of(records: &Option<Bytes>) -> Vec<Record> {
    let bytes = records.clone().unwrap_or_default();
    tidepool_protocol::batch::split(&bytes)
        .unwrap()
        .into_iter()
        .flat_map(|range| {
            tidepool_protocol::records::decode(&bytes[range], &Default::default()).unwrap()
        })
        .collect()
}
