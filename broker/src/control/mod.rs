//! The test control plane (DESIGN.md §3): what a test may do to the requests a broker serves.
//! Interceptions by API key and node (observe, replace the response, delay, drop, close the
//! connection), stacks of injected error codes per API key and node or per partition, a
//! round-trip delay per node, a cap on the advertised API versions that mimics an older Kafka
//! release, the request log, and the log of every control action with its time.
//!
//! One `ControlPlane` per broker, inside the cluster; every connection asks it about each
//! request ([`ControlPlane::admit`]) before the handler runs and reports the outcome
//! ([`ControlPlane::finish`]). Everything here is a deterministic function of the actions
//! taken and the requests seen — no randomness, time only from the cluster's clock — so the
//! simulator drives the same plane.
//!
//! **Bounds:** interceptions, injected errors, the request log and the action log are each
//! capped in `Config` (`control_*`); the logs drop their oldest entries, and adding beyond the
//! other caps is refused.

pub mod inject;
pub mod releases;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use serde::Serialize;

pub use releases::{RELEASES, Release};

/// A response a test builds for a request it intercepted: `None` lets the broker answer.
pub type Responder = Arc<dyn Fn(&RequestKind, i16) -> Option<ResponseKind> + Send + Sync>;

/// What an interception does to each request it matches.
#[derive(Clone)]
pub enum InterceptAction {
    /// Nothing; the request is recorded under the interception (see `observed`).
    Observe,
    /// Handles the request after this long (on top of the node's round-trip delay).
    Delay(Duration),
    /// Answers with this error code everywhere the response has one, without handling the
    /// request (nothing is written, joined or committed).
    Error(i16),
    /// Answers with what the function builds, without handling the request; if it builds
    /// nothing, the broker handles the request as usual.
    Respond(Responder),
    /// Never answers this request; the connection stays open (the client times it out).
    Drop,
    /// Closes the connection instead of answering.
    CloseConnection,
}

impl fmt::Debug for InterceptAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InterceptAction::Observe => write!(f, "observe"),
            InterceptAction::Delay(delay) => write!(f, "delay {delay:?}"),
            InterceptAction::Error(code) => write!(f, "error {code}"),
            InterceptAction::Respond(_) => write!(f, "respond"),
            InterceptAction::Drop => write!(f, "drop"),
            InterceptAction::CloseConnection => write!(f, "close connection"),
        }
    }
}

/// Which requests an interception applies to, and how many times.
#[derive(Debug, Clone)]
pub struct Interception {
    /// None: every API.
    pub api_key: Option<ApiKey>,
    /// None: every node.
    pub node: Option<i32>,
    /// None: until removed.
    pub times: Option<u32>,
    pub action: InterceptAction,
}

impl Interception {
    pub fn new(api_key: ApiKey, action: InterceptAction) -> Interception {
        Interception {
            api_key: Some(api_key),
            node: None,
            times: None,
            action,
        }
    }

    pub fn on_node(mut self, node: i32) -> Interception {
        self.node = Some(node);
        self
    }

    pub fn times(mut self, times: u32) -> Interception {
        self.times = Some(times);
        self
    }

    fn matches(&self, api_key: ApiKey, node: i32) -> bool {
        self.api_key.is_none_or(|key| key == api_key) && self.node.is_none_or(|n| n == node)
    }
}

/// Names an interception for `remove_interception` and `observed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct InterceptionId(pub u64);

/// One injected error: the code, and how long the broker waits before answering with it
/// (librdkafka's mock cluster calls this an error with a round-trip time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InjectedError {
    pub code: i16,
    pub delay: Duration,
}

impl InjectedError {
    pub fn new(code: i16) -> InjectedError {
        InjectedError {
            code,
            delay: Duration::ZERO,
        }
    }
}

/// The request log holds `Config::control_request_log_max` entries, so each entry needs a
/// bound too: a client id may be 32 KiB, and 10,000 such ids kept verbatim held 300 MiB. Real
/// clients' ids are a few dozen bytes, and a test reads a handful of error codes per request.
const LOGGED_CLIENT_ID_BYTES_MAX: usize = 256;
const LOGGED_ERROR_CODES_MAX: usize = 1_000;

