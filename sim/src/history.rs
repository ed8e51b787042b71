//! What a run records: one JSON line per operation step, fault or phase change (DESIGN.md §7).
//!
//! A history is the run's metadata followed by events. Each event has a strictly increasing
//! `index`, a `time_ms` (virtual time in the simulation, wall time over real TCP), the `process`
//! (client or host name) that did it, and what happened:
//!
//! - `invoke` / `ok` / `fail` / `info`: the steps of an operation (`send`, `poll`, `commit`,
//!   `assign`, `reset`, `delete-group`). A completion names the index of its invoke, so one
//!   process may have several operations in flight (a pipelining producer). `info` means the
//!   outcome is unknown (a timeout): the operation may or may not have taken effect. An `ok`
//!   without an invoke is an observation (a rebalance callback handing a consumer partitions).
//! - `fault`: something the nemesis did (crash, restart, link partition, leader move, clock
//!   jump, crash point hit). The checker does not judge faults; it counts them and uses them to
//!   decide which losses the configuration excuses.
//! - `phase`: the run moved on (`safety`, `heal`, `drained`). `drained` promises that every
//!   consumer has since read every partition to its end, so what is still unseen is lost.
//!
//! On disk the first line is `{"meta": {...}}` and every other line is one event:
//!
//! ```text
//! {"meta":{"format":1,"seed":7,"config":{"idempotent":true,"acks":"all"}}}
//! {"index":0,"time_ms":0,"process":"producer-1","type":"invoke","op":{"f":"send","topic":"t","partition":0,"value":"v0"}}
//! {"index":1,"time_ms":3,"process":"producer-1","type":"ok","invoke":0,"op":{"f":"send","topic":"t","partition":0,"value":"v0","offset":0}}
//! {"index":2,"time_ms":5,"process":"nemesis","type":"fault","fault":{"kind":"crash","host":"broker-1"}}
//! ```
//!
//! Histories recorded by a test over real TCP use the same format and the same checker.
//!
//! # Recording conventions the checker relies on
//! - Every send carries a value unique within the history (tombstones, whose value is null,
//!   excepted): the checker identifies records by value.
//! - A send is `ok` only once acknowledged; with a transactional producer, only once its
//!   transaction committed (a send of an aborted transaction is recorded as `fail`).
//! - `fail` means the operation certainly had no effect; anything uncertain is `info`.
//! - A consumer records an `assign` whenever its positions may be re-established (a rebalance
//!   assignment, a manual assign, a seek), and an administrative change of a group's committed
//!   offsets is a `reset` (or `delete-group`).

use std::collections::BTreeSet;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};

use serde::{Deserialize, Serialize};

/// Version of the line format written into [`RunMeta::format`].
pub const FORMAT_VERSION: u32 = 1;

/// Longest excerpt of a bad line quoted in a [`HistoryError`].
const EXCERPT_CHARS: usize = 160;

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// The producer's `acks` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Acks {
    /// `acks=0`: the producer never hears back; an `ok` send has no offset.
    #[serde(rename = "0")]
    Zero,
    /// `acks=1`: the leader acknowledges once it appended the write.
    #[serde(rename = "1")]
    One,
    /// `acks=all`: the leader acknowledges once every in-sync replica has the write.
    #[default]
    #[serde(rename = "all")]
    All,
}

/// The consumers' `isolation.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    #[default]
    ReadUncommitted,
    ReadCommitted,
}

/// When the workload's consumers commit offsets relative to processing what they polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommitOrder {
    /// Process, then commit: at-least-once. Nothing below a committed offset goes unprocessed.
    #[default]
    AfterProcessing,
    /// Commit, then process: at-most-once. A crash in between skips records.
    BeforeProcessing,
}

/// What the run promised: the settings that decide which anomalies are bugs and which the
/// configuration allows. A missing field takes the default, which is the strongest promise
/// (idempotent, `acks=all`, sync before ack, commit after processing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The producers are idempotent (`enable.idempotence=true`).
    pub idempotent: bool,
    pub acks: Acks,
    /// The broker syncs a write to disk before acknowledging it (`flush.messages=1`).
    pub sync_before_ack: bool,
    pub commit_order: CommitOrder,
    /// Topics with `cleanup.policy=compact`.
    pub compacted_topics: BTreeSet<String>,
    pub isolation: Isolation,
    /// The producers send inside Kafka transactions.
    pub transactional: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            idempotent: true,
            acks: Acks::All,
            sync_before_ack: true,
            commit_order: CommitOrder::AfterProcessing,
            compacted_topics: BTreeSet::new(),
            isolation: Isolation::ReadUncommitted,
            transactional: false,
        }
    }
}

