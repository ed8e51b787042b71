//! The consumer through faults an embedded three-node Tidepool injects on command: leaders and
//! the group coordinator moving, nodes going down and coming back, a rebalance while a member
//! is busy. Whatever happens, no record is lost and none is delivered twice unless Kafka's
//! at-least-once rules say it must be.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use support::produce::produce_raw;
use support::{TestCluster, unique_topic};
use tidepool_broker::Control;
use tidepool_client::{
    Admin, AssignorKind, BoxFuture, Client, Consumer, ConsumerConfig, ConsumerRecord, KafkaCode,
    NewTopic, OffsetReset, RebalanceListener, TopicPartition,
};
use tidepool_io::{Clock, SystemClock};

const WITHIN: Duration = Duration::from_secs(40);

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
        .auto_commit(false)
        .fetch_max_wait(Duration::from_millis(100))
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

/// A topic whose partitions have a replica on every node, so leadership can go anywhere.
async fn replicated_topic(client: &Client, prefix: &str, partitions: i32) -> String {
    let topic = unique_topic(prefix);
    Admin::new(client.clone())
        .create_topic(NewTopic::new(&topic, partitions, 3))
        .await
        .unwrap();
    topic
}

/// Appends `count` records to each partition, numbering them from `from`.
async fn produce_each(client: &Client, topic: &str, partitions: i32, from: usize, count: usize) {
    for partition in 0..partitions {
        let records = (from..from + count)
            .map(|i| (None, Some(Bytes::from(format!("{partition}-{i}")))))
            .collect();
        produce_raw(client, topic, partition, records).await;
    }
}

async fn consume_into(consumer: &Consumer, records: &mut Vec<ConsumerRecord>, total: usize) {
    let clock = Stopwatch::start();
    while records.len() < total {
        assert!(
            clock.elapsed() < WITHIN,
            "only {} of {total} arrived",
            records.len()
        );
        records.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
    }
}

/// Each partition's offsets in the order they were delivered.
fn delivered(records: &[ConsumerRecord]) -> BTreeMap<i32, Vec<i64>> {
    let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for record in records {
        by_partition
            .entry(record.partition)
            .or_default()
            .push(record.offset);
    }
    by_partition
}

fn exactly(partitions: i32, per_partition: i64) -> BTreeMap<i32, Vec<i64>> {
    (0..partitions)
        .map(|p| (p, (0..per_partition).collect()))
        .collect()
}

/// A live node other than `node`.
fn another_node(cluster: &TestCluster, node: i32) -> i32 {
    let broker = cluster.broker().unwrap();
    broker
        .nodes()
        .iter()
        .map(|info| info.id)
        .find(|id| *id != node)
        .unwrap()
}

fn control(cluster: &TestCluster) -> Control {
    cluster.broker().unwrap().control()
}

#[tokio::test]
async fn a_leader_moved_during_consumption_loses_and_repeats_nothing() {
    let cluster = TestCluster::embedded(3).await;
    let client = cluster.client().await;
    let topic = replicated_topic(&client, "faults-leader", 3).await;
    for round in 0..5 {
        produce_each(&client, &topic, 3, round * 10, 10).await;
    }
    let consumer = Consumer::new(
        client.clone(),
        ConsumerConfig::default()
            .auto_offset_reset(OffsetReset::Earliest)
            .max_poll_records(10)
            .max_partition_fetch_bytes(512),
    )
    .await
    .unwrap();
    consumer
        .assign((0..3).map(|p| tp(&topic, p)).collect())
        .await
        .unwrap();
    let mut records = Vec::new();
    consume_into(&consumer, &mut records, 60).await;

    let control = control(&cluster);
    for partition in 0..3 {
        let (leader, epoch) = control.leader(&topic, partition).unwrap();
        let moved = control
            .move_leader(&topic, partition, another_node(&cluster, leader))
            .unwrap();
        assert!(moved > epoch);
    }
    produce_each(&client, &topic, 3, 50, 50).await;
    consume_into(&consumer, &mut records, 300).await;
    records.extend(consumer.poll(Duration::from_millis(500)).await.unwrap());
    assert_eq!(delivered(&records), exactly(3, 100));
    let moved_epochs = records
        .iter()
        .filter(|r| r.offset >= 50)
        .filter_map(|r| r.leader_epoch)
        .min()
        .unwrap();
    assert!(
        moved_epochs > 0,
        "records written after the move carry the new epoch"
    );
}

