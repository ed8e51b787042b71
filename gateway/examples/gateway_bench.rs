//! Load generator for the REST gateway (issue 10 item 9; BENCHMARKS.md, "Gateway"): requests/s
//! and the HTTP round trip through gateway, Kafka and a service, on loopback, beside the floor
//! under it: the same request and reply through Kafka with our client alone, no HTTP.
//!
//! ```sh
//! cargo run --release -p tidepool-gateway --example gateway_bench -- \
//!     [--service echo|orders] [--requests N] [--connections C] [--rate R] [--nodes 1|2]
//! cargo run --release -p tidepool-gateway --example gateway_bench -- -h   # every option
//! ```
//!
//! Without `--bootstrap` it starts an embedded broker (in memory, one node, no topic
//! auto-creation); with it, it uses that cluster. In this process it starts N gateway nodes
//! (`Gateway::start` with `GatewayConfig::new`'s defaults, one deployment) and the service's
//! [`Responder`] as shipped (`ResponderConfig::new`'s defaults):
//!
//! - `echo` answers 200 with the request's body and nothing else: what is left is the gateway
//!   and Kafka round trip itself;
//! - `orders` is the shipped `OrdersService` on `Store::memory()`: every request a
//!   `POST /api/orders` that creates an order (a store transaction with its dedup key).
//!
//! Then C keep-alive HTTP/1.1 connections (a small client on tokio's `TcpStream`, below; with two
//! nodes, connections alternate between them) send the requests:
//!
//! - closed loop (no `--rate`): each connection sends its next request when the previous one is
//!   answered; latency is from the send;
//! - open loop (`--rate R`, requests/s): a pacer thread releases request i at start + i/R
//!   (`std::thread::sleep`, about 0.1 ms precise; tokio's timer ticks every 1 ms), a free
//!   connection takes the next released one, and latency runs from the request's scheduled
//!   time, not from its send: time spent waiting for a free connection because answers were
//!   slow counts (coordinated omission). The time from schedule to send is reported too.
//!
//! The floor: the same load shape (C requesters, the same schedule) through our client alone.
//! A requester produces the request to a topic (acks=all, idempotent, linger 0, as the gateway's
//! producer) and waits for its reply; an echo loop (its own consumer and producer Clients, as the
//! responder has, but assigned instead of in a group and committing nothing) produces each
//! request back to a reply topic; a reply consumer (its own Client, as the gateway's) hands each
//! reply to its waiting requester. Two produces and two fetches, as through the gateway, without
//! HTTP, correlation ids, parking, the responder's commit or the service.
//!
//! Latency is in hdrhistogram (ns). A warm-up (metadata, connections, group joins) runs first
//! and is not counted. The gateway's own counters (timeouts, 503s by reason, dropped replies)
//! and its latency histogram's buckets are printed from its metrics.
//!
//! Exits non-zero if any request failed (not the expected status, or an I/O error).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use tidepool_broker::{Broker, BrokerHandle, Config};
use tidepool_client::{
    Acks, Admin, BoxFuture, Client, ClientConfig, Consumer, ConsumerConfig, NewTopic, Producer,
    ProducerConfig, ProducerRecord, TopicPartition,
};
use tidepool_gateway::metrics::{LATENCY, RESPONSES_DROPPED, TIMEOUTS, UNAVAILABLE};
use tidepool_gateway::services::OrdersService;
use tidepool_gateway::{
    Gateway, GatewayConfig, GatewayMetrics, Responder, ResponderConfig, ServiceHandler,
    ServiceRequest, ServiceResponse,
};
use tidepool_io::{Clock, Env, SystemClock};
use tidepool_pipeline::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

const USAGE: &str = "\
gateway_bench: HTTP round trips through the gateway on loopback, beside the Kafka-only floor

options:
  --service S             echo (answers with the body; default) or orders (the shipped
                          OrdersService on Store::memory(), each request creates an order)
  --requests N            requests in the measured phase (default 20000)
  --connections C         concurrent keep-alive connections, and floor requesters (default 8)
  --rate R                open loop at R requests/s (default: closed loop, as fast as answered)
  --nodes K               gateway nodes of one deployment, connections alternate (default 1)
  --bootstrap HOST:PORT   use this cluster instead of an embedded in-memory broker
  --body-bytes B          echo request body size (default 128)
  --request-partitions P  partitions of the service's request topic and the floor's topics
                          (default 3, as `tidepool up`)
  --warmup N              requests sent before measuring, not counted (default 2000)
  --no-floor              skip the Kafka-only floor
  --floor-only            only the floor, no gateway
  -h, --help              this text";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServiceKind {
    Echo,
    Orders,
}

