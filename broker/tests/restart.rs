//! Restarting an embedded broker on its data directory (real files under the system's
//! temporary directory): what was acknowledged comes back with the same offsets, keys, values
//! and timestamps; topic ids, configs and partition counts are restored; idempotent producers
//! are still recognised; producer ids never repeat; a torn or corrupt tail of the last segment
//! is cut at the last whole valid batch; deletions and new partitions stay as they were.
//!
//! A clean stop is `shutdown()`; an abrupt one is dropping the handle, which stops the broker
//! without flushing. Both leave the written bytes in the page cache, so these tests prove what
//! the broker wrote and how it recovers it, not what an fsync guarantees against power loss.

mod common;
#[path = "common/disk.rs"]
mod disk;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use common::*;
use disk::*;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, InitProducerIdRequest,
    ListOffsetsRequest, MetadataRequest, MetadataResponse,
};
use kafka_protocol::protocol::StrBytes;
use tidepool_broker::config::TimestampType;
use tidepool_broker::{BrokerHandle, Config};
use tidepool_protocol::records::{BatchBuilder, Header, Record};

// ---------------------------------------------------------------------------------------------
// Records, produce and read-back helpers.

/// `count` records with keys and values unique to `label` and `first`, increasing
/// timestamps from `timestamp`; the first record carries a header.
fn records(label: &str, first: usize, count: usize, timestamp: i64) -> Vec<Record> {
    (0..count)
        .map(|index| {
            let number = first + index;
            Record {
                offset: index as i64,
                timestamp: timestamp + index as i64,
                key: Some(Bytes::from(format!("{label}-key-{number}"))),
                value: Some(Bytes::from(format!("{label}-value-{number}"))),
                headers: if index == 0 {
                    vec![Header {
                        key: "number".into(),
                        value: Some(Bytes::from(number.to_string())),
                    }]
                } else {
                    Vec::new()
                },
            }
        })
        .collect()
}

/// The batch a producer sends for `records`; idempotent when `producer` (id, epoch, base
/// sequence) is given.
fn encode(records: &[Record], producer: Option<(i64, i16, i32)>) -> Bytes {
    let mut builder = BatchBuilder::new();
    if let Some((id, epoch, sequence)) = producer {
        builder.producer(id, epoch, sequence);
    }
    for record in records {
        builder.push(record.clone());
    }
    builder.build().unwrap()
}

/// The records as a fetch returns them once stored at `base_offset`; a LogAppendTime topic
/// reports the append time as every record's timestamp.
fn placed(records: &[Record], base_offset: i64, log_append_time_ms: Option<i64>) -> Vec<Record> {
    records
        .iter()
        .map(|record| Record {
            offset: base_offset + record.offset,
            timestamp: log_append_time_ms.unwrap_or(record.timestamp),
            ..record.clone()
        })
        .collect()
}

/// Produces `records` and checks they were acknowledged at the end of `expected`, which then
/// holds them as a fetch will return them.
async fn produce_expecting(
    client: &mut Client,
    topic: &str,
    partition: i32,
    records: &[Record],
    expected: &mut Vec<Record>,
) -> PartitionProduceResponse {
    let answer = produce(client, topic, partition, encode(records, None)).await;
    assert_eq!(
        answer.error_code, 0,
        "producing to {topic}-{partition}: {:?}",
        answer.error_message
    );
    assert_eq!(
        answer.base_offset,
        expected.len() as i64,
        "{topic}-{partition} appends at its end"
    );
    let stamped = (answer.log_append_time_ms >= 0).then_some(answer.log_append_time_ms);
    expected.extend(placed(records, answer.base_offset, stamped));
    answer
}

/// One partition as read back from offset 0 to its high watermark.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionLog {
    records: Vec<Record>,
    high_watermark: i64,
    log_start_offset: i64,
}

/// Reads a whole partition with as many fetches as it takes.
async fn read_partition(client: &mut Client, topic: &str, partition: i32) -> PartitionLog {
    let mut records: Vec<Record> = Vec::new();
    let mut next = 0;
    loop {
        let data = fetch(client, fetch_request(topic, partition, next)).await;
        assert_eq!(
            data.error_code, 0,
            "fetching {topic}-{partition} at offset {next}"
        );
        // A fetch from inside a batch returns the whole batch; keep only what is new.
        records.extend(
            records_of(&data.records)
                .into_iter()
                .filter(|record| record.offset >= next),
        );
        let reached = records.last().map_or(0, |record| record.offset + 1);
        if reached >= data.high_watermark {
            return PartitionLog {
                records,
                high_watermark: data.high_watermark,
                log_start_offset: data.log_start_offset,
            };
        }
        assert!(
            reached > next,
            "{topic}-{partition}: a fetch at {next} below the high watermark {} returned nothing",
            data.high_watermark
        );
        next = reached;
    }
}

/// The first batch a fetch at `offset` returns: a fetch of at most one byte still gets one
/// whole batch (KIP-74), the one holding `offset`, found through the offset index.
async fn batch_holding(client: &mut Client, topic: &str, offset: i64) -> Vec<Record> {
    let mut request = fetch_request(topic, 0, offset);
    request.topics[0].partitions[0].partition_max_bytes = 1;
    let data = fetch(client, request).await;
    assert_eq!(data.error_code, 0, "fetching {topic} at {offset}");
    records_of(&data.records)
}

