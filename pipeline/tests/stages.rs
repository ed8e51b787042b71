//! The shipped stages applied a poll at a time: one store transaction for the batch, each event
//! still deduplicated on its own, a poison event failing alone; and the outbox relay woken by
//! the commit that queued a row rather than by its idle timer.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tidepool_client::{Admin, BoxFuture, Client, ClientConfig, Producer};
use tidepool_io::{Clock, Env, SystemClock};
use tidepool_pipeline::app::pipeline_producer_config;
use tidepool_pipeline::runtime::{Handler, HandlerError, Incoming};
use tidepool_pipeline::stages::{
    ANALYTICS, ENRICHMENT, OutboxRelay, PERSISTER, minute_of, shipped_handlers,
};
use tidepool_pipeline::store::{
    Applied, EventToPersist, NewOutboxRow, Store, StoreConfig, StoreError,
};
use tidepool_pipeline::topics::{self, TopicsConfig, ensure_topics};
use tokio::sync::watch;

use support::{Cluster, eventually, read_topic};

const T0: i64 = 1_700_000_000_000;

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock::new())
}

fn incoming(offset: i64, value: Bytes) -> Incoming {
    Incoming {
        topic: topics::RAW.to_owned(),
        partition: 0,
        offset,
        key: Some(Bytes::from_static(b"acme")),
        value: Some(value),
        headers: Vec::new(),
        attempt: 1,
        event_id: None,
        source: format!("{}/0@{offset}", topics::RAW),
    }
}

fn event(offset: i64, id: &str) -> Incoming {
    let value = json!({
        "id": id,
        "tenant": "acme",
        "type": "page.view",
        "timestamp": T0,
        "payload": {"n": offset},
    });
    incoming(offset, Bytes::from(value.to_string()))
}

/// Three events with a poison record in the middle.
fn batch_with_poison() -> Vec<Incoming> {
    vec![
        event(0, "e1"),
        incoming(1, Bytes::from_static(b"not json")),
        event(2, "e2"),
    ]
}

fn outcomes(results: &[Result<(), HandlerError>]) -> Vec<bool> {
    results.iter().map(Result::is_ok).collect()
}

#[tokio::test]
async fn a_batch_with_a_poison_event_applies_the_others_once_and_redelivery_applies_nothing_twice()
{
    let store = Store::memory().unwrap();
    let handlers = shipped_handlers(&store, &clock());
    let batch = batch_with_poison();

    for (_, handler) in &handlers {
        let results = handler.handle_batch(&batch).await;
        assert_eq!(outcomes(&results), [true, false, true]);
    }
    let applied = |store: &Store| {
        [ENRICHMENT, ANALYTICS, PERSISTER].map(|stage| store.applied_count(stage).unwrap())
    };
    assert_eq!(applied(&store), [2, 2, 2]);
    assert_eq!(store.event_count().unwrap(), 2);
    assert_eq!(store.rollups("acme").unwrap()[&minute_of(T0)], 2);
    // One row for events.enriched and one for events.persisted per event.
    assert_eq!(store.outbox_pending().unwrap(), 4);

    // Redelivered (the offsets were not committed): the same answers, nothing applied again.
    for (_, handler) in &handlers {
        let results = handler.handle_batch(&batch).await;
        assert_eq!(outcomes(&results), [true, false, true]);
    }
    assert_eq!(applied(&store), [2, 2, 2]);
    assert_eq!(store.event_count().unwrap(), 2);
    assert_eq!(store.rollups("acme").unwrap()[&minute_of(T0)], 2);
    assert_eq!(store.outbox_pending().unwrap(), 4);
}

#[tokio::test]
async fn an_event_twice_in_one_batch_is_applied_once() {
    let store = Store::memory().unwrap();
    let batch = vec![event(0, "e1"), event(1, "e1")];

    for (_, handler) in shipped_handlers(&store, &clock()) {
        let results = handler.handle_batch(&batch).await;
        assert_eq!(outcomes(&results), [true, true]);
    }

    assert_eq!(store.event_count().unwrap(), 1);
    assert_eq!(store.rollups("acme").unwrap()[&minute_of(T0)], 1);
    assert_eq!(store.outbox_pending().unwrap(), 2);
}

/// Counts its calls; implements only `handle`, as the simulator's wrappers do.
struct PerEvent {
    calls: AtomicUsize,
}

