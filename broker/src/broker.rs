//! Starting and stopping a broker: `Broker::builder()…start()` binds one listener per node,
//! registers the nodes with the controller and spawns their accept loops.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use tidepool_io::{Env, MemDisk};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cluster::{Cluster, NodeInfo};
use crate::config::Config;
use crate::server::{self, Node};

/// Entry point: `Broker::builder()`.
pub struct Broker;

impl Broker {
    pub fn builder() -> BrokerBuilder {
        BrokerBuilder::default()
    }
}

/// Where partition logs live. Only memory for now; a data directory on the Env's disk, with
/// recovery on start, comes with durable storage.
#[derive(Debug, Clone)]
enum Storage {
    /// A fresh `MemDisk`, gone with the broker. The default for embedding.
    Memory,
}

/// Root of the partition directories on the broker's disk.
const DATA_ROOT: &str = "/tidepool";

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
    #[error("cannot prepare the data directory {path}: {source}")]
    DataDirectory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a broker needs at least one node")]
    NoNodes,
}

impl BrokerBuilder {
    /// Partition logs in memory (the default).
    pub fn memory(mut self) -> Self {
        self.storage = Storage::Memory;
        self
    }

    /// The seams to run on (defaults to [`Env::memory`]). With memory storage the disk seam is
    /// replaced by a fresh `MemDisk`, so an embedded broker never writes files.
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

    /// Binds every node and starts serving. Returns once every node accepts connections.
    pub async fn start(self) -> Result<BrokerHandle, StartError> {
        if self.nodes == 0 {
            return Err(StartError::NoNodes);
        }
        let (env, data_root) = match &self.storage {
            Storage::Memory => {
                let env = self.env.clone().unwrap_or_else(Env::memory);
                (
                    env.with_disk(Arc::new(MemDisk::new())),
                    PathBuf::from(DATA_ROOT),
                )
            }
        };
        env.disk
            .create_dir_all(&data_root)
            .map_err(|source| StartError::DataDirectory {
                path: data_root.clone(),
                source,
            })?;
        let cluster = Arc::new(Cluster::new(env.clone(), self.config.clone(), data_root));
        let mut listeners = Vec::with_capacity(self.nodes);
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
            listeners.push((info, listener));
        }
        let (shutdown, shutdown_signal) = watch::channel(false);
        let mut nodes = Vec::with_capacity(listeners.len());
        let mut tasks = Vec::with_capacity(listeners.len());
        for (info, listener) in listeners {
            let node = Arc::new(Node {
                id: info.id,
                cluster: Arc::clone(&cluster),
            });
            tasks.push(tokio::spawn(server::accept_loop(
                listener,
                node,
                shutdown_signal.clone(),
            )));
            nodes.push(info);
        }
        tracing::info!(nodes = nodes.len(), cluster_id = %cluster.cluster_id, "broker started");
        Ok(BrokerHandle {
            cluster,
            nodes,
            shutdown,
            tasks,
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

/// A running broker. Dropping it stops the nodes without waiting; prefer [`shutdown`].
///
/// [`shutdown`]: BrokerHandle::shutdown
pub struct BrokerHandle {
    cluster: Arc<Cluster>,
    nodes: Vec<NodeInfo>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl BrokerHandle {
    /// `host:port` of every node, comma-separated, as Kafka clients take `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("{}:{}", node.host, node.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The controller and partitions, for tests that inspect state directly.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Stops accepting, lets connections finish their current request, and waits.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        tracing::info!("broker stopped");
    }
}

impl Drop for BrokerHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}
