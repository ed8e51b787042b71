//! `/ws`: a client's requests and answers over one WebSocket. Each request frame gets exactly
//! one answer frame with its id, in whatever order the answers come; a reply that lands on
//! another node after a partition move is forwarded and still answers its frame; a bad frame
//! gets an error frame and the socket stays open.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tidepool_client::BoxFuture;
use tidepool_gateway::metrics::RESPONSES_FORWARDED;
use tidepool_gateway::{GatewayConfig, ServiceHandler, ServiceRequest, ServiceResponse};
use tokio::sync::watch;

use support::{Node, Service, Socket, eventually, start_broker, unique};

/// Echoes the request body back as `{"tag": body}`, but only while its gate is open.
struct Gated {
    open: watch::Receiver<bool>,
}

impl ServiceHandler for Gated {
    fn handle<'a>(&'a self, request: &'a ServiceRequest) -> BoxFuture<'a, ServiceResponse> {
        Box::pin(async move {
            let mut open = self.open.clone();
            let _ = open.wait_for(|open| *open).await;
            let tag = String::from_utf8_lossy(&request.body).into_owned();
            ServiceResponse::json(200, &json!({ "tag": tag }))
        })
    }
}

fn config(deployment: &str, node: &str) -> GatewayConfig {
    GatewayConfig {
        // Generous: requests held across a rebalance must not time out on a loaded machine.
        request_timeout: Duration::from_secs(60),
        session_timeout: Duration::from_secs(6),
        forward_deadline: Duration::from_secs(15),
        ws_in_flight_max: 500,
        ..GatewayConfig::new(deployment, node)
    }
}

fn request(service: &str, id: &str, tag: &str) -> Value {
    json!({ "id": id, "method": "POST", "service": service, "path": "/echo", "body": tag })
}

