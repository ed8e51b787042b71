//! Log cleaner throughput benchmark (run by `scripts/bench`; a benchmark, never a timed test).
//!
//! For each storage (in memory, and a data directory on disk), key count and run: starts an
//! embedded broker, creates a compacted topic of one partition (`segment.bytes` 16 MiB), fills it
//! with about `--mb` MB of record batches — `--batch-records` records per batch, each a key drawn
//! uniformly from `--keys` keys and a `--value-bytes` value, uncompressed — appended through the
//! partition's produce path (the same validation as a Produce request, without the network),
//! rolls it so every segment is cleanable, and times one `Control::clean_now` pass: the whole
//! pass, from building the key map to the last cleaned segment swapped in (on disk: written,
//! fsynced and renamed). The figure is MB of log cleaned per second (`bytes_before` of the
//! pass's report over its wall time, MB = 10^6 bytes) and the reduction (`1 - bytes_after /
//! bytes_before`). Medians over the runs; each run fills a fresh broker.
//!
//! ```text
//! cargo run --release --example cleaner -- [--mb 200] [--keys 10000,1000000] [--runs 3]
//!     [--storage memory,disk] [--dir DIR] [--segment-mib 16] [--value-bytes 100] [--batch-records 500]
//! ```
//!
//! The data directory of the disk runs is a fresh directory under `--dir` (default:
//! `target/tidepool-cleaner-bench`, on the project's filesystem), removed after each run. The
//! freshly written segments are still in the page cache when the cleaner reads them, so the disk
//! figure measures the file path and the fsyncs of the cleaned output, not cold reads.
//!
//! One machine-readable line per run for `scripts/bench`:
//! `cleaner storage=memory keys=10000 run=1 records=... bytes_before=... bytes_after=...
//! segments_before=... segments_after=... records_removed=... keys_kept=... fill_ms=...
//! clean_ms=... mb_per_s=...`

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use tidepool::broker::cluster::TopicRequest;
use tidepool::{Broker, BrokerHandle};

const TOPIC: &str = "cleaner-bench";

#[derive(Parser, Debug)]
#[command(about = "Log cleaner throughput: MB of log cleaned per second")]
struct Args {
    /// Log to fill before cleaning, in MB (10^6 bytes of record batches).
    #[arg(long, default_value_t = 200)]
    mb: u64,
    /// Key counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,1000000")]
    keys: Vec<u64>,
    /// Storage variants, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "memory,disk")]
    storage: Vec<Storage>,
    /// Runs per storage and key count; each fills a fresh broker.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Where the disk runs' data directories go (default: target/tidepool-cleaner-bench).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The topic's segment.bytes, in MiB.
    #[arg(long, default_value_t = 16)]
    segment_mib: u64,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Records per batch (librdkafka sends batches of hundreds to thousands at this size).
    #[arg(long, default_value_t = 500)]
    batch_records: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Storage {
    Memory,
    Disk,
}

impl Storage {
    fn name(self) -> &'static str {
        match self {
            Storage::Memory => "memory",
            Storage::Disk => "disk",
        }
    }
}

/// One measured pass.
struct Sample {
    records: u64,
    bytes_before: u64,
    bytes_after: u64,
    segments_before: usize,
    segments_after: usize,
    records_removed: u64,
    keys_kept: u64,
    fill: Duration,
    clean: Duration,
}

impl Sample {
    fn mb_per_s(&self) -> f64 {
        self.bytes_before as f64 / 1e6 / self.clean.as_secs_f64()
    }

