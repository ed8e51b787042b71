//! One gateway node: its clients, its response consumer and its HTTP routes.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use tidepool_client::{
    Acks, Admin, Client, ClientConfig, Consumer, ConsumerConfig, NewTopic, OffsetReset, Producer,
    ProducerConfig, ProducerRecord,
};
use tidepool_io::Env;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::GatewayConfig;
use crate::correlation::{IdGenerator, Ownership};
use crate::directory::ServiceDirectory;
use crate::events::Events;
use crate::forward::Forwarder;
use crate::metrics::GatewayMetrics;
use crate::nodes::{Announcement, NodeTable, NodesLoop};
use crate::parked::Parked;
use crate::responses::{ResponseLoop, Revocations};
use crate::topics::ensure_topic;

/// Why a gateway node could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("kafka: {0}")]
    Kafka(#[from] tidepool_client::Error),
}

/// What the HTTP handlers share.
pub(crate) struct Shared {
    pub(crate) config: GatewayConfig,
    pub(crate) env: Env,
    pub(crate) producer: Producer,
    pub(crate) response_topic: String,
    pub(crate) ids: IdGenerator,
    pub(crate) ownership: Arc<Ownership>,
    pub(crate) parked: Parked,
    pub(crate) metrics: GatewayMetrics,
    pub(crate) services: ServiceDirectory,
    /// Set once the response consumer stopped for good: health fails from then on.
    pub(crate) broken: Arc<OnceLock<String>>,
    /// The events topics read for `?wait=` requests.
    pub(crate) events: Arc<Events>,
    /// WebSockets open on `/ws` now.
    pub(crate) websockets: std::sync::atomic::AtomicUsize,
    /// Turns true when the node shuts down: open WebSockets close.
    pub(crate) stopped: watch::Receiver<bool>,
}

/// A running gateway node. Serve its [`Gateway::router`] on any listener; stop it with
/// [`Gateway::shutdown`].
pub struct Gateway {
    shared: Arc<Shared>,
    client: Client,
    stop: watch::Sender<bool>,
    responses: JoinHandle<()>,
    nodes: JoinHandle<()>,
    events: JoinHandle<()>,
}

impl Gateway {
    /// Connects to `bootstrap`, creates the response topic if missing, joins the response
    /// group and starts reading responses. Requests get 503 until the group has assigned this
    /// node a partition ([`Gateway::wait_until_ready`]).
    pub async fn start(
        env: Env,
        bootstrap: &str,
        config: GatewayConfig,
    ) -> Result<Gateway, GatewayError> {
        let client_config = ClientConfig::new(bootstrap)
            .client_id(format!("gateway-{}-{}", config.deployment, config.node_id));
        Gateway::start_with_client(env, client_config, config).await
    }

    /// [`Gateway::start`] with the Kafka clients' settings given: the simulator shortens
    /// their timeouts, as a crashed broker there drops connections without a word.
    pub async fn start_with_client(
        env: Env,
        client_config: ClientConfig,
        config: GatewayConfig,
    ) -> Result<Gateway, GatewayError> {
        config.validate().map_err(GatewayError::Config)?;
        let client = Client::connect(env.clone(), client_config.clone()).await?;
        let response_topic = config.response_topic();
        ensure_topic(
            &Admin::new(client.clone()),
            &response_topic,
            config.response_partitions,
            config.replication_factor,
        )
        .await?;
        let partitions = i32::try_from(client.topic(&response_topic).await?.partitions.len())
            .map_err(|_| GatewayError::Config("too many response partitions".into()))?;
        if partitions < 1 {
            return Err(GatewayError::Config(format!(
                "{response_topic} has no partitions"
            )));
        }
        let producer = Producer::new(
            client.clone(),
            ProducerConfig::default()
                .acks(Acks::All)
                .idempotence(true)
                .linger(Duration::ZERO)
                .max_block(config.produce_block),
        )
        .await?;

        let ids = IdGenerator::new(
            config.node_id.clone(),
            env.entropy.next_u64(),
            config.correlation_attempts_max,
        );
        let (stop, stopped) = watch::channel(false);
        let table = NodeTable::new(config.nodes_max);
        let nodes = match start_nodes(&env, &client, client_config.clone(), &config, &table).await {
            Ok(nodes) => tokio::spawn(nodes.run(stopped.clone())),
            Err(error) => {
                let _ = producer.close().await;
                client.close();
                return Err(error);
            }
        };
        if let Err(error) = announce(&env, &producer, &config, &table, ids.incarnation()).await {
            let _ = stop.send(true);
            let _ = nodes.await;
            let _ = producer.close().await;
            client.close();
            return Err(error);
        }
        let metrics = GatewayMetrics::new();
        let forwarder = Forwarder::new(env.clone(), table, metrics.clone(), &config);
        let ownership = Arc::new(Ownership::new(partitions));
        let parked = Parked::new(
            config.parked_max,
            config.finished_remembered_max,
            metrics.parked_gauge(),
        );
        let broken = Arc::new(OnceLock::new());
        let client_config_for_events = client_config.clone();
        let responses = match start_responses(
            client_config,
            &config,
            &ownership,
            &parked,
            &metrics,
            &broken,
            forwarder,
        )
        .await
        {
            Ok(responses) => responses,
            Err(error) => {
                let _ = stop.send(true);
                let _ = nodes.await;
                let _ = producer.close().await;
                client.close();
                return Err(error);
            }
        };
        let events = match start_events(&env, client_config_for_events, &config).await {
            Ok(events) => Arc::new(events),
            Err(error) => {
                let _ = stop.send(true);
                let _ = nodes.await;
                let _ = responses.consumer.close().await;
                responses.client.close();
                let _ = producer.close().await;
                client.close();
                return Err(error);
            }
        };
        let events_task = tokio::spawn(crate::events::run(
            Arc::clone(&events),
            parked.clone(),
            metrics.clone(),
            config.poll_wait,
            stopped.clone(),
        ));
        let responses = tokio::spawn(responses.run(stopped.clone()));
        let services = ServiceDirectory::new(client.clone(), config.service_refresh_interval);
        Ok(Gateway {
            shared: Arc::new(Shared {
                config,
                env,
                producer,
                response_topic,
                ids,
                ownership,
                parked,
                metrics,
                services,
                broken,
                events,
                websockets: std::sync::atomic::AtomicUsize::new(0),
                stopped,
            }),
            client,
            stop,
            responses,
            nodes,
            events: events_task,
        })
    }

