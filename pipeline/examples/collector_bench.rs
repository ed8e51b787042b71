//! Load generator for the pipeline's collector (issue 9 item 10; BENCHMARKS.md, "Pipeline
//! collector"): requests/s, events/s and the 202 latency under load on loopback, then the time
//! from an event's 202 to its notice on `events.persisted`.
//!
//! ```sh
//! cargo run --release -p tidepool-pipeline --example collector_bench -- \
//!     [--events N] [--batch B] [--connections C] [--rate R] [--bootstrap HOST:PORT]
//! cargo run --release -p tidepool-pipeline --example collector_bench -- -h   # every option
//! ```
//!
//! Without `--bootstrap` it starts an embedded broker (in memory, one node, no topic
//! auto-creation: what `tidepool up` starts); with it, it uses that cluster. Either way it starts
//! the whole pipeline in this process with `app::start` on `Store::memory()` (collector, the
//! three stages, the outbox relay), as shipped, then drives the collector with C keep-alive
//! HTTP/1.1 connections (a small client on tokio's `TcpStream`, below), each request a JSON
//! array of B events with unique ids over a few tenants:
//!
//! - closed loop (no `--rate`): each connection sends its next request as soon as the previous
//!   one is answered;
//! - open loop (`--rate R`, events/s): request i is due at start + i·B/R whatever the answers;
//!   a connection takes the next due request when it is free. Tokio's timer has 1 ms ticks, so
//!   requests leave in small bursts on those ticks; how late they left is reported.
//!
//! Latency is per request, from just before its bytes are written to the socket to the moment
//! the whole 202 answer is read (hdrhistogram, ns). A warm-up (metadata, connections, the
//! stages' group joins) runs first and is not counted.
//!
//! End to end: a `tidepool_client` consumer reads `events.persisted` (assigned, from its end
//! before the measured phase) and matches each record to a sampled event by the `event-id`
//! header. "202 → persisted" is from the event's 202 to the poll that returned its notice: it
//! includes the relay's produce and acknowledgement and one fetch by this consumer. The notice's
//! `persisted_at` (the persister's wall clock, ms) splits it into "202 → row committed" and
//! the rest. Polling the store instead would see the row commit but not the publish.
//!
//! Experiments, not the shipped configuration, change one `PipelineConfig` setting each:
//! `--collector-linger-ms MS` (`collector_linger`, shipped 0), `--relay-linger-ms MS`
//! (`relay_linger`, shipped 0), `--collector-shared-runtime` (`collector_own_thread: false`: the
//! collector on the caller's tokio runtime, as before it got a thread of its own) and
//! `--stages-shared-runtime` (`stages_own_thread: false`: the stages and the relay there too),
//! `--stages-workers N` (`stages_workers`) and `--stage-poll-records N` (`stage.max_poll_records`).
//! The caller's runtime is this example's `#[tokio::main]` (2 workers on 2 CPUs), which also
//! runs the embedded broker and the load generator.
//!
//! `--collector-only` starts only a collector (`collector::router`, its producer lingering as
//! `--collector-linger-ms` says, 0 by default) with no stages and no relay in the process, to
//! tell the collector's own cost from the stages' interference.
//!
//! Exits non-zero if any request failed (not 202, or an I/O error).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tidepool_broker::{Broker, BrokerHandle, Config};
use tidepool_client::{
    Admin, Client, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, Producer, TopicPartition,
};
use tidepool_io::{Clock, Env, SystemClock};
use tidepool_pipeline::app::{PipelineConfig, PipelineHandle, pipeline_producer_config, start};
use tidepool_pipeline::collector::{self, CollectorConfig};
use tidepool_pipeline::metrics::{ACK_LATENCY, PipelineMetrics};
use tidepool_pipeline::runtime::headers;
use tidepool_pipeline::store::Store;
use tidepool_pipeline::topics::{self, ensure_topics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

const USAGE: &str = "\
collector_bench: load the pipeline's collector over loopback, report 202 latency and 202 -> persisted

options:
  --events N              events in the measured phase (default 100000)
  --batch B               events per request (default 1)
  --connections C         concurrent keep-alive connections (default 8; the collector answers 503
                          beyond 64 requests in flight)
  --rate R                open loop at R events/s (default: closed loop, as fast as answered)
  --bootstrap HOST:PORT   use this cluster instead of an embedded in-memory broker
  --partitions P          partitions of the pipeline's topics when it creates them (default 6)
  --tenants T             tenants the events are spread over (default 8)
  --warmup N              events sent before measuring, not counted (default 2000)
  --e2e-every K           follow every K-th event to events.persisted (default 10; 0: none)
  --e2e-timeout S         seconds to wait for the followed events after the load (default 120)
  --collector-linger-ms M experiment: the collector's producer lingers M ms (shipped: 0)
  --relay-linger-ms M     experiment: the stages' and relay's producer lingers M ms (shipped: 0)
  --collector-shared-runtime
                          experiment: the collector on the stages' tokio runtime instead of a
                          thread and runtime of its own (shipped: its own)
  --stages-shared-runtime experiment: the stages and relay on the caller's tokio runtime (with
                          the broker) instead of a thread and runtime of their own (shipped: own)
  --stages-workers N      experiment: worker threads of the stages' own runtime (shipped: 1)
  --stage-poll-records N  experiment: the stages' max_poll_records (shipped: 500)
  --collector-only        experiment: only a collector (collector::router, linger as
                          --collector-linger-ms), no stages, no relay, no 202 -> persisted
  -h, --help              this text";

