//! The whole pipeline in one process: the collector, the three shipped stages and the outbox
//! relay on one store, against any Kafka bootstrap address. `tidepool up` runs it next to an
//! embedded broker; tests run it against Tidepool or Apache Kafka alike.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tidepool_client::{Acks, Admin, Client, ClientConfig, Producer, ProducerConfig};
use tidepool_io::Env;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::collector::{CollectorConfig, router, serve_with_shutdown};
use crate::metrics::PipelineMetrics;
use crate::runtime::{Handler, Stage, StageConfig};
use crate::stages::{OutboxRelay, shipped_handlers};
use crate::store::Store;
use crate::topics::{TopicsConfig, ensure_topics};

/// What to start.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub bootstrap: String,
    /// Where the collector listens (port 0: any free port).
    pub collector_listen: SocketAddr,
    pub collector: CollectorConfig,
    pub topics: TopicsConfig,
    /// Settings shared by the shipped stages (the group is set per stage).
    pub stage: StageConfig,
    /// How long the collector's producer holds a batch for more records. The collector answers
    /// only once every record is acknowledged, so any linger is added to each 202; under load,
    /// batches still form from the requests in flight. Default 0.
    pub collector_linger: Duration,
    /// The linger of the producer the stages (retries, dead letters) and the outbox relay
    /// share. Default 0: the relay publishes a committed row at once.
    pub relay_linger: Duration,
    /// Run the collector on a runtime of its own, on a thread of its own (default), so no
    /// other task on a runtime worker (a stage's store transaction, the broker's work when it
    /// runs in the same process) delays an HTTP answer. `false` runs it on the caller's runtime.
    pub collector_own_thread: bool,
    /// Run the stages and the relay on a runtime of their own, on a thread of their own
    /// (default): a stage round's store transaction runs without awaiting anything, for up to
    /// `stage.max_poll_records` events, and would hold a worker of the caller's runtime (and
    /// the broker, when it runs there, as in `tidepool up`) for that long. `false` runs them on
    /// the caller's runtime.
    pub stages_own_thread: bool,
    /// Worker threads of the stages' own runtime: 1 runs them all on their one thread.
    pub stages_workers: usize,
}

impl PipelineConfig {
    pub fn new(bootstrap: impl Into<String>) -> PipelineConfig {
        PipelineConfig {
            bootstrap: bootstrap.into(),
            collector_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            collector: CollectorConfig::default(),
            topics: TopicsConfig::default(),
            // Larger rounds than a stage's default: one store transaction and one offset
            // commit per round, on the stages' own thread, where a long round delays no answer.
            stage: StageConfig {
                max_poll_records: 500,
                ..StageConfig::new("")
            },
            collector_linger: Duration::ZERO,
            relay_linger: Duration::ZERO,
            collector_own_thread: true,
            stages_own_thread: true,
            stages_workers: 1,
        }
    }
}

/// A running pipeline. Dropping it does not stop it; call [`PipelineHandle::shutdown`].
pub struct PipelineHandle {
    pub collector_addr: SocketAddr,
    pub metrics: PipelineMetrics,
    pub store: Store,
    stop: watch::Sender<bool>,
    parts: Parts,
    client: Client,
}

impl PipelineHandle {
    /// Stops the stages (they leave their groups), the relay and the collector.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.parts.join().await;
        self.client.close();
    }
}

/// The producer settings the pipeline relies on: acks=all with idempotence (and the client's
/// default linger; `start` sets its own, see [`PipelineConfig`]).
pub fn pipeline_producer_config() -> ProducerConfig {
    ProducerConfig::default().acks(Acks::All).idempotence(true)
}

/// A part of the pipeline running on a thread and runtime of its own.
struct RuntimeThread {
    thread: std::thread::JoinHandle<()>,
    /// Completes once the part stopped and closed its clients.
    stopped: oneshot::Receiver<()>,
}

impl RuntimeThread {
    async fn join(self) {
        // Awaited first, then joined: joining a running thread would block this runtime's worker.
        let _ = self.stopped.await;
        let _ = self.thread.join();
    }
}