#[tokio::test]
async fn a_moved_group_coordinator_is_found_again_and_commits_go_on() {
    let cluster = TestCluster::embedded(3).await;
    let client = cluster.client().await;
    let topic = replicated_topic(&client, "faults-coordinator", 2).await;
    let group = unique_topic("moving-coordinator");
    produce_each(&client, &topic, 2, 0, 10).await;
    let consumer = Consumer::new(client.clone(), group_config(&group))
        .await
        .unwrap();
    consumer.subscribe(&[&topic]).await.unwrap();
    let mut records = Vec::new();
    consume_into(&consumer, &mut records, 20).await;
    consumer.commit_sync(None).await.unwrap();
    let generation = consumer.generation().unwrap();

    let control = control(&cluster);
    let before = control.describe_group(&group).unwrap().coordinator;
    control
        .move_group_coordinator(&group, another_node(&cluster, before))
        .unwrap();
    let after = control.describe_group(&group).unwrap().coordinator;
    assert_ne!(before, after);

    produce_each(&client, &topic, 2, 10, 10).await;
    consume_into(&consumer, &mut records, 40).await;
    consumer.commit_sync(None).await.unwrap();
    // Heartbeats meet NOT_COORDINATOR too, and must find the new coordinator before the
    // session ends.
    let quiet = Stopwatch::start();
    while quiet.elapsed() < Duration::from_secs(3) {
        records.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
    }
    let partitions = [tp(&topic, 0), tp(&topic, 1)];
    let committed = consumer.committed(&partitions).await.unwrap();
    assert!(
        committed
            .values()
            .all(|c| c.as_ref().map(|c| c.offset) == Some(20))
    );
    assert_eq!(
        consumer.generation(),
        Some(generation),
        "no rebalance was needed"
    );
    assert_eq!(delivered(&records), exactly(2, 20));
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn a_node_going_down_and_coming_back_loses_and_repeats_nothing() {
    let cluster = TestCluster::embedded(3).await;
    let client = cluster.client().await;
    let topic = replicated_topic(&client, "faults-node", 3).await;
    let group = unique_topic("node-down");
    produce_each(&client, &topic, 3, 0, 20).await;
    let consumer = Consumer::new(client.clone(), group_config(&group).max_poll_records(10))
        .await
        .unwrap();
    consumer.subscribe(&[&topic]).await.unwrap();
    let mut records = Vec::new();
    consume_into(&consumer, &mut records, 30).await;
    consumer.commit_sync(None).await.unwrap();
    let generation = consumer.generation().unwrap();

    // The coordinator's node, so both fetching and the group have to move.
    let control = control(&cluster);
    let down = control.describe_group(&group).unwrap().coordinator;
    control.node_down(down).await.unwrap();
    // The test's own writes must not go to the dead node: a produce cut off there has an
    // unknown outcome, and the helper does not retry those.
    tokio::time::sleep(Duration::from_millis(200)).await;
    client.refresh_topics(&[&topic]).await.unwrap();
    produce_each(&client, &topic, 3, 20, 20).await;
    consume_into(&consumer, &mut records, 120).await;
    consumer.commit_sync(None).await.unwrap();

    control.node_up(down).await.unwrap();
    for partition in 0..3 {
        // Leadership back on the returning node, so fetches go to it again.
        let (leader, _) = control.leader(&topic, partition).unwrap();
        if leader != down {
            control.move_leader(&topic, partition, down).unwrap();
        }
    }
    produce_each(&client, &topic, 3, 40, 10).await;
    consume_into(&consumer, &mut records, 150).await;
    records.extend(consumer.poll(Duration::from_millis(500)).await.unwrap());
    assert_eq!(delivered(&records), exactly(3, 50));
    assert_eq!(
        consumer.generation(),
        Some(generation),
        "the member kept its place"
    );
    consumer.commit_sync(None).await.unwrap();
    consumer.close().await.unwrap();
}

/// Remembers the partitions taken from a member without a revocation.
#[derive(Default)]
struct LostPartitions(Mutex<Vec<TopicPartition>>);

impl RebalanceListener for LostPartitions {
    fn on_lost<'a>(
        &'a self,
        _: &'a Consumer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move { self.0.lock().unwrap().extend_from_slice(partitions) })
    }
}