impl Config {
    pub fn is_compacted(&self, topic: &str) -> bool {
        self.compacted_topics.contains(topic)
    }
}

/// The first line of a history file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunMeta {
    /// [`FORMAT_VERSION`] of the writer.
    pub format: u32,
    /// The scenario's seed, for simulated runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Free text naming where the history comes from (`"sim"`, a test's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub config: Config,
}

impl Default for RunMeta {
    fn default() -> RunMeta {
        RunMeta {
            format: FORMAT_VERSION,
            seed: None,
            source: None,
            config: Config::default(),
        }
    }
}

impl RunMeta {
    pub fn new(config: Config) -> RunMeta {
        RunMeta {
            config,
            ..RunMeta::default()
        }
    }
}

/// A record as a poll returned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `None` is a tombstone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl Record {
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(self.topic.clone(), self.partition)
    }
}

/// One entry of a commit or reset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOffset {
    pub topic: String,
    pub partition: i32,
    /// The next offset to consume, as in Kafka.
    pub offset: i64,
}

impl PartitionOffset {
    pub fn new(topic: impl Into<String>, partition: i32, offset: i64) -> PartitionOffset {
        PartitionOffset {
            topic: topic.into(),
            partition,
            offset,
        }
    }

    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(self.topic.clone(), self.partition)
    }
}

/// Produce one record. The invoke names the partition or leaves it to the partitioner (by
/// key); the `ok` carries the partition and, unless `acks=0`, the offset it landed at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendOp {
    pub topic: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `None` is a tombstone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
}

/// One `poll()` of one consumer; the `ok` carries the records in the order returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollOp {
    /// The consumer within its process (client id or member id).
    pub consumer: String,
    /// The consumer's `group.id`, also for a standalone (manually assigned) consumer that
    /// commits to the group: what a group received is judged from its polls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The group generation the consumer is in, if a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<Record>,
}

/// An offset commit (OffsetCommit). `generation` is `None` for a commit outside group
/// membership (a standalone consumer), which Kafka accepts only while the group is empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitOp {
    pub group: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i32>,
    pub member: String,
    pub offsets: Vec<PartitionOffset>,
}

/// A consumer's positions were (re)established for these partitions: a rebalance assignment
/// (in `generation`), a manual assign, or a seek.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignOp {
    pub consumer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i32>,
    pub partitions: Vec<TopicPartition>,
}

/// An administrative change of a group's committed offsets (reset for replay, delete offsets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetOp {
    pub group: String,
    pub offsets: Vec<PartitionOffset>,
}

/// The group was deleted: its committed offsets and generation are gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteGroupOp {
    pub group: String,
}

/// An operation, the same shape in its invoke and its completion (the completion fills in
/// results: a send's offset, a poll's records).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "kebab-case")]
pub enum Op {
    Send(SendOp),
    Poll(PollOp),
    Commit(CommitOp),
    Assign(AssignOp),
    Reset(ResetOp),
    DeleteGroup(DeleteGroupOp),
}

impl Op {
    /// The operation's name as written in the `f` field.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Send(_) => "send",
            Op::Poll(_) => "poll",
            Op::Commit(_) => "commit",
            Op::Assign(_) => "assign",
            Op::Reset(_) => "reset",
            Op::DeleteGroup(_) => "delete-group",
        }
    }
}

/// Something the nemesis did. Hosts are named as in the simulation (or the test).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fault {
    /// The host stopped; its unsynced writes are subject to the disk's crash model.
    Crash {
        host: String,
    },
    Restart {
        host: String,
    },
    /// The host crashed at the `hit`-th time it reached the named `crash_point!`.
    CrashPoint {
        host: String,
        point: String,
        hit: u64,
    },
    /// Every link between a host in `left` and a host in `right` is cut.
    Partition {
        left: Vec<String>,
        right: Vec<String>,
    },
    /// Messages between the two hosts are held back (delivered on release).
    Hold {
        a: String,
        b: String,
    },
    Release {
        a: String,
        b: String,
    },
    /// Every link is restored.
    Heal,
    /// The partition's leadership moved (to the broker `to`, if known).
    LeaderMove {
        topic: String,
        partition: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<i32>,
    },
    /// The group's coordinator moved.
    CoordinatorMove {
        group: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<i32>,
    },
    /// The host's clock jumped by `delta_ms` (negative: backwards).
    ClockJump {
        host: String,
        delta_ms: i64,
    },
    /// A control-plane fault (`Control`, issue 11): injected errors, a slow node, a forced
    /// rebalance. It stops nothing and loses nothing: the broker refused or delayed requests
    /// without acting on them.
    Injected {
        action: String,
    },
    /// A fault this format does not name yet. The checker assumes the worst of it.
    Other {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
}

