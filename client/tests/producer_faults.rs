//! The producer under faults an embedded Tidepool injects: leaders moving mid-stream, nodes
//! going down and up, and answers that never arrive. Each test reads the partition back and
//! checks every record is stored exactly once, in the order it was sent.

mod support;

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use support::fetch::fetch_all;
use support::{TestCluster, unique_topic};
use tidepool_client::partitioner::partition_for_key;
use tidepool_client::{
    Admin, Client, DeliveryFuture, Error, NewTopic, Producer, ProducerConfig, ProducerRecord,
    RecordMetadata,
};
use tidepool_io::{BoxFuture, BoxStream, Env, Listener, TokioTransport, Transport};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A topic replicated on every node, so a leader can move anywhere.
async fn replicated_topic(client: &Client, prefix: &str, partitions: i32, replicas: i16) -> String {
    let topic = unique_topic(prefix);
    Admin::new(client.clone())
        .create_topic(NewTopic::new(&topic, partitions, replicas))
        .await
        .expect("create the topic");
    topic
}

async fn deliver(futures: Vec<DeliveryFuture>) -> Vec<RecordMetadata> {
    let mut delivered = Vec::with_capacity(futures.len());
    for future in futures {
        delivered.push(future.await.expect("the record is delivered"));
    }
    delivered
}

/// Sends `count` keyed records numbered from `first`, and returns their futures and, per
/// partition, the values in the order they were sent.
async fn send_numbered(
    producer: &Producer,
    topic: &str,
    partitions: i32,
    range: std::ops::Range<usize>,
    expected: &mut BTreeMap<i32, Vec<Bytes>>,
) -> Vec<DeliveryFuture> {
    let mut futures = Vec::new();
    for i in range {
        let key = format!("key-{}", i % 16);
        let value = Bytes::from(format!("value-{i}"));
        let partition = partition_for_key(key.as_bytes(), partitions);
        expected.entry(partition).or_default().push(value.clone());
        let record = ProducerRecord::new(topic, value).key(key);
        futures.push(producer.send(record).await.expect("buffered"));
    }
    futures
}

/// Reads every partition back and compares it with what was sent to it, in order.
async fn assert_stored_exactly_once(
    client: &Client,
    topic: &str,
    expected: &BTreeMap<i32, Vec<Bytes>>,
) {
    for (partition, sent) in expected {
        let stored: Vec<Bytes> = fetch_all(client, topic, *partition)
            .await
            .into_iter()
            .filter_map(|record| record.value)
            .collect();
        assert_eq!(
            stored.len(),
            sent.len(),
            "{topic}-{partition}: lost or duplicated"
        );
        assert_eq!(&stored, sent, "{topic}-{partition}: out of order");
    }
}

/// Offsets a partition handed out must be 0, 1, 2, ... in send order.
fn assert_consecutive_offsets(delivered: &[RecordMetadata]) {
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for metadata in delivered {
        let expected = next.entry(metadata.partition).or_default();
        assert_eq!(
            metadata.offset, *expected,
            "partition {}",
            metadata.partition
        );
        *expected += 1;
    }
}

