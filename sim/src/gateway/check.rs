//! The gateway's checker: judges, per request, what the clients heard and what the orders
//! service's store holds after the heal.
//!
//! Evidence: every request the clients sent (its unique `ref`, the node it went to, when it was
//! sent and answered, the answer's status and the order's `ref` and `id` in its body), the
//! store's orders after the heal, the parked requests of every running node after the heal, and
//! the faults the driver made, as time windows. Rules:
//!
//! - `cross-talk`: an answer carries another request's order: a create answered with an order
//!   whose `ref` is not its own, a read answered with another order than the one asked for, or
//!   a 2xx create whose order id the store holds for another `ref`.
//! - `duplicate-response`: a request got more than one answer, or one create's order came back
//!   in the answers of two requests.
//! - `acknowledged-lost`: a create answered 2xx whose order the store does not hold, or a read
//!   answered 404 for an order whose creation was answered 201 before the read was sent.
//! - `applied-twice`: the store holds two orders for one `ref` (a request processed twice).
//! - `phantom-order`: the store holds an order for a `ref` nobody sent.
//! - `parked-after-heal`: a running node still has parked requests once every request settled.
//! - `timed-out-without-fault`: a 504 for a request during whose life (with a grace period
//!   after each fault, for the system to recover) no fault other than a gateway node joining
//!   or leaving happened: forwarding makes partition moves invisible to clients.
//!
//! Allowed, counted as notes: every status (503 from a leaving or joining node, 504 around
//! faults), and requests with no answer (the node crashed, or a link was cut).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// What a request asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RequestKind {
    /// `POST /api/orders` with the request's `ref` in the body.
    Create,
    /// `GET /api/orders/{id}` of an order whose creation (by request `created_by`) was
    /// answered 201.
    Read { id: String, created_by: String },
}

/// What the client heard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum RequestOutcome {
    /// Still waiting when the run ended (never the case after a converged heal).
    Pending,
    Answered {
        status: u16,
        /// The body's `ref` and `id`, when it is an order.
        order_ref: Option<String>,
        order_id: Option<String>,
    },
    /// No answer: the request may or may not have been processed.
    NoAnswer { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentRequest {
    #[serde(flatten)]
    pub kind: RequestKind,
    /// The gateway node it went to.
    pub node: String,
    pub sent_ms: u64,
    pub done_ms: Option<u64>,
    #[serde(flatten)]
    pub outcome: RequestOutcome,
    /// Answers the client received for it.
    pub answers: u32,
}

/// A time when the system was disturbed by a fault: from its start to its end (a restart, a
/// heal), both in virtual ms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disturbance {
    pub from_ms: u64,
    pub to_ms: u64,
    pub what: String,
}

/// Everything the checker judges.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Observations {
    /// By request ref.
    pub requests: BTreeMap<String, SentRequest>,
    /// The store's orders after the heal: id → the `ref` it was created for.
    pub orders: BTreeMap<String, Option<String>>,
    /// Parked requests per running node after the heal.
    pub parked: BTreeMap<String, usize>,
    pub disturbances: Vec<Disturbance>,
    /// How long after a disturbance ends the system may still be recovering from it.
    pub grace_ms: u64,
}

/// The verdict: anomalies by kind, each with its witnesses, and notes on allowed behaviour.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayReport {
    pub anomalies: BTreeMap<String, Vec<String>>,
    pub notes: BTreeMap<String, u64>,
    pub requests: u64,
}

impl GatewayReport {
    pub fn is_valid(&self) -> bool {
        self.anomalies.is_empty()
    }

    fn flag(&mut self, kind: &str, witness: String) {
        self.anomalies
            .entry(kind.to_owned())
            .or_default()
            .push(witness);
    }

    fn note(&mut self, kind: String) {
        *self.notes.entry(kind).or_default() += 1;
    }

    /// One line: valid, or each anomaly kind with its count.
    pub fn summary(&self) -> String {
        if self.is_valid() {
            return format!("valid ({} requests)", self.requests);
        }
        let kinds: Vec<String> = self
            .anomalies
            .iter()
            .map(|(kind, witnesses)| format!("{kind}×{}", witnesses.len()))
            .collect();
        format!(
            "ANOMALOUS: {} ({} requests)",
            kinds.join(", "),
            self.requests
        )
    }
}

impl Observations {
    /// The disturbances whose window (grace included) overlaps `[from, to]`.
    fn disturbed(&self, from: u64, to: u64) -> Vec<&Disturbance> {
        self.disturbances
            .iter()
            .filter(|d| d.from_ms <= to && d.to_ms.saturating_add(self.grace_ms) >= from)
            .collect()
    }
}