impl Fault {
    /// The fault's name as written in the `kind` field (for an `Other`, its `name`).
    pub fn name(&self) -> &str {
        match self {
            Fault::Crash { .. } => "crash",
            Fault::Restart { .. } => "restart",
            Fault::CrashPoint { .. } => "crash-point",
            Fault::Partition { .. } => "partition",
            Fault::Hold { .. } => "hold",
            Fault::Release { .. } => "release",
            Fault::Heal => "heal",
            Fault::LeaderMove { .. } => "leader-move",
            Fault::CoordinatorMove { .. } => "coordinator-move",
            Fault::ClockJump { .. } => "clock-jump",
            Fault::Injected { .. } => "injected",
            Fault::Other { name, .. } => name,
        }
    }

    /// The host this fault stopped, if it stopped one (its clients lose their state).
    pub fn stopped_host(&self) -> Option<&str> {
        match self {
            Fault::Crash { host } | Fault::Restart { host } | Fault::CrashPoint { host, .. } => {
                Some(host)
            }
            _ => None,
        }
    }
}

/// The run's phases (DESIGN.md §7): faults on, then faults off and everything restarted, then
/// the final drain done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Safety,
    Heal,
    /// Every consumer has read every partition to its end since the faults stopped.
    Drained,
}

/// What an event is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum EventKind {
    Invoke {
        op: Op,
    },
    /// Completed with effect. `invoke` is `None` for an observation (nothing was invoked).
    Ok {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        invoke: Option<u64>,
        op: Op,
    },
    /// Certainly completed without effect; `code` is the Kafka error code if there was one.
    Fail {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        invoke: Option<u64>,
        op: Op,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<i16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Outcome unknown: the operation may or may not have taken effect.
    Info {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        invoke: Option<u64>,
        op: Op,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Fault {
        fault: Fault,
    },
    Phase {
        phase: Phase,
    },
}

/// One line of a history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub index: u64,
    pub time_ms: u64,
    pub process: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// The operation this event invokes or completes.
    pub fn op(&self) -> Option<&Op> {
        match &self.kind {
            EventKind::Invoke { op }
            | EventKind::Ok { op, .. }
            | EventKind::Fail { op, .. }
            | EventKind::Info { op, .. } => Some(op),
            EventKind::Fault { .. } | EventKind::Phase { .. } => None,
        }
    }

    /// The operation, if this event is its `ok` completion.
    pub fn ok_op(&self) -> Option<&Op> {
        match &self.kind {
            EventKind::Ok { op, .. } => Some(op),
            _ => None,
        }
    }

    /// The invoke this event completes, for `ok` / `fail` / `info`.
    pub fn invoke_index(&self) -> Option<u64> {
        match &self.kind {
            EventKind::Ok { invoke, .. }
            | EventKind::Fail { invoke, .. }
            | EventKind::Info { invoke, .. } => *invoke,
            _ => None,
        }
    }

    /// The event's type as written in the `type` field.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            EventKind::Invoke { .. } => "invoke",
            EventKind::Ok { .. } => "ok",
            EventKind::Fail { .. } => "fail",
            EventKind::Info { .. } => "info",
            EventKind::Fault { .. } => "fault",
            EventKind::Phase { .. } => "phase",
        }
    }
}

/// A whole history: metadata and events in index order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct History {
    pub meta: RunMeta,
    pub events: Vec<Event>,
}

/// How the metadata line is wrapped, so it cannot be mistaken for an event.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetaLine {
    meta: RunMeta,
}

impl History {
    pub fn new(meta: RunMeta) -> History {
        History {
            meta,
            events: Vec::new(),
        }
    }

    /// The event with this index (indices increase but need not be dense).
    pub fn event(&self, index: u64) -> Option<&Event> {
        self.events
            .binary_search_by_key(&index, |event| event.index)
            .ok()
            .map(|position| &self.events[position])
    }

    /// Writes the metadata line and one line per event.
    pub fn write_jsonl<W: Write>(&self, mut out: W) -> io::Result<()> {
        write_meta_line(&mut out, &self.meta)?;
        for event in &self.events {
            write_event_line(&mut out, event)?;
        }
        out.flush()
    }

