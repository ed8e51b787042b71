//! Starting and stopping a broker: `Broker::builder()…start()` opens (and recovers) the
//! cluster, binds one listener per node, and spawns the nodes' accept loops and the
//! maintenance task (group timeouts, flush.ms).
//! The handle's `control()` moves leaders and takes nodes down and up.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tidepool_io::{Env, MemDisk};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::admin::{self, AdminError, GroupDescription, GroupListing, PartitionLag, ResetTarget};
use crate::cleaner::{self, CleanerReport};
use crate::cluster::{Cluster, LeadershipError, NodeInfo};
use crate::config::Config;
use crate::control::{
    ActionRecord, ControlPlane, InjectedError, Interception, InterceptionId, PlaneError,
    RequestLogEntry,
};
use crate::log::RetentionStats;
use crate::server::{self, Node, Stop};
use kafka_protocol::messages::ApiKey;

/// Entry point: `Broker::builder()`.
pub struct Broker;

impl Broker {
    pub fn builder() -> BrokerBuilder {
        BrokerBuilder::default()
    }
}

/// Where partition logs and the controller's metadata live.
#[derive(Debug, Clone)]
enum Storage {
    /// A fresh `MemDisk`, gone with the broker. The default for embedding.
    Memory,
    /// A directory on the Env's disk (the real file system unless an Env says otherwise):
    /// recovered on start, kept across restarts.
    Directory(PathBuf),
}

/// Root of the partition directories on a memory disk.
const MEMORY_DATA_ROOT: &str = "/tidepool";

#[derive(Debug, Clone)]
pub struct BrokerBuilder {
    env: Option<Env>,
    storage: Storage,
    nodes: usize,
    listen: SocketAddr,
    advertised_host: Option<String>,
    config: Config,
}

