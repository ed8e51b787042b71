//! The checker also judges histories recorded outside the simulator (issue 8 item 4): a
//! workload over real TCP against an embedded three-node broker records wall-clock history as
//! JSON lines to a file; the file is read back and checked. A copy with one polled record
//! removed must then be flagged, so the test cannot pass by checking nothing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tidepool_broker::Broker;
use tidepool_client::{
    Admin, Client, ClientConfig, Consumer, ConsumerConfig, NewTopic, OffsetAndMetadata,
    OffsetReset, Producer, ProducerConfig, ProducerRecord,
};
use tidepool_io::{Clock, Env, SystemClock};
use tidepool_sim::checker::{Anomaly, check};
use tidepool_sim::history::{
    CommitOp, EventKind, Op, PartitionOffset, Phase, PollOp, Record, Recorder, RunMeta, SendOp,
    read_jsonl,
};

const TOPIC: &str = "real";
const GROUP: &str = "real-group";
const RECORDS: usize = 200;

fn now_ms(clock: &SystemClock) -> u64 {
    u64::try_from(clock.now().as_millis()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_recorded_over_real_tcp_is_checked_from_its_file() {
    let broker = Broker::builder()
        .memory()
        .nodes(3)
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .start()
        .await
        .unwrap();
    let client = Client::connect(Env::real(), ClientConfig::new(broker.bootstrap()))
        .await
        .unwrap();
    Admin::new(client.clone())
        .create_topic(NewTopic::new(TOPIC, 3, 1))
        .await
        .unwrap();

    let path = std::env::temp_dir().join(format!("tidepool-real-tcp-{}.jsonl", std::process::id()));
    let sink = std::fs::File::create(&path).unwrap();
    let meta = RunMeta {
        source: Some("sim/tests/real_tcp.rs".to_owned()),
        ..RunMeta::default()
    };
    let recorder = Arc::new(Mutex::new(Recorder::with_sink(meta, sink)));
    let clock = SystemClock::new();

    // Produce: every send invoked, then acknowledged with its partition and offset.
    let producer = Producer::new(client.clone(), ProducerConfig::default())
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for index in 0..RECORDS {
        let (key, value) = (format!("k{}", index % 11), format!("v{index}"));
        let op = SendOp {
            topic: TOPIC.to_owned(),
            partition: None,
            key: Some(key.clone()),
            value: Some(value.clone()),
            offset: None,
        };
        let invoke =
            recorder
                .lock()
                .unwrap()
                .invoke(now_ms(&clock), "producer", Op::Send(op.clone()));
        let record = ProducerRecord::new(TOPIC, Bytes::from(value)).key(Bytes::from(key));
        deliveries.push((invoke, op, producer.send(record).await.unwrap()));
    }
    for (invoke, op, delivery) in deliveries {
        let metadata = delivery.await.unwrap();
        let done = SendOp {
            partition: Some(metadata.partition),
            offset: Some(metadata.offset),
            ..op
        };
        recorder
            .lock()
            .unwrap()
            .ok(now_ms(&clock), "producer", invoke, Op::Send(done));
    }

    // Consume everything as a group member, committing after each processed poll.
    let consumer = Consumer::new(
        client.clone(),
        ConsumerConfig::new(GROUP).auto_offset_reset(OffsetReset::Earliest),
    )
    .await
    .unwrap();
    consumer.subscribe(&[TOPIC]).await.unwrap();
    let mut seen = 0;
    let deadline = clock.now() + Duration::from_secs(30);
    while seen < RECORDS {
        assert!(clock.now() < deadline, "read {seen} of {RECORDS}");
        let records = consumer.poll(Duration::from_millis(200)).await.unwrap();
        if records.is_empty() {
            continue;
        }
        seen += records.len();
        let (generation, member) = consumer.generation().unwrap();
        let poll = PollOp {
            consumer: "consumer".to_owned(),
            group: Some(GROUP.to_owned()),
            generation: Some(generation),
            records: records
                .iter()
                .map(|record| Record {
                    topic: record.topic.clone(),
                    partition: record.partition,
                    offset: record.offset,
                    key: record
                        .key
                        .as_ref()
                        .map(|key| String::from_utf8_lossy(key).into_owned()),
                    value: record
                        .value
                        .as_ref()
                        .map(|value| String::from_utf8_lossy(value).into_owned()),
                })
                .collect(),
        };
        {
            let mut rec = recorder.lock().unwrap();
            let invoke = rec.invoke(
                now_ms(&clock),
                "consumer",
                Op::Poll(PollOp {
                    records: vec![],
                    ..poll.clone()
                }),
            );
            rec.ok(now_ms(&clock), "consumer", invoke, Op::Poll(poll));
        }
        let mut offsets = BTreeMap::new();
        for tp in consumer.assignment() {
            if let Some(position) = consumer.position(&tp) {
                offsets.insert(tp, OffsetAndMetadata::new(position));
            }
        }
        let op = CommitOp {
            group: GROUP.to_owned(),
            generation: Some(generation),
            member,
            offsets: offsets
                .iter()
                .map(|(tp, at)| PartitionOffset::new(tp.topic.clone(), tp.partition, at.offset))
                .collect(),
        };
        let invoke =
            recorder
                .lock()
                .unwrap()
                .invoke(now_ms(&clock), "consumer", Op::Commit(op.clone()));
        consumer.commit_sync(Some(offsets)).await.unwrap();
        recorder
            .lock()
            .unwrap()
            .ok(now_ms(&clock), "consumer", invoke, Op::Commit(op));
    }
    consumer.close().await.unwrap();
    recorder.lock().unwrap().record(
        now_ms(&clock),
        "test",
        EventKind::Phase {
            phase: Phase::Drained,
        },
    );
    let recorder = Arc::try_unwrap(recorder)
        .ok()
        .unwrap()
        .into_inner()
        .unwrap();
    recorder.finish().unwrap();
    broker.shutdown().await;

    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let history = read_jsonl(text.as_bytes()).unwrap();
    let report = check(&history, &history.meta.config);
    assert!(report.is_valid(), "{}", report.summary());
    assert_eq!(report.stats.sends.ok, RECORDS as u64);
    assert_eq!(report.stats.records_polled, RECORDS as u64);

    // The same file with one polled record cut out, as if the consumer had never received it.
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let cut = lines
        .iter()
        .position(|line| line.contains(r#""type":"ok""#) && line.contains(r#""f":"poll""#))
        .unwrap();
    let mut event: serde_json::Value = serde_json::from_str(&lines[cut]).unwrap();
    let records = event["op"]["records"].as_array_mut().unwrap();
    records.remove(0);
    lines[cut] = event.to_string();
    let tampered = read_jsonl(lines.join("\n").as_bytes()).unwrap();
    let report = check(&tampered, &tampered.meta.config);
    assert!(!report.is_valid(), "a missing record must be flagged");
    assert!(
        report.count(Anomaly::LostWrite) > 0,
        "an acknowledged record nobody read, below records that were read: {}",
        report.summary()
    );
}
