//! Limits under load, against `tidepool serve` as a real process (so its memory can be read
//! from `/proc/PID/status`): floods of connections, of pipelined requests nobody reads, of
//! fetches asking to wait forever, of groups and members, of topics and partitions. Each
//! bound in `Config` answers with a Kafka error code, a refused connection or back-pressure;
//! memory stays bounded; and while each flood is on, a produce and fetch round trip on a
//! fresh connection (or, for the connection flood, on an established one) is still served.
//!
//! Every loop is bounded and on loopback. Figures (RSS before, peak and after; refusals) are
//! printed as `LIMITS ...` lines for the README's reliability table; run with `--nocapture`
//! to see them. The real-client check (librdkafka through confluent-kafka and kafka-python,
//! tests/compat/limits_clients.py) runs only with `TIDEPOOL_COMPAT=1`, as the other
//! compatibility suites do.
#![allow(
    clippy::disallowed_methods,
    reason = "these tests time a real broker process from outside it"
)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, FetchRequest, FindCoordinatorRequest, GroupId,
    JoinGroupRequest, MetadataRequest, MetadataResponse, OffsetCommitRequest, ProduceRequest,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tidepool_protocol::records::{BatchBuilder, Record};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// How long any single step (a start, an answer, an exit) may take before the test fails.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// How quickly a fresh client must get its produce and fetch answered while a flood is on.
const SERVED_WITHIN: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------------------------
// The broker process and its memory.

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "tidepool-limits-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Resident memory of a process, in KiB: now (VmRSS) and its peak so far (VmHWM).
#[derive(Debug, Clone, Copy)]
struct Memory {
    rss_kib: u64,
    peak_kib: u64,
}

impl Memory {
    fn of(pid: u32) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|error| panic!("reading /proc/{pid}/status: {error}"));
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        };
        Memory {
            rss_kib: field("VmRSS:"),
            peak_kib: field("VmHWM:"),
        }
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A running `tidepool serve` (in memory); killed if the test ends without stopping it.
struct Server {
    child: Child,
    pid: u32,
    bootstrap: String,
    log: PathBuf,
    _dir: TempDir,
}

impl Server {
    async fn start(label: &str, extra: &[&str]) -> Server {
        let dir = TempDir::new(label);
        let log = dir.0.join("broker.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tidepool"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .expect("starts tidepool serve");
        let pid = child.id().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(STEP_TIMEOUT, lines.next_line())
            .await
            .expect("tidepool serve is ready in time")
            .unwrap();
        let Some(bootstrap) = ready
            .as_deref()
            .and_then(|line| line.strip_prefix("tidepool ready bootstrap="))
        else {
            panic!(
                "tidepool serve printed {ready:?} instead of its ready line; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        Server {
            child,
            pid,
            bootstrap: bootstrap.to_owned(),
            log,
            _dir: dir,
        }
    }

    fn memory(&self) -> Memory {
        Memory::of(self.pid)
    }

    /// SIGTERM, which must end the process cleanly, with no panic in its log.
    async fn stop(mut self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await
            .expect("runs kill");
        assert!(sent.success());
        let status = tokio::time::timeout(STEP_TIMEOUT, self.child.wait())
            .await
            .expect("exits in time after SIGTERM")
            .unwrap();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(
            status.success(),
            "a SIGTERM stop exits cleanly: {status}\n{log}"
        );
        assert!(!log.contains("panicked"), "tidepool serve panicked:\n{log}");
    }
}

/// Memory before, at the peak and after one flood, printed for the reliability table.
fn report(limit: &str, before: Memory, after: Memory, details: &str) {
    eprintln!(
        "LIMITS {limit}: RSS before {:.1} MiB, peak {:.1} MiB, after {:.1} MiB; {details}",
        mib(before.rss_kib),
        mib(after.peak_kib),
        mib(after.rss_kib)
    );
}

/// Fails unless the process's peak resident memory grew by less than `limit_mib` since
/// `before`.
fn assert_peak_growth_below(limit: &str, before: Memory, after: Memory, limit_mib: u64) {
    let growth = after.peak_kib.saturating_sub(before.rss_kib);
    assert!(
        growth < limit_mib * 1024,
        "{limit}: peak RSS grew by {:.1} MiB, more than {limit_mib} MiB",
        mib(growth)
    );
}

// ---------------------------------------------------------------------------------------------
// A raw Kafka connection.

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn topic_name(name: &str) -> TopicName {
    TopicName(text(name))
}

struct Raw {
    stream: TcpStream,
    correlation_id: i32,
    client_id: StrBytes,
}

impl Raw {
    async fn connect(address: &str) -> Raw {
        let stream = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(address))
            .await
            .expect("connects in time")
            .unwrap_or_else(|error| panic!("connects to {address}: {error}"));
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            correlation_id: 0,
            client_id: text("tidepool-limits"),
        }
    }