    fn reduction(&self) -> f64 {
        1.0 - self.bytes_after as f64 / self.bytes_before as f64
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.mb == 0 || args.runs == 0 || args.batch_records == 0 || args.keys.contains(&0) {
        bail!("--mb, --runs, --batch-records and every --keys must be positive");
    }
    let dir = args.dir.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tidepool-cleaner-bench")
    });
    println!(
        "cleaner: {} MB of {}-byte values in batches of {} records, segment.bytes {} MiB, {} \
         run(s) each",
        args.mb, args.value_bytes, args.batch_records, args.segment_mib, args.runs
    );
    for &storage in &args.storage {
        for &keys in &args.keys {
            let mut samples = Vec::with_capacity(args.runs);
            for run in 1..=args.runs {
                let data_dir = dir.join(format!("{}-{keys}-r{run}", std::process::id()));
                let sample = measure(&args, storage, keys, &data_dir).await;
                if storage == Storage::Disk {
                    let _ = std::fs::remove_dir_all(&data_dir);
                }
                let sample = sample?;
                println!(
                    "cleaner storage={} keys={keys} run={run} records={} bytes_before={} \
                     bytes_after={} segments_before={} segments_after={} records_removed={} \
                     keys_kept={} fill_ms={:.0} clean_ms={:.1} mb_per_s={:.1}",
                    storage.name(),
                    sample.records,
                    sample.bytes_before,
                    sample.bytes_after,
                    sample.segments_before,
                    sample.segments_after,
                    sample.records_removed,
                    sample.keys_kept,
                    sample.fill.as_secs_f64() * 1e3,
                    sample.clean.as_secs_f64() * 1e3,
                    sample.mb_per_s(),
                );
                samples.push(sample);
            }
            summarise(storage, keys, &mut samples);
        }
    }
    let _ = std::fs::remove_dir(&dir);
    Ok(())
}

fn summarise(storage: Storage, keys: u64, samples: &mut [Sample]) {
    samples.sort_by_key(|sample| sample.clean);
    let median = &samples[(samples.len() - 1) / 2];
    eprintln!(
        "  {:<6} {keys:>9} keys: {:>7.1} MB/s (median of {}: {:.0} ms for {:.1} MB), {:.1} % \
         removed ({} of {} records), {} -> {} segments",
        storage.name(),
        median.mb_per_s(),
        samples.len(),
        median.clean.as_secs_f64() * 1e3,
        median.bytes_before as f64 / 1e6,
        median.reduction() * 100.0,
        median.records_removed,
        median.records,
        median.segments_before,
        median.segments_after,
    );
}

async fn start(storage: Storage, data_dir: &Path, segment_bytes: u64) -> Result<BrokerHandle> {
    let config = tidepool::Config {
        // Only the measured pass runs: the periodic cleaner must not clean while we fill.
        cleaner_backoff_ms: 24 * 60 * 60 * 1000,
        ..tidepool::Config::default()
    };
    let builder = Broker::builder().config(config);
    let builder = match storage {
        Storage::Memory => builder.memory(),
        Storage::Disk => {
            let _ = std::fs::remove_dir_all(data_dir);
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("create {}", data_dir.display()))?;
            builder.data_dir(data_dir)
        }
    };
    let broker = builder.start().await?;
    let request = TopicRequest {
        name: TOPIC.into(),
        partitions: 1,
        replication_factor: 1,
        configs: vec![
            ("cleanup.policy".into(), "compact".into()),
            ("segment.bytes".into(), segment_bytes.to_string()),
        ],
        ..TopicRequest::default()
    };
    broker
        .cluster()
        .create_topic(&request, false)
        .map_err(|refusal| anyhow::anyhow!("create {TOPIC}: {}", refusal.message))?;
    Ok(broker)
}

// A benchmark measures real elapsed time, so it reads the real clock directly.
#[allow(
    clippy::disallowed_methods,
    reason = "a benchmark measures real elapsed time"
)]
async fn measure(args: &Args, storage: Storage, keys: u64, data_dir: &Path) -> Result<Sample> {
    let broker = start(storage, data_dir, args.segment_mib << 20).await?;
    let filling = Instant::now();
    let records = fill(&broker, args, keys)?;
    let control = broker.control();
    control.roll(TOPIC, 0)?;
    let fill = filling.elapsed();

    let cleaning = Instant::now();
    let report = control.clean_now(TOPIC, 0)?;
    let clean = cleaning.elapsed();
    let report = report.context("the cleaner found nothing to clean")?;
    broker.shutdown().await;
    if report.records_before != records {
        bail!(
            "the cleaner saw {} records, {records} were appended",
            report.records_before
        );
    }
    Ok(Sample {
        records,
        bytes_before: report.bytes_before,
        bytes_after: report.bytes_after,
        segments_before: report.segments_before,
        segments_after: report.segments_after,
        records_removed: report.records_removed,
        keys_kept: report.keys_kept,
        fill,
        clean,
    })
}

