//! The pipeline's hosts: the collector (axum over the simulated network), the stages host
//! (the three shipped stages and the outbox relay, their store on the host's `SimDisk`), the
//! HTTP client that posts events, and the reader that drains every pipeline topic in the heal
//! phase. The broker host is the one of [`crate::runner`].
//!
//! The stages run the shipped handlers behind one wrapper, [`Flaky`], which makes an event fail
//! its first `fail` attempts (the event's payload says how many), so retries and dead letters
//! happen on purpose and the checker knows which to expect.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tidepool_client::{
    Admin, BoxFuture, Client, Consumer, ConsumerConfig, OffsetReset, OffsetSpec, Producer,
    TopicPartition,
};
use tidepool_io::Env;
use tidepool_pipeline::collector::{CollectorConfig, router};
use tidepool_pipeline::metrics::PipelineMetrics;
use tidepool_pipeline::runtime::{Handler, HandlerError, Incoming, Stage, StageConfig, headers};
use tidepool_pipeline::stages::{OUTBOX_SEQ, OutboxRelay, PERSISTER, Persister, shipped_handlers};
use tidepool_pipeline::store::{Store, StoreConfig};
use tidepool_pipeline::topics::{self, TopicsConfig, ensure_topics};
use tokio::sync::{Notify, watch};

use super::check::{OutputRecord, PostOutcome, PostedEvent};
use super::scenario::PipelineSwarm;
use crate::env::{FaultSites, SIM_EPOCH_MS};
use crate::runner::workload::{client_config, lock};
use crate::scenario::Variant;

pub const COLLECTOR_PORT: u16 = 8080;
pub const STORE_PATH: &str = "/var/lib/pipeline/store.redb";
/// Every topic the pipeline writes, which the reader drains.
pub const TOPICS: [&str; 5] = [
    topics::RAW,
    topics::RETRY,
    topics::DEAD_LETTERS,
    topics::ENRICHED,
    topics::PERSISTED,
];
const TENANTS: u64 = 3;
/// Events are spread over minutes, so the analytics rollups have several buckets.
const EVENT_SPACING_MS: i64 = 13_000;
/// How long the client waits for an answer before calling the outcome unknown.
const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the hosts and the driver share (one thread: the simulation's).
pub struct PipelineShared {
    pub sites: Arc<FaultSites>,
    pub swarm: PipelineSwarm,
    pub variant: Variant,
    /// The stages host's store while that host is up: the driver reads it in the heal phase.
    pub store: Mutex<Option<Store>>,
    /// Posts waiting for the client: (events, failures before success).
    pub posts: Mutex<VecDeque<(u8, u8)>>,
    pub posts_ready: Notify,
    /// Posts taken but not yet answered (or timed out).
    pub posts_in_flight: AtomicU64,
    pub posted: Mutex<BTreeMap<String, PostedEvent>>,
    pub next_event: AtomicU64,
    /// Drains asked for, and the last one done: (its number, the records read).
    pub drains_asked: AtomicU64,
    pub drain_asked: Notify,
    pub drained: Mutex<Option<(u64, Drained)>>,
}

impl PipelineShared {
    pub fn new(sites: Arc<FaultSites>, swarm: PipelineSwarm, variant: Variant) -> PipelineShared {
        PipelineShared {
            sites,
            swarm,
            variant,
            store: Mutex::new(None),
            posts: Mutex::new(VecDeque::new()),
            posts_ready: Notify::new(),
            posts_in_flight: AtomicU64::new(0),
            posted: Mutex::new(BTreeMap::new()),
            next_event: AtomicU64::new(0),
            drains_asked: AtomicU64::new(0),
            drain_asked: Notify::new(),
            drained: Mutex::new(None),
        }
    }

    pub fn post(&self, count: u8, fail: u8) {
        lock(&self.posts).push_back((count, fail));
        self.posts_ready.notify_one();
    }

    /// Asks the reader for a fresh drain; returns its number.
    pub fn ask_drain(&self) -> u64 {
        let number = self.drains_asked.fetch_add(1, Ordering::SeqCst) + 1;
        self.drain_asked.notify_one();
        number
    }

    fn topics_config(&self) -> TopicsConfig {
        TopicsConfig {
            partitions: self.swarm.partitions,
            replication_factor: 1,
        }
    }
}

/// Every partition of every pipeline topic read to its end, once.
#[derive(Debug, Clone, Default)]
pub struct Drained {
    pub records: Vec<OutputRecord>,
    /// End offset per (topic, partition).
    pub ends: BTreeMap<(String, i32), i64>,
}

/// Connects to the broker, retrying while it is away, with the pipeline's topics in place.
async fn connect(env: &Env, shared: &PipelineShared) -> Client {
    let mut attempt = 0u64;
    loop {
        if let Ok(client) = Client::connect(env.clone(), client_config()).await {
            if ensure_topics(&Admin::new(client.clone()), &shared.topics_config())
                .await
                .is_ok()
            {
                return client;
            }
            client.close();
        }
        attempt += 1;
        env.clock
            .sleep(Duration::from_millis(50 * attempt.min(10)))
            .await;
    }
}

async fn producer(env: &Env, client: &Client) -> Producer {
    loop {
        if let Ok(producer) = Producer::new(
            client.clone(),
            tidepool_pipeline::app::pipeline_producer_config(),
        )
        .await
        {
            return producer;
        }
        env.clock.sleep(Duration::from_millis(100)).await;
    }
}

/// One incarnation of the collector.
pub async fn collector_host(env: Env, shared: Arc<PipelineShared>) -> turmoil::Result {
    let client = connect(&env, &shared).await;
    let producer = producer(&env, &client).await;
    let app = router(
        producer,
        CollectorConfig::default().clock(Arc::clone(&env.clock)),
        PipelineMetrics::new(),
    );
    let listener = env
        .transport
        .bind(SocketAddr::from(([0, 0, 0, 0], COLLECTOR_PORT)))
        .await?;
    super::http::serve(listener, app).await;
    Ok(())
}

/// Makes an event fail its first `fail` attempts (from its payload) before the real handler
/// sees it: a failure the checker can predict.
pub struct Flaky {
    pub stage: &'static str,
    pub inner: Arc<dyn Handler>,
}

/// The failures an event asks for: its payload's `fail`.
pub fn failures_asked(incoming: &Incoming) -> u32 {
    incoming
        .value
        .as_deref()
        .and_then(|value| serde_json::from_slice::<serde_json::Value>(value).ok())
        .and_then(|event| event["payload"]["fail"].as_u64())
        .and_then(|fail| u32::try_from(fail).ok())
        .unwrap_or(0)
}

impl Handler for Flaky {
    fn handle<'a>(&'a self, incoming: &'a Incoming) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            tracing::debug!(
                stage = self.stage,
                topic = %incoming.topic,
                offset = incoming.offset,
                attempt = incoming.attempt,
                event = ?incoming.event_id,
                "handling"
            );
            if incoming.attempt <= failures_asked(incoming) {
                return Err(HandlerError::new(format!(
                    "failure asked for, attempt {}",
                    incoming.attempt
                )));
            }
            self.inner.handle(incoming).await
        })
    }
}