impl Default for BrokerBuilder {
    fn default() -> BrokerBuilder {
        BrokerBuilder {
            env: None,
            storage: Storage::Memory,
            nodes: 1,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertised_host: None,
            config: Config::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the data directory {path}: {source}")]
    DataDirectory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot reconcile partition leaders with the nodes: {0}")]
    Leaders(#[from] LeadershipError),
    #[error("a broker needs at least one node")]
    NoNodes,
}

impl BrokerBuilder {
    /// Partition logs in memory (the default).
    pub fn memory(mut self) -> Self {
        self.storage = Storage::Memory;
        self
    }

    /// Partition logs and metadata in `path`, recovered on start: what was acknowledged
    /// survives a clean stop, and with `flush.messages=1` a crash.
    pub fn data_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.storage = Storage::Directory(path.into());
        self
    }

    /// The seams to run on. Defaults to [`Env::memory`] for memory storage and [`Env::real`]
    /// for a data directory; with memory storage the disk seam is always a fresh `MemDisk`.
    pub fn env(mut self, env: Env) -> Self {
        self.env = Some(env);
        self
    }

    /// Number of broker nodes, each on its own port (consecutive when `listen` names a port).
    pub fn nodes(mut self, nodes: usize) -> Self {
        self.nodes = nodes;
        self
    }

    /// Address of the first node; port 0 lets every node pick a free port.
    pub fn listen(mut self, address: SocketAddr) -> Self {
        self.listen = address;
        self
    }

    /// Host name advertised in Metadata; defaults to the listen address's IP.
    pub fn advertised_host(mut self, host: impl Into<String>) -> Self {
        self.advertised_host = Some(host.into());
        self
    }

    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Requires SASL authentication on every node (Kafka's SASL_PLAINTEXT listener): the
    /// mechanisms and users of `sasl`. Sets `Config::sasl`, so call it after [`Self::config`].
    pub fn sasl(mut self, sasl: crate::sasl::SaslConfig) -> Self {
        self.config.sasl = Some(sasl);
        self
    }

    /// Opens the cluster, binds every node and starts serving. Returns once every node
    /// accepts connections.
    pub async fn start(self) -> Result<BrokerHandle, StartError> {
        if self.nodes == 0 {
            return Err(StartError::NoNodes);
        }
        let (env, data_root) = match &self.storage {
            Storage::Memory => {
                let env = self.env.clone().unwrap_or_else(Env::memory);
                (
                    env.with_disk(Arc::new(MemDisk::new())),
                    PathBuf::from(MEMORY_DATA_ROOT),
                )
            }
            Storage::Directory(path) => (self.env.clone().unwrap_or_else(Env::real), path.clone()),
        };
        let cluster = Cluster::open(env.clone(), self.config.clone(), data_root.clone()).map_err(
            |source| StartError::DataDirectory {
                path: data_root,
                source,
            },
        )?;
        let cluster = Arc::new(cluster);
        let mut nodes = Vec::with_capacity(self.nodes);
        for index in 0..self.nodes {
            let address = self.node_address(index);
            let listener = env
                .transport
                .bind(address)
                .await
                .map_err(|source| StartError::Bind { address, source })?;
            let bound = listener
                .local_addr()
                .map_err(|source| StartError::Bind { address, source })?;
            let info = NodeInfo {
                id: index as i32 + 1,
                host: self
                    .advertised_host
                    .clone()
                    .unwrap_or_else(|| advertisable(bound.ip())),
                port: bound.port(),
            };
            cluster.register_node(info.clone());
            nodes.push(NodeRuntime::spawn(info, bound, listener, &cluster));
        }
        cluster.reconcile_leaders()?;
        let (stop_maintenance, maintenance_stopped) = watch::channel(false);
        let maintenance = tokio::spawn(maintenance_loop(Arc::clone(&cluster), maintenance_stopped));
        tracing::info!(nodes = nodes.len(), cluster_id = %cluster.cluster_id, "broker started");
        Ok(BrokerHandle {
            inner: Arc::new(Inner {
                cluster,
                nodes: Mutex::new(nodes),
            }),
            stop_maintenance,
            maintenance: Some(maintenance),
        })
    }

    fn node_address(&self, index: usize) -> SocketAddr {
        let port = if self.listen.port() == 0 {
            0
        } else {
            self.listen.port() + index as u16
        };
        SocketAddr::new(self.listen.ip(), port)
    }
}

/// An unspecified bind address (0.0.0.0) cannot be connected to; advertise loopback instead.
fn advertisable(ip: IpAddr) -> String {
    if ip.is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        ip.to_string()
    }
}

/// One node's serving task and how to stop it.
struct NodeRuntime {
    info: NodeInfo,
    /// The address it was bound to, so it can come back on the same port.
    bound: SocketAddr,
    stop: watch::Sender<Stop>,
    task: Option<JoinHandle<()>>,
}

impl NodeRuntime {
    fn spawn(
        info: NodeInfo,
        bound: SocketAddr,
        listener: Box<dyn tidepool_io::Listener>,
        cluster: &Arc<Cluster>,
    ) -> NodeRuntime {
        let (stop, stopped) = watch::channel(Stop::Serving);
        let node = Arc::new(Node {
            id: info.id,
            cluster: Arc::clone(cluster),
        });
        let task = tokio::spawn(server::accept_loop(listener, node, stopped));
        NodeRuntime {
            info,
            bound,
            stop,
            task: Some(task),
        }
    }

    async fn stop(&mut self, how: Stop) {
        let _ = self.stop.send(how);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn is_serving(&self) -> bool {
        self.task.is_some()
    }
}

/// What the handle and its `Control`s share.
struct Inner {
    cluster: Arc<Cluster>,
    /// An async mutex: taking a node down or up awaits its task or its bind.
    nodes: Mutex<Vec<NodeRuntime>>,
}

/// How often time-driven work runs: group session expiry and rebalance timeouts, and
/// partitions checked against `flush.ms`. Session expiry has this granularity.
const MAINTENANCE_INTERVAL: Duration = crate::group::coordinator::TICK_INTERVAL;

/// Time-driven work: expires group members and rebalances, and fsyncs partitions whose
/// oldest unflushed append is older than their `flush.ms`.
async fn maintenance_loop(cluster: Arc<Cluster>, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            biased;
            _ = stopped.changed() => return,
            () = cluster.env.clock.sleep(MAINTENANCE_INTERVAL) => {}
        }
        cluster.groups.tick(&cluster);
        crate::cleaner::maintain(&cluster);
        let now_ms = cluster.env.clock.wall_ms();
        for partition in cluster.partitions() {
            let mut state = partition.state();
            if state.config.flush_ms < i64::MAX {
                // A failure poisons the partition, which then refuses produces with an error.
                let _ = state.flush_if_due(now_ms, false);
            }
        }
    }
}

/// A running broker. Dropping it stops the nodes at once, without flushing (like a crash of
/// the process); [`BrokerHandle::shutdown`] stops cleanly.
pub struct BrokerHandle {
    inner: Arc<Inner>,
    stop_maintenance: watch::Sender<bool>,
    maintenance: Option<JoinHandle<()>>,
}

impl BrokerHandle {
    /// `host:port` of every node, comma-separated, as Kafka clients take `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.nodes()
            .iter()
            .map(|node| format!("{}:{}", node.host, node.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every node of the broker, serving or not.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        match self.inner.nodes.try_lock() {
            Ok(nodes) => nodes.iter().map(|node| node.info.clone()).collect(),
            // A control operation is under way; the controller knows the serving ones.
            Err(_) => self.inner.cluster.nodes(),
        }
    }

    /// The controller and partitions, for tests that inspect state directly.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.inner.cluster
    }

