//! What the gateway's tests share: an embedded broker, gateway nodes and responders started on
//! it, and a minimal HTTP/1.1 client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tidepool_broker::{Broker, BrokerHandle};
use tidepool_client::{Admin, Client, ClientConfig, NewTopic};
use tidepool_gateway::{
    Gateway, GatewayConfig, GatewayMetrics, Responder, ResponderConfig, ServiceHandler,
};
use tidepool_io::{Clock, Env, SystemClock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Generous: the tests run on a loaded two-core machine; nothing here measures speed.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub async fn start_broker() -> BrokerHandle {
    Broker::builder()
        .memory()
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .start()
        .await
        .expect("an embedded broker")
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