/// Appends batches until the log holds `args.mb` MB; returns the records appended.
fn fill(broker: &BrokerHandle, args: &Args, keys: u64) -> Result<u64> {
    let cluster = broker.cluster();
    let topic = cluster.topic(TOPIC).context("the topic exists")?;
    let partition = &topic.partitions[0];
    let target = args.mb * 1_000_000;
    let mut random = XorShift(0x9E37_79B9_7F4A_7C15 ^ keys);
    let mut value = vec![0u8; args.value_bytes];
    let mut appended = 0u64;
    let mut records = 0u64;
    while appended < target {
        let now_ms = cluster.env.clock.wall_ms();
        let mut batch = BatchWriter::new(now_ms);
        for _ in 0..args.batch_records {
            let key = format!("key-{:010}", random.next() % keys);
            for (i, byte) in value.iter_mut().enumerate() {
                *byte = b'a' + ((records as usize + i) % 26) as u8;
            }
            batch.push(key.as_bytes(), &value);
            records += 1;
        }
        let bytes = batch.finish();
        appended += bytes.len() as u64;
        // The partition takes `bytes::Bytes`; `into` names it for us.
        let records_set = bytes.into();
        let outcome = partition.append_internal(
            &records_set,
            now_ms,
            cluster.config.producers_per_partition_max,
        );
        if let Some(error) = outcome.error {
            bail!("append refused: {error:?} {:?}", outcome.error_message);
        }
    }
    Ok(records)
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A Kafka v2 record batch, uncompressed, CreateTime, no producer id, written by hand: the root
/// package does not depend on tidepool-protocol, and a benchmark's input should not lean on the
/// code under test anyway.
struct BatchWriter {
    records: Vec<u8>,
    count: i32,
    timestamp: i64,
}

impl BatchWriter {
    fn new(timestamp: i64) -> BatchWriter {
        BatchWriter {
            records: Vec::with_capacity(64 * 1024),
            count: 0,
            timestamp,
        }
    }

    fn push(&mut self, key: &[u8], value: &[u8]) {
        let mut body = Vec::with_capacity(key.len() + value.len() + 16);
        body.push(0); // attributes
        put_varint(&mut body, 0); // timestamp delta
        put_varint(&mut body, i64::from(self.count)); // offset delta
        put_varint(&mut body, key.len() as i64);
        body.extend_from_slice(key);
        put_varint(&mut body, value.len() as i64);
        body.extend_from_slice(value);
        put_varint(&mut body, 0); // headers
        put_varint(&mut self.records, body.len() as i64);
        self.records.extend_from_slice(&body);
        self.count += 1;
    }

    fn finish(self) -> Vec<u8> {
        let mut batch = Vec::with_capacity(61 + self.records.len());
        batch.extend_from_slice(&0i64.to_be_bytes()); // base offset (the broker assigns it)
        let length = (49 + self.records.len()) as i32; // everything after the length field
        batch.extend_from_slice(&length.to_be_bytes());
        batch.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
        batch.push(2); // magic
        batch.extend_from_slice(&0u32.to_be_bytes()); // CRC, below
        batch.extend_from_slice(&0i16.to_be_bytes()); // attributes: no codec, CreateTime
        batch.extend_from_slice(&(self.count - 1).to_be_bytes()); // last offset delta
        batch.extend_from_slice(&self.timestamp.to_be_bytes()); // base timestamp
        batch.extend_from_slice(&self.timestamp.to_be_bytes()); // max timestamp
        batch.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
        batch.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
        batch.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
        batch.extend_from_slice(&self.count.to_be_bytes());
        batch.extend_from_slice(&self.records);
        let crc = crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch
    }
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

/// CRC-32C (Castagnoli), table-driven.
fn crc32c(bytes: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0u32; 256];
        for (i, entry) in table.iter_mut().enumerate() {
            let mut crc = i as u32;
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
            }
            *entry = crc;
        }
        table
    });
    let mut crc = !0u32;
    for &byte in bytes {
        crc = table[((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}
