//! The order validation stage: a consumer group on `orders.events` that takes each `created`
//! order to `validated` or `rejected` (terminal, with a `reason`), announced as a further event
//! on the same topic, keyed by the order id and carrying the creating request's
//! `correlation-id`, so a gateway request waiting with `?wait=validated` is answered.
//!
//! An order is valid when it has 1 to [`ITEMS_MAX`] items, each `{"sku": a non-empty string,
//! "quantity": 1 to` [`QUANTITY_MAX`]`}`.
//!
//! Offsets are committed only after the events they led to are acknowledged: a crash
//! validates an order again and announces its state twice, which a waiting request absorbs
//! (it is answered once). Validation is a pure function of the order, so both announcements
//! say the same.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use tidepool_client::{
    Client, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, DeliveryFuture,
    OffsetAndMetadata, OffsetReset, Producer, ProducerConfig, ProducerRecord, TopicPartition,
};
use tidepool_io::Env;
use tokio::sync::watch;

use super::orders::{CREATED, EVENTS_TOPIC};
use crate::events::{STATE, TERMINAL};
use crate::headers;
use crate::responder::ResponderError;

/// A valid order's state.
pub const VALIDATED: &str = "validated";
/// An invalid order's state; terminal.
pub const REJECTED: &str = "rejected";
/// Items one order may have.
pub const ITEMS_MAX: usize = 100;
/// The largest quantity of one item.
pub const QUANTITY_MAX: u64 = 1000;

/// The validator's settings.
#[derive(Debug, Clone)]
pub struct ValidatorConfig {
    /// The topic it reads `created` orders from and announces their new state on (default
    /// `orders.events`).
    pub events_topic: String,
    /// The consumer group (default `orders.validator`).
    pub group: String,
    pub poll_wait: Duration,
    pub max_poll_records: usize,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    /// Pause before validating again after an event could not be produced.
    pub retry_backoff: Duration,
}

impl Default for ValidatorConfig {
    fn default() -> ValidatorConfig {
        ValidatorConfig {
            events_topic: EVENTS_TOPIC.to_owned(),
            group: "orders.validator".to_owned(),
            poll_wait: Duration::from_millis(100),
            max_poll_records: 200,
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(200),
        }
    }
}

/// Why an order is rejected, if it is.
pub fn validate(order: &Value) -> Result<(), String> {
    let items = order
        .get("items")
        .and_then(Value::as_array)
        .ok_or("an order needs \"items\": a list")?;
    if items.is_empty() {
        return Err("an order needs at least one item".to_owned());
    }
    if items.len() > ITEMS_MAX {
        return Err(format!("an order has at most {ITEMS_MAX} items"));
    }
    for (index, item) in items.iter().enumerate() {
        let sku = item.get("sku").and_then(Value::as_str).unwrap_or_default();
        let quantity = item.get("quantity").and_then(Value::as_u64).unwrap_or(0);
        if sku.is_empty() {
            return Err(format!("item {index} has no sku"));
        }
        if !(1..=QUANTITY_MAX).contains(&quantity) {
            return Err(format!(
                "item {index} ({sku}): the quantity must be 1 to {QUANTITY_MAX}"
            ));
        }
    }
    Ok(())
}

/// The event that follows a `created` event: the order in its new state, on the same topic.
fn next_event(record: &ConsumerRecord) -> ProducerRecord {
    let order = record
        .value
        .as_deref()
        .and_then(|value| serde_json::from_slice::<Value>(value).ok())
        .filter(Value::is_object);
    let verdict = match &order {
        Some(order) => validate(order),
        None => Err("the created event carries no JSON object".to_owned()),
    };
    let mut order = order.unwrap_or_else(|| json!({}));
    let state = match verdict {
        Ok(()) => VALIDATED,
        Err(reason) => {
            order["reason"] = json!(reason);
            REJECTED
        }
    };
    order["status"] = json!(state);
    let mut event = ProducerRecord::new(record.topic.clone(), order.to_string().into_bytes())
        .header(STATE, state.as_bytes().to_vec());
    event.key = record.key.clone();
    if let Some(id) = headers::find(&record.headers, headers::CORRELATION_ID) {
        event = event.header(headers::CORRELATION_ID, id.as_bytes().to_vec());
    }
    if state == REJECTED {
        event = event.header(TERMINAL, &b"true"[..]);
    }
    event
}

/// A running order validator.
pub struct OrderValidator {
    config: ValidatorConfig,
    consumer_client: Client,
    producer_client: Client,
    consumer: Consumer,
    producer: Producer,
}

