//! tidepool-client and librdkafka (through confluent-kafka) on the two ends of one topic: our
//! producer → librdkafka's consumer, and librdkafka's producer → our consumer, must agree on
//! every key, value, header, partition and offset; keyed records must land where librdkafka's
//! `murmur2_random` (the Java client's rule) puts them.
//!
//! Gated like tests/real_clients.rs: `TIDEPOOL_COMPAT=1` (the test command sets it, with
//! `TIDEPOOL_PYTHON` naming the project venv's interpreter).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tidepool::{Broker, BrokerHandle};
use tidepool_client::partitioner::partition_for_key;
use tidepool_client::{
    Admin, Client, ClientConfig, Compression, Consumer, ConsumerConfig, Header, NewTopic, Producer,
    ProducerConfig, ProducerRecord, TopicPartition,
};
use tidepool_io::Env;
use tokio::io::AsyncWriteExt;

const PARTITIONS: i32 = 4;
const RECORDS: usize = 2_000;
/// Records sent to this partition explicitly (every tenth), whatever their key.
const EXPLICIT_PARTITION: i32 = 3;

fn enabled(test: &str) -> bool {
    if std::env::var_os("TIDEPOOL_COMPAT").is_some_and(|value| value == "1") {
        return true;
    }
    eprintln!("NOT RUN: {test} needs TIDEPOOL_COMPAT=1 and the clients scripts/test installs");
    false
}

fn python() -> String {
    std::env::var("TIDEPOOL_PYTHON").unwrap_or_else(|_| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(".venv/bin/python")
            .display()
            .to_string()
    })
}

fn script() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/compat/interop_confluent.py")
        .display()
        .to_string()
}

/// One record both sides write: keyless, keyed, explicit-partition, null values, binary bytes,
/// repeated and null headers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sample {
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<Header>,
    partition: Option<i32>,
}

fn samples() -> Vec<Sample> {
    (0..RECORDS)
        .map(|i| {
            let key = (i % 3 != 0).then(|| Bytes::from(format!("key-{}", i % 50)));
            let value = (i % 17 != 0).then(|| {
                let mut bytes = format!("value-{i}-").into_bytes();
                bytes.extend_from_slice(&[0, 0xff, (i % 256) as u8]);
                Bytes::from(bytes)
            });
            let headers = match i % 4 {
                0 => vec![],
                1 => vec![Header {
                    key: "trace".into(),
                    value: Some(Bytes::from(format!("t{i}"))),
                }],
                2 => vec![
                    Header {
                        key: "dup".into(),
                        value: Some(Bytes::from_static(b"first")),
                    },
                    Header {
                        key: "dup".into(),
                        value: None,
                    },
                ],
                _ => vec![Header {
                    key: "bin".into(),
                    value: Some(Bytes::from_static(&[0, 255, 7])),
                }],
            };
            let partition = (i % 10 == 0).then_some(EXPLICIT_PARTITION);
            Sample {
                key,
                value,
                headers,
                partition,
            }
        })
        .collect()
}

