//! Waiting for a state: `POST /api/orders?wait=validated` is answered when the order reaches
//! that state on `orders.events` (CQRS style), not when the orders service replies 201; an order
//! the validator rejects answers with its rejection; without a validator the wait ends in 504.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tidepool_client::BoxFuture;
use tidepool_gateway::metrics::{EVENTS, WAITS};
use tidepool_gateway::{GatewayConfig, ServiceHandler, ServiceRequest, ServiceResponse};

use support::{Node, Orders, Service, Socket, eventually, get, send_json, start_broker, unique};

/// Node gw-1 of a deployment of its own.
fn config() -> GatewayConfig {
    GatewayConfig {
        // Generous: the validator's group may still be joining on a loaded machine.
        request_timeout: Duration::from_secs(30),
        ..GatewayConfig::new(unique("shop"), "gw-1")
    }
}

fn waits(node: &Node, orders: &Orders, outcome: &str) -> u64 {
    node.metrics().counter_value(
        WAITS,
        &[("service", orders.name.as_str()), ("outcome", outcome)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_validated_answers_with_the_validated_order_not_with_the_201_reply() {
    let broker = start_broker().await;
    let bootstrap = broker.bootstrap();
    let orders = Orders::start(&bootstrap, true).await;
    let node = Node::start(&bootstrap, config()).await;

    let answer = send_json(
        node.address,
        "POST",
        &format!("/api/{}?wait=validated", orders.name),
        &json!({"customer": "c-1", "items": [{"sku": "tea", "quantity": 2}]}),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.text());
    assert_eq!(answer.header("x-state"), Some("validated"));
    assert_eq!(
        answer.header("location"),
        Some("/api/orders/o-1"),
        "the service's own Location"
    );
    let order = answer.json();
    assert_eq!(order["id"], "o-1");
    assert_eq!(order["status"], "validated");
    assert_eq!(order["customer"], "c-1");
    assert_eq!(waits(&node, &orders, "reached"), 1);

    // A request that does not wait is answered by the reply, as always.
    let created = send_json(
        node.address,
        "POST",
        &format!("/api/{}", orders.name),
        &json!({"items": [{"sku": "milk", "quantity": 1}]}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["status"], "created");
    assert_eq!(created.header("x-state"), None);

    node.stop().await;
    orders.stop().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_order_waiting_for_validated_is_answered_with_its_rejection() {
    let broker = start_broker().await;
    let bootstrap = broker.bootstrap();
    let orders = Orders::start(&bootstrap, true).await;
    let node = Node::start(&bootstrap, config()).await;

    let answer = send_json(
        node.address,
        "POST",
        &format!("/api/{}?wait=validated", orders.name),
        &json!({"customer": "c-1", "items": [{"sku": "tea", "quantity": 0}]}),
    )
    .await;
    assert_eq!(answer.status, 409, "{}", answer.text());
    assert_eq!(answer.header("x-state"), Some("rejected"));
    let order = answer.json();
    assert_eq!(order["id"], "o-1");
    assert_eq!(order["status"], "rejected");
    assert!(
        order["reason"].as_str().unwrap().contains("quantity"),
        "{order}"
    );
    assert_eq!(waits(&node, &orders, "ended"), 1);

    // The service's own refusal answers at once: no event will follow it.
    let refused = send_json(
        node.address,
        "POST",
        &format!("/api/{}?wait=validated", orders.name),
        &json!([1]),
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert_eq!(waits(&node, &orders, "failed"), 1);

    node.stop().await;
    orders.stop().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_times_out_with_504_when_no_validator_runs_but_a_state_that_is_reached_answers() {
    let broker = start_broker().await;
    let bootstrap = broker.bootstrap();
    let orders = Orders::start(&bootstrap, false).await;
    let node = Node::start(
        &bootstrap,
        GatewayConfig {
            request_timeout: Duration::from_secs(3),
            ..config()
        },
    )
    .await;
    let order = json!({"items": [{"sku": "tea", "quantity": 1}]});

    let answer = send_json(
        node.address,
        "POST",
        &format!("/api/{}?wait=validated", orders.name),
        &order,
    )
    .await;
    assert_eq!(answer.status, 504, "{}", answer.text());
    assert!(
        answer.json()["error"]
            .as_str()
            .unwrap()
            .contains("validated")
    );
    assert_eq!(waits(&node, &orders, "timed_out"), 1);
    assert_eq!(node.gateway.parked(), 0);
    // The order's created event comes and changes nothing.
    eventually("the created event is read and ignored", async || {
        node.metrics()
            .counter_value(EVENTS, &[("outcome", "ignored")])
            >= 1
    })
    .await;

    // Without a validator an order still reaches `created` (on a node with the usual patience).
    node.stop().await;
    let node = Node::start(&bootstrap, config()).await;
    let created = send_json(
        node.address,
        "POST",
        &format!("/api/{}?wait=created", orders.name),
        &order,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.header("x-state"), Some("created"));
    assert_eq!(created.json()["id"], "o-2");

    node.stop().await;
    orders.stop().await;
    broker.shutdown().await;
}

/// Answers every request with 200 and publishes no events.
struct Plain;

impl ServiceHandler for Plain {
    fn handle<'a>(&'a self, _request: &'a ServiceRequest) -> BoxFuture<'a, ServiceResponse> {
        Box::pin(std::future::ready(ServiceResponse::json(200, &json!({}))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_on_a_service_without_events_or_for_a_malformed_state_is_refused() {
    let broker = start_broker().await;
    let bootstrap = broker.bootstrap();
    let plain = unique("plain");
    let service = Service::start(&bootstrap, &plain, Arc::new(Plain)).await;
    let node = Node::start(&bootstrap, config()).await;

    let no_events = get(node.address, &format!("/api/{plain}/x?wait=done")).await;
    assert_eq!(no_events.status, 400, "{}", no_events.text());
    assert_eq!(no_events.json()["events_topic"], format!("{plain}.events"));

    let malformed = get(node.address, &format!("/api/{plain}/x?wait=no%20such")).await;
    assert_eq!(malformed.status, 400, "{}", malformed.text());

    let plain = get(node.address, &format!("/api/{plain}/x")).await;
    assert_eq!(plain.status, 200, "{}", plain.text());

    node.stop().await;
    service.stop().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_request_can_wait_for_validated_too() {
    let broker = start_broker().await;
    let bootstrap = broker.bootstrap();
    let orders = Orders::start(&bootstrap, true).await;
    let node = Node::start(&bootstrap, config()).await;
    let mut socket = Socket::open(node.address).await;

    socket
        .send(&json!({
            "id": "order-1",
            "method": "POST",
            "service": orders.name,
            "path": "/",
            "query": "wait=validated",
            "body": {"items": [{"sku": "tea", "quantity": 3}]},
        }))
        .await;
    let answer = socket.receive().await;
    assert_eq!(answer["id"], "order-1");
    assert_eq!(answer["status"], 201, "{answer}");
    assert_eq!(answer["headers"]["x-state"], "validated");
    assert_eq!(answer["body"]["status"], "validated");

    socket.close().await;
    eventually("the socket's place is given back", async || {
        node.gateway.parked() == 0
    })
    .await;
    node.stop().await;
    orders.stop().await;
    broker.shutdown().await;
}