    /// The node's routes: `/api/{service}/...`, `/internal/responses` (replies forwarded by
    /// other nodes), `/healthz`, `/metrics`.
    pub fn router(&self) -> Router {
        crate::http::router(Arc::clone(&self.shared))
    }

    /// Serves the routes on `listener` until the gateway shuts down; requests in progress
    /// finish first. The future borrows nothing, so it can be spawned.
    pub fn serve<L>(
        &self,
        listener: L,
    ) -> impl std::future::Future<Output = std::io::Result<()>> + Send + 'static
    where
        L: axum::serve::Listener,
        L::Addr: std::fmt::Debug,
    {
        let mut stopped = self.stop.subscribe();
        let router = self.router();
        async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await
        }
    }

    /// Waits until this node owns a response partition (it can take requests), or `limit`.
    /// Whether it does.
    pub async fn wait_until_ready(&self, limit: Duration) -> bool {
        let clock = &self.shared.env.clock;
        let deadline = clock.now() + limit;
        while self.shared.ownership.owned().is_empty() {
            if clock.now() >= deadline {
                return false;
            }
            clock.sleep(Duration::from_millis(10)).await;
        }
        true
    }

    pub fn metrics(&self) -> &GatewayMetrics {
        &self.shared.metrics
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.shared.config
    }

    /// The response partitions this node owns now.
    pub fn owned_partitions(&self) -> std::collections::BTreeSet<i32> {
        self.shared.ownership.owned()
    }

    /// The response topic's partition count.
    pub fn response_partitions(&self) -> i32 {
        self.shared.ownership.partitions()
    }

    /// This run's incarnation, part of every correlation id it makes.
    pub fn incarnation(&self) -> u64 {
        self.shared.ids.incarnation()
    }

    /// A fresh correlation id, as a request would get (for tests and tools).
    pub fn next_correlation_id(&self) -> Result<String, crate::CorrelationError> {
        self.shared.ids.next(&self.shared.ownership)
    }

    /// Requests waiting for their response now.
    pub fn parked(&self) -> usize {
        self.shared.parked.len()
    }

    /// Stops serving, answers the requests still waiting with 503, leaves the response group,
    /// withdraws its announcement (a tombstone: other nodes drop replies for it at once instead
    /// of retrying) and closes the clients.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.shared.parked.close();
        let _ = self.responses.await;
        let _ = self.nodes.await;
        let _ = self.events.await;
        if self.shared.config.advertised_address.is_some() {
            let mut tombstone = ProducerRecord::new(self.shared.config.nodes_topic(), Vec::new())
                .key(self.shared.config.node_id.clone().into_bytes());
            tombstone.value = None;
            match self.shared.producer.send(tombstone).await {
                Ok(delivery) => {
                    if let Err(error) = delivery.await {
                        tracing::warn!(%error, "gateway: withdrawing the announcement");
                    }
                }
                Err(error) => tracing::warn!(%error, "gateway: withdrawing the announcement"),
            }
        }
        let _ = self.shared.producer.close().await;
        self.client.close();
    }
}

