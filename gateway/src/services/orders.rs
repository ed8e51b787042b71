//! Orders: `POST /api/orders` creates an order from a JSON object (201, the order with its
//! `id`, and a `Location`); `GET /api/orders/{id}` reads one (200, or 404).
//!
//! Ids are `o-1`, `o-2`, ... from a counter written in the creating transaction, so a
//! redelivered create neither takes a second id nor creates a second order.

use std::sync::Arc;

use serde_json::{Value, json};
use tidepool_client::BoxFuture;
use tidepool_io::Clock;
use tidepool_pipeline::store::Store;

use super::{Refused, method_not_allowed, not_found, read_json, write_once};
use crate::responder::{ServiceHandler, ServiceRequest, ServiceResponse};

/// The store stage (and key space) of the orders service.
pub const STAGE: &str = "orders";

const NEXT_ID: &[u8] = b"next-id";

fn order_key(id: &str) -> Vec<u8> {
    format!("order/{id}").into_bytes()
}

pub struct OrdersService {
    store: Store,
    clock: Arc<dyn Clock>,
}

impl OrdersService {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> OrdersService {
        OrdersService { store, clock }
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
            order.insert("status".to_owned(), json!("created"));
            let order = Value::Object(order);
            effects.put(&order_key(&id), order.to_string().as_bytes())?;
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
