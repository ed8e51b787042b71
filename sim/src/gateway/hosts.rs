//! The gateway run's hosts: gateway nodes `gw1..gw3` (the shipped router on the simulated
//! network; a node runs only while it is a member of the deployment), `services` (orders
//! responders on one store on the host's `SimDisk`) and `client` (HTTP requests, each to a
//! member node of its own pick). The broker host is the one of [`crate::runner`].

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tidepool_client::{Admin, Client, ClientConfig, KafkaCode, NewTopic};
use tidepool_gateway::services::OrdersService;
use tidepool_gateway::{Gateway, GatewayConfig, GatewayMetrics, Responder, ResponderConfig};
use tidepool_io::Env;
use tidepool_pipeline::store::{Store, StoreConfig};
use tokio::sync::{Notify, watch};

use super::check::{RequestKind, RequestOutcome, SentRequest};
use super::scenario::{GATEWAYS_MAX, GatewaySwarm, gateway_name};
use crate::env::FaultSites;
use crate::pipeline::http::{Answer, exchange, serve};
use crate::runner::workload::{client_config, lock};
use crate::scenario::Variant;

pub const GATEWAY_PORT: u16 = 8080;
pub const STORE_PATH: &str = "/var/lib/orders/store.redb";
pub const DEPLOYMENT: &str = "sim";
pub const SERVICE: &str = "orders";
/// How long a node waits for a reply before 504: short, so the heal phase is short too.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
/// Longer than the node's timeout, so a node that answers at all answers first.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(8);

/// Requests the driver asks the clients for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    Create(u8),
    Read(u8),
}

/// What the hosts and the driver share (one thread: the simulation's).
pub struct GatewayShared {
    pub sites: Arc<FaultSites>,
    pub swarm: GatewaySwarm,
    pub variant: Variant,
    /// Per gateway node: whether it is a member of the deployment (its host runs a node).
    pub members: Vec<watch::Sender<bool>>,
    /// The nodes running now, by host name: the driver reads their parked requests.
    pub running: Mutex<BTreeMap<&'static str, Arc<Gateway>>>,
    /// The services host's store while that host is up.
    pub store: Mutex<Option<Store>>,
    /// Responders running now.
    pub responders: AtomicU64,
    pub asks: Mutex<VecDeque<Ask>>,
    pub asks_ready: Notify,
    /// Requests sent and not yet answered (or given up).
    pub in_flight: AtomicU64,
    pub sent: Mutex<BTreeMap<String, SentRequest>>,
    pub next_request: AtomicU64,
    /// Orders a 201 announced, in order: (order id, request ref).
    pub created: Mutex<Vec<(String, String)>>,
}

impl GatewayShared {
    pub fn new(sites: Arc<FaultSites>, swarm: GatewaySwarm, variant: Variant) -> GatewayShared {
        let members = (0..GATEWAYS_MAX)
            .map(|index| watch::Sender::new(index < swarm.gateways))
            .collect();
        GatewayShared {
            sites,
            swarm,
            variant,
            members,
            running: Mutex::new(BTreeMap::new()),
            store: Mutex::new(None),
            responders: AtomicU64::new(0),
            asks: Mutex::new(VecDeque::new()),
            asks_ready: Notify::new(),
            in_flight: AtomicU64::new(0),
            sent: Mutex::new(BTreeMap::new()),
            next_request: AtomicU64::new(0),
            created: Mutex::new(Vec::new()),
        }
    }

    pub fn ask(&self, ask: Ask) {
        lock(&self.asks).push_back(ask);
        self.asks_ready.notify_one();
    }

    fn member(&self, name: &str) -> &watch::Sender<bool> {
        let index = (0..GATEWAYS_MAX)
            .position(|index| gateway_name(index) == name)
            .unwrap_or(0);
        &self.members[index]
    }

