//! The producer against a cluster: an embedded Tidepool, or the Kafka named by
//! `TIDEPOOL_TEST_BOOTSTRAP`. Every test creates its own topics and reads back what the broker
//! stored with bare Fetch requests, so the consumer is not under test here.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use support::fetch::{fetch_all, fetch_batches};
use support::topics::create_topic;
use support::{TestCluster, unique_topic};
use tidepool_client::partitioner::partition_for_key;
use tidepool_client::{
    Acks, Admin, Client, Compression, DeliveryFuture, Error, Header, KafkaCode, NewTopic, Producer,
    ProducerConfig, ProducerRecord, RecordMetadata,
};
use tidepool_protocol::records::Record;

async fn producer(client: &Client, config: ProducerConfig) -> Producer {
    Producer::new(client.clone(), config)
        .await
        .expect("a valid producer config")
}

async fn deliver(futures: Vec<DeliveryFuture>) -> Vec<RecordMetadata> {
    let mut delivered = Vec::with_capacity(futures.len());
    for future in futures {
        delivered.push(future.await.expect("the record is delivered"));
    }
    delivered
}

fn values(records: &[Record]) -> Vec<Bytes> {
    records.iter().filter_map(|r| r.value.clone()).collect()
}

fn numbered(prefix: &str, count: usize) -> Vec<Bytes> {
    (0..count)
        .map(|i| Bytes::from(format!("{prefix}-{i}")))
        .collect()
}

/// Reads a partition until it holds `count` records: an acks=0 record is only known to be
/// written once it can be read.
async fn read_at_least(client: &Client, topic: &str, partition: i32, count: usize) -> Vec<Record> {
    for _ in 0..100 {
        let records = fetch_all(client, topic, partition).await;
        if records.len() >= count {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{topic}-{partition} never held {count} records");
}

/// Whether a delivery future has resolved already (polled once, no waiting).
async fn is_resolved(future: DeliveryFuture) -> bool {
    tokio::time::timeout(Duration::ZERO, future).await.is_ok()
}

#[tokio::test]
async fn every_acks_mode_delivers_every_record() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    for acks in [Acks::None, Acks::Leader, Acks::All] {
        let topic = unique_topic("acks");
        create_topic(&client, &topic, 1).await;
        let producer = producer(&client, ProducerConfig::default().acks(acks)).await;
        let sent = numbered("record", 10);
        let mut futures = Vec::new();
        for value in &sent {
            futures.push(
                producer
                    .send(ProducerRecord::new(&topic, value.clone()))
                    .await
                    .unwrap(),
            );
        }
        let delivered = deliver(futures).await;
        let offsets: Vec<i64> = delivered.iter().map(|m| m.offset).collect();
        match acks {
            Acks::None => assert_eq!(offsets, vec![-1; 10], "acks=0 learns no offsets"),
            _ => assert_eq!(offsets, (0..10).collect::<Vec<i64>>(), "{acks:?}"),
        }
        let stored = read_at_least(&client, &topic, 0, 10).await;
        assert_eq!(values(&stored), sent, "{acks:?}");
        producer.close().await.unwrap();
    }
}

#[tokio::test]
async fn every_codec_round_trips_through_the_broker() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    for codec in codecs {
        let topic = unique_topic("codec");
        create_topic(&client, &topic, 1).await;
        let producer = producer(&client, ProducerConfig::default().compression(codec)).await;
        let mut sent = Vec::new();
        let mut futures = Vec::new();
        for i in 0..50 {
            // Repetitive values, so every codec actually shrinks them.
            let value = Bytes::from(format!("{codec:?} value {i} ").repeat(20));
            sent.push(value.clone());
            let record = ProducerRecord::new(&topic, value).key(format!("key-{i}"));
            futures.push(producer.send(record).await.unwrap());
        }
        deliver(futures).await;
        let batches = fetch_batches(&client, &topic, 0).await;
        assert!(!batches.is_empty());
        for batch in &batches {
            assert_eq!(batch.header.compression().unwrap(), codec);
        }
        let stored: Vec<Record> = batches.into_iter().flat_map(|b| b.records).collect();
        assert_eq!(values(&stored), sent, "{codec:?}");
        assert_eq!(stored[7].key.as_deref(), Some(&b"key-7"[..]));
    }
}

