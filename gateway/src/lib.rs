//! tidepool-gateway (issue 10, DESIGN.md §6): a REST request-response gateway over Kafka, from
//! "REST Request-Response Gateway", and the [`Responder`] that lets a service answer it. Like
//! the pipeline it reaches the broker only through tidepool-client, so it runs unchanged on
//! Tidepool or Apache Kafka, and takes time and randomness only from the [`tidepool_io::Env`]
//! seams, so it can run in the simulator.
//!
//! # Routes
//! | route | what |
//! |---|---|
//! | `{METHOD} /api/{service}[/{rest}][?query]` | a request to a service (below); `?wait=STATE` waits for a state ("Waiting for a state") |
//! | `GET /ws` | a WebSocket carrying a client's requests and answers ("WebSocket") |
//! | `POST /internal/responses` | a reply forwarded by another node ("Forwarding"); expose to the nodes only |
//! | `GET /healthz` | 200 once the node owns a response partition, else 503 (`joining`, or the response consumer stopped) |
//! | `GET /metrics` | Prometheus text ([`metrics`]) |
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
//! | 400 | more than `forwarded_headers_max` `x-*` headers, or an unreadable body; `?wait=` with a malformed state, or on a service without `{service}.events`; on `/internal/responses`, a malformed forwarded reply |
//! | 409 + `x-state` | `?wait=STATE`: the entity reached a terminal other state (the event's body) |
//! | 413 | a body over `body_bytes_max` (refused on Content-Length before reading) |
//! | 503 + `Retry-After` | `parked_max` requests already wait (waits for a state included); the node owns no response partition yet (joining); the request could not be produced for a transient reason; metadata unreachable; the node is shutting down (requests still waiting are answered at once); `?wait=` on more services than `events_topics_max`, or their events not readable yet; `/ws` with `ws_connections_max` sockets open |
//! | 502 | the request could not be produced for good, or the reply has no valid `status` |
//! | 504 | no reply (with `?wait=`: no awaited state) within `request_timeout`; the request may still be processed (the service sees each request at least once) |
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
//! # Waiting for a state (event-driven)
//! `?wait=STATE` (1 to 64 of `[A-Za-z0-9_-]`) on a service that announces its entities' states
//! on `{service}.events` (format in [`events`]) answers when the entity the request created
//! reaches `STATE`, CQRS style, instead of when the service replies:
//! - the request is produced as usual (the query travels too) and parked in the same bounded
//!   map, as a wait; its service's 2xx reply is held, not answered. The answer is the reply's
//!   status and headers (`201`, `Location`) with the event's body and `x-state: STATE`; a state
//!   reached before the reply arrives waits for it, and answers 200 if the deadline comes
//!   first. A non-2xx reply answers at once (no event will follow an error); a `terminal`
//!   event of another state answers 409 with that event's body and `x-state`; other states
//!   change nothing; the deadline gives 504;
//! - each node reads every partition of the events topic of each service it has seen a wait
//!   for (no group: `assign`), at most `events_topics_max` topics, on a Client of its own. A
//!   topic's reading starts at its end when its first wait arrives, and that request is
//!   produced only once the positions are known: the service's events for it come after.
//!   Events whose correlation id names another node are skipped (that node reads them too),
//!   so partition moves need no forwarding here. A duplicate event answers nothing twice;
//! - `tidepool_gateway_waits_total{service,outcome=reached|ended|timed_out|failed}` counts
//!   them, `tidepool_gateway_events_total{outcome}` the events read for this node.
//!
//! The orders service announces `created` through its store's outbox (in the creating
//! transaction); [`services::OrderValidator`], a consumer group on `orders.events`, announces
//! `validated` or `rejected` (terminal).
//!
//! # WebSocket
//! `GET /ws` upgrades to a WebSocket (at most `ws_connections_max` open; messages up to
//! `ws_message_bytes_max`). Each text frame is one request,
//! `{"id": string or number, "service": "orders", "method": "POST", "path": "/", "query": "wait=validated", "headers": {"x-a": "b"}, "body": ...}`
//! (`method` defaults to GET, `path` to `/`; a string `body` travels as is, any other JSON as
//! JSON with `content-type: application/json` unless given). Each gets one answer frame,
//! `{"id", "status", "headers": {name: value}, "body"}` (the body as JSON when its type is JSON,
//! else a string), as the answers come, in any order. A request travels exactly as an HTTP one
//! does: the same statuses, a correlation id owned by this node, the same parked map and
//! deadline (504 frame), so a reply landing on another node after a rebalance is forwarded
//! to this one and answers its frame.
//! A frame that is not a request (not JSON, no id or service, a bad field), a binary frame, an
//! id already in flight on the socket, or more than `ws_in_flight_max` requests in flight get
//! an error frame (`status` 400, 413 or 503, `body.error` saying why, `id` when readable) and
//! the socket stays open (`tidepool_gateway_ws_frames_refused_total{reason}`). When the socket
//! closes, its waiting requests leave the parked map; when the node shuts down, their 503
//! frames go out and the socket closes with 1001.
//!
//! # Layout
//! - [`config`]: [`GatewayConfig`] and [`ResponderConfig`], every bound in one place.
//! - [`headers`]: the record headers of requests and replies (the wire contract).
//! - [`correlation`]: correlation ids and the owned response partitions.
//! - [`parked`]: the bounded map of waiting requests.
//! - `http`: the axum routes and the one path every request takes; `ws`: `/ws`; `node`: a
//!   gateway node ([`Gateway`]); `responses`: its response consumer; `directory`: which
//!   services exist; [`events`]: the events reader for waits, and the event record format.
//! - `nodes`: the announcements and the node table; `forward`: forwarding a reply to the node
//!   that parked its request, and the `/internal/responses` wire format.
//! - [`responder`]: [`Responder`], [`ServiceHandler`], [`ServiceRequest`], [`ServiceResponse`].
//! - [`services`]: the example services (orders, customer, basket) on the embedded store, and
//!   the order validator.
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
pub mod events;
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
mod ws;

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
