//! The consumer against a cluster: an embedded Tidepool, or the cluster `TIDEPOOL_TEST_BOOTSTRAP`
//! names (the test command also runs this file against Apache Kafka). Records are written with
//! bare ProduceRequests, so these tests do not lean on the producer.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use support::produce::{produce_batch, produce_raw};
use support::topics::create_topic;
use support::{TestCluster, unique_topic};
use tidepool_client::{
    Admin, AssignorKind, BoxFuture, Client, Compression, Consumer, ConsumerConfig, ConsumerRecord,
    Error, Header, KafkaCode, OffsetAndMetadata, OffsetReset, RebalanceListener, TopicPartition,
};
use tidepool_io::{Clock, Env, SystemClock};
use tidepool_protocol::records::BatchBuilder;
use tokio::task::JoinHandle;

/// How long anything in these tests may take before it counts as never.
const WITHIN: Duration = Duration::from_secs(30);

/// Time since it was started, read through the Clock seam as everywhere else.
struct Stopwatch(SystemClock);

impl Stopwatch {
    fn start() -> Stopwatch {
        Stopwatch(SystemClock::new())
    }

    fn elapsed(&self) -> Duration {
        self.0.now()
    }
}

fn group_config(group: &str) -> ConsumerConfig {
    ConsumerConfig::new(group)
        .session_timeout(Duration::from_secs(10))
        .heartbeat_interval(Duration::from_millis(500))
        .rebalance_timeout(Duration::from_secs(20))
        .auto_offset_reset(OffsetReset::Earliest)
        .fetch_max_wait(Duration::from_millis(100))
}