#[tokio::test]
async fn headers_timestamps_and_null_values_are_kept() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = unique_topic("headers");
    create_topic(&client, &topic, 1).await;
    let producer = producer(&client, ProducerConfig::default()).await;

    let mut with_headers = ProducerRecord::new(&topic, "v")
        .header("trace", "first")
        .header("trace", "second")
        .timestamp(1_600_000_000_000);
    with_headers.headers.push(Header {
        key: "empty".into(),
        value: None,
    });
    let expected_headers = with_headers.headers.clone();
    let mut tombstone = ProducerRecord::new(&topic, "").key("gone");
    tombstone.value = None;
    let before = client.wall_ms();
    let first = producer.send(with_headers).await.unwrap().await.unwrap();
    let second = producer.send(tombstone).await.unwrap().await.unwrap();
    let after = client.wall_ms();

    assert_eq!(first.timestamp, 1_600_000_000_000);
    assert!(
        (before..=after).contains(&second.timestamp),
        "a record without a timestamp gets the client's clock"
    );
    let stored = fetch_all(&client, &topic, 0).await;
    assert_eq!(
        stored[0].headers, expected_headers,
        "in order, duplicates kept"
    );
    assert_eq!(stored[0].timestamp, 1_600_000_000_000);
    assert_eq!(stored[1].value, None);
    assert_eq!(stored[1].timestamp, second.timestamp);
}

#[tokio::test]
async fn a_log_append_time_topic_reports_the_brokers_timestamp() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = unique_topic("append-time");
    Admin::new(client.clone())
        .create_topic(
            NewTopic::new(&topic, 1, -1).config("message.timestamp.type", "LogAppendTime"),
        )
        .await
        .unwrap();
    let producer = producer(&client, ProducerConfig::default()).await;
    let before = client.wall_ms();
    let record = ProducerRecord::new(&topic, "v").timestamp(1_000);
    let delivered = producer.send(record).await.unwrap().await.unwrap();
    // Allow for a broker clock a little apart from ours.
    assert!(
        (before - 60_000..=client.wall_ms() + 60_000).contains(&delivered.timestamp),
        "{} is not the broker's append time",
        delivered.timestamp
    );
}

#[tokio::test]
async fn keyed_records_land_on_the_partition_for_their_key() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = unique_topic("keyed");
    create_topic(&client, &topic, 6).await;
    let producer = producer(&client, ProducerConfig::default()).await;
    let mut futures = Vec::new();
    for i in 0..60 {
        let key = format!("customer-{}", i % 20);
        futures.push(
            producer
                .send(ProducerRecord::new(&topic, "v").key(key))
                .await
                .unwrap(),
        );
    }
    let delivered = deliver(futures).await;
    for (i, metadata) in delivered.iter().enumerate() {
        let key = format!("customer-{}", i % 20);
        assert_eq!(
            metadata.partition,
            partition_for_key(key.as_bytes(), 6),
            "{key}"
        );
    }
    for partition in 0..6 {
        for record in fetch_all(&client, &topic, partition).await {
            let key = record.key.expect("a key");
            assert_eq!(partition_for_key(&key, 6), partition);
        }
    }
}

#[tokio::test]
async fn an_explicit_partition_is_honoured_over_the_key() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = unique_topic("explicit");
    create_topic(&client, &topic, 4).await;
    let producer = producer(&client, ProducerConfig::default()).await;
    let key = "customer-1";
    let elsewhere = (partition_for_key(key.as_bytes(), 4) + 1) % 4;
    let record = ProducerRecord::new(&topic, "v")
        .key(key)
        .partition(elsewhere);
    let delivered = producer.send(record).await.unwrap().await.unwrap();
    assert_eq!(delivered.partition, elsewhere);
    assert_eq!(fetch_all(&client, &topic, elsewhere).await.len(), 1);

    let outside = ProducerRecord::new(&topic, "v").partition(4);
    assert!(matches!(
        producer.send(outside).await,
        Err(Error::Invalid(_))
    ));
}