    pub fn to_jsonl(&self) -> String {
        let mut out = Vec::new();
        self.write_jsonl(&mut out)
            .expect("writing to a Vec cannot fail and every history type serialises");
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }
}

fn write_meta_line<W: Write>(out: &mut W, meta: &RunMeta) -> io::Result<()> {
    serde_json::to_writer(&mut *out, &MetaLine { meta: meta.clone() })?;
    out.write_all(b"\n")
}

fn write_event_line<W: Write>(out: &mut W, event: &Event) -> io::Result<()> {
    serde_json::to_writer(&mut *out, event)?;
    out.write_all(b"\n")
}

/// Why a history could not be read. Lines are numbered from 1, as an editor shows them.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history line {line}: cannot read: {source}")]
    Io {
        line: usize,
        #[source]
        source: io::Error,
    },
    #[error("history line {line}: {message} in `{excerpt}`")]
    Parse {
        line: usize,
        message: String,
        excerpt: String,
    },
    #[error("history line {line}: event index {index} does not follow index {previous}")]
    IndexOrder {
        line: usize,
        index: u64,
        previous: u64,
    },
    #[error("history line {line}: the run metadata must be the first line")]
    MetaNotFirst { line: usize },
}

impl HistoryError {
    /// The 1-based line the error is about.
    pub fn line(&self) -> usize {
        match self {
            HistoryError::Io { line, .. }
            | HistoryError::Parse { line, .. }
            | HistoryError::IndexOrder { line, .. }
            | HistoryError::MetaNotFirst { line } => *line,
        }
    }
}

/// Parses a JSON-lines history. The metadata line is optional (a history recorded without one
/// gets [`RunMeta::default`], the strongest promises); blank lines are skipped; event indices
/// must strictly increase.
pub fn read_jsonl<R: Read>(reader: R) -> Result<History, HistoryError> {
    let mut history = History::default();
    let mut seen_line = false;
    for (number, line) in BufReader::new(reader).lines().enumerate() {
        let line_number = number + 1;
        let text = line.map_err(|source| HistoryError::Io {
            line: line_number,
            source,
        })?;
        let trimmed = text.trim();
        if trimmed.is_empty() {
            continue;
        }
        let parse_error = |error: serde_json::Error| HistoryError::Parse {
            line: line_number,
            message: error.to_string(),
            excerpt: excerpt(trimmed),
        };
        let value: serde_json::Value = serde_json::from_str(trimmed).map_err(parse_error)?;
        let is_meta = value
            .as_object()
            .is_some_and(|object| object.contains_key("meta"));
        if is_meta {
            if seen_line {
                return Err(HistoryError::MetaNotFirst { line: line_number });
            }
            let meta_line: MetaLine = serde_json::from_value(value).map_err(parse_error)?;
            history.meta = meta_line.meta;
        } else {
            let event: Event = serde_json::from_value(value).map_err(parse_error)?;
            if let Some(previous) = history.events.last()
                && event.index <= previous.index
            {
                return Err(HistoryError::IndexOrder {
                    line: line_number,
                    index: event.index,
                    previous: previous.index,
                });
            }
            history.events.push(event);
        }
        seen_line = true;
    }
    Ok(history)
}

fn excerpt(text: &str) -> String {
    if text.chars().count() <= EXCERPT_CHARS {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(EXCERPT_CHARS).collect();
    cut.push('…');
    cut
}

/// Appends events in order, numbering them from 0, keeping them in memory and (optionally)
/// writing each as a JSON line the moment it is recorded, so a crashed test still leaves the
/// history so far on disk.
///
/// A write error on the sink does not interrupt recording (the in-memory history stays whole);
/// the first one is returned by [`Recorder::finish`].
pub struct Recorder {
    history: History,
    sink: Option<Box<dyn Write + Send>>,
    sink_error: Option<io::Error>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("events", &self.history.events.len())
            .field("sink", &self.sink.is_some())
            .field("sink_error", &self.sink_error)
            .finish()
    }
}

impl Recorder {
    /// Records in memory only.
    pub fn new(meta: RunMeta) -> Recorder {
        Recorder {
            history: History::new(meta),
            sink: None,
            sink_error: None,
        }
    }