#[derive(Debug, Clone)]
struct Args {
    events: u64,
    batch: u64,
    connections: usize,
    rate: Option<f64>,
    bootstrap: Option<String>,
    partitions: i32,
    tenants: u64,
    warmup: u64,
    e2e_every: u64,
    e2e_timeout: Duration,
    collector_linger: Option<Duration>,
    relay_linger: Option<Duration>,
    shared_runtime: bool,
    stages_shared_runtime: bool,
    stages_workers: Option<usize>,
    stage_poll_records: Option<usize>,
    collector_only: bool,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut args = Args {
            events: 100_000,
            batch: 1,
            connections: 8,
            rate: None,
            bootstrap: None,
            partitions: 6,
            tenants: 8,
            warmup: 2_000,
            e2e_every: 10,
            e2e_timeout: Duration::from_secs(120),
            collector_linger: None,
            relay_linger: None,
            shared_runtime: false,
            stages_shared_runtime: false,
            stages_workers: None,
            stage_poll_records: None,
            collector_only: false,
        };
        let mut words = std::env::args().skip(1);
        while let Some(flag) = words.next() {
            if flag == "-h" || flag == "--help" {
                println!("{USAGE}");
                std::process::exit(0);
            }
            if flag == "--collector-only" {
                args.collector_only = true;
                args.e2e_every = 0;
                continue;
            }
            if flag == "--collector-shared-runtime" {
                args.shared_runtime = true;
                continue;
            }
            if flag == "--stages-shared-runtime" {
                args.stages_shared_runtime = true;
                continue;
            }
            let value = words
                .next()
                .ok_or_else(|| format!("{flag} needs a value"))?;
            let bad = |error: &dyn std::fmt::Display| format!("{flag} {value}: {error}");
            match flag.as_str() {
                "--events" => args.events = value.parse().map_err(|e| bad(&e))?,
                "--batch" => args.batch = value.parse().map_err(|e| bad(&e))?,
                "--connections" => args.connections = value.parse().map_err(|e| bad(&e))?,
                "--rate" => args.rate = Some(value.parse().map_err(|e| bad(&e))?),
                "--bootstrap" => args.bootstrap = Some(value),
                "--partitions" => args.partitions = value.parse().map_err(|e| bad(&e))?,
                "--tenants" => args.tenants = value.parse().map_err(|e| bad(&e))?,
                "--warmup" => args.warmup = value.parse().map_err(|e| bad(&e))?,
                "--e2e-every" => args.e2e_every = value.parse().map_err(|e| bad(&e))?,
                "--e2e-timeout" => {
                    args.e2e_timeout = Duration::from_secs(value.parse().map_err(|e| bad(&e))?);
                }
                "--collector-linger-ms" => {
                    args.collector_linger =
                        Some(Duration::from_millis(value.parse().map_err(|e| bad(&e))?));
                }
                "--stages-workers" => {
                    args.stages_workers = Some(value.parse().map_err(|e| bad(&e))?);
                }
                "--stage-poll-records" => {
                    args.stage_poll_records = Some(value.parse().map_err(|e| bad(&e))?);
                }
                "--relay-linger-ms" => {
                    args.relay_linger =
                        Some(Duration::from_millis(value.parse().map_err(|e| bad(&e))?));
                }
                _ => return Err(format!("unknown option {flag}\n\n{USAGE}")),
            }
        }
        if args.events == 0 || args.batch == 0 || args.connections == 0 || args.tenants == 0 {
            return Err("--events, --batch, --connections and --tenants must be > 0".into());
        }
        if args.rate.is_some_and(|rate| rate.is_nan() || rate <= 0.0) {
            return Err("--rate must be > 0".into());
        }
        Ok(args)
    }

    fn requests(&self) -> u64 {
        self.events.div_ceil(self.batch)
    }

    fn warmup_requests(&self) -> u64 {
        self.warmup.div_ceil(self.batch)
    }
}