/// Judges a run's observations.
pub fn check(observations: &Observations) -> GatewayReport {
    let mut report = GatewayReport {
        requests: u64::try_from(observations.requests.len()).unwrap_or(u64::MAX),
        ..GatewayReport::default()
    };
    // When each create was answered 201, by ref.
    let mut created_at: BTreeMap<&str, u64> = BTreeMap::new();
    // Which requests' answers carried each create's order, by the order's ref.
    let mut answered_with: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (reference, request) in &observations.requests {
        if request.answers > 1 {
            report.flag(
                "duplicate-response",
                format!("{reference}: {} answers", request.answers),
            );
        }
        match &request.outcome {
            RequestOutcome::Pending => report.note("pending".to_owned()),
            RequestOutcome::NoAnswer { .. } => report.note("no answer".to_owned()),
            RequestOutcome::Answered { status, .. } => report.note(format!("status {status}")),
        }
        let RequestOutcome::Answered {
            status,
            order_ref,
            order_id,
        } = &request.outcome
        else {
            continue;
        };
        let ok = (200..300).contains(status);
        match &request.kind {
            RequestKind::Create if ok => {
                if let Some(order_ref) = order_ref {
                    answered_with
                        .entry(order_ref.as_str())
                        .or_default()
                        .insert(reference.as_str());
                }
                if order_ref.as_deref() != Some(reference.as_str()) {
                    report.flag(
                        "cross-talk",
                        format!(
                            "{reference}: create answered {status} with the order of {order_ref:?}"
                        ),
                    );
                    continue;
                }
                if let Some(done) = request.done_ms {
                    created_at.insert(reference.as_str(), done);
                }
                match order_id.as_ref().map(|id| (id, observations.orders.get(id))) {
                    Some((id, Some(stored))) if stored.as_deref() != Some(reference.as_str()) => {
                        report.flag(
                            "cross-talk",
                            format!(
                                "{reference}: answered with order {id}, which the store holds for {stored:?}"
                            ),
                        );
                    }
                    Some((_, Some(_))) => {}
                    _ => report.flag(
                        "acknowledged-lost",
                        format!(
                            "{reference}: create answered {status} (order {order_id:?}), not in the store"
                        ),
                    ),
                }
            }
            RequestKind::Read { id, created_by }
                if ok
                    && (order_id.as_deref() != Some(id.as_str())
                        || order_ref.as_deref() != Some(created_by.as_str())) =>
            {
                report.flag(
                    "cross-talk",
                    format!(
                        "{reference}: read of {id} (created by {created_by}) answered with order {order_id:?} of {order_ref:?}"
                    ),
                );
            }
            _ => {}
        }
    }
    for (reference, request) in &observations.requests {
        if let (RequestKind::Read { id, created_by }, RequestOutcome::Answered { status: 404, .. }) =
            (&request.kind, &request.outcome)
            && created_at
                .get(created_by.as_str())
                .is_some_and(|at| *at <= request.sent_ms)
        {
            report.flag(
                "acknowledged-lost",
                format!("{reference}: read of {id} answered 404; {created_by} created it"),
            );
        }
    }
    for (order_ref, answers) in &answered_with {
        if answers.len() > 1 {
            report.flag(
                "duplicate-response",
                format!("the order of {order_ref} answered {answers:?}"),
            );
        }
    }

    let mut stored: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, order_ref) in &observations.orders {
        match order_ref {
            Some(order_ref) => stored.entry(order_ref.as_str()).or_default().push(id),
            None => report.flag("phantom-order", format!("order {id} has no ref")),
        }
    }
    for (order_ref, ids) in &stored {
        if ids.len() > 1 {
            report.flag(
                "applied-twice",
                format!("{order_ref} was created {} times: {ids:?}", ids.len()),
            );
        }
        let sent = observations
            .requests
            .get(*order_ref)
            .is_some_and(|request| request.kind == RequestKind::Create);
        if !sent {
            report.flag(
                "phantom-order",
                format!("orders {ids:?} are for {order_ref}, which no create sent"),
            );
        }
    }

    for (node, parked) in &observations.parked {
        if *parked > 0 {
            report.flag(
                "parked-after-heal",
                format!("{node}: {parked} requests parked after every request settled"),
            );
        }
    }

    for (reference, request) in &observations.requests {
        let RequestOutcome::Answered { status: 504, .. } = request.outcome else {
            continue;
        };
        let done = request.done_ms.unwrap_or(u64::MAX);
        let disturbed = observations.disturbed(request.sent_ms, done);
        if disturbed.is_empty() {
            report.flag(
                "timed-out-without-fault",
                format!(
                    "{reference}: 504 from {} for a request sent at {} ms, answered at {done} ms, with no fault near",
                    request.node, request.sent_ms
                ),
            );
        } else {
            report.note("504 near a fault".to_owned());
        }
    }
    report
}
