//! tidepool-gateway (issue 10, DESIGN.md §6): a REST request-response gateway over Kafka, from
//! "REST Request-Response Gateway", and the [`Responder`] that lets a service answer it. Like
//! the pipeline it reaches the broker only through tidepool-client, so it runs unchanged on
//! Tidepool or Apache Kafka, and takes time and randomness only from the [`tidepool_io::Env`]
//! seams, so it can run in the simulator.
//!
//! # How a request travels
//! 1. `{METHOD} /api/{service}/{rest}` arrives at a gateway node. The service exists while its
//!    request topic `{service}.requests` does.
//! 2. The node makes a correlation id that encodes its node id and hashes (murmur2, Kafka's
//!    default partitioner) to a partition of the deployment's response topic
//!    (`gateway.{deployment}.responses`) that this node owns now ([`correlation`]).
//! 3. It parks the request (bounded map, deadline) and produces it to the request topic:
//!    key = correlation id, value = body, headers as listed in [`headers`].
//! 4. The service's [`Responder`] handles it and produces the reply keyed by the correlation
//!    id to `reply-to`; the default partitioner puts it on the parking node's partition.
//! 5. That node's response consumer (its own Client, in the consumer group
//!    `gateway.{deployment}` that shares the response partitions among the nodes) hands the
//!    reply to the parked request, which answers with the service's status, headers and body.
//!
//! # Answers the gateway makes itself
//! | status | when |
//! |---|---|
//! | 404 | no route, an invalid service name, or a service without request topic (`"no such service"`) |
//! | 400 | more than `forwarded_headers_max` `x-*` headers, or an unreadable body; on `/internal/responses`, a malformed forwarded reply |
//! | 413 | a body over `body_bytes_max` (refused on Content-Length before reading) |
//! | 503 + `Retry-After` | `parked_max` requests already wait; the node owns no response partition yet (joining); the request could not be produced for a transient reason; metadata unreachable; the node is shutting down (requests still waiting are answered at once) |
//! | 502 | the request could not be produced for good, or the reply has no valid `status` |
//! | 504 | no reply within `request_timeout`; the request may still be processed (the service sees each request at least once) |
//!
//! Each request gets exactly one answer. A reply that comes after its request's 504, a second
//! reply (redelivery) and a reply with an id nobody here parked are dropped and counted
//! (`tidepool_gateway_responses_dropped_total{reason=late|duplicate|unknown|malformed|…}`,
//! the forwarding reasons below); a reply reaches only the request parked under its own
//! correlation id ([`parked`]).
//!
//! # Forwarding: partitions move without timeouts
//! A rebalance can move a response partition to another node while requests parked on the
//! old owner wait for replies on it. The correlation id names the parking node and its
//! incarnation, so the new owner routes such a reply onwards instead of dropping it:
//! - each node announces `node id → {internal HTTP address, incarnation}` in the compacted
//!   topic `gateway.{deployment}.nodes` (one partition, keyed by node id, a tombstone on clean
//!   shutdown) and reads that topic from the beginning into a bounded table (`nodes_max`) on a
//!   Client of its own. The address is [`GatewayConfig::advertised_address`] (the listener's
//!   `host:port`; a node without one announces nothing and cannot be forwarded to). A node
//!   starts taking requests only after it has read its own announcement back, so its table
//!   then holds every node that announced before it;
//! - a reply whose id names another node is POSTed, with its status, headers and body, to that
//!   node's `/internal/responses` (format in `forward`), which delivers it to its parked map
//!   through the very function its own consumer uses (same late/duplicate/unknown rules, so
//!   forwarding cannot cause cross-talk) and answers `{"delivery": …}`; a malformed body
//!   gets 400 with the reason. The route is served on the node's one listener: expose
//!   `/internal/` to the other nodes only, as anyone reaching it who knows a waiting request's
//!   correlation id could answer that request;
//! - a reply naming a node with no announcement is dropped as `node_gone`, one naming an
//!   earlier (or any other) incarnation of an announced node as `stale_incarnation`: nothing
//!   waits for it. A POST that fails (connection, timeout, 5xx) is retried with doubling
//!   backoff on the Clock seam until `forward_deadline`, then dropped as `forward_failed`; a
//!   4xx is final (`forward_refused`). Each failed attempt counts in
//!   `tidepool_gateway_forward_failures_total`, each forwarded reply in
//!   `tidepool_gateway_responses_forwarded_total{direction=sent|received}`;
//! - commits never pass a reply still being forwarded: the response consumer auto-commits
//!   only inside `poll` (and when a rebalance or leaving the group commits), so it delivers a
//!   poll's own replies at once, forwards that poll's other replies concurrently, at most
//!   `forward_queue_max` at a time, and polls again only when all of them are answered or
//!   given up. Its own replies in the next poll wait at most `forward_deadline` +
//!   `forward_attempt_timeout` (validated to be below the rebalance timeout, so the node keeps
//!   its group membership meanwhile).
//!
//! # Layout
//! - [`config`]: [`GatewayConfig`] and [`ResponderConfig`], every bound in one place.
//! - [`headers`]: the record headers of requests and replies (the wire contract).
//! - [`correlation`]: correlation ids and the owned response partitions.
//! - [`parked`]: the bounded map of waiting requests.
//! - `http`: the axum routes; `node`: a gateway node ([`Gateway`]); `responses`: its response
//!   consumer; `directory`: which services exist.
//! - `nodes`: the announcements and the node table; `forward`: forwarding a reply to the node
//!   that parked its request, and the `/internal/responses` wire format.
//! - [`responder`]: [`Responder`], [`ServiceHandler`], [`ServiceRequest`], [`ServiceResponse`].
//! - [`services`]: the example services (orders, customer, basket) on the embedded store.
//! - [`metrics`]: Prometheus metrics, one recorder per gateway.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use tidepool_gateway::{Gateway, GatewayConfig};
//! let env = tidepool_io::Env::real();
//! // Bind first: the node announces the address it serves on, for forwarded replies.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let config = GatewayConfig {
//!     advertised_address: Some(listener.local_addr()?.to_string()),
//!     ..GatewayConfig::new("shop", "gw-1")
//! };
//! let gateway = Gateway::start(env, "127.0.0.1:9092", config).await?;
//! gateway.serve(listener).await?;
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod correlation;
mod directory;
mod forward;
pub mod headers;
mod http;
pub mod metrics;
mod node;
mod nodes;
pub mod parked;
pub mod responder;
mod responses;
pub mod services;
pub mod topics;

/// Where a gateway node or a responder may crash in the simulator between a write and what must
/// follow it (`tidepool_io::crash_point!`; nothing outside the simulator).
pub const CRASH_POINTS: &[&str] = &[
    // A request parked on its node, not produced to the request topic yet.
    "gateway.parked",
    // A service handled a request (its effect stored), the reply not produced yet.
    "responder.handled",
    // Replies acknowledged by the broker, the requests' offsets not committed yet.
    "responder.replied",
];

pub use config::{GatewayConfig, ResponderConfig};
pub use correlation::{CorrelationError, CorrelationId};
pub use metrics::GatewayMetrics;
pub use node::{Gateway, GatewayError};
pub use responder::{Responder, ResponderError, ServiceHandler, ServiceRequest, ServiceResponse};
