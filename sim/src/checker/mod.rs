//! The delivery-semantics checker: judges a [`History`] and says which anomalies it shows
//! (DESIGN.md §7, issue 8 item 4).
//!
//! Pure and deterministic: the same history and configuration give the same [`Report`], byte
//! for byte once serialised (ordered maps only). It ports the anomalies of Jepsen's Kafka
//! workload and adds Tidepool's own; each is defined where it is checked and summarised on
//! [`Anomaly`]. Which of them the configuration allows is decided in one place
//! (`policy::Policy::allowance`).
//!
//! The checker identifies records by value, so it relies on the recording conventions listed
//! in [`crate::history`] (unique values, `fail` only for certain failure, `assign` on every
//! repositioning). When a history breaks one it can see, it reports a *problem* and the
//! report is not valid: the verdict could not be trusted. It also assumes no retention or
//! DeleteRecords removes records from a log's start during the run.
//!
//! ```
//! use tidepool_sim::checker::check;
//! use tidepool_sim::history::{Op, Recorder, RunMeta, SendOp};
//!
//! let mut recorder = Recorder::new(RunMeta::default());
//! let send = |offset| Op::Send(SendOp {
//!     topic: "t".into(), partition: Some(0), key: None, value: Some("v".into()), offset,
//! });
//! let invoke = recorder.invoke(0, "producer", send(None));
//! recorder.ok(1, "producer", invoke, send(Some(0)));
//! let history = recorder.finish().unwrap();
//! let report = check(&history, &history.meta.config);
//! assert!(report.is_valid(), "{}", report.summary());
//! ```

mod consumers;
mod facts;
mod groups;
mod log;
mod policy;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::history::Config;
use crate::history::{History, TopicPartition};

use facts::Facts;
use policy::Policy;

/// How many witnesses (and problems) a report keeps per anomaly; the count covers all.
pub const MAX_WITNESSES: usize = 10;

/// The anomalies the checker looks for. Definitions as implemented (details at each check):
///
/// | anomaly | definition | allowed when |
/// |---|---|---|
/// | `lost-write` | an acknowledged send never returned by any poll, though a poll returned an offset at or above it in its partition | writes may be lost; consumers commit before processing |
/// | `duplicate` | one sent value seen at two or more positions | producer not idempotent |
/// | `inconsistent-offsets` | one offset seen holding two different records | writes may be lost |
/// | `unseen` | an acknowledged send never returned by any poll by the end | no final drain; writes may be lost; consumers commit before processing |
/// | `poll-skip` | a consumer's consecutive reads of a partition in one session pass over an offset that holds a record | writes may be lost |
/// | `nonmonotonic-poll` | a consumer's consecutive reads of a partition in one session do not move forward | writes may be lost |
/// | `nonmonotonic-send` | one producer's acknowledged sends to a partition, in invoke order, get offsets that do not increase | producer not idempotent; writes may be lost |
/// | `aborted-read` | a poll returned a value whose send failed | transactional producer read uncommitted |
/// | `committed-offset-regress` | a group commits a partition below what it had committed, without a reset between | writes may be lost |
/// | `old-generation-commit` | a commit of generation `g` acknowledged after a generation above `g` was in use | writes may be lost |
/// | `committed-unread` | a group committed past a record that no member of it received | consumers commit before processing; writes may be lost |
/// | `compaction-moved-offset` | in a compacted topic, a value read at another offset than acknowledged | producer not idempotent |
/// | `compaction-lost-latest` | in a compacted topic, a reader passed over a key's latest value, or read an older value and passed over the key's tombstone | writes may be lost |
///
/// "Writes may be lost" means `acks=0`; or `acks=1` after a crash, link partition or leader
/// move; or no sync before ack after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Anomaly {
    LostWrite,
    Duplicate,
    InconsistentOffsets,
    Unseen,
    PollSkip,
    NonmonotonicPoll,
    NonmonotonicSend,
    AbortedRead,
    CommittedOffsetRegress,
    OldGenerationCommit,
    CommittedUnread,
    CompactionMovedOffset,
    CompactionLostLatest,
}

