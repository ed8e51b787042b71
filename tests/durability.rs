//! Durability of `tidepool serve` as a real process on a real data directory: SIGKILL it at
//! random moments while acks=all produces are in flight (with `--flush-messages 1`; the
//! moments come from a printed seed, `TIDEPOOL_DURABILITY_SEED` replays one), start it again
//! on the same directory each time, and every acknowledged record is read back where it was
//! acknowledged, in order, with no gap and no duplicate; a clean SIGTERM stop and restart
//! round-trips everything; a last segment torn or garbled after a clean stop (or its indexes
//! garbled) is cut back to its last whole valid batch by the restarted process, which then
//! appends right after it. The broker's log never shows a panic.
//!
//! **What this proves, and what it does not.** SIGKILL ends the process, not the machine: the
//! page cache survives, so whatever the broker had written (even unsynced) is still there.
//! These tests prove that the broker writes a record before acknowledging it and recovers
//! what it wrote — including a batch torn by the kill — not that an fsync reached the disk.
//! Power loss is what `flush.messages=1`'s fsync before every acknowledgement covers; a later
//! simulator will crash the disk itself (dropping unsynced writes) to test that.
//!
//! The client is a small raw Kafka client written here (Produce v3, Fetch v4, record batch
//! v2 with CRC-32C): the root package has no Kafka codec among its dependencies, and a
//! hand-written one also checks the broker against an independent reading of the format.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::process::{Child, Command};

/// How long a test waits for any single step (a response, a start, an exit) before failing.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Record batches (Kafka's v2 format), encoded and decoded here.

mod batch {
    /// CRC-32C (Castagnoli), as Kafka's v2 batches carry it.
    fn crc32c(bytes: &[u8]) -> u32 {
        const fn table() -> [u32; 256] {
            let mut table = [0u32; 256];
            let mut index = 0;
            while index < 256 {
                let mut crc = index as u32;
                let mut bit = 0;
                while bit < 8 {
                    crc = if crc & 1 == 1 {
                        (crc >> 1) ^ 0x82f6_3b78
                    } else {
                        crc >> 1
                    };
                    bit += 1;
                }
                table[index] = crc;
                index += 1;
            }
            table
        }
        static TABLE: [u32; 256] = table();
        !bytes.iter().fold(!0u32, |crc, &byte| {
            TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8)
        })
    }

    fn put_varint(out: &mut Vec<u8>, value: i64) {
        let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
        while zigzag >= 0x80 {
            out.push((zigzag as u8) | 0x80);
            zigzag >>= 7;
        }
        out.push(zigzag as u8);
    }

    fn get_varint(bytes: &[u8], at: &mut usize) -> i64 {
        let mut zigzag = 0u64;
        let mut shift = 0;
        loop {
            let byte = bytes[*at];
            *at += 1;
            zigzag |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            assert!(shift < 64, "a varint of more than 10 bytes");
        }
        ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64)
    }

    fn get_bytes(bytes: &[u8], at: &mut usize) -> Vec<u8> {
        let length = get_varint(bytes, at);
        assert!(
            length >= 0,
            "null keys and values are not sent by these tests"
        );
        let value = bytes[*at..*at + length as usize].to_vec();
        *at += length as usize;
        value
    }

    /// One record as read back from the log.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Record {
        pub offset: i64,
        pub timestamp: i64,
        pub key: Vec<u8>,
        pub value: Vec<u8>,
    }

    /// An uncompressed batch of `(key, value)` records, CreateTime from `timestamp`, no
    /// producer id, as a plain producer sends it.
    pub fn encode(records: &[(Vec<u8>, Vec<u8>)], timestamp: i64) -> Vec<u8> {
        let mut body = Vec::new();
        for (delta, (key, value)) in records.iter().enumerate() {
            let mut record = vec![0u8]; // attributes
            put_varint(&mut record, delta as i64); // timestamp delta
            put_varint(&mut record, delta as i64); // offset delta
            put_varint(&mut record, key.len() as i64);
            record.extend_from_slice(key);
            put_varint(&mut record, value.len() as i64);
            record.extend_from_slice(value);
            put_varint(&mut record, 0); // headers
            put_varint(&mut body, record.len() as i64);
            body.extend_from_slice(&record);
        }
        let count = records.len() as i32;
        let mut batch = Vec::with_capacity(61 + body.len());
        batch.extend_from_slice(&0i64.to_be_bytes()); // base offset
        batch.extend_from_slice(&((49 + body.len()) as i32).to_be_bytes()); // batch length
        batch.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
        batch.push(2); // magic
        batch.extend_from_slice(&0u32.to_be_bytes()); // CRC, set below
        batch.extend_from_slice(&0i16.to_be_bytes()); // attributes
        batch.extend_from_slice(&(count - 1).to_be_bytes()); // last offset delta
        batch.extend_from_slice(&timestamp.to_be_bytes()); // base timestamp
        batch.extend_from_slice(&(timestamp + i64::from(count) - 1).to_be_bytes()); // max
        batch.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
        batch.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
        batch.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
        batch.extend_from_slice(&count.to_be_bytes());
        batch.extend_from_slice(&body);
        let crc = crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    /// Every record of the whole batches in a fetched record set (a partial batch at the end,
    /// which a fetch may return, is ignored), checking each batch's magic and CRC.
    pub fn decode(bytes: &[u8]) -> Vec<Record> {
        let mut records = Vec::new();
        let mut position = 0;
        while bytes.len() - position >= 12 {
            let batch_length =
                i32::from_be_bytes(bytes[position + 8..position + 12].try_into().unwrap());
            let total = 12 + batch_length as usize;
            if position + total > bytes.len() {
                break;
            }
            let batch = &bytes[position..position + total];
            let i64_at = |at: usize| i64::from_be_bytes(batch[at..at + 8].try_into().unwrap());
            let i32_at = |at: usize| i32::from_be_bytes(batch[at..at + 4].try_into().unwrap());
            assert_eq!(batch[16], 2, "magic of the batch at {}", i64_at(0));
            let crc = u32::from_be_bytes(batch[17..21].try_into().unwrap());
            assert_eq!(
                crc,
                crc32c(&batch[21..]),
                "CRC of the batch at {}",
                i64_at(0)
            );
            let attributes = i16::from_be_bytes([batch[21], batch[22]]);
            assert_eq!(
                attributes & 0x07,
                0,
                "these tests send uncompressed batches"
            );
            let (base_offset, base_timestamp) = (i64_at(0), i64_at(27));
            let mut at = 61;
            for _ in 0..i32_at(57) {
                let length = get_varint(batch, &mut at);
                let end = at + length as usize;
                at += 1; // attributes
                let timestamp = base_timestamp + get_varint(batch, &mut at);
                let offset = base_offset + get_varint(batch, &mut at);
                let key = get_bytes(batch, &mut at);
                let value = get_bytes(batch, &mut at);
                records.push(Record {
                    offset,
                    timestamp,
                    key,
                    value,
                });
                at = end;
            }
            position += total;
        }
        records
    }
}