    pub fn is_member(&self, index: u8) -> bool {
        *self.members[usize::from(index % GATEWAYS_MAX)].borrow()
    }

    pub fn set_member(&self, index: u8, member: bool) {
        self.members[usize::from(index % GATEWAYS_MAX)].send_replace(member);
    }

    /// The member nodes, by host name: where a client may send a request.
    pub fn member_names(&self) -> Vec<&'static str> {
        (0..GATEWAYS_MAX)
            .filter(|index| self.is_member(*index))
            .map(gateway_name)
            .collect()
    }
}

/// The Kafka clients' settings for the gateway's and the service's hosts: the workload's
/// short request timeout, as a crashed broker drops connections without a word.
fn kafka_client(id: &str) -> ClientConfig {
    client_config().client_id(id.to_owned())
}

fn gateway_config(name: &str, shared: &GatewayShared) -> GatewayConfig {
    GatewayConfig {
        response_partitions: shared.swarm.response_partitions,
        request_timeout: REQUEST_TIMEOUT,
        poll_wait: Duration::from_millis(50),
        commit_interval: Duration::from_millis(200),
        session_timeout: Duration::from_secs(2),
        rebalance_timeout: Duration::from_secs(6),
        service_refresh_interval: Duration::from_millis(200),
        produce_block: Duration::from_secs(2),
        advertised_address: Some(format!("{name}:{GATEWAY_PORT}")),
        forward_attempt_timeout: Duration::from_secs(1),
        forward_deadline: Duration::from_secs(3),
        forward_backoff: Duration::from_millis(50),
        sabotage_no_forwarding: shared.variant == Variant::GatewayNoForwarding,
        ..GatewayConfig::new(DEPLOYMENT, name)
    }
}