fn text(value: impl Into<String>) -> Option<Bytes> {
    Some(Bytes::from(value.into()))
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

/// Writes `count` records `<topic>-<partition>-<i>` to a partition.
async fn produce_values(client: &Client, topic: &str, partition: i32, count: usize) {
    let records = (0..count)
        .map(|i| {
            (
                text(format!("k{i}")),
                text(format!("{topic}-{partition}-{i}")),
            )
        })
        .collect();
    produce_raw(client, topic, partition, records).await;
}

async fn topic_with(
    client: &Client,
    prefix: &str,
    partitions: i32,
    per_partition: usize,
) -> String {
    let topic = unique_topic(prefix);
    create_topic(client, &topic, partitions).await;
    if per_partition > 0 {
        for partition in 0..partitions {
            produce_values(client, &topic, partition, per_partition).await;
        }
    }
    topic
}

/// Polls until `count` records arrived.
async fn consume(consumer: &Consumer, count: usize) -> Vec<ConsumerRecord> {
    let clock = Stopwatch::start();
    let mut records = Vec::new();
    while records.len() < count {
        assert!(
            clock.elapsed() < WITHIN,
            "only {} of {count} records arrived",
            records.len()
        );
        records.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
    }
    records
}

/// Polls for `period` and returns whatever arrived.
async fn consume_for(consumer: &Consumer, period: Duration) -> Vec<ConsumerRecord> {
    let clock = Stopwatch::start();
    let mut records = Vec::new();
    while clock.elapsed() < period {
        records.extend(consumer.poll(Duration::from_millis(100)).await.unwrap());
    }
    records
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let clock = Stopwatch::start();
    while !check() {
        assert!(clock.elapsed() < WITHIN, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn offsets_of(records: &[ConsumerRecord], partition: i32) -> Vec<i64> {
    records
        .iter()
        .filter(|r| r.partition == partition)
        .map(|r| r.offset)
        .collect()
}

fn partitions_of(consumer: &Consumer) -> BTreeSet<i32> {
    consumer
        .assignment()
        .iter()
        .map(|tp| tp.partition)
        .collect()
}

/// A consumer polling in a task of its own, as a group member in another process would.
struct Member {
    consumer: Consumer,
    records: Arc<Mutex<Vec<ConsumerRecord>>>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Member {
    async fn join(client: &Client, config: ConsumerConfig, topic: &str) -> Member {
        let consumer = Consumer::new(client.clone(), config).await.unwrap();
        consumer.subscribe(&[topic]).await.unwrap();
        Member::run(consumer)
    }

    fn run(consumer: Consumer) -> Member {
        let records = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (consumer, records, stop) = (consumer.clone(), records.clone(), stop.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    match consumer.poll(Duration::from_millis(100)).await {
                        Ok(batch) => records.lock().unwrap().extend(batch),
                        Err(error) => {
                            eprintln!("poll failed (retrying): {error}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
        });
        Member {
            consumer,
            records,
            stop,
            task,
        }
    }

    fn received(&self) -> Vec<ConsumerRecord> {
        self.records.lock().unwrap().clone()
    }

    /// Stops polling (the consumer stays in the group until closed or timed out).
    async fn stop(self) -> (Consumer, Vec<ConsumerRecord>) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        let records = self.records.lock().unwrap().clone();
        (self.consumer, records)
    }
}

/// All members in one generation, holding every partition exactly once between them.
fn settled(members: &[&Member], partitions: usize) -> bool {
    let generations: BTreeSet<Option<i32>> = members
        .iter()
        .map(|m| m.consumer.generation().map(|(id, _)| id))
        .collect();
    if generations.len() != 1 || generations.contains(&None) {
        return false;
    }
    let mut seen = BTreeSet::new();
    members
        .iter()
        .flat_map(|m| m.consumer.assignment())
        .all(|tp| seen.insert(tp))
        && seen.len() == partitions
}

#[tokio::test]
async fn assigned_partitions_are_read_in_order_with_keys_values_headers_and_timestamps() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = topic_with(&client, "consumer-read", 2, 0).await;
    let base = client.wall_ms() - 60_000;
    let mut plain = BatchBuilder::new();
    plain
        .append(
            base,
            text("order-1"),
            text("placed"),
            vec![
                Header {
                    key: "trace".into(),
                    value: text("abc"),
                },
                Header {
                    key: "trace".into(),
                    value: None,
                },
            ],
        )
        .append(base + 1, None, text("no key"), vec![])
        .append(base + 2, text("tombstone"), None, vec![]);
    produce_batch(&client, &topic, 0, plain.build().unwrap()).await;
    let mut compressed = BatchBuilder::new();
    compressed.compression(Compression::Gzip);
    for i in 0..50 {
        compressed.append(
            base + 10 + i,
            text(format!("k{i}")),
            text(format!("v{i}")),
            vec![],
        );
    }
    produce_batch(&client, &topic, 1, compressed.build().unwrap()).await;

    let consumer = Consumer::new(
        client.clone(),
        ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest),
    )
    .await
    .unwrap();
    consumer
        .assign(vec![tp(&topic, 0), tp(&topic, 1)])
        .await
        .unwrap();
    let records = consume(&consumer, 53).await;

    let first: Vec<&ConsumerRecord> = records.iter().filter(|r| r.partition == 0).collect();
    assert_eq!(first.len(), 3);
    assert_eq!(first[0].key, text("order-1"));
    assert_eq!(first[0].value, text("placed"));
    assert_eq!(first[0].timestamp, base);
    assert_eq!(
        first[0].headers,
        vec![
            Header {
                key: "trace".into(),
                value: text("abc")
            },
            Header {
                key: "trace".into(),
                value: None
            }
        ]
    );
    assert_eq!((first[1].key.clone(), first[1].timestamp), (None, base + 1));
    assert_eq!((first[2].value.clone(), first[2].offset), (None, 2));
    assert!(first.iter().all(|r| r.topic == topic));

    assert_eq!(offsets_of(&records, 1), (0..50).collect::<Vec<_>>());
    let last = records.iter().rfind(|r| r.partition == 1).unwrap();
    assert_eq!(
        (last.key.clone(), last.value.clone()),
        (text("k49"), text("v49"))
    );
    assert_eq!(last.timestamp, base + 59);
    assert_eq!(consumer.position(&tp(&topic, 0)), Some(3));
    assert_eq!(consumer.position(&tp(&topic, 1)), Some(50));
    assert!(
        consume_for(&consumer, Duration::from_millis(300))
            .await
            .is_empty()
    );
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn a_poll_returns_at_most_max_poll_records() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = topic_with(&client, "consumer-max-poll", 1, 30).await;
    let consumer = Consumer::new(
        client.clone(),
        ConsumerConfig::default()
            .auto_offset_reset(OffsetReset::Earliest)
            .max_poll_records(7),
    )
    .await
    .unwrap();
    consumer.assign(vec![tp(&topic, 0)]).await.unwrap();
    let mut sizes = Vec::new();
    let mut offsets = Vec::new();
    while offsets.len() < 30 {
        let records = consumer.poll(WITHIN).await.unwrap();
        sizes.push(records.len());
        offsets.extend(records.iter().map(|r| r.offset));
    }
    assert!(sizes.iter().all(|size| *size <= 7), "{sizes:?}");
    assert_eq!(offsets, (0..30).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_lone_subscriber_gets_every_partition() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = topic_with(&client, "consumer-lone", 3, 4).await;
    let consumer = Consumer::new(client.clone(), group_config(&unique_topic("lone")))
        .await
        .unwrap();
    consumer.subscribe(&[&topic]).await.unwrap();
    let records = consume(&consumer, 12).await;
    assert_eq!(partitions_of(&consumer), BTreeSet::from([0, 1, 2]));
    for partition in 0..3 {
        assert_eq!(offsets_of(&records, partition), vec![0, 1, 2, 3]);
    }
    let (generation, member) = consumer.generation().unwrap();
    assert!(generation >= 1 && !member.is_empty());
    consumer.close().await.unwrap();
}

/// `members` consumers share a six-partition topic: once they settle, records written are
/// each consumed exactly once, by the member that owns the partition. Returns the split.
async fn members_split_six_partitions(kind: AssignorKind, members: usize) -> Vec<BTreeSet<i32>> {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = topic_with(&client, "consumer-split", 6, 0).await;
    let group = unique_topic("split");
    let mut running = Vec::new();
    for _ in 0..members {
        let config = group_config(&group)
            .assignors(vec![kind])
            .auto_commit(false);
        running.push(Member::join(&client, config, &topic).await);
    }
    let all: Vec<&Member> = running.iter().collect();
    eventually("the members settle on a split", || settled(&all, 6)).await;
    for partition in 0..6 {
        produce_values(&client, &topic, partition, 10).await;
    }
    eventually("every record is consumed", || {
        running.iter().map(|m| m.received().len()).sum::<usize>() >= 60
    })
    .await;
    // A little longer: a duplicate would show up now.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Every member stops before any leaves: a leaving member would hand its partitions on.
    let mut stopped = Vec::new();
    for member in running {
        let owned = partitions_of(&member.consumer);
        stopped.push((owned, member.stop().await));
    }
    let mut splits = Vec::new();
    let mut seen = BTreeSet::new();
    for (owned, (consumer, records)) in stopped {
        for record in &records {
            assert!(
                owned.contains(&record.partition),
                "read a partition it does not own: {record:?}"
            );
            assert!(
                seen.insert((record.partition, record.offset)),
                "consumed twice: {record:?}"
            );
        }
        consumer.close().await.unwrap();
        splits.push(owned);
    }
    assert_eq!(seen.len(), 60, "none missed");
    splits.sort();
    splits
}

fn sets(list: &[&[i32]]) -> Vec<BTreeSet<i32>> {
    list.iter().map(|s| s.iter().copied().collect()).collect()
}

#[tokio::test]
async fn two_range_members_split_the_partitions_into_contiguous_halves() {
    let splits = members_split_six_partitions(AssignorKind::Range, 2).await;
    assert_eq!(splits, sets(&[&[0, 1, 2], &[3, 4, 5]]));
}

#[tokio::test]
async fn three_range_members_take_two_contiguous_partitions_each() {
    let splits = members_split_six_partitions(AssignorKind::Range, 3).await;
    assert_eq!(splits, sets(&[&[0, 1], &[2, 3], &[4, 5]]));
}

#[tokio::test]
async fn two_round_robin_members_alternate_partitions() {
    let splits = members_split_six_partitions(AssignorKind::RoundRobin, 2).await;
    assert_eq!(splits, sets(&[&[0, 2, 4], &[1, 3, 5]]));
}

#[tokio::test]
async fn three_round_robin_members_deal_partitions_in_turn() {
    let splits = members_split_six_partitions(AssignorKind::RoundRobin, 3).await;
    assert_eq!(splits, sets(&[&[0, 3], &[1, 4], &[2, 5]]));
}

#[tokio::test]
async fn two_cooperative_sticky_members_split_the_partitions_evenly() {
    let splits = members_split_six_partitions(AssignorKind::CooperativeSticky, 2).await;
    assert!(splits.iter().all(|s| s.len() == 3), "{splits:?}");
}

#[tokio::test]
async fn three_cooperative_sticky_members_split_the_partitions_evenly() {
    let splits = members_split_six_partitions(AssignorKind::CooperativeSticky, 3).await;
    assert!(splits.iter().all(|s| s.len() == 2), "{splits:?}");
}

#[tokio::test]
async fn commit_sync_saves_the_next_offset_and_a_new_member_resumes_there() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = topic_with(&client, "consumer-commit", 1, 20).await;
    let group = unique_topic("commit");
    let config = group_config(&group).auto_commit(false).max_poll_records(1);
    let first = Consumer::new(client.clone(), config.clone()).await.unwrap();
    first.subscribe(&[&topic]).await.unwrap();
    let partition = tp(&topic, 0);
    assert_eq!(
        first
            .committed(std::slice::from_ref(&partition))
            .await
            .unwrap()[&partition],
        None
    );

    let records = consume(&first, 10).await;
    assert_eq!(records.last().unwrap().offset, 9);
    first.commit_sync(None).await.unwrap();
    let committed = first
        .committed(std::slice::from_ref(&partition))
        .await
        .unwrap();
    assert_eq!(
        committed[&partition].as_ref().unwrap().offset,
        10,
        "the next offset to read"
    );

    let mut rewind = OffsetAndMetadata::new(7);
    rewind.metadata = Some("replay from here".into());
    first
        .commit_sync(Some(BTreeMap::from([(partition.clone(), rewind)])))
        .await
        .unwrap();
    let committed = first
        .committed(std::slice::from_ref(&partition))
        .await
        .unwrap();
    let committed = committed[&partition].clone().unwrap();
    assert_eq!(committed.offset, 7);
    assert_eq!(committed.metadata.as_deref(), Some("replay from here"));
    first.close().await.unwrap();

    let second = Consumer::new(client.clone(), config).await.unwrap();
    second.subscribe(&[&topic]).await.unwrap();
    let resumed = consume(&second, 1).await;
    assert_eq!(resumed[0].offset, 7);
    second.close().await.unwrap();
}

#[tokio::test]
async fn auto_commit_commits_the_position_on_close() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = topic_with(&client, "consumer-autocommit-close", 1, 20).await;
    let group = unique_topic("autocommit-close");
    let config = group_config(&group)
        .auto_commit_interval(Duration::from_secs(3600))
        .max_poll_records(1);
    let consumer = Consumer::new(client.clone(), config.clone()).await.unwrap();
    consumer.subscribe(&[&topic]).await.unwrap();
    consume(&consumer, 10).await;
    consumer.close().await.unwrap();

    let after = Consumer::new(client.clone(), config).await.unwrap();
    let partition = tp(&topic, 0);
    let committed = after
        .committed(std::slice::from_ref(&partition))
        .await
        .unwrap();
    assert_eq!(committed[&partition].as_ref().map(|c| c.offset), Some(10));
}

#[tokio::test]
async fn auto_commit_commits_while_the_consumer_keeps_polling() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = topic_with(&client, "consumer-autocommit", 1, 20).await;
    let config =
        group_config(&unique_topic("autocommit")).auto_commit_interval(Duration::from_millis(200));
    let consumer = Consumer::new(client.clone(), config).await.unwrap();
    consumer.subscribe(&[&topic]).await.unwrap();
    consume(&consumer, 20).await;
    let partition = tp(&topic, 0);
    let clock = Stopwatch::start();
    loop {
        consumer.poll(Duration::from_millis(100)).await.unwrap();
        let committed = consumer
            .committed(std::slice::from_ref(&partition))
            .await
            .unwrap();
        if committed[&partition].as_ref().map(|c| c.offset) == Some(20) {
            break;
        }
        assert!(clock.elapsed() < WITHIN, "never auto-committed 20");
    }
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn seek_moves_the_next_record_and_seek_to_beginning_and_end_move_to_the_log_edges() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = topic_with(&client, "consumer-seek", 1, 10).await;
    let partition = tp(&topic, 0);
    let consumer = Consumer::new(
        client.clone(),
        ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest),
    )
    .await
    .unwrap();
    consumer.assign(vec![partition.clone()]).await.unwrap();
    consume(&consumer, 10).await;

    consumer.seek(&partition, 3).await.unwrap();
    assert_eq!(consumer.position(&partition), Some(3));
    assert_eq!(
        offsets_of(&consume(&consumer, 7).await, 0),
        (3..10).collect::<Vec<_>>()
    );

    consumer
        .seek_to_end(std::slice::from_ref(&partition))
        .await
        .unwrap();
    assert_eq!(consumer.position(&partition), Some(10));
    assert!(
        consume_for(&consumer, Duration::from_millis(300))
            .await
            .is_empty()
    );
    produce_values(&client, &topic, 0, 1).await;
    assert_eq!(consume(&consumer, 1).await[0].offset, 10);

    consumer.seek_to_beginning(&[]).await.unwrap();
    assert_eq!(consumer.position(&partition), Some(0));
    assert_eq!(consume(&consumer, 1).await[0].offset, 0);

    let elsewhere = tp(&topic, 5);
    assert!(matches!(
        consumer.seek(&elsewhere, 0).await,
        Err(Error::Invalid(_))
    ));
}

#[tokio::test]
async fn a_paused_partition_returns_nothing_until_resumed() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = topic_with(&client, "consumer-pause", 2, 5).await;
    let consumer = Consumer::new(
        client.clone(),
        ConsumerConfig::default()
            .auto_offset_reset(OffsetReset::Earliest)
            .max_poll_records(1),
    )
    .await
    .unwrap();
    let (paused, running) = (tp(&topic, 0), tp(&topic, 1));
    consumer
        .assign(vec![paused.clone(), running.clone()])
        .await
        .unwrap();
    // Read until the first partition's records are buffered and one was returned.
    let mut before = Vec::new();
    while offsets_of(&before, 0).is_empty() {
        before.extend(consume(&consumer, 1).await);
    }
    consumer.pause(std::slice::from_ref(&paused));
    assert_eq!(consumer.paused(), vec![paused.clone()]);

    let during = consume_for(&consumer, Duration::from_secs(1)).await;
    assert!(
        offsets_of(&during, 0).is_empty(),
        "records of a paused partition: {during:?}"
    );
    let mut second = offsets_of(&before, 1);
    second.extend(offsets_of(&during, 1));
    assert_eq!(second, vec![0, 1, 2, 3, 4], "the other partition goes on");

    consumer.resume(std::slice::from_ref(&paused));
    assert!(consumer.paused().is_empty());
    let resumed_count = 5 - offsets_of(&before, 0).len();
    let after = consume(&consumer, resumed_count).await;
    let mut first = offsets_of(&before, 0);
    first.extend(offsets_of(&after, 0));
    assert_eq!(
        first,
        vec![0, 1, 2, 3, 4],
        "resumed where it paused, nothing twice"
    );
}

