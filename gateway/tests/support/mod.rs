//! What the gateway's tests share: a cluster (an embedded broker, or the one named by
//! TIDEPOOL_TEST_BOOTSTRAP, so the same tests run against Apache Kafka), gateway nodes and
//! responders started on it, the orders service with its events (outbox relay, validator), a
//! minimal HTTP/1.1 client and a WebSocket client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tidepool_broker::{Broker, BrokerHandle};
use tidepool_client::{Admin, Client, ClientConfig, NewTopic, Producer, ProducerConfig};
use tidepool_gateway::services::{OrderValidator, OrdersService, ValidatorConfig};
use tidepool_gateway::{
    Gateway, GatewayConfig, GatewayMetrics, Responder, ResponderConfig, ServiceHandler,
};
use tidepool_io::{Clock, Env, SystemClock};
use tidepool_pipeline::stages::OutboxRelay;
use tidepool_pipeline::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// Generous: the tests run on a loaded two-core machine; nothing here measures speed.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Names an external cluster to run against instead of an embedded broker.
pub const EXTERNAL_BOOTSTRAP: &str = "TIDEPOOL_TEST_BOOTSTRAP";

/// The cluster a test talks to.
pub enum Cluster {
    Embedded(BrokerHandle),
    External(String),
}

impl Cluster {
    pub fn bootstrap(&self) -> String {
        match self {
            Cluster::Embedded(broker) => broker.bootstrap(),
            Cluster::External(bootstrap) => bootstrap.clone(),
        }
    }

    /// The embedded broker, for tests that drive it through its control API (they cannot run
    /// against an external cluster).
    pub fn embedded(&self) -> Option<&BrokerHandle> {
        match self {
            Cluster::Embedded(broker) => Some(broker),
            Cluster::External(_) => None,
        }
    }

    pub async fn shutdown(self) {
        if let Cluster::Embedded(broker) = self {
            broker.shutdown().await;
        }
    }
}

/// The external cluster if TIDEPOOL_TEST_BOOTSTRAP names one, else a fresh embedded broker in
/// memory. Tests share an external cluster (and it outlives them), so every topic, service,
/// deployment and group a test makes is named with [`unique`].
pub async fn start_broker() -> Cluster {
    if let Ok(bootstrap) = std::env::var(EXTERNAL_BOOTSTRAP)
        && !bootstrap.is_empty()
    {
        return Cluster::External(bootstrap);
    }
    let broker = Broker::builder()
        .memory()
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .start()
        .await
        .expect("an embedded broker");
    Cluster::Embedded(broker)
}

/// `name` made unique to this call in this test run: `{name}-{run}-{n}`, where `run` differs
/// between processes and runs, so tests sharing a cluster (at once, or one run after another)
/// never meet in a topic, a service or a consumer group. Letters, digits and `-` only, so it
/// fits service, deployment and topic names.
pub fn unique(name: &str) -> String {
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUN.get_or_init(|| {
        let wall_ms = SystemClock::new().wall_ms();
        format!("{:x}{:x}", wall_ms % (1 << 32), std::process::id())
    });
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{name}-{run}-{n}")
}

pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let client = Client::connect(Env::real(), ClientConfig::new(bootstrap))
        .await
        .unwrap();
    Admin::new(client.clone())
        .create_topic(NewTopic::new(topic, partitions, 1))
        .await
        .unwrap();
    client.close();
}

/// A gateway node serving HTTP on a loopback port.
pub struct Node {
    pub gateway: Gateway,
    pub address: SocketAddr,
    server: JoinHandle<std::io::Result<()>>,
}

impl Node {
    /// Starts a node announcing the loopback port it serves on (so other nodes can forward
    /// replies to it) and waits until it owns a response partition.
    pub async fn start(bootstrap: &str, mut config: GatewayConfig) -> Node {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        config.advertised_address.get_or_insert(address.to_string());
        let gateway = Gateway::start(Env::real(), bootstrap, config)
            .await
            .unwrap();
        assert!(
            gateway.wait_until_ready(PATIENCE).await,
            "the gateway node never got a response partition"
        );
        let server = tokio::spawn(gateway.serve(listener));
        Node {
            gateway,
            address,
            server,
        }
    }

    pub fn metrics(&self) -> &GatewayMetrics {
        self.gateway.metrics()
    }

    pub async fn stop(self) {
        self.gateway.shutdown().await;
        let _ = self.server.await;
    }
}

/// A responder running in the background.
pub struct Service {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    pub metrics: GatewayMetrics,
}

