//! The service side (DESIGN.md §6): a [`Responder`] consumes a service's request topic in a
//! consumer group of its own, calls a [`ServiceHandler`] for each request and produces the
//! reply, keyed by the correlation id, to the request's `reply-to` topic. Offsets are committed
//! only after the replies they cover are acknowledged: at-least-once, so a handler sees a
//! request again after a crash and must make its effect idempotent per correlation id (the
//! example services do it with the store's dedup keys, and replay the stored reply).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tidepool_client::{
    BoxFuture, Client, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, DeliveryFuture,
    OffsetAndMetadata, OffsetReset, Producer, ProducerConfig, ProducerRecord, TopicPartition,
};
use tidepool_io::Env;
use tokio::sync::watch;

use crate::config::ResponderConfig;
use crate::headers;
use crate::metrics::GatewayMetrics;
use crate::topics::is_topic_name;

/// A request as a service sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRequest {
    pub correlation_id: String,
    /// The topic the reply goes to.
    pub reply_to: String,
    pub method: String,
    /// The path after `/api/{service}`, starting with `/`.
    pub path: String,
    pub query: Option<String>,
    /// `content-type`, `accept` and the forwarded `x-*` headers.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Epoch ms after which the gateway no longer waits for the answer.
    pub deadline_ms: Option<i64>,
    /// Where the request was read: `topic/partition@offset`.
    pub source: String,
}

impl ServiceRequest {
    /// The request a record carries, or why it carries none.
    pub fn from_record(record: &ConsumerRecord) -> Result<ServiceRequest, String> {
        let find = |key| headers::find(&record.headers, key).map(str::to_owned);
        let correlation_id = find(headers::CORRELATION_ID)
            .filter(|id| !id.is_empty())
            .ok_or("no correlation-id header")?;
        let reply_to = find(headers::REPLY_TO)
            .filter(|topic| is_topic_name(topic))
            .ok_or("no valid reply-to header")?;
        let method = find(headers::METHOD).unwrap_or_else(|| "GET".to_owned());
        let path = find(headers::PATH)
            .filter(|path| path.starts_with('/'))
            .unwrap_or_else(|| "/".to_owned());
        let passed = [
            headers::CORRELATION_ID,
            headers::REPLY_TO,
            headers::METHOD,
            headers::PATH,
            headers::QUERY,
            headers::DEADLINE_MS,
        ];
        let request_headers = record
            .headers
            .iter()
            .filter(|header| !passed.contains(&header.key.as_str()))
            .filter_map(|header| {
                let value = std::str::from_utf8(header.value.as_deref()?).ok()?;
                Some((header.key.clone(), value.to_owned()))
            })
            .collect();
        Ok(ServiceRequest {
            correlation_id,
            reply_to,
            method,
            path,
            query: find(headers::QUERY),
            headers: request_headers,
            body: record.value.clone().unwrap_or_default(),
            deadline_ms: find(headers::DEADLINE_MS).and_then(|ms| ms.parse().ok()),
            source: format!("{}/{}@{}", record.topic, record.partition, record.offset),
        })
    }

    /// The path's segments, without empty ones: `/42/items` → `["42", "items"]`.
    pub fn segments(&self) -> Vec<&str> {
        self.path
            .split('/')
            .filter(|segment| !segment.is_empty())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The body as JSON, or a 400 answer saying why it is not.
    #[allow(clippy::result_large_err)]
    pub fn json(&self) -> Result<Value, ServiceResponse> {
        serde_json::from_slice(&self.body)
            .map_err(|error| ServiceResponse::error(400, &format!("the body is not JSON: {error}")))
    }
}

/// A service's answer: the HTTP status, headers and body the gateway returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl ServiceResponse {
    /// `body` as JSON with `status`.
    pub fn json(status: u16, body: &Value) -> ServiceResponse {
        ServiceResponse {
            status,
            headers: vec![(
                headers::CONTENT_TYPE.to_owned(),
                "application/json".to_owned(),
            )],
            body: Bytes::from(body.to_string()),
        }
    }

