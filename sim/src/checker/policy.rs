//! Which anomalies the run's configuration (and the faults it suffered) allow, and why.
//!
//! The checker always looks for every anomaly and reports what it finds; an anomaly the
//! configuration allows is reported with `allowed: true` and the reason, and does not make the
//! history invalid. The rules, one per anomaly, live in [`Policy::allowance`].

use crate::history::{Acks, CommitOrder, Config, EventKind, Fault, History, Isolation};

use super::Anomaly;

/// The reasons, where they apply, that excuse each family of anomalies.
pub(super) struct Policy {
    /// Acknowledged writes may be lost from the log.
    loss: Option<String>,
    /// Consumers may skip records (commit before processing).
    at_most_once: Option<String>,
    /// A producer retry may write a record twice.
    retry_duplicates: Option<String>,
    /// Producer retries may reorder records in flight.
    retry_reorders: Option<String>,
    /// Consumers may see records of aborted transactions.
    aborted_visible: Option<String>,
    /// Unseen records may simply not have been polled yet.
    no_drain: Option<String>,
}

impl Policy {
    pub fn new(history: &History, config: &Config, drained_at: Option<u64>) -> Policy {
        Policy {
            loss: loss_excuse(history, config),
            at_most_once: (config.commit_order == CommitOrder::BeforeProcessing).then(|| {
                "consumers commit before processing (at-most-once): a consumer that stops in \
                 between skips what it had polled"
                    .to_owned()
            }),
            retry_duplicates: (!config.idempotent).then(|| {
                "the producer is not idempotent: a retried send can be written twice".to_owned()
            }),
            retry_reorders: (!config.idempotent).then(|| {
                "the producer is not idempotent: a retry can land behind a later send".to_owned()
            }),
            aborted_visible: (config.transactional
                && config.isolation == Isolation::ReadUncommitted)
                .then(|| {
                    "read_uncommitted consumers may read records of aborted transactions".to_owned()
                }),
            no_drain: drained_at.is_none().then(|| {
                "the history has no final drain (phase `drained`): an unseen record may just not \
                 have been polled yet"
                    .to_owned()
            }),
        }
    }

    /// Whether acknowledged writes may be lost in this run (a lost tail may explain what
    /// readers saw).
    pub fn loss_possible(&self) -> bool {
        self.loss.is_some()
    }

    /// Why the configuration allows this anomaly, or `None` if it is a bug. The rules:
    ///
    /// - lost-write, unseen, inconsistent-offsets, poll-skip, nonmonotonic-poll,
    ///   committed-offset-regress, old-generation-commit, compaction-lost-latest: allowed when
    ///   acknowledged writes may be lost (see [`loss_excuse`]). A lost tail explains each: an
    ///   offset reused by a different record, a reader skipping or re-reading across a
    ///   truncation, a coordinator that forgot a commit or a generation.
    /// - lost-write, unseen and committed-unread are also allowed when consumers commit before
    ///   processing: a consumer that stops between commit and processing skips records for
    ///   good, so a record nobody saw may still be in the log.
    /// - unseen is also allowed without a final drain: nobody promised to read everything.
    /// - duplicate and compaction-moved-offset: allowed without idempotence (a retry writes the
    ///   value again, at another offset).
    /// - nonmonotonic-send: allowed without idempotence (with several requests in flight a
    ///   retried batch lands behind a later one) or when writes may be lost (a truncated tail
    ///   hands its offsets out again).
    /// - aborted-read: allowed only for read_uncommitted consumers of transactional producers.
    pub fn allowance(&self, anomaly: Anomaly) -> Option<String> {
        let first =
            |reasons: &[&Option<String>]| reasons.iter().find_map(|reason| (*reason).clone());
        match anomaly {
            Anomaly::LostWrite => first(&[&self.loss, &self.at_most_once]),
            Anomaly::Unseen => first(&[&self.no_drain, &self.loss, &self.at_most_once]),
            Anomaly::CommittedUnread => first(&[&self.at_most_once, &self.loss]),
            Anomaly::Duplicate | Anomaly::CompactionMovedOffset => first(&[&self.retry_duplicates]),
            Anomaly::NonmonotonicSend => first(&[&self.retry_reorders, &self.loss]),
            Anomaly::AbortedRead => first(&[&self.aborted_visible]),
            Anomaly::InconsistentOffsets
            | Anomaly::PollSkip
            | Anomaly::NonmonotonicPoll
            | Anomaly::CommittedOffsetRegress
            | Anomaly::OldGenerationCommit
            | Anomaly::CompactionLostLatest => first(&[&self.loss]),
        }
    }
}

/// Whether acknowledged writes may be lost, and why. Loss needs both a configuration that
/// permits it and a fault that can cause it; without such a fault, loss is a bug whatever the
/// configuration:
///
/// - `acks=0`: always; the producer never learns whether the write landed.
/// - `acks=1`: once a leader was disrupted (crash, crash point, link partition or hold, leader
///   move): it may have acknowledged a write its followers never copied.
/// - no sync before ack: once a host crashed (crash, crash point): writes still in the page
///   cache of every replica may be dropped.
/// - `acks=all` with sync before ack: never.
///
/// A fault the format does not name (`other`) is assumed to be able to do either.
fn loss_excuse(history: &History, config: &Config) -> Option<String> {
    if config.acks == Acks::Zero {
        return Some("acks=0: the producer never learns whether a write landed".to_owned());
    }
    history.events.iter().find_map(|event| {
        let EventKind::Fault { fault } = &event.kind else {
            return None;
        };
        let crash = matches!(
            fault,
            Fault::Crash { .. } | Fault::CrashPoint { .. } | Fault::Other { .. }
        );
        let leader_disruption = crash
            || matches!(
                fault,
                Fault::Partition { .. } | Fault::Hold { .. } | Fault::LeaderMove { .. }
            );
        if config.acks == Acks::One && leader_disruption {
            Some(format!(
                "acks=1 and a {} (event {}): a leader may acknowledge a write that a failover \
                 then drops",
                fault.name(),
                event.index
            ))
        } else if !config.sync_before_ack && crash {
            Some(format!(
                "the broker acknowledges before syncing and a {} (event {}): acknowledged writes \
                 not yet on disk may be dropped",
                fault.name(),
                event.index
            ))
        } else {
            None
        }
    })
}