/// Sends records numbered `range` at a pace, yielding every few records so batches are sent
/// and answered while the stream goes on.
async fn send_paced(
    producer: &Producer,
    topic: &str,
    range: std::ops::Range<usize>,
    expected: &mut BTreeMap<i32, Vec<Bytes>>,
) -> Vec<DeliveryFuture> {
    let mut futures = Vec::new();
    for start in range.clone().step_by(50) {
        let end = (start + 50).min(range.end);
        futures.extend(send_numbered(producer, topic, 3, start..end, expected).await);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    futures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaders_moved_mid_stream_lose_and_duplicate_nothing() {
    let cluster = TestCluster::embedded(3).await;
    let control = cluster.broker().unwrap().control();
    let client = cluster.client().await;
    let topic = replicated_topic(&client, "moved", 3, 3).await;
    // Small batches, so several requests per partition are in flight when a leader moves.
    let config = ProducerConfig::default()
        .batch_bytes(1024)
        .linger(Duration::from_millis(1));
    let producer = Producer::new(client.clone(), config).await.unwrap();
    let nodes: Vec<i32> = cluster
        .broker()
        .unwrap()
        .nodes()
        .iter()
        .map(|n| n.id)
        .collect();
    let mut expected = BTreeMap::new();
    let mut futures = Vec::new();
    for round in 0..3 {
        if round > 0 {
            for partition in 0..3 {
                let (leader, _) = control.leader(&topic, partition).unwrap();
                let next = nodes
                    .iter()
                    .position(|&n| n == leader)
                    .map_or(0, |i| (i + 1) % nodes.len());
                control.move_leader(&topic, partition, nodes[next]).unwrap();
            }
        }
        futures.extend(
            send_paced(
                &producer,
                &topic,
                round * 1000..(round + 1) * 1000,
                &mut expected,
            )
            .await,
        );
    }
    let delivered = deliver(futures).await;
    for partition in 0..3 {
        let (_, epoch) = client.leader(&topic, partition).unwrap();
        assert_eq!(
            epoch, 2,
            "the producer learned of both moves of partition {partition}"
        );
    }
    assert_consecutive_offsets(&delivered);
    assert_stored_exactly_once(&client, &topic, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_going_down_and_up_is_retried_and_delivered() {
    let cluster = TestCluster::embedded(3).await;
    let control = cluster.broker().unwrap().control();
    let client = cluster.client().await;
    let topic = replicated_topic(&client, "down", 3, 3).await;
    let config = ProducerConfig::default()
        .batch_bytes(1024)
        .linger(Duration::from_millis(1));
    let producer = Producer::new(client.clone(), config).await.unwrap();
    let mut expected = BTreeMap::new();
    let mut futures = send_paced(&producer, &topic, 0..500, &mut expected).await;

    let (down, _) = control.leader(&topic, 0).unwrap();
    control.node_down(down).await.unwrap();
    futures.extend(send_paced(&producer, &topic, 500..1000, &mut expected).await);
    control.node_up(down).await.unwrap();
    futures.extend(send_paced(&producer, &topic, 1000..1500, &mut expected).await);

    let delivered = deliver(futures).await;
    let (leader, _) = client.leader(&topic, 0).unwrap();
    assert_ne!(
        leader, down,
        "the producer learned partition 0's new leader"
    );
    assert_consecutive_offsets(&delivered);
    assert_stored_exactly_once(&client, &topic, &expected).await;
}

#[tokio::test]
async fn try_send_is_refused_while_a_partition_without_leader_holds_the_buffer() {
    let cluster = TestCluster::embedded(3).await;
    let control = cluster.broker().unwrap().control();
    let client = cluster.client().await;
    // One replica: with its node down the partition has no leader at all.
    let topic = replicated_topic(&client, "leaderless", 1, 1).await;
    let config = ProducerConfig::default()
        .buffer_bytes(4096)
        .linger(Duration::ZERO);
    let producer = Producer::new(client.clone(), config).await.unwrap();
    producer
        .send(ProducerRecord::new(&topic, "first"))
        .await
        .unwrap()
        .await
        .unwrap();

    let (leader, _) = control.leader(&topic, 0).unwrap();
    control.node_down(leader).await.unwrap();
    let mut accepted = Vec::new();
    let refused = loop {
        match producer.try_send(ProducerRecord::new(&topic, vec![b'x'; 1000])) {
            Ok(future) => accepted.push(future),
            Err(error) => break error,
        }
        assert!(accepted.len() < 10, "4 KiB cannot hold 10 records of 1 KB");
    };
    assert!(matches!(refused, Error::BufferFull), "{refused}");

    control.node_up(leader).await.unwrap();
    let delivered = deliver(accepted).await;
    assert_eq!(delivered.last().unwrap().offset, delivered.len() as i64);
    assert_eq!(
        fetch_all(&client, &topic, 0).await.len(),
        delivered.len() + 1
    );
}

#[tokio::test]
async fn an_idempotent_request_that_times_out_is_retried_without_duplicates() {
    let cluster = TestCluster::embedded(3).await;
    let transport = StallingTransport::default();
    let client = stalling_client(&cluster, &transport).await;
    let topic = replicated_topic(&client, "timeout-idempotent", 1, 3).await;
    let producer = Producer::new(client.clone(), ProducerConfig::default())
        .await
        .unwrap();
    producer
        .send(ProducerRecord::new(&topic, "before"))
        .await
        .unwrap()
        .await
        .unwrap();

    // The broker writes the record, but its answer never reaches the producer.
    transport.stall_open_connections();
    let delivered = producer
        .send(ProducerRecord::new(&topic, "during"))
        .await
        .unwrap()
        .await;

    assert_eq!(delivered.expect("retried after the timeout").offset, 1);
    let stored: Vec<Bytes> = fetch_all(&client, &topic, 0)
        .await
        .into_iter()
        .filter_map(|r| r.value)
        .collect();
    assert_eq!(stored, vec![Bytes::from("before"), Bytes::from("during")]);
}

#[tokio::test]
async fn without_idempotence_a_timed_out_request_has_an_unknown_outcome() {
    let cluster = TestCluster::embedded(3).await;
    let transport = StallingTransport::default();
    let client = stalling_client(&cluster, &transport).await;
    let topic = replicated_topic(&client, "timeout-plain", 1, 3).await;
    let config = ProducerConfig::default().idempotence(false);
    let producer = Producer::new(client.clone(), config).await.unwrap();
    producer
        .send(ProducerRecord::new(&topic, "before"))
        .await
        .unwrap()
        .await
        .unwrap();

    transport.stall_open_connections();
    let outcome = producer
        .send(ProducerRecord::new(&topic, "during"))
        .await
        .unwrap()
        .await;

    let error = outcome.expect_err("no answer is not a success");
    assert!(matches!(error, Error::UnknownOutcome(_)), "{error}");
    // Unknown, not failed: the broker did write it, once (it was not retried).
    let stored: Vec<Bytes> = fetch_all(&client, &topic, 0)
        .await
        .into_iter()
        .filter_map(|r| r.value)
        .collect();
    assert_eq!(stored, vec![Bytes::from("before"), Bytes::from("during")]);
}

async fn stalling_client(cluster: &TestCluster, transport: &StallingTransport) -> Client {
    let env = Env {
        transport: Arc::new(transport.clone()),
        ..Env::real()
    };
    let config = cluster.config().request_timeout(Duration::from_millis(500));
    Client::connect(env, config)
        .await
        .expect("connect a client")
}

/// Real TCP whose open connections can be made to stop delivering what the broker sends, as a
/// hung broker or a black-holed network would. Connections opened later work normally.
#[derive(Clone, Default)]
struct StallingTransport {
    streams: Arc<Mutex<Vec<Weak<AtomicBool>>>>,
}

impl StallingTransport {
    fn stall_open_connections(&self) {
        for stream in self.streams.lock().unwrap().iter() {
            if let Some(stalled) = stream.upgrade() {
                stalled.store(true, Ordering::SeqCst);
            }
        }
    }
}

impl Transport for StallingTransport {
    fn bind(&self, addr: std::net::SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Listener>>> {
        Box::pin(async move { TokioTransport.bind(addr).await })
    }

    fn connect<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<BoxStream>> {
        Box::pin(async move {
            let inner = TokioTransport.connect(host, port).await?;
            let stalled = Arc::new(AtomicBool::new(false));
            self.streams.lock().unwrap().push(Arc::downgrade(&stalled));
            Ok(Box::new(StallingStream { inner, stalled }) as BoxStream)
        })
    }
}

struct StallingStream {
    inner: BoxStream,
    stalled: Arc<AtomicBool>,
}

impl AsyncRead for StallingStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.stalled.load(Ordering::SeqCst) {
            // Never ready: the client gives up on the request and closes the connection.
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallingStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