/// Waits until the node's membership is `wanted`.
async fn membership(member: &mut watch::Receiver<bool>, wanted: bool) {
    if member.wait_for(|is| *is == wanted).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// One incarnation of a gateway node host: while a member, runs a node serving the gateway's
/// routes; on leaving, shuts it down gracefully (parked requests get 503) and waits to join
/// again.
pub async fn gateway_host(
    env: Env,
    shared: Arc<GatewayShared>,
    name: &'static str,
) -> turmoil::Result {
    let mut member = shared.member(name).subscribe();
    loop {
        membership(&mut member, true).await;
        let gateway = loop {
            if !*member.borrow() {
                break None;
            }
            let started = Gateway::start_with_client(
                env.clone(),
                kafka_client(name),
                gateway_config(name, &shared),
            )
            .await;
            match started {
                Ok(gateway) => break Some(gateway),
                Err(error) => {
                    tracing::debug!(node = name, %error, "gateway did not start");
                    env.clock.sleep(Duration::from_millis(200)).await;
                }
            }
        };
        let Some(gateway) = gateway else {
            continue;
        };
        // Bound only now: until the node runs, clients are refused rather than queued.
        let listener = loop {
            match env
                .transport
                .bind(SocketAddr::from(([0, 0, 0, 0], GATEWAY_PORT)))
                .await
            {
                Ok(listener) => break listener,
                // The last node's listener is still being dropped.
                Err(_) => env.clock.sleep(Duration::from_millis(10)).await,
            }
        };
        let gateway = Arc::new(gateway);
        lock(&shared.running).insert(name, Arc::clone(&gateway));
        let serving = tokio::spawn(serve(listener, gateway.router()));
        membership(&mut member, false).await;
        lock(&shared.running).remove(name);
        // No new connections; those in progress finish on their own tasks.
        serving.abort();
        if let Ok(gateway) = Arc::try_unwrap(gateway) {
            gateway.shutdown().await;
        }
    }
}

/// Creates `orders.requests` if missing.
async fn ensure_request_topic(client: &Client, partitions: i32) -> bool {
    let topic = NewTopic::new(
        tidepool_gateway::topics::request_topic(SERVICE),
        partitions,
        1,
    );
    match Admin::new(client.clone()).create_topic(topic).await {
        Ok(()) => true,
        Err(error) => error.code() == Some(KafkaCode::TOPIC_ALREADY_EXISTS),
    }
}

fn responder_config() -> ResponderConfig {
    ResponderConfig {
        poll_wait: Duration::from_millis(50),
        session_timeout: Duration::from_secs(2),
        rebalance_timeout: Duration::from_secs(4),
        retry_backoff: Duration::from_millis(100),
        ..ResponderConfig::new(SERVICE)
    }
}

/// One incarnation of the services host: opens the store (redb recovers it), makes sure the
/// request topic exists, then runs the swarm's responders until crashed. A responder that
/// stops starts again.
pub async fn services_host(env: Env, shared: Arc<GatewayShared>) -> turmoil::Result {
    shared.responders.store(0, Ordering::SeqCst);
    let store = match Store::open_with(
        Arc::clone(&env.disk),
        Path::new(STORE_PATH),
        StoreConfig::default(),
    ) {
        Ok(store) => store,
        // The disk halted at a crash point during recovery: the driver crashes this
        // incarnation; until then, stay quiet.
        Err(error) => {
            tracing::debug!(%error, "store did not open");
            std::future::pending::<()>().await;
            return Ok(());
        }
    };
    *lock(&shared.store) = Some(store.clone());
    loop {
        if let Ok(client) = Client::connect(env.clone(), kafka_client("services")).await {
            let created = ensure_request_topic(&client, shared.swarm.request_partitions).await;
            client.close();
            if created {
                break;
            }
        }
        env.clock.sleep(Duration::from_millis(100)).await;
    }
    let handler = Arc::new(OrdersService::new(store, Arc::clone(&env.clock)));
    let (_stop, stopped) = watch::channel(false);
    let mut responders = tokio::task::JoinSet::new();
    for index in 0..shared.swarm.responders.max(1) {
        let (env, shared, handler, stopped) = (
            env.clone(),
            Arc::clone(&shared),
            Arc::clone(&handler),
            stopped.clone(),
        );
        responders.spawn(async move {
            loop {
                let started = Responder::start_with_client(
                    env.clone(),
                    kafka_client(&format!("responder-{index}")),
                    responder_config(),
                    handler.clone(),
                    GatewayMetrics::new(),
                )
                .await;
                match started {
                    Ok(responder) => {
                        shared.responders.fetch_add(1, Ordering::SeqCst);
                        let ran = responder.run(stopped.clone()).await;
                        shared.responders.fetch_sub(1, Ordering::SeqCst);
                        if let Err(error) = ran {
                            tracing::debug!(%error, "responder stopped; starting again");
                        }
                    }
                    Err(error) => tracing::debug!(%error, "responder did not start"),
                }
                env.clock.sleep(Duration::from_millis(100)).await;
            }
        });
    }
    while responders.join_next().await.is_some() {}
    Ok(())
}

/// The body fields the checker reads from an answer: the order's `ref` and `id`.
fn order_fields(answer: &Answer) -> (Option<String>, Option<String>) {
    let Ok(body) = serde_json::from_slice::<Value>(&answer.body) else {
        return (None, None);
    };
    let field = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
    (field("ref"), field("id"))
}

/// The clients: on each ask, send its requests at once, each on a task of its own to a member
/// node drawn from the host's entropy, and record every answer.
pub async fn client_host(env: Env, shared: Arc<GatewayShared>) -> turmoil::Result {
    loop {
        let next = lock(&shared.asks).pop_front();
        let Some(ask) = next else {
            shared.asks_ready.notified().await;
            continue;
        };
        let (count, create) = match ask {
            Ask::Create(count) => (count, true),
            Ask::Read(count) => (count, false),
        };
        for _ in 0..count {
            let nodes = shared.member_names();
            let Some(node) = pick(&env, &nodes) else {
                continue;
            };
            let n = shared.next_request.fetch_add(1, Ordering::SeqCst);
            let reference = format!("r-{n}");
            let kind = if create {
                RequestKind::Create
            } else {
                let created = lock(&shared.created).clone();
                match pick(&env, &created) {
                    Some((id, created_by)) => RequestKind::Read { id, created_by },
                    None => continue,
                }
            };
            lock(&shared.sent).insert(
                reference.clone(),
                SentRequest {
                    kind: kind.clone(),
                    node: node.to_owned(),
                    sent_ms: crate::runner::workload::now_ms(),
                    done_ms: None,
                    outcome: RequestOutcome::Pending,
                    answers: 0,
                },
            );
            shared.in_flight.fetch_add(1, Ordering::SeqCst);
            let (env, shared) = (env.clone(), Arc::clone(&shared));
            tokio::spawn(async move {
                let answer = match &kind {
                    RequestKind::Create => {
                        let body =
                            json!({ "ref": reference, "item": "sprocket", "quantity": n % 7 + 1 });
                        exchange(
                            &env,
                            hyper::Method::POST,
                            (node, GATEWAY_PORT),
                            "/api/orders",
                            Some(body.to_string().into_bytes()),
                            CLIENT_TIMEOUT,
                        )
                        .await
                    }
                    RequestKind::Read { id, .. } => {
                        exchange(
                            &env,
                            hyper::Method::GET,
                            (node, GATEWAY_PORT),
                            &format!("/api/orders/{id}"),
                            None,
                            CLIENT_TIMEOUT,
                        )
                        .await
                    }
                };
                let outcome = match &answer {
                    Ok(answer) => {
                        let (order_ref, order_id) = order_fields(answer);
                        if kind == RequestKind::Create
                            && answer.status == 201
                            && let (Some(id), Some(order_ref)) = (&order_id, &order_ref)
                        {
                            lock(&shared.created).push((id.clone(), order_ref.clone()));
                        }
                        RequestOutcome::Answered {
                            status: answer.status,
                            order_ref,
                            order_id,
                        }
                    }
                    Err(reason) => RequestOutcome::NoAnswer {
                        reason: reason.clone(),
                    },
                };
                if let Some(sent) = lock(&shared.sent).get_mut(&reference) {
                    if matches!(outcome, RequestOutcome::Answered { .. }) {
                        sent.answers += 1;
                    }
                    sent.done_ms = Some(crate::runner::workload::now_ms());
                    sent.outcome = outcome;
                }
                shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            });
        }
    }
}

/// One of `items`, drawn from the host's entropy.
fn pick<T: Clone>(env: &Env, items: &[T]) -> Option<T> {
    if items.is_empty() {
        return None;
    }
    let count = u64::try_from(items.len()).unwrap_or(u64::MAX);
    let index = usize::try_from(env.entropy.next_u64() % count).unwrap_or(0);
    items.get(index).cloned()
}

/// The orders in the store, by id, with the `ref` each was created for.
pub fn stored_orders(store: &Store) -> Result<BTreeMap<String, Option<String>>, String> {
    let failed = |error: tidepool_pipeline::store::StoreError| format!("store: {error}");
    // The orders service's storage contract: a counter, then `order/o-{n}` for n below it.
    let next = match store.effect(SERVICE, b"next-id").map_err(failed)? {
        Some(bytes) => u64::from_be_bytes(
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| "the order counter is corrupt".to_owned())?,
        ),
        None => 1,
    };
    let mut orders = BTreeMap::new();
    for n in 1..next {
        let id = format!("o-{n}");
        let order = store
            .effect(SERVICE, format!("order/{id}").as_bytes())
            .map_err(failed)?;
        let reference = order
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .and_then(|order| order.get("ref").and_then(Value::as_str).map(str::to_owned));
        orders.insert(id, reference);
    }
    Ok(orders)
}