impl ServiceKind {
    fn name(self) -> &'static str {
        match self {
            ServiceKind::Echo => "echo",
            ServiceKind::Orders => "orders",
        }
    }

    fn expected_status(self) -> u16 {
        match self {
            ServiceKind::Echo => 200,
            ServiceKind::Orders => 201,
        }
    }
}

#[derive(Debug, Clone)]
struct Args {
    service: ServiceKind,
    requests: u64,
    connections: usize,
    rate: Option<f64>,
    nodes: usize,
    bootstrap: Option<String>,
    body_bytes: usize,
    request_partitions: i32,
    warmup: u64,
    floor: bool,
    gateway: bool,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut args = Args {
            service: ServiceKind::Echo,
            requests: 20_000,
            connections: 8,
            rate: None,
            nodes: 1,
            bootstrap: None,
            body_bytes: 128,
            request_partitions: 3,
            warmup: 2_000,
            floor: true,
            gateway: true,
        };
        let mut words = std::env::args().skip(1);
        while let Some(flag) = words.next() {
            match flag.as_str() {
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                "--no-floor" => {
                    args.floor = false;
                    continue;
                }
                "--floor-only" => {
                    args.gateway = false;
                    continue;
                }
                _ => {}
            }
            let value = words
                .next()
                .ok_or_else(|| format!("{flag} needs a value"))?;
            let bad = |error: &dyn std::fmt::Display| format!("{flag} {value}: {error}");
            match flag.as_str() {
                "--service" => {
                    args.service = match value.as_str() {
                        "echo" => ServiceKind::Echo,
                        "orders" => ServiceKind::Orders,
                        _ => return Err(bad(&"echo or orders")),
                    };
                }
                "--requests" => args.requests = value.parse().map_err(|e| bad(&e))?,
                "--connections" => args.connections = value.parse().map_err(|e| bad(&e))?,
                "--rate" => args.rate = Some(value.parse().map_err(|e| bad(&e))?),
                "--nodes" => args.nodes = value.parse().map_err(|e| bad(&e))?,
                "--bootstrap" => args.bootstrap = Some(value),
                "--body-bytes" => args.body_bytes = value.parse().map_err(|e| bad(&e))?,
                "--request-partitions" => {
                    args.request_partitions = value.parse().map_err(|e| bad(&e))?;
                }
                "--warmup" => args.warmup = value.parse().map_err(|e| bad(&e))?,
                _ => return Err(format!("unknown option {flag}\n\n{USAGE}")),
            }
        }
        if args.requests == 0 || args.connections == 0 || args.nodes == 0 {
            return Err("--requests, --connections and --nodes must be > 0".into());
        }
        if args.request_partitions < 1 {
            return Err("--request-partitions must be > 0".into());
        }
        if args.rate.is_some_and(|rate| rate.is_nan() || rate <= 0.0) {
            return Err("--rate must be > 0".into());
        }
        if !args.gateway && !args.floor {
            return Err("--floor-only and --no-floor leave nothing to measure".into());
        }
        Ok(args)
    }
}

/// Answers with the request's body: no parsing, no headers, so the round trip is what is left.
struct Echo;

impl ServiceHandler for Echo {
    fn handle<'a>(&'a self, request: &'a ServiceRequest) -> BoxFuture<'a, ServiceResponse> {
        Box::pin(std::future::ready(ServiceResponse {
            status: 200,
            headers: Vec::new(),
            body: request.body.clone(),
        }))
    }
}