impl Handler for PerEvent {
    fn handle<'a>(&'a self, event: &'a Incoming) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            match event.offset {
                1 => Err(HandlerError::new("odd one out")),
                _ => Ok(()),
            }
        })
    }
}

#[tokio::test]
async fn a_handler_with_only_handle_gets_each_event_of_a_batch_in_order() {
    let handler = PerEvent {
        calls: AtomicUsize::new(0),
    };

    let results = handler.handle_batch(&batch_with_poison()).await;

    assert_eq!(outcomes(&results), [true, false, true]);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 3);
}

fn to_persist(id: &str) -> EventToPersist {
    EventToPersist {
        event_id: id.to_owned(),
        row: id.as_bytes().to_vec(),
        outbox: NewOutboxRow {
            topic: topics::PERSISTED.to_owned(),
            key: None,
            value: id.as_bytes().to_vec(),
            headers: Vec::new(),
        },
    }
}

#[test]
fn a_full_outbox_refuses_one_event_of_a_batch_and_the_others_still_commit() {
    let store = Store::memory_with(StoreConfig {
        outbox_rows_max: 2,
        ..StoreConfig::default()
    })
    .unwrap();

    let results = store
        .persist_events(
            PERSISTER,
            &[to_persist("e1"), to_persist("e2"), to_persist("e3")],
            T0,
        )
        .unwrap();

    assert_eq!(
        results[0].as_ref().unwrap(),
        &Applied::New {
            outbox_seq: Some(1)
        }
    );
    assert_eq!(
        results[1].as_ref().unwrap(),
        &Applied::New {
            outbox_seq: Some(2)
        }
    );
    assert!(matches!(results[2], Err(StoreError::OutboxFull { .. })));
    assert_eq!(store.event_count().unwrap(), 2);
    // Refused, so not marked applied: its redelivery will be applied once there is room.
    assert!(!store.is_applied(PERSISTER, "e3").unwrap());
}

/// Whether `store.outbox_written()` is ready now, without waiting.
async fn relay_signalled(store: &Store) -> bool {
    tokio::time::timeout(Duration::ZERO, store.outbox_written())
        .await
        .is_ok()
}

#[tokio::test]
async fn a_commit_that_queues_outbox_rows_signals_the_relay_and_others_do_not() {
    let store = Store::memory().unwrap();
    assert!(!relay_signalled(&store).await);

    store.apply_rollup(ANALYTICS, "e1", "acme", T0, T0).unwrap();
    assert!(!relay_signalled(&store).await, "a rollup queues no row");

    store
        .persist_events(PERSISTER, &[to_persist("e1"), to_persist("e2")], T0)
        .unwrap();
    assert!(relay_signalled(&store).await);
    // One signal per wait, however many rows: the relay drains them all in one pass.
    assert!(!relay_signalled(&store).await);

    store
        .persist_events(PERSISTER, &[to_persist("e1")], T0)
        .unwrap();
    assert!(!relay_signalled(&store).await, "a duplicate queues no row");
}

#[tokio::test]
async fn the_relay_publishes_a_committed_row_without_waiting_out_its_idle_pause() {
    let cluster = Cluster::start().await;
    let client = Client::connect(Env::real(), ClientConfig::new(cluster.bootstrap()))
        .await
        .unwrap();
    let topics_config = TopicsConfig::default();
    ensure_topics(&Admin::new(client.clone()), &topics_config)
        .await
        .unwrap();
    let producer = Producer::new(client.clone(), pipeline_producer_config())
        .await
        .unwrap();
    let store = Store::memory().unwrap();
    // An hour: only the store's signal can get the row out within the test's bound.
    let relay =
        OutboxRelay::new(store.clone(), clock(), producer.clone()).idle(Duration::from_secs(3600));
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(relay.run(stopped));
    // Let it find the outbox empty and go idle first.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let id = format!("relay-wake-{:x}", SystemClock::new().wall_ms());
    store
        .persist_events(PERSISTER, &[to_persist(&id)], T0)
        .unwrap();

    eventually(
        Duration::from_secs(30),
        "the row published and marked sent",
        async || store.outbox_pending().unwrap() == 0,
    )
    .await;
    let published = read_topic(&client, topics::PERSISTED, topics_config.partitions).await;
    assert!(
        published
            .iter()
            .any(|record| record.value.as_deref() == Some(id.as_bytes()))
    );

    let _ = stop.send(true);
    running.await.unwrap();
    producer.close().await.unwrap();
    client.close();
    cluster.stop().await;
}