// ---------------------------------------------------------------------------------------------
// Produce v3 and Fetch v4 over a raw connection.

const PRODUCE: i16 = 0;
const FETCH: i16 = 1;
const CREATE_TOPICS: i16 = 19;

fn put_string(out: &mut Vec<u8>, value: &str) {
    out.extend_from_slice(&(value.len() as i16).to_be_bytes());
    out.extend_from_slice(value.as_bytes());
}

/// A framed request: size, header v1 (key, version, correlation id, client id), body.
fn frame(api_key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(body.len() + 32);
    message.extend_from_slice(&api_key.to_be_bytes());
    message.extend_from_slice(&version.to_be_bytes());
    message.extend_from_slice(&correlation_id.to_be_bytes());
    put_string(&mut message, "tidepool-durability");
    message.extend_from_slice(body);
    let mut framed = (message.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&message);
    framed
}

/// An acks=all Produce v3 of one batch to one partition.
fn produce_request(correlation_id: i32, topic: &str, partition: i32, batch: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(-1i16).to_be_bytes()); // transactional id: null
    body.extend_from_slice(&(-1i16).to_be_bytes()); // acks: all
    body.extend_from_slice(&10_000i32.to_be_bytes()); // timeout
    body.extend_from_slice(&1i32.to_be_bytes());
    put_string(&mut body, topic);
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&partition.to_be_bytes());
    body.extend_from_slice(&(batch.len() as i32).to_be_bytes());
    body.extend_from_slice(batch);
    frame(PRODUCE, 3, correlation_id, &body)
}

/// A CreateTopics v2 of one topic with `configs`.
fn create_topics_request(
    correlation_id: i32,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&1i32.to_be_bytes());
    put_string(&mut body, topic);
    body.extend_from_slice(&partitions.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes()); // replication factor
    body.extend_from_slice(&0i32.to_be_bytes()); // no explicit assignments
    body.extend_from_slice(&(configs.len() as i32).to_be_bytes());
    for (name, value) in configs {
        put_string(&mut body, name);
        put_string(&mut body, value);
    }
    body.extend_from_slice(&10_000i32.to_be_bytes()); // timeout
    body.push(0); // not validate-only
    frame(CREATE_TOPICS, 2, correlation_id, &body)
}

