//! Replay (issue 9 item 7): a stopped stage's group is reset and the stage reprocesses
//! `events.raw`. Cleared first, the analytics stage rebuilds its rollups exactly; not cleared,
//! its dedup keys leave them as they were; reset to a time, a stage sees only the events that
//! arrived from then on; and while a stage runs, its group cannot be reset.
//!
//! Embedded broker only: the tests reset fixed group names and count every record of
//! `events.raw`, so each needs a cluster of its own.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tidepool_broker::{Broker, BrokerHandle};
use tidepool_client::{Admin, BoxFuture, Client, ClientConfig, OffsetSpec, TopicPartition};
use tidepool_io::{Clock, Env, SystemClock};
use tidepool_pipeline::app::{PipelineConfig, PipelineHandle, start};
use tidepool_pipeline::replay::{ReplayError, ReplayFrom, reset_stage};
use tidepool_pipeline::runtime::{Handler, HandlerError, Incoming};
use tidepool_pipeline::stages::ANALYTICS;
use tidepool_pipeline::store::Store;
use tidepool_pipeline::topics::RAW;

use support::{eventually, post_json};

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];
const PARTITIONS: i32 = 3;
const MINUTE: i64 = 1_700_000_040_000;
const EVENTS: usize = 60;
const COUNTER: &str = "replay-counter";

/// Event `index`: tenants in turn, alternating between two minutes.
fn event(index: usize) -> Value {
    let minute = MINUTE + (index % 2) as i64 * 60_000;
    json!({
        "id": format!("evt-{index}"),
        "tenant": TENANTS[index % TENANTS.len()],
        "type": "page.view",
        "timestamp": minute + index as i64,
        "payload": {"n": index},
    })
}

fn ids(range: Range<usize>) -> Vec<String> {
    range.map(|index| format!("evt-{index}")).collect()
}

fn raw(partition: i32) -> TopicPartition {
    TopicPartition::new(RAW, partition)
}

async fn embedded_broker() -> BrokerHandle {
    Broker::builder()
        .memory()
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .start()
        .await
        .expect("an embedded broker")
}

async fn start_pipeline(
    broker: &BrokerHandle,
    store: &Store,
    extra: Vec<(String, Arc<dyn Handler>)>,
) -> PipelineHandle {
    let mut config = PipelineConfig::new(broker.bootstrap());
    config.topics.partitions = PARTITIONS;
    start(Env::real(), config, store.clone(), extra)
        .await
        .unwrap()
}

async fn admin(broker: &BrokerHandle) -> Admin {
    let client = Client::connect(Env::real(), ClientConfig::new(broker.bootstrap()))
        .await
        .unwrap();
    Admin::new(client)
}

async fn post_events(collector: SocketAddr, range: Range<usize>) {
    let batch: Vec<Value> = range.clone().map(event).collect();
    let reply = post_json(collector, &Value::Array(batch)).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert_eq!(
        reply.json()["accepted"].as_array().unwrap().len(),
        range.len()
    );
}

/// Whether `group` has committed the end of every partition of `events.raw`: every record was
/// handled.
async fn caught_up(admin: &Admin, group: &str) -> bool {
    let committed = admin.list_group_offsets(group).await.unwrap();
    let ends = admin
        .list_offsets(
            (0..PARTITIONS)
                .map(|p| (raw(p), OffsetSpec::Latest))
                .collect(),
        )
        .await
        .unwrap();
    ends.iter()
        .all(|(tp, end)| committed.get(tp).copied().unwrap_or(0) == end.offset)
}

fn processed(pipeline: &PipelineHandle, stage: &str) -> u64 {
    let prefix = format!("tidepool_stage_processed_total{{stage=\"{stage}\"}} ");
    pipeline
        .metrics
        .render()
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .map_or(0, |count| count.parse().unwrap())
}

/// A stage that notes the id of every event it is handed, duplicates included.
#[derive(Default)]
struct Counter {
    seen: Mutex<Vec<String>>,
}

impl Counter {
    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Handler for Counter {
    fn handle<'a>(&'a self, event: &'a Incoming) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let id = event.event_id.clone().unwrap_or_default();
            self.seen.lock().unwrap().push(id);
            Ok(())
        })
    }
}

