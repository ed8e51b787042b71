//! A node's accept loop: a bound on open connections, a task per connection, and a graceful
//! stop that lets each connection finish the request it is handling.

use std::sync::Arc;
use std::time::Duration;

use tidepool_io::Listener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::cluster::Cluster;
use crate::connection;

/// What a request handler knows about where it runs.
pub struct Node {
    pub id: i32,
    pub cluster: Arc<Cluster>,
}

/// What a node's accept loop is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Serving,
    /// Stop accepting; let each connection finish the request it is handling.
    Graceful,
    /// Stop accepting and drop every connection now, as a crashed node would.
    Abrupt,
}

/// How long stopping waits for connections to finish their current request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Accepts connections until `shutdown` flips, then drains them.
pub async fn accept_loop(
    mut listener: Box<dyn Listener>,
    node: Arc<Node>,
    mut shutdown: watch::Receiver<Stop>,
) {
    let open_connections = Arc::new(Semaphore::new(node.cluster.config.connections_max));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(node = node.id, %error, "accept failed");
                node.cluster
                    .env
                    .clock
                    .sleep(Duration::from_millis(10))
                    .await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&open_connections).try_acquire_owned() else {
            tracing::warn!(node = node.id, %peer, limit = node.cluster.config.connections_max, "connection limit reached, closing new connection");
            drop(stream);
            continue;
        };
        let node = Arc::clone(&node);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            connection::serve(stream, peer, node, shutdown).await;
            drop(permit);
        });
    }
    drop(listener);
    if *shutdown.borrow() == Stop::Abrupt {
        connections.abort_all();
        while connections.join_next().await.is_some() {}
        return;
    }
    let clock = Arc::clone(&node.cluster.env.clock);
    let drained = {
        let drained = async { while connections.join_next().await.is_some() {} };
        // Biased: when both are ready at once the outcome must not hang on tokio's random pick
        // (the simulation replays runs by seed).
        tokio::select! {
            biased;
            () = drained => true,
            () = clock.sleep(SHUTDOWN_GRACE) => false,
        }
    };
    if !drained {
        connections.abort_all();
    }
}