/// Request `index`'s body.
fn write_body(args: &Args, index: u64, out: &mut Vec<u8>) {
    out.clear();
    match args.service {
        ServiceKind::Echo => {
            let _ = write!(out, r#"{{"seq":{index},"pad":""#);
            while out.len() + 2 < args.body_bytes {
                out.push(b'x');
            }
            out.extend_from_slice(b"\"}");
        }
        ServiceKind::Orders => {
            let _ = write!(
                out,
                r#"{{"customer":"c-{customer}","items":[{{"sku":"sku-{sku}","quantity":{quantity}}}],"seq":{index}}}"#,
                customer = index % 100,
                sku = index % 997,
                quantity = 1 + index % 3,
            );
        }
    }
}

/// One keep-alive HTTP/1.1 connection: a request goes out in one write, the answer is read by
/// its Content-Length.
struct Connection {
    address: SocketAddr,
    stream: Option<TcpStream>,
    request: Vec<u8>,
    input: Vec<u8>,
}

impl Connection {
    fn new(address: SocketAddr) -> Connection {
        Connection {
            address,
            stream: None,
            request: Vec::with_capacity(16 << 10),
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

    fn prepare(&mut self, path: &str, body: &[u8]) {
        self.request.clear();
        let _ = write!(
            self.request,
            "POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        self.request.extend_from_slice(body);
    }

    /// Sends the prepared request and reads its answer's status and body. On an error the
    /// connection is dropped and reopened by the next call.
    async fn exchange(&mut self) -> std::io::Result<(u16, Vec<u8>)> {
        let result = self.exchange_inner().await;
        if !matches!(result, Ok((_, _, true))) {
            self.stream = None;
        }
        result.map(|(status, body, _)| (status, body))
    }

    async fn exchange_inner(&mut self) -> std::io::Result<(u16, Vec<u8>, bool)> {
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
        Ok((status, body, keep_alive))
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

/// The Kafka-only round trip: requests produced by our client, echoed back by a loop on our
/// client, replies consumed and matched by key.
struct Floor {
    producer: Producer,
    request_topic: String,
    waiting: Mutex<HashMap<u64, oneshot::Sender<()>>>,
    next_id: AtomicU64,
    clients: Vec<Client>,
    stop: watch::Sender<bool>,
    /// The echo and reply loops, which hold the floor too.
    tasks: Mutex<Vec<tokio::task::JoinHandle<anyhow::Result<()>>>>,
}

impl Floor {
    async fn start(
        env: &Env,
        bootstrap: &str,
        run: i64,
        partitions: i32,
    ) -> anyhow::Result<Arc<Floor>> {
        let request_topic = format!("bench-floor-{run}.requests");
        let reply_topic = format!("bench-floor-{run}.replies");
        let config = ClientConfig::new(bootstrap).client_id("gateway-bench-floor");
        let requester = Client::connect(env.clone(), config.clone()).await?;
        let admin = Admin::new(requester.clone());
        for topic in [&request_topic, &reply_topic] {
            admin
                .create_topic(NewTopic::new(topic.as_str(), partitions, 1))
                .await?;
        }
        let all = |topic: &str| -> Vec<TopicPartition> {
            (0..partitions)
                .map(|partition| TopicPartition::new(topic, partition))
                .collect()
        };
        // As the gateway's producer.
        let producer = Producer::new(
            requester.clone(),
            ProducerConfig::default()
                .acks(Acks::All)
                .idempotence(true)
                .linger(Duration::ZERO),
        )
        .await?;
        // As the responder: a consumer and a producer on Clients of their own.
        let echo_in = Client::connect(env.clone(), config.clone()).await?;
        let echo_out = Client::connect(env.clone(), config.clone()).await?;
        let responder = ResponderConfig::new("floor");
        let echo_consumer = Consumer::new(
            echo_in.clone(),
            ConsumerConfig::default()
                .max_poll_records(responder.max_poll_records)
                .fetch_max_wait(responder.poll_wait),
        )
        .await?;
        echo_consumer.assign(all(&request_topic)).await?;
        echo_consumer.seek_to_end(&all(&request_topic)).await?;
        let echo_producer = Producer::new(
            echo_out.clone(),
            ProducerConfig::default().linger(Duration::ZERO),
        )
        .await?;
        // As the gateway's response consumer: a Client of its own.
        let replies_in = Client::connect(env.clone(), config).await?;
        let gateway = GatewayConfig::new("floor", "floor");
        let reply_consumer = Consumer::new(
            replies_in.clone(),
            ConsumerConfig::default()
                .max_poll_records(gateway.max_poll_records)
                .fetch_max_wait(gateway.poll_wait),
        )
        .await?;
        reply_consumer.assign(all(&reply_topic)).await?;
        reply_consumer.seek_to_end(&all(&reply_topic)).await?;

        let (stop, stopped) = watch::channel(false);
        let floor = Arc::new(Floor {
            producer,
            request_topic,
            waiting: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            clients: vec![requester, echo_in, echo_out, replies_in],
            stop,
            tasks: Mutex::new(Vec::new()),
        });
        let echo = tokio::spawn(echo_loop(
            echo_consumer,
            echo_producer,
            reply_topic,
            responder.poll_wait,
            stopped.clone(),
        ));
        let replies = tokio::spawn(reply_loop(
            reply_consumer,
            Arc::clone(&floor),
            gateway.poll_wait,
            stopped,
        ));
        floor
            .tasks
            .lock()
            .expect("not poisoned")
            .extend([echo, replies]);
        Ok(floor)
    }

    /// One request and its reply; errors as text.
    async fn round_trip(&self, body: &[u8]) -> Result<(), String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, reply) = oneshot::channel();
        self.waiting
            .lock()
            .expect("not poisoned")
            .insert(id, answer);
        let record = ProducerRecord::new(self.request_topic.clone(), Bytes::copy_from_slice(body))
            .key(id.to_be_bytes().to_vec());
        let delivery = match self.producer.send(record).await {
            Ok(delivery) => delivery,
            Err(error) => {
                self.waiting.lock().expect("not poisoned").remove(&id);
                return Err(format!("floor produce: {error}"));
            }
        };
        tokio::pin!(delivery);
        tokio::pin!(reply);
        let mut delivered = false;
        let result = loop {
            tokio::select! {
                biased;
                answer = &mut reply => break answer.map_err(|_| "floor: reply channel closed".to_owned()),
                sent = &mut delivery, if !delivered => {
                    delivered = true;
                    if let Err(error) = sent {
                        break Err(format!("floor delivery: {error}"));
                    }
                }
                () = tokio::time::sleep(Duration::from_secs(10)) => break Err("floor: no reply in 10 s".to_owned()),
            }
        };
        if result.is_err() {
            self.waiting.lock().expect("not poisoned").remove(&id);
        }
        result
    }

    async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let tasks: Vec<_> = self.tasks.lock().expect("not poisoned").drain(..).collect();
        for task in tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => eprintln!("floor task: {error}"),
                Err(error) => eprintln!("floor task: {error}"),
            }
        }
        let _ = self.producer.close().await;
        for client in &self.clients {
            client.close();
        }
    }
}

async fn echo_loop(
    consumer: Consumer,
    producer: Producer,
    reply_topic: String,
    poll_wait: Duration,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    while !*stop.borrow() {
        let records = tokio::select! {
            records = consumer.poll(poll_wait) => records?,
            _ = stop.changed() => break,
        };
        let mut deliveries = Vec::with_capacity(records.len());
        for record in records {
            let mut reply =
                ProducerRecord::new(reply_topic.clone(), record.value.unwrap_or_default());
            reply.key = record.key;
            deliveries.push(producer.send(reply).await?);
        }
        for delivery in deliveries {
            delivery.await?;
        }
    }
    consumer.close().await?;
    producer.close().await?;
    Ok(())
}

async fn reply_loop(
    consumer: Consumer,
    floor: Arc<Floor>,
    poll_wait: Duration,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    while !*stop.borrow() {
        let records = tokio::select! {
            records = consumer.poll(poll_wait) => records?,
            _ = stop.changed() => break,
        };
        let mut waiting = floor.waiting.lock().expect("not poisoned");
        for record in records {
            let Some(id) = record
                .key
                .as_deref()
                .and_then(|key| <[u8; 8]>::try_from(key).ok())
                .map(u64::from_be_bytes)
            else {
                continue;
            };
            if let Some(answer) = waiting.remove(&id) {
                let _ = answer.send(());
            }
        }
    }
    consumer.close().await?;
    Ok(())
}

/// Where one load connection sends its requests.
enum Target {
    Http {
        connection: Connection,
        path: String,
    },
    Floor(Arc<Floor>),
}

impl Target {
    /// Sends one request and waits for its answer: the HTTP status (200 for the floor).
    async fn exchange(&mut self, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
        match self {
            Target::Http { connection, path } => {
                connection.prepare(path, body);
                connection
                    .exchange()
                    .await
                    .map_err(|error| error.to_string())
            }
            Target::Floor(floor) => floor.round_trip(body).await.map(|()| (200, Vec::new())),
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is valid")
}

fn record(histogram: &mut Histogram<u64>, value: Duration) {
    let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX).max(1);
    histogram
        .record(nanos)
        .expect("an auto-resizing histogram takes any value");
}

struct Tally {
    /// From the scheduled time (open loop) or the send (closed loop) to the whole answer.
    latency: Histogram<u64>,
    /// From the send to the whole answer.
    service: Histogram<u64>,
    /// Open loop: from the scheduled time to the send.
    lateness: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    ok: u64,
    failed: u64,
    first_failure: Option<String>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency: histogram(),
            service: histogram(),
            lateness: histogram(),
            statuses: BTreeMap::new(),
            ok: 0,
            failed: 0,
            first_failure: None,
        }
    }

    fn fail(&mut self, what: String) {
        self.failed += 1;
        if self.first_failure.is_none() {
            self.first_failure = Some(what);
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latency.add(other.latency).expect("same precision");
        self.service.add(other.service).expect("same precision");
        self.lateness.add(other.lateness).expect("same precision");
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.ok += other.ok;
        self.failed += other.failed;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
    }
}

/// What the load tasks of one phase share.
struct Load {
    args: Args,
    clock: Arc<dyn Clock>,
    expected: u16,
    /// Index offset: warm-up requests get indexes after the measured ones.
    first: u64,
    count: u64,
    /// Closed loop: the next request to send.
    next: AtomicU64,
    /// Open loop: (index, scheduled time) of each released request.
    released: Option<tokio::sync::Mutex<mpsc::UnboundedReceiver<(u64, Duration)>>>,
}

/// Releases request i at `start + i / rate` on a thread of its own: tokio's timer would round
/// each schedule up to its 1 ms tick, which would count as latency.
fn pace(
    clock: Arc<dyn Clock>,
    start: Duration,
    rate: f64,
    count: u64,
    release: mpsc::UnboundedSender<(u64, Duration)>,
) -> std::thread::JoinHandle<()> {
    #[allow(
        clippy::disallowed_methods,
        reason = "a benchmark's pacer; nothing here runs in the simulator"
    )]
    std::thread::spawn(move || {
        for index in 0..count {
            let due = start + Duration::from_secs_f64(index as f64 / rate);
            let now = clock.now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if release.send((index, due)).is_err() {
                return;
            }
        }
    })
}