/// The events of one request, as the collector takes them: ids `cb<run>-<index>`, where the
/// measured phase's indexes are 0..events and the warm-up's come after them.
fn write_body(args: &Args, run: i64, first: u64, count: u64, timestamp_ms: i64, out: &mut Vec<u8>) {
    out.clear();
    out.push(b'[');
    for index in first..first + count {
        if index > first {
            out.push(b',');
        }
        // Writing to a Vec cannot fail.
        let _ = write!(
            out,
            r#"{{"id":"cb{run}-{index}","tenant":"tenant-{tenant}","type":"page.view","timestamp":{timestamp_ms},"payload":{{"seq":{index},"path":"/products/{product}","referrer":"https://example.com/search"}}}}"#,
            tenant = index % args.tenants,
            product = index % 997,
        );
    }
    out.push(b']');
}

/// The measured-phase index of an event id written by this run, if it is one.
fn event_index(run_prefix: &str, id: &[u8]) -> Option<u64> {
    let id = std::str::from_utf8(id).ok()?;
    id.strip_prefix(run_prefix)?.parse().ok()
}

/// One keep-alive HTTP/1.1 connection to the collector: a request goes out in one write, the
/// answer is read by its Content-Length.
struct Connection {
    address: SocketAddr,
    stream: Option<TcpStream>,
    request: Vec<u8>,
    input: Vec<u8>,
}

struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Connection {
    fn new(address: SocketAddr) -> Connection {
        Connection {
            address,
            stream: None,
            request: Vec::with_capacity(64 << 10),
            input: Vec::with_capacity(16 << 10),
        }
    }

    async fn ensure_open(&mut self) -> std::io::Result<&mut TcpStream> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.address).await?;
            stream.set_nodelay(true)?;
            self.input.clear();
            self.stream = Some(stream);
        }
        Ok(self.stream.as_mut().expect("just opened"))
    }

    /// Opens the connection now, so its set-up is outside any measurement.
    async fn open(&mut self) -> std::io::Result<()> {
        self.ensure_open().await.map(|_| ())
    }

    fn prepare(&mut self, body: &[u8]) {
        self.request.clear();
        let _ = write!(
            self.request,
            "POST /v1/events HTTP/1.1\r\nHost: collector\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        self.request.extend_from_slice(body);
    }

    /// Sends the prepared request and reads its answer. On an error the connection is dropped
    /// and reopened by the next call.
    async fn exchange(&mut self) -> std::io::Result<Answer> {
        let result = self.exchange_inner().await;
        if !matches!(result, Ok((_, true))) {
            self.stream = None;
        }
        result.map(|(answer, _)| answer)
    }

    async fn exchange_inner(&mut self) -> std::io::Result<(Answer, bool)> {
        let request = std::mem::take(&mut self.request);
        let stream = self.ensure_open().await?;
        let written = stream.write_all(&request).await;
        self.request = request;
        written?;
        let stream = self.stream.as_mut().expect("open");
        let input = &mut self.input;
        let head_end = loop {
            if let Some(end) = find(input, b"\r\n\r\n") {
                break end;
            }
            read_more(stream, input).await?;
        };
        let head = std::str::from_utf8(&input[..head_end])
            .map_err(|_| invalid("response head is not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid("no status line"))?;
        let mut length = None;
        let mut keep_alive = true;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close")
            {
                keep_alive = false;
            }
        }
        let length = length.ok_or_else(|| invalid("response without Content-Length"))?;
        let body_start = head_end + 4;
        while input.len() < body_start + length {
            read_more(stream, input).await?;
        }
        let body = input[body_start..body_start + length].to_vec();
        input.drain(..body_start + length);
        Ok((Answer { status, body }, keep_alive))
    }
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

async fn read_more(stream: &mut TcpStream, input: &mut Vec<u8>) -> std::io::Result<()> {
    let mut chunk = [0u8; 16 << 10];
    let read = stream.read(&mut chunk).await?;
    if read == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed before the whole answer",
        ));
    }
    input.extend_from_slice(&chunk[..read]);
    Ok(())
}

fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is valid")
}

