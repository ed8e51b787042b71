//! The collector over real HTTP on loopback, in front of an embedded broker: what each answer
//! means for what is in `events.raw`.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tidepool_broker::{Broker, BrokerHandle};
use tidepool_client::{
    Admin, Client, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, NewTopic, OffsetReset,
    Producer, ProducerConfig, TopicPartition,
};
use tidepool_io::Env;
use tidepool_pipeline::collector::{CollectorConfig, router, serve};
use tidepool_pipeline::metrics::PipelineMetrics;
use tokio::net::TcpListener;

mod support;

use support::{get, http, post_json, post_raw};

const TOPIC: &str = "events.raw";
const PARTITIONS: i32 = 3;
/// 2024-05-01T12:00:00Z: after the admission floor (2000) and never in the future.
const WHEN: i64 = 1_714_564_800_000;

struct Stack {
    broker: BrokerHandle,
    client: Client,
    collector: SocketAddr,
    metrics: PipelineMetrics,
}

async fn stack(producer: ProducerConfig, collector: CollectorConfig) -> Stack {
    let broker = Broker::builder()
        .memory()
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .start()
        .await
        .expect("an embedded broker");
    let client = Client::connect(Env::real(), ClientConfig::new(broker.bootstrap()))
        .await
        .expect("a client");
    Admin::new(client.clone())
        .create_topic(NewTopic::new(TOPIC, PARTITIONS, 1))
        .await
        .expect("events.raw");
    let producer = Producer::new(client.clone(), producer)
        .await
        .expect("a producer");
    let metrics = PipelineMetrics::new();
    let app = router(producer, collector, metrics.clone());
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, app));
    Stack {
        broker,
        client,
        collector: address,
        metrics,
    }
}

async fn default_stack() -> Stack {
    stack(ProducerConfig::default(), CollectorConfig::default()).await
}

fn event(id: &str, tenant: &str) -> Value {
    json!({
        "id": id,
        "tenant": tenant,
        "type": "page.view",
        "timestamp": WHEN,
        "payload": {"path": "/pricing", "ms": 42},
    })
}

fn header<'a>(record: &'a ConsumerRecord, name: &str) -> Option<&'a [u8]> {
    record
        .headers
        .iter()
        .find(|header| header.key == name)
        .and_then(|header| header.value.as_deref())
}

/// Every record of events.raw, read until `count` arrived (or a while passed, for the tests
/// that expect fewer: they ask for one more than they expect).
async fn read_raw(client: &Client, count: usize, patience: Duration) -> Vec<ConsumerRecord> {
    let consumer = Consumer::new(
        client.clone(),
        ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest),
    )
    .await
    .unwrap();
    let partitions = (0..PARTITIONS)
        .map(|partition| TopicPartition::new(TOPIC, partition))
        .collect();
    consumer.assign(partitions).await.unwrap();
    let mut records = Vec::new();
    let polls = patience.as_millis() / 100;
    for _ in 0..polls.max(1) {
        records.extend(consumer.poll(Duration::from_millis(100)).await.unwrap());
        if records.len() >= count {
            break;
        }
    }
    consumer.close().await.unwrap();
    records
}

#[tokio::test]
async fn a_batch_is_acknowledged_with_its_ids_and_lands_keyed_by_tenant() {
    let stack = default_stack().await;
    let batch = json!([
        event("e-1", "acme"),
        event("e-2", "globex"),
        event("e-3", "acme"),
        event("e-4", "initech"),
    ]);
    let reply = post_json(stack.collector, &batch).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({"accepted": ["e-1", "e-2", "e-3", "e-4"]})
    );

    let records = read_raw(&stack.client, 4, Duration::from_secs(10)).await;
    assert_eq!(records.len(), 4);
    for record in &records {
        let stored: Value = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
        let id = stored["id"].as_str().unwrap();
        let sent = batch
            .as_array()
            .unwrap()
            .iter()
            .find(|event| event["id"] == id)
            .unwrap();
        assert_eq!(&stored, sent, "the value is the event as sent");
        assert_eq!(
            record.key.as_deref(),
            Some(sent["tenant"].as_str().unwrap().as_bytes())
        );
        assert_eq!(header(record, "event-id"), Some(id.as_bytes()));
        assert_eq!(header(record, "event-type"), Some(&b"page.view"[..]));
    }
    // Keyed by tenant: one tenant's events share a partition, in the order sent.
    let acme: Vec<&ConsumerRecord> = records
        .iter()
        .filter(|record| record.key.as_deref() == Some(&b"acme"[..]))
        .collect();
    assert_eq!(acme.len(), 2);
    assert_eq!(acme[0].partition, acme[1].partition);
    assert!(acme[0].offset < acme[1].offset);
    assert_eq!(header(acme[0], "event-id"), Some(&b"e-1"[..]));
    stack.broker.shutdown().await;
}