fn stage_config(group: &str, shared: &PipelineShared) -> StageConfig {
    StageConfig {
        max_attempts: shared.swarm.max_attempts,
        retry_backoff: Duration::from_millis(100),
        retry_backoff_max: Duration::from_secs(1),
        poll_wait: Duration::from_millis(50),
        max_poll_records: 20,
        lag_interval: Duration::from_secs(5),
        session_timeout: Duration::from_secs(2),
        rebalance_timeout: Duration::from_secs(10),
        sabotage_commit_before_process: shared.variant == Variant::CommitBeforeProcess,
        ..StageConfig::new(group)
    }
}

/// One incarnation of the stages host: opens the store (redb recovers it), then runs the three
/// stages and the relay until crashed. A stage that stops on an error starts again.
pub async fn stages_host(env: Env, shared: Arc<PipelineShared>) -> turmoil::Result {
    let config = StoreConfig {
        sabotage_skip_dedup: shared.variant == Variant::NonIdempotentConsumer,
        ..StoreConfig::default()
    };
    let store = match Store::open_with(Arc::clone(&env.disk), Path::new(STORE_PATH), config) {
        Ok(store) => store,
        // The disk halted at a crash point during recovery: the driver crashes this
        // incarnation; until then, stay quiet.
        Err(error) => {
            tracing::debug!(%error, "store did not open");
            std::future::pending::<()>().await;
            return Ok(());
        }
    };
    *lock(&shared.store) = Some(store.clone());
    let client = connect(&env, &shared).await;
    let producer = producer(&env, &client).await;
    let (_stop, stopped) = watch::channel(false);
    for (group, handler) in shipped_handlers(&store, &env.clock) {
        let handler: Arc<dyn Handler> = if group == PERSISTER && shared.variant == Variant::NoOutbox
        {
            Arc::new(Persister {
                sabotage_direct: Some(producer.clone()),
                ..Persister::new(store.clone(), Arc::clone(&env.clock))
            })
        } else {
            handler
        };
        let handler: Arc<dyn Handler> = Arc::new(Flaky {
            stage: group,
            inner: handler,
        });
        let (env, shared, producer, stopped) = (
            env.clone(),
            Arc::clone(&shared),
            producer.clone(),
            stopped.clone(),
        );
        tokio::spawn(async move {
            loop {
                let client = connect(&env, &shared).await;
                tracing::debug!(%group, "stage starting");
                let started = Stage::new(
                    client.clone(),
                    producer.clone(),
                    stage_config(group, &shared),
                    Arc::clone(&handler),
                    PipelineMetrics::new(),
                )
                .await;
                match started {
                    Ok(stage) => {
                        tracing::debug!(%group, "stage started");
                        if let Err(error) = stage.run(stopped.clone()).await {
                            tracing::debug!(%group, %error, "stage stopped; starting again");
                        }
                    }
                    Err(error) => tracing::debug!(%group, %error, "stage did not start"),
                }
                client.close();
                env.clock.sleep(Duration::from_millis(100)).await;
            }
        });
    }
    OutboxRelay::new(store, Arc::clone(&env.clock), producer)
        .run(stopped)
        .await;
    Ok(())
}

