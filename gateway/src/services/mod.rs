//! The example services (DESIGN.md §6): orders, customer, basket, and the order validation
//! stage ([`OrderValidator`]) that moves orders on along `orders.events` (stateless: the
//! topic is its state). Each service keeps its state in the
//! embedded store (`tidepool_pipeline::store::Store`), under its own stage name, and makes
//! every write idempotent per correlation id with [`Store::apply_effect`]: the effect, and the
//! reply it produced, are committed with the dedup key `(stage, correlation id)` in one
//! transaction. A redelivered request therefore changes nothing and gets the stored reply
//! again, byte for byte. Reads are answered from the current state and store nothing.
//!
//! The examples keep their state in one process's store: run one responder per service (the
//! request topic's partitions then all go to it). A service that scales out keeps its state
//! in a shared database instead; the pattern stays the same.

mod basket;
mod customer;
pub mod orders;
pub mod validator;

use std::sync::Arc;

use tidepool_io::Clock;
use tidepool_pipeline::store::{Effects, Store, StoreError};

pub use basket::BasketService;
pub use customer::CustomerService;
pub use orders::OrdersService;
pub use validator::{OrderValidator, ValidatorConfig};

use crate::responder::{ServiceRequest, ServiceResponse};

/// Where a write's reply is kept: `reply/{correlation id}` in the service's effects.
fn reply_key(correlation_id: &str) -> Vec<u8> {
    format!("reply/{correlation_id}").into_bytes()
}

/// Applies `effect` once per correlation id and answers with the reply it made then: the
/// first time, `effect` runs and its reply is stored with its writes; every later time the
/// stored reply is read back. A store failure answers 503 and writes nothing, so the client may
/// retry (a new request, a new correlation id).
pub(crate) async fn write_once<F>(
    store: &Store,
    clock: &Arc<dyn Clock>,
    stage: &str,
    request: &ServiceRequest,
    effect: F,
) -> ServiceResponse
where
    F: FnOnce(&mut Effects<'_>) -> Result<ServiceResponse, StoreError>,
{
    let key = reply_key(&request.correlation_id);
    let _turn = store.write_turn().await;
    let mut made = None;
    let applied = store.apply_effect(stage, &request.correlation_id, clock.wall_ms(), |effects| {
        let reply = effect(effects)?;
        effects.put(&key, &encode(&reply))?;
        made = Some(reply);
        Ok(())
    });
    match (applied, made) {
        (Ok(_), Some(reply)) => reply,
        (Ok(_), None) => match store.effect(stage, &key) {
            Ok(Some(stored)) => decode(&stored).unwrap_or_else(|| {
                ServiceResponse::error(500, "the stored reply of this request is corrupt")
            }),
            Ok(None) => {
                ServiceResponse::error(500, "this request was applied but its reply is gone")
            }
            Err(error) => ServiceResponse::error(503, &format!("store: {error}")),
        },
        (Err(StoreError::Effect(refused)), _) => refused.downcast::<Refused>().map_or_else(
            |other| ServiceResponse::error(500, &other.to_string()),
            |refused| refused.0,
        ),
        (Err(error), _) => ServiceResponse::error(503, &format!("store: {error}")),
    }
}

/// An answer that writes nothing (a 4xx found inside an effect): returned from an effect as
/// `Err(Refused(...).into_store_error())`, it aborts the transaction and becomes the reply.
/// Refusals are not stored, so they are not replayed; they hold again on redelivery anyway, as
/// nothing was written.
#[derive(Debug)]
pub(crate) struct Refused(pub ServiceResponse);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused with {}", self.0.status)
    }
}

impl std::error::Error for Refused {}

impl Refused {
    pub(crate) fn into_store_error(self) -> StoreError {
        StoreError::effect(self)
    }
}

/// A reply as stored: status (2 bytes), header count (2), each name and value (2-byte length
/// then bytes), then the body. Big-endian.
fn encode(reply: &ServiceResponse) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(8 + reply.body.len());
    bytes.extend_from_slice(&reply.status.to_be_bytes());
    let headers: Vec<&(String, String)> = reply
        .headers
        .iter()
        .filter(|(name, value)| {
            name.len() <= usize::from(u16::MAX) && value.len() <= usize::from(u16::MAX)
        })
        .take(usize::from(u16::MAX))
        .collect();
    bytes.extend_from_slice(&(headers.len() as u16).to_be_bytes());
    for (name, value) in headers {
        for text in [name, value] {
            bytes.extend_from_slice(&(text.len() as u16).to_be_bytes());
            bytes.extend_from_slice(text.as_bytes());
        }
    }
    bytes.extend_from_slice(&reply.body);
    bytes
}

fn decode(mut bytes: &[u8]) -> Option<ServiceResponse> {
    fn take<'a>(bytes: &mut &'a [u8], count: usize) -> Option<&'a [u8]> {
        let (head, tail) = bytes.split_at_checked(count)?;
        *bytes = tail;
        Some(head)
    }
    fn number(bytes: &mut &[u8]) -> Option<u16> {
        Some(u16::from_be_bytes(take(bytes, 2)?.try_into().ok()?))
    }
    let status = number(&mut bytes)?;
    let count = number(&mut bytes)?;
    let mut headers = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let name_length = number(&mut bytes)?;
        let name = String::from_utf8(take(&mut bytes, usize::from(name_length))?.to_vec()).ok()?;
        let value_length = number(&mut bytes)?;
        let value =
            String::from_utf8(take(&mut bytes, usize::from(value_length))?.to_vec()).ok()?;
        headers.push((name, value));
    }
    Some(ServiceResponse {
        status,
        headers,
        body: bytes::Bytes::copy_from_slice(bytes),
    })
}

/// A JSON value stored under `key` by `stage`.
fn read_json(
    store: &Store,
    stage: &str,
    key: &[u8],
) -> Result<Option<serde_json::Value>, ServiceResponse> {
    match store.effect(stage, key) {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).map(Some).map_err(|error| {
            ServiceResponse::error(500, &format!("stored value corrupt: {error}"))
        }),
        Ok(None) => Ok(None),
        Err(error) => Err(ServiceResponse::error(503, &format!("store: {error}"))),
    }
}

/// A JSON value stored under `key` inside an effect.
fn get_json(effects: &Effects<'_>, key: &[u8]) -> Result<Option<serde_json::Value>, StoreError> {
    effects
        .get(key)?
        .map(|bytes| {
            serde_json::from_slice(&bytes).map_err(|error| StoreError::Corrupt(error.to_string()))
        })
        .transpose()
}

fn method_not_allowed(request: &ServiceRequest) -> ServiceResponse {
    ServiceResponse::error(
        405,
        &format!("{} {} is not supported here", request.method, request.path),
    )
}

fn not_found(request: &ServiceRequest) -> ServiceResponse {
    ServiceResponse::error(404, &format!("no such resource: {}", request.path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_reply_decodes_to_itself() {
        let reply = ServiceResponse::json(201, &serde_json::json!({"id": "o-1"}))
            .header("location", "/api/orders/o-1");
        assert_eq!(decode(&encode(&reply)), Some(reply));
        assert_eq!(decode(&[0, 200, 0, 5]), None);
    }
}