#[tokio::test]
async fn keyless_records_stick_to_a_partition_per_batch_and_spread_across_batches() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = unique_topic("sticky");
    create_topic(&client, &topic, 4).await;
    // Batches close on size only: three 250-byte records fill 1 KiB.
    let config = ProducerConfig::default()
        .batch_bytes(1024)
        .linger(Duration::from_secs(30));
    let producer = producer(&client, config).await;
    let mut futures = Vec::new();
    for _ in 0..30 {
        futures.push(
            producer
                .send(ProducerRecord::new(&topic, vec![b'x'; 250]))
                .await
                .unwrap(),
        );
    }
    producer.flush().await.unwrap();
    let partitions: Vec<i32> = deliver(futures).await.iter().map(|m| m.partition).collect();
    let runs: Vec<&[i32]> = partitions.chunk_by(|a, b| a == b).collect();
    assert_eq!(runs.len(), 10, "{partitions:?}");
    assert!(runs.iter().all(|run| run.len() == 3), "{partitions:?}");
    let used: BTreeSet<i32> = partitions.iter().copied().collect();
    assert!(used.len() >= 2, "{partitions:?}");
}

#[tokio::test]
async fn delivery_futures_resolve_in_order_with_consecutive_offsets() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = unique_topic("ordered");
    create_topic(&client, &topic, 1).await;
    // Small batches, so several requests are in flight at once.
    let producer = producer(&client, ProducerConfig::default().batch_bytes(2048)).await;
    let sent = numbered("ordered", 500);
    let mut futures = Vec::new();
    for value in &sent {
        futures.push(
            producer
                .send(ProducerRecord::new(&topic, value.clone()))
                .await
                .unwrap(),
        );
    }
    let last = futures.pop().unwrap().await.unwrap();
    assert_eq!(last.offset, 499);
    let mut offsets = Vec::new();
    for future in futures {
        let metadata = tokio::time::timeout(Duration::ZERO, future)
            .await
            .expect("resolved no later than the last record");
        offsets.push(metadata.unwrap().offset);
    }
    assert_eq!(offsets, (0..499).collect::<Vec<i64>>());
    assert_eq!(values(&fetch_all(&client, &topic, 0).await), sent);
}

#[tokio::test]
async fn an_idempotent_producer_gets_a_producer_id_and_numbers_its_batches() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = unique_topic("idempotent");
    create_topic(&client, &topic, 1).await;
    let producer = producer(&client, ProducerConfig::default()).await;
    assert_eq!(producer.producer_id(), None, "asked for lazily");
    for round in 0..3 {
        let mut futures = Vec::new();
        for i in 0..4 {
            let record = ProducerRecord::new(&topic, format!("{round}-{i}"));
            futures.push(producer.send(record).await.unwrap());
        }
        deliver(futures).await;
    }
    let (id, epoch) = producer.producer_id().expect("a producer id after sending");
    assert!(id >= 0);
    let batches = fetch_batches(&client, &topic, 0).await;
    let fields: Vec<(i64, i16, i32)> = batches
        .iter()
        .map(|b| {
            (
                b.header.producer_id,
                b.header.producer_epoch,
                b.header.base_sequence,
            )
        })
        .collect();
    assert_eq!(fields, vec![(id, epoch, 0), (id, epoch, 4), (id, epoch, 8)]);

    let plain = producer_without_idempotence(&client).await;
    plain
        .send(ProducerRecord::new(&topic, "plain"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(plain.producer_id(), None);
    let last = fetch_batches(&client, &topic, 0).await.pop().unwrap();
    assert_eq!(
        (last.header.producer_id, last.header.base_sequence),
        (-1, -1)
    );
}

async fn producer_without_idempotence(client: &Client) -> Producer {
    producer(client, ProducerConfig::default().idempotence(false)).await
}

#[tokio::test]
async fn flush_waits_for_every_record_sent_before_it() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = unique_topic("flush");
    create_topic(&client, &topic, 3).await;
    let config = ProducerConfig::default().linger(Duration::from_secs(60));
    let producer = producer(&client, config).await;
    let mut futures = Vec::new();
    for i in 0..100 {
        let record = ProducerRecord::new(&topic, "v").key(format!("k{i}"));
        futures.push(producer.send(record).await.unwrap());
    }
    producer.flush().await.unwrap();
    for future in futures {
        assert!(
            is_resolved(future).await,
            "flush returned before a record settled"
        );
    }
    let mut stored = 0;
    for partition in 0..3 {
        stored += fetch_all(&client, &topic, partition).await.len();
    }
    assert_eq!(stored, 100);
}