/// One connection's share of a phase.
async fn drive(load: Arc<Load>, mut target: Target) -> (Target, Tally) {
    let mut tally = Tally::new();
    let mut body = Vec::new();
    loop {
        let (index, due) = match &load.released {
            Some(released) => match released.lock().await.recv().await {
                Some(next) => (next.0, Some(next.1)),
                None => break,
            },
            None => {
                let index = load.next.fetch_add(1, Ordering::Relaxed);
                if index >= load.count {
                    break;
                }
                (index, None)
            }
        };
        write_body(&load.args, load.first + index, &mut body);
        let sent = load.clock.now();
        let result = target.exchange(&body).await;
        let answered = load.clock.now();
        match result {
            Ok((status, answer)) => {
                *tally.statuses.entry(status).or_default() += 1;
                if status == load.expected {
                    tally.ok += 1;
                    record(&mut tally.service, answered - sent);
                    record(&mut tally.latency, answered - due.unwrap_or(sent));
                    if let Some(due) = due {
                        record(&mut tally.lateness, sent.saturating_sub(due));
                    }
                } else {
                    tally.fail(format!(
                        "HTTP {status}: {}",
                        String::from_utf8_lossy(&answer)
                    ));
                }
            }
            Err(error) => tally.fail(error),
        }
    }
    (target, tally)
}