/// Records `value` (at least 1), growing the histogram as needed.
fn record(histogram: &mut Histogram<u64>, value: u64) {
    histogram
        .record(value.max(1))
        .expect("an auto-resizing histogram takes any value");
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// What every load task shares.
struct Load {
    args: Args,
    run: i64,
    timestamp_ms: i64,
    clock: Arc<dyn Clock>,
    /// The next request to send (open and closed loop alike).
    next: AtomicU64,
    /// Per measured event: monotonic ns of its 202, + 1 (0: none yet).
    acked_at: Vec<AtomicU64>,
}

#[derive(Default)]
struct Tally {
    latency: Option<Histogram<u64>>,
    lateness: Option<Histogram<u64>>,
    ok: u64,
    /// Events of the requests answered 202.
    events: u64,
    failed: u64,
    first_failure: Option<String>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency: Some(histogram()),
            lateness: Some(histogram()),
            ..Tally::default()
        }
    }

    fn fail(&mut self, what: String) {
        self.failed += 1;
        if self.first_failure.is_none() {
            self.first_failure = Some(what);
        }
    }

    fn merge(&mut self, other: Tally) {
        let add = |into: &mut Option<Histogram<u64>>, from: Option<Histogram<u64>>| {
            if let (Some(into), Some(from)) = (into.as_mut(), from) {
                into.add(from).expect("same precision");
            }
        };
        add(&mut self.latency, other.latency);
        add(&mut self.lateness, other.lateness);
        self.ok += other.ok;
        self.events += other.events;
        self.failed += other.failed;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
    }
}

/// Sends `count` warm-up requests in turn on `connection`, from event index `first`.
async fn warm_up(
    load: Arc<Load>,
    mut connection: Connection,
    first: u64,
    count: u64,
) -> (Connection, Tally) {
    let mut tally = Tally::new();
    let mut body = Vec::new();
    for request in 0..count {
        let start = first + request * load.args.batch;
        write_body(
            &load.args,
            load.run,
            start,
            load.args.batch,
            load.timestamp_ms,
            &mut body,
        );
        connection.prepare(&body);
        match connection.exchange().await {
            Ok(answer) if answer.status == 202 => tally.ok += 1,
            Ok(answer) => tally.fail(format!(
                "warm-up: HTTP {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            )),
            Err(error) => tally.fail(format!("warm-up: {error}")),
        }
    }
    (connection, tally)
}

/// One connection's share of the measured phase, which started at `start` (monotonic; the
/// open-loop schedule counts from it).
async fn drive(load: Arc<Load>, mut connection: Connection, start: Duration) -> Tally {
    let args = &load.args;
    let requests = args.requests();
    let interval = args
        .rate
        .map(|rate| Duration::from_secs_f64(args.batch as f64 / rate));
    let mut tally = Tally::new();
    let mut body = Vec::new();
    loop {
        let request = load.next.fetch_add(1, Ordering::Relaxed);
        if request >= requests {
            break;
        }
        let first = request * args.batch;
        let count = args.batch.min(args.events - first);
        write_body(args, load.run, first, count, load.timestamp_ms, &mut body);
        connection.prepare(&body);
        if let Some(interval) = interval {
            let due = start + interval.mul_f64(request as f64);
            let now = load.clock.now();
            if due > now {
                load.clock.sleep(due - now).await;
            }
            let late = load.clock.now().saturating_sub(due);
            if let Some(lateness) = tally.lateness.as_mut() {
                record(lateness, nanos(late).max(1));
            }
        }
        let sent = load.clock.now();
        let result = connection.exchange().await;
        let answered = load.clock.now();
        match result {
            Ok(answer) if answer.status == 202 => {
                tally.ok += 1;
                tally.events += count;
                if let Some(latency) = tally.latency.as_mut() {
                    record(latency, nanos(answered - sent).max(1));
                }
                let at = nanos(answered) + 1;
                for index in first..first + count {
                    load.acked_at[index as usize].store(at, Ordering::Relaxed);
                }
            }
            Ok(answer) => tally.fail(format!(
                "HTTP {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            )),
            Err(error) => tally.fail(error.to_string()),
        }
    }
    tally
}

/// Where the followed events' notices were seen on `events.persisted`.
struct Follow {
    every: u64,
    /// Per followed event (index / every): monotonic ns of the poll that returned it, + 1.
    seen_at: Vec<AtomicU64>,
    /// Per followed event: its notice's `persisted_at` (wall ms), + 1.
    persisted_wall_ms: Vec<AtomicU64>,
    seen: AtomicU64,
}

impl Follow {
    fn slot(&self, index: u64) -> Option<usize> {
        (self.every > 0 && index.is_multiple_of(self.every)).then(|| (index / self.every) as usize)
    }
}

fn persisted_at(record: &ConsumerRecord) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(record.value.as_deref()?).ok()?;
    value["persisted_at"].as_u64()
}

/// Reads `events.persisted` until `stop`, noting when each followed event's notice arrives.
async fn follow_persisted(
    consumer: Consumer,
    follow: Arc<Follow>,
    run_prefix: String,
    events: u64,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    while !*stop.borrow() {
        let records = tokio::select! {
            records = consumer.poll(Duration::from_millis(100)) => records?,
            _ = stop.changed() => break,
        };
        let now = nanos(clock.now()) + 1;
        for record in &records {
            let Some(index) = record
                .headers
                .iter()
                .find(|header| header.key == headers::EVENT_ID)
                .and_then(|header| header.value.as_deref())
                .and_then(|id| event_index(&run_prefix, id))
            else {
                continue;
            };
            if index >= events {
                continue;
            }
            let Some(slot) = follow.slot(index) else {
                continue;
            };
            if follow.seen_at[slot]
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                follow.seen.fetch_add(1, Ordering::Relaxed);
                if let Some(at) = persisted_at(record) {
                    follow.persisted_wall_ms[slot].store(at + 1, Ordering::Relaxed);
                }
            }
        }
    }
    consumer.close().await?;
    Ok(())
}

/// The collector's own ack-latency buckets (seconds, cumulative count) from its metrics.
fn ack_buckets(metrics: &PipelineMetrics) -> Vec<(String, u64)> {
    let prefix = format!("{ACK_LATENCY}_bucket{{le=\"");
    metrics
        .render()
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (le, count) = rest.split_once("\"} ")?;
            Some((le.to_owned(), count.trim().parse().ok()?))
        })
        .collect()
}

