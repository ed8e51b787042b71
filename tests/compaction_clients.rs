//! Log compaction against real clients: librdkafka (through confluent-kafka) writes 100,000
//! updates over 1,000 keys plus tombstones for a tenth of them to a compacted topic with small
//! segments; the test rolls and cleans every partition through the control plane; then
//! confluent-kafka and kcat read everything from the beginning and must find exactly the latest
//! value of every live key, the tombstones while `delete.retention.ms` runs and none after it.
//! On disk, the segment files must shrink by what the cleaner reports.
//! `tests/compat/compaction_confluent.py` drives the clients and checks the records; this file
//! runs the broker and the cleaner and checks the cleaner's reports and the files.
//!
//! Slow and needing the project's Python venv and kcat, so gated like `tests/real_clients.rs`:
//! `TIDEPOOL_COMPAT=1` runs it (with `TIDEPOOL_PYTHON` naming the interpreter); without it each
//! test says loudly that it did not run. `RUST_LOG=info` shows the broker's log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tidepool::broker::cleaner::CleanerReport;
use tidepool::{Broker, BrokerHandle};
use tokio::sync::Mutex;

const PARTITIONS: i32 = 3;
const NODES: usize = 3;
const KEYS: u64 = 1_000;
const UPDATES: u64 = 100_000;
/// Keys deleted (every tenth), each with one tombstone after its last update.
const TOMBSTONES: u64 = 100;
/// Small segments, so each partition's 4-5 MB spans dozens of them.
const SEGMENT_BYTES: u64 = 128 * 1024;
const DELETE_RETENTION_MS: u64 = 2_000;
/// How long past `delete.retention.ms` the test waits before the pass that must drop the
/// tombstones (the broker's clock and ours are the same wall clock; this covers rounding).
const RETENTION_MARGIN: Duration = Duration::from_millis(500);
/// One client run (produce or verify); beyond it the client is killed and the test fails.
const CLIENT_LIMIT: Duration = Duration::from_secs(240);

/// One scenario at a time: each drives a Python client at tens of thousands of records per
/// second and the cleaner over 13 MB; two at once on a small machine only slow each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

fn enabled(test: &str) -> bool {
    if std::env::var_os("TIDEPOOL_COMPAT").is_some_and(|value| value == "1") {
        return true;
    }
    eprintln!("NOT RUN: {test} needs TIDEPOOL_COMPAT=1 and the clients scripts/test installs");
    false
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> String {
    std::env::var("TIDEPOOL_PYTHON")
        .unwrap_or_else(|_| root().join(".venv/bin/python").display().to_string())
}

fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}

