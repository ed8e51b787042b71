//! The shipped stages, three consumer groups reading `events.raw` in parallel as in the case
//! study, and the outbox relay. Each stage's effect is keyed by (stage, event id) in the store,
//! written in the same transaction as that key, so redelivery never applies it twice. A stage
//! applies a whole poll's events in one transaction ([`Handler::handle_batch`]), one event per
//! transaction when called per event ([`Handler::handle`]):
//!
//! - enrichment: adds derived fields and queues the enriched event for `events.enriched` (an
//!   outbox row: the produce happens after the transaction, by the relay);
//! - analytics: per-tenant, per-minute counts in the store;
//! - persister: the event as a business row and, in the same transaction, an outbox row the
//!   relay publishes to `events.persisted`.
//!
//! A new stage is a [`Handler`] and a group name: nothing upstream changes
//! (`examples/new_stage.rs`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tidepool_client::{BoxFuture, Producer, ProducerRecord};
use tidepool_io::Clock;
use tokio::sync::watch;

use crate::event::Event;
use crate::runtime::{Handler, HandlerError, Incoming, headers};
use crate::store::{
    Applied, EventToCount, EventToPersist, EventToPublish, NewOutboxRow, Store, StoreError,
};
use crate::topics;

pub const ENRICHMENT: &str = "enrichment";
pub const ANALYTICS: &str = "analytics";
pub const PERSISTER: &str = "persister";

const MINUTE_MS: i64 = 60_000;

/// How long the relay pauses after a failed publish before trying again.
const RELAY_RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Header the relay adds to each published row: its outbox sequence number.
pub const OUTBOX_SEQ: &str = "outbox-seq";

/// Where the pipeline may crash in the simulator between a write and what must follow it.
pub const CRASH_POINTS: &[&str] = &[
    // A store transaction committed (and synced), nothing after it done yet.
    "store.committed",
    // A handler succeeded, its offset not committed to Kafka yet.
    "stage.effect.applied",
    // A failed event's retry or dead-letter record acknowledged, its offset not committed.
    "stage.handed_on",
    // Outbox rows published and acknowledged, not yet marked sent.
    "outbox.published",
];

/// The event a record carries, or why it is not one (a poison record: retried, then
/// dead-lettered).
pub fn parse_event(incoming: &Incoming) -> Result<Event, HandlerError> {
    let value = incoming
        .value
        .as_deref()
        .ok_or_else(|| HandlerError::new("record has no value"))?;
    let event: Event = serde_json::from_slice(value)
        .map_err(|error| HandlerError::new(format!("not an event: {error}")))?;
    event.validate().map_err(HandlerError::new)?;
    Ok(event)
}

fn store_error(error: StoreError) -> HandlerError {
    HandlerError::new(format!("store: {error}"))
}

/// The results of a batch in event order: `prepared` holds each event's own failure (it never
/// reached the store) or its index among `items`, which went to the store in one call.
fn batch_results<T>(
    prepared: Vec<Result<usize, HandlerError>>,
    items: &[T],
    write: impl FnOnce(&[T]) -> Result<Vec<Result<Applied, StoreError>>, StoreError>,
) -> Vec<Result<(), HandlerError>> {
    let written = if items.is_empty() {
        Ok(Vec::new())
    } else {
        write(items)
    };
    match written {
        Ok(written) => prepared
            .into_iter()
            .map(|slot| {
                let index = slot?;
                match written.get(index) {
                    Some(Ok(_)) => Ok(()),
                    Some(Err(error)) => Err(HandlerError::new(format!("store: {error}"))),
                    None => Err(HandlerError::new("store: no result for the event")),
                }
            })
            .collect(),
        // The transaction failed: none of the events was applied.
        Err(error) => {
            let error = store_error(error);
            prepared
                .into_iter()
                .map(|slot| slot.and(Err(error.clone())))
                .collect()
        }
    }
}