/// Runs `count` requests over `targets` (closed loop, or open loop at `rate`); returns the
/// targets for the next phase, the tally and the phase's duration.
async fn phase(
    args: &Args,
    clock: &Arc<dyn Clock>,
    expected: u16,
    targets: Vec<Target>,
    first: u64,
    count: u64,
    rate: Option<f64>,
) -> anyhow::Result<(Vec<Target>, Tally, Duration)> {
    let start = clock.now() + Duration::from_millis(2);
    let (released, pacer) = match rate {
        Some(rate) => {
            let (release, released) = mpsc::unbounded_channel();
            let pacer = pace(Arc::clone(clock), start, rate, count, release);
            (Some(tokio::sync::Mutex::new(released)), Some(pacer))
        }
        None => (None, None),
    };
    let load = Arc::new(Load {
        args: args.clone(),
        clock: Arc::clone(clock),
        expected,
        first,
        count,
        next: AtomicU64::new(0),
        released,
    });
    let tasks: Vec<_> = targets
        .into_iter()
        .map(|target| tokio::spawn(drive(Arc::clone(&load), target)))
        .collect();
    let mut tally = Tally::new();
    let mut targets = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (target, part) = task.await?;
        targets.push(target);
        tally.merge(part);
    }
    let elapsed = clock.now().saturating_sub(start);
    if let Some(pacer) = pacer {
        let _ = pacer.join();
    }
    Ok((targets, tally, elapsed))
}