/// A fresh directory for the run (the state file, and the data directory on disk), removed
/// when the run ends, also on panic.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(name: &str) -> ScratchDir {
        let path =
            std::env::temp_dir().join(format!("tidepool-compaction-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the scratch directory");
        ScratchDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Storage {
    Memory,
    Disk,
}

struct Scenario {
    name: &'static str,
    topic: &'static str,
    storage: Storage,
    /// The producer's compression.type: the cleaner re-encodes surviving records in the
    /// batch's own codec, which the clients must read.
    compression: &'static str,
}

struct Run {
    scenario: Scenario,
    scratch: ScratchDir,
}

impl Run {
    fn data_dir(&self) -> PathBuf {
        self.scratch.path().join("data")
    }

    fn state_file(&self) -> PathBuf {
        self.scratch.path().join("expected.json")
    }

    async fn start_broker(&self) -> BrokerHandle {
        let config = tidepool::Config {
            // Only the passes this test asks for run: the periodic cleaner would otherwise
            // clean while the client produces (15 s backoff) and change what each pass reports.
            cleaner_backoff_ms: 24 * 60 * 60 * 1000,
            ..tidepool::Config::default()
        };
        let builder = Broker::builder().nodes(NODES).config(config);
        let builder = match self.scenario.storage {
            Storage::Memory => builder.memory(),
            Storage::Disk => builder.data_dir(self.data_dir()),
        };
        builder.start().await.expect("broker starts")
    }

    /// Runs `compaction_confluent.py` with `args` to completion and fails the test with its
    /// output if it fails; returns its stdout.
    async fn client(&self, broker: &BrokerHandle, args: &[&str]) -> String {
        let script = root().join("tests/compat/compaction_confluent.py");
        assert!(script.exists(), "{} is missing", script.display());
        let mut all: Vec<String> = vec![
            "-u".into(),
            script.display().to_string(),
            "--bootstrap".into(),
            broker.bootstrap(),
            "--topic".into(),
            self.scenario.topic.into(),
            "--state".into(),
            self.state_file().display().to_string(),
        ];
        all.extend(args.iter().map(|arg| arg.to_string()));
        let label = format!("{} {}", python(), all.join(" "));
        let child = tokio::process::Command::new(python())
            .args(&all)
            .current_dir(root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {label}: {error}"));
        let output = tokio::time::timeout(CLIENT_LIMIT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{label} did not finish within {CLIENT_LIMIT:?} (killed)"))
            .unwrap_or_else(|error| panic!("{label}: {error}"));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{label} failed ({}):\n{stdout}\n--- stderr:\n{stderr}",
            output.status
        );
        println!("{stdout}");
        stdout
    }
}

/// A partition's segment files on disk: `.log` name → size, and any other file names.
#[derive(Debug, Default)]
struct Files {
    logs: BTreeMap<String, u64>,
    others: Vec<String>,
}

impl Files {
    fn read(data_dir: &Path, topic: &str, partition: i32) -> Files {
        let dir = data_dir.join(format!("{topic}-{partition}"));
        let mut files = Files::default();
        for entry in std::fs::read_dir(&dir)
            .unwrap_or_else(|error| panic!("list {}: {error}", dir.display()))
        {
            let entry = entry.expect("read a directory entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".log") {
                let size = entry.metadata().expect("stat a segment").len();
                files.logs.insert(name, size);
            } else {
                files.others.push(name);
            }
        }
        files
    }

    fn log_bytes(&self) -> u64 {
        self.logs.values().sum()
    }

    /// Anything but segments and their indexes: a leftover of the swap protocol
    /// (`.cleaned`, `.swap`, `.sources`) means a swap was not finished.
    fn leftovers(&self) -> Vec<&String> {
        self.others
            .iter()
            .filter(|name| !(name.ends_with(".index") || name.ends_with(".timeindex")))
            .collect()
    }
}

/// Every partition's `.log` files, when the run is on disk.
fn files(run: &Run) -> Option<Vec<Files>> {
    (run.scenario.storage == Storage::Disk).then(|| {
        (0..PARTITIONS)
            .map(|partition| Files::read(&run.data_dir(), run.scenario.topic, partition))
            .collect()
    })
}

fn total_log_bytes(files: &[Files]) -> u64 {
    files.iter().map(Files::log_bytes).sum()
}

fn high_watermarks(broker: &BrokerHandle, topic: &str) -> Vec<i64> {
    broker
        .cluster()
        .topic(topic)
        .expect("the topic exists")
        .partitions
        .iter()
        .map(|partition| partition.state().log.high_watermark())
        .collect()
}

fn clean(broker: &BrokerHandle, topic: &str, partition: i32) -> CleanerReport {
    broker
        .control()
        .clean_now(topic, partition)
        .unwrap_or_else(|error| panic!("clean {topic}-{partition}: {error}"))
        .unwrap_or_else(|| panic!("clean {topic}-{partition}: the cleaner found nothing to do"))
}

fn show(reports: &[CleanerReport]) -> String {
    reports
        .iter()
        .map(|r| {
            format!(
                "  {}-{}: segments {} -> {}, bytes {} -> {}, records {} (removed {}, tombstones \
                 removed {}), keys kept {}, cleaned up to {}",
                r.topic,
                r.partition,
                r.segments_before,
                r.segments_after,
                r.bytes_before,
                r.bytes_after,
                r.records_before,
                r.records_removed,
                r.tombstones_removed,
                r.keys_kept,
                r.cleaned_up_to
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn sum(reports: &[CleanerReport], field: impl Fn(&CleanerReport) -> u64) -> u64 {
    reports.iter().map(field).sum()
}

/// Checks that the files on disk are what the cleaner reports: every inactive segment's bytes
/// are `bytes_after` (the active segment is empty: nothing was written since the roll), one
/// `.log` per segment the report leaves plus the active one, and no swap leftovers.
fn check_files_match(files: &[Files], reports: &[CleanerReport], when: &str) {
    for (partition, (found, report)) in files.iter().zip(reports).enumerate() {
        assert!(
            found.leftovers().is_empty(),
            "{when}: partition {partition} holds swap leftovers {:?}",
            found.leftovers()
        );
        assert_eq!(
            found.log_bytes(),
            report.bytes_after,
            "{when}: partition {partition}'s .log files hold {} bytes, the cleaner reports {} \
             ({:?})",
            found.log_bytes(),
            report.bytes_after,
            found.logs
        );
        assert_eq!(
            found.logs.len(),
            report.segments_after + 1,
            "{when}: partition {partition} has {} .log files, the cleaner left {} segments plus \
             the active one ({:?})",
            found.logs.len(),
            report.segments_after,
            found.logs
        );
    }
}

async fn run(scenario: Scenario) {
    let _serial = ONE_AT_A_TIME.lock().await;
    init_logging();
    let run = Run {
        scratch: ScratchDir::new(scenario.topic),
        scenario,
    };
    let topic = run.scenario.topic;
    let broker = run.start_broker().await;

    // 1. librdkafka creates the compacted topic and writes every update and tombstone.
    let (keys, updates, tombstones) = (
        KEYS.to_string(),
        UPDATES.to_string(),
        TOMBSTONES.to_string(),
    );
    let (partitions, segment_bytes, retention) = (
        PARTITIONS.to_string(),
        SEGMENT_BYTES.to_string(),
        DELETE_RETENTION_MS.to_string(),
    );
    run.client(
        &broker,
        &[
            "--phase",
            "produce",
            "--partitions",
            &partitions,
            "--keys",
            &keys,
            "--updates",
            &updates,
            "--tombstones",
            &tombstones,
            "--segment-bytes",
            &segment_bytes,
            "--delete-retention-ms",
            &retention,
            "--compression",
            run.scenario.compression,
        ],
    )
    .await;
    let highs = high_watermarks(&broker, topic);
    assert_eq!(
        highs.iter().sum::<i64>(),
        (UPDATES + TOMBSTONES) as i64,
        "the partitions' high watermarks {highs:?} do not add up to the records sent"
    );
    let written = files(&run);
    if let Some(written) = &written {
        for (partition, found) in written.iter().enumerate() {
            assert!(
                found.logs.len() >= 10,
                "partition {partition} has only {} segments; segment.bytes={SEGMENT_BYTES} should \
                 make dozens ({:?})",
                found.logs.len(),
                found.logs
            );
        }
    }

    // 2. Roll (the active segment is never cleaned), then clean every partition twice at once:
    //    the first pass keeps one record per key, tombstones included; the second, well within
    //    delete.retention.ms, removes nothing more and merges the small cleaned segments.
    let control = broker.control();
    let mut first = Vec::new();
    let mut again = Vec::new();
    for partition in 0..PARTITIONS {
        control
            .roll(topic, partition)
            .unwrap_or_else(|error| panic!("roll {topic}-{partition}: {error}"));
        first.push(clean(&broker, topic, partition));
        again.push(clean(&broker, topic, partition));
    }
    let reports = format!(
        "first pass:\n{}\nsecond pass at once:\n{}",
        show(&first),
        show(&again)
    );
    println!("{}: {reports}", run.scenario.name);
    for (partition, report) in first.iter().enumerate() {
        let high = highs[partition];
        assert_eq!(
            (report.records_before, report.cleaned_up_to),
            (high as u64, high),
            "partition {partition}: the first pass must see every record up to the high \
             watermark {high}\n{reports}"
        );
        assert_eq!(
            report.records_removed,
            report.records_before - report.keys_kept,
            "partition {partition}: the first pass must keep exactly one record per key\n{reports}"
        );
        assert!(
            report.bytes_after * 10 < report.bytes_before,
            "partition {partition}: one record per key should be a few % of the log\n{reports}"
        );
    }
    assert_eq!(
        sum(&first, |r| r.keys_kept),
        KEYS,
        "keys kept: every key, live or deleted (its tombstone)\n{reports}"
    );
    assert_eq!(
        sum(&first, |r| r.records_removed),
        UPDATES + TOMBSTONES - KEYS,
        "records removed by the first pass\n{reports}"
    );
    assert_eq!(
        sum(&first, |r| r.tombstones_removed),
        0,
        "no tombstone may go before delete.retention.ms\n{reports}"
    );
    for (partition, (report, first)) in again.iter().zip(&first).enumerate() {
        assert_eq!(
            (
                report.records_before,
                report.records_removed,
                report.tombstones_removed,
                report.keys_kept,
                report.bytes_after
            ),
            (first.keys_kept, 0, 0, first.keys_kept, first.bytes_after),
            "partition {partition}: a second pass within delete.retention.ms has nothing to \
             remove\n{reports}"
        );
        assert!(
            report.segments_after <= first.segments_after,
            "partition {partition}: a second pass must not split segments\n{reports}"
        );
    }
    assert!(
        sum(&again, |r| r.segments_after as u64) < sum(&first, |r| r.segments_after as u64),
        "the second pass should merge the small cleaned segments\n{reports}"
    );
    let cleaned = files(&run);
    if let (Some(written), Some(cleaned)) = (&written, &cleaned) {
        let (before, after) = (total_log_bytes(written), total_log_bytes(cleaned));
        println!(
            "{}: .log files {before} bytes in {} files before cleaning, {after} bytes in {} \
             files after",
            run.scenario.name,
            written.iter().map(|f| f.logs.len()).sum::<usize>(),
            cleaned.iter().map(|f| f.logs.len()).sum::<usize>(),
        );
        assert_eq!(
            before,
            sum(&first, |r| r.bytes_before),
            "the .log files before cleaning must be what the cleaner read\n{reports}"
        );
        assert!(
            after * 10 < before,
            "the .log files must shrink: {before} bytes before, {after} after\n{reports}"
        );
        check_files_match(cleaned, &again, "after the first passes");
    }

    // 3. Both readers find one record per key: the latest value, or the tombstone.
    run.client(&broker, &["--phase", "verify", "--expect-tombstones"])
        .await;

    // 4. Past delete.retention.ms, a pass drops every tombstone and nothing else.
    tokio::time::sleep(Duration::from_millis(DELETE_RETENTION_MS) + RETENTION_MARGIN).await;
    let last: Vec<CleanerReport> = (0..PARTITIONS)
        .map(|partition| clean(&broker, topic, partition))
        .collect();
    let reports = format!("{reports}\nafter delete.retention.ms:\n{}", show(&last));
    println!(
        "{}: after delete.retention.ms:\n{}",
        run.scenario.name,
        show(&last)
    );
    assert_eq!(
        (
            sum(&last, |r| r.records_before),
            sum(&last, |r| r.tombstones_removed),
            sum(&last, |r| r.records_removed),
            sum(&last, |r| r.keys_kept)
        ),
        (KEYS, TOMBSTONES, TOMBSTONES, KEYS - TOMBSTONES),
        "(records seen, tombstones removed, records removed, keys kept) after \
         delete.retention.ms\n{reports}"
    );
    for (report, high) in last.iter().zip(&highs) {
        assert_eq!(report.cleaned_up_to, *high, "{reports}");
    }
    if let (Some(cleaned), Some(last_files)) = (&cleaned, files(&run)) {
        let (before, after) = (total_log_bytes(cleaned), total_log_bytes(&last_files));
        assert!(
            after < before,
            "dropping the tombstones must shrink the files: {before} bytes before, {after} \
             after\n{reports}"
        );
        check_files_match(&last_files, &last, "after the tombstones went");
    }
    run.client(&broker, &["--phase", "verify", "--expect-no-tombstones"])
        .await;
    broker.shutdown().await;

    // 5. On disk, a restart opens the cleaned segments (offsets with gaps, rebuilt batches) and
    //    serves the same.
    if run.scenario.storage == Storage::Disk {
        let restarted = run.start_broker().await;
        assert_eq!(
            high_watermarks(&restarted, topic),
            highs,
            "high watermarks after a restart"
        );
        run.client(&restarted, &["--phase", "verify", "--expect-no-tombstones"])
            .await;
        restarted.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_and_kcat_read_a_compacted_topic_on_disk() {
    if !enabled("librdkafka_and_kcat_read_a_compacted_topic_on_disk") {
        return;
    }
    run(Scenario {
        name: "data directory",
        topic: "compaction-disk",
        storage: Storage::Disk,
        compression: "none",
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_and_kcat_read_a_compacted_zstd_topic_in_memory() {
    if !enabled("librdkafka_and_kcat_read_a_compacted_zstd_topic_in_memory") {
        return;
    }
    run(Scenario {
        name: "memory, zstd",
        topic: "compaction-memory-zstd",
        storage: Storage::Memory,
        compression: "zstd",
    })
    .await;
}
