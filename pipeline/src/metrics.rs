//! The pipeline's metrics, rendered as Prometheus text at the collector's `/metrics`.
//!
//! Each [`PipelineMetrics`] owns its own Prometheus recorder instead of installing a global one:
//! a library must not claim the process-wide recorder its embedder may want, and tests start
//! several pipelines in one process, each of which must count only its own traffic. Metric
//! handles are registered through `metrics::with_local_recorder`, which binds the `metrics`
//! macros to our recorder for the duration of one call; the handles it returns keep pointing
//! at that recorder afterwards, so the hot paths hold them and never look anything up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// `POST /v1/events` answers, by HTTP status.
pub const REQUESTS: &str = "tidepool_collector_requests_total";
/// Events acknowledged to clients with 202.
pub const EVENTS_ACCEPTED: &str = "tidepool_collector_events_accepted_total";
/// Events of requests that did not get 202, by reason.
pub const EVENTS_REJECTED: &str = "tidepool_collector_events_rejected_total";
/// From a request's arrival to its 202 (every record acknowledged by the broker).
pub const ACK_LATENCY: &str = "tidepool_collector_ack_latency_seconds";
pub const REQUESTS_IN_FLIGHT: &str = "tidepool_collector_requests_in_flight";
/// Records between a group's committed offset and the end of a partition.
pub const CONSUMER_LAG: &str = "tidepool_consumer_lag";
pub const PROCESSED: &str = "tidepool_stage_processed_total";
pub const RETRIES: &str = "tidepool_stage_retries_total";
pub const DEAD_LETTERS: &str = "tidepool_stage_dead_letters_total";

/// Seconds; from a linger-bound local ack to a slow replicated one.
const ACK_LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Histogram samples wait in a queue until the recorder folds them into buckets, which it does
/// on render or upkeep. Without an HTTP listener nobody runs upkeep for us, and a pipeline
/// nobody scrapes would queue samples forever; folding every so many samples bounds it.
const UPKEEP_EVERY: u64 = 1024;

/// The pipeline's metrics. Clones share one recorder.
#[derive(Clone)]
pub struct PipelineMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    events_accepted: Counter,
    ack_latency: Histogram,
    in_flight: Gauge,
    samples: AtomicU64,
}

impl std::fmt::Debug for PipelineMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineMetrics").finish_non_exhaustive()
    }
}

impl Default for PipelineMetrics {
    fn default() -> PipelineMetrics {
        PipelineMetrics::new()
    }
}