/// Parses each event and prepares its store item with `prepare`; an event that fails gets its
/// error in place and no item.
fn prepare_batch<T>(
    events: &[Incoming],
    mut prepare: impl FnMut(Event) -> Result<T, HandlerError>,
) -> (Vec<Result<usize, HandlerError>>, Vec<T>) {
    let mut items = Vec::with_capacity(events.len());
    let prepared = events
        .iter()
        .map(|incoming| {
            let item = prepare(parse_event(incoming)?)?;
            items.push(item);
            Ok(items.len() - 1)
        })
        .collect();
    (prepared, items)
}

/// The start of the minute `timestamp_ms` falls in.
pub fn minute_of(timestamp_ms: i64) -> i64 {
    timestamp_ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

/// The enriched form of an event: the original fields plus derived ones.
pub fn enrich(event: &Event) -> serde_json::Value {
    let payload_bytes = serde_json::to_vec(&event.payload).map_or(0, |bytes| bytes.len());
    let payload_fields = event.payload.as_object().map_or(0, |object| object.len());
    json!({
        "id": event.id,
        "tenant": event.tenant,
        "type": event.kind,
        "timestamp": event.timestamp,
        "payload": event.payload,
        "enriched": {
            "minute": minute_of(event.timestamp),
            "category": event.kind.split(['.', ':']).next().unwrap_or_default(),
            "payload_fields": payload_fields,
            "payload_bytes": payload_bytes,
        }
    })
}

/// Adds derived fields and queues the result for `events.enriched`.
pub struct Enrichment {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
}

/// The outbox row carrying an enriched event to `events.enriched`.
fn enriched_row(event: &Event) -> Result<NewOutboxRow, HandlerError> {
    let value =
        serde_json::to_vec(&enrich(event)).map_err(|error| HandlerError::new(error.to_string()))?;
    Ok(NewOutboxRow {
        topic: topics::ENRICHED.to_owned(),
        key: Some(event.tenant.clone().into_bytes()),
        value,
        headers: vec![(headers::EVENT_ID.to_owned(), event.id.clone().into_bytes())],
    })
}

impl Handler for Enrichment {
    fn handle_batch<'a>(
        &'a self,
        events: &'a [Incoming],
    ) -> BoxFuture<'a, Vec<Result<(), HandlerError>>> {
        Box::pin(async move {
            let (prepared, items) = prepare_batch(events, |event| {
                Ok(EventToPublish {
                    row: enriched_row(&event)?,
                    event_id: event.id,
                })
            });
            let _turn = self.store.write_turn().await;
            batch_results(prepared, &items, |items| {
                self.store
                    .publish_effects(ENRICHMENT, items, self.clock.wall_ms())
            })
        })
    }

    fn handle<'a>(&'a self, incoming: &'a Incoming) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let event = parse_event(incoming)?;
            let row = enriched_row(&event)?;
            self.store
                .apply_effect(ENRICHMENT, &event.id, self.clock.wall_ms(), |effects| {
                    effects.publish(row)?;
                    Ok(())
                })
                .map_err(store_error)?;
            Ok(())
        })
    }
}

/// Counts events per tenant and minute.
pub struct Analytics {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
}

impl Handler for Analytics {
    fn handle_batch<'a>(
        &'a self,
        events: &'a [Incoming],
    ) -> BoxFuture<'a, Vec<Result<(), HandlerError>>> {
        Box::pin(async move {
            let (prepared, items) = prepare_batch(events, |event| {
                Ok(EventToCount {
                    minute_ms: minute_of(event.timestamp),
                    event_id: event.id,
                    tenant: event.tenant,
                })
            });
            let _turn = self.store.write_turn().await;
            batch_results(prepared, &items, |items| {
                self.store
                    .apply_rollups(ANALYTICS, items, self.clock.wall_ms())
            })
        })
    }

    fn handle<'a>(&'a self, incoming: &'a Incoming) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let event = parse_event(incoming)?;
            self.store
                .apply_rollup(
                    ANALYTICS,
                    &event.id,
                    &event.tenant,
                    minute_of(event.timestamp),
                    self.clock.wall_ms(),
                )
                .map_err(store_error)?;
            Ok(())
        })
    }
}