/// `id` cut to at most [`LOGGED_CLIENT_ID_BYTES_MAX`] bytes, at a character boundary.
fn logged_client_id(id: &str) -> String {
    let mut end = id.len().min(LOGGED_CLIENT_ID_BYTES_MAX);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    id[..end].to_owned()
}

/// One request as the log shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestLogEntry {
    /// Increases by one per request across the broker; `request_log(since)` pages by it.
    pub seq: u64,
    /// Wall-clock milliseconds (the cluster's clock) when the request arrived.
    pub time_ms: i64,
    pub node: i32,
    pub api: String,
    pub api_key: i16,
    pub version: i16,
    /// The request's client id, cut to its first 256 bytes.
    pub client_id: String,
    pub correlation_id: i32,
    /// Every non-zero error code of the response (the first 1,000), in response order; empty
    /// while pending, for a clean response, or when there was no response.
    pub error_codes: Vec<i16>,
    /// What the control plane did to it: "handled", an interception's action, "injected
    /// error", "version above cap", or "pending" until it is answered.
    pub outcome: String,
}

/// One control action, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionRecord {
    pub seq: u64,
    pub time_ms: i64,
    pub action: String,
}

/// Caps of the plane's state (from `Config`).
#[derive(Debug, Clone, Copy)]
pub struct PlaneLimits {
    pub interceptions_max: usize,
    pub injected_errors_max: usize,
    pub request_log_max: usize,
    pub action_log_max: usize,
    /// Requests an `Observe` interception keeps.
    pub observed_max: usize,
}

/// A control call that was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaneError {
    #[error("at most {0} interceptions at once")]
    TooManyInterceptions(usize),
    #[error("at most {0} injected errors waiting at once")]
    TooManyErrors(usize),
    #[error("no interception {0}")]
    UnknownInterception(u64),
    #[error("unknown Kafka release {0:?}; known: {1}")]
    UnknownRelease(String, String),
    #[error("unknown API {0:?}")]
    UnknownApi(String),
}

/// What the connection does with a request.
pub enum Verdict {
    Handle,
    /// Handle (a read-only API), then set every error code of the answer to this one.
    HandleThenError(i16),
    Respond(Box<ResponseKind>),
    Drop,
    Close(String),
}

/// The plane's decision for one request.
pub struct Plan {
    pub entry: u64,
    pub delay: Duration,
    pub verdict: Verdict,
    /// Partitions to answer with an injected error instead of handling them.
    pub partition_errors: Vec<(String, i32, i16)>,
}

struct ActiveInterception {
    id: InterceptionId,
    rule: Interception,
    observed: VecDeque<RequestLogEntry>,
}

/// An injected partition error: for one API (its key) or any, and the code.
type PartitionError = (Option<i16>, i16);

#[derive(Default)]
struct PlaneState {
    next_interception: u64,
    interceptions: Vec<ActiveInterception>,
    /// By (API key, node or None for any node).
    request_errors: BTreeMap<(i16, Option<i32>), VecDeque<InjectedError>>,
    /// By (topic, partition): (API key or None for any, code).
    partition_errors: BTreeMap<(String, i32), VecDeque<PartitionError>>,
    round_trip: BTreeMap<i32, Duration>,
    cap: Option<&'static Release>,
    next_request: u64,
    requests: VecDeque<RequestLogEntry>,
    next_action: u64,
    actions: VecDeque<ActionRecord>,
}

impl PlaneState {
    fn injected_errors(&self) -> usize {
        self.request_errors
            .values()
            .map(VecDeque::len)
            .sum::<usize>()
            + self
                .partition_errors
                .values()
                .map(VecDeque::len)
                .sum::<usize>()
    }
}

pub struct ControlPlane {
    state: Mutex<PlaneState>,
    limits: PlaneLimits,
}