    /// A framed request; returns (correlation id, bytes).
    fn encode<R: Request>(&mut self, version: i16, request: &R) -> (i32, Bytes) {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .unwrap();
        request.encode(&mut body, version).unwrap();
        let mut framed = BytesMut::with_capacity(body.len() + 4);
        framed.put_i32(body.len() as i32);
        framed.extend_from_slice(&body);
        (self.correlation_id, framed.freeze())
    }

    async fn read_frame(&mut self) -> Option<Bytes> {
        read_frame(&mut self.stream).await
    }

    fn decode<R: Request>(version: i16, correlation_id: i32, mut frame: Bytes) -> R::Response {
        let header_version = <R::Response as HeaderVersion>::header_version(version);
        let header = ResponseHeader::decode(&mut frame, header_version).unwrap();
        assert_eq!(
            header.correlation_id, correlation_id,
            "answers come back in order"
        );
        let response = R::Response::decode(&mut frame, version).unwrap();
        assert_eq!(frame.remaining(), 0, "the whole answer was decoded");
        response
    }

    async fn call<R: Request>(&mut self, version: i16, request: R) -> R::Response {
        let (correlation_id, bytes) = self.encode(version, &request);
        self.stream.write_all(&bytes).await.expect("writes");
        let frame = tokio::time::timeout(STEP_TIMEOUT, self.read_frame())
            .await
            .expect("an answer in time")
            .expect("the broker answers");
        Raw::decode::<R>(version, correlation_id, frame)
    }

    /// Whether the broker closes this connection within `within` (reads see its end).
    async fn closed_within(&mut self, within: Duration) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(within, self.stream.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }
}

/// One response frame, without its size; `None` once the broker closed the connection.
async fn read_frame(stream: &mut (impl AsyncRead + Unpin)) -> Option<Bytes> {
    let size = stream.read_i32().await.ok()?;
    let mut frame = vec![0u8; size as usize];
    stream.read_exact(&mut frame).await.ok()?;
    Some(Bytes::from(frame))
}

fn batch(key: &str, value: &[u8]) -> Bytes {
    let mut builder = BatchBuilder::new();
    builder.push(Record {
        offset: 0,
        timestamp: 1_000,
        key: Some(Bytes::from(key.to_owned())),
        value: Some(Bytes::copy_from_slice(value)),
        headers: Vec::new(),
    });
    builder.build().unwrap()
}

fn produce_request(topic: &str, partition: i32, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ]),
        ])
}

fn fetch_request(topic: &str, offset: i64, partition_bytes: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(50 * 1024 * 1024)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(partition_bytes),
                ]),
        ])
}

/// Produces one record and returns its offset, failing the test on an error code.
async fn produce(client: &mut Raw, topic: &str, records: Bytes) -> i64 {
    let response = client.call(9, produce_request(topic, 0, records)).await;
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, 0, "producing to {topic}");
    partition.base_offset
}