/// User + system CPU of this process so far (from /proc; Linux's 100 ticks per second).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((user + system) * 10))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn show(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 1_000.0 {
        format!("{micros:.0} µs")
    } else if micros < 1_000_000.0 {
        format!("{:.2} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

fn show_ns(ns: u64) -> String {
    show(Duration::from_nanos(ns))
}

fn percentiles(histogram: &Histogram<u64>) -> String {
    if histogram.is_empty() {
        return "none".to_owned();
    }
    format!(
        "{} / {} / {} / {} / {}",
        show_ns(histogram.value_at_quantile(0.50)),
        show_ns(histogram.value_at_quantile(0.95)),
        show_ns(histogram.value_at_quantile(0.99)),
        show_ns(histogram.value_at_quantile(0.999)),
        show_ns(histogram.max()),
    )
}

/// Nearest-rank p50 / p95 / p99 of signed milliseconds.
fn signed_percentiles(values: &mut [f64]) -> String {
    if values.is_empty() {
        return "none".to_owned();
    }
    values.sort_by(f64::total_cmp);
    let at = |quantile: f64| {
        let rank = ((quantile * values.len() as f64).ceil() as usize).clamp(1, values.len());
        format!("{:.1} ms", values[rank - 1])
    };
    format!("{} / {} / {}", at(0.50), at(0.95), at(0.99))
}

fn thousands(value: f64) -> String {
    let whole = value.round() as u64;
    let digits = whole.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

enum Cluster {
    Embedded(BrokerHandle),
    External(String),
}

impl Cluster {
    fn bootstrap(&self) -> String {
        match self {
            Cluster::Embedded(broker) => broker.bootstrap(),
            Cluster::External(bootstrap) => bootstrap.clone(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Cluster::Embedded(broker) => format!(
                "embedded tidepool broker (memory, 1 node) at {}",
                broker.bootstrap()
            ),
            Cluster::External(bootstrap) => format!("external cluster at {bootstrap}"),
        }
    }
}

/// A collector alone on its own producer (the `--collector-only` experiment).
struct ExperimentCollector {
    address: SocketAddr,
    linger: Duration,
    metrics: PipelineMetrics,
    producer: Producer,
    client: Client,
    task: tokio::task::JoinHandle<()>,
}

async fn experiment_collector(
    bootstrap: &str,
    linger: Duration,
) -> anyhow::Result<ExperimentCollector> {
    let env = Env::real();
    let client = Client::connect(env.clone(), ClientConfig::new(bootstrap)).await?;
    let producer = Producer::new(client.clone(), pipeline_producer_config().linger(linger)).await?;
    let metrics = PipelineMetrics::new();
    let router = collector::router(
        producer.clone(),
        CollectorConfig::default().clock(Arc::clone(&env.clock)),
        metrics.clone(),
    );
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let address = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(error) = collector::serve(listener, router).await {
            eprintln!("experiment collector stopped: {error}");
        }
    });
    Ok(ExperimentCollector {
        address,
        linger,
        metrics,
        producer,
        client,
        task,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = match Args::parse() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let load_at_start = load_average();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());

    let cluster = match &args.bootstrap {
        Some(bootstrap) => Cluster::External(bootstrap.clone()),
        None => Cluster::Embedded(
            Broker::builder()
                .memory()
                .nodes(1)
                .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
                .config(Config {
                    auto_create_topics: false,
                    ..Config::default()
                })
                .start()
                .await?,
        ),
    };
    let bootstrap = cluster.bootstrap();
    let mut config = PipelineConfig::new(bootstrap.clone());
    config.topics.partitions = args.partitions;
    if let Some(linger) = args.collector_linger {
        config.collector_linger = linger;
    }
    if let Some(linger) = args.relay_linger {
        config.relay_linger = linger;
    }
    config.collector_own_thread = !args.shared_runtime;
    config.stages_own_thread = !args.stages_shared_runtime;
    if let Some(workers) = args.stages_workers {
        config.stages_workers = workers;
    }
    if let Some(records) = args.stage_poll_records {
        config.stage.max_poll_records = records;
    }
    let shipped = args.collector_linger.is_none()
        && args.relay_linger.is_none()
        && !args.shared_runtime
        && !args.stages_shared_runtime
        && args.stages_workers.is_none()
        && args.stage_poll_records.is_none();
    let place = |own: bool| {
        if own {
            "a thread and runtime of its own"
        } else {
            "main's runtime (with the broker)"
        }
    };
    let pipeline_name = format!(
        "app::start's collector{} (collector producer: acks=all, idempotent, linger {} ms; stages' and relay's producer linger {} ms; collector on {}; stages and relay on {}, {} worker(s), up to {} records a round)",
        if shipped {
            " as shipped"
        } else {
            ", experiment"
        },
        config.collector_linger.as_millis(),
        config.relay_linger.as_millis(),
        place(config.collector_own_thread),
        place(config.stages_own_thread),
        config.stages_workers,
        config.stage.max_poll_records,
    );
    let collector_only_linger = config.collector_linger;
    let pipeline: Option<PipelineHandle> = if args.collector_only {
        let client = Client::connect(Env::real(), ClientConfig::new(bootstrap.clone())).await?;
        ensure_topics(&Admin::new(client.clone()), &config.topics).await?;
        client.close();
        None
    } else {
        Some(start(Env::real(), config, Store::memory()?, Vec::new()).await?)
    };
    eprintln!("collector_bench: started on {bootstrap}");
    let experiment = if args.collector_only {
        Some(experiment_collector(&bootstrap, collector_only_linger).await?)
    } else {
        None
    };
    let (target, collector_metrics, collector_name) = match (&experiment, &pipeline) {
        (Some(experiment), _) => (
            experiment.address,
            experiment.metrics.clone(),
            format!(
                "experiment: a collector (collector::router) whose own producer lingers {} ms; no stages, no relay (--collector-only)",
                experiment.linger.as_millis(),
            ),
        ),
        (None, Some(pipeline)) => (
            pipeline.collector_addr,
            pipeline.metrics.clone(),
            pipeline_name,
        ),
        (None, None) => unreachable!("--collector-only always starts a collector"),
    };

    // The follower of events.persisted, positioned at the end before any event is sent.
    let follow_client = Client::connect(Env::real(), ClientConfig::new(bootstrap.clone())).await?;
    let persisted_partitions = follow_client
        .topic(topics::PERSISTED)
        .await?
        .partitions
        .len();
    let consumer = Consumer::new(
        follow_client.clone(),
        ConsumerConfig::default().fetch_max_wait(Duration::from_millis(100)),
    )
    .await?;
    let assignment: Vec<TopicPartition> = (0..persisted_partitions as i32)
        .map(|partition| TopicPartition::new(topics::PERSISTED, partition))
        .collect();
    consumer.assign(assignment.clone()).await?;
    consumer.seek_to_end(&assignment).await?;

    let run = clock.wall_ms();
    let run_prefix = format!("cb{run}-");
    let followed = if args.e2e_every == 0 {
        0
    } else {
        args.events.div_ceil(args.e2e_every)
    };
    let follow = Arc::new(Follow {
        every: args.e2e_every,
        seen_at: (0..followed).map(|_| AtomicU64::new(0)).collect(),
        persisted_wall_ms: (0..followed).map(|_| AtomicU64::new(0)).collect(),
        seen: AtomicU64::new(0),
    });
    let (stop_follow, follow_stopped) = watch::channel(false);
    let follower = tokio::spawn(follow_persisted(
        consumer,
        Arc::clone(&follow),
        run_prefix.clone(),
        args.events,
        Arc::clone(&clock),
        follow_stopped,
    ));

    // Connections, then the warm-up (its events are indexed after the measured ones).
    let mut connections = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let mut connection = Connection::new(target);
        connection.open().await?;
        connections.push(connection);
    }
    let load = Arc::new(Load {
        args: args.clone(),
        run,
        timestamp_ms: clock.wall_ms(),
        clock: Arc::clone(&clock),
        next: AtomicU64::new(0),
        acked_at: (0..args.events).map(|_| AtomicU64::new(0)).collect(),
    });
    let per_connection = args.warmup_requests().div_ceil(args.connections as u64);
    let turns: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(i, connection)| {
            let first = args.events + i as u64 * per_connection * args.batch;
            tokio::spawn(warm_up(
                Arc::clone(&load),
                connection,
                first,
                per_connection,
            ))
        })
        .collect();
    let mut warmup = Tally::new();
    let mut connections = Vec::with_capacity(args.connections);
    for turn in turns {
        let (connection, tally) = turn.await?;
        connections.push(connection);
        warmup.merge(tally);
    }
    if warmup.failed > 0 {
        anyhow::bail!(
            "{} warm-up requests failed; first: {}",
            warmup.failed,
            warmup.first_failure.unwrap_or_default()
        );
    }
    eprintln!("collector_bench: warm-up done ({} requests)", warmup.ok);
    // Let the stages drain the warm-up, so the measured phase starts from empty queues.
    clock.sleep(Duration::from_millis(500)).await;

    let buckets_before = ack_buckets(&collector_metrics);
    let cpu_before = process_cpu();
    let wall_start = clock.wall_ms();
    let mono_start = clock.now();
    let tasks: Vec<_> = connections
        .into_iter()
        .map(|connection| tokio::spawn(drive(Arc::clone(&load), connection, mono_start)))
        .collect();
    let mut tally = Tally::new();
    for task in tasks {
        tally.merge(task.await?);
    }
    let load_end = clock.now();
    let cpu_after = process_cpu();
    let buckets_after = ack_buckets(&collector_metrics);
    let elapsed = load_end - mono_start;

    eprintln!(
        "collector_bench: load done in {}; waiting for events.persisted",
        show(elapsed)
    );
    // Wait for the followed events that got a 202.
    let expected: u64 = (0..followed)
        .filter(|slot| load.acked_at[(slot * args.e2e_every) as usize].load(Ordering::Relaxed) > 0)
        .count() as u64;
    let deadline = clock.now() + args.e2e_timeout;
    while follow.seen.load(Ordering::Relaxed) < expected && clock.now() < deadline {
        clock.sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_follow.send(true);
    follower.await??;

    let mut end_to_end = histogram();
    // Signed milliseconds: a row is often committed before its 202 reaches the client.
    let mut to_commit: Vec<f64> = Vec::new();
    let mut after_commit: Vec<f64> = Vec::new();
    let mut seen = 0u64;
    let mut before_ack = 0u64;
    let mut last_seen = 0u64;
    for slot in 0..followed as usize {
        let index = slot as u64 * args.e2e_every;
        let acked = load.acked_at[index as usize].load(Ordering::Relaxed);
        let seen_at = follow.seen_at[slot].load(Ordering::Relaxed);
        if acked == 0 || seen_at == 0 {
            continue;
        }
        seen += 1;
        last_seen = last_seen.max(seen_at - 1);
        if seen_at < acked {
            before_ack += 1;
        }
        record(&mut end_to_end, seen_at.saturating_sub(acked).max(1));
        let persisted_wall = follow.persisted_wall_ms[slot].load(Ordering::Relaxed);
        if persisted_wall > 0 {
            // The 202 on the wall clock, from the monotonic reading (ms resolution).
            let acked_wall_ms = wall_start as f64
                + (Duration::from_nanos(acked - 1).saturating_sub(mono_start)).as_secs_f64() * 1e3;
            let commit_ms = (persisted_wall - 1) as f64 - acked_wall_ms;
            to_commit.push(commit_ms);
            let seen_wall_ms = wall_start as f64
                + (Duration::from_nanos(seen_at - 1).saturating_sub(mono_start)).as_secs_f64()
                    * 1e3;
            let rest_ms = seen_wall_ms - (persisted_wall - 1) as f64;
            after_commit.push(rest_ms);
        }
    }

    // The report.
    let latency = tally.latency.take().unwrap_or_else(histogram);
    let lateness = tally.lateness.take().unwrap_or_else(histogram);
    let seconds = elapsed.as_secs_f64();
    let mode = match args.rate {
        Some(rate) => format!(
            "open loop at {} events/s ({} requests/s)",
            thousands(rate),
            thousands(rate / args.batch as f64)
        ),
        None => "closed loop".to_owned(),
    };
    let mut out = String::new();
    let _ = writeln!(out, "\ncollector_bench");
    let _ = writeln!(
        out,
        "  cluster: {}; {}, {} partitions",
        cluster.describe(),
        if args.collector_only {
            "no pipeline (--collector-only)"
        } else {
            "pipeline: app::start, Store::memory()"
        },
        args.partitions
    );
    let _ = writeln!(out, "  load sent to: {collector_name}");
    let _ = writeln!(
        out,
        "  load: {} events, {} per request, {} connections, {mode}; warm-up {} events; load average at start {load_at_start}",
        thousands(args.events as f64),
        args.batch,
        args.connections,
        thousands((per_connection * args.connections as u64 * args.batch) as f64),
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "| measure | value |");
    let _ = writeln!(out, "|---|---|");
    let _ = writeln!(
        out,
        "| requests: 202 / failed | {} / {} |",
        thousands(tally.ok as f64),
        tally.failed
    );
    let _ = writeln!(out, "| measured time | {} |", show(elapsed));
    let _ = writeln!(
        out,
        "| requests/s | {} |",
        thousands(tally.ok as f64 / seconds)
    );
    let _ = writeln!(
        out,
        "| events/s (202) | {} |",
        thousands(tally.events as f64 / seconds)
    );
    let _ = writeln!(
        out,
        "| 202 latency p50 / p95 / p99 / p99.9 / max | {} |",
        percentiles(&latency)
    );
    if args.rate.is_some() {
        let _ = writeln!(
            out,
            "| open loop: send later than due, p50 / p95 / p99 / p99.9 / max | {} |",
            percentiles(&lateness)
        );
    }
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        let cpu = after.saturating_sub(before);
        let _ = writeln!(
            out,
            "| process CPU (broker + pipeline + load generator) | {} = {:.2} CPUs |",
            show(cpu),
            cpu.as_secs_f64() / seconds
        );
    }
    let delta: Vec<(String, u64)> = buckets_after
        .iter()
        .map(|(le, after)| {
            let before = buckets_before
                .iter()
                .find(|(l, _)| l == le)
                .map_or(0, |(_, count)| *count);
            (le.clone(), after.saturating_sub(before))
        })
        .collect();
    let total = delta
        .iter()
        .find(|(le, _)| le == "+Inf")
        .map_or(0, |(_, count)| *count);
    if total > 0 {
        let share = |le: &str| {
            delta
                .iter()
                .find(|(l, _)| l == le)
                .map_or(0.0, |(_, count)| *count as f64 * 100.0 / total as f64)
        };
        let _ = writeln!(
            out,
            "| collector's own ack latency (arrival → all acks): ≤ 1 ms / ≤ 2.5 ms / ≤ 5 ms / ≤ 10 ms | {:.1} % / {:.1} % / {:.1} % / {:.1} % |",
            share("0.001"),
            share("0.0025"),
            share("0.005"),
            share("0.01")
        );
    }
    if followed > 0 {
        let _ = writeln!(
            out,
            "| 202 → persisted: events followed (every {}th), notices seen | {} of {} |",
            args.e2e_every,
            thousands(seen as f64),
            thousands(expected as f64)
        );
        let _ = writeln!(
            out,
            "| 202 → persisted (notice read from events.persisted) p50 / p95 / p99 / p99.9 / max | {} |",
            percentiles(&end_to_end)
        );
        let _ = writeln!(
            out,
            "| split by the notice's persisted_at (ms clock): 202 → row committed p50 / p95 / p99 (negative: before the 202 arrived) | {} |",
            signed_percentiles(&mut to_commit)
        );
        let _ = writeln!(
            out,
            "| split: row committed → notice read (outbox relay, its produce, one fetch) p50 / p95 / p99 | {} |",
            signed_percentiles(&mut after_commit)
        );
        if last_seen > 0 {
            let last = Duration::from_nanos(last_seen);
            let _ = writeln!(
                out,
                "| last followed notice read after the load ended | {} |",
                show(last.saturating_sub(load_end))
            );
            let span = last.saturating_sub(mono_start).max(elapsed).as_secs_f64();
            let _ = writeln!(
                out,
                "| events through to events.persisted per second (first send → last notice) | {} |",
                thousands((seen * args.e2e_every).min(tally.events) as f64 / span)
            );
        }
        if before_ack > 0 {
            let _ = writeln!(
                out,
                "| notices read before their 202 arrived (counted as 0) | {before_ack} |"
            );
        }
    }
    print!("{out}");
    let _ = std::io::stdout().flush();

    if let Some(experiment) = experiment {
        experiment.task.abort();
        let _ = experiment.producer.close().await;
        experiment.client.close();
    }
    follow_client.close();
    if let Some(pipeline) = pipeline {
        pipeline.shutdown().await;
    }
    if let Cluster::Embedded(broker) = cluster {
        broker.shutdown().await;
    }

    let mut failed = tally.failed;
    if followed > 0 && seen < expected {
        eprintln!(
            "only {seen} of {expected} followed events reached events.persisted within {:?}",
            args.e2e_timeout
        );
        failed += 1;
    }
    if failed > 0 {
        if let Some(first) = tally.first_failure {
            eprintln!("{} requests failed; first: {first}", tally.failed);
        }
        std::process::exit(1);
    }
    Ok(())
}