#[tokio::test]
async fn a_single_object_is_one_event_and_rfc3339_times_are_stored_as_epoch_ms() {
    let stack = default_stack().await;
    let mut single = event("solo", "acme");
    single["timestamp"] = json!("2024-05-01T14:00:00.125+02:00");
    let reply = post_json(stack.collector, &single).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert_eq!(reply.json(), json!({"accepted": ["solo"]}));
    let records = read_raw(&stack.client, 1, Duration::from_secs(10)).await;
    let stored: Value = serde_json::from_slice(records[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(stored["timestamp"], json!(WHEN + 125));
    stack.broker.shutdown().await;
}

#[tokio::test]
async fn invalid_events_are_reported_by_index_and_nothing_is_produced() {
    let stack = default_stack().await;
    let mut bad_tenant = event("e-2", "acme corp");
    bad_tenant["payload"] = json!("not an object");
    let mut no_id = event("x", "acme");
    no_id.as_object_mut().unwrap().remove("id");
    let batch = json!([
        event("e-1", "acme"),
        bad_tenant,
        event("e-3", "acme"),
        no_id
    ]);
    let reply = post_json(stack.collector, &batch).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let body = reply.json();
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["index"], json!(1));
    assert_eq!(errors[0]["id"], json!("e-2"));
    let reason = errors[0]["reason"].as_str().unwrap();
    assert!(reason.contains("tenant contains ' '"), "{reason}");
    assert!(reason.contains("payload must be a JSON object"), "{reason}");
    assert_eq!(errors[1]["index"], json!(3));
    assert_eq!(errors[1]["id"], Value::Null);
    assert!(
        errors[1]["reason"]
            .as_str()
            .unwrap()
            .contains("id is missing")
    );

    // The valid events of the refused request were not produced either.
    let records = read_raw(&stack.client, 1, Duration::from_secs(1)).await;
    assert!(records.is_empty(), "{records:?}");
    stack.broker.shutdown().await;
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_and_malformed_ones_400() {
    let config = CollectorConfig {
        body_bytes_max: 1024,
        events_per_request_max: 3,
        ..CollectorConfig::default()
    };
    let stack = stack(ProducerConfig::default(), config).await;
    let big = json!([{"id": "big", "tenant": "acme", "type": "t", "timestamp": WHEN,
        "payload": {"blob": "x".repeat(2000)}}]);

    // Declared too large: refused on the Content-Length alone.
    let reply = post_json(stack.collector, &big).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("larger than 1024 bytes")
    );

    // Undeclared (chunked): refused once the limit is crossed while reading.
    let bytes = big.to_string().into_bytes();
    let mut chunked = format!("{:x}\r\n", bytes.len()).into_bytes();
    chunked.extend_from_slice(&bytes);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let head = "POST /v1/events HTTP/1.1\r\nContent-Type: application/json\r\n\
                Transfer-Encoding: chunked";
    let reply = http(stack.collector, head, &chunked).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert!(reply.json()["error"].is_string());

    let four: Vec<Value> = (0..4).map(|i| event(&format!("n{i}"), "a")).collect();
    let reply = post_json(stack.collector, &Value::Array(four)).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert_eq!(reply.json()["events_per_request_max"], json!(3));

    let reply = post_raw(stack.collector, "application/json", b"{\"id\": ").await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );

    let reply = post_raw(stack.collector, "application/json", b"[]").await;
    assert_eq!(reply.status, 400);
    let reply = post_raw(stack.collector, "text/plain", b"{}").await;
    assert_eq!(reply.status, 415);

    let records = read_raw(&stack.client, 1, Duration::from_secs(1)).await;
    assert!(records.is_empty(), "{records:?}");
    stack.broker.shutdown().await;
}