/// Runs the pipeline until analytics counted events `0..EVENTS`, stops it, and returns the
/// rollups it built.
async fn count_every_event_then_stop(
    broker: &BrokerHandle,
    store: &Store,
) -> BTreeMap<String, BTreeMap<i64, u64>> {
    let pipeline = start_pipeline(broker, store, Vec::new()).await;
    post_events(pipeline.collector_addr, 0..EVENTS).await;
    eventually(
        Duration::from_secs(30),
        "analytics to count every event",
        async || store.applied_count(ANALYTICS).unwrap() == EVENTS as u64,
    )
    .await;
    pipeline.shutdown().await;
    let rollups = store.all_rollups().unwrap();
    // Each tenant has events in both minutes: 10 per tenant and minute.
    assert_eq!(rollups.len(), TENANTS.len());
    for minutes in rollups.values() {
        assert_eq!(
            minutes,
            &BTreeMap::from([(MINUTE, 10), (MINUTE + 60_000, 10)])
        );
    }
    rollups
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleared_stage_replayed_from_the_earliest_offset_rebuilds_identical_rollups() {
    let broker = embedded_broker().await;
    let store = Store::memory().unwrap();
    let before = count_every_event_then_stop(&broker, &store).await;

    store.clear_stage(ANALYTICS).unwrap();
    assert!(store.all_rollups().unwrap().is_empty());
    assert_eq!(store.applied_count(ANALYTICS).unwrap(), 0);
    let admin = admin(&broker).await;
    let reset = reset_stage(admin.client(), ANALYTICS, &[RAW], ReplayFrom::Earliest)
        .await
        .unwrap();
    assert_eq!(reset, (0..PARTITIONS).map(|p| (raw(p), 0)).collect());

    let pipeline = start_pipeline(&broker, &store, Vec::new()).await;
    eventually(
        Duration::from_secs(30),
        "analytics to count every event again",
        async || store.applied_count(ANALYTICS).unwrap() == EVENTS as u64,
    )
    .await;
    assert_eq!(store.all_rollups().unwrap(), before);
    pipeline.shutdown().await;
    admin.client().close();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_replayed_without_clearing_it_leaves_its_rollups_unchanged() {
    let broker = embedded_broker().await;
    let store = Store::memory().unwrap();
    let before = count_every_event_then_stop(&broker, &store).await;

    let admin = admin(&broker).await;
    reset_stage(admin.client(), ANALYTICS, &[RAW], ReplayFrom::Earliest)
        .await
        .unwrap();
    let pipeline = start_pipeline(&broker, &store, Vec::new()).await;
    // Every event is handed to the stage again, and each is a duplicate its dedup key absorbs.
    eventually(
        Duration::from_secs(30),
        "analytics to be handed every event again",
        async || {
            processed(&pipeline, ANALYTICS) == EVENTS as u64 && caught_up(&admin, ANALYTICS).await
        },
    )
    .await;
    assert_eq!(store.all_rollups().unwrap(), before);
    assert_eq!(store.applied_count(ANALYTICS).unwrap(), EVENTS as u64);
    pipeline.shutdown().await;
    admin.client().close();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_from_a_time_hands_the_stage_only_the_events_that_arrived_from_then_on() {
    let broker = embedded_broker().await;
    let store = Store::memory().unwrap();
    let admin = admin(&broker).await;
    let first_run = Arc::new(Counter::default());
    let pipeline = start_pipeline(
        &broker,
        &store,
        vec![(
            COUNTER.to_owned(),
            Arc::clone(&first_run) as Arc<dyn Handler>,
        )],
    )
    .await;
    let half = EVENTS / 2;
    post_events(pipeline.collector_addr, 0..half).await;
    // Records are stamped when produced; the pauses keep both halves clear of the cut.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cut = SystemClock::new().wall_ms();
    tokio::time::sleep(Duration::from_millis(20)).await;
    post_events(pipeline.collector_addr, half..EVENTS).await;
    eventually(
        Duration::from_secs(30),
        "the counter to see every event",
        async || caught_up(&admin, COUNTER).await,
    )
    .await;
    assert_eq!(first_run.seen().len(), EVENTS);
    pipeline.shutdown().await;

    let reset = reset_stage(admin.client(), COUNTER, &[RAW], ReplayFrom::Timestamp(cut))
        .await
        .unwrap();
    let ends = admin
        .list_offsets(
            reset
                .keys()
                .map(|tp| (tp.clone(), OffsetSpec::Latest))
                .collect(),
        )
        .await
        .unwrap();
    let replayed: i64 = reset.iter().map(|(tp, from)| ends[tp].offset - from).sum();
    assert_eq!(replayed, half as i64, "{reset:?} of {ends:?}");

    let replay = Arc::new(Counter::default());
    let pipeline = start_pipeline(
        &broker,
        &store,
        vec![(COUNTER.to_owned(), Arc::clone(&replay) as Arc<dyn Handler>)],
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the counter to catch up again",
        async || caught_up(&admin, COUNTER).await,
    )
    .await;
    let mut seen = replay.seen();
    seen.sort();
    let mut late = ids(half..EVENTS);
    late.sort();
    assert_eq!(seen, late, "each late event once, no early one");
    pipeline.shutdown().await;
    admin.client().close();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_stage_cannot_be_replayed_until_it_stops() {
    let broker = embedded_broker().await;
    let store = Store::memory().unwrap();
    let admin = admin(&broker).await;
    let pipeline = start_pipeline(&broker, &store, Vec::new()).await;
    post_events(pipeline.collector_addr, 0..EVENTS).await;
    eventually(
        Duration::from_secs(30),
        "analytics to commit every event",
        async || caught_up(&admin, ANALYTICS).await,
    )
    .await;
    let committed = admin.list_group_offsets(ANALYTICS).await.unwrap();

    let refused = reset_stage(admin.client(), ANALYTICS, &[RAW], ReplayFrom::Earliest).await;
    match &refused {
        Err(ReplayError::StageRunning { group, .. }) => assert_eq!(group, ANALYTICS),
        other => panic!("expected StageRunning, got {other:?}"),
    }
    let message = format!("{:#}", anyhow::Error::from(refused.unwrap_err()));
    assert!(
        message.contains("stop every instance") && message.contains("Stable"),
        "{message}"
    );
    assert_eq!(
        admin.list_group_offsets(ANALYTICS).await.unwrap(),
        committed
    );

    pipeline.shutdown().await;
    let reset = reset_stage(admin.client(), ANALYTICS, &[RAW], ReplayFrom::Earliest)
        .await
        .unwrap();
    assert_eq!(reset, (0..PARTITIONS).map(|p| (raw(p), 0)).collect());
    let reset_topics: BTreeSet<&str> = reset.keys().map(|tp| tp.topic.as_str()).collect();
    assert_eq!(
        reset_topics,
        BTreeSet::from([RAW]),
        "the retry topic is left alone"
    );
    admin.client().close();
    broker.shutdown().await;
}
