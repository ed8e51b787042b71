//! The gateway's own answers and guarantees, over real HTTP against an embedded broker (or the
//! cluster named by TIDEPOOL_TEST_BOOTSTRAP): routing to services that exist, the parked-request
//! bound, deadlines, late replies, correlation ids.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tidepool_client::BoxFuture;
use tidepool_client::partitioner::partition_for_key;
use tidepool_gateway::metrics::{RESPONSES_DELIVERED, RESPONSES_DROPPED, TIMEOUTS, UNAVAILABLE};
use tidepool_gateway::{
    CorrelationId, Gateway, GatewayConfig, ServiceHandler, ServiceRequest, ServiceResponse,
};
use tidepool_io::Env;
use tokio::sync::Semaphore;

use support::{Node, PATIENCE, Service, create_topic, eventually, get, http, start_broker, unique};

/// Answers with what it was asked: method, path, query, headers and body.
struct Echo;

impl ServiceHandler for Echo {
    fn handle<'a>(&'a self, request: &'a ServiceRequest) -> BoxFuture<'a, ServiceResponse> {
        let headers: serde_json::Map<String, serde_json::Value> = request
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), json!(value)))
            .collect();
        let body = json!({
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "headers": headers,
            "body": String::from_utf8_lossy(&request.body),
            "correlation_id": request.correlation_id,
            "has_deadline": request.deadline_ms.is_some(),
        });
        Box::pin(std::future::ready(
            ServiceResponse::json(200, &body).header("x-served-by", "echo"),
        ))
    }
}

/// Answers with the request's `x-tag`; a request tagged `held` waits for a permit first.
struct Held {
    gate: Arc<Semaphore>,
}

impl ServiceHandler for Held {
    fn handle<'a>(&'a self, request: &'a ServiceRequest) -> BoxFuture<'a, ServiceResponse> {
        Box::pin(async move {
            let tag = request.header("x-tag").unwrap_or_default().to_owned();
            if tag == "held" {
                let _permit = self.gate.acquire().await.unwrap();
            }
            ServiceResponse::json(200, &json!({ "tag": tag }))
        })
    }
}

