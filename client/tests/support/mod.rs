//! Where the client's tests find a cluster: an embedded Tidepool by default, or any running
//! Kafka-compatible cluster named by `TIDEPOOL_TEST_BOOTSTRAP` (the test command points it at a
//! real Apache Kafka, so the same tests judge our client against Kafka itself).
//!
//! Tests that need the broker's control API (leader moves, node down) take
//! [`TestCluster::control`], which is `None` against an external cluster; they live in files
//! that always start an embedded broker.

#![allow(dead_code)]

pub mod fetch;
pub mod produce;
pub mod topics;

use std::time::Duration;

use tidepool_broker::{Broker, BrokerHandle};
use tidepool_client::{Client, ClientConfig};
use tidepool_io::Env;

pub const EXTERNAL_BOOTSTRAP: &str = "TIDEPOOL_TEST_BOOTSTRAP";

pub struct TestCluster {
    pub bootstrap: String,
    broker: Option<BrokerHandle>,
}

impl TestCluster {
    /// The external cluster if one is named, else an embedded broker of `nodes` nodes.
    pub async fn start(nodes: usize) -> TestCluster {
        if let Ok(bootstrap) = std::env::var(EXTERNAL_BOOTSTRAP) {
            return TestCluster {
                bootstrap,
                broker: None,
            };
        }
        TestCluster::embedded(nodes).await
    }

    /// Always an embedded broker (tests that drive faults through its control API).
    pub async fn embedded(nodes: usize) -> TestCluster {
        let broker = Broker::builder()
            .nodes(nodes)
            .start()
            .await
            .expect("start an embedded broker");
        TestCluster {
            bootstrap: broker.bootstrap(),
            broker: Some(broker),
        }
    }

    pub fn is_external(&self) -> bool {
        self.broker.is_none()
    }

    pub fn broker(&self) -> Option<&BrokerHandle> {
        self.broker.as_ref()
    }

    pub fn config(&self) -> ClientConfig {
        ClientConfig::new(&self.bootstrap)
            .request_timeout(Duration::from_secs(30))
            .retry_backoff(Duration::from_millis(20), Duration::from_millis(500))
    }

    pub async fn client(&self) -> Client {
        Client::connect(Env::real(), self.config())
            .await
            .expect("connect a client")
    }
}

/// A topic name no other test (or earlier run against the same external cluster) uses.
pub fn unique_topic(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    #[allow(
        clippy::disallowed_methods,
        reason = "test names only need to differ between runs"
    )]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!(
        "{prefix}-{now}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
