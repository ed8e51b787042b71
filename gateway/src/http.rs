//! The HTTP front: `{METHOD} /api/{service}[/{rest}]` → the service's request topic, then the
//! parked request waits for its reply. What each answer means is in the crate docs.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Value, json};
use tidepool_client::{DeliveryFuture, Error, ProducerRecord};

use crate::correlation::CorrelationError;
use crate::headers;
use crate::node::Shared;
use crate::parked::{ParkError, Reply};
use crate::topics::{is_service_name, request_topic};

type Gateway = Arc<Shared>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let body_limit = shared.config.body_bytes_max;
    Router::new()
        .route("/api/{service}", any(forward))
        .route("/api/{service}/{*rest}", any(forward))
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .layer(DefaultBodyLimit::max(body_limit))
        // Replies can be larger than requests: the internal route has its own limit.
        .merge(
            Router::new()
                .route(crate::forward::INTERNAL_RESPONSES, post(forwarded_response))
                .layer(DefaultBodyLimit::max(
                    shared.config.forwarded_reply_bytes_max,
                )),
        )
        .with_state(shared)
}

/// A reply another node read for a request parked here: delivered exactly as this node's own
/// response consumer would deliver it, so forwarding cannot answer any other request.
async fn forwarded_response(State(gateway): State<Gateway>, body: Bytes) -> Response {
    let forwarded = match crate::forward::decode(&body) {
        Ok(forwarded) => forwarded,
        Err(reason) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("not a forwarded reply: {reason}"),
                json!({}),
            );
        }
    };
    gateway.metrics.forwarded("received");
    let delivery = crate::responses::deliver(
        &gateway.parked,
        &gateway.metrics,
        &forwarded.id,
        forwarded.reply,
        gateway.env.clock.now(),
    );
    (
        StatusCode::OK,
        axum::Json(json!({ "delivery": delivery.reason() })),
    )
        .into_response()
}

async fn healthz(State(gateway): State<Gateway>) -> Response {
    if let Some(reason) = gateway.broken.get() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the response consumer stopped: {reason}"),
            json!({}),
        );
    }
    let owned: Vec<i32> = gateway.ownership.owned().into_iter().collect();
    let status = if owned.is_empty() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = json!({
        "status": if owned.is_empty() { "joining" } else { "ok" },
        "node": gateway.config.node_id,
        "owned_partitions": owned,
        "parked": gateway.parked.len(),
    });
    (status, axum::Json(body)).into_response()
}

async fn render_metrics(State(gateway): State<Gateway>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        gateway.metrics.render(),
    )
        .into_response()
}

fn error(status: StatusCode, reason: &str, mut extra: Value) -> Response {
    if let Value::Object(fields) = &mut extra {
        fields.insert("error".to_owned(), Value::String(reason.to_owned()));
    } else {
        extra = json!({ "error": reason });
    }
    (status, axum::Json(extra)).into_response()
}

fn retry_later(gateway: &Shared, reason: &'static str, message: &str) -> Response {
    gateway.metrics.unavailable(reason);
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, message, json!({}));
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(gateway.config.retry_after_s),
    );
    response
}

/// `/api/{service}{rest}` split; `rest` starts with `/` (`/` when empty).
fn split_path(path: &str) -> Option<(&str, &str)> {
    let after = path.strip_prefix("/api/")?;
    match after.find('/') {
        Some(slash) => Some((&after[..slash], &after[slash..])),
        None => Some((after, "/")),
    }
}

async fn forward(State(gateway): State<Gateway>, request: Request) -> Response {
    let started = gateway.env.clock.now();
    let path = request.uri().path().to_owned();
    let Some((service, _)) = split_path(&path) else {
        return error(StatusCode::NOT_FOUND, "no such route", json!({}));
    };
    if !is_service_name(service) {
        return error(
            StatusCode::NOT_FOUND,
            "no such service: not a valid service name",
            json!({ "service": service }),
        );
    }
    match gateway.services.exists(service).await {
        Ok(true) => {}
        Ok(false) => {
            return error(
                StatusCode::NOT_FOUND,
                "no such service: it has no request topic",
                json!({ "service": service, "request_topic": request_topic(service) }),
            );
        }
        Err(cause) => {
            return retry_later(
                &gateway,
                "metadata",
                &format!("cannot tell whether the service exists: {cause}"),
            );
        }
    }
    let service = service.to_owned();
    let response = Forwarding {
        gateway: &gateway,
        service: &service,
        started,
    }
    .run(request)
    .await;
    let latency = gateway.env.clock.now().saturating_sub(started);
    gateway
        .metrics
        .answered(&service, response.status().as_u16(), latency);
    response
}

/// One request on its way to a service and back.
struct Forwarding<'a> {
    gateway: &'a Shared,
    service: &'a str,
    started: Duration,
}