#[tokio::test]
async fn without_a_reset_policy_a_partition_with_no_commit_is_an_error() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = topic_with(&client, "consumer-no-reset", 1, 5).await;
    let partition = tp(&topic, 0);
    let consumer = Consumer::new(
        client.clone(),
        group_config(&unique_topic("no-reset"))
            .auto_commit(false)
            .auto_offset_reset(OffsetReset::None),
    )
    .await
    .unwrap();
    consumer.assign(vec![partition.clone()]).await.unwrap();
    let error = consumer.poll(Duration::from_secs(2)).await.unwrap_err();
    assert_eq!(
        error.code(),
        Some(KafkaCode::OFFSET_OUT_OF_RANGE),
        "{error}"
    );
    assert_eq!(consumer.position(&partition), None);

    consumer
        .commit_sync(Some(BTreeMap::from([(
            partition.clone(),
            OffsetAndMetadata::new(2),
        )])))
        .await
        .unwrap();
    assert_eq!(
        consume(&consumer, 3).await[0].offset,
        2,
        "a commit gives it a start"
    );
}

#[tokio::test]
async fn closing_leaves_the_group_so_the_other_member_gets_everything_at_once() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = topic_with(&client, "consumer-leave", 4, 0).await;
    let group = unique_topic("leave");
    // Without a LeaveGroup the coordinator would wait out this session before rebalancing.
    let config = group_config(&group)
        .session_timeout(Duration::from_secs(60))
        .assignors(vec![AssignorKind::Range]);
    let staying = Member::join(&client, config.clone(), &topic).await;
    let leaving = Member::join(&client, config, &topic).await;
    eventually("both members share the topic", || {
        settled(&[&staying, &leaving], 4)
    })
    .await;
    let before = staying.consumer.generation().unwrap().0;
    assert_eq!(partitions_of(&staying.consumer).len(), 2);

    let (leaver, _) = leaving.stop().await;
    let closed_at = Stopwatch::start();
    leaver.close().await.unwrap();
    eventually("the remaining member owns every partition", || {
        partitions_of(&staying.consumer).len() == 4
    })
    .await;
    assert!(
        closed_at.elapsed() < Duration::from_secs(20),
        "{:?}",
        closed_at.elapsed()
    );
    assert!(staying.consumer.generation().unwrap().0 > before);
    assert!(matches!(
        leaver.poll(Duration::ZERO).await,
        Err(Error::Closed)
    ));
    let (consumer, _) = staying.stop().await;
    consumer.close().await.unwrap();
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
    Lost(Vec<i32>),
    /// What `commit_sync` inside `on_revoked` answered.
    CommittedOnRevoke(bool),
}

