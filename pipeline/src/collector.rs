//! The collector (DESIGN.md §5): `POST /v1/events` → validate → produce to `events.raw` keyed by
//! tenant → `202 Accepted` once every record is acknowledged.
//!
//! # What an answer promises
//! - **202** `{"accepted":[ids]}`: every event of the request is in the topic, acknowledged by
//!   the broker. This holds only if the producer handed to [`router`] uses acks=all with
//!   idempotence (the client's defaults; the collector cannot check them): with weaker acks a
//!   202 could still lose events to a leader change.
//! - **400 / 413 / 415**: nothing of the request was produced. Validation is all-or-nothing:
//!   one invalid event refuses the request, with every problem listed by index.
//! - **503** (with `Retry-After`) or **500**: the request was not accepted, but some of its
//!   events may have been written anyway: records already handed to the producer cannot be
//!   taken back, and a delivery that timed out may have landed. The body lists them
//!   (`possibly_written`, or `acknowledged` and `not_acknowledged`). The client retries the
//!   whole request with the same ids: delivery is at-least-once, and consumers deduplicate on
//!   the event id. 503 means retrying should work (buffer full, broker unreachable, too many
//!   requests); 500 means it will not without a change (a record the producer refuses, a
//!   non-retriable broker error).
//!
//! # Bounds
//! The body (`body_bytes_max`, checked against Content-Length before reading, then while
//! reading), events per request, payload size, and requests in flight (`requests_in_flight_max`;
//! beyond it a request is refused at once with 503 rather than queued). The producer's buffer is
//! the last bound: records are enqueued with `try_send`, which fails at once when the buffer is
//! full instead of waiting `max_block`, so a slow broker turns into quick 503s rather than piled
//! up connections.
//!
//! # Records
//! Key: the tenant (one tenant's events stay ordered on one partition). Value: the event as
//! compact JSON, timestamp converted to epoch ms. Headers: `event-id`, `event-type`. The
//! record's timestamp is the producer's wall clock (the arrival time, which is what a replay by
//! timestamp wants); the event's own time stays in the value, which keeps a client's clock
//! away from the broker's `message.timestamp.*` checks.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tidepool_client::{DeliveryFuture, Error, KafkaCode, Producer, ProducerRecord};
use tidepool_io::{Clock, SystemClock};
use tokio::sync::Semaphore;

use crate::event::{BatchError, Event, EventLimits, parse_batch};
use crate::metrics::PipelineMetrics;

/// Header carrying the event's id on every record the collector writes.
pub const HEADER_EVENT_ID: &str = "event-id";
/// Header carrying the event's type.
pub const HEADER_EVENT_TYPE: &str = "event-type";

#[derive(Clone)]
pub struct CollectorConfig {
    /// Where events go.
    pub topic: String,
    /// Largest request body.
    pub body_bytes_max: usize,
    pub events_per_request_max: usize,
    /// Requests handled at once; more are answered 503 at once.
    pub requests_in_flight_max: usize,
    /// What `Retry-After` says on a 503.
    pub retry_after_s: u32,
    /// What an event may hold.
    pub limits: EventLimits,
    /// How long the first request to a topic waits for its metadata: until the producer has
    /// it, `try_send` cannot place a record.
    pub metadata_wait: Duration,
    /// For the acknowledgement latency and the timestamp checks; the simulator passes its own.
    pub clock: Arc<dyn Clock>,
}

impl Default for CollectorConfig {
    fn default() -> CollectorConfig {
        CollectorConfig {
            // `topics::RAW`, spelled out so the collector stands alone.
            topic: "events.raw".to_owned(),
            body_bytes_max: 1 << 20,
            events_per_request_max: 1000,
            requests_in_flight_max: 64,
            retry_after_s: 1,
            limits: EventLimits::default(),
            metadata_wait: Duration::from_secs(10),
            clock: Arc::new(SystemClock::new()),
        }
    }
}

impl std::fmt::Debug for CollectorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectorConfig")
            .field("topic", &self.topic)
            .field("body_bytes_max", &self.body_bytes_max)
            .field("events_per_request_max", &self.events_per_request_max)
            .field("requests_in_flight_max", &self.requests_in_flight_max)
            .field("retry_after_s", &self.retry_after_s)
            .field("limits", &self.limits)
            .field("metadata_wait", &self.metadata_wait)
            .finish_non_exhaustive()
    }
}

impl CollectorConfig {
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> CollectorConfig {
        self.clock = clock;
        self
    }
}

#[derive(Clone)]
struct Collector {
    producer: Producer,
    config: Arc<CollectorConfig>,
    metrics: PipelineMetrics,
    permits: Arc<Semaphore>,
    /// Set once the producer reports itself closed or fatally broken: it never recovers, so
    /// health stays failed and a supervisor can replace the process.
    broken: Arc<OnceLock<String>>,
}

