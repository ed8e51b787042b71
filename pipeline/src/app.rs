//! The whole pipeline in one process: the collector, the three shipped stages and the outbox
//! relay on one store, against any Kafka bootstrap address. `tidepool up` runs it next to an
//! embedded broker; tests run it against Tidepool or Apache Kafka alike.

use std::net::SocketAddr;
use std::sync::Arc;

use tidepool_client::{Acks, Admin, Client, ClientConfig, Producer, ProducerConfig};
use tidepool_io::Env;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::collector::{CollectorConfig, router};
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
}

impl PipelineConfig {
    pub fn new(bootstrap: impl Into<String>) -> PipelineConfig {
        PipelineConfig {
            bootstrap: bootstrap.into(),
            collector_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            collector: CollectorConfig::default(),
            topics: TopicsConfig::default(),
            stage: StageConfig::new(""),
        }
    }
}

/// A running pipeline. Dropping it does not stop it; call [`PipelineHandle::shutdown`].
pub struct PipelineHandle {
    pub collector_addr: SocketAddr,
    pub metrics: PipelineMetrics,
    pub store: Store,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    producer: Producer,
    client: Client,
}

impl PipelineHandle {
    /// Stops the stages (they leave their groups), the relay and the collector.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let _ = self.producer.close().await;
        self.client.close();
    }
}

/// The producer settings the pipeline relies on: acks=all with idempotence.
pub fn pipeline_producer_config() -> ProducerConfig {
    ProducerConfig::default().acks(Acks::All).idempotence(true)
}

/// Starts the collector, the shipped stages and the relay on `store`, with extra stages
/// (`extra`: group name and handler) alongside the shipped ones.
pub async fn start(
    env: Env,
    config: PipelineConfig,
    store: Store,
    extra: Vec<(String, Arc<dyn Handler>)>,
) -> anyhow::Result<PipelineHandle> {
    let client_config = ClientConfig::new(config.bootstrap.clone());
    let client = Client::connect(env.clone(), client_config.clone()).await?;
    ensure_topics(&Admin::new(client.clone()), &config.topics).await?;
    let producer = Producer::new(client.clone(), pipeline_producer_config()).await?;
    let metrics = PipelineMetrics::new();
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();

    let mut stages: Vec<(String, Arc<dyn Handler>)> = shipped_handlers(&store, &env.clock)
        .into_iter()
        .map(|(group, handler)| (group.to_owned(), handler))
        .collect();
    stages.extend(extra);
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
        let stopped = stopped.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(error) = stage.run(stopped).await {
                tracing::error!(%group, %error, "stage stopped");
            }
            stage_client.close();
        }));
    }

    let relay = OutboxRelay::new(store.clone(), Arc::clone(&env.clock), producer.clone());
    tasks.push(tokio::spawn(relay.run(stopped.clone())));

    let listener = tokio::net::TcpListener::bind(config.collector_listen).await?;
    let collector_addr = listener.local_addr()?;
    let app = router(
        producer.clone(),
        config.collector.clone().clock(Arc::clone(&env.clock)),
        metrics.clone(),
    );
    let mut collector_stop = stopped.clone();
    tasks.push(tokio::spawn(async move {
        let shutdown = async move {
            let _ = collector_stop.changed().await;
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%error, "collector stopped");
        }
    }));

    Ok(PipelineHandle {
        collector_addr,
        metrics,
        store,
        stop,
        tasks,
        producer,
        client,
    })
}