/// Stores each event and, in the same transaction, the outbox row for `events.persisted`.
pub struct Persister {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    /// Known-bad, for the simulator only (`no-outbox`): write the row, then produce the notice
    /// with this producer instead of through the outbox, so a crash between the two loses it.
    /// `None` everywhere else.
    pub sabotage_direct: Option<Producer>,
}

impl Persister {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Persister {
        Persister {
            store,
            clock,
            sabotage_direct: None,
        }
    }
}

/// The persister's business row for an event and the notice announcing it on
/// `events.persisted`.
fn persisted(event: &Event, now: i64) -> Result<(Vec<u8>, NewOutboxRow), HandlerError> {
    let row = serde_json::to_vec(event).map_err(|error| HandlerError::new(error.to_string()))?;
    let notice = json!({
        "id": event.id,
        "tenant": event.tenant,
        "type": event.kind,
        "persisted_at": now,
    });
    let outbox = NewOutboxRow {
        topic: topics::PERSISTED.to_owned(),
        key: Some(event.tenant.clone().into_bytes()),
        value: notice.to_string().into_bytes(),
        headers: vec![(headers::EVENT_ID.to_owned(), event.id.clone().into_bytes())],
    };
    Ok((row, outbox))
}

impl Handler for Persister {
    fn handle_batch<'a>(
        &'a self,
        events: &'a [Incoming],
    ) -> BoxFuture<'a, Vec<Result<(), HandlerError>>> {
        Box::pin(async move {
            if self.sabotage_direct.is_some() {
                // The sabotage's window is per event: write, then produce.
                let mut results = Vec::with_capacity(events.len());
                for incoming in events {
                    results.push(self.handle(incoming).await);
                }
                return results;
            }
            let now = self.clock.wall_ms();
            let (prepared, items) = prepare_batch(events, |event| {
                let (row, outbox) = persisted(&event, now)?;
                Ok(EventToPersist {
                    event_id: event.id,
                    row,
                    outbox,
                })
            });
            let _turn = self.store.write_turn().await;
            batch_results(prepared, &items, |items| {
                self.store.persist_events(PERSISTER, items, now)
            })
        })
    }

    fn handle<'a>(&'a self, incoming: &'a Incoming) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let event = parse_event(incoming)?;
            let now = self.clock.wall_ms();
            let (row, outbox) = persisted(&event, now)?;
            if let Some(producer) = &self.sabotage_direct {
                return write_then_produce(&self.store, producer, &event.id, &row, outbox, now)
                    .await;
            }
            self.store
                .persist_event(PERSISTER, &event.id, &row, outbox, now)
                .map_err(store_error)?;
            Ok(())
        })
    }
}

/// The `no-outbox` sabotage: the row committed without its outbox row, then the notice
/// produced directly. Redelivery after a crash in between finds the event applied and never
/// produces it.
async fn write_then_produce(
    store: &Store,
    producer: &Producer,
    event_id: &str,
    row: &[u8],
    notice: NewOutboxRow,
    now: i64,
) -> Result<(), HandlerError> {
    let applied = store
        .apply_effect(PERSISTER, event_id, now, |effects| {
            effects.put(event_id.as_bytes(), row)
        })
        .map_err(store_error)?;
    if !applied.is_new() {
        return Ok(());
    }
    let mut record = ProducerRecord::new(notice.topic, Bytes::from(notice.value));
    record.key = notice.key.map(Bytes::from);
    for (key, value) in notice.headers {
        record = record.header(key, Bytes::from(value));
    }
    let delivery = producer
        .send(record)
        .await
        .map_err(|error| HandlerError::new(error.to_string()))?;
    delivery
        .await
        .map_err(|error| HandlerError::new(error.to_string()))?;
    Ok(())
}