fn fetch_request(correlation_id: i32, topic: &str, partition: i32, offset: i64) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(-1i32).to_be_bytes()); // replica id: a consumer
    body.extend_from_slice(&0i32.to_be_bytes()); // max wait
    body.extend_from_slice(&1i32.to_be_bytes()); // min bytes
    body.extend_from_slice(&(50 * 1024 * 1024i32).to_be_bytes()); // max bytes
    body.push(0); // read uncommitted
    body.extend_from_slice(&1i32.to_be_bytes());
    put_string(&mut body, topic);
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&partition.to_be_bytes());
    body.extend_from_slice(&offset.to_be_bytes());
    body.extend_from_slice(&(1024 * 1024i32).to_be_bytes()); // partition max bytes
    frame(FETCH, 4, correlation_id, &body)
}

/// Reads big-endian fields off a response body.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> &'a [u8] {
        let taken = &self.bytes[self.at..self.at + count];
        self.at += count;
        taken
    }
    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take(2).try_into().unwrap())
    }
    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take(4).try_into().unwrap())
    }
    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take(8).try_into().unwrap())
    }
    fn string(&mut self) -> String {
        let length = self.i16();
        String::from_utf8(self.take(length as usize).to_vec()).unwrap()
    }
}

/// Reads one response frame and checks its correlation id; `None` once the connection ends.
async fn read_response(reader: &mut OwnedReadHalf, correlation_id: i32) -> Option<Vec<u8>> {
    let size = reader.read_i32().await.ok()?;
    let mut frame = vec![0u8; size as usize];
    reader.read_exact(&mut frame).await.ok()?;
    let got = i32::from_be_bytes(frame[..4].try_into().unwrap());
    assert_eq!(got, correlation_id, "responses come back in order");
    Some(frame.split_off(4))
}

/// (error code, base offset) of a Produce v3 response for one partition.
fn parse_produce_response(body: &[u8]) -> (i16, i64) {
    let mut reader = Reader { bytes: body, at: 0 };
    assert_eq!(reader.i32(), 1, "one topic");
    reader.string();
    assert_eq!(reader.i32(), 1, "one partition");
    reader.i32();
    (reader.i16(), reader.i64())
}

/// A Fetch v4 response for one partition.
struct Fetched {
    error_code: i16,
    high_watermark: i64,
    records: Vec<batch::Record>,
}

fn parse_fetch_response(body: &[u8]) -> Fetched {
    let mut reader = Reader { bytes: body, at: 0 };
    reader.i32(); // throttle time
    assert_eq!(reader.i32(), 1, "one topic");
    reader.string();
    assert_eq!(reader.i32(), 1, "one partition");
    reader.i32();
    let error_code = reader.i16();
    let high_watermark = reader.i64();
    reader.i64(); // last stable offset
    let aborted = reader.i32();
    for _ in 0..aborted.max(0) {
        reader.take(16);
    }
    let length = reader.i32();
    let records = if length > 0 {
        batch::decode(reader.take(length as usize))
    } else {
        Vec::new()
    };
    Fetched {
        error_code,
        high_watermark,
        records,
    }
}

/// A connection used one request at a time.
struct Connection {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    correlation_id: i32,
}

