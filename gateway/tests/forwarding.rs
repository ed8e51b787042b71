//! Forwarding: when a rebalance moves a response partition while requests wait on the node that
//! parked them, the partition's new owner forwards their replies to that node, so nodes can
//! come and go under load without timeouts and without a reply reaching the wrong request. Runs
//! against an embedded broker, or the cluster named by TIDEPOOL_TEST_BOOTSTRAP.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tidepool_client::{BoxFuture, Client, ClientConfig, Producer, ProducerConfig, ProducerRecord};
use tidepool_gateway::headers;
use tidepool_gateway::metrics::{
    RESPONSES_DELIVERED, RESPONSES_DROPPED, RESPONSES_FORWARDED, TIMEOUTS,
};
use tidepool_gateway::{GatewayConfig, ServiceHandler, ServiceRequest, ServiceResponse};
use tidepool_io::Env;
use tokio::sync::watch;

use support::{Node, Service, eventually, http, start_broker, unique};

/// Client tasks sending requests at once: each keeps one request parked while the gate is shut.
const CLIENTS: usize = 8;

/// Echoes the request body back as `{"tag": body}`, but only while its gate is open: shutting
/// the gate keeps requests parked on their gateway node across a rebalance.
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

/// Node `node` of `deployment`.
fn config(deployment: &str, node: &str) -> GatewayConfig {
    GatewayConfig {
        // Generous: the requests held across a rebalance must not time out on a loaded machine.
        request_timeout: Duration::from_secs(60),
        session_timeout: Duration::from_secs(6),
        // A forward retried this long survives a stalled test machine; still below the
        // rebalance timeout, as the configuration requires.
        forward_deadline: Duration::from_secs(15),
        ..GatewayConfig::new(deployment, node)
    }
}

/// One client: sends uniquely tagged requests to `node` until told to stop, retrying a 503
/// (the node owns no partition while its group rebalances) as any client would; every other
/// answer is recorded with the tag it was for.
async fn client(
    node: std::net::SocketAddr,
    path: String,
    client: usize,
    done: watch::Receiver<bool>,
) -> Vec<(String, u16, String)> {
    let mut answers = Vec::new();
    for request in 0.. {
        if *done.borrow() {
            break;
        }
        let tag = format!("client-{client}-request-{request}");
        loop {
            let reply = http(node, "POST", &path, &[], tag.as_bytes()).await;
            if reply.status == 503 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let echoed = if reply.status == 200 {
                reply.json()["tag"].as_str().unwrap_or_default().to_owned()
            } else {
                reply.text()
            };
            answers.push((tag, reply.status, echoed));
            break;
        }
    }
    answers
}

/// Shuts the gate and waits until every client has a request parked on `node`.
async fn hold_every_client(gate: &watch::Sender<bool>, node: &Node) {
    gate.send_replace(false);
    eventually("every client has a request parked", async || {
        node.gateway.parked() >= CLIENTS
    })
    .await;
}

/// Opens the gate and waits until the requests it held are answered, so the requests parked
/// next are made under the node's current partitions (a request made while another node held
/// half of them would hash only to the first node's half, and a later move could miss it).
async fn release_every_client(gate: &watch::Sender<bool>, node: &Node) {
    let answered = node.metrics().counter_value(RESPONSES_DELIVERED, &[]);
    gate.send_replace(true);
    eventually("the held requests are answered", async || {
        node.metrics().counter_value(RESPONSES_DELIVERED, &[]) >= answered + CLIENTS as u64
    })
    .await;
}

/// Waits until the group has split the response partitions among exactly `nodes`.
async fn partitions_split_among(nodes: &[&Node]) {
    let all: BTreeSet<i32> = (0..nodes[0].gateway.response_partitions()).collect();
    eventually("the partitions split among the nodes", async || {
        let owned: Vec<BTreeSet<i32>> = nodes
            .iter()
            .map(|node| node.gateway.owned_partitions())
            .collect();
        let total: usize = owned.iter().map(BTreeSet::len).sum();
        let union: BTreeSet<i32> = owned.iter().flatten().copied().collect();
        owned.iter().all(|set| !set.is_empty()) && total == all.len() && union == all
    })
    .await;
}