/// The API called `name`: its Kafka name ("Produce", "OffsetCommit") or numeric key.
pub fn api_key_named(name: &str) -> Result<ApiKey, PlaneError> {
    if let Ok(number) = name.trim().parse::<i16>() {
        return ApiKey::try_from(number).map_err(|_| PlaneError::UnknownApi(name.to_owned()));
    }
    crate::handler::SUPPORTED_APIS
        .iter()
        .map(|&(key, _, _)| key)
        .find(|key| format!("{key:?}").eq_ignore_ascii_case(name.trim()))
        .ok_or_else(|| PlaneError::UnknownApi(name.to_owned()))
}

impl ControlPlane {
    pub fn new(limits: PlaneLimits) -> ControlPlane {
        ControlPlane {
            state: Mutex::new(PlaneState::default()),
            limits,
        }
    }

    fn state(&self) -> MutexGuard<'_, PlaneState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a control action taken at `time_ms` (the control calls on the broker handle
    /// record themselves; this is for actions the plane does not see, like leader moves).
    pub fn record(&self, time_ms: i64, action: impl Into<String>) {
        let mut state = self.state();
        let seq = state.next_action;
        state.next_action += 1;
        if state.actions.len() >= self.limits.action_log_max {
            state.actions.pop_front();
        }
        state.actions.push_back(ActionRecord {
            seq,
            time_ms,
            action: action.into(),
        });
    }

    pub fn intercept(
        &self,
        time_ms: i64,
        rule: Interception,
    ) -> Result<InterceptionId, PlaneError> {
        let description = describe_rule(&rule);
        let id = {
            let mut state = self.state();
            if state.interceptions.len() >= self.limits.interceptions_max {
                return Err(PlaneError::TooManyInterceptions(
                    self.limits.interceptions_max,
                ));
            }
            let id = InterceptionId(state.next_interception);
            state.next_interception += 1;
            state.interceptions.push(ActiveInterception {
                id,
                rule,
                observed: VecDeque::new(),
            });
            id
        };
        self.record(time_ms, format!("intercept #{}: {description}", id.0));
        Ok(id)
    }

    pub fn remove_interception(&self, time_ms: i64, id: InterceptionId) -> Result<(), PlaneError> {
        {
            let mut state = self.state();
            let before = state.interceptions.len();
            state.interceptions.retain(|active| active.id != id);
            if state.interceptions.len() == before {
                return Err(PlaneError::UnknownInterception(id.0));
            }
        }
        self.record(time_ms, format!("remove interception #{}", id.0));
        Ok(())
    }

    /// The interceptions still active, with what each matches, in the order they were added.
    pub fn interceptions(&self) -> Vec<(InterceptionId, String)> {
        self.state()
            .interceptions
            .iter()
            .map(|active| (active.id, describe_rule(&active.rule)))
            .collect()
    }

    /// The requests an interception matched (newest `observed_max`); None once removed or
    /// used up.
    pub fn observed(&self, id: InterceptionId) -> Option<Vec<RequestLogEntry>> {
        let state = self.state();
        let active = state.interceptions.iter().find(|active| active.id == id)?;
        // The entries as logged now: errors filled in once answered.
        Some(
            active
                .observed
                .iter()
                .map(|entry| {
                    state
                        .requests
                        .iter()
                        .find(|logged| logged.seq == entry.seq)
                        .cloned()
                        .unwrap_or_else(|| entry.clone())
                })
                .collect(),
        )
    }

    /// Each of the next requests of `api_key` (to `node`, or any node) is answered with the
    /// next of `errors`, in order, instead of being handled.
    pub fn push_errors(
        &self,
        time_ms: i64,
        api_key: ApiKey,
        node: Option<i32>,
        errors: &[InjectedError],
    ) -> Result<(), PlaneError> {
        {
            let mut state = self.state();
            if state.injected_errors() + errors.len() > self.limits.injected_errors_max {
                return Err(PlaneError::TooManyErrors(self.limits.injected_errors_max));
            }
            state
                .request_errors
                .entry((api_key as i16, node))
                .or_default()
                .extend(errors.iter().copied());
        }
        let codes: Vec<String> = errors.iter().map(|error| error.code.to_string()).collect();
        let place = node.map_or_else(|| "any node".to_owned(), |node| format!("node {node}"));
        self.record(
            time_ms,
            format!("push errors {api_key:?} on {place}: [{}]", codes.join(", ")),
        );
        Ok(())
    }

