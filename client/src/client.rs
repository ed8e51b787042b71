//! The client core: bootstrap, the metadata cache, one connection per broker, and sending a
//! request to a broker, to any broker, or to a group's coordinator. The producer, consumer and
//! admin are built on it and share one `Client` (it is cheap to clone).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, MetadataRequest, MetadataResponse, TopicName,
    metadata_request::MetadataRequestTopic,
};
use kafka_protocol::protocol::{Request, StrBytes};
use tidepool_io::Env;
use tokio::task::AbortHandle;

use crate::config::ClientConfig;
use crate::conn::Connection;
use crate::error::{Error, KafkaCode, Result};
use crate::versions;

/// A broker as metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
}

impl Broker {
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    pub partition: i32,
    /// -1 while the partition has no leader.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub error: Option<KafkaCode>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub name: String,
    pub id: uuid::Uuid,
    pub internal: bool,
    /// Indexed by partition number.
    pub partitions: Vec<PartitionMetadata>,
}

/// What the client knows of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    pub cluster_id: Option<String>,
    pub controller: i32,
    pub brokers: BTreeMap<i32, Broker>,
    pub topics: BTreeMap<String, TopicMetadata>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Connection>>>>;

struct Inner {
    env: Env,
    config: ClientConfig,
    metadata: Mutex<Metadata>,
    /// Topics whose metadata the refresher keeps fresh.
    topics_in_use: Mutex<BTreeSet<String>>,
    /// Node id → its connection (bootstrap addresses use ids -1, -2, ...).
    slots: Mutex<BTreeMap<i32, Slot>>,
    /// Group → coordinator node.
    coordinators: Mutex<BTreeMap<String, i32>>,
    refresher: Mutex<Option<AbortHandle>>,
    next_node: AtomicUsize,
    closed: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.refresher).take() {
            task.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A connection to a Kafka cluster. Clones share connections and metadata.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bootstrap", &self.inner.config.bootstrap)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Reads the cluster's metadata from a bootstrap address and starts the metadata refresher.
    pub async fn connect(env: Env, config: ClientConfig) -> Result<Client> {
        if config.bootstrap.is_empty() {
            return Err(Error::Invalid("no bootstrap address".into()));
        }
        let client = Client {
            inner: Arc::new(Inner {
                env,
                config,
                metadata: Mutex::new(Metadata::default()),
                topics_in_use: Mutex::new(BTreeSet::new()),
                slots: Mutex::new(BTreeMap::new()),
                coordinators: Mutex::new(BTreeMap::new()),
                refresher: Mutex::new(None),
                next_node: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
            }),
        };
        client.refresh_topics(&[]).await?;
        let weak = Arc::downgrade(&client.inner);
        let task = tokio::spawn(refresh_periodically(weak));
        *lock(&client.inner.refresher) = Some(task.abort_handle());
        Ok(client)
    }

    pub fn env(&self) -> &Env {
        &self.inner.env
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// A copy of what the client knows of the cluster now.
    pub fn metadata(&self) -> Metadata {
        lock(&self.inner.metadata).clone()
    }

    pub fn cached_topic(&self, topic: &str) -> Option<TopicMetadata> {
        lock(&self.inner.metadata).topics.get(topic).cloned()
    }

    /// The topic's metadata, from the cache or else asked for (without creating the topic).
    pub async fn topic(&self, topic: &str) -> Result<TopicMetadata> {
        if let Some(known) = self.cached_topic(topic) {
            return Ok(known);
        }
        self.refresh_topics(&[topic]).await?;
        self.cached_topic(topic).ok_or_else(|| {
            Error::kafka(
                KafkaCode::UNKNOWN_TOPIC_OR_PARTITION,
                format!("metadata for {topic}"),
                None,
            )
        })
    }

    /// The leader node and leader epoch of a partition, from the cache.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<(i32, i32)> {
        let metadata = lock(&self.inner.metadata);
        let found = metadata
            .topics
            .get(topic)?
            .partitions
            .get(usize::try_from(partition).ok()?)?;
        (found.leader >= 0).then_some((found.leader, found.leader_epoch))
    }

    /// Asks for the metadata of `topics` (none: brokers only) and merges it into the cache; the
    /// topics are kept fresh from then on. Topics the cluster does not know leave the cache.
    pub async fn refresh_topics(&self, topics: &[&str]) -> Result<()> {
        {
            let mut in_use = lock(&self.inner.topics_in_use);
            in_use.extend(topics.iter().map(|topic| topic.to_string()));
        }
        let names: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let response = self
            .send_any(versions::METADATA, |version| {
                let request = MetadataRequest::default().with_topics(Some(
                    names
                        .iter()
                        .map(|name| {
                            MetadataRequestTopic::default()
                                .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
                        })
                        .collect(),
                ));
                if version >= 4 {
                    request.with_allow_auto_topic_creation(false)
                } else {
                    request
                }
            })
            .await?;
        self.merge_metadata(response, &names);
        Ok(())
    }

    /// Refreshes every topic in use (the periodic refresh, and after stale-metadata errors).
    pub async fn refresh_metadata(&self) -> Result<()> {
        let topics: Vec<String> = lock(&self.inner.topics_in_use).iter().cloned().collect();
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.refresh_topics(&names).await
    }

    /// Every topic in the cluster (also refreshes their metadata).
    pub async fn list_topics(&self) -> Result<Vec<TopicMetadata>> {
        let response = self
            .send_any(versions::METADATA, |version| {
                let request = MetadataRequest::default().with_topics(None);
                if version >= 4 {
                    request.with_allow_auto_topic_creation(false)
                } else {
                    request
                }
            })
            .await?;
        let names: Vec<String> = response
            .topics
            .iter()
            .filter_map(|topic| topic.name.as_ref().map(|name| name.0.to_string()))
            .collect();
        self.merge_metadata(response, &names);
        let metadata = lock(&self.inner.metadata);
        Ok(names
            .iter()
            .filter_map(|name| metadata.topics.get(name).cloned())
            .collect())
    }

    fn merge_metadata(&self, response: MetadataResponse, asked: &[String]) {
        let mut metadata = lock(&self.inner.metadata);
        if !response.brokers.is_empty() {
            metadata.brokers = response
                .brokers
                .iter()
                .filter_map(|broker| {
                    Some((
                        broker.node_id.0,
                        Broker {
                            node_id: broker.node_id.0,
                            host: broker.host.to_string(),
                            port: u16::try_from(broker.port).ok()?,
                            rack: broker.rack.as_ref().map(|rack| rack.to_string()),
                        },
                    ))
                })
                .collect();
        }
        metadata.controller = response.controller_id.0;
        if let Some(cluster_id) = &response.cluster_id {
            metadata.cluster_id = Some(cluster_id.to_string());
        }
        for name in asked {
            metadata.topics.remove(name);
        }
        for topic in response.topics {
            let Some(name) = topic.name.map(|name| name.0.to_string()) else {
                continue;
            };
            if KafkaCode::from_code(topic.error_code).is_some() && topic.partitions.is_empty() {
                continue;
            }
            let mut partitions: Vec<PartitionMetadata> = topic
                .partitions
                .iter()
                .map(|partition| PartitionMetadata {
                    partition: partition.partition_index,
                    leader: partition.leader_id.0,
                    leader_epoch: partition.leader_epoch,
                    replicas: partition.replica_nodes.iter().map(|node| node.0).collect(),
                    isr: partition.isr_nodes.iter().map(|node| node.0).collect(),
                    error: KafkaCode::from_code(partition.error_code),
                })
                .collect();
            partitions.sort_by_key(|partition| partition.partition);
            metadata.topics.insert(
                name.clone(),
                TopicMetadata {
                    name,
                    id: topic.topic_id,
                    internal: topic.is_internal,
                    partitions,
                },
            );
        }
    }

    /// The address of a node: a broker from metadata, or a bootstrap address (ids -1, -2, ...).
    fn address_of(&self, node: i32) -> Option<String> {
        if node < 0 {
            let index = usize::try_from(-(i64::from(node)) - 1).ok()?;
            return self.inner.config.bootstrap.get(index).cloned();
        }
        lock(&self.inner.metadata)
            .brokers
            .get(&node)
            .map(Broker::address)
    }

    /// The open connection to `node`, opening one if needed.
    async fn connection(&self, node: i32) -> Result<Arc<Connection>> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let address = self.address_of(node).ok_or_else(|| {
            Error::Invalid(format!("node {node} is not in the cluster's metadata"))
        })?;
        let slot = Arc::clone(lock(&self.inner.slots).entry(node).or_default());
        let mut open = slot.lock().await;
        if let Some(connection) = open.as_ref() {
            if !connection.is_closed() && connection.addr() == address {
                return Ok(Arc::clone(connection));
            }
            connection.close("replaced");
        }
        let connection = Connection::open(&self.inner.env, &self.inner.config, &address).await?;
        *open = Some(Arc::clone(&connection));
        Ok(connection)
    }

    /// Sends a request to `node` at the highest version in `ours` the broker speaks; `build`
    /// makes the request for that version.
    pub async fn send<R: Request>(
        &self,
        node: i32,
        ours: (i16, i16),
        build: impl FnOnce(i16) -> R,
    ) -> Result<R::Response> {
        let connection = self.connection(node).await?;
        let version = connection.version::<R>(ours)?;
        connection.send(version, &build(version)).await
    }

    /// Like [`Client::send`], but expects no answer (Produce with acks=0).
    pub async fn send_only<R: Request>(
        &self,
        node: i32,
        ours: (i16, i16),
        build: impl FnOnce(i16) -> R,
    ) -> Result<()> {
        let connection = self.connection(node).await?;
        let version = connection.version::<R>(ours)?;
        connection.send_only(version, &build(version)).await
    }

    /// Whether `node` serves `api_key` (connects if needed).
    pub async fn supports(&self, node: i32, api_key: i16) -> Result<bool> {
        Ok(self.connection(node).await?.supports(api_key))
    }

    /// Nodes to try for a request any broker can answer: known brokers, starting at a rotating
    /// one, then the bootstrap addresses.
    fn any_nodes(&self) -> Vec<i32> {
        let mut nodes: Vec<i32> = lock(&self.inner.metadata).brokers.keys().copied().collect();
        if !nodes.is_empty() {
            let start = self.inner.next_node.fetch_add(1, Ordering::Relaxed) % nodes.len();
            nodes.rotate_left(start);
        }
        let bootstrap = self.inner.config.bootstrap.len();
        nodes.extend((0..bootstrap).filter_map(|index| i32::try_from(-(index as i64) - 1).ok()));
        nodes
    }

    /// Sends to the first broker that accepts a connection.
    pub async fn send_any<R: Request>(
        &self,
        ours: (i16, i16),
        build: impl Fn(i16) -> R,
    ) -> Result<R::Response> {
        let mut last_error = Error::Closed;
        for node in self.any_nodes() {
            match self.send(node, ours, &build).await {
                Ok(response) => return Ok(response),
                Err(error @ (Error::Connect { .. } | Error::Disconnected { .. })) => {
                    tracing::debug!(node, %error, "trying another broker");
                    last_error = error;
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error)
    }

    /// The controller node as metadata names it (admin requests go there).
    pub fn controller(&self) -> Option<i32> {
        let metadata = lock(&self.inner.metadata);
        (metadata.controller >= 0 && metadata.brokers.contains_key(&metadata.controller))
            .then_some(metadata.controller)
    }

    /// The coordinator of a consumer group, from the cache or FindCoordinator, retried with
    /// backoff while the cluster answers retriable errors, up to the request timeout.
    pub async fn coordinator(&self, group: &str) -> Result<i32> {
        let cached = lock(&self.inner.coordinators).get(group).copied();
        if let Some(node) = cached {
            // A node that left the metadata (taken down) is asked about again.
            if lock(&self.inner.metadata).brokers.contains_key(&node) {
                return Ok(node);
            }
            self.forget_coordinator(group);
        }
        let deadline = self.now() + self.inner.config.request_timeout;
        let mut attempt = 0;
        loop {
            match self.find_coordinator(group).await {
                Ok(node) => {
                    lock(&self.inner.coordinators).insert(group.to_string(), node);
                    return Ok(node);
                }
                Err(error) if error.is_retriable() && self.now() < deadline => {
                    tracing::debug!(group, %error, "coordinator not found yet");
                    self.sleep(self.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn find_coordinator(&self, group: &str) -> Result<i32> {
        let response = self
            .send_any(versions::FIND_COORDINATOR, |version| {
                let request = FindCoordinatorRequest::default();
                if version >= 4 {
                    request.with_coordinator_keys(vec![StrBytes::from_string(group.to_string())])
                } else {
                    request.with_key(StrBytes::from_string(group.to_string()))
                }
            })
            .await?;
        let (error_code, message, node, host, port) = match response.coordinators.first() {
            Some(found) => (
                found.error_code,
                found.error_message.clone(),
                found.node_id,
                found.host.clone(),
                found.port,
            ),
            None => (
                response.error_code,
                response.error_message.clone(),
                response.node_id,
                response.host.clone(),
                response.port,
            ),
        };
        if let Some(code) = KafkaCode::from_code(error_code) {
            return Err(Error::kafka(
                code,
                format!("FindCoordinator for group {group}"),
                message.map(|m| m.to_string()),
            ));
        }
        let BrokerId(node) = node;
        let port = u16::try_from(port).map_err(|_| Error::Protocol {
            addr: "coordinator".into(),
            reason: format!("port {port}"),
        })?;
        let mut metadata = lock(&self.inner.metadata);
        metadata.brokers.entry(node).or_insert_with(|| Broker {
            node_id: node,
            host: host.to_string(),
            port,
            rack: None,
        });
        Ok(node)
    }

    /// Forgets a group's coordinator (after NOT_COORDINATOR and friends).
    pub fn forget_coordinator(&self, group: &str) {
        lock(&self.inner.coordinators).remove(group);
    }

    /// The pause before retry number `attempt` (from 0): exponential, capped, ±20 % jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let config = &self.inner.config;
        let base = config
            .retry_backoff
            .saturating_mul(1u32 << attempt.min(16))
            .min(config.retry_backoff_max);
        let jitter = (self.inner.env.entropy.next_u64() % 401) as f64 / 1000.0 + 0.8;
        base.mul_f64(jitter)
    }

    pub fn now(&self) -> Duration {
        self.inner.env.clock.now()
    }

    pub fn wall_ms(&self) -> i64 {
        self.inner.env.clock.wall_ms()
    }

    pub async fn sleep(&self, duration: Duration) {
        self.inner.env.clock.sleep(duration).await;
    }

    /// Closes every connection; requests after this fail with [`Error::Closed`].
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        if let Some(task) = lock(&self.inner.refresher).take() {
            task.abort();
        }
        let slots: Vec<Slot> = lock(&self.inner.slots).values().cloned().collect();
        for slot in slots {
            if let Ok(open) = slot.try_lock()
                && let Some(connection) = open.as_ref()
            {
                connection.close("client closed");
            }
        }
    }
}

async fn refresh_periodically(client: Weak<Inner>) {
    loop {
        let Some(inner) = client.upgrade() else {
            return;
        };
        let age = inner.config.metadata_max_age;
        let sleep = inner.env.clock.sleep(age);
        drop(inner);
        sleep.await;
        let Some(inner) = client.upgrade() else {
            return;
        };
        let client = Client { inner };
        if let Err(error) = client.refresh_metadata().await {
            tracing::debug!(%error, "periodic metadata refresh failed");
        }
    }
}
