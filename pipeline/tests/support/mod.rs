//! What the pipeline's tests share: a cluster (an embedded broker, or the one named by
//! TIDEPOOL_TEST_BOOTSTRAP, so the same tests run against Apache Kafka) and a minimal HTTP/1.1
//! client for the collector.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tidepool_broker::{Broker, BrokerHandle};
use tidepool_client::{
    Client, Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, TopicPartition,
};
use tidepool_io::{Clock, SystemClock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Names an external cluster to run against instead of an embedded broker.
pub const EXTERNAL_BOOTSTRAP: &str = "TIDEPOOL_TEST_BOOTSTRAP";

/// The cluster a test talks to.
pub enum Cluster {
    Embedded(BrokerHandle),
    External(String),
}

impl Cluster {
    /// The external cluster if TIDEPOOL_TEST_BOOTSTRAP names one, else a fresh embedded
    /// three-node broker in memory.
    pub async fn start() -> Cluster {
        if let Ok(bootstrap) = std::env::var(EXTERNAL_BOOTSTRAP)
            && !bootstrap.is_empty()
        {
            return Cluster::External(bootstrap);
        }
        let broker = Broker::builder()
            .memory()
            .nodes(3)
            .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .start()
            .await
            .expect("an embedded broker");
        Cluster::Embedded(broker)
    }

    pub fn bootstrap(&self) -> String {
        match self {
            Cluster::Embedded(broker) => broker.bootstrap(),
            Cluster::External(bootstrap) => bootstrap.clone(),
        }
    }

    pub fn broker(&self) -> Option<&BrokerHandle> {
        match self {
            Cluster::Embedded(broker) => Some(broker),
            Cluster::External(_) => None,
        }
    }

    pub async fn stop(self) {
        if let Cluster::Embedded(broker) = self {
            broker.shutdown().await;
        }
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!("{error}: {}", String::from_utf8_lossy(&self.body));
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 exchange on a fresh connection. The request goes out in one write so the
/// server reads it whole even when it answers before looking at the body (an early 413 must
/// not meet unread bytes, which would reset the connection under the answer).
pub async fn http(address: SocketAddr, head: &str, body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let mut request =
        format!("{head}\r\nHost: collector\r\nConnection: close\r\n\r\n").into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(key, value)| {
        key.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&raw[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return body;
        }
        let start = line_end + 2;
        body.extend_from_slice(&raw[start..start + size]);
        raw = &raw[start + size + 2..];
    }
}

pub async fn post_json(address: SocketAddr, body: &Value) -> Reply {
    let bytes = body.to_string().into_bytes();
    post_raw(address, "application/json", &bytes).await
}

pub async fn post_raw(address: SocketAddr, content_type: &str, body: &[u8]) -> Reply {
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nContent-Type: {content_type}\r\nContent-Length: {}",
        body.len()
    );
    http(address, &head, body).await
}

pub async fn get(address: SocketAddr, path: &str) -> Reply {
    http(address, &format!("GET {path} HTTP/1.1"), b"").await
}

/// Waits until `done` holds, polling; fails with `what` after `limit`.
pub async fn eventually(limit: Duration, what: &str, mut done: impl AsyncFnMut() -> bool) {
    let clock = SystemClock::new();
    let deadline = clock.now() + limit;
    while !done().await {
        assert!(clock.now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every record of `topic` from the beginning, read by a standalone consumer.
pub async fn read_topic(client: &Client, topic: &str, partitions: i32) -> Vec<ConsumerRecord> {
    let consumer = Consumer::new(
        client.clone(),
        ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest),
    )
    .await
    .unwrap();
    consumer
        .assign(
            (0..partitions)
                .map(|p| TopicPartition::new(topic, p))
                .collect(),
        )
        .await
        .unwrap();
    let mut records = Vec::new();
    let mut quiet = 0;
    while quiet < 3 {
        let batch = consumer.poll(Duration::from_millis(200)).await.unwrap();
        if batch.is_empty() {
            quiet += 1;
        } else {
            quiet = 0;
            records.extend(batch);
        }
    }
    consumer.close().await.unwrap();
    records
}