async fn create_topic_with(
    client: &mut Client,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    let configs = configs
        .iter()
        .map(|&(name, value)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(name.to_owned()))
                .with_value(Some(StrBytes::from_string(value.to_owned())))
        })
        .collect();
    let request = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(configs),
    ]);
    let response = client.call(7, request).await;
    assert_eq!(
        response.topics[0].error_code, 0,
        "creating {name}: {:?}",
        response.topics[0].error_message
    );
}

async fn metadata(client: &mut Client, names: Option<&[&str]>) -> MetadataResponse {
    let topics = names.map(|names| {
        names
            .iter()
            .map(|name| MetadataRequestTopic::default().with_name(Some(topic_name(name))))
            .collect()
    });
    let request = MetadataRequest::default()
        .with_topics(topics)
        .with_allow_auto_topic_creation(false);
    client.call(12, request).await
}

/// What Metadata says of every topic: id, and per partition its leader and leader epoch.
type TopicLayout = BTreeMap<String, (uuid::Uuid, Vec<(i32, i32, i32)>)>;

async fn topic_layout(client: &mut Client) -> TopicLayout {
    metadata(client, None)
        .await
        .topics
        .iter()
        .map(|topic| {
            assert_eq!(topic.error_code, 0);
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    (
                        partition.partition_index,
                        partition.leader_id.0,
                        partition.leader_epoch,
                    )
                })
                .collect();
            let name = topic.name.as_ref().unwrap().0.to_string();
            (name, (topic.topic_id, partitions))
        })
        .collect()
}

async fn producer_id(client: &mut Client) -> i64 {
    let response = client
        .call(
            4,
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
        )
        .await;
    assert_eq!(response.error_code, 0);
    assert_eq!(response.producer_epoch, 0);
    response.producer_id.0
}

/// (offset, timestamp) ListOffsets answers for `timestamp` (-1 latest, -2 earliest, -3 the
/// record with the largest timestamp).
async fn list_offset(
    client: &mut Client,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> (i64, i64) {
    let request = ListOffsetsRequest::default().with_topics(vec![
        ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![
                ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_timestamp(timestamp),
            ]),
    ]);
    let response = client.call(8, request).await;
    let answer = &response.topics[0].partitions[0];
    assert_eq!(
        answer.error_code, 0,
        "ListOffsets {topic}-{partition} {timestamp}"
    );
    (answer.offset, answer.timestamp)
}

/// One client per node, so each produce and fetch goes to the partition's leader.
struct Nodes {
    clients: BTreeMap<i32, Client>,
}

impl Nodes {
    async fn connect(broker: &BrokerHandle) -> Nodes {
        let mut clients = BTreeMap::new();
        for node in broker.nodes() {
            let address = format!("{}:{}", node.host, node.port);
            clients.insert(node.id, Client::connect_to(&address).await);
        }
        Nodes { clients }
    }

    fn any(&mut self) -> &mut Client {
        self.clients.values_mut().next().expect("a node")
    }

    fn leader_of(&mut self, broker: &BrokerHandle, topic: &str, partition: i32) -> &mut Client {
        let (leader, _) = broker
            .control()
            .leader(topic, partition)
            .unwrap_or_else(|| panic!("{topic}-{partition} exists"));
        self.clients
            .get_mut(&leader)
            .unwrap_or_else(|| panic!("{topic}-{partition} has a serving leader, not {leader}"))
    }
}

/// Topic-partition → the records a fetch must return, in offset order from 0.
type Expected = BTreeMap<(String, i32), Vec<Record>>;