    /// Moves leaders and takes nodes down and up, from a test.
    pub fn control(&self) -> Control {
        Control {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Stops accepting, lets connections finish their current request, fsyncs every log and
    /// records the metadata, so a restart finds everything that was acknowledged.
    pub async fn shutdown(mut self) {
        let _ = self.stop_maintenance.send(true);
        if let Some(maintenance) = self.maintenance.take() {
            let _ = maintenance.await;
        }
        for node in self.inner.nodes.lock().await.iter_mut() {
            node.stop(Stop::Graceful).await;
        }
        if let Err(error) = self.inner.cluster.close() {
            tracing::error!(%error, "flushing on shutdown failed");
        }
        tracing::info!("broker stopped");
    }
}

impl Drop for BrokerHandle {
    fn drop(&mut self) {
        let _ = self.stop_maintenance.send(true);
        if let Some(maintenance) = &self.maintenance {
            maintenance.abort();
        }
        if let Ok(nodes) = self.inner.nodes.try_lock() {
            for node in nodes.iter() {
                let _ = node.stop.send(Stop::Abrupt);
                if let Some(task) = &node.task {
                    task.abort();
                }
            }
        }
    }
}

/// Why a control operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Leadership(#[from] LeadershipError),
    #[error("node {0} is already {1}")]
    AlreadyThere(i32, &'static str),
    #[error("storage failed: {0}")]
    Storage(String),
    #[error("the group's coordinator is not available: {0}")]
    Coordinator(String),
    #[error("group {0} cannot rebalance now: it is {1}")]
    NoRebalance(String, &'static str),
    #[error("node {node} cannot listen on {address} again: {source}")]
    Rebind {
        node: i32,
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// Test control over a running broker. Cheap to clone; every action is logged.
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

impl Control {
    /// Moves a partition's leadership to `node` (a live replica), bumping its leader epoch.
    /// Returns the new epoch.
    pub fn move_leader(&self, topic: &str, partition: i32, node: i32) -> Result<i32, ControlError> {
        let epoch = self.inner.cluster.move_leader(topic, partition, node)?;
        self.record(format!(
            "move leader of {topic}-{partition} to node {node} (epoch {epoch})"
        ));
        Ok(epoch)
    }

    fn now_ms(&self) -> i64 {
        self.inner.cluster.env.clock.wall_ms()
    }

    fn record(&self, action: String) {
        self.inner.cluster.control.record(self.now_ms(), action);
    }

    fn plane(&self) -> &ControlPlane {
        &self.inner.cluster.control
    }

    /// Applies `rule` to the matching requests from now on; returns its id.
    pub fn intercept(&self, rule: Interception) -> Result<InterceptionId, PlaneError> {
        self.plane().intercept(self.now_ms(), rule)
    }

    pub fn remove_interception(&self, id: InterceptionId) -> Result<(), PlaneError> {
        self.plane().remove_interception(self.now_ms(), id)
    }

    /// The active interceptions, described, oldest first.
    pub fn interceptions(&self) -> Vec<(InterceptionId, String)> {
        self.plane().interceptions()
    }

    /// The requests an interception matched so far (None once removed or used up).
    pub fn observed(&self, id: InterceptionId) -> Option<Vec<RequestLogEntry>> {
        self.plane().observed(id)
    }

    /// The next requests of `api_key` (to `node`, or any node) are answered with these errors,
    /// one each, in order, instead of being handled.
    pub fn push_errors(
        &self,
        api_key: ApiKey,
        node: Option<i32>,
        errors: &[InjectedError],
    ) -> Result<(), PlaneError> {
        self.plane()
            .push_errors(self.now_ms(), api_key, node, errors)
    }

    /// The next requests (of `api_key`, or any of Produce, Fetch, ListOffsets, OffsetCommit)
    /// naming this partition get these codes for it, one each; their other partitions are
    /// served.
    pub fn push_partition_errors(
        &self,
        topic: &str,
        partition: i32,
        api_key: Option<ApiKey>,
        codes: &[i16],
    ) -> Result<(), PlaneError> {
        self.plane()
            .push_partition_errors(self.now_ms(), topic, partition, api_key, codes)
    }

    /// Every request to `node` waits `delay` before it is handled (zero removes the delay).
    pub fn set_round_trip(&self, node: i32, delay: Duration) {
        self.plane().set_round_trip(self.now_ms(), node, delay)
    }

    /// Advertises and accepts only the API versions of Apache Kafka `release` ("2.8", "3.7",
    /// …, see [`crate::control::RELEASES`]); None lifts the cap. Requests above the cap close the connection,
    /// as Kafka does for versions it does not know.
    pub fn cap_versions(&self, release: Option<&str>) -> Result<(), PlaneError> {
        self.plane().cap_versions(self.now_ms(), release)
    }

    /// Starts a rebalance of a group that has members, as a new member would: they learn it
    /// from their next heartbeat and rejoin.
    pub fn force_rebalance(&self, group_id: &str) -> Result<(), ControlError> {
        self.inner
            .cluster
            .groups
            .force_rebalance(&self.inner.cluster, group_id)
            .map_err(|state| ControlError::NoRebalance(group_id.to_owned(), state.name()))?;
        self.record(format!("force a rebalance of group {group_id}"));
        Ok(())
    }

    /// Removes every interception, injected error, round-trip delay and the version cap.
    pub fn reset(&self) {
        self.plane().reset(self.now_ms())
    }

    /// Requests from `since` on (a log `seq`; 0 for every one kept), oldest first.
    pub fn request_log(&self, since: u64) -> Vec<RequestLogEntry> {
        self.plane().request_log(since)
    }

    /// The release whose API versions are advertised, if capped.
    pub fn version_cap(&self) -> Option<&'static str> {
        self.plane().version_cap()
    }

    /// Every node's id, up or down.
    pub fn nodes(&self) -> Vec<i32> {
        self.inner.cluster.node_ids()
    }

    /// Every control action taken, with its time, oldest first.
    pub fn actions(&self) -> Vec<ActionRecord> {
        self.plane().actions()
    }

    /// Every consumer group, by id.
    pub fn groups(&self) -> Vec<GroupListing> {
        admin::list_groups(&self.inner.cluster)
    }

    /// A group's state, members with their assignments, and committed offset, end offset
    /// and lag per partition.
    pub fn describe_group(&self, group_id: &str) -> Option<GroupDescription> {
        admin::describe_group(&self.inner.cluster, group_id)
    }

    /// Lag per partition of a group (committed offset to high watermark): the headline metric
    /// of a consumer.
    pub fn lag(&self, group_id: &str) -> Vec<PartitionLag> {
        self.describe_group(group_id)
            .map(|group| group.partitions)
            .unwrap_or_default()
    }

    /// Moves an empty group's committed offsets on every partition of `topic`; refused while
    /// the group has members, as Kafka refuses it.
    pub fn reset_offsets(
        &self,
        group_id: &str,
        topic: &str,
        target: ResetTarget,
    ) -> Result<Vec<(i32, i64)>, AdminError> {
        admin::reset_offsets(&self.inner.cluster, group_id, topic, target)
    }

    /// Moves a group's coordinator to `node` by moving the leader of its `__consumer_offsets`
    /// partition (so every group sharing that partition moves too, as in Kafka). Members get
    /// NOT_COORDINATOR from the old node and find the new one. Returns the new leader epoch.
    pub fn move_group_coordinator(&self, group_id: &str, node: i32) -> Result<i32, ControlError> {
        let (topic, partition) = admin::coordinator_partition(&self.inner.cluster, group_id)
            .map_err(|error| ControlError::Coordinator(format!("{error:?}")))?;
        self.record(format!(
            "move the coordinator of group {group_id} to node {node}"
        ));
        self.move_leader(&topic, partition, node)
    }

    /// Closes the active segment of a partition and opens a new one, as `segment.bytes` or
    /// `segment.ms` would; the closed segment becomes cleanable.
    pub fn roll(&self, topic: &str, partition: i32) -> Result<(), ControlError> {
        let found = self.partition(topic, partition)?;
        let now_ms = self.inner.cluster.env.clock.wall_ms();
        {
            let mut state = found.state();
            state
                .log
                .roll(now_ms)
                .map_err(|error| ControlError::Storage(error.to_string()))?;
        }
        self.record(format!("roll {topic}-{partition}"));
        Ok(())
    }

    /// Runs the cleaner on a compacted partition now, whatever its dirty ratio, and returns
    /// its report (None if the topic is not compacted or nothing is cleanable).
    pub fn clean_now(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Option<CleanerReport>, ControlError> {
        let found = self.partition(topic, partition)?;
        self.record(format!("clean {topic}-{partition}"));
        cleaner::clean(&self.inner.cluster, &found, true)
            .map_err(|error| ControlError::Storage(format!("{error:?}")))
    }

    /// Runs time and size retention on a partition now.
    pub fn apply_retention_now(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<RetentionStats, ControlError> {
        let found = self.partition(topic, partition)?;
        self.record(format!("apply retention to {topic}-{partition}"));
        cleaner::retain(&self.inner.cluster, &found)
            .map_err(|error| ControlError::Storage(format!("{error:?}")))
    }

    /// The last compaction reports, oldest first.
    pub fn cleaner_reports(&self) -> Vec<CleanerReport> {
        self.inner.cluster.cleaner.reports()
    }

    fn partition(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Arc<crate::partition::Partition>, ControlError> {
        let found = self.inner.cluster.topic(topic).ok_or_else(|| {
            ControlError::Leadership(LeadershipError::UnknownTopic(topic.to_owned()))
        })?;
        found
            .partitions
            .get(partition as usize)
            .cloned()
            .ok_or_else(|| {
                ControlError::Leadership(LeadershipError::UnknownPartition {
                    topic: topic.to_owned(),
                    partition,
                })
            })
    }

    /// The leader and leader epoch of a partition, if it exists.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<(i32, i32)> {
        let topic = self.inner.cluster.topic(topic)?;
        let state = topic.partitions.get(partition as usize)?.state();
        Some((state.leader, state.leader_epoch))
    }

    /// Takes a node down as if it crashed: its connections drop, its port stops accepting,
    /// Metadata stops listing it and its partitions move to other live replicas.
    pub async fn node_down(&self, node: i32) -> Result<(), ControlError> {
        let mut nodes = self.inner.nodes.lock().await;
        let runtime = find(&mut nodes, node)?;
        if !runtime.is_serving() {
            return Err(ControlError::AlreadyThere(node, "down"));
        }
        self.inner.cluster.node_down(node)?;
        runtime.stop(Stop::Abrupt).await;
        drop(nodes);
        self.record(format!("node {node} down"));
        tracing::info!(node, "node down");
        Ok(())
    }

    /// Brings a node back on its old port; it leads the partitions left without a leader.
    pub async fn node_up(&self, node: i32) -> Result<(), ControlError> {
        let mut nodes = self.inner.nodes.lock().await;
        let runtime = find(&mut nodes, node)?;
        if runtime.is_serving() {
            return Err(ControlError::AlreadyThere(node, "up"));
        }
        let address = runtime.bound;
        let listener = self
            .inner
            .cluster
            .env
            .transport
            .bind(address)
            .await
            .map_err(|source| ControlError::Rebind {
                node,
                address,
                source,
            })?;
        *runtime = NodeRuntime::spawn(runtime.info.clone(), address, listener, &self.inner.cluster);
        self.inner.cluster.node_up(node)?;
        drop(nodes);
        self.record(format!("node {node} up"));
        tracing::info!(node, "node up");
        Ok(())
    }
}

fn find(nodes: &mut [NodeRuntime], node: i32) -> Result<&mut NodeRuntime, ControlError> {
    nodes
        .iter_mut()
        .find(|runtime| runtime.info.id == node)
        .ok_or(ControlError::Leadership(LeadershipError::UnknownNode(node)))
}
