//! The gateway's metrics, rendered as Prometheus text at `/metrics`.
//!
//! As in the pipeline (`tidepool_pipeline::metrics`), each [`GatewayMetrics`] owns its own
//! recorder rather than installing a global one: tests run several gateway nodes in one
//! process, each counting only its own traffic. Labels carry service names only once the
//! service is known to exist, so a client cannot grow the label set with made-up names.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{Counter, Gauge};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// HTTP answers, by service and status.
pub const REQUESTS: &str = "tidepool_gateway_requests_total";
/// From a request's arrival to its answer, by service.
pub const LATENCY: &str = "tidepool_gateway_request_latency_seconds";
/// Requests waiting for their response now.
pub const PARKED: &str = "tidepool_gateway_parked_requests";
/// Requests answered 504 because no response came in time, by service.
pub const TIMEOUTS: &str = "tidepool_gateway_timeouts_total";
/// Requests refused with 503, by reason.
pub const UNAVAILABLE: &str = "tidepool_gateway_unavailable_total";
/// Responses handed to their parked request.
pub const RESPONSES_DELIVERED: &str = "tidepool_gateway_responses_delivered_total";
/// Responses dropped, by reason: late, duplicate, unknown, malformed, node_gone,
/// stale_incarnation, forward_failed, forward_refused.
pub const RESPONSES_DROPPED: &str = "tidepool_gateway_responses_dropped_total";
/// Replies forwarded between nodes, by direction: `sent` (answered by the node that parked the
/// request) and `received` (taken by this node's `/internal/responses`).
pub const RESPONSES_FORWARDED: &str = "tidepool_gateway_responses_forwarded_total";
/// Forwarding attempts that failed (each retry counts).
pub const FORWARD_FAILURES: &str = "tidepool_gateway_forward_failures_total";
/// Requests a responder answered, by service.
pub const RESPONDER_REPLIES: &str = "tidepool_responder_replies_total";
/// Requests that waited for a state (`?wait=`), by service and outcome: `reached` (answered
/// with the state), `ended` (409: a terminal other state), `timed_out` (504), `failed` (any
/// other answer: the service's error, 503, ...).
pub const WAITS: &str = "tidepool_gateway_waits_total";
/// Events read for this node's requests, by outcome: reached, held (before the reply),
/// ended, ignored (nobody waits for it), late, malformed. Events for other nodes' requests
/// are not counted.
pub const EVENTS: &str = "tidepool_gateway_events_total";
/// WebSockets open on `/ws` now.
pub const WEBSOCKETS: &str = "tidepool_gateway_websockets";
/// WebSocket frames refused with an error frame, by reason: binary, malformed, too_large,
/// in_flight, duplicate_id.
pub const WS_REFUSED: &str = "tidepool_gateway_ws_frames_refused_total";

const LATENCY_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Histogram samples are folded into buckets on render or upkeep; a gateway nobody scrapes
/// would queue them forever, so every so many samples it folds them itself.
const UPKEEP_EVERY: u64 = 1024;

/// One gateway's metrics. Clones share one recorder.
#[derive(Clone)]
pub struct GatewayMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    parked: Gauge,
    delivered: Counter,
    websockets: Gauge,
    samples: AtomicU64,
}

impl std::fmt::Debug for GatewayMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayMetrics").finish_non_exhaustive()
    }
}

impl Default for GatewayMetrics {
    fn default() -> GatewayMetrics {
        GatewayMetrics::new()
    }
}