    /// Records in memory and writes every line to `sink`, starting with the metadata.
    pub fn with_sink<W: Write + Send + 'static>(meta: RunMeta, sink: W) -> Recorder {
        let mut sink: Box<dyn Write + Send> = Box::new(sink);
        let sink_error = write_meta_line(&mut sink, &meta).err();
        Recorder {
            history: History::new(meta),
            sink: Some(sink),
            sink_error,
        }
    }

    /// Appends an event and returns its index.
    pub fn record(&mut self, time_ms: u64, process: impl Into<String>, kind: EventKind) -> u64 {
        let index = self.history.events.len() as u64;
        let event = Event {
            index,
            time_ms,
            process: process.into(),
            kind,
        };
        if let Some(sink) = self.sink.as_mut()
            && self.sink_error.is_none()
        {
            self.sink_error = write_event_line(sink, &event).err();
        }
        self.history.events.push(event);
        index
    }

    /// Records the start of an operation; pass the returned index to its completion.
    pub fn invoke(&mut self, time_ms: u64, process: impl Into<String>, op: Op) -> u64 {
        self.record(time_ms, process, EventKind::Invoke { op })
    }

    pub fn ok(&mut self, time_ms: u64, process: impl Into<String>, invoke: u64, op: Op) -> u64 {
        self.record(
            time_ms,
            process,
            EventKind::Ok {
                invoke: Some(invoke),
                op,
            },
        )
    }

    pub fn fail(
        &mut self,
        time_ms: u64,
        process: impl Into<String>,
        invoke: u64,
        op: Op,
        code: Option<i16>,
        reason: Option<String>,
    ) -> u64 {
        self.record(
            time_ms,
            process,
            EventKind::Fail {
                invoke: Some(invoke),
                op,
                code,
                reason,
            },
        )
    }

    pub fn info(
        &mut self,
        time_ms: u64,
        process: impl Into<String>,
        invoke: u64,
        op: Op,
        reason: Option<String>,
    ) -> u64 {
        self.record(
            time_ms,
            process,
            EventKind::Info {
                invoke: Some(invoke),
                op,
                reason,
            },
        )
    }

    /// Records something that happened without being invoked (an assignment handed over by a
    /// rebalance) as an `ok` without an invoke.
    pub fn observe(&mut self, time_ms: u64, process: impl Into<String>, op: Op) -> u64 {
        self.record(time_ms, process, EventKind::Ok { invoke: None, op })
    }

    pub fn fault(&mut self, time_ms: u64, process: impl Into<String>, fault: Fault) -> u64 {
        self.record(time_ms, process, EventKind::Fault { fault })
    }

    pub fn phase(&mut self, time_ms: u64, process: impl Into<String>, phase: Phase) -> u64 {
        self.record(time_ms, process, EventKind::Phase { phase })
    }

    /// The history recorded so far.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Flushes the sink and returns the history, or the first error writing to the sink.
    pub fn finish(mut self) -> io::Result<History> {
        if let Some(error) = self.sink_error.take() {
            return Err(error);
        }
        if let Some(sink) = self.sink.as_mut() {
            sink.flush()?;
        }
        Ok(self.history)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(value: &str, offset: Option<i64>) -> Op {
        Op::Send(SendOp {
            topic: "t".into(),
            partition: Some(0),
            key: Some("k".into()),
            value: Some(value.into()),
            offset,
        })
    }

    #[test]
    fn event_lines_have_the_documented_shape() {
        let mut recorder = Recorder::new(RunMeta::default());
        let invoke = recorder.invoke(0, "p", send("v0", None));
        recorder.ok(3, "p", invoke, send("v0", Some(0)));
        let lines: Vec<serde_json::Value> = recorder
            .history()
            .to_jsonl()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines[0]["meta"]["config"]["acks"], "all");
        assert_eq!(lines[1]["type"], "invoke");
        assert_eq!(lines[1]["op"]["f"], "send");
        assert!(lines[1]["op"].get("offset").is_none());
        assert_eq!(lines[2]["index"], 1);
        assert_eq!(lines[2]["invoke"], 0);
        assert_eq!(lines[2]["op"]["offset"], 0);
    }

    #[test]
    fn a_sink_receives_each_line_as_it_is_recorded() {
        let mut recorder = Recorder::with_sink(RunMeta::default(), Vec::new());
        recorder.fault(1, "nemesis", Fault::Heal);
        recorder.phase(2, "sim", Phase::Drained);
        let history = recorder.finish().unwrap();
        assert_eq!(history.events.len(), 2);
        assert_eq!(history.event(1).unwrap().type_name(), "phase");
    }

    #[test]
    fn a_failing_sink_is_reported_by_finish() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut recorder = Recorder::with_sink(RunMeta::default(), Broken);
        recorder.fault(1, "nemesis", Fault::Heal);
        assert_eq!(recorder.history().events.len(), 1);
        assert!(recorder.finish().is_err());
    }
}