/// A measured phase and its warm-up against one kind of target.
async fn measure(
    args: &Args,
    clock: &Arc<dyn Clock>,
    expected: u16,
    targets: Vec<Target>,
    before_measuring: impl AsyncFnOnce(),
) -> anyhow::Result<(Tally, Duration)> {
    let (targets, warmup, _) = phase(
        args,
        clock,
        expected,
        targets,
        args.requests,
        args.warmup,
        None,
    )
    .await?;
    if warmup.failed > 0 {
        anyhow::bail!(
            "{} of {} warm-up requests failed; first: {}",
            warmup.failed,
            args.warmup,
            warmup.first_failure.unwrap_or_default()
        );
    }
    clock.sleep(Duration::from_millis(300)).await;
    before_measuring().await;
    let (_, tally, elapsed) =
        phase(args, clock, expected, targets, 0, args.requests, args.rate).await?;
    Ok((tally, elapsed))
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

fn quantile(histogram: &Histogram<u64>, q: f64) -> Duration {
    Duration::from_nanos(histogram.value_at_quantile(q))
}

fn percentiles(histogram: &Histogram<u64>) -> String {
    if histogram.is_empty() {
        return "none".to_owned();
    }
    format!(
        "{} / {} / {} / {} / {}",
        show(quantile(histogram, 0.50)),
        show(quantile(histogram, 0.95)),
        show(quantile(histogram, 0.99)),
        show(quantile(histogram, 0.999)),
        show(Duration::from_nanos(histogram.max())),
    )
}

fn thousands(value: f64) -> String {
    let digits = (value.round() as u64).to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
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

/// User + system CPU of this process so far (from /proc; Linux's 100 ticks per second).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((user + system) * 10))
}

/// Every series of the named metrics, summed over the nodes: `series value` lines.
fn counters(metrics: &[GatewayMetrics], names: &[&str]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for metric in metrics {
        for line in metric.render().lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let name = series.split('{').next().unwrap_or(series);
            if names.contains(&name)
                && let Ok(value) = value.parse::<f64>()
            {
                *out.entry(series.to_owned()).or_default() += value;
            }
        }
    }
    out
}