impl PipelineMetrics {
    pub fn new() -> PipelineMetrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(ACK_LATENCY.to_owned()), &ACK_LATENCY_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        let (events_accepted, ack_latency, in_flight) =
            metrics::with_local_recorder(&recorder, || {
                metrics::describe_counter!(REQUESTS, "POST /v1/events answers, by HTTP status");
                metrics::describe_counter!(EVENTS_ACCEPTED, "Events acknowledged to clients (202)");
                metrics::describe_counter!(
                    EVENTS_REJECTED,
                    "Events of requests that were not accepted, by reason"
                );
                metrics::describe_histogram!(
                    ACK_LATENCY,
                    metrics::Unit::Seconds,
                    "From a request's arrival to its 202, every record acknowledged"
                );
                metrics::describe_gauge!(
                    REQUESTS_IN_FLIGHT,
                    "POST /v1/events requests being handled"
                );
                metrics::describe_gauge!(
                    CONSUMER_LAG,
                    "Records between a group's committed offset and the partition's end"
                );
                metrics::describe_counter!(PROCESSED, "Events a stage's handler completed");
                metrics::describe_counter!(RETRIES, "Events a stage sent to the retry topic");
                metrics::describe_counter!(
                    DEAD_LETTERS,
                    "Events a stage sent to the dead-letter topic"
                );
                (
                    metrics::counter!(EVENTS_ACCEPTED),
                    metrics::histogram!(ACK_LATENCY),
                    metrics::gauge!(REQUESTS_IN_FLIGHT),
                )
            });
        PipelineMetrics {
            inner: Arc::new(Inner {
                recorder,
                handle,
                events_accepted,
                ack_latency,
                in_flight,
                samples: AtomicU64::new(0),
            }),
        }
    }

    /// Everything recorded so far, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        self.inner.handle.render()
    }

    /// Registers (or finds) a counter on this pipeline's recorder: for stages with metrics of
    /// their own.
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, String)]) -> Counter {
        let labels: Vec<metrics::Label> = labels
            .iter()
            .map(|(key, value)| metrics::Label::new(*key, value.clone()))
            .collect();
        metrics::with_local_recorder(&self.inner.recorder, || metrics::counter!(name, labels))
    }

    /// Registers (or finds) a gauge on this pipeline's recorder.
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, String)]) -> Gauge {
        let labels: Vec<metrics::Label> = labels
            .iter()
            .map(|(key, value)| metrics::Label::new(*key, value.clone()))
            .collect();
        metrics::with_local_recorder(&self.inner.recorder, || metrics::gauge!(name, labels))
    }

    /// The headline metric: how far `group` is behind on one partition.
    pub fn set_lag(&self, group: &str, topic: &str, partition: i32, lag: i64) {
        // Lag is a count of records; f64 is exact for any lag a partition can have in practice.
        #[allow(clippy::cast_precision_loss)]
        let lag = lag as f64;
        self.gauge(
            CONSUMER_LAG,
            &[
                ("group", group.to_owned()),
                ("topic", topic.to_owned()),
                ("partition", partition.to_string()),
            ],
        )
        .set(lag);
    }

    pub fn inc_processed(&self, stage: &str) {
        self.counter(PROCESSED, &[("stage", stage.to_owned())])
            .increment(1);
    }

    pub fn inc_retry(&self, stage: &str) {
        self.counter(RETRIES, &[("stage", stage.to_owned())])
            .increment(1);
    }

    pub fn inc_dead_letter(&self, stage: &str) {
        self.counter(DEAD_LETTERS, &[("stage", stage.to_owned())])
            .increment(1);
    }

    pub(crate) fn request_answered(&self, status: u16) {
        self.counter(REQUESTS, &[("status", status.to_string())])
            .increment(1);
    }

    pub(crate) fn events_accepted(&self, count: usize) {
        self.inner.events_accepted.increment(count as u64);
    }

    pub(crate) fn events_rejected(&self, reason: &'static str, count: usize) {
        if count > 0 {
            self.counter(EVENTS_REJECTED, &[("reason", reason.to_owned())])
                .increment(count as u64);
        }
    }

    pub(crate) fn ack_latency(&self, latency: Duration) {
        self.inner.ack_latency.record(latency.as_secs_f64());
        if self.inner.samples.fetch_add(1, Ordering::Relaxed) % UPKEEP_EVERY == UPKEEP_EVERY - 1 {
            self.inner.handle.run_upkeep();
        }
    }

    pub(crate) fn in_flight(&self) -> &Gauge {
        &self.inner.in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_pipelines_in_one_process_count_separately() {
        let first = PipelineMetrics::new();
        let second = PipelineMetrics::new();
        first.inc_processed("enrichment");
        first.inc_processed("enrichment");
        second.inc_retry("analytics");
        first.set_lag("persister", "events.raw", 3, 42);
        let text = first.render();
        assert!(
            text.contains(r#"tidepool_stage_processed_total{stage="enrichment"} 2"#),
            "{text}"
        );
        assert!(text.contains(
            r#"tidepool_consumer_lag{group="persister",topic="events.raw",partition="3"} 42"#
        ));
        assert!(!text.contains("tidepool_stage_retries_total"));
        assert!(
            second
                .render()
                .contains(r#"tidepool_stage_retries_total{stage="analytics"} 1"#)
        );
    }

    #[test]
    fn ack_latency_is_a_histogram_with_buckets() {
        let metrics = PipelineMetrics::new();
        for _ in 0..UPKEEP_EVERY + 1 {
            metrics.ack_latency(Duration::from_millis(3));
        }
        let text = metrics.render();
        assert!(text.contains("# TYPE tidepool_collector_ack_latency_seconds histogram"));
        assert!(text.contains(r#"tidepool_collector_ack_latency_seconds_bucket{le="0.005"} 1025"#));
        assert!(text.contains("tidepool_collector_ack_latency_seconds_count 1025"));
    }
}