/// The client: posts what the driver asks for, one request at a time, and records each
/// event's outcome.
pub async fn client_host(env: Env, shared: Arc<PipelineShared>) -> turmoil::Result {
    loop {
        let next = lock(&shared.posts).pop_front();
        let Some((count, fail)) = next else {
            shared.posts_ready.notified().await;
            continue;
        };
        shared.posts_in_flight.fetch_add(1, Ordering::SeqCst);
        let mut events = Vec::new();
        let mut ids = Vec::new();
        for _ in 0..count {
            let n = shared.next_event.fetch_add(1, Ordering::SeqCst);
            let id = format!("ev-{n}");
            let tenant = format!("tenant-{}", n % TENANTS);
            let timestamp =
                SIM_EPOCH_MS - 3_600_000 + i64::try_from(n).unwrap_or(0) * EVENT_SPACING_MS;
            events.push(json!({
                "id": id,
                "tenant": tenant,
                "type": "page.view",
                "timestamp": timestamp,
                "payload": { "fail": fail },
            }));
            lock(&shared.posted).insert(
                id.clone(),
                PostedEvent {
                    tenant,
                    timestamp_ms: timestamp,
                    fail: u32::from(fail),
                    outcome: PostOutcome::Pending,
                },
            );
            ids.push(id);
        }
        let body = serde_json::to_vec(&events).unwrap_or_default();
        let answer = super::http::post_json(
            &env,
            super::scenario::PipelineHost::Collector.name(),
            COLLECTOR_PORT,
            "/v1/events",
            body,
            POST_TIMEOUT,
        )
        .await;
        let outcome = match answer {
            Ok(answer) if answer.status == 202 => PostOutcome::Accepted,
            Ok(answer) => PostOutcome::Refused {
                status: answer.status,
                reason: String::from_utf8_lossy(&answer.body).into_owned(),
            },
            Err(reason) => PostOutcome::Unknown { reason },
        };
        let mut posted = lock(&shared.posted);
        for id in ids {
            if let Some(event) = posted.get_mut(&id) {
                event.outcome = outcome.clone();
            }
        }
        drop(posted);
        shared.posts_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The reader: on each drain asked for, reads every partition of every pipeline topic from
/// the beginning to its end with a fresh consumer.
pub async fn reader_host(env: Env, shared: Arc<PipelineShared>) -> turmoil::Result {
    let mut done = 0;
    loop {
        let asked = shared.drains_asked.load(Ordering::SeqCst);
        if asked == done {
            shared.drain_asked.notified().await;
            continue;
        }
        let client = connect(&env, &shared).await;
        if let Some(drained) = drain(&client, &shared).await {
            *lock(&shared.drained) = Some((asked, drained));
            done = asked;
        } else {
            env.clock.sleep(Duration::from_millis(100)).await;
        }
        client.close();
    }
}

async fn drain(client: &Client, shared: &PipelineShared) -> Option<Drained> {
    let partitions: Vec<TopicPartition> = TOPICS
        .iter()
        .flat_map(|topic| {
            (0..shared.swarm.partitions)
                .map(move |partition| TopicPartition::new(*topic, partition))
        })
        .collect();
    let specs = partitions
        .iter()
        .map(|tp| (tp.clone(), OffsetSpec::Latest))
        .collect();
    let listed = Admin::new(client.clone()).list_offsets(specs).await.ok()?;
    let mut ends = BTreeMap::new();
    for tp in &partitions {
        ends.insert((tp.topic.clone(), tp.partition), listed.get(tp)?.offset);
    }
    let consumer = Consumer::new(
        client.clone(),
        ConsumerConfig::default()
            .auto_offset_reset(OffsetReset::Earliest)
            .max_poll_records(500),
    )
    .await
    .ok()?;
    consumer.assign(partitions.clone()).await.ok()?;
    let mut records = Vec::new();
    let mut polls = 0;
    while partitions.iter().any(|tp| {
        consumer
            .position(tp)
            .is_none_or(|position| position < ends[&(tp.topic.clone(), tp.partition)])
    }) {
        polls += 1;
        if polls > 400 {
            return None;
        }
        for record in consumer.poll(Duration::from_millis(100)).await.ok()? {
            let header = |key: &str| {
                record
                    .headers
                    .iter()
                    .rev()
                    .find(|header| header.key == key)
                    .and_then(|header| header.value.as_deref())
                    .map(|value| String::from_utf8_lossy(value).into_owned())
            };
            records.push(OutputRecord {
                topic: record.topic.clone(),
                partition: record.partition,
                offset: record.offset,
                event_id: header(headers::EVENT_ID),
                outbox_seq: header(OUTBOX_SEQ).and_then(|seq| seq.parse().ok()),
                stage: header(headers::STAGE),
                attempt: header(headers::ATTEMPT).and_then(|attempt| attempt.parse().ok()),
            });
        }
    }
    let _ = consumer.close().await;
    Some(Drained { records, ends })
}
