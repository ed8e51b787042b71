//! Log maintenance across the cluster: compaction of compacted topics and retention of
//! delete topics, run by the maintenance task on the Clock seam (every `log.cleaner.backoff.ms`
//! and `log.retention.check.interval.ms`) or at once through `Control`. Every compaction pass
//! leaves a report, logged and kept (the last `REPORTS_KEPT`) for tests to read.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::ResponseError;

use crate::cluster::Cluster;
use crate::log::RetentionStats;
use crate::partition::Partition;

/// Reports kept in memory; older ones are dropped.
pub const REPORTS_KEPT: usize = 256;

/// What one compaction pass of one partition did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanerReport {
    pub topic: String,
    pub partition: i32,
    pub segments_before: usize,
    pub segments_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_before: u64,
    /// Superseded records and expired tombstones, together.
    pub records_removed: u64,
    pub tombstones_removed: u64,
    pub keys_kept: u64,
    /// Offsets below this are clean.
    pub cleaned_up_to: i64,
}

/// The cleaner's memory: recent reports and when each kind of work last ran.
#[derive(Debug, Default)]
pub struct Cleaner {
    reports: Mutex<VecDeque<CleanerReport>>,
    last_runs: Mutex<(Option<Duration>, Option<Duration>)>,
}

impl Cleaner {
    pub fn reports(&self) -> Vec<CleanerReport> {
        self.reports
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    fn record(&self, report: CleanerReport) {
        let mut reports = self
            .reports
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if reports.len() == REPORTS_KEPT {
            reports.pop_front();
        }
        reports.push_back(report);
    }

    /// Whether `interval` has passed since the last run of this kind (and marks it run). The
    /// first run comes one interval after start, as Kafka delays its first retention check:
    /// a restarted broker does not delete old segments the moment it opens them.
    fn due(&self, now: Duration, interval: Duration, cleaner: bool) -> bool {
        let mut last_runs = self
            .last_runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let last = if cleaner {
            &mut last_runs.0
        } else {
            &mut last_runs.1
        };
        match last {
            None => {
                *last = Some(now);
                false
            }
            Some(previous) if now.saturating_sub(*previous) < interval => false,
            Some(_) => {
                *last = Some(now);
                true
            }
        }
    }
}

/// One compaction pass of `partition` (`force` ignores the dirty ratio); None if the topic
/// is not compacted or nothing was due.
pub fn clean(
    cluster: &Cluster,
    partition: &Partition,
    force: bool,
) -> Result<Option<CleanerReport>, ResponseError> {
    let now_ms = cluster.env.clock.wall_ms();
    let Some(stats) = partition
        .state()
        .compact(now_ms, force, cluster.config.cleaner_keys_max)?
    else {
        return Ok(None);
    };
    let report = CleanerReport {
        topic: partition.topic.clone(),
        partition: partition.index,
        segments_before: stats.segments_before,
        segments_after: stats.segments_after,
        bytes_before: stats.bytes_before,
        bytes_after: stats.bytes_after,
        records_before: stats.records_before,
        records_removed: stats.records_removed,
        tombstones_removed: stats.tombstones_removed,
        keys_kept: stats.keys_kept,
        cleaned_up_to: stats.cleaned_up_to,
    };
    tracing::info!(?report, "compacted");
    cluster.cleaner.record(report.clone());
    // Fetches parked on the partition see the new layout at once (nothing they wait for
    // changes, but a woken fetch rereads).
    partition.wake_watchers();
    Ok(Some(report))
}

pub fn retain(cluster: &Cluster, partition: &Partition) -> Result<RetentionStats, ResponseError> {
    let now_ms = cluster.env.clock.wall_ms();
    let stats = partition.state().apply_retention(now_ms)?;
    if stats.segments_removed > 0 {
        tracing::info!(topic = %partition.topic, partition = partition.index, ?stats, "retention removed segments");
    }
    Ok(stats)
}

/// The periodic part, called by the maintenance task: compaction every
/// `cleaner_backoff_ms`, retention every `retention_check_interval_ms`.
pub fn maintain(cluster: &Arc<Cluster>) {
    let now = cluster.env.clock.now();
    let cleaning = cluster.cleaner.due(
        now,
        Duration::from_millis(cluster.config.cleaner_backoff_ms),
        true,
    );
    let retaining = cluster.cleaner.due(
        now,
        Duration::from_millis(cluster.config.retention_check_interval_ms),
        false,
    );
    if !(cleaning || retaining) {
        return;
    }
    for partition in cluster.partitions() {
        // Errors poison the partition, which logs them; other partitions carry on.
        if cleaning {
            let _ = clean(cluster, &partition, false);
        }
        if retaining {
            let _ = retain(cluster, &partition);
        }
    }
}
