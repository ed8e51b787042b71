//! Real files for restart tests: a temporary data directory removed afterwards, brokers
//! started on it, and ways to read and damage the segment files a broker left there.
//!
//! Declared by the test files that need it (`#[path = "common/disk.rs"] mod disk;`).

#![allow(
    dead_code,
    reason = "each test file uses a different part of this helper"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tidepool_broker::{Broker, BrokerHandle, Config};
use tidepool_protocol::batch::{BatchHeader, HEADER_BYTES};

/// A fresh directory under the system's temporary directory, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// `label` names the test, so a directory left behind by a killed run says whose it was.
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "tidepool-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creates the temporary directory");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Logs to the test's captured output; `RUST_LOG=info` shows what recovery cut.
fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}

/// Starts a broker of `nodes` nodes keeping its data in `dir` (recovering what is there).
pub async fn start_on(dir: &Path, nodes: usize, config: Config) -> BrokerHandle {
    init_logging();
    Broker::builder()
        .data_dir(dir)
        .nodes(nodes)
        .config(config)
        .start()
        .await
        .unwrap_or_else(|error| panic!("the broker starts on {}: {error}", dir.display()))
}

/// The directory holding one partition's segments.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// The `.log` files of a partition directory, by base offset, ascending.
pub fn segment_logs(partition_dir: &Path) -> Vec<(i64, PathBuf)> {
    let mut logs: Vec<(i64, PathBuf)> = std::fs::read_dir(partition_dir)
        .unwrap_or_else(|error| panic!("lists {}: {error}", partition_dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            let base = name.strip_suffix(".log")?.parse::<i64>().ok()?;
            Some((base, path))
        })
        .collect();
    logs.sort();
    logs
}

/// The last (active) segment's `.log` file of a partition directory.
pub fn last_segment_log(partition_dir: &Path) -> PathBuf {
    segment_logs(partition_dir)
        .pop()
        .expect("a partition has a segment")
        .1
}

/// One batch as stored in a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredBatch {
    pub position: u64,
    pub bytes: u64,
    pub header: BatchHeader,
}

impl StoredBatch {
    pub fn end(&self) -> u64 {
        self.position + self.bytes
    }
}

/// The whole batches of a segment file, in order, by their length fields (no CRC check);
/// panics on a file that does not end at a batch boundary.
pub fn stored_batches(log_file: &Path) -> Vec<StoredBatch> {
    let bytes = std::fs::read(log_file)
        .unwrap_or_else(|error| panic!("reads {}: {error}", log_file.display()));
    let mut batches = Vec::new();
    let mut position = 0usize;
    while position < bytes.len() {
        let rest = &bytes[position..];
        assert!(
            rest.len() >= HEADER_BYTES,
            "{}: {} stray bytes at {position}",
            log_file.display(),
            rest.len()
        );
        let header = BatchHeader::parse(rest).unwrap();
        let total = header.total_bytes();
        assert!(
            total >= HEADER_BYTES && total <= rest.len(),
            "{}: the batch at {position} declares {total} bytes, {} remain",
            log_file.display(),
            rest.len()
        );
        batches.push(StoredBatch {
            position: position as u64,
            bytes: total as u64,
            header,
        });
        position += total;
    }
    batches
}

pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|error| panic!("stats {}: {error}", path.display()))
        .len()
}

/// Appends `bytes` at the end of a file, as a write the broker never finished describing.
pub fn append_to(path: &Path, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|error| panic!("opens {}: {error}", path.display()));
    file.write_all(bytes).unwrap();
    file.sync_all().unwrap();
}

/// Cuts a file to `len` bytes, as a torn write leaves it.
pub fn truncate(path: &Path, len: u64) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap_or_else(|error| panic!("opens {}: {error}", path.display()));
    file.set_len(len).unwrap();
    file.sync_all().unwrap();
}

/// Flips bits of the byte at `position`, as silent corruption does.
pub fn flip_byte(path: &Path, position: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[position as usize] ^= 0x5a;
    std::fs::write(path, &bytes).unwrap();
}

/// Overwrites a file with `bytes`.
pub fn overwrite(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes)
        .unwrap_or_else(|error| panic!("writes {}: {error}", path.display()));
}
