//! Every bound and setting of a gateway node, in one place.

use std::time::Duration;

/// One gateway node's settings. Every map and queue the node keeps is bounded here.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The deployment this node belongs to: its nodes share one response topic
    /// (`gateway.{deployment}.responses`) and one consumer group (`gateway.{deployment}`).
    pub deployment: String,
    /// This node's id, unique within the deployment; encoded in every correlation id so a
    /// response can be routed back to the node that parked its request. Letters, digits, `_`
    /// and `-` only, at most [`NODE_ID_BYTES_MAX`] bytes.
    pub node_id: String,
    /// Partitions of the response topic when the gateway creates it. An existing topic keeps
    /// its count; the count must not change while the deployment runs (ids hash over it).
    pub response_partitions: i32,
    pub replication_factor: i16,
    /// HTTP requests waiting for their response at once; beyond it, 503 with `Retry-After`.
    pub parked_max: usize,
    /// How long a request waits for its response before 504.
    pub request_timeout: Duration,
    /// Largest request body; larger ones get 413.
    pub body_bytes_max: usize,
    /// Forwarded `x-*` headers per request; more gets 400.
    pub forwarded_headers_max: usize,
    /// Correlation id candidates tried to find one that hashes to a partition this node owns.
    pub correlation_attempts_max: u32,
    /// Recently answered or expired correlation ids remembered, so a response that arrives for
    /// one is counted as late or duplicate rather than unknown.
    pub finished_remembered_max: usize,
    /// What `Retry-After` says on a 503.
    pub retry_after_s: u32,
    /// How long the response consumer's poll waits for records.
    pub poll_wait: Duration,
    /// Records one poll of the response consumer returns at most.
    pub max_poll_records: usize,
    /// How often the response consumer commits its positions.
    pub commit_interval: Duration,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    /// The least time between two looks at the cluster's topic list when a request names a
    /// service that is not known yet: a flood of unknown names costs at most one metadata
    /// request per interval.
    pub service_refresh_interval: Duration,
    /// How long a produce to a request topic may wait for metadata or buffer space.
    pub produce_block: Duration,
}

/// The longest node id.
pub const NODE_ID_BYTES_MAX: usize = 64;

impl GatewayConfig {
    pub fn new(deployment: impl Into<String>, node_id: impl Into<String>) -> GatewayConfig {
        GatewayConfig {
            deployment: deployment.into(),
            node_id: node_id.into(),
            response_partitions: 8,
            replication_factor: 1,
            parked_max: 10_000,
            request_timeout: Duration::from_secs(10),
            body_bytes_max: 1 << 20,
            forwarded_headers_max: 32,
            correlation_attempts_max: 10_000,
            finished_remembered_max: 10_000,
            retry_after_s: 1,
            poll_wait: Duration::from_millis(100),
            max_poll_records: 500,
            commit_interval: Duration::from_secs(1),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            service_refresh_interval: Duration::from_millis(500),
            produce_block: Duration::from_secs(5),
        }
    }

    /// The deployment's response topic.
    pub fn response_topic(&self) -> String {
        format!("gateway.{}.responses", self.deployment)
    }

    /// The consumer group sharing the response topic's partitions among the nodes.
    pub fn group(&self) -> String {
        format!("gateway.{}", self.deployment)
    }

    /// Why the configuration cannot run, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.node_id.is_empty()
            || self.node_id.len() > NODE_ID_BYTES_MAX
            || !self
                .node_id
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
        {
            return Err(format!(
                "node id {:?}: 1 to {NODE_ID_BYTES_MAX} letters, digits, '_' or '-'",
                self.node_id
            ));
        }
        if !crate::topics::is_topic_name(&self.response_topic()) {
            return Err(format!(
                "deployment {:?}: not usable in a topic name",
                self.deployment
            ));
        }
        if self.response_partitions < 1
            || self.parked_max == 0
            || self.correlation_attempts_max == 0
        {
            return Err(
                "partitions, parked_max and correlation_attempts_max must be positive".into(),
            );
        }
        Ok(())
    }
}

/// A responder's settings.
#[derive(Debug, Clone)]
pub struct ResponderConfig {
    /// The service: requests come from `{service}.requests`.
    pub service: String,
    /// The consumer group; one per service (default `{service}.responder`).
    pub group: String,
    pub poll_wait: Duration,
    pub max_poll_records: usize,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    /// Pause before processing again after a reply could not be produced.
    pub retry_backoff: Duration,
}

impl ResponderConfig {
    pub fn new(service: impl Into<String>) -> ResponderConfig {
        let service = service.into();
        ResponderConfig {
            group: format!("{service}.responder"),
            service,
            poll_wait: Duration::from_millis(100),
            max_poll_records: 200,
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(200),
        }
    }

    pub fn request_topic(&self) -> String {
        crate::topics::request_topic(&self.service)
    }
}