#[tokio::test]
async fn a_full_buffer_refuses_try_send_at_once_and_send_after_max_block() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = unique_topic("buffer");
    create_topic(&client, &topic, 1).await;
    // A long linger holds every batch: the buffer only fills.
    let config = ProducerConfig::default()
        .buffer_bytes(4096)
        .linger(Duration::from_secs(60))
        .max_block(Duration::from_millis(200));
    let producer = producer(&client, config).await;
    let mut accepted = vec![
        producer
            .send(ProducerRecord::new(&topic, vec![0; 1000]))
            .await
            .unwrap(),
    ];
    let refused = loop {
        match producer.try_send(ProducerRecord::new(&topic, vec![0; 1000])) {
            Ok(future) => accepted.push(future),
            Err(error) => break error,
        }
        assert!(accepted.len() < 10, "4 KiB cannot hold 10 records of 1 KB");
    };
    assert!(matches!(refused, Error::BufferFull), "{refused}");
    assert!(accepted.len() >= 2);

    let started = client.now();
    let waited = producer
        .send(ProducerRecord::new(&topic, vec![0; 1000]))
        .await;
    assert!(matches!(waited, Err(Error::BufferFull)));
    assert!(
        client.now() - started >= Duration::from_millis(200),
        "send waits max_block"
    );

    producer.flush().await.unwrap();
    deliver(accepted).await;
    let _room_again = producer
        .try_send(ProducerRecord::new(&topic, "room again"))
        .expect("space once the batches are delivered");
}

#[tokio::test]
async fn a_record_larger_than_max_request_bytes_is_invalid() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = unique_topic("oversize");
    create_topic(&client, &topic, 1).await;
    let producer = producer(&client, ProducerConfig::default().max_request_bytes(1024)).await;
    let oversize = ProducerRecord::new(&topic, vec![0; 2048]);
    assert!(matches!(
        producer.send(oversize.clone()).await,
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        producer.try_send(oversize),
        Err(Error::Invalid(_))
    ));
    producer
        .send(ProducerRecord::new(&topic, vec![0; 512]))
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unknown_topic_fails_after_max_block_and_is_not_created() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = unique_topic("missing");
    let config = ProducerConfig::default().max_block(Duration::from_millis(300));
    let producer = producer(&client, config).await;
    let error = producer
        .send(ProducerRecord::new(&topic, "v"))
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION),
        "{error}"
    );
    let listed = client.list_topics().await.unwrap();
    assert!(
        listed.iter().all(|t| t.name != topic),
        "the producer created {topic}"
    );
}

#[tokio::test]
async fn close_delivers_what_was_buffered_then_refuses_new_records() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = unique_topic("close");
    create_topic(&client, &topic, 1).await;
    let config = ProducerConfig::default().linger(Duration::from_secs(60));
    let producer = producer(&client, config).await;
    let mut futures = Vec::new();
    for i in 0..5 {
        futures.push(
            producer
                .send(ProducerRecord::new(&topic, format!("{i}")))
                .await
                .unwrap(),
        );
    }
    producer.close().await.unwrap();
    assert_eq!(deliver(futures).await.len(), 5);
    let late = producer.send(ProducerRecord::new(&topic, "late")).await;
    assert!(matches!(late, Err(Error::Closed)));
    assert_eq!(fetch_all(&client, &topic, 0).await.len(), 5);
}

#[tokio::test]
async fn a_dropped_producer_still_delivers_what_it_was_given() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = unique_topic("dropped");
    create_topic(&client, &topic, 1).await;
    let config = ProducerConfig::default().linger(Duration::from_secs(60));
    let producer = producer(&client, config).await;
    let future = producer
        .send(ProducerRecord::new(&topic, "v"))
        .await
        .unwrap();
    drop(producer);
    assert_eq!(future.await.unwrap().offset, 0);
}

#[tokio::test]
async fn try_send_fetches_missing_metadata_in_the_background() {
    let cluster = TestCluster::start(1).await;
    let topic = unique_topic("try-send");
    create_topic(&cluster.client().await, &topic, 1).await;
    // A fresh client has no metadata for the topic yet.
    let client = cluster.client().await;
    let producer = producer(&client, ProducerConfig::default()).await;
    let first = producer.try_send(ProducerRecord::new(&topic, "v"));
    let error = first.expect_err("try_send does not wait for metadata");
    assert_eq!(error.code(), Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION));
    assert!(error.is_retriable());
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Ok(delivery) = producer.try_send(ProducerRecord::new(&topic, "v")) {
            assert_eq!(delivery.await.unwrap().offset, 0);
            return;
        }
    }
    panic!("try_send never learned {topic}'s metadata");
}
