//! Orders: `POST /api/orders` creates an order from a JSON object (201, the order with its
//! `id`, and a `Location`); `GET /api/orders/{id}` reads one (200, or 404) as it was created.
//!
//! Ids are `o-1`, `o-2`, ... from a counter written in the creating transaction, so a
//! redelivered create neither takes a second id nor creates a second order.
//!
//! Each created order is also announced on `orders.events` (state `created`, keyed by the
//! order id, with the creating request's `correlation-id`: the format is in
//! [`crate::events`]). The event is written to the store's outbox in the creating transaction
//! and published by an outbox relay (`tidepool_pipeline::stages::OutboxRelay` on the same
//! store; `tidepool up` runs the pipeline's): an order is never stored without its event nor
//! announced without being stored, and a redelivered create writes no second event. What
//! happens to the order next (the [`super::OrderValidator`]) is told on that topic only: the
//! events are the order's state, this service's row is how it was created.

use std::sync::Arc;

use serde_json::{Value, json};
use tidepool_client::BoxFuture;
use tidepool_io::Clock;
use tidepool_pipeline::store::{NewOutboxRow, Store};

use super::{Refused, method_not_allowed, not_found, read_json, write_once};
use crate::responder::{ServiceHandler, ServiceRequest, ServiceResponse};

/// The store stage (and key space) of the orders service.
pub const STAGE: &str = "orders";

/// Where orders' states are announced, unless [`OrdersService::events_topic`] says otherwise.
pub const EVENTS_TOPIC: &str = "orders.events";

/// An order's first state.
pub const CREATED: &str = "created";

const NEXT_ID: &[u8] = b"next-id";

fn order_key(id: &str) -> Vec<u8> {
    format!("order/{id}").into_bytes()
}

pub struct OrdersService {
    store: Store,
    clock: Arc<dyn Clock>,
    events_topic: String,
}

impl OrdersService {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> OrdersService {
        OrdersService {
            store,
            clock,
            events_topic: EVENTS_TOPIC.to_owned(),
        }
    }

    /// Announces orders on `topic` instead of [`EVENTS_TOPIC`]: the events topic of a service
    /// run under another name (`{service}.events`, where the gateway looks for it).
    pub fn events_topic(mut self, topic: impl Into<String>) -> OrdersService {
        self.events_topic = topic.into();
        self
    }

    async fn create(&self, request: &ServiceRequest) -> ServiceResponse {
        let order = match request.json() {
            Ok(Value::Object(fields)) => fields,
            Ok(_) => return ServiceResponse::error(400, "an order is a JSON object"),
            Err(refused) => return refused,
        };
        write_once(&self.store, &self.clock, STAGE, request, |effects| {
            let next = match effects.get(NEXT_ID)? {
                Some(bytes) => u64::from_be_bytes(bytes.as_slice().try_into().map_err(|_| {
                    Refused(ServiceResponse::error(500, "the order counter is corrupt"))
                        .into_store_error()
                })?),
                None => 1,
            };
            effects.put(NEXT_ID, &(next + 1).to_be_bytes())?;
            let id = format!("o-{next}");
            let mut order = order;
            order.insert("id".to_owned(), json!(id));
            order.insert("status".to_owned(), json!(CREATED));
            let order = Value::Object(order);
            effects.put(&order_key(&id), order.to_string().as_bytes())?;
            effects.publish(NewOutboxRow {
                topic: self.events_topic.clone(),
                key: Some(id.clone().into_bytes()),
                value: order.to_string().into_bytes(),
                headers: vec![
                    (
                        crate::headers::CORRELATION_ID.to_owned(),
                        request.correlation_id.clone().into_bytes(),
                    ),
                    (crate::events::STATE.to_owned(), CREATED.as_bytes().to_vec()),
                ],
            })?;
            Ok(ServiceResponse::json(201, &order).header("location", format!("/api/orders/{id}")))
        })
        .await
    }

    fn get(&self, id: &str) -> ServiceResponse {
        match read_json(&self.store, STAGE, &order_key(id)) {
            Ok(Some(order)) => ServiceResponse::json(200, &order),
            Ok(None) => ServiceResponse::error(404, &format!("no order {id}")),
            Err(failed) => failed,
        }
    }
}

impl ServiceHandler for OrdersService {
    fn handle<'a>(&'a self, request: &'a ServiceRequest) -> BoxFuture<'a, ServiceResponse> {
        Box::pin(async move {
            match (request.method.as_str(), request.segments().as_slice()) {
                ("POST", []) => self.create(request).await,
                ("GET", [id]) => self.get(id),
                (_, [] | [_]) => method_not_allowed(request),
                _ => not_found(request),
            }
        })
    }
}