#[tokio::test]
async fn commits_of_a_generation_that_ended_are_rejected_and_nothing_is_lost() {
    let cluster = TestCluster::embedded(3).await;
    let client = cluster.client().await;
    let topic = replicated_topic(&client, "faults-fencing", 2).await;
    let group = unique_topic("fencing");
    produce_each(&client, &topic, 2, 0, 20).await;
    let partitions = [tp(&topic, 0), tp(&topic, 1)];
    // The rebalance a newcomer starts waits this long for the busy member, which also leaves
    // by itself after this long without polling.
    let config = group_config(&group)
        .rebalance_timeout(Duration::from_secs(3))
        .assignors(vec![AssignorKind::Range])
        .max_poll_records(5);

    let busy = Consumer::new(client.clone(), config.clone()).await.unwrap();
    let lost = Arc::new(LostPartitions::default());
    busy.set_rebalance_listener(lost.clone());
    busy.subscribe(&[&topic]).await.unwrap();
    let mut committed_by_busy = Vec::new();
    consume_into(&busy, &mut committed_by_busy, 10).await;
    busy.commit_sync(None).await.unwrap();
    let saved = busy.committed(&partitions).await.unwrap();
    let mut uncommitted = Vec::new();
    consume_into(&busy, &mut uncommitted, 10).await;

    // The busy member is "processing" (not polling) while a new member joins.
    let newcomer = Consumer::new(client.clone(), config).await.unwrap();
    newcomer.subscribe(&[&topic]).await.unwrap();
    let mut taken_over = Vec::new();
    let clock = Stopwatch::start();
    while newcomer.assignment().len() < 2 {
        assert!(clock.elapsed() < WITHIN, "the newcomer never took over");
        taken_over.extend(newcomer.poll(Duration::from_millis(200)).await.unwrap());
    }

    let refused = busy.commit_sync(None).await.unwrap_err();
    assert!(
        matches!(
            refused.code(),
            Some(KafkaCode::ILLEGAL_GENERATION | KafkaCode::UNKNOWN_MEMBER_ID)
        ),
        "{refused}"
    );
    assert_eq!(
        busy.committed(&partitions).await.unwrap(),
        saved,
        "nothing moved"
    );

    // The newcomer starts where the last accepted commit left off: the busy member's
    // uncommitted records come again (at least once), and nothing is skipped.
    consume_into(&newcomer, &mut taken_over, 30).await;
    let first_offsets: BTreeSet<(i32, i64)> = delivered(&taken_over)
        .iter()
        .map(|(p, offsets)| (*p, offsets[0]))
        .collect();
    let expected: BTreeSet<(i32, i64)> = saved
        .iter()
        .map(|(tp, c)| (tp.partition, c.as_ref().unwrap().offset))
        .collect();
    assert_eq!(first_offsets, expected);
    let mut all: Vec<ConsumerRecord> = committed_by_busy;
    all.extend(taken_over);
    let mut everything: BTreeSet<(i32, i64)> = BTreeSet::new();
    for record in &all {
        assert!(
            everything.insert((record.partition, record.offset)),
            "twice: {record:?}"
        );
    }
    assert_eq!(everything.len(), 40);

    // The busy member's next poll learns its partitions were lost, and it rejoins.
    let newcomer_running = tokio::spawn({
        let newcomer = newcomer.clone();
        async move {
            let clock = Stopwatch::start();
            while clock.elapsed() < WITHIN && newcomer.assignment().len() != 1 {
                let _ = newcomer.poll(Duration::from_millis(100)).await;
            }
        }
    });
    let clock = Stopwatch::start();
    while busy.assignment().len() != 1 {
        assert!(clock.elapsed() < WITHIN, "the busy member never rejoined");
        let _ = busy.poll(Duration::from_millis(200)).await;
    }
    newcomer_running.await.unwrap();
    assert_eq!(*lost.0.lock().unwrap(), partitions.to_vec());
    busy.close().await.unwrap();
    newcomer.close().await.unwrap();
}