fn hex(bytes: &Option<Bytes>) -> Value {
    match bytes {
        Some(bytes) => Value::String(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        None => Value::Null,
    }
}

fn unhex(value: &Value) -> Option<Bytes> {
    let text = value.as_str()?;
    Some(Bytes::from(
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect::<Vec<u8>>(),
    ))
}

fn sample_json(sample: &Sample) -> Value {
    json!({
        "key": hex(&sample.key),
        "value": hex(&sample.value),
        "headers": sample.headers.iter().map(|h| json!([h.key, hex(&h.value)])).collect::<Vec<_>>(),
        "partition": sample.partition,
    })
}

fn headers_of(value: &Value) -> Vec<Header> {
    value
        .as_array()
        .expect("headers")
        .iter()
        .map(|pair| Header {
            key: pair[0].as_str().expect("header key").to_string(),
            value: unhex(&pair[1]),
        })
        .collect()
}

/// Where a sample must land: its explicit partition, else murmur2 of its key; keyless samples
/// may land anywhere (sticky partitioning).
fn expected_partition(sample: &Sample) -> Option<i32> {
    sample.partition.or_else(|| {
        sample
            .key
            .as_ref()
            .map(|key| partition_for_key(key, PARTITIONS))
    })
}

async fn broker_and_topic(topic: &str) -> (BrokerHandle, Client) {
    let broker = Broker::builder()
        .memory()
        .nodes(3)
        .start()
        .await
        .expect("broker starts");
    let client = Client::connect(Env::real(), ClientConfig::new(broker.bootstrap()))
        .await
        .expect("client connects");
    Admin::new(client.clone())
        .create_topic(NewTopic::new(topic, PARTITIONS, 1))
        .await
        .expect("topic created");
    (broker, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_reads_exactly_what_our_producer_wrote() {
    if !enabled("librdkafka_reads_exactly_what_our_producer_wrote") {
        return;
    }
    let topic = "interop-ours-to-librdkafka";
    let (broker, client) = broker_and_topic(topic).await;
    let producer = Producer::new(
        client,
        ProducerConfig::default().compression(Compression::Zstd),
    )
    .await
    .expect("producer");
    let mut deliveries = Vec::new();
    for sample in samples() {
        let mut record = ProducerRecord::new(topic, Bytes::new());
        record.value = sample.value.clone();
        record.key = sample.key.clone();
        record.headers = sample.headers.clone();
        record.partition = sample.partition;
        deliveries.push((sample, producer.send(record).await.expect("send")));
    }
    let mut written = BTreeMap::new();
    for (sample, delivery) in deliveries {
        let metadata = delivery.await.expect("delivered");
        if let Some(partition) = expected_partition(&sample) {
            assert_eq!(metadata.partition, partition, "partition of {sample:?}");
        }
        written.insert((metadata.partition, metadata.offset), sample);
    }
    producer.close().await.expect("producer closes");

    let output = tokio::process::Command::new(python())
        .args([
            &script(),
            "consume",
            "--bootstrap",
            &broker.bootstrap(),
            "--topic",
            topic,
        ])
        .args(["--count", &RECORDS.to_string()])
        .output()
        .await
        .expect("run the librdkafka consumer");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut read = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let record: Value = serde_json::from_str(line).expect("a JSON line");
        let at = (
            record["partition"].as_i64().unwrap() as i32,
            record["offset"].as_i64().unwrap(),
        );
        read.insert(
            at,
            Sample {
                key: unhex(&record["key"]),
                value: unhex(&record["value"]),
                headers: headers_of(&record["headers"]),
                partition: None,
            },
        );
    }
    assert_eq!(
        read.len(),
        written.len(),
        "librdkafka read every record once"
    );
    for (at, sample) in &written {
        let got = read
            .get(at)
            .unwrap_or_else(|| panic!("nothing read at {at:?}"));
        assert_eq!(
            (&got.key, &got.value, &got.headers),
            (&sample.key, &sample.value, &sample.headers),
            "the record at {at:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_consumer_reads_exactly_what_librdkafka_wrote() {
    if !enabled("our_consumer_reads_exactly_what_librdkafka_wrote") {
        return;
    }
    let topic = "interop-librdkafka-to-ours";
    let (broker, client) = broker_and_topic(topic).await;
    let samples = samples();
    let mut child = tokio::process::Command::new(python())
        .args([
            &script(),
            "produce",
            "--bootstrap",
            &broker.bootstrap(),
            "--topic",
            topic,
        ])
        .args(["--compression", "lz4"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the librdkafka producer");
    let mut input = String::new();
    for sample in &samples {
        input.push_str(&sample_json(sample).to_string());
        input.push('\n');
    }
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(input.as_bytes())
        .await
        .expect("feed records");
    drop(stdin);
    let output = child.wait_with_output().await.expect("producer finishes");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut written = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let report: Value = serde_json::from_str(line).expect("a JSON line");
        let sample = samples[report["index"].as_u64().unwrap() as usize].clone();
        let partition = report["partition"].as_i64().unwrap() as i32;
        if let Some(expected) = expected_partition(&sample) {
            assert_eq!(partition, expected, "librdkafka's partition for {sample:?}");
        }
        written.insert((partition, report["offset"].as_i64().unwrap()), sample);
    }
    assert_eq!(written.len(), RECORDS);

    let consumer = Consumer::new(client, ConsumerConfig::default().auto_commit(false))
        .await
        .expect("consumer");
    let partitions: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    consumer.assign(partitions.clone()).await.expect("assign");
    for partition in &partitions {
        consumer.seek(partition, 0).await.expect("seek");
    }
    let mut read = BTreeMap::new();
    for _ in 0..200 {
        if read.len() >= RECORDS {
            break;
        }
        for record in consumer
            .poll(Duration::from_millis(200))
            .await
            .expect("poll")
        {
            let previous = read.insert((record.partition, record.offset), record);
            assert!(previous.is_none(), "a record read twice");
        }
    }
    consumer.close().await.expect("consumer closes");
    assert_eq!(read.len(), RECORDS, "our consumer read every record");
    for (at, sample) in &written {
        let got = read
            .get(at)
            .unwrap_or_else(|| panic!("nothing read at {at:?}"));
        assert_eq!(
            (&got.key, &got.value, &got.headers),
            (&sample.key, &sample.value, &sample.headers),
            "the record at {at:?}"
        );
    }
}