/// The collector's routes: `POST /v1/events`, `GET /healthz`, `GET /metrics`. Serve it on any
/// listener ([`serve`], or `axum::serve` directly).
pub fn router(producer: Producer, config: CollectorConfig, metrics: PipelineMetrics) -> Router {
    let body_limit = config.body_bytes_max;
    let collector = Collector {
        producer,
        permits: Arc::new(Semaphore::new(config.requests_in_flight_max)),
        config: Arc::new(config),
        metrics,
        broken: Arc::new(OnceLock::new()),
    };
    Router::new()
        .route("/v1/events", post(post_events))
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(collector)
}

/// Serves `router` on `listener` until the process ends.
pub async fn serve<L>(listener: L, router: Router) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, router).await
}

/// Serves `router` on `listener` until `shutdown` completes, then lets requests in progress
/// finish (their events are acknowledged or refused, never cut off).
pub async fn serve_with_shutdown<L>(
    listener: L,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn healthz(State(collector): State<Collector>) -> Response {
    match collector.broken.get() {
        None => (StatusCode::OK, "ok").into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("producer unusable: {reason}"),
        )
            .into_response(),
    }
}

async fn render_metrics(State(collector): State<Collector>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        collector.metrics.render(),
    )
        .into_response()
}

async fn post_events(State(collector): State<Collector>, request: Request) -> Response {
    let started = collector.config.clock.now();
    let response = match Arc::clone(&collector.permits).try_acquire_owned() {
        Ok(_permit) => {
            let _in_flight = InFlight::enter(&collector.metrics);
            collector.accept(request, started).await
        }
        Err(_) => collector.retry_later(
            "too many requests in flight",
            json!({ "requests_in_flight_max": collector.config.requests_in_flight_max }),
        ),
    };
    collector
        .metrics
        .request_answered(response.status().as_u16());
    response
}

/// Counts a request in the in-flight gauge for as long as it is handled, even when the client
/// goes away and the handler is dropped.
struct InFlight<'a>(&'a PipelineMetrics);

impl<'a> InFlight<'a> {
    fn enter(metrics: &'a PipelineMetrics) -> InFlight<'a> {
        metrics.in_flight().increment(1.0);
        InFlight(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight().decrement(1.0);
    }
}

fn error_body(status: StatusCode, reason: &str, mut extra: Value) -> Response {
    if let Value::Object(fields) = &mut extra {
        fields.insert("error".to_owned(), Value::String(reason.to_owned()));
    } else {
        extra = json!({ "error": reason });
    }
    (status, axum::Json(extra)).into_response()
}

fn ids(events: &[Event]) -> Vec<&str> {
    events.iter().map(|event| event.id.as_str()).collect()
}

/// Whether sending again may succeed without anything changing on the caller's side.
fn is_transient(error: &Error) -> bool {
    error.is_retriable()
        || matches!(
            error,
            Error::UnknownOutcome(_) | Error::BufferFull | Error::Closed | Error::Fatal(_)
        )
}

/// Whether a failed delivery may have been written anyway. An idempotent producer turns a
/// resend of a written batch into success, so only a definite refusal rules it out.
fn may_be_written(error: &Error) -> bool {
    !matches!(error, Error::Invalid(_) | Error::BufferFull)
        && !matches!(error, Error::Kafka { code, .. } if !code.is_retriable())
}

impl Collector {
    fn retry_later(&self, reason: &str, extra: Value) -> Response {
        let mut response = error_body(StatusCode::SERVICE_UNAVAILABLE, reason, extra);
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(self.config.retry_after_s),
        );
        response
    }

    fn note_producer_error(&self, error: &Error) {
        if matches!(error, Error::Closed | Error::Fatal(_)) {
            let _ = self.broken.set(error.to_string());
        }
    }

    async fn accept(&self, request: Request, started: Duration) -> Response {
        if let Some(refused) = self.check_headers(request.headers()) {
            return refused;
        }
        let body = match Bytes::from_request(request, &()).await {
            Ok(body) => body,
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return self.too_large();
            }
            Err(rejection) => {
                return error_body(rejection.status(), &rejection.body_text(), json!({}));
            }
        };
        let events = match parse_batch(
            &body,
            &self.config.limits,
            self.config.clock.wall_ms(),
            self.config.events_per_request_max,
        ) {
            Ok(events) => events,
            Err(error) => return self.refuse_batch(&error),
        };
        self.produce(&events, started).await
    }

