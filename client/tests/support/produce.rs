//! Records written with a bare ProduceRequest, so tests of the consumer and admin do not depend
//! on the producer they may be checking.

#![allow(dead_code)]

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tidepool_client::{Client, Error, KafkaCode, versions};
use tidepool_protocol::records::BatchBuilder;

/// Writes `records` to one partition in one batch stamped with the client's wall clock, with
/// acks=all, and returns the offset of the first record.
pub async fn produce_raw(
    client: &Client,
    topic: &str,
    partition: i32,
    records: Vec<(Option<Bytes>, Option<Bytes>)>,
) -> i64 {
    let now = client.wall_ms();
    produce_raw_at(client, topic, partition, now, records).await
}

/// Like [`produce_raw`], with every record stamped `timestamp` (CreateTime).
pub async fn produce_raw_at(
    client: &Client,
    topic: &str,
    partition: i32,
    timestamp: i64,
    records: Vec<(Option<Bytes>, Option<Bytes>)>,
) -> i64 {
    let mut builder = BatchBuilder::new();
    for (key, value) in records {
        builder.append(timestamp, key, value, Vec::new());
    }
    let batch = builder.build().expect("a batch of at least one record");
    produce_batch(client, topic, partition, batch).await
}

/// Writes a batch built by the caller (headers, timestamps, codec of its choosing), acks=all,
/// and returns the offset of its first record.
pub async fn produce_batch(client: &Client, topic: &str, partition: i32, batch: Bytes) -> i64 {
    let deadline = client.now() + client.config().request_timeout;
    let mut attempt = 0;
    loop {
        match send_once(client, topic, partition, batch.clone()).await {
            Ok(base_offset) => return base_offset,
            // Only errors that say nothing was written are retried, so a test never sees its
            // records twice.
            Err(error) if is_safe_to_retry(&error) && client.now() < deadline => {
                let _ = client.refresh_topics(&[topic]).await;
                client.sleep(client.backoff(attempt)).await;
                attempt += 1;
            }
            Err(error) => panic!("producing to {topic}-{partition} failed: {error}"),
        }
    }
}

fn is_safe_to_retry(error: &Error) -> bool {
    match error {
        Error::Connect { .. } => true,
        Error::Kafka { code, .. } => {
            code.invalidates_metadata() || *code == KafkaCode::NOT_LEADER_OR_FOLLOWER
        }
        _ => false,
    }
}

async fn send_once(
    client: &Client,
    topic: &str,
    partition: i32,
    batch: Bytes,
) -> Result<i64, Error> {
    let leader = match client.leader(topic, partition) {
        Some((leader, _)) => leader,
        None => {
            client.refresh_topics(&[topic]).await?;
            client
                .leader(topic, partition)
                .ok_or_else(|| {
                    Error::kafka(
                        KafkaCode::LEADER_NOT_AVAILABLE,
                        format!("{topic}-{partition}"),
                        None,
                    )
                })?
                .0
        }
    };
    let timeout_ms = i32::try_from(client.config().request_timeout.as_millis()).unwrap_or(i32::MAX);
    let response = client
        .send(leader, versions::PRODUCE, |_| {
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(timeout_ms)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partition_data(vec![
                            PartitionProduceData::default()
                                .with_index(partition)
                                .with_records(Some(batch.clone())),
                        ]),
                ])
        })
        .await?;
    let answer = response
        .responses
        .iter()
        .flat_map(|topic| topic.partition_responses.iter())
        .find(|answer| answer.index == partition)
        .ok_or_else(|| Error::Protocol {
            addr: format!("node {leader}"),
            reason: format!("no answer for {topic}-{partition}"),
        })?;
    match KafkaCode::from_code(answer.error_code) {
        None => Ok(answer.base_offset),
        Some(code) => Err(Error::kafka(
            code,
            format!("Produce to {topic}-{partition}"),
            answer.error_message.as_ref().map(|m| m.to_string()),
        )),
    }
}