/// The gateway's own latency buckets (arrival to answer), cumulative counts by `le`.
fn latency_buckets(metrics: &[GatewayMetrics]) -> BTreeMap<String, f64> {
    let bucket = format!("{LATENCY}_bucket");
    counters(metrics, &[bucket.as_str()])
        .into_iter()
        .filter_map(|(series, count)| {
            let le = series.split("le=\"").nth(1)?.split('"').next()?.to_owned();
            Some((le, count))
        })
        .fold(BTreeMap::new(), |mut by_le, (le, count)| {
            *by_le.entry(le).or_default() += count;
            by_le
        })
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

/// A gateway node serving on a loopback port.
struct Node {
    gateway: Gateway,
    address: SocketAddr,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

fn report_rows(out: &mut String, label: &str, args: &Args, tally: &Tally, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64();
    let statuses: Vec<String> = tally
        .statuses
        .iter()
        .map(|(status, count)| format!("{status}: {}", thousands(*count as f64)))
        .collect();
    let _ = writeln!(
        out,
        "| {label}: answers by status / failed | {} / {} |",
        if statuses.is_empty() {
            "none".to_owned()
        } else {
            statuses.join(", ")
        },
        tally.failed
    );
    let _ = writeln!(
        out,
        "| {label}: requests/s (expected status) | {} in {} |",
        thousands(tally.ok as f64 / seconds),
        show(elapsed)
    );
    let from = if args.rate.is_some() {
        "from the scheduled time"
    } else {
        "from the send"
    };
    let _ = writeln!(
        out,
        "| {label}: latency {from}, p50 / p95 / p99 / p99.9 / max | {} |",
        percentiles(&tally.latency)
    );
    if args.rate.is_some() {
        let _ = writeln!(
            out,
            "| {label}: latency from the send, p50 / p95 / p99 / p99.9 / max | {} |",
            percentiles(&tally.service)
        );
        let _ = writeln!(
            out,
            "| {label}: sent later than scheduled, p50 / p95 / p99 / p99.9 / max | {} |",
            percentiles(&tally.lateness)
        );
    }
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
    let env = Env::real();
    let run = clock.wall_ms();

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
    let expected = args.service.expected_status();
    let mut out = String::new();
    let _ = writeln!(out, "\ngateway_bench");
    let _ = writeln!(out, "  cluster: {}", cluster.describe());
    let _ = writeln!(
        out,
        "  load: {} requests, {} connections, {}; warm-up {} requests; load average at start {load_at_start}",
        thousands(args.requests as f64),
        args.connections,
        match args.rate {
            Some(rate) => format!("open loop at {} requests/s", thousands(rate)),
            None => "closed loop".to_owned(),
        },
        thousands(args.warmup as f64),
    );

    let mut failed = 0;
    let mut gateway_p99 = None;
    let mut floor_p99 = None;
    let mut gateway_rate = None;
    let mut floor_rate = None;
    let mut rows = String::new();

    if args.gateway {
        let service = args.service.name();
        let deployment = format!("bench-{run}");
        let admin_client =
            Client::connect(env.clone(), ClientConfig::new(bootstrap.clone())).await?;
        tidepool_gateway::topics::ensure_topic(
            &Admin::new(admin_client.clone()),
            &tidepool_gateway::topics::request_topic(service),
            args.request_partitions,
            1,
        )
        .await?;
        admin_client.close();
        let handler: Arc<dyn ServiceHandler> = match args.service {
            ServiceKind::Echo => Arc::new(Echo),
            ServiceKind::Orders => {
                Arc::new(OrdersService::new(Store::memory()?, Arc::clone(&env.clock)))
            }
        };
        let responder_metrics = GatewayMetrics::new();
        let responder = Responder::start(
            env.clone(),
            &bootstrap,
            ResponderConfig::new(service),
            handler,
            responder_metrics,
        )
        .await?;
        let (stop_responder, responder_stopped) = watch::channel(false);
        let responder = tokio::spawn(responder.run(responder_stopped));

        let mut nodes = Vec::with_capacity(args.nodes);
        for index in 0..args.nodes {
            let listener =
                tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
            let address = listener.local_addr()?;
            let config = GatewayConfig {
                advertised_address: Some(address.to_string()),
                ..GatewayConfig::new(deployment.clone(), format!("gw-{}", index + 1))
            };
            let gateway = Gateway::start(env.clone(), &bootstrap, config).await?;
            let server = tokio::spawn(gateway.serve(listener));
            nodes.push(Node {
                gateway,
                address,
                server,
            });
        }
        // Every node owns a partition only once the group has settled with all of them.
        let deadline = clock.now() + Duration::from_secs(60);
        loop {
            let owned: Vec<_> = nodes
                .iter()
                .map(|node| node.gateway.owned_partitions())
                .collect();
            let total: usize = owned.iter().map(|set| set.len()).sum();
            let disjoint = owned
                .iter()
                .enumerate()
                .all(|(i, one)| owned.iter().skip(i + 1).all(|other| one.is_disjoint(other)));
            let partitions = nodes[0].gateway.response_partitions() as usize;
            if owned.iter().all(|set| !set.is_empty()) && disjoint && total == partitions {
                break;
            }
            anyhow::ensure!(
                clock.now() < deadline,
                "the gateway nodes never split the response partitions: {owned:?}"
            );
            clock.sleep(Duration::from_millis(20)).await;
        }
        let config = nodes[0].gateway.config().clone();
        let _ = writeln!(
            out,
            "  gateway: {} node(s) of deployment {deployment} ({} response partitions; poll_wait {} ms), service {service} ({} request partitions, responder poll_wait {} ms){}",
            nodes.len(),
            nodes[0].gateway.response_partitions(),
            config.poll_wait.as_millis(),
            args.request_partitions,
            ResponderConfig::new(service).poll_wait.as_millis(),
            match args.service {
                ServiceKind::Echo =>
                    format!(", POST /api/echo/bench with {} bytes", args.body_bytes),
                ServiceKind::Orders => ", POST /api/orders: each creates an order".to_owned(),
            }
        );

        let path = match args.service {
            ServiceKind::Echo => "/api/echo/bench".to_owned(),
            ServiceKind::Orders => "/api/orders".to_owned(),
        };
        let mut targets = Vec::with_capacity(args.connections);
        for index in 0..args.connections {
            let mut connection = Connection::new(nodes[index % nodes.len()].address);
            connection.ensure_open().await?;
            targets.push(Target::Http {
                connection,
                path: path.clone(),
            });
        }
        let metrics: Vec<GatewayMetrics> = nodes
            .iter()
            .map(|node| node.gateway.metrics().clone())
            .collect();
        let buckets_before = Arc::new(Mutex::new(BTreeMap::new()));
        let cpu_before = Arc::new(Mutex::new(None));
        let (tally, elapsed) = measure(&args, &clock, expected, targets, {
            let metrics = metrics.clone();
            let buckets_before = Arc::clone(&buckets_before);
            let cpu_before = Arc::clone(&cpu_before);
            async move || {
                *buckets_before.lock().expect("not poisoned") = latency_buckets(&metrics);
                *cpu_before.lock().expect("not poisoned") = process_cpu();
            }
        })
        .await?;
        let cpu_after = process_cpu();
        let buckets_after = latency_buckets(&metrics);

        report_rows(&mut rows, "gateway", &args, &tally, elapsed);
        if let (Some(before), Some(after)) = (*cpu_before.lock().expect("not poisoned"), cpu_after)
        {
            let cpu = after.saturating_sub(before);
            let _ = writeln!(
                rows,
                "| gateway: process CPU (broker + gateway + responder + load) | {:.2} CPUs |",
                cpu.as_secs_f64() / elapsed.as_secs_f64()
            );
        }
        let before = buckets_before.lock().expect("not poisoned").clone();
        let delta = |le: &str| {
            buckets_after.get(le).copied().unwrap_or(0.0) - before.get(le).copied().unwrap_or(0.0)
        };
        let total = delta("+Inf");
        if total > 0.0 {
            let _ = writeln!(
                rows,
                "| gateway's own latency (arrival → answer): ≤ 0.5 ms / ≤ 1 ms / ≤ 2 ms / ≤ 5 ms | {:.1} % / {:.1} % / {:.1} % / {:.1} % |",
                delta("0.0005") * 100.0 / total,
                delta("0.001") * 100.0 / total,
                delta("0.002") * 100.0 / total,
                delta("0.005") * 100.0 / total,
            );
        }
        let own = counters(&metrics, &[TIMEOUTS, UNAVAILABLE, RESPONSES_DROPPED]);
        let _ = writeln!(
            rows,
            "| gateway's counters, warm-up included: timeouts (504), 503s by reason, replies dropped | {} |",
            if own.is_empty() {
                "none".to_owned()
            } else {
                own.iter()
                    .map(|(series, value)| format!("{series} {value}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        gateway_p99 = Some(quantile(&tally.latency, 0.99));
        gateway_rate = Some(tally.ok as f64 / elapsed.as_secs_f64());
        failed += tally.failed;
        if let Some(first) = &tally.first_failure {
            eprintln!("gateway: {} requests failed; first: {first}", tally.failed);
        }

        for node in nodes {
            node.gateway.shutdown().await;
            let _ = node.server.await;
        }
        let _ = stop_responder.send(true);
        responder.await??;
    }

    if args.floor {
        let floor = Floor::start(&env, &bootstrap, run, args.request_partitions).await?;
        let targets = (0..args.connections)
            .map(|_| Target::Floor(Arc::clone(&floor)))
            .collect();
        let (tally, elapsed) = measure(&args, &clock, 200, targets, async || {}).await?;
        report_rows(&mut rows, "floor", &args, &tally, elapsed);
        floor_p99 = Some(quantile(&tally.latency, 0.99));
        floor_rate = Some(tally.ok as f64 / elapsed.as_secs_f64());
        failed += tally.failed;
        if let Some(first) = &tally.first_failure {
            eprintln!("floor: {} requests failed; first: {first}", tally.failed);
        }
        floor.shutdown().await;
        let _ = writeln!(
            out,
            "  floor: our client alone, request produced (acks=all, idempotent, linger 0) to a {0}-partition topic, echoed by an assigned consumer + producer, reply consumed from a {0}-partition topic",
            args.request_partitions
        );
    }

    let _ = writeln!(out);
    let _ = writeln!(out, "| measure | value |");
    let _ = writeln!(out, "|---|---|");
    out.push_str(&rows);
    if let (Some(gateway), Some(floor)) = (gateway_p99, floor_p99) {
        let _ = writeln!(
            out,
            "| p99 gateway / floor | {:.2}x |",
            gateway.as_secs_f64() / floor.as_secs_f64().max(1e-9)
        );
    }
    if let (Some(gateway), Some(floor)) = (gateway_rate, floor_rate) {
        let _ = writeln!(
            out,
            "| requests/s gateway / floor | {:.2}x |",
            gateway / floor
        );
    }
    if let Some(p99) = gateway_p99 {
        let _ = writeln!(
            out,
            "| goal: gateway p99 under 2 ms | {} ({}) |",
            if p99 < Duration::from_millis(2) {
                "met"
            } else {
                "not met"
            },
            show(p99)
        );
    }
    let _ = writeln!(out, "| load average at the end | {} |", load_average());
    print!("{out}");
    let _ = std::io::stdout().flush();

    if let Cluster::Embedded(broker) = cluster {
        broker.shutdown().await;
    }
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}