    /// Each of the next requests (of `api_key`, or of any partition-level API) that names
    /// this partition gets the next code for it, while its other partitions are handled.
    pub fn push_partition_errors(
        &self,
        time_ms: i64,
        topic: &str,
        partition: i32,
        api_key: Option<ApiKey>,
        codes: &[i16],
    ) -> Result<(), PlaneError> {
        {
            let mut state = self.state();
            if state.injected_errors() + codes.len() > self.limits.injected_errors_max {
                return Err(PlaneError::TooManyErrors(self.limits.injected_errors_max));
            }
            state
                .partition_errors
                .entry((topic.to_owned(), partition))
                .or_default()
                .extend(
                    codes
                        .iter()
                        .map(|&code| (api_key.map(|key| key as i16), code)),
                );
        }
        let codes: Vec<String> = codes.iter().map(i16::to_string).collect();
        let api = api_key.map_or_else(|| "any API".to_owned(), |key| format!("{key:?}"));
        self.record(
            time_ms,
            format!(
                "push partition errors {topic}-{partition} ({api}): [{}]",
                codes.join(", ")
            ),
        );
        Ok(())
    }

    /// Every request to `node` waits this long before it is handled (zero: no delay).
    pub fn set_round_trip(&self, time_ms: i64, node: i32, delay: Duration) {
        {
            let mut state = self.state();
            if delay.is_zero() {
                state.round_trip.remove(&node);
            } else {
                state.round_trip.insert(node, delay);
            }
        }
        self.record(
            time_ms,
            format!("round trip of node {node}: {} ms", delay.as_millis()),
        );
    }

    /// Advertise (and accept) only the API versions Kafka `release` had; None lifts the cap.
    pub fn cap_versions(&self, time_ms: i64, release: Option<&str>) -> Result<(), PlaneError> {
        let cap = match release {
            None => None,
            Some(name) => Some(releases::release(name).ok_or_else(|| {
                let known: Vec<&str> = RELEASES.iter().map(|release| release.name).collect();
                PlaneError::UnknownRelease(name.to_owned(), known.join(", "))
            })?),
        };
        self.state().cap = cap;
        self.record(
            time_ms,
            match cap {
                Some(release) => format!("cap API versions at Kafka {}", release.name),
                None => "lift the API version cap".to_owned(),
            },
        );
        Ok(())
    }