#[tokio::test]
async fn health_and_metrics() {
    let stack = default_stack().await;
    let reply = get(stack.collector, "/healthz").await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "ok"));

    let batch = json!([event("m-1", "acme"), event("m-2", "acme")]);
    assert_eq!(post_json(stack.collector, &batch).await.status, 202);
    assert_eq!(
        post_raw(stack.collector, "application/json", b"nope")
            .await
            .status,
        400
    );

    let reply = get(stack.collector, "/metrics").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let text = reply.text();
    for line in [
        "tidepool_collector_events_accepted_total 2",
        r#"tidepool_collector_requests_total{status="202"} 1"#,
        r#"tidepool_collector_requests_total{status="400"} 1"#,
        "tidepool_collector_ack_latency_seconds_count 1",
        "tidepool_collector_requests_in_flight 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    // The handle the pipeline holds renders the same recorder.
    assert!(
        stack
            .metrics
            .render()
            .contains("tidepool_collector_events_accepted_total 2")
    );
    stack.broker.shutdown().await;
}

#[tokio::test]
async fn a_full_producer_buffer_answers_503_with_retry_after_at_once() {
    // Records sit in the buffer for the whole linger, so the buffer fills and stays full.
    let producer = ProducerConfig::default()
        .buffer_bytes(1000)
        .linger(Duration::from_secs(60));
    let config = CollectorConfig {
        retry_after_s: 7,
        ..CollectorConfig::default()
    };
    let stack = stack(producer, config).await;
    let batch: Vec<Value> = (0..20).map(|i| event(&format!("f-{i}"), "acme")).collect();
    let reply = post_json(stack.collector, &Value::Array(batch)).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.header("retry-after"), Some("7"));
    let body = reply.json();
    assert!(body["error"].as_str().unwrap().contains("buffer is full"));
    let possibly = body["possibly_written"].as_array().unwrap();
    assert!(!possibly.is_empty() && possibly.len() < 20, "{body}");
    assert_eq!(possibly[0], json!("f-0"));
    assert!(body.get("accepted").is_none());

    let metrics = get(stack.collector, "/metrics").await.text();
    assert!(
        metrics.contains(r#"tidepool_collector_events_rejected_total{reason="buffer_full"} 20"#),
        "{metrics}"
    );
    assert!(!metrics.contains("tidepool_collector_events_accepted_total 2"));
    stack.broker.shutdown().await;
}

#[tokio::test]
async fn requests_beyond_the_in_flight_limit_are_refused_at_once() {
    // The first request waits for its acknowledgement for the whole linger.
    let producer = ProducerConfig::default().linger(Duration::from_secs(60));
    let config = CollectorConfig {
        requests_in_flight_max: 1,
        ..CollectorConfig::default()
    };
    let stack = stack(producer, config).await;
    let address = stack.collector;
    let waiting = tokio::spawn(async move { post_json(address, &event("slow", "acme")).await });
    // Only once the first request holds the one slot: sent earlier, the second would take it.
    let mut held = false;
    for _ in 0..100 {
        let metrics = get(address, "/metrics").await.text();
        if metrics
            .lines()
            .any(|l| l == "tidepool_collector_requests_in_flight 1")
        {
            held = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(held, "the first request never reached the handler");
    let refused = post_json(address, &event("second", "acme")).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(
        refused.json()["error"]
            .as_str()
            .unwrap()
            .contains("in flight")
    );
    let metrics = get(address, "/metrics").await.text();
    assert!(
        metrics.contains(r#"tidepool_collector_requests_total{status="503"} 1"#),
        "{metrics}"
    );
    waiting.abort();
    stack.broker.shutdown().await;
}

#[tokio::test]
async fn failed_deliveries_answer_503_naming_what_may_have_been_written() {
    let producer = ProducerConfig::default()
        .linger(Duration::ZERO)
        .delivery_timeout(Duration::from_millis(1500));
    let stack = stack(producer, CollectorConfig::default()).await;
    // Metadata cached while the broker is up, so the records are enqueued.
    assert_eq!(
        post_json(stack.collector, &event("warm", "acme"))
            .await
            .status,
        202
    );
    let node = stack.broker.nodes()[0].id;
    stack.broker.control().node_down(node).await.unwrap();
    let batch = json!([event("d-1", "acme"), event("d-2", "globex")]);
    let reply = post_json(stack.collector, &batch).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(reply.header("retry-after").is_some());
    let body = reply.json();
    assert_eq!(body["acknowledged"], json!([]));
    let failed = body["not_acknowledged"].as_array().unwrap();
    let ids: Vec<&str> = failed.iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["d-1", "d-2"]);
    assert!(failed.iter().all(|f| f["reason"].is_string()));
    // A producer that timed out is not broken: the next broker may take the retry.
    assert_eq!(get(stack.collector, "/healthz").await.status, 200);
    stack.broker.control().node_up(node).await.unwrap();
    stack.broker.shutdown().await;
}