/// Node gw-1 of a deployment of its own.
fn config(deployment: &str) -> GatewayConfig {
    GatewayConfig::new(unique(deployment), "gw-1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_reaches_its_service_with_method_path_query_and_forwarded_headers() {
    let broker = start_broker().await;
    let bootstrap = broker.bootstrap();
    let echo = unique("echo");
    let service = Service::start(&bootstrap, &echo, Arc::new(Echo)).await;
    let node = Node::start(&bootstrap, config("echo")).await;

    let reply = http(
        node.address,
        "PATCH",
        &format!("/api/{echo}/things/7?verbose=1&x=y"),
        &[
            ("Content-Type", "text/plain"),
            ("X-Request-Id", "r-42"),
            ("Authorization", "Bearer secret"),
        ],
        b"hello",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-served-by"), Some("echo"));
    let seen = reply.json();
    assert_eq!(seen["method"], "PATCH");
    assert_eq!(seen["path"], "/things/7");
    assert_eq!(seen["query"], "verbose=1&x=y");
    assert_eq!(seen["body"], "hello");
    assert_eq!(seen["has_deadline"], true);
    assert_eq!(seen["headers"]["content-type"], "text/plain");
    assert_eq!(seen["headers"]["x-request-id"], "r-42");
    // Only the documented set travels: credentials stay at the gateway.
    assert!(seen["headers"].get("authorization").is_none(), "{seen}");
    let id = seen["correlation_id"].as_str().unwrap();
    assert_eq!(CorrelationId::parse(id).unwrap().node, "gw-1");

    // Without anything after the service name, the service sees the path `/`.
    let bare = http(node.address, "GET", &format!("/api/{echo}"), &[], b"").await;
    assert_eq!(bare.status, 200, "{}", bare.text());
    assert_eq!(bare.json()["path"], "/");
    assert_eq!(bare.json()["query"], serde_json::Value::Null);

    node.stop().await;
    service.stop().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_a_request_topic_is_404_no_such_service() {
    let broker = start_broker().await;
    let node = Node::start(&broker.bootstrap(), config("unknown")).await;

    let missing = get(node.address, "/api/nowhere/1").await;
    assert_eq!(missing.status, 404, "{}", missing.text());
    assert_eq!(
        missing.json()["error"],
        "no such service: it has no request topic"
    );
    assert_eq!(missing.json()["request_topic"], "nowhere.requests");

    let invalid = get(node.address, "/api/no%20such/1").await;
    assert_eq!(invalid.status, 404, "{}", invalid.text());
    assert_eq!(
        invalid.json()["error"],
        "no such service: not a valid service name"
    );
    // Nothing was parked for either.
    assert_eq!(node.gateway.parked(), 0);

    node.stop().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413_before_it_reaches_the_service() {
    let broker = start_broker().await;
    let bootstrap = broker.bootstrap();
    let silent = unique("silent");
    create_topic(&bootstrap, &format!("{silent}.requests"), 1).await;
    let node = Node::start(
        &bootstrap,
        GatewayConfig {
            body_bytes_max: 1024,
            ..config("limits")
        },
    )
    .await;

    let path = format!("/api/{silent}");
    let declared = http(node.address, "POST", &path, &[], &[b'a'; 2048]).await;
    assert_eq!(declared.status, 413, "{}", declared.text());
    assert_eq!(declared.json()["body_bytes_max"], 1024);

    // Without a Content-Length the limit holds while the body is read.
    let mut chunked = format!(
        "POST {path} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\
        Transfer-Encoding: chunked\r\n\r\n800\r\n"
    )
    .into_bytes();
    chunked.extend_from_slice(&[b'a'; 2048]);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let streamed = support::raw(node.address, &chunked).await;
    assert_eq!(streamed.status, 413, "{}", streamed.text());
    assert_eq!(node.gateway.parked(), 0);

    node.stop().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_parked_limit_get_503_with_retry_after() {
    let broker = start_broker().await;
    let bootstrap = broker.bootstrap();
    // A service nobody answers: its requests stay parked until their deadline.
    let silent = unique("silent");
    create_topic(&bootstrap, &format!("{silent}.requests"), 1).await;
    let node = Node::start(
        &bootstrap,
        GatewayConfig {
            parked_max: 2,
            request_timeout: Duration::from_secs(20),
            ..config("parked")
        },
    )
    .await;

    let address = node.address;
    let path = format!("/api/{silent}/1");
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let path = path.clone();
            tokio::spawn(async move { get(address, &path).await })
        })
        .collect();
    eventually("two requests parked", async || node.gateway.parked() == 2).await;

    let refused = get(node.address, &path).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(
        node.metrics()
            .counter_value(UNAVAILABLE, &[("reason", "parked_full")]),
        1
    );

    // Abandoned requests leave the map (their clients went away, or at the latest their
    // deadline passed), so the bound is not held by ghosts.
    for request in waiting {
        request.abort();
    }
    eventually("the parked map drained", async || {
        node.gateway.parked() == 0
    })
    .await;

    node.stop().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_never_answers_gets_504_and_the_timeout_is_counted() {
    let broker = start_broker().await;
    let bootstrap = broker.bootstrap();
    let silent = unique("silent");
    create_topic(&bootstrap, &format!("{silent}.requests"), 1).await;
    let node = Node::start(
        &bootstrap,
        GatewayConfig {
            request_timeout: Duration::from_millis(500),
            ..config("deadline")
        },
    )
    .await;

    let reply = get(node.address, &format!("/api/{silent}/1")).await;
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert_eq!(reply.json()["service"], silent.as_str());
    assert_eq!(
        node.metrics()
            .counter_value(TIMEOUTS, &[("service", &silent)]),
        1
    );
    assert_eq!(node.gateway.parked(), 0);

    node.stop().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reply_is_dropped_and_counted_and_never_reaches_a_later_request() {
    let broker = start_broker().await;
    let bootstrap = broker.bootstrap();
    let gate = Arc::new(Semaphore::new(0));
    let held = unique("held");
    let service = Service::start(
        &bootstrap,
        &held,
        Arc::new(Held {
            gate: Arc::clone(&gate),
        }),
    )
    .await;
    // Long enough for the second request's round trip on a loaded machine; the first one is
    // held by the service until after its 504 whatever the timeout.
    let node = Node::start(
        &bootstrap,
        GatewayConfig {
            request_timeout: Duration::from_secs(3),
            ..config("late")
        },
    )
    .await;

    let path = format!("/api/{held}");
    let first = http(node.address, "GET", &path, &[("X-Tag", "held")], b"").await;
    assert_eq!(first.status, 504, "{}", first.text());

    gate.add_permits(1);
    eventually("the late reply dropped", async || {
        node.metrics()
            .counter_value(RESPONSES_DROPPED, &[("reason", "late")])
            == 1
    })
    .await;

    let second = http(node.address, "GET", &path, &[("X-Tag", "second")], b"").await;
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(second.json(), json!({"tag": "second"}));
    assert_eq!(node.metrics().counter_value(RESPONSES_DELIVERED, &[]), 1);
    assert_eq!(
        node.metrics()
            .counter_value(RESPONSES_DROPPED, &[("reason", "late")]),
        1
    );

    node.stop().await;
    service.stop().await;
    broker.shutdown().await;
}

/// `count` ids from a node that owns partitions, each checked to hash to one it owns.
fn ids_on_owned_partitions(gateway: &Gateway, count: usize) -> BTreeSet<String> {
    let owned = gateway.owned_partitions();
    let partitions = gateway.response_partitions();
    let mut ids = BTreeSet::new();
    for _ in 0..count {
        let id = gateway.next_correlation_id().unwrap();
        assert!(
            owned.contains(&partition_for_key(id.as_bytes(), partitions)),
            "{id} hashes outside {owned:?}"
        );
        let parsed = CorrelationId::parse(&id).unwrap();
        assert_eq!(parsed.node, "gw-1");
        assert_eq!(parsed.incarnation, gateway.incarnation());
        ids.insert(id);
    }
    assert_eq!(ids.len(), count, "ids repeat within one run");
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlation_ids_are_unique_across_a_restart_and_hash_to_owned_partitions() {
    let broker = start_broker().await;
    let bootstrap = broker.bootstrap();

    // The same node of the same deployment, twice.
    let restarted = config("restart");
    let mut runs = Vec::new();
    for _ in 0..2 {
        let gateway = Gateway::start(Env::real(), &bootstrap, restarted.clone())
            .await
            .unwrap();
        assert!(gateway.wait_until_ready(PATIENCE).await);
        runs.push((
            gateway.incarnation(),
            ids_on_owned_partitions(&gateway, 500),
        ));
        gateway.shutdown().await;
    }
    let (first_incarnation, first_ids) = &runs[0];
    let (second_incarnation, second_ids) = &runs[1];
    assert_ne!(first_incarnation, second_incarnation);
    assert!(first_ids.is_disjoint(second_ids));

    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_describe_the_node() {
    let broker = start_broker().await;
    let node = Node::start(&broker.bootstrap(), config("health")).await;

    let health = get(node.address, "/healthz").await;
    assert_eq!(health.status, 200, "{}", health.text());
    assert_eq!(health.json()["node"], "gw-1");
    assert!(
        !health.json()["owned_partitions"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let metrics = get(node.address, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .text()
            .contains("tidepool_gateway_parked_requests 0"),
        "{}",
        metrics.text()
    );

    node.stop().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_of_one_deployment_share_the_response_partitions_and_answer_their_own_requests() {
    let broker = start_broker().await;
    let bootstrap = broker.bootstrap();
    let echo = unique("echo");
    let service = Service::start(&bootstrap, &echo, Arc::new(Echo)).await;
    let pair = unique("pair");
    let first = Node::start(&bootstrap, GatewayConfig::new(pair.clone(), "gw-1")).await;
    let second = Node::start(&bootstrap, GatewayConfig::new(pair, "gw-2")).await;

    // The group splits the partitions once the first node has rejoined after the second
    // node's arrival.
    let all: BTreeSet<i32> = (0..first.gateway.response_partitions()).collect();
    eventually("the partitions split between the nodes", async || {
        let (one, two) = (
            first.gateway.owned_partitions(),
            second.gateway.owned_partitions(),
        );
        !one.is_empty()
            && !two.is_empty()
            && one.is_disjoint(&two)
            && one.union(&two).copied().collect::<BTreeSet<i32>>() == all
    })
    .await;

    for (node, id) in [(&first, "gw-1"), (&second, "gw-2")] {
        for _ in 0..5 {
            let reply = get(node.address, &format!("/api/{echo}/x")).await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            let correlation_id = reply.json()["correlation_id"].as_str().unwrap().to_owned();
            assert_eq!(CorrelationId::parse(&correlation_id).unwrap().node, id);
        }
        assert_eq!(node.metrics().counter_value(RESPONSES_DELIVERED, &[]), 5);
    }

    second.stop().await;
    first.stop().await;
    service.stop().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_answers_the_waiting_requests_with_503_instead_of_letting_them_time_out() {
    let broker = start_broker().await;
    let bootstrap = broker.bootstrap();
    let silent = unique("silent");
    create_topic(&bootstrap, &format!("{silent}.requests"), 1).await;
    // Far longer than the test may take: a 504 would mean the shutdown did not answer it.
    let node = Node::start(
        &bootstrap,
        GatewayConfig {
            request_timeout: Duration::from_secs(600),
            ..config("shutdown")
        },
    )
    .await;

    let address = node.address;
    let path = format!("/api/{silent}/1");
    let waiting = tokio::spawn(async move { get(address, &path).await });
    eventually("the request parked", async || node.gateway.parked() == 1).await;
    node.stop().await;

    let reply = waiting.await.unwrap();
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.header("retry-after"), Some("1"));

    broker.shutdown().await;
}