    /// `{"error": reason}` with `status`.
    pub fn error(status: u16, reason: &str) -> ServiceResponse {
        ServiceResponse::json(status, &json!({ "error": reason }))
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> ServiceResponse {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// What a service does with a request. Delivery is at-least-once: the same request (same
/// correlation id) may come again, and must then have the same effect as once and, ideally,
/// the same answer.
pub trait ServiceHandler: Send + Sync + 'static {
    fn handle<'a>(&'a self, request: &'a ServiceRequest) -> BoxFuture<'a, ServiceResponse>;
}

/// Errors that stop a responder (a handler's answer never does).
#[derive(Debug, thiserror::Error)]
pub enum ResponderError {
    #[error("kafka: {0}")]
    Kafka(#[from] tidepool_client::Error),
}

/// What became of one polled record on its way out.
enum Outgoing {
    /// Nothing to answer (no correlation id or reply-to): commit past it.
    Skipped,
    Sent(DeliveryFuture),
    /// The reply could not be handed to the producer.
    NotSent,
}

/// A running responder for one service.
pub struct Responder {
    config: ResponderConfig,
    consumer_client: Client,
    producer_client: Client,
    consumer: Consumer,
    producer: Producer,
    handler: Arc<dyn ServiceHandler>,
    metrics: GatewayMetrics,
}

impl Responder {
    /// Joins the service's group on its request topic. The consumer and the producer get a
    /// Client each: a Kafka broker answers one request per connection at a time, so a
    /// long-polling fetch would otherwise hold back the replies' acknowledgements.
    pub async fn start(
        env: Env,
        bootstrap: &str,
        config: ResponderConfig,
        handler: Arc<dyn ServiceHandler>,
        metrics: GatewayMetrics,
    ) -> Result<Responder, ResponderError> {
        let client_config =
            ClientConfig::new(bootstrap).client_id(format!("responder-{}", config.service));
        Responder::start_with_client(env, client_config, config, handler, metrics).await
    }

    /// [`Responder::start`] with the Kafka clients' settings given: the simulator shortens
    /// their timeouts, as a crashed broker there drops connections without a word.
    pub async fn start_with_client(
        env: Env,
        client_config: ClientConfig,
        config: ResponderConfig,
        handler: Arc<dyn ServiceHandler>,
        metrics: GatewayMetrics,
    ) -> Result<Responder, ResponderError> {
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
            consumer
                .subscribe(&[config.request_topic().as_str()])
                .await?;
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
        Ok(Responder {
            config,
            consumer_client,
            producer_client,
            consumer,
            producer,
            handler,
            metrics,
        })
    }

    pub fn config(&self) -> &ResponderConfig {
        &self.config
    }

    pub fn consumer(&self) -> &Consumer {
        &self.consumer
    }

    /// Runs rounds until `stop` turns true, then leaves the group and closes its clients. A
    /// failed poll is tried again after `retry_backoff`; only a closed or fenced consumer ends
    /// the run early, with its error.
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
                        tracing::warn!(service = %self.config.service, %error, "responder: poll failed; trying again");
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

    /// One poll: each request handled in order and its reply produced, then the offsets of
    /// the records whose replies were acknowledged committed. A partition whose reply failed
    /// is rewound to that record, to be handled (and answered) again. Returns the replies
    /// acknowledged.
    pub async fn round(&mut self) -> Result<usize, ResponderError> {
        let records = self.consumer.poll(self.config.poll_wait).await?;
        let mut outgoing = Vec::with_capacity(records.len());
        for record in &records {
            outgoing.push(self.answer(record).await);
        }
        let mut done: BTreeMap<TopicPartition, OffsetAndMetadata> = BTreeMap::new();
        let mut rewound: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        let mut acknowledged = 0;
        for (record, out) in records.iter().zip(outgoing) {
            let tp = TopicPartition::new(record.topic.clone(), record.partition);
            if rewound.contains_key(&tp) {
                continue;
            }
            let (ok, replied) = match out {
                Outgoing::Skipped => (true, false),
                Outgoing::Sent(delivery) => (delivery.await.is_ok(), true),
                Outgoing::NotSent => (false, true),
            };
            if ok {
                if replied {
                    acknowledged += 1;
                }
                done.insert(tp, OffsetAndMetadata::new(record.offset + 1));
            } else {
                rewound.insert(tp, record.offset);
            }
        }
        // Replies acknowledged, their requests' offsets not committed: a crash here redelivers
        // requests whose replies the gateway already has.
        tidepool_io::crash_point!(self.consumer_client.env().disk, "responder.replied");
        if !done.is_empty() {
            // A failed commit (a rebalance took the partition) only means redelivery, which
            // idempotent handlers absorb.
            if let Err(error) = self.consumer.commit_sync(Some(done)).await {
                tracing::debug!(service = %self.config.service, %error, "responder: commit failed; requests will be redelivered");
            }
        }
        for (tp, offset) in &rewound {
            // Fails only if the partition is gone, and then its new owner handles the record.
            let _ = self.consumer.seek(tp, *offset).await;
        }
        if !rewound.is_empty() {
            tracing::warn!(
                service = %self.config.service,
                partitions = rewound.len(),
                "responder: replies not acknowledged; handling those requests again"
            );
            self.consumer_client.sleep(self.config.retry_backoff).await;
        }
        // A round of handlers may run long without awaiting: let the runtime's other tasks in.
        tokio::task::yield_now().await;
        Ok(acknowledged)
    }

    /// Handles one request record and hands its reply to the producer.
    async fn answer(&self, record: &ConsumerRecord) -> Outgoing {
        let request = match ServiceRequest::from_record(record) {
            Ok(request) => request,
            Err(reason) => {
                tracing::warn!(
                    service = %self.config.service,
                    offset = record.offset,
                    %reason,
                    "responder: skipping a record that is not a request"
                );
                return Outgoing::Skipped;
            }
        };
        let response = self.handler.handle(&request).await;
        // The service's effect is stored, its reply not produced yet.
        tidepool_io::crash_point!(self.consumer_client.env().disk, "responder.handled");
        let mut reply = ProducerRecord::new(request.reply_to.clone(), response.body)
            .key(request.correlation_id.clone().into_bytes())
            .header(
                headers::CORRELATION_ID,
                request.correlation_id.clone().into_bytes(),
            )
            .header(headers::STATUS, response.status.to_string().into_bytes());
        for (name, value) in response.headers {
            reply = reply.header(name.to_ascii_lowercase(), value.into_bytes());
        }
        match self.producer.send(reply).await {
            Ok(delivery) => {
                self.metrics.replied(&self.config.service);
                Outgoing::Sent(delivery)
            }
            Err(error) => {
                tracing::warn!(%error, "responder: reply not sent");
                Outgoing::NotSent
            }
        }
    }
}