/// Creates the nodes topic if missing and starts reading it from the beginning.
async fn start_nodes(
    env: &Env,
    client: &Client,
    client_config: ClientConfig,
    config: &GatewayConfig,
    table: &NodeTable,
) -> Result<NodesLoop, GatewayError> {
    let topic = config.nodes_topic();
    // One partition: a node that reads its own announcement has read every earlier one.
    let created = Admin::new(client.clone())
        .create_topic(
            NewTopic::new(&topic, 1, config.replication_factor).config("cleanup.policy", "compact"),
        )
        .await;
    match created {
        Ok(()) => {}
        Err(error) if error.code() == Some(tidepool_client::KafkaCode::TOPIC_ALREADY_EXISTS) => {}
        Err(error) => return Err(error.into()),
    }
    let partitions = i32::try_from(client.topic(&topic).await?.partitions.len())
        .map_err(|_| GatewayError::Config("too many nodes partitions".into()))?;
    let reader = Client::connect(env.clone(), client_config).await?;
    let consumer = Consumer::new(
        reader.clone(),
        ConsumerConfig {
            auto_offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        }
        .fetch_max_wait(config.poll_wait),
    )
    .await;
    let consumer = match consumer {
        Ok(consumer) => consumer,
        Err(error) => {
            reader.close();
            return Err(error.into());
        }
    };
    let nodes = NodesLoop {
        client: reader,
        consumer,
        poll_wait: config.poll_wait,
        table: table.clone(),
    };
    if let Err(error) = nodes.assign(&topic, partitions).await {
        nodes.client.close();
        return Err(error.into());
    }
    Ok(nodes)
}

/// The events reader: a Client of its own (its long polls must not queue in front of the
/// others' requests) and a consumer without group, assigned topics as waits need them.
async fn start_events(
    env: &Env,
    client_config: ClientConfig,
    config: &GatewayConfig,
) -> Result<Events, GatewayError> {
    let client = Client::connect(env.clone(), client_config).await?;
    let consumer = Consumer::new(
        client.clone(),
        ConsumerConfig {
            auto_offset_reset: OffsetReset::Latest,
            ..ConsumerConfig::default()
        }
        .max_poll_records(config.max_poll_records)
        .fetch_max_wait(config.poll_wait),
    )
    .await;
    match consumer {
        Ok(consumer) => Ok(Events::new(
            client,
            consumer,
            config.node_id.clone(),
            config.events_topics_max,
            config.produce_block,
        )),
        Err(error) => {
            client.close();
            Err(error.into())
        }
    }
}

/// Announces this node's address and incarnation, then waits until its reader has read the
/// announcement back: the table then holds every node that announced before it, so a reply for
/// one of them is not mistaken for a reply for a node that is gone.
async fn announce(
    env: &Env,
    producer: &Producer,
    config: &GatewayConfig,
    table: &NodeTable,
    incarnation: u64,
) -> Result<(), GatewayError> {
    let Some(address) = config.advertised_address.clone() else {
        return Ok(());
    };
    let announcement = Announcement {
        address,
        incarnation,
    };
    let record = ProducerRecord::new(config.nodes_topic(), announcement.encode())
        .key(config.node_id.clone().into_bytes());
    producer.send(record).await?.await?;
    let deadline = env.clock.now() + config.rebalance_timeout;
    while table.get(&config.node_id).as_ref() != Some(&announcement) {
        if env.clock.now() >= deadline {
            return Err(GatewayError::Config(format!(
                "never read its own announcement back from {}",
                config.nodes_topic()
            )));
        }
        env.clock.sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// The forwarder brings the Env the response consumer's Client runs on.
async fn start_responses(
    client_config: ClientConfig,
    config: &GatewayConfig,
    ownership: &Arc<Ownership>,
    parked: &Parked,
    metrics: &GatewayMetrics,
    broken: &Arc<OnceLock<String>>,
    forwarder: Forwarder,
) -> Result<ResponseLoop, GatewayError> {
    let client = Client::connect(forwarder.env.clone(), client_config).await?;
    let consumer = Consumer::new(
        client.clone(),
        ConsumerConfig::new(config.group())
            .auto_commit(true)
            .auto_commit_interval(config.commit_interval)
            // A response written before this node's first assignment answers nobody here.
            .auto_offset_reset(OffsetReset::Latest)
            .max_poll_records(config.max_poll_records)
            .fetch_max_wait(config.poll_wait)
            .session_timeout(config.session_timeout)
            .rebalance_timeout(config.rebalance_timeout)
            .heartbeat_interval(config.session_timeout / 4),
    )
    .await;
    let consumer = match consumer {
        Ok(consumer) => consumer,
        Err(error) => {
            client.close();
            return Err(error.into());
        }
    };
    consumer.set_rebalance_listener(Arc::new(Revocations {
        ownership: Arc::clone(ownership),
    }));
    let topic = config.response_topic();
    if let Err(error) = consumer.subscribe(&[topic.as_str()]).await {
        client.close();
        return Err(error.into());
    }
    Ok(ResponseLoop {
        client,
        consumer,
        topic,
        node_id: config.node_id.clone(),
        poll_wait: config.poll_wait,
        ownership: Arc::clone(ownership),
        parked: parked.clone(),
        metrics: metrics.clone(),
        broken: Arc::clone(broken),
        forwarder,
        forward_queue_max: config.forward_queue_max,
        sabotage_no_forwarding: config.sabotage_no_forwarding,
    })
}