fn forwarded(node: &Node, direction: &str) -> u64 {
    node.metrics()
        .counter_value(RESPONSES_FORWARDED, &[("direction", direction)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_joining_and_leaving_under_load_cause_no_timeouts_and_no_crossed_replies() {
    let broker = start_broker().await;
    let bootstrap = broker.bootstrap();
    let (gate, open) = watch::channel(true);
    let gated = unique("gated");
    let service = Service::start(&bootstrap, &gated, Arc::new(Gated { open })).await;
    let moving = unique("moving");
    let first = Node::start(&bootstrap, config(&moving, "gw-a")).await;

    let (done, stopped) = watch::channel(false);
    let path = format!("/api/{gated}/echo");
    let clients: Vec<_> = (0..CLIENTS)
        .map(|index| tokio::spawn(client(first.address, path.clone(), index, stopped.clone())))
        .collect();

    // A second node joins while every client waits on the first: the partitions of some of
    // their replies move to it, and it must forward those replies to the first node.
    hold_every_client(&gate, &first).await;
    let second = Node::start(&bootstrap, config(&moving, "gw-b")).await;
    partitions_split_among(&[&first, &second]).await;
    release_every_client(&gate, &first).await;

    // It leaves cleanly while requests wait: its partitions move back to the first node.
    hold_every_client(&gate, &first).await;
    let second_sent = forwarded(&second, "sent");
    second.stop().await;
    partitions_split_among(&[&first]).await;
    release_every_client(&gate, &first).await;

    // A third node joins while requests wait, and the load goes on for a while after.
    hold_every_client(&gate, &first).await;
    let third = Node::start(&bootstrap, config(&moving, "gw-c")).await;
    partitions_split_among(&[&first, &third]).await;
    release_every_client(&gate, &first).await;
    let answered = first.metrics().counter_value(RESPONSES_DELIVERED, &[]);
    eventually("more requests are answered", async || {
        first.metrics().counter_value(RESPONSES_DELIVERED, &[]) >= answered + 50
    })
    .await;

    done.send_replace(true);
    let mut answers = Vec::new();
    for task in clients {
        answers.extend(task.await.unwrap());
    }
    assert!(answers.len() >= 3 * CLIENTS, "{} answers", answers.len());
    for (tag, status, echoed) in &answers {
        assert_eq!(*status, 200, "{tag}: {echoed}");
        assert_eq!(echoed, tag, "a request got another request's reply");
    }
    assert_eq!(
        first
            .metrics()
            .counter_value(TIMEOUTS, &[("service", &gated)]),
        0
    );
    let sent = second_sent + forwarded(&third, "sent");
    assert!(
        sent > 0,
        "no reply was forwarded: the test moved no waiting request's partition"
    );
    assert!(forwarded(&first, "received") >= sent);

    third.stop().await;
    first.stop().await;
    service.stop().await;
    broker.shutdown().await;
}

/// Writes a reply with correlation id `id` to every partition of the response topic, so
/// whichever node owns a partition reads one.
async fn reply_on_every_partition(bootstrap: &str, topic: &str, partitions: i32, id: &str) {
    let client = Client::connect(Env::real(), ClientConfig::new(bootstrap))
        .await
        .unwrap();
    let producer = Producer::new(client.clone(), ProducerConfig::default())
        .await
        .unwrap();
    for partition in 0..partitions {
        let mut record = ProducerRecord::new(topic, &b"{}"[..])
            .key(id.as_bytes().to_vec())
            .header(headers::CORRELATION_ID, id.as_bytes().to_vec())
            .header(headers::STATUS, &b"200"[..]);
        record.partition = Some(partition);
        producer.send(record).await.unwrap().await.unwrap();
    }
    producer.close().await.unwrap();
    client.close();
}

fn dropped(nodes: &[&Node], reason: &str) -> u64 {
    nodes
        .iter()
        .map(|node| {
            node.metrics()
                .counter_value(RESPONSES_DROPPED, &[("reason", reason)])
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_for_an_earlier_incarnation_or_an_unannounced_node_is_dropped_and_counted() {
    let broker = start_broker().await;
    let bootstrap = broker.bootstrap();
    let deployment = unique("moving");
    let first = Node::start(&bootstrap, config(&deployment, "gw-a")).await;
    let second = Node::start(&bootstrap, config(&deployment, "gw-b")).await;
    partitions_split_among(&[&first, &second]).await;
    let partitions = first.gateway.response_partitions();
    let topic = first.gateway.config().response_topic();

    let earlier = second.gateway.incarnation().wrapping_add(1);
    let stale = format!("gw-b.{earlier:016x}.1");
    reply_on_every_partition(&bootstrap, &topic, partitions, &stale).await;
    let first_owns = u64::try_from(first.gateway.owned_partitions().len()).unwrap();
    eventually(
        "the first node drops the stale replies it read",
        async || dropped(&[&first], "stale_incarnation") == first_owns,
    )
    .await;

    reply_on_every_partition(
        &bootstrap,
        &topic,
        partitions,
        "gw-ghost.00000000000000ab.1",
    )
    .await;
    eventually(
        "every reply for a node never announced is dropped",
        async || dropped(&[&first, &second], "node_gone") == u64::try_from(partitions).unwrap(),
    )
    .await;
    assert_eq!(forwarded(&first, "sent") + forwarded(&second, "sent"), 0);

    second.stop().await;
    first.stop().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_route_refuses_a_malformed_forward_and_drops_a_reply_nobody_waits_for() {
    let broker = start_broker().await;
    let node = Node::start(&broker.bootstrap(), config(&unique("moving"), "gw-a")).await;

    let reply = http(node.address, "POST", "/internal/responses", &[], b"garbage").await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("not a forwarded reply")
    );

    let forward = format!(
        "{}\n{{}}",
        json!({ "id": "gw-a.0000000000000001.1", "status": 200, "headers": [] })
    );
    let reply = http(
        node.address,
        "POST",
        "/internal/responses",
        &[],
        forward.as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["delivery"], "unknown");
    assert_eq!(
        node.metrics()
            .counter_value(RESPONSES_DROPPED, &[("reason", "unknown")]),
        1
    );

    node.stop().await;
    broker.shutdown().await;
}
