//! The control plane over HTTP (src/control.rs): each route does what the Rust API does, bad
//! input gets a 4xx with a reason, and /openapi.json describes every route. Real clients
//! experiencing the faults are in tests/control_clients.rs.

use std::net::SocketAddr;

use serde_json::{Value, json};
use tidepool::{Broker, BrokerHandle};
use tidepool_client::{Client, ClientConfig, Producer, ProducerConfig, ProducerRecord};
use tidepool_io::Env;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start() -> (BrokerHandle, SocketAddr) {
    let broker = Broker::builder()
        .memory()
        .nodes(3)
        .start()
        .await
        .expect("broker starts");
    let (address, _server) =
        tidepool::control::start("127.0.0.1:0".parse().unwrap(), broker.control())
            .await
            .expect("control server starts");
    (broker, address)
}

/// One HTTP/1.1 exchange; returns the status and the body as JSON (Null if not JSON).
async fn call(address: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|body| body.to_string()).unwrap_or_default();
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn producer(broker: &BrokerHandle) -> (Client, Producer) {
    let client = Client::connect(Env::real(), ClientConfig::new(broker.bootstrap()))
        .await
        .unwrap();
    let producer = Producer::new(client.clone(), ProducerConfig::default())
        .await
        .unwrap();
    (client, producer)
}

#[tokio::test]
async fn errors_pushed_over_http_are_retried_by_the_producer_and_show_in_the_request_log() {
    let (broker, control) = start().await;
    let orders = tidepool_broker::cluster::TopicRequest {
        name: "orders".into(),
        partitions: 1,
        replication_factor: 1,
        ..Default::default()
    };
    broker.cluster().create_topic(&orders, false).unwrap();
    let (client, producer) = producer(&broker).await;
    producer
        .send(ProducerRecord::new("orders", "warm-up"))
        .await
        .unwrap()
        .await
        .unwrap();

    let (status, answer) = call(
        control,
        "POST",
        "/errors",
        Some(json!({ "api": "Produce", "errors": ["NOT_LEADER_OR_FOLLOWER", 6] })),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["pushed"], 2);
    let (_, before) = call(control, "GET", "/requests", None).await;
    let since = before.as_array().unwrap().last().unwrap()["seq"]
        .as_u64()
        .unwrap()
        + 1;

    producer
        .send(ProducerRecord::new("orders", "after two refusals"))
        .await
        .unwrap()
        .await
        .expect("delivered after the retriable errors");

    let (status, log) = call(control, "GET", &format!("/requests?since={since}"), None).await;
    assert_eq!(status, 200);
    let produces: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["api"] == "Produce")
        .collect();
    assert_eq!(produces.len(), 3, "{log}");
    assert_eq!(
        produces[0]["error_names"],
        json!(["NOT_LEADER_OR_FOLLOWER"])
    );
    assert_eq!(produces[1]["error_codes"], json!([6]));
    assert_eq!(produces[2]["error_codes"], json!([]));
    producer.close().await.unwrap();
    client.close();
}