    fn check_headers(&self, headers: &HeaderMap) -> Option<Response> {
        if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
            let essence = content_type
                .to_str()
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            if essence != "application/json" && !essence.ends_with("+json") {
                return Some(error_body(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "the body must be JSON (Content-Type: application/json)",
                    json!({}),
                ));
            }
        }
        // Refused before a byte of the body is read.
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|length| length.to_str().ok())
            .and_then(|length| length.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.config.body_bytes_max as u64) {
            return Some(self.too_large());
        }
        None
    }

    fn too_large(&self) -> Response {
        error_body(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "the body is larger than {} bytes; send fewer events per request",
                self.config.body_bytes_max
            ),
            json!({ "body_bytes_max": self.config.body_bytes_max }),
        )
    }

    fn refuse_batch(&self, error: &BatchError) -> Response {
        let reason = error.to_string();
        match error {
            BatchError::Invalid(errors) => {
                self.metrics.events_rejected("invalid", errors.len());
                error_body(
                    StatusCode::BAD_REQUEST,
                    &reason,
                    json!({ "errors": errors }),
                )
            }
            BatchError::TooMany { count, max } => {
                self.metrics.events_rejected("too_many", *count);
                error_body(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &reason,
                    json!({ "events_per_request_max": max }),
                )
            }
            BatchError::Malformed(_) | BatchError::NotEvents(_) | BatchError::Empty => {
                error_body(StatusCode::BAD_REQUEST, &reason, json!({}))
            }
        }
    }

    fn record(&self, event: &Event, value: &Bytes) -> ProducerRecord {
        ProducerRecord::new(self.config.topic.clone(), value.clone())
            .key(event.tenant.clone())
            .header(HEADER_EVENT_ID, event.id.clone())
            .header(HEADER_EVENT_TYPE, event.kind.clone())
    }

    /// Hands one record to the producer without waiting for buffer space.
    async fn enqueue(&self, event: &Event) -> Result<DeliveryFuture, Error> {
        let value = Bytes::from(event.to_json());
        match self.producer.try_send(self.record(event, &value)) {
            Err(error) if error.code() == Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION) => {
                // The topic's metadata is not cached yet (the first request after start):
                // `send` loads it. It could also wait for buffer space, so it is bounded.
                tokio::select! {
                    sent = self.producer.send(self.record(event, &value)) => sent,
                    () = self.config.clock.sleep(self.config.metadata_wait) => Err(Error::kafka(
                        KafkaCode::UNKNOWN_TOPIC_OR_PARTITION,
                        format!(
                            "no metadata for topic {} within {:?}",
                            self.config.topic, self.config.metadata_wait
                        ),
                        None,
                    )),
                }
            }
            other => other,
        }
    }

    async fn produce(&self, events: &[Event], started: Duration) -> Response {
        let mut deliveries = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            match self.enqueue(event).await {
                Ok(delivery) => deliveries.push(delivery),
                Err(error) => return self.refuse_midway(events, index, &error),
            }
        }
        let mut acknowledged = Vec::with_capacity(events.len());
        let mut failed = Vec::new();
        // Sequential awaits cost nothing extra: every record is already on its way.
        for (event, delivery) in events.iter().zip(deliveries) {
            match delivery.await {
                Ok(_) => acknowledged.push(event.id.as_str()),
                Err(error) => failed.push((event, error)),
            }
        }
        if failed.is_empty() {
            self.metrics.events_accepted(events.len());
            self.metrics
                .ack_latency(self.config.clock.now().saturating_sub(started));
            return (
                StatusCode::ACCEPTED,
                axum::Json(json!({ "accepted": acknowledged })),
            )
                .into_response();
        }
        self.delivery_failed(events, &acknowledged, &failed)
    }

    /// The producer refused `events[index]`; the ones before it are enqueued and will be
    /// written, but the request as a whole is not accepted.
    fn refuse_midway(&self, events: &[Event], index: usize, error: &Error) -> Response {
        self.note_producer_error(error);
        self.metrics.events_rejected(
            if matches!(error, Error::BufferFull) {
                "buffer_full"
            } else {
                "producer_refused"
            },
            events.len(),
        );
        let reason = match error {
            Error::BufferFull => "the producer's buffer is full; retry later".to_owned(),
            other => format!("the producer refused event {index}: {other}"),
        };
        tracing::debug!(index, %error, "collector: request refused while enqueuing");
        let extra = json!({
            "possibly_written": ids(&events[..index]),
            "note": "events listed may still be written; retry the whole request with the \
                     same ids, consumers deduplicate by id",
        });
        if is_transient(error) {
            self.retry_later(&reason, extra)
        } else {
            error_body(StatusCode::INTERNAL_SERVER_ERROR, &reason, extra)
        }
    }

    fn delivery_failed(
        &self,
        events: &[Event],
        acknowledged: &[&str],
        failed: &[(&Event, Error)],
    ) -> Response {
        for (_, error) in failed {
            self.note_producer_error(error);
        }
        self.metrics
            .events_rejected("delivery_failed", events.len());
        tracing::warn!(
            failed = failed.len(),
            of = events.len(),
            first = %failed[0].1,
            "collector: deliveries failed"
        );
        let reason = format!(
            "{} of {} events were not acknowledged by the broker; the request is not accepted",
            failed.len(),
            events.len()
        );
        let not_acknowledged: Vec<Value> = failed
            .iter()
            .map(|(event, error)| {
                json!({
                    "id": event.id,
                    "reason": error.to_string(),
                    "may_be_written": may_be_written(error),
                })
            })
            .collect();
        let extra = json!({
            "acknowledged": acknowledged,
            "not_acknowledged": not_acknowledged,
            "note": "retry the whole request with the same ids, consumers deduplicate by id",
        });
        if failed.iter().all(|(_, error)| is_transient(error)) {
            self.retry_later(&reason, extra)
        } else {
            error_body(StatusCode::INTERNAL_SERVER_ERROR, &reason, extra)
        }
    }
}
