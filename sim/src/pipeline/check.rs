//! The pipeline's checker: judges, per event id, what a run left behind after its heal phase.
//!
//! Evidence: each posted event and the collector's answer; every record of every pipeline topic
//! (drained after the heal); the store's dedup keys, rollups and unsent outbox rows. Rules:
//!
//! - `acknowledged-lost`: an event the collector answered 202 for is not in `events.raw`.
//! - `phantom-event`: `events.raw` holds an event nobody posted.
//! - `not-processed`: an event in `events.raw` has, for some stage, neither an applied effect
//!   nor a dead-letter entry.
//! - `applied-twice`: a stage applied an event's effect more than once — two different outbox
//!   rows (sequence numbers) for it, a directly produced notice seen twice, or a rollup that
//!   counts more events than were applied.
//! - `committed-not-published`: a stage committed an effect whose record never reached its
//!   topic (enrichment → `events.enriched`, persister → `events.persisted`).
//! - `published-without-commit`: a record in an output topic for an effect the store never
//!   committed (something from a rolled-back transaction).
//! - `rollup-mismatch`: a tenant-minute count differs from the events analytics applied.
//! - `dead-letter-wrong`: an event dead-lettered though it was due to succeed, dead-lettered
//!   before its last attempt, or both applied and dead-lettered.
//! - `outbox-not-drained`: unsent outbox rows remain after the heal.
//!
//! Allowed and reported as notes: a re-publication of the same outbox row (a crash between
//! publishing and marking sent), and a second copy of the same dead-letter entry (a crash
//! between its acknowledgement and the offset commit: the hand-on is at-least-once too).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tidepool_pipeline::stages::{ANALYTICS, ENRICHMENT, PERSISTER, minute_of};
use tidepool_pipeline::topics;

/// The three shipped stages, in the order reports list them.
pub const STAGES: [&str; 3] = [ENRICHMENT, ANALYTICS, PERSISTER];

/// What the collector said about a posted event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum PostOutcome {
    /// Still waiting when the run ended (never the case after a converged heal).
    Pending,
    /// 202: the collector promised the event is in `events.raw`.
    Accepted,
    /// Any other status: nothing promised either way (a 503 may have written some).
    Refused { status: u16, reason: String },
    /// No answer: the event may or may not have been written.
    Unknown { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostedEvent {
    pub tenant: String,
    pub timestamp_ms: i64,
    /// Attempts that fail on purpose, in every stage.
    pub fail: u32,
    pub outcome: PostOutcome,
}

/// One record of a pipeline topic, as the reader saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub event_id: Option<String>,
    /// The relay's `outbox-seq` header.
    pub outbox_seq: Option<u64>,
    /// The runtime's `retry-stage` header (retry and dead-letter records).
    pub stage: Option<String>,
    pub attempt: Option<u32>,
}

/// The store after the heal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreSnapshot {
    /// Event ids each stage applied (its dedup keys), over the posted events.
    pub applied: BTreeMap<String, BTreeSet<String>>,
    /// Count per tenant and minute start.
    pub rollups: BTreeMap<String, BTreeMap<i64, u64>>,
    pub outbox_pending: u64,
}

/// Everything the checker judges.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Observations {
    pub max_attempts: u32,
    pub posted: BTreeMap<String, PostedEvent>,
    pub records: Vec<OutputRecord>,
    pub store: StoreSnapshot,
}

/// The verdict: anomalies by kind, each with its witnesses, and notes on allowed behaviour.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineReport {
    pub anomalies: BTreeMap<String, Vec<String>>,
    pub notes: BTreeMap<String, u64>,
    pub events: u64,
}

impl PipelineReport {
    pub fn is_valid(&self) -> bool {
        self.anomalies.is_empty()
    }

    fn flag(&mut self, kind: &str, witness: String) {
        self.anomalies
            .entry(kind.to_owned())
            .or_default()
            .push(witness);
    }

    fn note(&mut self, kind: &str) {
        *self.notes.entry(kind.to_owned()).or_default() += 1;
    }

    /// One line: valid, or each anomaly kind with its count.
    pub fn summary(&self) -> String {
        if self.is_valid() {
            return format!("valid ({} events)", self.events);
        }
        let kinds: Vec<String> = self
            .anomalies
            .iter()
            .map(|(kind, witnesses)| format!("{kind}×{}", witnesses.len()))
            .collect();
        format!("ANOMALOUS: {} ({} events)", kinds.join(", "), self.events)
    }
}

/// The output topic a stage's effect is published to, if it has one.
fn output_topic(stage: &str) -> Option<&'static str> {
    match stage {
        ENRICHMENT => Some(topics::ENRICHED),
        PERSISTER => Some(topics::PERSISTED),
        _ => None,
    }
}