/// The records of every batch in a fetched record set.
fn records_of(records: &Option<Bytes>) -> Vec<Record> {
    let bytes = records.clone().unwrap_or_default();
    tidepool_protocol::batch::split(&bytes)
        .unwrap()
        .into_iter()
        .flat_map(|range| {
            tidepool_protocol::records::decode(&bytes[range], &Default::default()).unwrap()
        })
        .collect()
}

async fn create_topics(client: &mut Raw, topics: &[(&str, i32)]) -> Vec<(String, i16)> {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(
            topics
                .iter()
                .map(|(name, partitions)| {
                    CreatableTopic::default()
                        .with_name(topic_name(name))
                        .with_num_partitions(*partitions)
                        .with_replication_factor(1)
                })
                .collect(),
        );
    let response = client.call(7, request).await;
    response
        .topics
        .iter()
        .map(|topic| (topic.name.0.to_string(), topic.error_code))
        .collect()
}

/// The round trip that shows a client is still served: on `client`, a produce of one record
/// to `topic` and a fetch that reads it back, answered within [`SERVED_WITHIN`].
async fn round_trip_on(client: &mut Raw, topic: &str, label: &str) -> Duration {
    let started = Instant::now();
    let value = format!("served while {label}");
    let exchange = async {
        let offset = produce(client, topic, batch("probe", value.as_bytes())).await;
        let response = client.call(12, fetch_request(topic, offset, 1 << 20)).await;
        let partition = &response.responses[0].partitions[0];
        assert_eq!(partition.error_code, 0);
        let records = records_of(&partition.records);
        let read = records.iter().find(|record| record.offset == offset);
        assert_eq!(
            read.and_then(|record| record.value.clone()),
            Some(Bytes::from(value.clone())),
            "the probe reads back"
        );
    };
    tokio::time::timeout(SERVED_WITHIN, exchange)
        .await
        .unwrap_or_else(|_| panic!("a client was not served within {SERVED_WITHIN:?} {label}"));
    started.elapsed()
}

/// [`round_trip_on`] a fresh connection.
async fn round_trip(bootstrap: &str, topic: &str, label: &str) -> Duration {
    let mut client = tokio::time::timeout(SERVED_WITHIN, Raw::connect(bootstrap))
        .await
        .expect("a fresh connection in time");
    round_trip_on(&mut client, topic, label).await
}

