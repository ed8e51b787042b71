//! Basket: `POST /api/basket/{id}/items` adds `{"sku": "...", "quantity": n}` to a basket
//! (200, the basket); `GET /api/basket/{id}` reads it (200; a basket never added to is empty).
//! The basket is `{"id": ..., "items": [{"sku": ..., "quantity": n}]}`, items in the order
//! first added, one entry per sku.

use std::sync::Arc;

use serde_json::{Value, json};
use tidepool_client::BoxFuture;
use tidepool_io::Clock;
use tidepool_pipeline::store::Store;

use super::{get_json, method_not_allowed, not_found, read_json, write_once};
use crate::responder::{ServiceHandler, ServiceRequest, ServiceResponse};

/// The store stage (and key space) of the basket service.
pub const STAGE: &str = "basket";

/// Bounds on what one item may say.
const SKU_BYTES_MAX: usize = 100;
const QUANTITY_MAX: u64 = 1000;
/// Distinct skus in one basket.
const ITEMS_MAX: usize = 200;

fn basket_key(id: &str) -> Vec<u8> {
    format!("basket/{id}").into_bytes()
}

fn empty(id: &str) -> Value {
    json!({ "id": id, "items": [] })
}

pub struct BasketService {
    store: Store,
    clock: Arc<dyn Clock>,
}

impl BasketService {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> BasketService {
        BasketService { store, clock }
    }

    fn get(&self, id: &str) -> ServiceResponse {
        match read_json(&self.store, STAGE, &basket_key(id)) {
            Ok(basket) => ServiceResponse::json(200, &basket.unwrap_or_else(|| empty(id))),
            Err(failed) => failed,
        }
    }

    async fn add(&self, request: &ServiceRequest, id: &str) -> ServiceResponse {
        let item = match request.json() {
            Ok(item) => item,
            Err(refused) => return refused,
        };
        let sku = item.get("sku").and_then(Value::as_str).unwrap_or_default();
        let quantity = item.get("quantity").and_then(Value::as_u64).unwrap_or(0);
        if sku.is_empty() || sku.len() > SKU_BYTES_MAX || !(1..=QUANTITY_MAX).contains(&quantity) {
            return ServiceResponse::error(
                400,
                &format!(
                    "an item is {{\"sku\": 1 to {SKU_BYTES_MAX} bytes, \"quantity\": 1 to {QUANTITY_MAX}}}"
                ),
            );
        }
        write_once(&self.store, &self.clock, STAGE, request, |effects| {
            let mut basket = get_json(effects, &basket_key(id))?.unwrap_or_else(|| empty(id));
            let items = basket["items"].as_array_mut();
            let Some(items) = items else {
                return Ok(ServiceResponse::error(500, "the stored basket is corrupt"));
            };
            let full = items.len() >= ITEMS_MAX;
            match items.iter_mut().find(|line| line["sku"] == sku) {
                Some(line) => {
                    let total = line["quantity"].as_u64().unwrap_or(0) + quantity;
                    line["quantity"] = json!(total);
                }
                None if full => {
                    return Ok(ServiceResponse::error(
                        409,
                        &format!("a basket holds at most {ITEMS_MAX} different items"),
                    ));
                }
                None => items.push(json!({ "sku": sku, "quantity": quantity })),
            }
            effects.put(&basket_key(id), basket.to_string().as_bytes())?;
            Ok(ServiceResponse::json(200, &basket))
        })
        .await
    }
}

impl ServiceHandler for BasketService {
    fn handle<'a>(&'a self, request: &'a ServiceRequest) -> BoxFuture<'a, ServiceResponse> {
        Box::pin(async move {
            match (request.method.as_str(), request.segments().as_slice()) {
                ("GET", [id]) => self.get(id),
                ("POST", [id, "items"]) => self.add(request, id).await,
                (_, [_] | [_, "items"]) => method_not_allowed(request),
                _ => not_found(request),
            }
        })
    }
}