/// Runs `part` on a new thread with a runtime of its own (current-thread for `workers` ≤ 1,
/// else multi-thread with that many workers), which also drives the clients and producers
/// `part` creates (they spawn their tasks where they are created).
/// Returns once `part` reported itself started (or failed to start).
///
/// Threads are allowed here and only here: `app::start` is the process `tidepool up` runs and
/// never runs in the simulator, which starts the collector and the stages itself (DESIGN.md §2
/// keeps threads out of code that runs in the simulation; ARCHITECTURE.md, "Pipeline").
async fn spawn_runtime_thread<P, F>(
    name: &str,
    workers: usize,
    part: P,
) -> anyhow::Result<RuntimeThread>
where
    P: FnOnce(oneshot::Sender<anyhow::Result<()>>) -> F + Send + 'static,
    F: Future<Output = ()>,
{
    let (ready, started) = oneshot::channel();
    let (done, stopped) = oneshot::channel();
    let runtime = match workers {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        workers => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(format!("{name}-worker"))
            .enable_all()
            .build()?,
    };
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            runtime.block_on(part(ready));
            // Tasks `part` left behind are dropped with the runtime.
            drop(runtime);
            let _ = done.send(());
        })?;
    let running = RuntimeThread { thread, stopped };
    match started.await {
        Ok(Ok(())) => Ok(running),
        Ok(Err(error)) => {
            running.join().await;
            Err(error)
        }
        Err(_) => anyhow::bail!("the {name} thread ended before it started"),
    }
}

/// The collector: its own client and producer (lingering `collector_linger`), serving on
/// `listener` until `stop` turns true. Reports on `ready` once it serves.
async fn run_collector(
    env: Env,
    config: PipelineConfig,
    listener: std::net::TcpListener,
    metrics: PipelineMetrics,
    mut stop: watch::Receiver<bool>,
    ready: oneshot::Sender<anyhow::Result<()>>,
) {
    let setup = async {
        let client =
            Client::connect(env.clone(), ClientConfig::new(config.bootstrap.clone())).await?;
        let producer_config = pipeline_producer_config().linger(config.collector_linger);
        let producer = match Producer::new(client.clone(), producer_config).await {
            Ok(producer) => producer,
            Err(error) => {
                client.close();
                return Err(anyhow::Error::from(error));
            }
        };
        match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => Ok((client, producer, listener)),
            Err(error) => {
                let _ = producer.close().await;
                client.close();
                Err(error.into())
            }
        }
    };
    let (client, producer, listener) = match setup.await {
        Ok(parts) => parts,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let app = router(
        producer.clone(),
        config.collector.clone().clock(Arc::clone(&env.clock)),
        metrics,
    );
    let shutdown = async move {
        let _ = stop.changed().await;
    };
    if let Err(error) = serve_with_shutdown(listener, app, shutdown).await {
        tracing::error!(%error, "collector stopped");
    }
    let _ = producer.close().await;
    client.close();
}

/// The stages (each on connections of its own) and the outbox relay, sharing one producer
/// (lingering `relay_linger`), until `stop` turns true. Reports on `ready` once every stage
/// joined its group.
async fn run_stages(
    env: Env,
    config: PipelineConfig,
    store: Store,
    stages: Vec<(String, Arc<dyn Handler>)>,
    metrics: PipelineMetrics,
    stop: watch::Receiver<bool>,
    ready: oneshot::Sender<anyhow::Result<()>>,
) {
    let client_config = ClientConfig::new(config.bootstrap.clone());
    let setup = async {
        let client = Client::connect(env.clone(), client_config.clone()).await?;
        let producer = Producer::new(
            client.clone(),
            pipeline_producer_config().linger(config.relay_linger),
        )
        .await?;
        let mut started = Vec::new();
        for (group, handler) in stages {
            let stage_config = StageConfig {
                group: group.clone(),
                ..config.stage.clone()
            };
            // Each stage gets connections of its own: a Kafka broker answers one request per
            // connection at a time, so a member's long-polling fetch would hold back the
            // producer's acknowledgements (and the other members' heartbeats) queued behind it.
            let stage_client = Client::connect(env.clone(), client_config.clone()).await?;
            let stage = Stage::new(
                stage_client.clone(),
                producer.clone(),
                stage_config,
                handler,
                metrics.clone(),
            )
            .await?;
            started.push((group, stage, stage_client));
        }
        anyhow::Ok((client, producer, started))
    };
    let (client, producer, started) = match setup.await {
        Ok(parts) => parts,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    let mut tasks = Vec::new();
    for (group, stage, stage_client) in started {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(error) = stage.run(stop).await {
                tracing::error!(%group, %error, "stage stopped");
            }
            stage_client.close();
        }));
    }
    let relay = OutboxRelay::new(store, Arc::clone(&env.clock), producer.clone());
    tasks.push(tokio::spawn(relay.run(stop)));
    let _ = ready.send(Ok(()));
    for task in tasks {
        let _ = task.await;
    }
    let _ = producer.close().await;
    client.close();
}