/// Reads every partition in `expected` from its leader and checks it holds exactly that.
async fn check_all(broker: &BrokerHandle, nodes: &mut Nodes, expected: &Expected, when: &str) {
    for ((topic, partition), records) in expected {
        let read = read_partition(
            nodes.leader_of(broker, topic, *partition),
            topic,
            *partition,
        )
        .await;
        assert_eq!(read.log_start_offset, 0, "{when}: {topic}-{partition}");
        assert_eq!(
            read.high_watermark,
            records.len() as i64,
            "{when}: {topic}-{partition} ends where it did"
        );
        assert_eq!(
            &read.records, records,
            "{when}: {topic}-{partition} records"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Clean restarts.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_acknowledged_survives_a_clean_restart() {
    let dir = TempDir::new("clean-restart");
    let broker = start_on(dir.path(), 3, Config::default()).await;
    let mut nodes = Nodes::connect(&broker).await;
    create_topic_with(nodes.any(), "orders", 3, &[("segment.bytes", "1024")]).await;
    create_topic_with(
        nodes.any(),
        "stamped",
        2,
        &[("message.timestamp.type", "LogAppendTime")],
    )
    .await;
    let partitions = [
        ("orders", 0),
        ("orders", 1),
        ("orders", 2),
        ("stamped", 0),
        ("stamped", 1),
        // Auto-created, with the broker's defaults.
        ("auto", 0),
    ];
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name("auto"))),
        ]))
        .with_allow_auto_topic_creation(true);
    let created = nodes.any().call(12, request).await;
    assert_eq!(created.topics[0].error_code, 0);
    let mut expected = Expected::new();
    for round in 0..8 {
        for (number, &(topic, partition)) in partitions.iter().enumerate() {
            let label = format!("{topic}-{partition}");
            let log = expected.entry((topic.to_owned(), partition)).or_default();
            let count = 1 + (round + number) % 4;
            let batch = records(&label, log.len(), count, 10_000 * round as i64 + 7);
            let client = nodes.leader_of(&broker, topic, partition);
            produce_expecting(client, topic, partition, &batch, log).await;
        }
    }
    check_all(&broker, &mut nodes, &expected, "before the restart").await;
    let layout = topic_layout(nodes.any()).await;
    assert_eq!(layout.len(), 3);
    let orders_leader = nodes.leader_of(&broker, "orders", 1);
    let mut offsets_by_time = Vec::new();
    for timestamp in [-1, -2, -3, 40_007, 40_009] {
        offsets_by_time.push(list_offset(orders_leader, "orders", 1, timestamp).await);
    }
    let orders_segments = segment_logs(&partition_dir(dir.path(), "orders", 1));
    assert!(
        orders_segments.len() > 1,
        "segment.bytes=1024 rolled segments"
    );

    broker.shutdown().await;
    let broker = start_on(dir.path(), 3, Config::default()).await;
    let mut nodes = Nodes::connect(&broker).await;

    check_all(&broker, &mut nodes, &expected, "after the restart").await;
    assert_eq!(
        topic_layout(nodes.any()).await,
        layout,
        "topic ids, partition counts, leaders and leader epochs are restored"
    );
    let orders_leader = nodes.leader_of(&broker, "orders", 1);
    for (timestamp, before) in [-1, -2, -3, 40_007, 40_009]
        .into_iter()
        .zip(&offsets_by_time)
    {
        assert_eq!(
            &list_offset(orders_leader, "orders", 1, timestamp).await,
            before,
            "ListOffsets {timestamp} answers as before (time index rebuilt)"
        );
    }
    assert_eq!(
        segment_logs(&partition_dir(dir.path(), "orders", 1)),
        orders_segments,
        "a clean restart keeps the segments as they were"
    );
    let cluster = broker.cluster();
    let orders = cluster.topic("orders").unwrap();
    assert_eq!(orders.config.segment_bytes, 1024);
    assert_eq!(
        orders.config.overrides,
        BTreeMap::from([("segment.bytes".to_owned(), "1024".to_owned())])
    );
    let stamped = cluster.topic("stamped").unwrap();
    assert_eq!(
        stamped.config.message_timestamp_type,
        TimestampType::LogAppendTime
    );
    assert!(cluster.topic("auto").unwrap().config.overrides.is_empty());

    // New produces continue at each partition's end, and topic configs still apply.
    for &(topic, partition) in &partitions {
        let label = format!("{topic}-{partition}");
        let log = expected.entry((topic.to_owned(), partition)).or_default();
        let batch = records(&label, log.len(), 2, 900_000);
        let client = nodes.leader_of(&broker, topic, partition);
        let answer = produce_expecting(client, topic, partition, &batch, log).await;
        assert_eq!(
            answer.log_append_time_ms >= 0,
            topic == "stamped",
            "{topic} keeps its message.timestamp.type"
        );
    }
    check_all(&broker, &mut nodes, &expected, "after producing again").await;
    broker.shutdown().await;
}

/// Sizes of the batches in each segment file of a partition, checking that each file starts
/// at its first batch's offset and that offsets run on without a gap from one file to the next.
fn segment_layout(partition_dir: &std::path::Path) -> Vec<Vec<u64>> {
    let mut next_offset = 0;
    segment_logs(partition_dir)
        .iter()
        .map(|(base, path)| {
            assert_eq!(
                *base,
                next_offset,
                "{} starts where the last ended",
                path.display()
            );
            let batches = stored_batches(path);
            for batch in &batches {
                assert_eq!(
                    batch.header.base_offset,
                    next_offset,
                    "offsets run on in {}",
                    path.display()
                );
                next_offset = batch.header.last_offset() + 1;
            }
            batches.iter().map(|batch| batch.bytes).collect()
        })
        .collect()
}

/// How segments of `segment_bytes` hold batches of these sizes when each rolls only when the
/// next batch would not fit (as one uninterrupted run lays them out).
fn packed(batch_sizes: &[u64], segment_bytes: u64) -> Vec<Vec<u64>> {
    let mut segments: Vec<Vec<u64>> = vec![Vec::new()];
    for &size in batch_sizes {
        let active = segments.last_mut().unwrap();
        if !active.is_empty() && active.iter().sum::<u64>() + size > segment_bytes {
            segments.push(vec![size]);
        } else {
            active.push(size);
        }
    }
    segments
}

/// The broker's wall clock, read from the append time it stamps on a LogAppendTime topic.
async fn broker_now_ms(client: &mut Client) -> i64 {
    create_topic_with(
        client,
        "clock",
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    )
    .await;
    let answer = produce(client, "clock", 0, encode(&records("clock", 0, 1, 0), None)).await;
    assert!(answer.log_append_time_ms > 0);
    answer.log_append_time_ms
}