// ---------------------------------------------------------------------------------------------
// Connections.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_is_refused_at_connections_max_and_established_clients_are_served() {
    const CONNECTIONS_MAX: usize = 64;
    const FLOOD: usize = 1_500;
    let server = Server::start(
        "connections",
        &["--connections-max", &CONNECTIONS_MAX.to_string()],
    )
    .await;
    // Established before the flood, so it holds one of the slots.
    let mut steady = Raw::connect(&server.bootstrap).await;
    round_trip_on(&mut steady, "steady", "before the flood").await;
    let before = server.memory();

    let started = Instant::now();
    let mut judged = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        let mut connection = Raw::connect(&server.bootstrap).await;
        // The broker closes each connection beyond its bound at once; the others stay open.
        judged.push(tokio::spawn(async move {
            // Generous, so a broker slow to accept under load is not mistaken for one that
            // holds the connection.
            let closed = connection.closed_within(Duration::from_secs(4)).await;
            (connection, closed)
        }));
    }
    let mut flood = Vec::new();
    let mut refused = 0;
    for verdict in judged {
        match verdict.await.unwrap() {
            (_, true) => refused += 1,
            (connection, false) => flood.push(connection),
        }
    }
    let held = flood.len();
    eprintln!(
        "{FLOOD} connections opened: {refused} closed by the broker, {held} held, judged in {:?}",
        started.elapsed()
    );
    assert_eq!(
        held,
        CONNECTIONS_MAX - 1,
        "every slot but the steady client's is taken by the flood, and no more"
    );
    let steady_latency = round_trip_on(&mut steady, "steady", "the flood holds every slot").await;
    let mut fresh = Raw::connect(&server.bootstrap).await;
    let refused_at = Instant::now();
    assert!(
        fresh.closed_within(Duration::from_secs(1)).await,
        "with every slot taken, a new connection is closed at once"
    );
    let refusal = refused_at.elapsed();
    let during = server.memory();

    drop(flood);
    // The slots come back as the broker sees the flood's connections end.
    let freed = async {
        loop {
            let mut client = Raw::connect(&server.bootstrap).await;
            if !client.closed_within(Duration::from_millis(200)).await {
                return round_trip_on(&mut client, "steady", "after the flood").await;
            }
        }
    };
    let after_latency = tokio::time::timeout(SERVED_WITHIN, freed)
        .await
        .expect("a fresh client is served soon after the flood ends");
    let after = server.memory();
    report(
        "connections_max (--connections-max 64)",
        before,
        after,
        &format!(
            "{FLOOD} opened, {refused} closed by the broker at once, {held} held; a new \
             connection refused in {refusal:?} while full; established client served in \
             {steady_latency:?}, a fresh one in {after_latency:?} after; RSS while full \
             {:.1} MiB",
            mib(during.rss_kib)
        ),
    );
    assert_peak_growth_below("connections_max", before, after, 16);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Pipelined requests nobody reads.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_held_back_not_buffered() {
    /// Fetches written without reading an answer; each answer is `ANSWER_BYTES` of records,
    /// so answering all of them into memory would take about 190 MiB, and even one read
    /// chunk's worth (64 KiB of requests, about 650 answers) about 40 MiB. The bound is
    /// `in_flight_requests_max` answers or 1 MiB, whichever comes first.
    const REQUESTS: usize = 3_000;
    const ANSWER_BYTES: i32 = 64 * 1024;
    let server = Server::start("pipelined", &[]).await;
    let mut setup = Raw::connect(&server.bootstrap).await;
    for number in 0..8 {
        produce(
            &mut setup,
            "big",
            batch(&format!("big-{number}"), &[b'x'; 60 * 1024]),
        )
        .await;
    }
    round_trip(&server.bootstrap, "probe", "setting up").await;
    let before = server.memory();

    let mut flood = Raw::connect(&server.bootstrap).await;
    // The longest client id a header holds: the requests alone are then about 90 MiB, far
    // beyond what the sockets buffer, so a broker that stops reading stops the writer too.
    flood.client_id = text(&"c".repeat(i16::MAX as usize));
    let mut requests = BytesMut::new();
    let mut correlation_ids = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let (correlation_id, bytes) = flood.encode(12, &fetch_request("big", 0, ANSWER_BYTES));
        correlation_ids.push(correlation_id);
        requests.extend_from_slice(&bytes);
    }
    // The broker stops reading long before all of it is written: write from a task.
    let (mut reader, mut writer) = flood.stream.into_split();
    let request_bytes = requests.len();
    let writing = tokio::spawn(async move {
        writer.write_all(&requests).await.expect("writes");
        writer
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let written_in_2s = writing.is_finished();
    let served_in = round_trip(&server.bootstrap, "probe", "a client never reads").await;
    let during = server.memory();
    assert_peak_growth_below("in_flight_requests_max", before, during, 24);

    assert!(
        !written_in_2s,
        "the broker stopped reading a client that does not read its answers"
    );

    // Nothing was dropped: once the client reads, the rest of its requests are read too and
    // every answer comes, in order.
    let mut answered = 0;
    for correlation_id in correlation_ids {
        let frame = tokio::time::timeout(STEP_TIMEOUT, read_frame(&mut reader))
            .await
            .expect("every answer comes once read")
            .expect("the connection stays open");
        let got = i32::from_be_bytes(frame[..4].try_into().unwrap());
        assert_eq!(got, correlation_id, "answers in order");
        answered += 1;
    }
    drop(writing.await.unwrap());
    let after = server.memory();
    report(
        "in_flight_requests_max (default 256)",
        before,
        after,
        &format!(
            "{REQUESTS} fetches ({} MiB) pipelined unread, each answered with {} KiB (about {} \
             MiB in all): the writer stalled (not all written in 2 s), a fresh client served \
             in {served_in:?}; all {answered} answers read back in order after",
            request_bytes >> 20,
            ANSWER_BYTES / 1024,
            REQUESTS as i64 * i64::from(ANSWER_BYTES) / (1 << 20)
        ),
    );
    assert_peak_growth_below("in_flight_requests_max", before, after, 24);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Fetches asking to wait forever.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_asking_to_wait_forever_are_capped_and_beyond_parked_fetches_max_answer_at_once() {
    const PARKED_MAX: usize = 16;
    const WAIT_CAP: Duration = Duration::from_millis(2_000);
    const FETCHERS: usize = 64;
    let server = Server::start(
        "fetch-waits",
        &[
            "--parked-fetches-max",
            &PARKED_MAX.to_string(),
            "--fetch-wait-ms-max",
            &WAIT_CAP.as_millis().to_string(),
        ],
    )
    .await;
    let mut setup = Raw::connect(&server.bootstrap).await;
    assert!(
        create_topics(&mut setup, &[("quiet", 1)])
            .await
            .iter()
            .all(|(_, code)| *code == 0)
    );
    round_trip(&server.bootstrap, "probe", "setting up").await;
    let before = server.memory();

    let started = Instant::now();
    let fetchers: Vec<_> = (0..FETCHERS)
        .map(|_| {
            let bootstrap = server.bootstrap.clone();
            tokio::spawn(async move {
                let mut client = Raw::connect(&bootstrap).await;
                let request = fetch_request("quiet", 0, 1 << 20)
                    .with_max_wait_ms(i32::MAX)
                    .with_min_bytes(i32::MAX);
                let sent = Instant::now();
                let response = client.call(12, request).await;
                let partition = &response.responses[0].partitions[0];
                assert_eq!((response.error_code, partition.error_code), (0, 0));
                assert!(records_of(&partition.records).is_empty());
                sent.elapsed()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let served_in = round_trip(&server.bootstrap, "probe", "fetches wait forever").await;
    let mut waits = Vec::new();
    for fetcher in fetchers {
        waits.push(
            fetcher
                .await
                .expect("a fetcher saw a well-formed empty answer"),
        );
    }
    let early = waits.iter().filter(|wait| **wait < WAIT_CAP / 2).count();
    let capped = waits
        .iter()
        .filter(|wait| **wait >= WAIT_CAP - Duration::from_millis(50))
        .count();
    let longest = waits.iter().max().copied().unwrap();
    let after = server.memory();
    report(
        "parked_fetches_max / fetch_wait_ms_max (--parked-fetches-max 16 --fetch-wait-ms-max 2000)",
        before,
        after,
        &format!(
            "{FETCHERS} fetches with max_wait_ms and min_bytes = i32::MAX: {capped} parked and \
             answered empty at the cap (longest {longest:?}), {early} answered empty at once; \
             a fresh client served in {served_in:?}; all done in {:?}",
            started.elapsed()
        ),
    );
    assert_eq!(capped, PARKED_MAX, "as many park as the bound allows");
    assert_eq!(early, FETCHERS - PARKED_MAX, "the rest answer at once");
    assert!(
        longest < WAIT_CAP + Duration::from_secs(2),
        "no fetch waits past fetch_wait_ms_max (plus scheduling): {longest:?}"
    );
    assert_peak_growth_below("parked_fetches_max", before, after, 16);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Groups and members.

/// How long a pending member holds its place: long enough for the whole flood to be judged
/// against the same groups, short enough to wait out at the end.
const SESSION_TIMEOUT_MS: i32 = 6_000;

fn join_request(group: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_session_timeout_ms(SESSION_TIMEOUT_MS)
        .with_rebalance_timeout_ms(SESSION_TIMEOUT_MS)
        .with_member_id(StrBytes::default())
        .with_protocol_type(text("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(text("range"))
                .with_metadata(Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0])),
        ])
}

/// The error code of a new member's JoinGroup v5, which does not wait: a member the group
/// takes gets MEMBER_ID_REQUIRED (KIP-394) and holds its place until its session times out.
async fn join(client: &mut Raw, group: &str) -> i16 {
    client.call(5, join_request(group)).await.error_code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_beyond_groups_max_and_members_beyond_group_members_max_are_refused() {
    const GROUPS_MAX: usize = 50;
    const MEMBERS_MAX: usize = 20;
    const GROUP_FLOOD: usize = 1_000;
    let member_id_required = ResponseError::MemberIdRequired.code();
    let server = Server::start(
        "groups",
        &[
            "--groups-max",
            &GROUPS_MAX.to_string(),
            "--group-members-max",
            &MEMBERS_MAX.to_string(),
        ],
    )
    .await;
    let mut client = Raw::connect(&server.bootstrap).await;
    // Creates __consumer_offsets; with one node, this node coordinates every group.
    let found = client
        .call(3, FindCoordinatorRequest::default().with_key(text("crowd")))
        .await;
    assert_eq!(found.error_code, 0);
    round_trip(&server.bootstrap, "probe", "setting up").await;
    let before = server.memory();

    let members: Vec<i16> = {
        let mut codes = Vec::new();
        for _ in 0..MEMBERS_MAX + 10 {
            codes.push(join(&mut client, "crowd").await);
        }
        codes
    };
    assert_eq!(
        members,
        [
            vec![member_id_required; MEMBERS_MAX],
            vec![ResponseError::GroupMaxSizeReached.code(); 10]
        ]
        .concat(),
        "a group takes group_members_max members, then answers GROUP_MAX_SIZE_REACHED"
    );

    let flood_started = Instant::now();
    let mut admitted = 1; // "crowd"
    let mut refused = 0;
    for number in 0..GROUP_FLOOD {
        let code = join(&mut client, &format!("group-{number}")).await;
        if code == member_id_required {
            admitted += 1;
        } else {
            assert_eq!(
                code,
                ResponseError::CoordinatorNotAvailable.code(),
                "a group beyond groups_max"
            );
            refused += 1;
        }
        if number == GROUP_FLOOD / 2 {
            round_trip(&server.bootstrap, "probe", "groups are refused").await;
        }
    }
    let flood_took = flood_started.elapsed();
    assert!(
        flood_took < Duration::from_millis(SESSION_TIMEOUT_MS as u64),
        "the flood ran within one session timeout ({flood_took:?}), so no group expired in it"
    );
    assert_eq!(admitted, GROUPS_MAX, "exactly groups_max groups exist");
    // A commit for a new (simple, memberless) group is a new group too.
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(text("simple")))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::default())
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(topic_name("probe"))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(0),
                ]),
        ]);
    let committed = client.call(2, commit).await;
    assert_eq!(
        committed.topics[0].partitions[0].error_code,
        ResponseError::CoordinatorNotAvailable.code(),
        "an offset commit that would create a group beyond groups_max"
    );
    let during = server.memory();

    // The refusal is retriable: once the pending members' sessions end, their groups are
    // forgotten and new groups are taken again.
    let room = async {
        loop {
            if join(&mut client, "latecomer").await == member_id_required {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(15), room)
        .await
        .expect("room for groups comes back as idle ones are forgotten");
    let after = server.memory();
    report(
        "groups_max / group_members_max (--groups-max 50 --group-members-max 20)",
        before,
        after,
        &format!(
            "{} joins of one group: {MEMBERS_MAX} taken, 10 GROUP_MAX_SIZE_REACHED; {GROUP_FLOOD} \
             new groups: {} taken, {refused} COORDINATOR_NOT_AVAILABLE (in {flood_took:?}); RSS \
             during {:.1} MiB; room back once idle groups expired",
            MEMBERS_MAX + 10,
            admitted - 1,
            mib(during.rss_kib)
        ),
    );
    assert_peak_growth_below("groups_max", before, after, 16);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Topics and partitions.

async fn metadata(client: &mut Raw) -> MetadataResponse {
    client
        .call(12, MetadataRequest::default().with_topics(None))
        .await
}

/// Name → partition count of every topic, each partition checked to have a leader.
async fn topic_layout(client: &mut Raw) -> std::collections::BTreeMap<String, usize> {
    metadata(client)
        .await
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.as_ref().unwrap().0.to_string();
            assert_eq!(topic.error_code, 0, "{name}");
            for partition in &topic.partitions {
                assert!(partition.leader_id.0 >= 0, "{name} has a leader everywhere");
            }
            (name, topic.partitions.len())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_and_partitions_beyond_their_bounds_are_refused_whole() {
    const TOPICS_MAX: usize = 20;
    const PARTITIONS_MAX: usize = 100;
    const CREATE_FLOOD: usize = 2_000;
    let server = Server::start(
        "topics",
        &[
            "--topics-max",
            &TOPICS_MAX.to_string(),
            "--partitions-max",
            &PARTITIONS_MAX.to_string(),
            "--no-auto-create-topics",
        ],
    )
    .await;
    let mut client = Raw::connect(&server.bootstrap).await;
    assert_eq!(
        create_topics(&mut client, &[("probe", 1)]).await,
        [("probe".to_owned(), 0)]
    );
    round_trip(&server.bootstrap, "probe", "setting up").await;
    let before = server.memory();

    // One topic wider than the partition budget: refused, nothing of it created.
    assert_eq!(
        create_topics(&mut client, &[("wide", 200)]).await,
        [("wide".to_owned(), ResponseError::InvalidPartitions.code())]
    );
    // Thirty topics in one request: each is judged alone; those past topics_max are refused.
    let names: Vec<String> = (0..30).map(|number| format!("t-{number:02}")).collect();
    let wanted: Vec<(&str, i32)> = names.iter().map(|name| (name.as_str(), 2)).collect();
    let answers = create_topics(&mut client, &wanted).await;
    let created: Vec<&str> = answers
        .iter()
        .filter(|(_, code)| *code == 0)
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        created.len(),
        TOPICS_MAX - 1,
        "topics_max counts the probe topic"
    );
    assert!(
        answers[TOPICS_MAX - 1..]
            .iter()
            .all(|(_, code)| *code == ResponseError::PolicyViolation.code()),
        "topics past topics_max get POLICY_VIOLATION: {answers:?}"
    );
    // Growing a topic past the partition budget: refused, the topic left as it was.
    let grow = CreatePartitionsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![
            CreatePartitionsTopic::default()
                .with_name(topic_name("t-00"))
                .with_count(PARTITIONS_MAX as i32)
                .with_assignments(None),
        ]);
    let grown = client.call(3, grow).await;
    assert_eq!(
        grown.results[0].error_code,
        ResponseError::InvalidPartitions.code(),
        "partitions past partitions_max"
    );

    let mut refused = 0;
    for number in 0..CREATE_FLOOD {
        let name = format!("flood-{number}");
        let answer = create_topics(&mut client, &[(name.as_str(), 1)]).await;
        assert_eq!(answer[0].1, ResponseError::PolicyViolation.code());
        refused += 1;
        if number == CREATE_FLOOD / 2 {
            round_trip(&server.bootstrap, "probe", "topic creations are refused").await;
        }
    }

    let layout = topic_layout(&mut client).await;
    let mut expected: std::collections::BTreeMap<String, usize> =
        created.iter().map(|name| ((*name).to_owned(), 2)).collect();
    expected.insert("probe".to_owned(), 1);
    assert_eq!(
        layout, expected,
        "only whole topics exist, none half-created"
    );
    let described = client
        .call(
            12,
            MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name("wide"))),
            ])),
        )
        .await;
    assert_eq!(
        described.topics[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let after = server.memory();
    report(
        "topics_max / partitions_max (--topics-max 20 --partitions-max 100)",
        before,
        after,
        &format!(
            "a 200-partition topic: INVALID_PARTITIONS; 30 topics in one request: {} created, {} \
             POLICY_VIOLATION; growing past the budget: INVALID_PARTITIONS; {refused} more \
             creations refused; {} topics, {} partitions exist, none half-created",
            created.len(),
            30 - created.len(),
            layout.len(),
            layout.values().sum::<usize>()
        ),
    );
    assert_peak_growth_below("topics_max", before, after, 16);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Real clients while floods run.

fn compat_enabled(test: &str) -> bool {
    if std::env::var_os("TIDEPOOL_COMPAT").is_some_and(|value| value == "1") {
        return true;
    }
    eprintln!("NOT RUN: {test} needs TIDEPOOL_COMPAT=1 and the clients scripts/test installs");
    false
}

fn python() -> String {
    std::env::var("TIDEPOOL_PYTHON").unwrap_or_else(|_| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".venv/bin/python")
            .display()
            .to_string()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_and_kafka_python_produce_and_consume_while_floods_run() {
    if !compat_enabled("confluent_kafka_and_kafka_python_produce_and_consume_while_floods_run") {
        return;
    }
    let server = Server::start(
        "clients",
        &["--parked-fetches-max", "8", "--fetch-wait-ms-max", "2000"],
    )
    .await;
    let mut setup = Raw::connect(&server.bootstrap).await;
    produce(&mut setup, "big", batch("big", &[b'x'; 60 * 1024])).await;
    // A client that pipelines fetches and never reads, and more fetches asking to wait
    // forever than may park, both held for the whole run.
    let mut never_reads = Raw::connect(&server.bootstrap).await;
    let mut requests = BytesMut::new();
    for _ in 0..2_000 {
        let (_, bytes) = never_reads.encode(12, &fetch_request("big", 0, 64 * 1024));
        requests.extend_from_slice(&bytes);
    }
    let (_never_reads_reader, mut never_reads_writer) = never_reads.stream.into_split();
    let pipelined = tokio::spawn(async move {
        let _ = never_reads_writer.write_all(&requests).await;
        never_reads_writer
    });
    let flood_answers = std::sync::Arc::new(AtomicU64::new(0));
    let waiting: Vec<_> = (0..32)
        .map(|_| {
            let bootstrap = server.bootstrap.clone();
            let flood_answers = std::sync::Arc::clone(&flood_answers);
            tokio::spawn(async move {
                let mut client = Raw::connect(&bootstrap).await;
                // Bounded; the test aborts it long before.
                for _ in 0..1_000_000 {
                    // At the log end: nothing to read, so it parks if it may.
                    let request = fetch_request("big", 1, 1 << 20)
                        .with_max_wait_ms(i32::MAX)
                        .with_min_bytes(i32::MAX);
                    client.call(12, request).await;
                    flood_answers.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let before = server.memory();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat/limits_clients.py");
    let run = Command::new(python())
        .arg(&script)
        .args(["--bootstrap", &server.bootstrap])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the clients finish in time")
        .expect("runs python");
    for fetcher in &waiting {
        fetcher.abort();
    }
    pipelined.abort();
    let flood_answers = flood_answers.load(Ordering::Relaxed);
    let after = server.memory();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} failed ({}):\n{stdout}\n{stderr}",
        script.display(),
        output.status
    );
    eprintln!("{stdout}");
    report(
        "real clients under floods",
        before,
        after,
        "confluent-kafka and kafka-python produced and consumed while a connection pipelined \
         2000 unread fetches and 32 connections asked again and again to wait forever (8 may \
         park)",
    );
    eprintln!("the waiting fetchers were answered {flood_answers} times meanwhile");
    assert!(
        flood_answers > 32,
        "the fetch flood ran through the clients' run (those beyond the parked bound are \
         answered at once and ask again)"
    );
    assert_peak_growth_below("real clients under floods", before, after, 32);
    server.stop().await;
}