    /// The release whose versions are advertised, if capped.
    pub fn version_cap(&self) -> Option<&'static str> {
        self.state().cap.map(|release| release.name)
    }

    /// The newest version of `api_key` advertised now: ours, capped; None if the cap's release
    /// had no such API.
    pub fn newest_version(&self, api_key: ApiKey, ours: i16) -> Option<i16> {
        match self.state().cap {
            None => Some(ours),
            Some(release) => release.newest(api_key).map(|newest| newest.min(ours)),
        }
    }

    /// Removes every interception, injected error, delay and the version cap.
    pub fn reset(&self, time_ms: i64) {
        {
            let mut state = self.state();
            state.interceptions.clear();
            state.request_errors.clear();
            state.partition_errors.clear();
            state.round_trip.clear();
            state.cap = None;
        }
        self.record(time_ms, "reset the control plane");
    }

    /// Requests logged after `since` (a `seq`; 0 for all kept), oldest first.
    pub fn request_log(&self, since: u64) -> Vec<RequestLogEntry> {
        self.state()
            .requests
            .iter()
            .filter(|entry| entry.seq >= since)
            .cloned()
            .collect()
    }

    /// Control actions, oldest first.
    pub fn actions(&self) -> Vec<ActionRecord> {
        self.state().actions.iter().cloned().collect()
    }

    /// Logs a request arriving at `node` and decides what happens to it. `partitions` lists
    /// the (topic, partition) pairs it names, for partition-level errors.
    pub fn admit(
        &self,
        time_ms: i64,
        node: i32,
        header: &kafka_protocol::messages::RequestHeader,
        api_key: ApiKey,
        body: &RequestKind,
        partitions: &[(String, i32)],
    ) -> Plan {
        let version = header.request_api_version;
        let mut state = self.state();
        let seq = state.next_request;
        state.next_request += 1;
        let mut entry = RequestLogEntry {
            seq,
            time_ms,
            node,
            api: format!("{api_key:?}"),
            api_key: api_key as i16,
            version,
            client_id: logged_client_id(header.client_id.as_deref().unwrap_or_default()),
            correlation_id: header.correlation_id,
            error_codes: Vec::new(),
            outcome: "pending".to_owned(),
        };
        let mut delay = state.round_trip.get(&node).copied().unwrap_or_default();
        let mut verdict = Verdict::Handle;
        let mut outcome = "handled".to_owned();

        let above_cap = api_key != ApiKey::ApiVersions
            && state.cap.is_some_and(|release| {
                release
                    .newest(api_key)
                    .is_none_or(|newest| version > newest)
            });
        if above_cap {
            let release = state.cap.map(|release| release.name).unwrap_or_default();
            verdict = Verdict::Close(format!(
                "{api_key:?} v{version} is above what Kafka {release} answers (version cap)"
            ));
            outcome = "version above cap".to_owned();
        }

        // Interceptions, oldest first; the first that acts decides, observers all record.
        if matches!(verdict, Verdict::Handle) {
            let limits = self.limits;
            let mut decided = false;
            let mut used_up = Vec::new();
            for active in state.interceptions.iter_mut() {
                if !active.rule.matches(api_key, node) {
                    continue;
                }
                let acting = !matches!(active.rule.action, InterceptAction::Observe);
                if acting && decided {
                    continue;
                }
                if let Some(times) = active.rule.times.as_mut() {
                    *times = times.saturating_sub(1);
                    if *times == 0 {
                        used_up.push(active.id);
                    }
                }
                if active.observed.len() >= limits.observed_max {
                    active.observed.pop_front();
                }
                active.observed.push_back(entry.clone());
                if !acting {
                    continue;
                }
                decided = true;
                outcome = format!("intercepted #{}: {:?}", active.id.0, active.rule.action);
                match &active.rule.action {
                    InterceptAction::Observe => {}
                    InterceptAction::Delay(extra) => delay += *extra,
                    InterceptAction::Error(code) => verdict = error_verdict(body, version, *code),
                    InterceptAction::Respond(build) => {
                        if let Some(response) = build(body, version) {
                            verdict = Verdict::Respond(Box::new(response));
                        }
                    }
                    InterceptAction::Drop => verdict = Verdict::Drop,
                    InterceptAction::CloseConnection => {
                        verdict = Verdict::Close(format!(
                            "interception #{} closes the connection",
                            active.id.0
                        ))
                    }
                }
            }
            state
                .interceptions
                .retain(|active| !used_up.contains(&active.id));
        }

        // Injected request errors: a node's own stack before the any-node one.
        if matches!(verdict, Verdict::Handle) {
            let injected = [Some(node), None].into_iter().find_map(|which| {
                let stack = state.request_errors.get_mut(&(api_key as i16, which))?;
                let error = stack.pop_front();
                if stack.is_empty() {
                    state.request_errors.remove(&(api_key as i16, which));
                }
                error
            });
            if let Some(error) = injected {
                delay += error.delay;
                verdict = error_verdict(body, version, error.code);
                outcome = format!("injected error {}", error.code);
            }
        }

        let mut partition_errors = Vec::new();
        if matches!(verdict, Verdict::Handle) && inject::has_partition_errors(api_key) {
            for (topic, partition) in partitions {
                let key = (topic.clone(), *partition);
                let Some(stack) = state.partition_errors.get_mut(&key) else {
                    continue;
                };
                let position = stack
                    .iter()
                    .position(|(api, _)| api.is_none_or(|api| api == api_key as i16));
                if let Some((_, code)) = position.and_then(|position| stack.remove(position)) {
                    partition_errors.push((topic.clone(), *partition, code));
                }
                if stack.is_empty() {
                    state.partition_errors.remove(&key);
                }
            }
            if !partition_errors.is_empty() {
                outcome = format!("injected partition errors ({})", partition_errors.len());
            }
        }

        entry.outcome = if matches!(verdict, Verdict::Drop) {
            outcome
        } else {
            format!("pending: {outcome}")
        };
        if state.requests.len() >= self.limits.request_log_max {
            state.requests.pop_front();
        }
        state.requests.push_back(entry);
        Plan {
            entry: seq,
            delay,
            verdict,
            partition_errors,
        }
    }

    /// Records how a request was answered: the response's error codes (None: no response).
    pub fn finish(&self, entry: u64, response: Option<&mut ResponseKind>) {
        let mut state = self.state();
        let Some(logged) = state.requests.iter_mut().rev().find(|e| e.seq == entry) else {
            return;
        };
        if let Some(outcome) = logged.outcome.strip_prefix("pending: ") {
            logged.outcome = outcome.to_owned();
        }
        if let Some(response) = response {
            let mut codes = inject::error_codes(response);
            codes.truncate(LOGGED_ERROR_CODES_MAX);
            codes.shrink_to_fit();
            logged.error_codes = codes;
        }
    }

    /// Records that a request was never answered because its connection went away first: a
    /// node taken down aborts its connections in the middle of a long-polling Fetch or a
    /// delay, and the log must not show such a request pending for ever.
    pub fn abandon(&self, entry: u64) {
        let mut state = self.state();
        let Some(logged) = state.requests.iter_mut().rev().find(|e| e.seq == entry) else {
            return;
        };
        if let Some(outcome) = logged.outcome.strip_prefix("pending: ") {
            logged.outcome = format!("{outcome}, unanswered: connection closed");
        }
    }
}