/// Reads `count` answer frames: id → (status, echoed tag); an id answered twice fails.
async fn answers(socket: &mut Socket, count: usize) -> BTreeMap<String, (u64, String)> {
    let mut answers = BTreeMap::new();
    for _ in 0..count {
        let frame = socket.receive().await;
        let id = frame["id"].as_str().expect("an id").to_owned();
        let status = frame["status"].as_u64().unwrap();
        let tag = frame["body"]["tag"].as_str().unwrap_or_default().to_owned();
        assert!(
            answers.insert(id.clone(), (status, tag)).is_none(),
            "{id} answered twice"
        );
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_requests_on_one_socket_each_get_their_reply_once_with_their_id() {
    let broker = start_broker().await;
    let bootstrap = broker.bootstrap();
    let (_gate, open) = watch::channel(true);
    let (gated, deployment) = (unique("gated"), unique("sockets"));
    let service = Service::start(&bootstrap, &gated, Arc::new(Gated { open })).await;
    let node = Node::start(&bootstrap, config(&deployment, "gw-a")).await;
    let mut socket = Socket::open(node.address).await;

    const REQUESTS: usize = 200;
    for index in 0..REQUESTS {
        socket
            .send(&request(
                &gated,
                &format!("r-{index}"),
                &format!("tag-{index}"),
            ))
            .await;
    }
    let answers = answers(&mut socket, REQUESTS).await;
    assert_eq!(answers.len(), REQUESTS);
    for (id, (status, tag)) in &answers {
        assert_eq!(*status, 200, "{id}");
        assert_eq!(
            tag.strip_prefix("tag-"),
            id.strip_prefix("r-"),
            "a request got another request's reply"
        );
    }

    socket.close().await;
    node.stop().await;
    service.stop().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_reply_lands_on_a_node_that_joined_meanwhile_is_still_answered() {
    let broker = start_broker().await;
    let bootstrap = broker.bootstrap();
    let (gate, open) = watch::channel(false);
    let (gated, deployment) = (unique("gated"), unique("sockets"));
    let service = Service::start(&bootstrap, &gated, Arc::new(Gated { open })).await;
    let first = Node::start(&bootstrap, config(&deployment, "gw-a")).await;
    let mut socket = Socket::open(first.address).await;

    // Every request waits on the first node while a second joins and takes about half of the
    // response partitions: the replies on those are read by the second node.
    const REQUESTS: usize = 24;
    for index in 0..REQUESTS {
        socket
            .send(&request(
                &gated,
                &format!("r-{index}"),
                &format!("tag-{index}"),
            ))
            .await;
    }
    eventually("every request is parked", async || {
        first.gateway.parked() == REQUESTS
    })
    .await;
    let second = Node::start(&bootstrap, config(&deployment, "gw-b")).await;
    let all: BTreeSet<i32> = (0..first.gateway.response_partitions()).collect();
    eventually("the partitions split between the nodes", async || {
        let (a, b) = (
            first.gateway.owned_partitions(),
            second.gateway.owned_partitions(),
        );
        !a.is_empty() && !b.is_empty() && a.len() + b.len() == all.len()
    })
    .await;
    gate.send_replace(true);

    let answers = answers(&mut socket, REQUESTS).await;
    for (id, (status, tag)) in &answers {
        assert_eq!(*status, 200, "{id}");
        assert_eq!(tag.strip_prefix("tag-"), id.strip_prefix("r-"));
    }
    let sent = second
        .metrics()
        .counter_value(RESPONSES_FORWARDED, &[("direction", "sent")]);
    assert!(sent > 0, "no reply was forwarded: no partition moved");

    socket.close().await;
    second.stop().await;
    first.stop().await;
    service.stop().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_error_frames_and_the_socket_stays_usable() {
    let broker = start_broker().await;
    let bootstrap = broker.bootstrap();
    let (gate, open) = watch::channel(true);
    let (gated, deployment) = (unique("gated"), unique("sockets"));
    let service = Service::start(&bootstrap, &gated, Arc::new(Gated { open })).await;
    let node = Node::start(
        &bootstrap,
        GatewayConfig {
            ws_in_flight_max: 1,
            ..config(&deployment, "gw-a")
        },
    )
    .await;
    let mut socket = Socket::open(node.address).await;

    socket.send_text("not json").await;
    let frame = socket.receive().await;
    assert_eq!(frame["id"], Value::Null);
    assert_eq!(frame["status"], 400);
    assert!(
        frame["body"]["error"]
            .as_str()
            .unwrap()
            .contains("JSON object")
    );

    socket.send(&json!({ "id": "no-service" })).await;
    let frame = socket.receive().await;
    assert_eq!(
        frame["id"], "no-service",
        "the id is read back when readable"
    );
    assert_eq!(frame["status"], 400);
    assert!(frame["body"]["error"].as_str().unwrap().contains("service"));

    socket.send_binary(b"\x00\x01").await;
    let frame = socket.receive().await;
    assert_eq!(frame["status"], 400);
    assert!(frame["body"]["error"].as_str().unwrap().contains("binary"));

    socket
        .send(&json!({ "id": 7, "service": "nowhere", "path": "/" }))
        .await;
    let frame = socket.receive().await;
    assert_eq!(frame["id"], 7);
    assert_eq!(frame["status"], 404);

    // One request in flight at most: a second one waits its turn elsewhere (503), and the
    // first one's id cannot be reused while it is in flight.
    gate.send_replace(false);
    socket.send(&request(&gated, "held", "held")).await;
    eventually("the request is parked", async || node.gateway.parked() == 1).await;
    socket.send(&request(&gated, "another", "another")).await;
    let frame = socket.receive().await;
    assert_eq!(frame["id"], "another");
    assert_eq!(frame["status"], 503);
    socket.send(&request(&gated, "held", "again")).await;
    let frame = socket.receive().await;
    assert_eq!(frame["id"], "held");
    assert_eq!(frame["status"], 400);
    gate.send_replace(true);
    let frame = socket.receive().await;
    assert_eq!(frame["id"], "held");
    assert_eq!(frame["status"], 200);
    assert_eq!(frame["body"]["tag"], "held");

    socket.close().await;
    node.stop().await;
    service.stop().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_socket_takes_its_waiting_requests_out_of_the_parked_map() {
    let broker = start_broker().await;
    let bootstrap = broker.bootstrap();
    let (_gate, open) = watch::channel(false);
    let (gated, deployment) = (unique("gated"), unique("sockets"));
    let service = Service::start(&bootstrap, &gated, Arc::new(Gated { open })).await;
    let node = Node::start(&bootstrap, config(&deployment, "gw-a")).await;
    let mut socket = Socket::open(node.address).await;

    for index in 0..3 {
        socket
            .send(&request(&gated, &format!("r-{index}"), "held"))
            .await;
    }
    eventually("the requests are parked", async || {
        node.gateway.parked() == 3
    })
    .await;
    socket.close().await;
    eventually("the closed socket's requests leave the map", async || {
        node.gateway.parked() == 0
    })
    .await;

    node.stop().await;
    service.stop().await;
    broker.shutdown().await;
}