#[tokio::test]
async fn interceptions_are_added_listed_observed_and_removed_over_http() {
    let (broker, control) = start().await;
    let (status, added) = call(
        control,
        "POST",
        "/interceptions",
        Some(json!({ "api": "Metadata", "action": "observe" })),
    )
    .await;
    assert_eq!(status, 201, "{added}");
    let id = added["id"].as_u64().unwrap();
    let (_, listed) = call(control, "GET", "/interceptions", None).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    let (client, producer) = producer(&broker).await;
    producer.close().await.unwrap();
    client.close();
    let (status, seen) = call(
        control,
        "GET",
        &format!("/interceptions/{id}/observed"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        !seen.as_array().unwrap().is_empty(),
        "the client asked for metadata"
    );

    let (status, _) = call(control, "DELETE", &format!("/interceptions/{id}"), None).await;
    assert_eq!(status, 200);
    let (status, answer) = call(control, "DELETE", &format!("/interceptions/{id}"), None).await;
    assert_eq!(status, 404, "{answer}");
}

#[tokio::test]
async fn leadership_nodes_groups_and_the_version_cap_are_controlled_over_http() {
    let (broker, control) = start().await;
    let topic = tidepool_broker::cluster::TopicRequest {
        name: "moved".into(),
        partitions: 1,
        replication_factor: 3,
        ..Default::default()
    };
    broker.cluster().create_topic(&topic, false).unwrap();
    let (status, moved) = call(
        control,
        "POST",
        "/partitions/moved/0/leader",
        Some(json!({ "node": 2 })),
    )
    .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(broker.control().leader("moved", 0).unwrap().0, 2);

    let (status, _) = call(control, "POST", "/nodes/3/down", None).await;
    assert_eq!(status, 200);
    let (status, refused) = call(control, "POST", "/nodes/3/down", None).await;
    assert_eq!(status, 409, "{refused}");
    let (status, _) = call(control, "POST", "/nodes/3/up", None).await;
    assert_eq!(status, 200);

    let (status, capped) = call(
        control,
        "PUT",
        "/version-cap",
        Some(json!({ "release": "3.7" })),
    )
    .await;
    assert_eq!(status, 200, "{capped}");
    assert_eq!(broker.control().version_cap(), Some("3.7"));
    let (status, _) = call(
        control,
        "PUT",
        "/version-cap",
        Some(json!({ "release": null })),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(broker.control().version_cap(), None);

    let (status, refused) = call(control, "POST", "/groups/nobody/rebalance", None).await;
    assert_eq!(status, 409, "{refused}");
    let (status, _) = call(
        control,
        "PUT",
        "/nodes/1/round-trip",
        Some(json!({ "delay_ms": 5 })),
    )
    .await;
    assert_eq!(status, 200);

    let (_, actions) = call(control, "GET", "/actions", None).await;
    let described: Vec<&str> = actions
        .as_array()
        .unwrap()
        .iter()
        .map(|action| action["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        described,
        vec![
            "move leader of moved-0 to node 2 (epoch 1)",
            "node 3 down",
            "node 3 up",
            "cap API versions at Kafka 3.7",
            "lift the API version cap",
            "round trip of node 1: 5 ms",
        ]
    );
    let (status, _) = call(control, "POST", "/reset", None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn bad_control_requests_get_a_reason_and_change_nothing() {
    let (broker, control) = start().await;
    let cases = [
        (
            "POST",
            "/interceptions",
            json!({ "api": "Produce", "action": "explode" }),
        ),
        (
            "POST",
            "/interceptions",
            json!({ "api": "NoSuchApi", "action": "drop" }),
        ),
        (
            "POST",
            "/interceptions",
            json!({ "api": "Produce", "action": "error" }),
        ),
        (
            "POST",
            "/interceptions",
            json!({ "api": "Produce", "action": "drop", "times": 0 }),
        ),
        (
            "POST",
            "/errors",
            json!({ "api": "Produce", "errors": ["NOT_A_KAFKA_ERROR"] }),
        ),
        ("POST", "/errors", json!({ "api": "Produce", "errors": [] })),
        (
            "POST",
            "/partition-errors",
            json!({ "topic": "t", "partition": 0, "api": "Metadata", "errors": [6] }),
        ),
        ("PUT", "/version-cap", json!({ "release": "0.9" })),
        (
            "POST",
            "/errors",
            json!({ "api": "Produce", "errors": [6], "surprise": true }),
        ),
    ];
    for (method, path, body) in cases {
        let (status, answer) = call(control, method, path, Some(body.clone())).await;
        assert_eq!(status, 400, "{method} {path} {body} → {answer}");
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|reason| !reason.is_empty())
        );
    }
    let (status, _) = call(
        control,
        "PUT",
        "/nodes/99/round-trip",
        Some(json!({ "delay_ms": 1 })),
    )
    .await;
    assert_eq!(status, 404);
    assert!(broker.control().interceptions().is_empty());
    assert!(broker.control().actions().is_empty(), "nothing was done");
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let (_broker, control) = start().await;
    let (status, document) = call(control, "GET", "/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.0.3");
    let paths = document["paths"].as_object().unwrap();
    for route in [
        "/openapi.json",
        "/state",
        "/interceptions",
        "/interceptions/{id}",
        "/interceptions/{id}/observed",
        "/errors",
        "/partition-errors",
        "/nodes/{node}/round-trip",
        "/nodes/{node}/down",
        "/nodes/{node}/up",
        "/partitions/{topic}/{partition}/leader",
        "/partitions/{topic}/{partition}/roll",
        "/partitions/{topic}/{partition}/clean",
        "/groups/{group}/coordinator",
        "/groups/{group}/rebalance",
        "/version-cap",
        "/requests",
        "/actions",
        "/reset",
    ] {
        assert!(paths.contains_key(route), "{route} is not described");
    }
    assert_eq!(paths.len(), 19, "every described route is served");
}