fn labels(pairs: &[(&'static str, &str)]) -> Vec<metrics::Label> {
    pairs
        .iter()
        .map(|(key, value)| metrics::Label::new(*key, (*value).to_owned()))
        .collect()
}

impl GatewayMetrics {
    pub fn new() -> GatewayMetrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(LATENCY.to_owned()), &LATENCY_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        let (parked, delivered, websockets) = metrics::with_local_recorder(&recorder, || {
            metrics::describe_counter!(REQUESTS, "HTTP answers, by service and status");
            metrics::describe_histogram!(
                LATENCY,
                metrics::Unit::Seconds,
                "From a request's arrival to its answer, by service"
            );
            metrics::describe_gauge!(PARKED, "Requests waiting for their response");
            metrics::describe_counter!(TIMEOUTS, "Requests answered 504, by service");
            metrics::describe_counter!(UNAVAILABLE, "Requests refused with 503, by reason");
            metrics::describe_counter!(RESPONSES_DELIVERED, "Responses given to their request");
            metrics::describe_counter!(RESPONSES_DROPPED, "Responses dropped, by reason");
            metrics::describe_counter!(RESPONSES_FORWARDED, "Replies forwarded, by direction");
            metrics::describe_counter!(FORWARD_FAILURES, "Failed forwarding attempts");
            metrics::describe_counter!(RESPONDER_REPLIES, "Replies a responder produced");
            metrics::describe_counter!(WAITS, "Requests that waited for a state, by outcome");
            metrics::describe_counter!(EVENTS, "Events read for this node's requests");
            metrics::describe_gauge!(WEBSOCKETS, "WebSockets open on /ws");
            metrics::describe_counter!(WS_REFUSED, "WebSocket frames refused, by reason");
            (
                metrics::gauge!(PARKED),
                metrics::counter!(RESPONSES_DELIVERED),
                metrics::gauge!(WEBSOCKETS),
            )
        });
        GatewayMetrics {
            inner: Arc::new(Inner {
                recorder,
                handle,
                parked,
                delivered,
                websockets,
                samples: AtomicU64::new(0),
            }),
        }
    }

    /// Everything recorded so far, in the Prometheus text format.
    pub fn render(&self) -> String {
        self.inner.handle.render()
    }

    fn counter(&self, name: &'static str, pairs: &[(&'static str, &str)]) -> Counter {
        let labels = labels(pairs);
        metrics::with_local_recorder(&self.inner.recorder, || metrics::counter!(name, labels))
    }

    pub(crate) fn parked_gauge(&self) -> Gauge {
        self.inner.parked.clone()
    }

    pub(crate) fn answered(&self, service: &str, status: u16, latency: Duration) {
        let status = status.to_string();
        self.counter(REQUESTS, &[("service", service), ("status", &status)])
            .increment(1);
        let labels = labels(&[("service", service)]);
        metrics::with_local_recorder(&self.inner.recorder, || {
            metrics::histogram!(LATENCY, labels)
        })
        .record(latency.as_secs_f64());
        if self.inner.samples.fetch_add(1, Ordering::Relaxed) % UPKEEP_EVERY == UPKEEP_EVERY - 1 {
            self.inner.handle.run_upkeep();
        }
    }

    pub(crate) fn timed_out(&self, service: &str) {
        self.counter(TIMEOUTS, &[("service", service)]).increment(1);
    }

    pub(crate) fn unavailable(&self, reason: &'static str) {
        self.counter(UNAVAILABLE, &[("reason", reason)])
            .increment(1);
    }

    pub(crate) fn delivered(&self) {
        self.inner.delivered.increment(1);
    }

    pub(crate) fn dropped(&self, reason: &'static str) {
        self.counter(RESPONSES_DROPPED, &[("reason", reason)])
            .increment(1);
    }

    pub(crate) fn forwarded(&self, direction: &'static str) {
        self.counter(RESPONSES_FORWARDED, &[("direction", direction)])
            .increment(1);
    }

    pub(crate) fn forward_failed(&self) {
        self.counter(FORWARD_FAILURES, &[]).increment(1);
    }

    pub(crate) fn waited(&self, service: &str, outcome: &'static str) {
        self.counter(WAITS, &[("service", service), ("outcome", outcome)])
            .increment(1);
    }

    pub(crate) fn event(&self, outcome: &'static str) {
        self.counter(EVENTS, &[("outcome", outcome)]).increment(1);
    }

    pub(crate) fn websocket_opened(&self) {
        self.inner.websockets.increment(1.0);
    }

    pub(crate) fn websocket_closed(&self) {
        self.inner.websockets.decrement(1.0);
    }

    pub(crate) fn ws_refused(&self, reason: &'static str) {
        self.counter(WS_REFUSED, &[("reason", reason)]).increment(1);
    }

    pub(crate) fn replied(&self, service: &str) {
        self.counter(RESPONDER_REPLIES, &[("service", service)])
            .increment(1);
    }

    /// The value of a counter with exactly these labels, from the rendered text (tests and
    /// health checks; 0 when it was never counted).
    pub fn counter_value(&self, name: &str, pairs: &[(&str, &str)]) -> u64 {
        let wanted = if pairs.is_empty() {
            name.to_owned()
        } else {
            let inner: Vec<String> = pairs
                .iter()
                .map(|(key, value)| format!("{key}=\"{value}\""))
                .collect();
            format!("{name}{{{}}}", inner.join(","))
        };
        self.render()
            .lines()
            .filter_map(|line| line.rsplit_once(' '))
            .find(|(series, _)| *series == wanted)
            .and_then(|(_, value)| value.parse::<f64>().ok())
            .map_or(0, |value| value as u64)
    }
}
