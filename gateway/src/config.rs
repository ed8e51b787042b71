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
    /// Requests waiting for their response at once, whether over HTTP or a WebSocket, and
    /// waits for a state (`?wait=`) among them; beyond it, 503 with `Retry-After`.
    pub parked_max: usize,
    /// How long a request waits for its response (with `?wait=`, for its state) before 504.
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
    /// The `host:port` other nodes reach this node's `/internal/responses` at, announced in
    /// `gateway.{deployment}.nodes`. `None`: the node announces nothing, so replies for its
    /// requests that land on another node's partition cannot be forwarded to it.
    pub advertised_address: Option<String>,
    /// Replies for other nodes' requests forwarded at once (from one poll); more wait their turn
    /// and the response consumer polls again only when all of a poll's forwards are done, so its
    /// commit never passes a reply still being forwarded.
    pub forward_queue_max: usize,
    /// How long one forwarding POST may take.
    pub forward_attempt_timeout: Duration,
    /// How long a reply is retried before it is dropped (`forward_failed`); also the longest a
    /// forward can hold up this node's own replies behind it.
    pub forward_deadline: Duration,
    /// The first pause between forwarding attempts; it doubles up to a quarter of the deadline.
    pub forward_backoff: Duration,
    /// Largest forwarded reply `/internal/responses` accepts; larger gets 413.
    pub forwarded_reply_bytes_max: usize,
    /// Nodes the node table remembers; announcements of further nodes are ignored.
    pub nodes_max: usize,
    /// Services whose events topic (`{service}.events`) a node reads for `?wait=STATE`
    /// requests; a wait on a further service gets 503. Each costs a few fetched partitions.
    pub events_topics_max: usize,
    /// WebSockets open on `/ws` at once; a further upgrade gets 503.
    pub ws_connections_max: usize,
    /// Requests one WebSocket may have waiting at once; a further request frame gets a 503
    /// frame (and the socket stays open).
    pub ws_in_flight_max: usize,
    /// Largest WebSocket message the node reads; a larger one closes the socket (1009). A
    /// request's body inside a frame is still bounded by `body_bytes_max` (413 frame).
    pub ws_message_bytes_max: usize,
    /// Known-bad variant for the simulator only (`gateway-no-forwarding`): a reply for a
    /// request parked on another node is dropped instead of forwarded, as in the original
    /// sketch, so requests parked across a partition move time out.
    pub sabotage_no_forwarding: bool,
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
            advertised_address: None,
            forward_queue_max: 256,
            forward_attempt_timeout: Duration::from_secs(2),
            forward_deadline: Duration::from_secs(5),
            forward_backoff: Duration::from_millis(50),
            forwarded_reply_bytes_max: 8 << 20,
            nodes_max: 1024,
            events_topics_max: 16,
            ws_connections_max: 1024,
            ws_in_flight_max: 64,
            // A JSON-escaped body can take up to six bytes per byte: room for it and the frame.
            ws_message_bytes_max: 8 << 20,
            sabotage_no_forwarding: false,
        }
    }

    /// The deployment's response topic.
    pub fn response_topic(&self) -> String {
        format!("gateway.{}.responses", self.deployment)
    }

    /// The compacted topic where the deployment's nodes announce their internal address.
    pub fn nodes_topic(&self) -> String {
        format!("gateway.{}.nodes", self.deployment)
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
            || self.forward_queue_max == 0
            || self.nodes_max == 0
            || self.events_topics_max == 0
            || self.ws_connections_max == 0
            || self.ws_in_flight_max == 0
            || self.ws_message_bytes_max == 0
        {
            return Err(
                "partitions, parked_max, correlation_attempts_max, forward_queue_max, nodes_max, events_topics_max and the ws_* bounds must be positive".into(),
            );
        }
        // The response consumer polls again only when a poll's forwards are done; polling less
        // often than the rebalance timeout would cost it its group membership.
        if self.forward_deadline + self.forward_attempt_timeout >= self.rebalance_timeout {
            return Err(
                "forward_deadline + forward_attempt_timeout must be below rebalance_timeout".into(),
            );
        }
        if let Some(address) = &self.advertised_address
            && !address
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        {
            return Err(format!("advertised address {address:?}: host:port"));
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