/// Publishes outbox rows in order with an idempotent producer, then marks them sent. A crash
/// between the two publishes them again (consumers dedup by event id); a row is never marked
/// sent before its publish was acknowledged.
///
/// Idle, it waits for the store's signal that a commit appended rows
/// ([`Store::outbox_written`]), so a row is published as soon as it is committed; the idle
/// pause is only a bound in case a signal is missed (another process wrote the file).
pub struct OutboxRelay {
    store: Store,
    clock: Arc<dyn Clock>,
    producer: Producer,
    batch: usize,
    idle: Duration,
}

impl OutboxRelay {
    pub fn new(store: Store, clock: Arc<dyn Clock>, producer: Producer) -> OutboxRelay {
        OutboxRelay {
            store,
            clock,
            producer,
            batch: 500,
            idle: Duration::from_millis(100),
        }
    }

    /// How long to wait for unsent rows without a signal from the store before looking again
    /// (default 100 ms).
    pub fn idle(mut self, idle: Duration) -> OutboxRelay {
        self.idle = idle;
        self
    }

    /// Publishes one batch of unsent rows; returns how many were published.
    pub async fn publish_once(&self) -> Result<usize, RelayError> {
        let rows = self.store.unsent_outbox(self.batch)?;
        let Some(last) = rows.last().map(|row| row.seq) else {
            return Ok(0);
        };
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut record = ProducerRecord::new(row.topic.clone(), Bytes::from(row.value.clone()));
            record.key = row.key.clone().map(Bytes::from);
            for (key, value) in &row.headers {
                record = record.header(key.clone(), Bytes::from(value.clone()));
            }
            // Tells a re-publication (same sequence) from a second effect (a new one).
            record = record.header(OUTBOX_SEQ, Bytes::from(row.seq.to_string().into_bytes()));
            deliveries.push(self.producer.send(record).await?);
        }
        for delivery in deliveries {
            delivery.await?;
        }
        // The window the simulator crashes in: published, not yet marked.
        self.store.crash_point("outbox.published");
        let _turn = self.store.write_turn().await;
        self.store.mark_sent(last)?;
        Ok(rows.len())
    }

    /// Publishes until `stop` turns true; failures are retried after a pause.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let clock = Arc::clone(&self.clock);
        while !*stop.borrow() {
            match self.publish_once().await {
                Ok(0) => {
                    tokio::select! {
                        _ = stop.changed() => {}
                        _ = self.store.outbox_written() => {}
                        _ = clock.sleep(self.idle) => {}
                    }
                }
                Ok(_) => {
                    // Rows came in while these were published: take them at once, but let the
                    // runtime's other tasks in between.
                    tokio::task::yield_now().await;
                }
                Err(error) => {
                    tracing::warn!(%error, "outbox relay: publish failed; retrying");
                    tokio::select! {
                        _ = stop.changed() => {}
                        _ = clock.sleep(RELAY_RETRY_PAUSE) => {}
                    }
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("kafka: {0}")]
    Kafka(#[from] tidepool_client::Error),
}

/// The three shipped stages' handlers on one store.
pub fn shipped_handlers(
    store: &Store,
    clock: &Arc<dyn Clock>,
) -> Vec<(&'static str, Arc<dyn Handler>)> {
    let (store, clock) = (store.clone(), Arc::clone(clock));
    vec![
        (
            ENRICHMENT,
            Arc::new(Enrichment {
                store: store.clone(),
                clock: Arc::clone(&clock),
            }) as Arc<dyn Handler>,
        ),
        (
            ANALYTICS,
            Arc::new(Analytics {
                store: store.clone(),
                clock: Arc::clone(&clock),
            }),
        ),
        (PERSISTER, Arc::new(Persister::new(store, clock))),
    ]
}
