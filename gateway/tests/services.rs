//! The example services answered through a gateway node, over real HTTP and an embedded broker
//! (or the cluster named by TIDEPOOL_TEST_BOOTSTRAP):
//! each request goes to the service's request topic, its responder answers on the response
//! topic, and the parked request returns the service's status and body.

mod support;

use std::sync::Arc;

use serde_json::json;
use tidepool_gateway::GatewayConfig;
use tidepool_gateway::services::{BasketService, CustomerService, OrdersService};
use tidepool_io::{Clock, SystemClock};
use tidepool_pipeline::store::Store;

use support::{Node, Service, get, send_json, start_broker, unique};

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock::new())
}

/// Node gw-1 of a deployment of its own.
fn shop() -> GatewayConfig {
    GatewayConfig::new(unique("shop"), "gw-1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_created_through_the_gateway_can_be_read_back_and_an_unknown_one_is_404() {
    let broker = start_broker().await;
    let bootstrap = broker.bootstrap();
    let store = Store::memory().unwrap();
    let orders = unique("orders");
    let service = Service::start(
        &bootstrap,
        &orders,
        Arc::new(OrdersService::new(store, clock())),
    )
    .await;
    let node = Node::start(&bootstrap, shop()).await;

    let created = send_json(
        node.address,
        "POST",
        &format!("/api/{orders}"),
        &json!({"customer": "c-1", "items": [{"sku": "tea", "quantity": 2}]}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let order = created.json();
    assert_eq!(order["id"], "o-1");
    assert_eq!(order["status"], "created");
    assert_eq!(order["customer"], "c-1");
    // The service names its orders' place as `tidepool up` serves it, under `orders`.
    assert_eq!(created.header("location"), Some("/api/orders/o-1"));
    assert_eq!(created.header("content-type"), Some("application/json"));

    let read = get(node.address, &format!("/api/{orders}/o-1")).await;
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(read.json(), order);

    let missing = get(node.address, &format!("/api/{orders}/o-999")).await;
    assert_eq!(missing.status, 404, "{}", missing.text());
    assert_eq!(missing.json()["error"], "no order o-999");

    // An order must be a JSON object; the service's 400 travels back unchanged.
    let refused = send_json(
        node.address,
        "POST",
        &format!("/api/{orders}"),
        &json!([1, 2]),
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.text());

    node.stop().await;
    service.stop().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_customer_is_found_an_unseen_one_is_404_until_it_is_put() {
    let broker = start_broker().await;
    let bootstrap = broker.bootstrap();
    let customers = CustomerService::new(Store::memory().unwrap(), clock());
    customers
        .seed(&[json!({"id": "c-1", "name": "Ada"})])
        .unwrap();
    let customer = unique("customer");
    let service = Service::start(&bootstrap, &customer, Arc::new(customers)).await;
    let node = Node::start(&bootstrap, shop()).await;

    let seeded = get(node.address, &format!("/api/{customer}/c-1")).await;
    assert_eq!(seeded.status, 200, "{}", seeded.text());
    assert_eq!(seeded.json(), json!({"id": "c-1", "name": "Ada"}));

    let unseen = get(node.address, &format!("/api/{customer}/c-2")).await;
    assert_eq!(unseen.status, 404, "{}", unseen.text());

    let put = send_json(
        node.address,
        "PUT",
        &format!("/api/{customer}/c-2"),
        &json!({"name": "Grace"}),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let now_found = get(node.address, &format!("/api/{customer}/c-2")).await;
    assert_eq!(now_found.status, 200, "{}", now_found.text());
    assert_eq!(now_found.json(), json!({"id": "c-2", "name": "Grace"}));

    node.stop().await;
    service.stop().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_added_to_a_basket_add_up_and_an_untouched_basket_is_empty() {
    let broker = start_broker().await;
    let bootstrap = broker.bootstrap();
    let baskets = unique("basket");
    let service = Service::start(
        &bootstrap,
        &baskets,
        Arc::new(BasketService::new(Store::memory().unwrap(), clock())),
    )
    .await;
    let node = Node::start(&bootstrap, shop()).await;

    let empty = get(node.address, &format!("/api/{baskets}/b-0")).await;
    assert_eq!(empty.status, 200, "{}", empty.text());
    assert_eq!(empty.json(), json!({"id": "b-0", "items": []}));

    for (sku, quantity) in [("tea", 1), ("milk", 1), ("tea", 2)] {
        let added = send_json(
            node.address,
            "POST",
            &format!("/api/{baskets}/b-1/items"),
            &json!({"sku": sku, "quantity": quantity}),
        )
        .await;
        assert_eq!(added.status, 200, "{}", added.text());
    }
    let basket = get(node.address, &format!("/api/{baskets}/b-1")).await;
    assert_eq!(basket.status, 200, "{}", basket.text());
    assert_eq!(
        basket.json(),
        json!({"id": "b-1", "items": [
            {"sku": "tea", "quantity": 3},
            {"sku": "milk", "quantity": 1},
        ]})
    );

    let nonsense = send_json(
        node.address,
        "POST",
        &format!("/api/{baskets}/b-1/items"),
        &json!({"sku": "", "quantity": 0}),
    )
    .await;
    assert_eq!(nonsense.status, 400, "{}", nonsense.text());

    node.stop().await;
    service.stop().await;
    broker.shutdown().await;
}