#[tokio::test]
async fn segments_keep_rolling_by_size_across_restarts() {
    const SEGMENT_BYTES: u64 = 1024;
    let dir = TempDir::new("rolling");
    let partition_dir = partition_dir(dir.path(), "rolling", 0);
    let mut broker = start_on(dir.path(), 1, Config::default()).await;
    let mut client = Client::connect(&broker).await;
    // Record timestamps from the broker's own clock, so `segment.ms` (7 days) never rolls.
    let now_ms = broker_now_ms(&mut client).await;
    create_topic_with(
        &mut client,
        "rolling",
        1,
        &[("segment.bytes", "1024"), ("index.interval.bytes", "100")],
    )
    .await;
    let mut expected = Vec::new();
    for round in 0..4 {
        for index in 0..15 {
            let count = 1 + (round + index) % 3;
            let batch = records(
                "rolling",
                expected.len(),
                count,
                now_ms + expected.len() as i64,
            );
            produce_expecting(&mut client, "rolling", 0, &batch, &mut expected).await;
        }
        let layout = segment_layout(&partition_dir);
        let sizes: Vec<u64> = layout.iter().flatten().copied().collect();
        assert_eq!(
            layout,
            packed(&sizes, SEGMENT_BYTES),
            "round {round}: segments roll exactly when the next batch would pass segment.bytes"
        );
        assert!(
            layout.len() > round,
            "round {round}: {} segments",
            layout.len()
        );
        let read = read_partition(&mut client, "rolling", 0).await;
        assert_eq!(read.records, expected, "round {round}");
        for offset in (0..expected.len() as i64).step_by(7) {
            let batch = batch_holding(&mut client, "rolling", offset).await;
            assert!(
                batch.first().is_some_and(|first| first.offset <= offset)
                    && batch.iter().any(|record| record.offset == offset),
                "round {round}: a fetch at {offset} starts with the batch holding it"
            );
        }
        if round % 2 == 0 {
            broker.shutdown().await;
        } else {
            drop(broker);
        }
        broker = start_on(dir.path(), 1, Config::default()).await;
        client = Client::connect(&broker).await;
    }
    let read = read_partition(&mut client, "rolling", 0).await;
    assert_eq!(read.records, expected);
    broker.shutdown().await;
}