impl Anomaly {
    pub const ALL: [Anomaly; 13] = [
        Anomaly::LostWrite,
        Anomaly::Duplicate,
        Anomaly::InconsistentOffsets,
        Anomaly::Unseen,
        Anomaly::PollSkip,
        Anomaly::NonmonotonicPoll,
        Anomaly::NonmonotonicSend,
        Anomaly::AbortedRead,
        Anomaly::CommittedOffsetRegress,
        Anomaly::OldGenerationCommit,
        Anomaly::CommittedUnread,
        Anomaly::CompactionMovedOffset,
        Anomaly::CompactionLostLatest,
    ];

    /// The anomaly's name as serialised (`lost-write`).
    pub fn name(self) -> &'static str {
        match self {
            Anomaly::LostWrite => "lost-write",
            Anomaly::Duplicate => "duplicate",
            Anomaly::InconsistentOffsets => "inconsistent-offsets",
            Anomaly::Unseen => "unseen",
            Anomaly::PollSkip => "poll-skip",
            Anomaly::NonmonotonicPoll => "nonmonotonic-poll",
            Anomaly::NonmonotonicSend => "nonmonotonic-send",
            Anomaly::AbortedRead => "aborted-read",
            Anomaly::CommittedOffsetRegress => "committed-offset-regress",
            Anomaly::OldGenerationCommit => "old-generation-commit",
            Anomaly::CommittedUnread => "committed-unread",
            Anomaly::CompactionMovedOffset => "compaction-moved-offset",
            Anomaly::CompactionLostLatest => "compaction-lost-latest",
        }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One concrete case of an anomaly: the events that show it, by index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Witness {
    /// Indices of the events that together show the anomaly, ascending.
    pub events: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<TopicPartition>,
    pub detail: String,
}

/// Everything found of one anomaly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// How many cases (records, steps, commits) show it.
    pub count: u64,
    /// The configuration allows it: reported, but the history stays valid.
    pub allowed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_because: Option<String>,
    /// The first [`MAX_WITNESSES`] cases, in the order the checker met them.
    pub witnesses: Vec<Witness>,
}

/// A recording convention the history breaks, so the verdict cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub events: Vec<u64>,
    pub detail: String,
}

/// How often one kind of operation reached each step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpCounts {
    pub invoked: u64,
    pub ok: u64,
    pub fail: u64,
    /// Completed with unknown outcome.
    pub info: u64,
    /// Invoked and never completed.
    pub pending: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub events: u64,
    pub sends: OpCounts,
    pub polls: OpCounts,
    pub commits: OpCounts,
    pub records_polled: u64,
    /// Fault events by kind (the checker reports them, it does not judge them).
    pub faults: BTreeMap<String, u64>,
}

/// The checker's verdict. Serialises to JSON for `target/sim-failures/<hash>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Same as [`Report::is_valid`], for readers of the JSON.
    pub valid: bool,
    /// Same as [`Report::summary`].
    pub summary: String,
    /// Only anomalies that were found, allowed or not.
    pub anomalies: BTreeMap<Anomaly, Finding>,
    pub problem_count: u64,
    /// The first [`MAX_WITNESSES`] problems.
    pub problems: Vec<Problem>,
    pub stats: Stats,
}

impl Report {
    /// No anomaly the configuration forbids, and no broken recording convention.
    pub fn is_valid(&self) -> bool {
        self.problem_count == 0 && self.anomalies.values().all(|finding| finding.allowed)
    }

    /// One line: the verdict, the anomalies by count, and the size of the history.
    pub fn summary(&self) -> &str {
        &self.summary
    }

