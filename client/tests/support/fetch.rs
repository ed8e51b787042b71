//! Reading a partition back with bare FetchRequests, so producer tests check what the broker
//! stored without depending on the consumer they do not test.

#![allow(dead_code)]

use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tidepool_client::{Client, KafkaCode, versions};
use tidepool_protocol::batch::{BatchHeader, LOG_OVERHEAD};
use tidepool_protocol::records::{self, DecodeLimits, Record};

/// A stored batch: its header (producer id, sequence, codec) and its records.
#[derive(Debug, Clone)]
pub struct FetchedBatch {
    pub header: BatchHeader,
    pub records: Vec<Record>,
}

/// Every record of a partition, oldest first.
pub async fn fetch_all(client: &Client, topic: &str, partition: i32) -> Vec<Record> {
    fetch_batches(client, topic, partition)
        .await
        .into_iter()
        .flat_map(|batch| batch.records)
        .collect()
}

/// Every batch of a partition from offset 0 up to the high watermark as it is when the read
/// starts.
pub async fn fetch_batches(client: &Client, topic: &str, partition: i32) -> Vec<FetchedBatch> {
    let mut batches = Vec::new();
    let mut offset = 0;
    let mut end = None;
    let deadline = client.now() + Duration::from_secs(30);
    loop {
        assert!(
            client.now() < deadline,
            "reading {topic}-{partition} did not reach offset {end:?} within 30 s (at {offset})"
        );
        let (high_watermark, found) = fetch_once(client, topic, partition, offset).await;
        let end = *end.get_or_insert(high_watermark);
        for batch in found {
            let last = batch.header.last_offset();
            if last >= offset {
                offset = last + 1;
                batches.push(batch);
            }
        }
        if offset >= end {
            return batches;
        }
    }
}

async fn fetch_once(
    client: &Client,
    topic: &str,
    partition: i32,
    offset: i64,
) -> (i64, Vec<FetchedBatch>) {
    let mut attempt = 0;
    loop {
        let leader = match client.leader(topic, partition) {
            Some((leader, _)) => leader,
            None => {
                let _ = client.refresh_topics(&[topic]).await;
                client.sleep(client.backoff(attempt)).await;
                attempt += 1;
                assert!(attempt < 50, "no leader for {topic}-{partition}");
                continue;
            }
        };
        let response = client
            .send(leader, versions::FETCH, |_| {
                FetchRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_max_wait_ms(100)
                    .with_min_bytes(1)
                    .with_max_bytes(64 << 20)
                    .with_session_epoch(-1)
                    .with_topics(vec![
                        FetchTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                            .with_partitions(vec![
                                FetchPartition::default()
                                    .with_partition(partition)
                                    .with_fetch_offset(offset)
                                    .with_current_leader_epoch(-1)
                                    .with_log_start_offset(-1)
                                    .with_partition_max_bytes(32 << 20),
                            ]),
                    ])
            })
            .await
            .unwrap_or_else(|error| panic!("fetching {topic}-{partition}: {error}"));
        let answer = response
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition)
            .unwrap_or_else(|| panic!("no fetch answer for {topic}-{partition}"));
        if let Some(code) = KafkaCode::from_code(answer.error_code) {
            assert!(
                code.invalidates_metadata() && attempt < 50,
                "fetching {topic}-{partition}: {code}"
            );
            let _ = client.refresh_topics(&[topic]).await;
            client.sleep(client.backoff(attempt)).await;
            attempt += 1;
            continue;
        }
        let bytes = answer.records.clone().unwrap_or_default();
        return (answer.high_watermark, split(&bytes));
    }
}

/// The whole batches in a fetched record set; a batch cut off at the end (the broker may stop
/// mid-batch at its byte limit) is left for the next fetch.
fn split(bytes: &[u8]) -> Vec<FetchedBatch> {
    let mut batches = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= LOG_OVERHEAD {
        let length = i32::from_be_bytes(bytes[at + 8..at + 12].try_into().unwrap());
        let total = LOG_OVERHEAD + usize::try_from(length).expect("a positive batch length");
        if bytes.len() - at < total {
            break;
        }
        let batch = &bytes[at..at + total];
        let header = BatchHeader::parse(batch).expect("a valid batch header");
        let records = records::decode(batch, &DecodeLimits::default()).expect("decodable records");
        batches.push(FetchedBatch { header, records });
        at += total;
    }
    batches
}