impl OrderValidator {
    /// Joins the validator's group on its events topic (which must exist). The consumer and the
    /// producer get a Client each, as a responder's do.
    pub async fn start(
        env: Env,
        bootstrap: &str,
        config: ValidatorConfig,
    ) -> Result<OrderValidator, ResponderError> {
        let client_config = ClientConfig::new(bootstrap).client_id("orders-validator");
        let consumer_client = Client::connect(env.clone(), client_config.clone()).await?;
        let producer_client = match Client::connect(env, client_config).await {
            Ok(client) => client,
            Err(error) => {
                consumer_client.close();
                return Err(error.into());
            }
        };
        let parts = async {
            let consumer = Consumer::new(
                consumer_client.clone(),
                ConsumerConfig::new(config.group.clone())
                    .auto_commit(false)
                    .auto_offset_reset(OffsetReset::Earliest)
                    .max_poll_records(config.max_poll_records)
                    .fetch_max_wait(config.poll_wait)
                    .session_timeout(config.session_timeout)
                    .rebalance_timeout(config.rebalance_timeout)
                    .heartbeat_interval(config.session_timeout / 4),
            )
            .await?;
            consumer.subscribe(&[config.events_topic.as_str()]).await?;
            let producer = Producer::new(
                producer_client.clone(),
                ProducerConfig::default().linger(Duration::ZERO),
            )
            .await?;
            Ok::<_, tidepool_client::Error>((consumer, producer))
        };
        let (consumer, producer) = match parts.await {
            Ok(parts) => parts,
            Err(error) => {
                consumer_client.close();
                producer_client.close();
                return Err(error.into());
            }
        };
        Ok(OrderValidator {
            config,
            consumer_client,
            producer_client,
            consumer,
            producer,
        })
    }

    /// Runs rounds until `stop` turns true, then leaves the group and closes its clients; only
    /// a closed or fenced consumer ends the run early, with its error.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), ResponderError> {
        let mut outcome = Ok(());
        while !*stop.borrow() {
            tokio::select! {
                biased;
                _ = stop.changed() => {}
                round = self.round() => match round {
                    Ok(_) => {}
                    Err(ResponderError::Kafka(
                        error @ (tidepool_client::Error::Closed | tidepool_client::Error::Fatal(_)),
                    )) => {
                        outcome = Err(error.into());
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "order validator: poll failed; trying again");
                        self.consumer_client.sleep(self.config.retry_backoff).await;
                    }
                },
            }
        }
        let _ = self.consumer.close().await;
        let _ = self.producer.close().await;
        self.consumer_client.close();
        self.producer_client.close();
        outcome
    }

    /// One poll: each `created` order validated and its new state produced, then the offsets
    /// whose events were acknowledged committed; a partition whose event failed is rewound to
    /// it. Returns the events acknowledged.
    pub async fn round(&mut self) -> Result<usize, ResponderError> {
        let records = self.consumer.poll(self.config.poll_wait).await?;
        let mut sent: Vec<Option<Result<DeliveryFuture, ()>>> = Vec::with_capacity(records.len());
        for record in &records {
            if headers::find(&record.headers, STATE) != Some(CREATED) {
                sent.push(None);
                continue;
            }
            sent.push(Some(self.producer.send(next_event(record)).await.map_err(
                |error| {
                    tracing::warn!(%error, "order validator: event not sent");
                },
            )));
        }
        let mut done: BTreeMap<TopicPartition, OffsetAndMetadata> = BTreeMap::new();
        let mut rewound: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        let mut acknowledged = 0;
        for (record, out) in records.iter().zip(sent) {
            let tp = TopicPartition::new(record.topic.clone(), record.partition);
            if rewound.contains_key(&tp) {
                continue;
            }
            let ok = match out {
                None => true,
                Some(Ok(delivery)) => delivery.await.is_ok(),
                Some(Err(())) => false,
            };
            if ok {
                acknowledged += usize::from(headers::find(&record.headers, STATE) == Some(CREATED));
                done.insert(tp, OffsetAndMetadata::new(record.offset + 1));
            } else {
                rewound.insert(tp, record.offset);
            }
        }
        if !done.is_empty()
            && let Err(error) = self.consumer.commit_sync(Some(done)).await
        {
            // A rebalance took the partition: its new owner validates those orders again.
            tracing::debug!(%error, "order validator: commit failed");
        }
        for (tp, offset) in &rewound {
            let _ = self.consumer.seek(tp, *offset).await;
        }
        if !rewound.is_empty() {
            self.consumer_client.sleep(self.config.retry_backoff).await;
        }
        tokio::task::yield_now().await;
        Ok(acknowledged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_with_positive_quantities_is_valid_and_anything_else_says_why_not() {
        assert_eq!(
            validate(&json!({"items": [{"sku": "tea", "quantity": 2}]})),
            Ok(())
        );
        for (order, why) in [
            (json!({}), "items"),
            (json!({"items": []}), "at least one item"),
            (
                json!({"items": [{"sku": "tea", "quantity": 0}]}),
                "quantity",
            ),
            (
                json!({"items": [{"sku": "tea", "quantity": -1}]}),
                "quantity",
            ),
            (json!({"items": [{"quantity": 1}]}), "no sku"),
        ] {
            let reason = validate(&order).unwrap_err();
            assert!(reason.contains(why), "{order}: {reason}");
        }
    }
}
