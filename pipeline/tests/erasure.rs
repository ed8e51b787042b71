//! Erasure (issue 9 item 7, "delete arbitrary messages"): on a compacted topic whose keys
//! carry unique suffixes, a tombstone for one key+suffix removes that one message from the
//! segment files on disk after a roll and a cleaner pass, while the other messages of the same
//! key stay, in order, in their partition.
//!
//! Embedded broker only: the test reads the broker's files and drives its cleaner.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tidepool_broker::{Broker, BrokerHandle};
use tidepool_client::{
    Admin, Client, ClientConfig, Compression, NewTopic, Producer, ProducerRecord,
};
use tidepool_io::Env;
use tidepool_pipeline::app::pipeline_producer_config;
use tidepool_pipeline::erasure::{
    SuffixIgnoringPartitioner, erasable_key, strip_suffix, tombstone,
};

use support::read_topic;

const TOPIC: &str = "events.erasable";
const PARTITIONS: i32 = 3;
const KEYS: [&str; 3] = ["acme", "globex", "initech"];
const MESSAGES: usize = 21;
/// A message of "globex".
const ERASED: usize = 10;

/// A directory of its own under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("tidepool-pipeline-{label}-{}", std::process::id()));
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

fn key_of(n: usize) -> &'static str {
    KEYS[n % KEYS.len()]
}

fn suffix_of(n: usize) -> String {
    format!("evt-{n}")
}

/// Distinctive bytes: no message's value is part of another's.
fn value_of(n: usize) -> String {
    format!("<secret-{n:02}>")
}

/// Every file under `dir`, recursively, with its bytes.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            files.push((path, bytes));
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// The files holding `needle`.
fn holding(files: &[(PathBuf, Vec<u8>)], needle: &[u8]) -> Vec<PathBuf> {
    files
        .iter()
        .filter(|(_, bytes)| contains(bytes, needle))
        .map(|(path, _)| path.clone())
        .collect()
}

async fn start_broker(data_dir: &Path) -> BrokerHandle {
    Broker::builder()
        .data_dir(data_dir)
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .start()
        .await
        .expect("an embedded broker on disk")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstoned_message_is_gone_from_the_segment_files_and_its_neighbours_stay_in_order() {
    let dir = TempDir::new("erasure");
    let broker = start_broker(&dir.0).await;
    let client = Client::connect(Env::real(), ClientConfig::new(broker.bootstrap()))
        .await
        .unwrap();
    // Eager compaction: whatever is rolled is cleanable, and a tombstone goes in the same pass
    // that removes what it erases.
    Admin::new(client.clone())
        .create_topic(
            NewTopic::new(TOPIC, PARTITIONS, 1)
                .config("cleanup.policy", "compact")
                .config("segment.ms", "100")
                .config("min.cleanable.dirty.ratio", "0.01")
                .config("delete.retention.ms", "0"),
        )
        .await
        .unwrap();
    // Uncompressed, so a value's bytes on disk are the bytes produced.
    let producer = Producer::new(
        client.clone(),
        pipeline_producer_config()
            .partitioner(Arc::new(SuffixIgnoringPartitioner))
            .compression(Compression::None),
    )
    .await
    .unwrap();

    let mut partition_of_key: BTreeMap<&str, i32> = BTreeMap::new();
    for n in 0..MESSAGES {
        let record = ProducerRecord::new(TOPIC, Bytes::from(value_of(n)))
            .key(erasable_key(key_of(n), &suffix_of(n)));
        let written = producer.send(record).await.unwrap().await.unwrap();
        let partition = *partition_of_key
            .entry(key_of(n))
            .or_insert(written.partition);
        assert_eq!(
            written.partition,
            partition,
            "every message of {} in one partition",
            key_of(n)
        );
    }
    let erased_dir = dir
        .0
        .join(format!("{TOPIC}-{}", partition_of_key[key_of(ERASED)]));
    let files = files_under(&erased_dir);
    assert!(
        !holding(&files, value_of(ERASED).as_bytes()).is_empty(),
        "the message is on disk before it is erased"
    );

    let erasure = tombstone(TOPIC, key_of(ERASED), &suffix_of(ERASED));
    let written = producer.send(erasure).await.unwrap().await.unwrap();
    assert_eq!(
        written.partition,
        partition_of_key[key_of(ERASED)],
        "the tombstone lands next to the message it erases"
    );
    producer.close().await.unwrap();

    let control = broker.control();
    for partition in partition_of_key.values() {
        control.roll(TOPIC, *partition).unwrap();
        control.clean_now(TOPIC, *partition).unwrap();
    }
    // Summed over every pass, the broker's own included, so one that ran first changes nothing.
    let removed: u64 = control
        .cleaner_reports()
        .iter()
        .filter(|report| report.topic == TOPIC)
        .map(|report| report.records_removed)
        .sum();
    assert_eq!(removed, 2, "the erased message and its tombstone");

    let everything = files_under(&dir.0);
    assert_eq!(
        holding(&everything, value_of(ERASED).as_bytes()),
        Vec::<PathBuf>::new(),
        "the erased value is in no file of the broker"
    );
    assert_eq!(
        holding(
            &everything,
            &erasable_key(key_of(ERASED), &suffix_of(ERASED))
        ),
        Vec::<PathBuf>::new(),
        "nor is its key"
    );
    let files = files_under(&erased_dir);
    for n in (0..MESSAGES).filter(|n| key_of(*n) == key_of(ERASED) && *n != ERASED) {
        assert!(
            !holding(&files, value_of(n).as_bytes()).is_empty(),
            "neighbour {n} is still in {}",
            erased_dir.display()
        );
    }

    let mut read: BTreeMap<Vec<u8>, Vec<(String, String)>> = BTreeMap::new();
    for record in read_topic(&client, TOPIC, PARTITIONS).await {
        let key = record.key.as_deref().unwrap();
        let (base, suffix) = strip_suffix(key);
        let value = record.value.as_deref().expect("no tombstone is left");
        read.entry(base.to_vec()).or_default().push((
            String::from_utf8(suffix.unwrap().to_vec()).unwrap(),
            String::from_utf8(value.to_vec()).unwrap(),
        ));
    }
    let expected: BTreeMap<Vec<u8>, Vec<(String, String)>> = KEYS
        .iter()
        .map(|key| {
            let messages = (0..MESSAGES)
                .filter(|n| key_of(*n) == *key && *n != ERASED)
                .map(|n| (suffix_of(n), value_of(n)))
                .collect();
            (key.as_bytes().to_vec(), messages)
        })
        .collect();
    assert_eq!(read, expected);

    client.close();
    broker.shutdown().await;
}