/// Starts the collector, the shipped stages and the relay on `store`, with extra stages
/// (`extra`: group name and handler) alongside the shipped ones.
pub async fn start(
    env: Env,
    config: PipelineConfig,
    store: Store,
    extra: Vec<(String, Arc<dyn Handler>)>,
) -> anyhow::Result<PipelineHandle> {
    let client = Client::connect(env.clone(), ClientConfig::new(config.bootstrap.clone())).await?;
    ensure_topics(&Admin::new(client.clone()), &config.topics).await?;
    let metrics = PipelineMetrics::new();
    let (stop, stopped) = watch::channel(false);
    let mut parts = Parts::default();

    let mut stages: Vec<(String, Arc<dyn Handler>)> = shipped_handlers(&store, &env.clock)
        .into_iter()
        .map(|(group, handler)| (group.to_owned(), handler))
        .collect();
    stages.extend(extra);
    let stages_part = {
        let (env, config, store, metrics, stopped) = (
            env.clone(),
            config.clone(),
            store.clone(),
            metrics.clone(),
            stopped.clone(),
        );
        move |ready| run_stages(env, config, store, stages, metrics, stopped, ready)
    };
    parts
        .start(
            config.stages_own_thread,
            config.stages_workers,
            "stages",
            stages_part,
        )
        .await?;

    let listener = std::net::TcpListener::bind(config.collector_listen)?;
    listener.set_nonblocking(true)?;
    let collector_addr = listener.local_addr()?;
    let collector_part = {
        let (env, config, metrics, stopped) = (
            env.clone(),
            config.clone(),
            metrics.clone(),
            stopped.clone(),
        );
        move |ready| run_collector(env, config, listener, metrics, stopped, ready)
    };
    if let Err(error) = parts
        .start(config.collector_own_thread, 1, "collector", collector_part)
        .await
    {
        let _ = stop.send(true);
        parts.join().await;
        client.close();
        return Err(error);
    }

    Ok(PipelineHandle {
        collector_addr,
        metrics,
        store,
        stop,
        parts,
        client,
    })
}

/// The running parts of a pipeline: tasks on the caller's runtime, or threads of their own.
#[derive(Default)]
struct Parts {
    tasks: Vec<JoinHandle<()>>,
    threads: Vec<RuntimeThread>,
}

impl Parts {
    /// Starts `part` on a thread of its own or as a task here; returns once it started.
    async fn start<P, F>(
        &mut self,
        own_thread: bool,
        workers: usize,
        name: &str,
        part: P,
    ) -> anyhow::Result<()>
    where
        P: FnOnce(oneshot::Sender<anyhow::Result<()>>) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        if own_thread {
            self.threads
                .push(spawn_runtime_thread(name, workers, part).await?);
            return Ok(());
        }
        let (ready, started) = oneshot::channel();
        self.tasks.push(tokio::spawn(part(ready)));
        match started.await {
            Ok(result) => result,
            Err(_) => anyhow::bail!("the {name} task ended before it started"),
        }
    }

    async fn join(self) {
        for task in self.tasks {
            let _ = task.await;
        }
        for thread in self.threads {
            thread.join().await;
        }
    }
}