/// Remembers every callback; commits what it consumed when partitions are revoked.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    fn push(&self, event: Event) {
        self.events.lock().unwrap().push(event);
    }
}

fn numbers(partitions: &[TopicPartition]) -> Vec<i32> {
    partitions.iter().map(|tp| tp.partition).collect()
}

impl RebalanceListener for Recorder {
    fn on_assigned<'a>(
        &'a self,
        _: &'a Consumer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move { self.push(Event::Assigned(numbers(partitions))) })
    }

    fn on_revoked<'a>(
        &'a self,
        consumer: &'a Consumer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.push(Event::Revoked(numbers(partitions)));
            let committed = consumer.commit_sync(None).await;
            self.push(Event::CommittedOnRevoke(committed.is_ok()));
        })
    }

    fn on_lost<'a>(
        &'a self,
        _: &'a Consumer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move { self.push(Event::Lost(numbers(partitions))) })
    }
}

#[tokio::test]
async fn eager_members_hear_every_revocation_and_can_commit_in_it() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = topic_with(&client, "consumer-listener", 4, 5).await;
    let group = unique_topic("listener");
    let config = group_config(&group)
        .assignors(vec![AssignorKind::Range])
        .auto_commit(false);
    let first = Consumer::new(client.clone(), config.clone()).await.unwrap();
    let heard = Arc::new(Recorder::default());
    first.set_rebalance_listener(heard.clone());
    first.subscribe(&[&topic]).await.unwrap();
    consume(&first, 20).await;
    assert_eq!(heard.events(), vec![Event::Assigned(vec![0, 1, 2, 3])]);

    let first = Member::run(first);
    let second = Member::join(&client, config, &topic).await;
    eventually("the second member gets half", || {
        settled(&[&first, &second], 4)
    })
    .await;
    eventually("the first member hears of its new half", || {
        heard.events().len() == 4
    })
    .await;
    let half: Vec<i32> = partitions_of(&first.consumer).into_iter().collect();
    assert_eq!(half.len(), 2);
    assert_eq!(
        heard.events(),
        vec![
            Event::Assigned(vec![0, 1, 2, 3]),
            Event::Revoked(vec![0, 1, 2, 3]),
            Event::CommittedOnRevoke(true),
            Event::Assigned(half),
        ]
    );
    // What the first member committed while its partitions were revoked is where the
    // second starts: it reads nothing again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(second.received().is_empty(), "{:?}", second.received());
    let partitions: Vec<TopicPartition> = (0..4).map(|p| tp(&topic, p)).collect();
    let committed = second.consumer.committed(&partitions).await.unwrap();
    assert!(
        committed
            .values()
            .all(|c| c.as_ref().map(|c| c.offset) == Some(5))
    );
    for member in [first, second] {
        let (consumer, _) = member.stop().await;
        consumer.close().await.unwrap();
    }
}