/// Judges a run's observations.
pub fn check(observations: &Observations) -> PipelineReport {
    let mut report = PipelineReport::default();
    let max_attempts = observations.max_attempts.max(1);

    let mut raw: BTreeMap<&str, u64> = BTreeMap::new();
    // (topic, event) → the copies seen, by outbox sequence (None: produced without one).
    let mut outputs: BTreeMap<(&str, &str), Vec<Option<u64>>> = BTreeMap::new();
    // (stage, event) → attempts of its dead-letter records.
    let mut dead: BTreeMap<(&str, &str), Vec<Option<u32>>> = BTreeMap::new();
    for record in &observations.records {
        let Some(id) = record.event_id.as_deref() else {
            report.flag(
                "phantom-event",
                format!(
                    "{}/{}@{} has no event-id header",
                    record.topic, record.partition, record.offset
                ),
            );
            continue;
        };
        match record.topic.as_str() {
            topics::RAW => *raw.entry(id).or_default() += 1,
            topics::ENRICHED | topics::PERSISTED => outputs
                .entry((record.topic.as_str(), id))
                .or_default()
                .push(record.outbox_seq),
            topics::DEAD_LETTERS => dead
                .entry((record.stage.as_deref().unwrap_or("?"), id))
                .or_default()
                .push(record.attempt),
            _ => {}
        }
    }
    report.events = u64::try_from(raw.len()).unwrap_or(u64::MAX);

    for (id, event) in &observations.posted {
        if event.outcome == PostOutcome::Accepted && !raw.contains_key(id.as_str()) {
            report.flag(
                "acknowledged-lost",
                format!("{id}: 202 Accepted, not in {}", topics::RAW),
            );
        }
    }
    for id in raw.keys() {
        if !observations.posted.contains_key(*id) {
            report.flag(
                "phantom-event",
                format!("{id} is in {} but was never posted", topics::RAW),
            );
        }
    }

    let empty = BTreeSet::new();
    let applied = |stage: &str| observations.store.applied.get(stage).unwrap_or(&empty);
    let mut expected_rollups: BTreeMap<(&str, i64), u64> = BTreeMap::new();
    for id in raw.keys().copied() {
        let Some(event) = observations.posted.get(id) else {
            continue;
        };
        let succeeds = event.fail < max_attempts;
        for stage in STAGES {
            let is_applied = applied(stage).contains(id);
            let letters = dead.get(&(stage, id));
            let copies = output_topic(stage).and_then(|topic| outputs.get(&(topic, id)));
            if let Some(letters) = letters {
                if letters.len() > 1 && letters.iter().all(|a| *a == letters[0]) {
                    report.note("dead-letter copies");
                }
                if succeeds {
                    report.flag(
                        "dead-letter-wrong",
                        format!(
                            "{stage}/{id}: dead-lettered, but it fails only {} of {max_attempts} attempts",
                            event.fail
                        ),
                    );
                } else if letters.iter().any(|attempt| *attempt != Some(max_attempts)) {
                    report.flag(
                        "dead-letter-wrong",
                        format!("{stage}/{id}: dead-lettered at attempts {letters:?}, not {max_attempts}"),
                    );
                }
                if is_applied {
                    report.flag(
                        "dead-letter-wrong",
                        format!("{stage}/{id}: both applied and dead-lettered"),
                    );
                }
            } else if !is_applied {
                report.flag(
                    "not-processed",
                    format!(
                        "{stage}/{id}: in {}, neither applied nor dead-lettered",
                        topics::RAW
                    ),
                );
            }
            if is_applied && stage == ANALYTICS {
                *expected_rollups
                    .entry((event.tenant.as_str(), minute_of(event.timestamp_ms)))
                    .or_default() += 1;
            }
            let Some(topic) = output_topic(stage) else {
                continue;
            };
            match copies {
                None if is_applied => report.flag(
                    "committed-not-published",
                    format!("{stage}/{id}: applied, nothing in {topic}"),
                ),
                None => {}
                Some(copies) => {
                    if !is_applied {
                        report.flag(
                            "published-without-commit",
                            format!(
                                "{stage}/{id}: {} record(s) in {topic}, effect never committed",
                                copies.len()
                            ),
                        );
                    }
                    let sequences: BTreeSet<Option<u64>> = copies.iter().copied().collect();
                    let effects = sequences.iter().filter(|seq| seq.is_some()).count()
                        + copies.iter().filter(|seq| seq.is_none()).count();
                    if effects > 1 {
                        report.flag(
                            "applied-twice",
                            format!("{stage}/{id}: {effects} effects in {topic} (outbox sequences {copies:?})"),
                        );
                    } else if copies.len() > 1 {
                        report.note("outbox re-publications");
                    }
                }
            }
        }
    }
    for ((topic, id), copies) in &outputs {
        if !raw.contains_key(id) {
            report.flag(
                "published-without-commit",
                format!(
                    "{id}: {} record(s) in {topic}, never in {}",
                    copies.len(),
                    topics::RAW
                ),
            );
        }
    }

    let mut buckets: BTreeSet<(&str, i64)> = expected_rollups.keys().copied().collect();
    for (tenant, minutes) in &observations.store.rollups {
        for minute in minutes.keys() {
            buckets.insert((tenant.as_str(), *minute));
        }
    }
    for (tenant, minute) in buckets {
        let expected = expected_rollups
            .get(&(tenant, minute))
            .copied()
            .unwrap_or(0);
        let counted = observations
            .store
            .rollups
            .get(tenant)
            .and_then(|minutes| minutes.get(&minute))
            .copied()
            .unwrap_or(0);
        if counted != expected {
            let kind = if counted > expected {
                "applied-twice"
            } else {
                "rollup-mismatch"
            };
            report.flag(
                kind,
                format!(
                    "{ANALYTICS}: {tenant} minute {minute}: counted {counted}, applied {expected}"
                ),
            );
        }
    }

    if observations.store.outbox_pending > 0 {
        report.flag(
            "outbox-not-drained",
            format!(
                "{} unsent outbox rows after the heal",
                observations.store.outbox_pending
            ),
        );
    }
    report
}