/// `segment.ms` is timed in record time, as in Kafka (an incoming batch's timestamp against the
/// segment's first batch's), so a restart changes nothing. (Timing it by the wall clock since
/// the first append made every restart roll segments whose records carry old timestamps.)
#[tokio::test]
async fn a_restart_does_not_roll_the_active_segment_for_old_record_timestamps() {
    let dir = TempDir::new("old-timestamps");
    let partition_dir = partition_dir(dir.path(), "t", 0);
    let broker = start_on(dir.path(), 1, Config::default()).await;
    let mut client = Client::connect(&broker).await;
    create_topic_with(&mut client, "t", 1, &[]).await;
    let mut expected = Vec::new();
    produce_expecting(
        &mut client,
        "t",
        0,
        &records("t", 0, 3, 1_000),
        &mut expected,
    )
    .await;
    produce_expecting(
        &mut client,
        "t",
        0,
        &records("t", 3, 1, 1_003),
        &mut expected,
    )
    .await;
    assert_eq!(
        segment_logs(&partition_dir).len(),
        1,
        "no roll before the restart"
    );
    broker.shutdown().await;

    let broker = start_on(dir.path(), 1, Config::default()).await;
    let mut client = Client::connect(&broker).await;
    produce_expecting(
        &mut client,
        "t",
        0,
        &records("t", 4, 1, 1_004),
        &mut expected,
    )
    .await;
    assert_eq!(
        segment_logs(&partition_dir).len(),
        1,
        "records 4 ms apart stay in one segment across a restart"
    );
    assert_eq!(read_partition(&mut client, "t", 0).await.records, expected);
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Idempotent producers and producer ids.

#[tokio::test]
async fn an_idempotent_retry_after_a_restart_is_still_a_duplicate() {
    let dir = TempDir::new("idempotent");
    let broker = start_on(dir.path(), 1, Config::default()).await;
    let mut client = Client::connect(&broker).await;
    create_topic_with(&mut client, "t", 2, &[]).await;
    let id = producer_id(&mut client).await;
    let first = records("first", 0, 3, 1_000);
    let second = records("second", 0, 2, 2_000);
    let plain = records("plain", 0, 4, 2_500);
    let third = records("third", 0, 4, 3_000);
    let other_partition = records("other", 0, 1, 4_000);
    let sends = [
        (0, encode(&first, Some((id, 0, 0))), 0),
        (0, encode(&second, Some((id, 0, 3))), 3),
        (0, encode(&plain, None), 5),
        (0, encode(&third, Some((id, 0, 5))), 9),
        (1, encode(&other_partition, Some((id, 0, 0))), 0),
    ];
    for (partition, batch, offset) in &sends {
        let answer = produce(&mut client, "t", *partition, batch.clone()).await;
        assert_eq!((answer.error_code, answer.base_offset), (0, *offset));
    }

    broker.shutdown().await;
    let broker = start_on(dir.path(), 1, Config::default()).await;
    let mut client = Client::connect(&broker).await;

    for (partition, batch, offset) in &sends {
        if batch == &sends[2].1 {
            continue; // not idempotent: a resend would be appended again, as in Kafka
        }
        let retry = produce(&mut client, "t", *partition, batch.clone()).await;
        assert_eq!(
            (retry.error_code, retry.base_offset),
            (0, *offset),
            "a retry after the restart gets its original offset, no error"
        );
    }
    assert_eq!(read_partition(&mut client, "t", 0).await.high_watermark, 13);
    assert_eq!(read_partition(&mut client, "t", 1).await.high_watermark, 1);

    let next = produce(
        &mut client,
        "t",
        0,
        encode(&records("next", 0, 2, 5_000), Some((id, 0, 9))),
    )
    .await;
    assert_eq!(
        (next.error_code, next.base_offset),
        (0, 13),
        "the next sequence is accepted"
    );
    let gap = produce(
        &mut client,
        "t",
        0,
        encode(&records("gap", 0, 1, 6_000), Some((id, 0, 20))),
    )
    .await;
    assert_eq!(
        gap.error_code,
        ResponseError::OutOfOrderSequenceNumber.code()
    );
    let other_next = produce(
        &mut client,
        "t",
        1,
        encode(&records("other", 1, 1, 6_000), Some((id, 0, 1))),
    )
    .await;
    assert_eq!((other_next.error_code, other_next.base_offset), (0, 1));
    let bumped = encode(&records("bumped", 0, 1, 7_000), Some((id, 1, 0)));
    let answer = produce(&mut client, "t", 0, bumped.clone()).await;
    assert_eq!(
        (answer.error_code, answer.base_offset),
        (0, 15),
        "a new epoch starts at 0"
    );
    assert_eq!(read_partition(&mut client, "t", 0).await.high_watermark, 16);

    // An abrupt stop: the handle is dropped without flushing or recording anything.
    drop(broker);
    let broker = start_on(dir.path(), 1, Config::default()).await;
    let mut client = Client::connect(&broker).await;

    let retry = produce(&mut client, "t", 0, bumped).await;
    assert_eq!(
        (retry.error_code, retry.base_offset),
        (0, 15),
        "still a duplicate"
    );
    let stale = produce(
        &mut client,
        "t",
        0,
        encode(&records("stale", 0, 1, 8_000), Some((id, 0, 11))),
    )
    .await;
    assert_eq!(
        stale.error_code,
        ResponseError::InvalidProducerEpoch.code(),
        "the older epoch stays fenced"
    );
    let read = read_partition(&mut client, "t", 0).await;
    assert_eq!(read.high_watermark, 16, "no retry was appended twice");
    let keys: Vec<String> = read
        .records
        .iter()
        .map(|record| String::from_utf8_lossy(record.key.as_deref().unwrap()).into_owned())
        .collect();
    let distinct: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(
        distinct.len(),
        keys.len(),
        "every record is stored once: {keys:?}"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn a_log_append_time_retry_after_a_restart_reports_the_original_time() {
    let dir = TempDir::new("append-time-retry");
    let broker = start_on(dir.path(), 1, Config::default()).await;
    let mut client = Client::connect(&broker).await;
    create_topic_with(
        &mut client,
        "t",
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    )
    .await;
    let id = producer_id(&mut client).await;
    let batch = encode(&records("t", 0, 2, 1), Some((id, 0, 0)));
    let first = produce(&mut client, "t", 0, batch.clone()).await;
    assert_eq!(first.error_code, 0);
    assert!(first.log_append_time_ms > 0);
    broker.shutdown().await;

    let broker = start_on(dir.path(), 1, Config::default()).await;
    let mut client = Client::connect(&broker).await;
    let retry = produce(&mut client, "t", 0, batch).await;
    assert_eq!(
        (
            retry.error_code,
            retry.base_offset,
            retry.log_append_time_ms
        ),
        (0, 0, first.log_append_time_ms)
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn producer_ids_handed_out_after_a_restart_never_repeat_earlier_ones() {
    let dir = TempDir::new("producer-ids");
    let mut seen = BTreeSet::new();
    let mut handed_out = 0;
    // Over a thousand before the first restart: ids are reserved in blocks, and the first
    // block runs out.
    for (round, wanted) in [1_005, 5, 0, 5, 3].into_iter().enumerate() {
        let broker = start_on(dir.path(), 1, Config::default()).await;
        let mut client = Client::connect(&broker).await;
        for _ in 0..wanted {
            let id = producer_id(&mut client).await;
            assert!(id >= 0);
            assert!(
                seen.insert(id),
                "round {round}: producer id {id} was handed out before"
            );
            handed_out += 1;
        }
        if round % 2 == 0 {
            broker.shutdown().await;
        } else {
            drop(broker);
        }
    }
    assert_eq!(seen.len(), handed_out);
}

// ---------------------------------------------------------------------------------------------
// A damaged tail of the last segment.

/// What is done to the last segment file between a clean stop and the restart.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Bytes after the last batch that are not a batch.
    AppendGarbage,
    /// Zeros after the last batch, as a file extended but never written leaves it.
    AppendZeros,
    /// The last batch cut to its first `n` bytes.
    CutLastBatchTo(u64),
    /// The last batch cut to half its length.
    CutLastBatchInHalf,
    /// One byte of the last batch changed, `n` bytes from its start (or from its end, if
    /// negative).
    FlipInLastBatch(i64),
    /// Every offset and time index of the partition overwritten with nonsense.
    GarbleIndexes,
}

impl Damage {
    fn keeps_last_batch(self) -> bool {
        matches!(
            self,
            Damage::AppendGarbage | Damage::AppendZeros | Damage::GarbleIndexes
        )
    }

    fn apply(self, partition_dir: &std::path::Path) {
        let log = last_segment_log(partition_dir);
        let last = *stored_batches(&log)
            .last()
            .expect("the last segment holds a batch");
        match self {
            Damage::AppendGarbage => append_to(
                &log,
                &b"not a batch, just garbage at the end of the file ".repeat(3),
            ),
            Damage::AppendZeros => append_to(&log, &[0u8; 4096]),
            Damage::CutLastBatchTo(bytes) => truncate(&log, last.position + bytes),
            Damage::CutLastBatchInHalf => truncate(&log, last.position + last.bytes / 2),
            Damage::FlipInLastBatch(at) => {
                let at = if at >= 0 {
                    at as u64
                } else {
                    last.bytes - at.unsigned_abs()
                };
                flip_byte(&log, last.position + at);
            }
            Damage::GarbleIndexes => {
                for (_, path) in segment_logs(partition_dir) {
                    for extension in ["index", "timeindex"] {
                        overwrite(&path.with_extension(extension), &[0xee; 96]);
                    }
                }
            }
        }
    }
}

/// Produces idempotent batches across several small segments, stops cleanly, damages the last
/// segment, restarts, and checks that the log ends at the last whole valid batch, that
/// everything before is intact and found through the index, that the producer's state matches
/// what was kept, and that producing continues at the right offset.
async fn recovers_from(damage: Damage) {
    let dir = TempDir::new("damaged-tail");
    let partition_dir = partition_dir(dir.path(), "t", 0);
    let broker = start_on(dir.path(), 1, Config::default()).await;
    let mut client = Client::connect(&broker).await;
    create_topic_with(
        &mut client,
        "t",
        1,
        &[("segment.bytes", "2048"), ("index.interval.bytes", "64")],
    )
    .await;
    let id = producer_id(&mut client).await;
    let mut expected = Vec::new();
    let mut batches = Vec::new();
    let mut sequence = 0;
    for index in 0..40 {
        let batch_records = records(
            "t",
            expected.len(),
            1 + index % 3,
            1_000 + expected.len() as i64,
        );
        let batch = encode(&batch_records, Some((id, 0, sequence)));
        let answer = produce(&mut client, "t", 0, batch.clone()).await;
        assert_eq!(
            (answer.error_code, answer.base_offset),
            (0, expected.len() as i64)
        );
        expected.extend(placed(&batch_records, answer.base_offset, None));
        batches.push((batch, answer.base_offset, batch_records.len()));
        sequence += batch_records.len() as i32;
    }
    broker.shutdown().await;

    assert!(segment_logs(&partition_dir).len() > 2, "several segments");
    let log = last_segment_log(&partition_dir);
    let stored = stored_batches(&log);
    let kept_bytes = if damage.keeps_last_batch() {
        file_len(&log)
    } else {
        stored.last().unwrap().position
    };
    damage.apply(&partition_dir);

    let broker = start_on(dir.path(), 1, Config::default()).await;
    let mut client = Client::connect(&broker).await;
    let (last_batch, last_offset, last_count) = batches.last().cloned().unwrap();
    if !damage.keeps_last_batch() {
        expected.truncate(expected.len() - last_count);
    }
    let read = read_partition(&mut client, "t", 0).await;
    assert_eq!(
        read.high_watermark,
        expected.len() as i64,
        "{damage:?}: the log ends at the last whole valid batch"
    );
    assert_eq!(
        read.records, expected,
        "{damage:?}: earlier records are intact"
    );
    assert_eq!(
        file_len(&log),
        kept_bytes,
        "{damage:?}: the damaged tail was cut from the file"
    );
    for offset in 0..expected.len() as i64 {
        let batch = batch_holding(&mut client, "t", offset).await;
        assert!(
            batch.first().is_some_and(|first| first.offset <= offset)
                && batch.iter().any(|record| record.offset == offset),
            "{damage:?}: a fetch at {offset} starts with the batch holding it, got {:?}",
            batch.iter().map(|record| record.offset).collect::<Vec<_>>()
        );
    }

    // The producer retries its last batch. Kept: a duplicate with its original offset. Cut:
    // its state was rebuilt from the batches kept, so the batch is in sequence and appended.
    let retry = produce(&mut client, "t", 0, last_batch.clone()).await;
    let retried_at = if damage.keeps_last_batch() {
        last_offset
    } else {
        expected.len() as i64
    };
    assert_eq!(
        (retry.error_code, retry.base_offset),
        (0, retried_at),
        "{damage:?}: the retried last batch"
    );
    if !damage.keeps_last_batch() {
        let records_again = records("t", last_offset as usize, last_count, 1_000 + last_offset);
        expected.extend(placed(&records_again, retried_at, None));
    }
    let next_records = records("next", 0, 2, 99_000);
    let next = produce(
        &mut client,
        "t",
        0,
        encode(&next_records, Some((id, 0, sequence))),
    )
    .await;
    assert_eq!(
        (next.error_code, next.base_offset),
        (0, expected.len() as i64),
        "{damage:?}: producing continues at the log end"
    );
    expected.extend(placed(&next_records, next.base_offset, None));
    let plain_records = records("plain", 0, 1, 99_500);
    produce_expecting(&mut client, "t", 0, &plain_records, &mut expected).await;
    assert_eq!(
        read_partition(&mut client, "t", 0).await.records,
        expected,
        "{damage:?}"
    );
    broker.shutdown().await;

    // And the repaired log survives another restart as it is.
    let broker = start_on(dir.path(), 1, Config::default()).await;
    let mut client = Client::connect(&broker).await;
    assert_eq!(
        read_partition(&mut client, "t", 0).await.records,
        expected,
        "{damage:?}"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn garbage_after_the_last_batch_is_cut_off() {
    recovers_from(Damage::AppendGarbage).await;
}

#[tokio::test]
async fn zeros_after_the_last_batch_are_cut_off() {
    recovers_from(Damage::AppendZeros).await;
}

#[tokio::test]
async fn a_last_batch_cut_in_half_is_removed() {
    recovers_from(Damage::CutLastBatchInHalf).await;
}

#[tokio::test]
async fn a_last_batch_cut_inside_its_header_is_removed() {
    recovers_from(Damage::CutLastBatchTo(30)).await;
    recovers_from(Damage::CutLastBatchTo(5)).await;
}

#[tokio::test]
async fn a_last_batch_with_a_flipped_byte_is_removed() {
    // The length field, the magic byte, the CRC, the attributes, the record count, the middle
    // of the records and the last byte.
    for at in [11, 16, 18, 22, 60, 80, -1] {
        recovers_from(Damage::FlipInLastBatch(at)).await;
    }
}

#[tokio::test]
async fn garbled_indexes_are_rebuilt_from_the_batches() {
    recovers_from(Damage::GarbleIndexes).await;
}

#[tokio::test]
async fn a_last_segment_holding_only_a_torn_batch_is_emptied_and_written_again() {
    let dir = TempDir::new("torn-only-batch");
    let partition_dir = partition_dir(dir.path(), "t", 0);
    let broker = start_on(dir.path(), 1, Config::default()).await;
    let mut client = Client::connect(&broker).await;
    create_topic_with(&mut client, "t", 1, &[("segment.bytes", "512")]).await;
    let mut expected = Vec::new();
    // Produce until a batch has just started a new segment.
    let mut segments = 1;
    while segments == 1 || stored_batches(&last_segment_log(&partition_dir)).len() > 1 {
        let batch = records("t", expected.len(), 3, 1_000 + expected.len() as i64);
        produce_expecting(&mut client, "t", 0, &batch, &mut expected).await;
        segments = segment_logs(&partition_dir).len();
        assert!(segments < 10, "segment.bytes=512 rolls");
    }
    broker.shutdown().await;
    let (last_base, last_log) = segment_logs(&partition_dir).pop().unwrap();
    assert_eq!(stored_batches(&last_log).len(), 1);
    truncate(&last_log, 40);
    expected.truncate(last_base as usize);

    let broker = start_on(dir.path(), 1, Config::default()).await;
    let mut client = Client::connect(&broker).await;
    let read = read_partition(&mut client, "t", 0).await;
    assert_eq!(read.high_watermark, last_base);
    assert_eq!(read.records, expected);
    assert_eq!(file_len(&last_log), 0, "the torn batch was cut");
    let batch = records("again", 0, 2, 5_000);
    produce_expecting(&mut client, "t", 0, &batch, &mut expected).await;
    assert_eq!(read_partition(&mut client, "t", 0).await.records, expected);
    assert_eq!(
        segment_logs(&partition_dir).last().unwrap().0,
        last_base,
        "the emptied segment is written again"
    );
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Topic administration.

fn no_auto_create() -> Config {
    Config {
        auto_create_topics: false,
        ..Config::default()
    }
}

async fn delete_topic(client: &mut Client, name: &str) {
    let response = client
        .call(
            4,
            DeleteTopicsRequest::default()
                .with_topic_names(vec![topic_name(name)])
                .with_timeout_ms(5_000),
        )
        .await;
    assert_eq!(response.responses[0].error_code, 0, "deleting {name}");
}

async fn grow_topic(client: &mut Client, name: &str, count: i32) {
    let request = CreatePartitionsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![
            CreatePartitionsTopic::default()
                .with_name(topic_name(name))
                .with_count(count)
                .with_assignments(None),
        ]);
    let response = client.call(1, request).await;
    assert_eq!(
        response.results[0].error_code, 0,
        "growing {name} to {count}"
    );
}

#[tokio::test]
async fn deleted_topics_stay_deleted_and_new_partitions_stay_after_a_restart() {
    let dir = TempDir::new("admin");
    let broker = start_on(dir.path(), 1, no_auto_create()).await;
    let mut client = Client::connect(&broker).await;
    create_topic_with(&mut client, "doomed", 2, &[]).await;
    create_topic_with(&mut client, "growing", 1, &[]).await;
    let mut expected = Expected::new();
    for partition in 0..2 {
        let log = expected.entry(("doomed".into(), partition)).or_default();
        produce_expecting(
            &mut client,
            "doomed",
            partition,
            &records("doomed", 0, 3, 1),
            log,
        )
        .await;
    }
    grow_topic(&mut client, "growing", 3).await;
    for partition in 0..3 {
        let log = expected.entry(("growing".into(), partition)).or_default();
        produce_expecting(
            &mut client,
            "growing",
            partition,
            &records("growing", 0, 2, 1),
            log,
        )
        .await;
    }
    let doomed_id = broker.cluster().topic("doomed").unwrap().id;
    delete_topic(&mut client, "doomed").await;
    expected.retain(|(topic, _), _| topic != "doomed");
    let layout = topic_layout(&mut client).await;
    assert_eq!(layout.keys().collect::<Vec<_>>(), vec!["growing"]);

    broker.shutdown().await;
    let broker = start_on(dir.path(), 1, no_auto_create()).await;
    let mut client = Client::connect(&broker).await;

    assert_eq!(
        topic_layout(&mut client).await,
        layout,
        "only the grown topic, with 3 partitions"
    );
    let asked = metadata(&mut client, Some(&["doomed"])).await;
    assert_eq!(
        asked.topics[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    for partition in 0..2 {
        assert!(!partition_dir(dir.path(), "doomed", partition).exists());
    }
    let mut nodes = Nodes::connect(&broker).await;
    check_all(&broker, &mut nodes, &expected, "after the restart").await;

    // A topic created again under the deleted name starts empty, with a new id.
    create_topic_with(&mut client, "doomed", 2, &[]).await;
    assert_ne!(broker.cluster().topic("doomed").unwrap().id, doomed_id);
    for partition in 0..2 {
        assert_eq!(
            read_partition(&mut client, "doomed", partition)
                .await
                .high_watermark,
            0
        );
    }

    // Deleting and growing are each recorded before they are answered: an abrupt stop right
    // after either keeps it.
    delete_topic(&mut client, "doomed").await;
    drop(broker);
    let broker = start_on(dir.path(), 1, no_auto_create()).await;
    let mut client = Client::connect(&broker).await;
    let layout = topic_layout(&mut client).await;
    assert_eq!(layout.keys().collect::<Vec<_>>(), vec!["growing"]);
    grow_topic(&mut client, "growing", 4).await;
    drop(broker);
    let broker = start_on(dir.path(), 1, no_auto_create()).await;
    let mut client = Client::connect(&broker).await;
    let layout = topic_layout(&mut client).await;
    assert_eq!(layout.keys().collect::<Vec<_>>(), vec!["growing"]);
    assert_eq!(layout["growing"].1.len(), 4);
    let log = expected.entry(("growing".into(), 3)).or_default();
    produce_expecting(&mut client, "growing", 3, &records("growing", 0, 1, 1), log).await;
    let mut nodes = Nodes::connect(&broker).await;
    check_all(&broker, &mut nodes, &expected, "after abrupt stops").await;
    broker.shutdown().await;
}

#[tokio::test]
async fn partition_directories_no_topic_owns_are_removed_at_start() {
    let dir = TempDir::new("orphans");
    let broker = start_on(dir.path(), 1, no_auto_create()).await;
    let mut client = Client::connect(&broker).await;
    create_topic_with(&mut client, "kept", 1, &[]).await;
    let mut expected = Vec::new();
    produce_expecting(
        &mut client,
        "kept",
        0,
        &records("kept", 0, 3, 1),
        &mut expected,
    )
    .await;
    broker.shutdown().await;

    // As a crash between recording a deletion (or before recording a creation) and the files
    // leaves them: a whole topic's directory, and a partition beyond a topic's count.
    let kept = partition_dir(dir.path(), "kept", 0);
    for orphan in ["ghost-0", "kept-1"] {
        let orphan = dir.path().join(orphan);
        std::fs::create_dir_all(&orphan).unwrap();
        for (_, log) in segment_logs(&kept) {
            std::fs::copy(&log, orphan.join(log.file_name().unwrap())).unwrap();
        }
    }

    let broker = start_on(dir.path(), 1, no_auto_create()).await;
    let mut client = Client::connect(&broker).await;
    assert!(!dir.path().join("ghost-0").exists());
    assert!(!dir.path().join("kept-1").exists());
    assert_eq!(
        read_partition(&mut client, "kept", 0).await.records,
        expected
    );
    let layout = topic_layout(&mut client).await;
    assert_eq!(layout.keys().collect::<Vec<_>>(), vec!["kept"]);
    assert_eq!(layout["kept"].1.len(), 1);
    create_topic_with(&mut client, "ghost", 1, &[]).await;
    grow_topic(&mut client, "kept", 2).await;
    assert_eq!(
        read_partition(&mut client, "ghost", 0).await.high_watermark,
        0
    );
    assert_eq!(
        read_partition(&mut client, "kept", 1).await.high_watermark,
        0
    );
    broker.shutdown().await;
}