    pub fn finding(&self, anomaly: Anomaly) -> Option<&Finding> {
        self.anomalies.get(&anomaly)
    }

    /// How many cases of `anomaly` were found (allowed or not).
    pub fn count(&self, anomaly: Anomaly) -> u64 {
        self.finding(anomaly).map_or(0, |finding| finding.count)
    }

    /// The anomalies that make the history invalid.
    pub fn violations(&self) -> impl Iterator<Item = (Anomaly, &Finding)> {
        self.anomalies
            .iter()
            .filter(|(_, finding)| !finding.allowed)
            .map(|(&anomaly, finding)| (anomaly, finding))
    }

    fn assemble(found: Findings, policy: &Policy, problems: Vec<Problem>, stats: Stats) -> Report {
        let anomalies: BTreeMap<Anomaly, Finding> = found
            .found
            .into_iter()
            .map(|(anomaly, (count, witnesses))| {
                let allowed_because = policy.allowance(anomaly);
                let finding = Finding {
                    count,
                    allowed: allowed_because.is_some(),
                    allowed_because,
                    witnesses,
                };
                (anomaly, finding)
            })
            .collect();
        let problem_count = problems.len() as u64;
        let mut report = Report {
            valid: false,
            summary: String::new(),
            anomalies,
            problem_count,
            problems: problems.into_iter().take(MAX_WITNESSES).collect(),
            stats,
        };
        report.valid = report.is_valid();
        report.summary = report.describe();
        report
    }

    fn describe(&self) -> String {
        let list = |allowed: bool| {
            self.anomalies
                .iter()
                .filter(|(_, finding)| finding.allowed == allowed)
                .map(|(anomaly, finding)| format!("{anomaly} {}", finding.count))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let violations = list(false);
        let allowed = list(true);
        let mut verdict = if self.valid {
            "valid".to_owned()
        } else {
            "INVALID".to_owned()
        };
        let mut parts = Vec::new();
        if !violations.is_empty() {
            parts.push(violations);
        }
        if self.problem_count > 0 {
            parts.push(format!("{} history problem(s)", self.problem_count));
        }
        if !allowed.is_empty() {
            parts.push(format!("allowed: {allowed}"));
        }
        if parts.is_empty() {
            parts.push("no anomalies".to_owned());
        }
        verdict.push_str(": ");
        verdict.push_str(&parts.join("; "));
        let stats = &self.stats;
        let faults: u64 = stats.faults.values().sum();
        format!(
            "{verdict} ({} events, {}/{} sends acknowledged, {} polls returned {} records, {} \
             commits acknowledged, {faults} faults)",
            stats.events,
            stats.sends.ok,
            stats.sends.invoked,
            stats.polls.ok,
            stats.records_polled,
            stats.commits.ok,
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary)
    }
}

/// Anomalies found so far: a count and the first witnesses of each.
#[derive(Default)]
struct Findings {
    found: BTreeMap<Anomaly, (u64, Vec<Witness>)>,
}

impl Findings {
    /// Counts one case; builds its witness only if it will be kept.
    fn add(&mut self, anomaly: Anomaly, witness: impl FnOnce() -> Witness) {
        let (count, witnesses) = self.found.entry(anomaly).or_default();
        *count += 1;
        if witnesses.len() < MAX_WITNESSES {
            witnesses.push(witness());
        }
    }
}

/// Judges `history` against what `config` promised (usually `history.meta.config`; passing
/// another judges the same run under other promises).
pub fn check(history: &History, config: &Config) -> Report {
    let facts = Facts::gather(history, config);
    let policy = Policy::new(history, config, facts.drained_at);
    let mut findings = Findings::default();
    log::check(&facts, &mut findings, policy.loss_possible());
    consumers::check(history, &facts, &mut findings);
    groups::check(history, &facts, &mut findings);
    let Facts {
        problems, stats, ..
    } = facts;
    Report::assemble(findings, &policy, problems, stats)
}