impl Forwarding<'_> {
    async fn run(&self, request: Request) -> Response {
        let gateway = self.gateway;
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|length| length.to_str().ok())
            .and_then(|length| length.parse::<u64>().ok());
        if declared.is_some_and(|length| length > gateway.config.body_bytes_max as u64) {
            return self.too_large();
        }
        let method = request.method().as_str().to_owned();
        let query = request.uri().query().map(str::to_owned);
        let path = request.uri().path().to_owned();
        let rest = split_path(&path).map_or("/", |(_, rest)| rest).to_owned();
        let head = request.headers().clone();
        let body = match Bytes::from_request(request, &()).await {
            Ok(body) => body,
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return self.too_large();
            }
            Err(rejection) => return error(rejection.status(), &rejection.body_text(), json!({})),
        };
        let forwarded = match self.forwarded_headers(&head) {
            Ok(forwarded) => forwarded,
            Err(refused) => return refused,
        };

        let id = match gateway.ids.next(&gateway.ownership) {
            Ok(id) => id,
            Err(CorrelationError::NoPartition) => {
                return retry_later(
                    gateway,
                    "no_partition",
                    "this gateway node owns no response partition yet; retry shortly",
                );
            }
            Err(exhausted) => {
                return retry_later(gateway, "no_partition", &exhausted.to_string());
            }
        };
        let deadline = self.started + gateway.config.request_timeout;
        let (guard, reply) = match gateway.parked.park(&id, deadline) {
            Ok(parked) => parked,
            Err(full @ ParkError::Full { .. }) => {
                return retry_later(
                    gateway,
                    "parked_full",
                    &format!("too many requests: {full}"),
                );
            }
            Err(ParkError::Closed) => {
                return retry_later(
                    gateway,
                    "shutting_down",
                    "this gateway node is shutting down",
                );
            }
        };
        let deadline_ms = gateway.env.clock.wall_ms().saturating_add(
            i64::try_from(gateway.config.request_timeout.as_millis()).unwrap_or(i64::MAX),
        );
        let mut record = ProducerRecord::new(request_topic(self.service), body)
            .key(id.clone().into_bytes())
            .header(headers::CORRELATION_ID, id.clone().into_bytes())
            .header(
                headers::REPLY_TO,
                gateway.response_topic.clone().into_bytes(),
            )
            .header(headers::METHOD, method.into_bytes())
            .header(headers::PATH, rest.into_bytes())
            .header(headers::DEADLINE_MS, deadline_ms.to_string().into_bytes());
        if let Some(query) = query {
            record = record.header(headers::QUERY, query.into_bytes());
        }
        for (name, value) in forwarded {
            record = record.header(name, value);
        }
        // Parked, nothing produced yet: a crash here must leave neither a request nor a parked entry.
        tidepool_io::crash_point!(gateway.env.disk, "gateway.parked");
        let delivery = match gateway.producer.send(record).await {
            Ok(delivery) => delivery,
            Err(cause) => return self.not_sent(&cause),
        };
        let answer = self.wait(reply, delivery, deadline).await;
        drop(guard);
        answer
    }

    /// The request headers that travel with it: content-type, accept and every `x-*`.
    #[allow(clippy::result_large_err)]
    fn forwarded_headers(&self, head: &HeaderMap) -> Result<Vec<(String, Vec<u8>)>, Response> {
        let mut forwarded = Vec::new();
        for name in [header::CONTENT_TYPE, header::ACCEPT] {
            if let Some(value) = head.get(&name) {
                forwarded.push((name.as_str().to_owned(), value.as_bytes().to_vec()));
            }
        }
        let mut extra = 0;
        for (name, value) in head {
            if !headers::is_forwarded_request_header(name.as_str()) {
                continue;
            }
            extra += 1;
            if extra > self.gateway.config.forwarded_headers_max {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "more than {} x- headers",
                        self.gateway.config.forwarded_headers_max
                    ),
                    json!({}),
                ));
            }
            forwarded.push((name.as_str().to_owned(), value.as_bytes().to_vec()));
        }
        Ok(forwarded)
    }

    /// Waits for the reply, noticing a failed delivery of the request on the way.
    async fn wait(
        &self,
        mut reply: tokio::sync::oneshot::Receiver<Reply>,
        delivery: DeliveryFuture,
        deadline: Duration,
    ) -> Response {
        let gateway = self.gateway;
        let remaining = deadline.saturating_sub(gateway.env.clock.now());
        let timeout = gateway.env.clock.sleep(remaining);
        tokio::pin!(timeout);
        tokio::pin!(delivery);
        let mut delivered = false;
        loop {
            tokio::select! {
                biased;
                answer = &mut reply => {
                    return match answer {
                        Ok(answer) => http_reply(answer),
                        // The entry went away without an answer: the gateway shut down, or
                        // a reply came just past the deadline.
                        Err(_) if gateway.parked.is_closed() => retry_later(
                            gateway,
                            "shutting_down",
                            "this gateway node shut down before the reply came",
                        ),
                        Err(_) => self.timed_out(),
                    };
                }
                sent = &mut delivery, if !delivered => {
                    delivered = true;
                    if let Err(cause) = sent {
                        return self.not_sent(&cause);
                    }
                }
                () = &mut timeout => {
                    // A reply may have been handed over just now: it wins over the 504.
                    return match reply.try_recv() {
                        Ok(answer) => http_reply(answer),
                        Err(_) => self.timed_out(),
                    };
                }
            }
        }
    }

    fn timed_out(&self) -> Response {
        self.gateway.metrics.timed_out(self.service);
        error(
            StatusCode::GATEWAY_TIMEOUT,
            "the service did not answer in time",
            json!({
                "service": self.service,
                "timeout_ms": self.gateway.config.request_timeout.as_millis(),
            }),
        )
    }

    fn not_sent(&self, cause: &Error) -> Response {
        let message = format!("the request could not be handed to the service: {cause}");
        let transient = cause.is_retriable()
            || matches!(
                cause,
                Error::BufferFull | Error::UnknownOutcome(_) | Error::Timeout { .. }
            );
        if transient {
            retry_later(self.gateway, "produce", &message)
        } else {
            error(StatusCode::BAD_GATEWAY, &message, json!({}))
        }
    }

    fn too_large(&self) -> Response {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "the body is larger than {} bytes",
                self.gateway.config.body_bytes_max
            ),
            json!({ "body_bytes_max": self.gateway.config.body_bytes_max }),
        )
    }
}

fn http_reply(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, reply.body).into_response();
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
