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
//! | 400 | more than `forwarded_headers_max` `x-*` headers, or an unreadable body |
//! | 413 | a body over `body_bytes_max` (refused on Content-Length before reading) |
//! | 503 + `Retry-After` | `parked_max` requests already wait; the node owns no response partition yet (joining); the request could not be produced for a transient reason; metadata unreachable; the node is shutting down (requests still waiting are answered at once) |
//! | 502 | the request could not be produced for good, or the reply has no valid `status` |
//! | 504 | no reply within `request_timeout`; the request may still be processed (the service sees each request at least once) |
//!
//! Each request gets exactly one answer. A reply that comes after its request's 504, a second
//! reply (redelivery) and a reply with an id nobody here parked are dropped and counted
//! (`tidepool_gateway_responses_dropped_total{reason=late|duplicate|unknown|malformed|other_node}`);
//! a reply reaches only the request parked under its own correlation id ([`parked`]).
//!
//! # Forwarding (designed, not built yet)
//! A rebalance can move a response partition to another node while requests parked on the
//! old owner wait for replies on it. The correlation id names the parking node, so the new
//! owner can route such a reply onwards instead of dropping it (today it counts it as
//! `other_node`, and the parked request times out):
//! - each node announces `node id → internal HTTP address` in a compacted topic
//!   (`gateway.{deployment}.nodes`, keyed by node id, a tombstone on clean shutdown) and keeps
//!   the latest table in memory;
//! - a reply whose id names another node is POSTed, with its status, headers and body, to that
//!   node's `/internal/responses`, which delivers it to its parked map exactly as its own
//!   consumer would (same late/duplicate/unknown rules, so forwarding cannot cause cross-talk);
//! - the forwarding node commits past the reply only after the POST was answered (or the target
//!   is known gone: no announcement, or an earlier incarnation), bounded by a forward queue in
//!   [`GatewayConfig`].
//!
//! # Layout
//! - [`config`]: [`GatewayConfig`] and [`ResponderConfig`], every bound in one place.
//! - [`headers`]: the record headers of requests and replies (the wire contract).
//! - [`correlation`]: correlation ids and the owned response partitions.
//! - [`parked`]: the bounded map of waiting requests.
//! - `http`: the axum routes; `node`: a gateway node ([`Gateway`]); `responses`: its response
//!   consumer; `directory`: which services exist.
//! - [`responder`]: [`Responder`], [`ServiceHandler`], [`ServiceRequest`], [`ServiceResponse`].
//! - [`services`]: the example services (orders, customer, basket) on the embedded store.
//! - [`metrics`]: Prometheus metrics, one recorder per gateway.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use tidepool_gateway::{Gateway, GatewayConfig};
//! let env = tidepool_io::Env::real();
//! let gateway = Gateway::start(env, "127.0.0.1:9092", GatewayConfig::new("shop", "gw-1")).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! gateway.serve(listener).await?;
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod correlation;
mod directory;
pub mod headers;
mod http;
pub mod metrics;
mod node;
pub mod parked;
pub mod responder;
mod responses;
pub mod services;
pub mod topics;

pub use config::{GatewayConfig, ResponderConfig};
pub use correlation::{CorrelationError, CorrelationId};
pub use metrics::GatewayMetrics;
pub use node::{Gateway, GatewayError};
pub use responder::{Responder, ResponderError, ServiceHandler, ServiceRequest, ServiceResponse};