impl Connection {
    async fn open(address: &str) -> Connection {
        let stream = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(address))
            .await
            .expect("connects in time")
            .unwrap_or_else(|error| panic!("connects to {address}: {error}"));
        stream.set_nodelay(true).unwrap();
        let (reader, writer) = stream.into_split();
        Connection {
            reader,
            writer,
            correlation_id: 0,
        }
    }

    async fn call(&mut self, request: impl FnOnce(i32) -> Vec<u8>) -> Vec<u8> {
        self.correlation_id += 1;
        let bytes = request(self.correlation_id);
        self.writer.write_all(&bytes).await.expect("writes");
        tokio::time::timeout(
            STEP_TIMEOUT,
            read_response(&mut self.reader, self.correlation_id),
        )
        .await
        .expect("a response in time")
        .expect("the broker answers")
    }

    /// Produces one batch; returns its base offset, failing the test on an error code.
    async fn produce(&mut self, topic: &str, partition: i32, batch: &[u8]) -> i64 {
        let body = self
            .call(|id| produce_request(id, topic, partition, batch))
            .await;
        let (error_code, base_offset) = parse_produce_response(&body);
        assert_eq!(error_code, 0, "producing to {topic}-{partition}");
        base_offset
    }

    async fn create_topic(&mut self, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
        let body = self
            .call(|id| create_topics_request(id, topic, partitions, configs))
            .await;
        let mut reader = Reader {
            bytes: body.as_slice(),
            at: 0,
        };
        reader.i32(); // throttle time
        assert_eq!(reader.i32(), 1, "one topic");
        assert_eq!(reader.string(), topic);
        assert_eq!(reader.i16(), 0, "creating {topic}");
    }

    /// Reads a whole partition from offset 0 to its high watermark.
    async fn read_partition(&mut self, topic: &str, partition: i32) -> Vec<batch::Record> {
        let mut records: Vec<batch::Record> = Vec::new();
        loop {
            let next = records.last().map_or(0, |record| record.offset + 1);
            let body = self
                .call(|id| fetch_request(id, topic, partition, next))
                .await;
            let fetched = parse_fetch_response(&body);
            assert_eq!(
                fetched.error_code, 0,
                "fetching {topic}-{partition} at {next}"
            );
            records.extend(fetched.records.into_iter().filter(|r| r.offset >= next));
            let reached = records.last().map_or(0, |record| record.offset + 1);
            if reached >= fetched.high_watermark {
                assert_eq!(reached, fetched.high_watermark, "{topic}-{partition}");
                return records;
            }
            assert!(
                reached > next,
                "a fetch below the high watermark returned nothing"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The broker process.

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "tidepool-{label}-{}-{}",
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

/// A running `tidepool serve`; killed if the test ends without stopping it.
struct Server {
    child: Child,
    bootstrap: String,
    log: PathBuf,
}

impl Server {
    /// Starts `tidepool serve` on `data_dir` with `extra` arguments, logging to `log`, and
    /// waits for its ready line.
    async fn start(data_dir: &Path, log: &Path, extra: &[&str]) -> Server {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tidepool"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .expect("starts tidepool serve");
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
                std::fs::read_to_string(log).unwrap_or_default()
            );
        };
        Server {
            child,
            bootstrap: bootstrap.to_owned(),
            log: log.to_path_buf(),
        }
    }

    /// SIGKILL: the process ends at once, mid-write if it was writing.
    async fn kill(mut self) {
        self.child.start_kill().expect("sends SIGKILL");
        let status = tokio::time::timeout(STEP_TIMEOUT, self.child.wait())
            .await
            .expect("exits in time")
            .unwrap();
        assert!(!status.success(), "a killed broker does not exit cleanly");
        self.print_log();
    }

    /// SIGTERM: a clean stop, which must exit successfully.
    async fn terminate(mut self) {
        let pid = self.child.id().expect("still running").to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("runs kill");
        assert!(sent.success());
        let status = tokio::time::timeout(STEP_TIMEOUT, self.child.wait())
            .await
            .expect("exits in time after SIGTERM")
            .unwrap();
        self.print_log();
        assert!(
            status.success(),
            "a SIGTERM stop exits successfully: {status}"
        );
    }

    /// The broker's log goes to the test's captured output, shown when the test fails.
    fn print_log(&self) {
        eprintln!(
            "--- {} ---\n{}",
            self.log.display(),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Producers that keep requests in flight.

const TOPIC: &str = "durable";
const PARTITIONS: i32 = 3;
/// Requests each producer keeps unanswered at once.
const WINDOW: usize = 4;

/// The records of producer `producer`'s batch number `number`: 1 to 3 records, keys
/// `p{producer}-b{number}-r{index}`.
fn batch_records(producer: usize, number: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..1 + number % 3)
        .map(|index| {
            let key = format!("p{producer}-b{number}-r{index}");
            let value = format!("{key}: {}", "durable payload ".repeat(4));
            (key.into_bytes(), value.into_bytes())
        })
        .collect()
}

/// Parses a key back to (producer, batch number, record index).
fn parse_key(key: &[u8]) -> (usize, usize, usize) {
    let key = std::str::from_utf8(key).expect("keys are UTF-8");
    let parts: Vec<usize> = key
        .split('-')
        .map(|part| {
            part[1..]
                .parse()
                .unwrap_or_else(|_| panic!("an unknown key {key}"))
        })
        .collect();
    assert_eq!(parts.len(), 3, "an unknown key {key}");
    (parts[0], parts[1], parts[2])
}

/// An acknowledged batch: who sent it, and where the broker said it is.
#[derive(Debug, Clone, Copy)]
struct Acknowledged {
    producer: usize,
    number: usize,
    partition: i32,
    base_offset: i64,
}

#[derive(Default)]
struct Progress {
    sent: AtomicU64,
    answered: AtomicU64,
    acknowledged: Mutex<Vec<Acknowledged>>,
}

/// Sends batch after batch to one partition over one connection, up to `WINDOW` unanswered,
/// until the connection ends (the broker was killed). Every batch answered without an error
/// is recorded as acknowledged.
async fn produce_until_killed(producer: usize, address: String, progress: Arc<Progress>) {
    let partition = (producer as i32) % PARTITIONS;
    let connection = Connection::open(&address).await;
    let (mut reader, mut writer) = (connection.reader, connection.writer);
    let (in_flight, mut answers) = tokio::sync::mpsc::channel::<(i32, usize)>(WINDOW);
    let send = {
        let progress = Arc::clone(&progress);
        async move {
            for number in 0.. {
                let correlation_id = number as i32 + 1;
                if in_flight.send((correlation_id, number)).await.is_err() {
                    return; // the reader saw the connection end
                }
                let batch = batch::encode(&batch_records(producer, number), number as i64);
                let request = produce_request(correlation_id, TOPIC, partition, &batch);
                if writer.write_all(&request).await.is_err() {
                    return;
                }
                progress.sent.fetch_add(1, Ordering::SeqCst);
            }
        }
    };
    let receive = async move {
        while let Some((correlation_id, number)) = answers.recv().await {
            let Ok(Some(body)) =
                tokio::time::timeout(STEP_TIMEOUT, read_response(&mut reader, correlation_id))
                    .await
            else {
                return;
            };
            progress.answered.fetch_add(1, Ordering::SeqCst);
            let (error_code, base_offset) = parse_produce_response(&body);
            assert_eq!(error_code, 0, "producer {producer} batch {number}");
            progress.acknowledged.lock().unwrap().push(Acknowledged {
                producer,
                number,
                partition,
                base_offset,
            });
        }
    };
    tokio::join!(send, receive);
}

/// SplitMix64: the kill moments come from one seed, printed, so a failing run replays.
struct Moments(u64);

impl Moments {
    /// `TIDEPOOL_DURABILITY_SEED` if set (to replay a run), else the clock's nanoseconds.
    #[allow(
        clippy::disallowed_methods,
        reason = "a fresh seed per run widens what the test covers; it is printed for replay"
    )]
    fn seed() -> u64 {
        match std::env::var("TIDEPOOL_DURABILITY_SEED") {
            Ok(seed) => seed
                .parse()
                .unwrap_or_else(|_| panic!("TIDEPOOL_DURABILITY_SEED={seed} is not a u64")),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
        }
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// Fails the test if the broker's log shows a panic.
fn assert_no_panic(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        !text.contains("panicked"),
        "tidepool serve panicked; its log:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_with_flush_messages_1_loses_no_acknowledged_record() {
    const PRODUCERS: usize = 6;
    /// Kills in one run: each restart recovers what the kills before it left, and is killed
    /// again. Bounded so the test stays within seconds.
    const KILLS: usize = 8;
    /// The kill comes this many milliseconds (drawn from the seed) after the round's first
    /// acknowledgement, at the next moment a request is in flight.
    const KILL_AFTER_MS: (u64, u64) = (0, 700);
    let seed = Moments::seed();
    eprintln!("kill moments from seed {seed}; replay with TIDEPOOL_DURABILITY_SEED={seed}");
    let mut moments = Moments(seed);
    let root = TempDir::new("sigkill");
    let data_dir = root.0.join("data");
    let log = root.0.join("broker.log");
    let args = ["--flush-messages", "1"];
    let mut server = Server::start(&data_dir, &log, &args).await;
    // Small segments, so a kill may also land in a roll and recovery reads several.
    let mut setup = Connection::open(&server.bootstrap).await;
    let configs = [("segment.bytes", "4096"), ("index.interval.bytes", "512")];
    setup.create_topic(TOPIC, PARTITIONS, &configs).await;

    let mut acknowledged = Vec::new();
    let mut logs = BTreeMap::new();
    for round in 0..KILLS {
        let progress = Arc::new(Progress::default());
        // Each round's producers are new ones, so every key stays unique across rounds.
        let producers: Vec<_> = (round * PRODUCERS..(round + 1) * PRODUCERS)
            .map(|producer| {
                tokio::spawn(produce_until_killed(
                    producer,
                    server.bootstrap.clone(),
                    Arc::clone(&progress),
                ))
            })
            .collect();
        let delay_ms = moments.between(KILL_AFTER_MS.0, KILL_AFTER_MS.1);
        let kill_moment = async {
            while progress.acknowledged.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            loop {
                let answered = progress.answered.load(Ordering::SeqCst);
                let sent = progress.sent.load(Ordering::SeqCst);
                if sent > answered {
                    return sent - answered;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        let in_flight = tokio::time::timeout(STEP_TIMEOUT, kill_moment)
            .await
            .expect("the producers make progress");
        server.kill().await;
        for producer in producers {
            tokio::time::timeout(STEP_TIMEOUT, producer)
                .await
                .expect("producers stop once the broker is gone")
                .expect("a producer saw only successes");
        }
        let round_acknowledged = progress.acknowledged.lock().unwrap().clone();
        eprintln!(
            "round {round}: killed {delay_ms} ms after the first acknowledgement with \
             {in_flight} requests in flight; {} sent, {} acknowledged",
            progress.sent.load(Ordering::SeqCst),
            round_acknowledged.len()
        );
        acknowledged.extend(round_acknowledged);

        server = Server::start(&data_dir, &log, &args).await;
        let mut client = Connection::open(&server.bootstrap).await;
        for partition in 0..PARTITIONS {
            logs.insert(partition, client.read_partition(TOPIC, partition).await);
        }
        check_recovered(&logs, &acknowledged);
    }
    assert_no_panic(&log);
    for partition in 0..PARTITIONS {
        let segments = std::fs::read_dir(data_dir.join(format!("{TOPIC}-{partition}")))
            .unwrap()
            .filter(|entry| {
                let name = entry.as_ref().unwrap().file_name();
                name.to_string_lossy().ends_with(".log")
            })
            .count();
        assert!(
            segments > 1,
            "partition {partition} rolled segments: {segments}"
        );
    }

    // Producing continues at each partition's end.
    let mut client = Connection::open(&server.bootstrap).await;
    for (partition, records) in &logs {
        let end = records.last().map_or(0, |record| record.offset + 1);
        let batch = batch::encode(&[(b"after".to_vec(), b"the restart".to_vec())], 1);
        assert_eq!(client.produce(TOPIC, *partition, &batch).await, end);
    }
    server.terminate().await;
    assert_no_panic(&log);
}

/// Where a record was found: partition, offset, and its index in its batch.
type Place = (i32, i64, usize);

/// Checks the logs read back after the kill against what was acknowledged before it.
fn check_recovered(logs: &BTreeMap<i32, Vec<batch::Record>>, acknowledged: &[Acknowledged]) {
    // Where each record of each producer's batches is: (producer, number) → offsets.
    let mut found: BTreeMap<(usize, usize), Vec<Place>> = BTreeMap::new();
    let mut keys = BTreeSet::new();
    for (&partition, records) in logs {
        for (expected_offset, record) in (0..).zip(records) {
            assert_eq!(
                record.offset, expected_offset,
                "partition {partition}: offsets run from 0 without a gap"
            );
            assert!(
                keys.insert(record.key.clone()),
                "partition {partition}: {} is stored twice",
                String::from_utf8_lossy(&record.key)
            );
            let (producer, number, index) = parse_key(&record.key);
            assert_eq!(
                record.value,
                batch_records(producer, number)[index].1,
                "partition {partition} offset {}: the value sent",
                record.offset
            );
            assert_eq!(record.timestamp, (number + index) as i64);
            found
                .entry((producer, number))
                .or_default()
                .push((partition, record.offset, index));
        }
    }
    // Every batch found is whole, on its producer's partition, at consecutive offsets.
    for (&(producer, number), places) in &found {
        let count = batch_records(producer, number).len();
        let (partition, base_offset, _) = places[0];
        let expected: Vec<Place> = (0..count)
            .map(|index| (partition, base_offset + index as i64, index))
            .collect();
        assert_eq!(
            places, &expected,
            "producer {producer} batch {number} is whole"
        );
        assert_eq!(partition, producer as i32 % PARTITIONS);
    }
    // A producer's batches were appended in order over one connection, and recovery only
    // cuts a log's tail: what survives of each producer is a prefix of what it sent, in order.
    let producers: BTreeSet<usize> = found.keys().map(|&(producer, _)| producer).collect();
    for producer in producers {
        let numbers: Vec<usize> = found
            .keys()
            .filter(|&&(of, _)| of == producer)
            .map(|&(_, number)| number)
            .collect();
        assert_eq!(
            numbers,
            (0..numbers.len()).collect::<Vec<_>>(),
            "producer {producer}: the batches kept are the first ones sent"
        );
        let offsets: Vec<i64> = numbers
            .iter()
            .map(|&number| found[&(producer, number)][0].1)
            .collect();
        assert!(
            offsets.windows(2).all(|pair| pair[0] < pair[1]),
            "producer {producer}: batches are in the order sent"
        );
    }
    eprintln!(
        "{} batches kept, {} of them acknowledged",
        found.len(),
        acknowledged.len()
    );
    // And every acknowledged batch is there, where it was acknowledged.
    for ack in acknowledged {
        let places = found
            .get(&(ack.producer, ack.number))
            .unwrap_or_else(|| panic!("acknowledged {ack:?} was lost"));
        assert_eq!(
            (places[0].0, places[0].1),
            (ack.partition, ack.base_offset),
            "acknowledged {ack:?} is where it was acknowledged"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_stop_and_restart_round_trips_every_record() {
    let root = TempDir::new("sigterm");
    let data_dir = root.0.join("data");
    let log = root.0.join("broker.log");
    // No --flush-messages: a clean stop fsyncs whatever is unflushed.
    let args = ["--default-partitions", "2"];
    let server = Server::start(&data_dir, &log, &args).await;
    let mut client = Connection::open(&server.bootstrap).await;
    let mut expected: BTreeMap<i32, Vec<batch::Record>> = BTreeMap::new();
    for number in 0..60 {
        let partition = (number % 2) as i32;
        let records = batch_records(number % 5, number);
        let timestamp = 1_000 * number as i64;
        let base_offset = client
            .produce("round-trip", partition, &batch::encode(&records, timestamp))
            .await;
        let log = expected.entry(partition).or_default();
        assert_eq!(base_offset, log.len() as i64);
        for (delta, (key, value)) in records.into_iter().enumerate() {
            log.push(batch::Record {
                offset: base_offset + delta as i64,
                timestamp: timestamp + delta as i64,
                key,
                value,
            });
        }
    }
    server.terminate().await;

    for round in 0..2 {
        let server = Server::start(&data_dir, &log, &args).await;
        let mut client = Connection::open(&server.bootstrap).await;
        for (partition, records) in &mut expected {
            assert_eq!(
                &client.read_partition("round-trip", *partition).await,
                records,
                "round {round}: partition {partition} after a clean restart"
            );
            let key = format!("after restart {round}").into_bytes();
            let batch = batch::encode(&[(key.clone(), b"v".to_vec())], 5);
            let base_offset = client.produce("round-trip", *partition, &batch).await;
            assert_eq!(
                base_offset,
                records.len() as i64,
                "producing continues at the end"
            );
            records.push(batch::Record {
                offset: base_offset,
                timestamp: 5,
                key,
                value: b"v".to_vec(),
            });
        }
        server.terminate().await;
    }
}

// ---------------------------------------------------------------------------------------------
// A damaged tail, recovered by the real process.

/// (position, length) of each whole batch in a segment file, read as recovery must: a batch
/// is 12 bytes of offset and length, then the length's bytes.
fn batches_in(segment: &Path) -> Vec<(u64, u64)> {
    let bytes = std::fs::read(segment).unwrap();
    let mut batches = Vec::new();
    let mut position = 0usize;
    while bytes.len() - position >= 12 {
        let length = i32::from_be_bytes(bytes[position + 8..position + 12].try_into().unwrap());
        let total = 12 + length as usize;
        if position + total > bytes.len() {
            break;
        }
        batches.push((position as u64, total as u64));
        position += total;
    }
    batches
}

/// The partition's segment files, oldest first (their names are zero-padded base offsets).
fn segment_files(partition_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(partition_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .collect();
    files.sort();
    files
}

/// What is done to the last segment between a clean stop and the restart.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// The file ends halfway through its last batch, as a write cut by a crash leaves it.
    CutLastBatchInHalf,
    /// The file ends inside the last batch's 61-byte header.
    CutInsideLastHeader,
    /// The last 24 bytes of the last batch overwritten, so its CRC no longer matches.
    GarbleLastBatchTail,
    /// Every segment's offset and time indexes overwritten with nonsense (every batch is
    /// whole).
    GarbleIndexes,
}

impl Damage {
    fn loses_last_batch(self) -> bool {
        !matches!(self, Damage::GarbleIndexes)
    }

    /// Damages the last of `segments`, whose last whole batch is `(position, length)` (or,
    /// for indexes, every segment's).
    fn apply(self, segments: &[PathBuf], (position, length): (u64, u64)) {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(segments.last().unwrap())
            .unwrap();
        match self {
            Damage::CutLastBatchInHalf => file.set_len(position + length / 2).unwrap(),
            Damage::CutInsideLastHeader => file.set_len(position + 30).unwrap(),
            Damage::GarbleLastBatchTail => {
                use std::os::unix::fs::FileExt;
                file.write_all_at(&[0xa5; 24], position + length - 24)
                    .unwrap();
            }
            Damage::GarbleIndexes => {
                for segment in segments {
                    for extension in ["index", "timeindex"] {
                        let index = segment.with_extension(extension);
                        assert!(index.exists(), "{} exists", index.display());
                        std::fs::write(&index, [0xee; 120]).unwrap();
                    }
                }
            }
        }
        file.sync_all().unwrap();
    }
}

/// Writes batches across several small segments, stops the broker cleanly, damages the last
/// segment, and starts `tidepool serve` on the directory again: it must start, cut the log
/// back to the last whole valid batch (the file too), serve every record before it (from any
/// offset, through whatever index it rebuilt), append new batches right after it, and never
/// panic.
async fn serve_recovers_from(damage: Damage) {
    const TORN: &str = "torn";
    let root = TempDir::new("torn-tail");
    let data_dir = root.0.join("data");
    let log = root.0.join("broker.log");
    let server = Server::start(&data_dir, &log, &[]).await;
    let mut client = Connection::open(&server.bootstrap).await;
    let configs = [("segment.bytes", "2048"), ("index.interval.bytes", "128")];
    client.create_topic(TORN, 1, &configs).await;
    let mut expected: Vec<batch::Record> = Vec::new();
    let mut last_batch_records = 0;
    for number in 0..40 {
        let records = batch_records(0, number);
        let base_offset = client
            .produce(TORN, 0, &batch::encode(&records, number as i64))
            .await;
        assert_eq!(base_offset, expected.len() as i64);
        last_batch_records = records.len();
        for (delta, (key, value)) in records.into_iter().enumerate() {
            expected.push(batch::Record {
                offset: base_offset + delta as i64,
                timestamp: (number + delta) as i64,
                key,
                value,
            });
        }
    }
    server.terminate().await;

    let partition_dir = data_dir.join(format!("{TORN}-0"));
    let segments = segment_files(&partition_dir);
    assert!(segments.len() > 2, "{damage:?}: several segments");
    let last_segment = segments.last().unwrap().clone();
    let last = *batches_in(&last_segment)
        .last()
        .expect("a batch in the last segment");
    let whole_length = std::fs::metadata(&last_segment).unwrap().len();
    assert_eq!(
        last.0 + last.1,
        whole_length,
        "the last batch ends the file"
    );
    damage.apply(&segments, last);
    let kept_length = if damage.loses_last_batch() {
        expected.truncate(expected.len() - last_batch_records);
        last.0
    } else {
        whole_length
    };

    let server = Server::start(&data_dir, &log, &[]).await;
    assert_eq!(
        std::fs::metadata(&last_segment).unwrap().len(),
        kept_length,
        "{damage:?}: the damaged tail is cut from the file"
    );
    let mut client = Connection::open(&server.bootstrap).await;
    assert_eq!(
        client.read_partition(TORN, 0).await,
        expected,
        "{damage:?}: every record before the damage reads back intact, and the log ends there"
    );
    for from in (0..expected.len()).step_by(7) {
        let body = client
            .call(|id| fetch_request(id, TORN, 0, from as i64))
            .await;
        let fetched = parse_fetch_response(&body);
        assert_eq!(fetched.error_code, 0);
        assert_eq!(fetched.high_watermark, expected.len() as i64, "{damage:?}");
        let read: Vec<_> = fetched
            .records
            .into_iter()
            .filter(|record| record.offset >= from as i64)
            .collect();
        assert!(
            !read.is_empty() && expected[from..].starts_with(&read),
            "{damage:?}: a fetch at {from} reads on from there"
        );
    }
    let after = [(b"after".to_vec(), b"the repair".to_vec())];
    let base_offset = client.produce(TORN, 0, &batch::encode(&after, 7_000)).await;
    assert_eq!(
        base_offset,
        expected.len() as i64,
        "{damage:?}: new batches append right after the last whole batch"
    );
    expected.push(batch::Record {
        offset: base_offset,
        timestamp: 7_000,
        key: after[0].0.clone(),
        value: after[0].1.clone(),
    });
    assert_eq!(client.read_partition(TORN, 0).await, expected, "{damage:?}");
    server.terminate().await;

    // The repaired directory starts as it is.
    let server = Server::start(&data_dir, &log, &[]).await;
    let mut client = Connection::open(&server.bootstrap).await;
    assert_eq!(client.read_partition(TORN, 0).await, expected, "{damage:?}");
    server.terminate().await;
    assert_no_panic(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_cuts_a_last_batch_torn_in_half() {
    serve_recovers_from(Damage::CutLastBatchInHalf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_cuts_a_last_batch_torn_inside_its_header() {
    serve_recovers_from(Damage::CutInsideLastHeader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_cuts_a_last_batch_with_garbled_bytes() {
    serve_recovers_from(Damage::GarbleLastBatchTail).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_rebuilds_garbled_indexes() {
    serve_recovers_from(Damage::GarbleIndexes).await;
}