/// Finishes a request's log entry exactly once: with its answer, or, if the connection's task
/// is dropped before there is one, as abandoned.
pub struct PendingEntry<'a> {
    control: &'a ControlPlane,
    entry: Option<u64>,
}

impl<'a> PendingEntry<'a> {
    pub fn new(control: &'a ControlPlane, entry: u64) -> PendingEntry<'a> {
        PendingEntry {
            control,
            entry: Some(entry),
        }
    }

    pub fn finish(mut self, response: Option<&mut ResponseKind>) {
        if let Some(entry) = self.entry.take() {
            self.control.finish(entry, response);
        }
    }
}

impl Drop for PendingEntry<'_> {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            self.control.abandon(entry);
        }
    }
}

fn error_verdict(body: &RequestKind, version: i16, code: i16) -> Verdict {
    match inject::error_response(body, version, code) {
        Some(response) => Verdict::Respond(Box::new(response)),
        None => Verdict::HandleThenError(code),
    }
}

fn describe_rule(rule: &Interception) -> String {
    let api = rule
        .api_key
        .map_or_else(|| "every API".to_owned(), |key| format!("{key:?}"));
    let node = rule
        .node
        .map_or_else(|| "any node".to_owned(), |node| format!("node {node}"));
    let times = rule.times.map_or_else(
        || "until removed".to_owned(),
        |times| format!("{times} time(s)"),
    );
    format!("{api} on {node}, {times}: {:?}", rule.action)
}

#[cfg(test)]
mod bounds_tests {
    use super::{LOGGED_CLIENT_ID_BYTES_MAX, logged_client_id};

    #[test]
    fn a_logged_client_id_is_cut_to_its_bound_at_a_character_boundary() {
        assert_eq!(logged_client_id("rdkafka"), "rdkafka");
        let long = "c".repeat(i16::MAX as usize);
        assert_eq!(logged_client_id(&long).len(), LOGGED_CLIENT_ID_BYTES_MAX);
        // Three-byte characters: 256 is not a boundary, so the cut falls at 255.
        let wide = "€".repeat(200);
        let cut = logged_client_id(&wide);
        assert_eq!(cut.len(), 255);
        assert!(wide.starts_with(&cut));
    }
}