#[tokio::test]
async fn cooperative_members_revoke_only_the_partitions_that_move() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = topic_with(&client, "consumer-cooperative", 4, 0).await;
    let group = unique_topic("cooperative");
    let config = group_config(&group).assignors(vec![AssignorKind::CooperativeSticky]);
    let first = Consumer::new(client.clone(), config.clone()).await.unwrap();
    let heard = Arc::new(Recorder::default());
    first.set_rebalance_listener(heard.clone());
    first.subscribe(&[&topic]).await.unwrap();
    let first = Member::run(first);
    eventually("the first member owns everything", || {
        partitions_of(&first.consumer).len() == 4
    })
    .await;

    let second = Member::join(&client, config, &topic).await;
    // Revoked partitions stay assigned while on_revoked runs (so it can commit them): wait
    // for the follow-up rebalance to hand them over.
    eventually("the members share the topic", || {
        settled(&[&first, &second], 4) && partitions_of(&second.consumer).len() == 2
    })
    .await;
    let kept = partitions_of(&first.consumer);
    let moved = partitions_of(&second.consumer);
    assert_eq!(kept.len(), 2);
    let events = heard.events();
    let revoked: Vec<i32> = events
        .iter()
        .filter_map(|e| match e {
            Event::Revoked(p) => Some(p.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(
        revoked,
        moved.iter().copied().collect::<Vec<_>>(),
        "{events:?}"
    );
    assert_eq!(events[0], Event::Assigned(vec![0, 1, 2, 3]));
    assert!(
        events[1..]
            .iter()
            .all(|e| !matches!(e, Event::Assigned(p) if !p.is_empty())),
        "nothing new for the first member: {events:?}"
    );
    for member in [first, second] {
        let (consumer, _) = member.stop().await;
        consumer.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_static_member_that_restarts_keeps_its_partitions_without_a_rebalance() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = topic_with(&client, "consumer-static", 4, 0).await;
    let group = unique_topic("static");
    let config = |instance: &str| {
        group_config(&group)
            .session_timeout(Duration::from_secs(30))
            .assignors(vec![AssignorKind::Range])
            .group_instance_id(instance)
    };
    let restarting = Member::join(&client, config("instance-a"), &topic).await;
    // A generation of its own first, so its next JoinGroup differs from a fresh process's
    // (it names the generation it owned partitions in).
    eventually("the first member owns everything", || {
        partitions_of(&restarting.consumer).len() == 4
    })
    .await;
    let other = Consumer::new(client.clone(), config("instance-b"))
        .await
        .unwrap();
    let heard = Arc::new(Recorder::default());
    other.set_rebalance_listener(heard.clone());
    other.subscribe(&[&topic]).await.unwrap();
    let other = Member::run(other);
    eventually("both members share the topic", || {
        settled(&[&restarting, &other], 4)
    })
    .await;
    // Static members are ordered by instance id: a before b.
    assert_eq!(partitions_of(&restarting.consumer), BTreeSet::from([0, 1]));
    let generation = other.consumer.generation().unwrap().0;
    let events = heard.events();

    let (stopped, _) = restarting.stop().await;
    stopped.close().await.unwrap();
    let restarted = Member::join(&client, config("instance-a"), &topic).await;
    eventually("the restarted member has its partitions back", || {
        partitions_of(&restarted.consumer) == BTreeSet::from([0, 1])
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        other.consumer.generation().unwrap().0,
        generation,
        "no rebalance"
    );
    assert_eq!(heard.events(), events, "the other member was not disturbed");
    assert_eq!(partitions_of(&other.consumer), BTreeSet::from([2, 3]));
    for member in [restarted, other] {
        let (consumer, _) = member.stop().await;
        consumer.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_subscribed_topic_that_grows_is_rebalanced_to_include_the_new_partitions() {
    let cluster = TestCluster::start(1).await;
    let fast_metadata = cluster
        .config()
        .metadata_max_age(Duration::from_millis(300));
    let client = Client::connect(Env::real(), fast_metadata).await.unwrap();
    let topic = topic_with(&client, "consumer-grow", 2, 0).await;
    let member = Member::join(&client, group_config(&unique_topic("grow")), &topic).await;
    eventually("the member owns both partitions", || {
        partitions_of(&member.consumer).len() == 2
    })
    .await;
    Admin::new(client.clone())
        .create_partitions(&topic, 3)
        .await
        .unwrap();
    eventually("the member owns the new partition", || {
        partitions_of(&member.consumer).len() == 3
    })
    .await;
    produce_values(&client, &topic, 2, 3).await;
    eventually("the new partition is read", || {
        offsets_of(&member.received(), 2) == vec![0, 1, 2]
    })
    .await;
    let (consumer, _) = member.stop().await;
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn commit_async_commits_in_the_order_asked_even_when_nobody_waits() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = topic_with(&client, "consumer-commit-async", 1, 10).await;
    let partition = tp(&topic, 0);
    let consumer = Consumer::new(
        client.clone(),
        group_config(&unique_topic("commit-async")).auto_commit(false),
    )
    .await
    .unwrap();
    consumer.assign(vec![partition.clone()]).await.unwrap();
    let at = |offset| {
        Some(BTreeMap::from([(
            partition.clone(),
            OffsetAndMetadata::new(offset),
        )]))
    };
    for offset in 1..8 {
        drop(consumer.commit_async(at(offset)));
    }
    consumer.commit_async(at(8)).await.unwrap();
    let committed = consumer
        .committed(std::slice::from_ref(&partition))
        .await
        .unwrap();
    assert_eq!(committed[&partition].as_ref().map(|c| c.offset), Some(8));
    consumer.close().await.unwrap();
    assert!(matches!(
        consumer.commit_sync(at(9)).await,
        Err(Error::Closed)
    ));
}

#[tokio::test]
async fn heartbeats_keep_a_member_that_is_slow_between_polls_in_the_group() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = topic_with(&client, "consumer-heartbeat", 2, 0).await;
    let config = group_config(&unique_topic("heartbeat"))
        .session_timeout(Duration::from_secs(6))
        .heartbeat_interval(Duration::from_secs(1));
    let consumer = Consumer::new(client.clone(), config).await.unwrap();
    let heard = Arc::new(Recorder::default());
    consumer.set_rebalance_listener(heard.clone());
    consumer.subscribe(&[&topic]).await.unwrap();
    let clock = Stopwatch::start();
    while consumer.assignment().len() < 2 {
        assert!(clock.elapsed() < WITHIN, "never joined");
        consumer.poll(Duration::from_millis(100)).await.unwrap();
    }
    let generation = consumer.generation().unwrap();

    // Longer than the session, shorter than the rebalance timeout (the poll interval).
    tokio::time::sleep(Duration::from_secs(8)).await;
    // Only a member of the current generation may commit: the coordinator still knows us.
    let start = Some(BTreeMap::from([(tp(&topic, 0), OffsetAndMetadata::new(0))]));
    consumer.commit_sync(start).await.unwrap();
    produce_values(&client, &topic, 1, 1).await;
    assert_eq!(consume(&consumer, 1).await[0].partition, 1);
    assert_eq!(consumer.generation(), Some(generation));
    assert_eq!(
        heard.events(),
        vec![Event::Assigned(vec![0, 1])],
        "never lost"
    );
    consumer.close().await.unwrap();
}