impl Service {
    /// Creates the service's request topic and starts its responder.
    pub async fn start(bootstrap: &str, name: &str, handler: Arc<dyn ServiceHandler>) -> Service {
        create_topic(bootstrap, &format!("{name}.requests"), 3).await;
        Service::start_on_existing_topic(bootstrap, name, handler).await
    }

    pub async fn start_on_existing_topic(
        bootstrap: &str,
        name: &str,
        handler: Arc<dyn ServiceHandler>,
    ) -> Service {
        let metrics = GatewayMetrics::new();
        let responder = Responder::start(
            Env::real(),
            bootstrap,
            ResponderConfig::new(name),
            handler,
            metrics.clone(),
        )
        .await
        .unwrap();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            responder.run(stopped).await.unwrap();
        });
        Service {
            stop,
            task,
            metrics,
        }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The orders service as `tidepool up` runs it, under a [`unique`] name: its requests topic,
/// its events topic, the outbox relay that publishes its events and, unless left out, the
/// order validator.
pub struct Orders {
    /// The service's name: requests go to `/api/{name}`.
    pub name: String,
    service: Service,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    relay_client: Client,
}

impl Orders {
    pub async fn start(bootstrap: &str, with_validator: bool) -> Orders {
        let name = unique("orders");
        let events_topic = format!("{name}.events");
        create_topic(bootstrap, &events_topic, 3).await;
        let store = Store::memory().unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let orders = OrdersService::new(store.clone(), Arc::clone(&clock))
            .events_topic(events_topic.clone());
        let service = Service::start(bootstrap, &name, Arc::new(orders)).await;
        let (stop, stopped) = watch::channel(false);
        let relay_client = Client::connect(Env::real(), ClientConfig::new(bootstrap))
            .await
            .unwrap();
        let producer = Producer::new(
            relay_client.clone(),
            ProducerConfig::default().linger(Duration::ZERO),
        )
        .await
        .unwrap();
        let relay = OutboxRelay::new(store, clock, producer);
        let mut tasks = vec![tokio::spawn(relay.run(stopped.clone()))];
        if with_validator {
            let config = ValidatorConfig {
                group: format!("{name}.validator"),
                events_topic,
                ..ValidatorConfig::default()
            };
            let validator = OrderValidator::start(Env::real(), bootstrap, config)
                .await
                .unwrap();
            tasks.push(tokio::spawn(async move {
                validator.run(stopped).await.unwrap();
            }));
        }
        Orders {
            name,
            service,
            stop,
            tasks,
            relay_client,
        }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.relay_client.close();
        self.service.stop().await;
    }
}

/// A WebSocket on a node's `/ws`.
pub struct Socket {
    stream: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
}

impl Socket {
    pub async fn open(address: SocketAddr) -> Socket {
        let (stream, _) = tokio_tungstenite::connect_async(format!("ws://{address}/ws"))
            .await
            .unwrap();
        Socket { stream }
    }

    pub async fn send(&mut self, frame: &Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::Text(text.to_owned().into()))
            .await
            .unwrap();
    }

    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.stream
            .send(Message::Binary(bytes.to_vec().into()))
            .await
            .unwrap();
    }

    /// The next text frame, as JSON; fails after [`PATIENCE`] or if the socket closes.
    pub async fn receive(&mut self) -> Value {
        let next = async {
            loop {
                match self.stream.next().await {
                    Some(Ok(Message::Text(text))) => {
                        return serde_json::from_str(text.as_str()).unwrap();
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    other => panic!("the socket ended: {other:?}"),
                }
            }
        };
        tokio::time::timeout(PATIENCE, next)
            .await
            .expect("no frame in time")
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
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
            panic!(
                "{error}: {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            );
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 exchange on a fresh connection, the request in one write.
pub async fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    raw(address, &request).await
}

/// Sends `request` as given, in one write, and reads the answer until the server closes.
pub async fn raw(address: SocketAddr, request: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    parse(&answer)
}

fn parse(raw: &[u8]) -> Reply {
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

pub async fn get(address: SocketAddr, path: &str) -> Reply {
    http(address, "GET", path, &[], b"").await
}

pub async fn send_json(address: SocketAddr, method: &str, path: &str, body: &Value) -> Reply {
    http(
        address,
        method,
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
    .await
}

/// Waits until `done` holds, polling; fails with `what` after [`PATIENCE`].
pub async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let clock = SystemClock::new();
    let deadline = clock.now() + PATIENCE;
    while !done().await {
        assert!(clock.now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
