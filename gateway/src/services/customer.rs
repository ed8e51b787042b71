//! Customer: `GET /api/customer/{id}` reads a customer (200, or 404 for an id never seen);
//! `PUT /api/customer/{id}` creates or replaces one from a JSON object (200). Customers are
//! not created on first sight: a read never writes. An embedder seeds known customers with
//! [`CustomerService::seed`].

use std::sync::Arc;

use serde_json::{Value, json};
use tidepool_client::BoxFuture;
use tidepool_io::Clock;
use tidepool_pipeline::store::{Store, StoreError};

use super::{method_not_allowed, not_found, read_json, write_once};
use crate::responder::{ServiceHandler, ServiceRequest, ServiceResponse};

/// The store stage (and key space) of the customer service.
pub const STAGE: &str = "customer";

fn customer_key(id: &str) -> Vec<u8> {
    format!("customer/{id}").into_bytes()
}

pub struct CustomerService {
    store: Store,
    clock: Arc<dyn Clock>,
}

impl CustomerService {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> CustomerService {
        CustomerService { store, clock }
    }

    /// Stores `customers` (JSON objects with a string `id`) unless seeded before: seeding
    /// again at every start is harmless, and does not undo later changes.
    pub fn seed(&self, customers: &[Value]) -> Result<(), StoreError> {
        for customer in customers {
            let id = customer
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| StoreError::Invalid("a customer needs a string id".into()))?;
            self.store.apply_effect(
                STAGE,
                &format!("seed/{id}"),
                self.clock.wall_ms(),
                |effects| effects.put(&customer_key(id), customer.to_string().as_bytes()),
            )?;
        }
        Ok(())
    }

    fn get(&self, id: &str) -> ServiceResponse {
        match read_json(&self.store, STAGE, &customer_key(id)) {
            Ok(Some(customer)) => ServiceResponse::json(200, &customer),
            Ok(None) => ServiceResponse::error(404, &format!("no customer {id}")),
            Err(failed) => failed,
        }
    }

    async fn put(&self, request: &ServiceRequest, id: &str) -> ServiceResponse {
        let mut customer = match request.json() {
            Ok(Value::Object(fields)) => fields,
            Ok(_) => return ServiceResponse::error(400, "a customer is a JSON object"),
            Err(refused) => return refused,
        };
        customer.insert("id".to_owned(), json!(id));
        let customer = Value::Object(customer);
        write_once(&self.store, &self.clock, STAGE, request, |effects| {
            effects.put(&customer_key(id), customer.to_string().as_bytes())?;
            Ok(ServiceResponse::json(200, &customer))
        })
        .await
    }
}

impl ServiceHandler for CustomerService {
    fn handle<'a>(&'a self, request: &'a ServiceRequest) -> BoxFuture<'a, ServiceResponse> {
        Box::pin(async move {
            match (request.method.as_str(), request.segments().as_slice()) {
                ("GET", [id]) => self.get(id),
                ("PUT", [id]) => self.put(request, id).await,
                (_, [_]) => method_not_allowed(request),
                _ => not_found(request),
            }
        })
    }
}
