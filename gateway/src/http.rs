//! The HTTP front: `{METHOD} /api/{service}[/{rest}]` → the service's request topic, then the
//! parked request waits for its reply (or, with `?wait=STATE`, for its entity's state). What
//! each answer means is in the crate docs. `/ws` carries the same requests over a WebSocket
//! (`ws`), through the same [`exchange`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Value, json};
use tidepool_client::{DeliveryFuture, Error, ProducerRecord};

use crate::correlation::CorrelationError;
use crate::events::{EventsError, events_topic};
use crate::headers;
use crate::node::Shared;
use crate::parked::{ParkError, Reply, STATE_HEADER};
use crate::topics::{is_service_name, request_topic};

type Gateway = Arc<Shared>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let body_limit = shared.config.body_bytes_max;
    Router::new()
        .route("/api/{service}", any(forward))
        .route("/api/{service}/{*rest}", any(forward))
        .route("/ws", get(crate::ws::upgrade))
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

fn error(status: StatusCode, reason: &str, extra: Value) -> Response {
    http_reply(error_reply(status.as_u16(), reason, extra))
}

/// An answer the gateway makes itself: `{"error": reason, ...extra}` as JSON.
pub(crate) fn error_reply(status: u16, reason: &str, mut extra: Value) -> Reply {
    if let Value::Object(fields) = &mut extra {
        fields.insert("error".to_owned(), Value::String(reason.to_owned()));
    } else {
        extra = json!({ "error": reason });
    }
    Reply {
        status,
        headers: vec![(
            headers::CONTENT_TYPE.to_owned(),
            "application/json".to_owned(),
        )],
        body: Bytes::from(extra.to_string()),
    }
}

pub(crate) fn retry_later(gateway: &Shared, reason: &'static str, message: &str) -> Reply {
    gateway.metrics.unavailable(reason);
    let mut reply = error_reply(503, message, json!({}));
    reply.headers.push((
        header::RETRY_AFTER.as_str().to_owned(),
        gateway.config.retry_after_s.to_string(),
    ));
    reply
}

/// `/api/{service}{rest}` split; `rest` starts with `/` (`/` when empty).
fn split_path(path: &str) -> Option<(&str, &str)> {
    let after = path.strip_prefix("/api/")?;
    match after.find('/') {
        Some(slash) => Some((&after[..slash], &after[slash..])),
        None => Some((after, "/")),
    }
}

/// A request on its way to a service, however it came: over HTTP or in a WebSocket frame.
pub(crate) struct Call {
    pub(crate) service: String,
    pub(crate) method: String,
    /// The path after `/api/{service}`, starting with `/`.
    pub(crate) rest: String,
    pub(crate) query: Option<String>,
    /// The headers that travel with it (content-type, accept, `x-*`), already bounded.
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) body: Bytes,
}

/// The headers of a request that travel with it: content-type, accept and every `x-*`; more
/// than `forwarded_headers_max` of the latter is refused (400).
pub(crate) fn forwarded_headers<'a>(
    gateway: &Shared,
    head: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<Vec<(String, Vec<u8>)>, Reply> {
    let mut forwarded = Vec::new();
    let mut extra = 0;
    for (name, value) in head {
        let name = name.to_ascii_lowercase();
        if name != headers::CONTENT_TYPE && name != headers::ACCEPT {
            if !headers::is_forwarded_request_header(&name) {
                continue;
            }
            extra += 1;
            if extra > gateway.config.forwarded_headers_max {
                return Err(error_reply(
                    400,
                    &format!(
                        "more than {} x- headers",
                        gateway.config.forwarded_headers_max
                    ),
                    json!({}),
                ));
            }
        }
        forwarded.push((name, value.to_vec()));
    }
    Ok(forwarded)
}

async fn forward(State(gateway): State<Gateway>, request: Request) -> Response {
    let started = gateway.env.clock.now();
    let path = request.uri().path().to_owned();
    let Some((service, rest)) = split_path(&path) else {
        return error(StatusCode::NOT_FOUND, "no such route", json!({}));
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok())
        .and_then(|length| length.parse::<u64>().ok());
    if declared.is_some_and(|length| length > gateway.config.body_bytes_max as u64) {
        return http_reply(too_large(&gateway));
    }
    let method = request.method().as_str().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let head = request.headers().clone();
    let body = match Bytes::from_request(request, &()).await {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return http_reply(too_large(&gateway));
        }
        Err(rejection) => return error(rejection.status(), &rejection.body_text(), json!({})),
    };
    let forwarded = match forwarded_headers(
        &gateway,
        head.iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes())),
    ) {
        Ok(forwarded) => forwarded,
        Err(refused) => return http_reply(refused),
    };
    let call = Call {
        service: service.to_owned(),
        method,
        rest: rest.to_owned(),
        query,
        headers: forwarded,
        body,
    };
    http_reply(exchange(&gateway, call, started).await)
}

pub(crate) fn too_large(gateway: &Shared) -> Reply {
    error_reply(
        413,
        &format!(
            "the body is larger than {} bytes",
            gateway.config.body_bytes_max
        ),
        json!({ "body_bytes_max": gateway.config.body_bytes_max }),
    )
}

/// The state a request waits for (`wait=STATE` in its query), if any.
fn wanted_state(query: Option<&str>) -> Result<Option<String>, Reply> {
    let Some(wanted) = query
        .into_iter()
        .flat_map(|query| query.split('&'))
        .find_map(|pair| pair.strip_prefix("wait="))
    else {
        return Ok(None);
    };
    if !crate::events::is_state_name(wanted) {
        return Err(error_reply(
            400,
            &format!(
                "wait: a state, 1 to {} letters, digits, '_' or '-'",
                crate::events::STATE_BYTES_MAX
            ),
            json!({}),
        ));
    }
    Ok(Some(wanted.to_owned()))
}

/// Sends `call` to its service and waits for the answer (or for the state it waits for):
/// the one path HTTP requests and WebSocket frames take.
pub(crate) async fn exchange(gateway: &Shared, call: Call, started: Duration) -> Reply {
    let service = call.service.as_str();
    if !is_service_name(service) {
        return error_reply(
            404,
            "no such service: not a valid service name",
            json!({ "service": service }),
        );
    }
    match gateway.services.exists(service).await {
        Ok(true) => {}
        Ok(false) => {
            return error_reply(
                404,
                "no such service: it has no request topic",
                json!({ "service": service, "request_topic": request_topic(service) }),
            );
        }
        Err(cause) => {
            return retry_later(
                gateway,
                "metadata",
                &format!("cannot tell whether the service exists: {cause}"),
            );
        }
    }
    let (wanted, reply) = match wanted_state(call.query.as_deref()) {
        Ok(wanted) => {
            let forwarding = Forwarding {
                gateway,
                service,
                started,
                wanted: wanted.as_deref(),
            };
            let reply = forwarding.run(&call).await;
            (wanted, reply)
        }
        Err(refused) => (None, refused),
    };
    let latency = gateway.env.clock.now().saturating_sub(started);
    gateway.metrics.answered(service, reply.status, latency);
    if let Some(wanted) = &wanted {
        let state = reply
            .headers
            .iter()
            .find(|(name, _)| name == STATE_HEADER)
            .map(|(_, state)| state.as_str());
        let outcome = match state {
            Some(state) if state == wanted => "reached",
            Some(_) => "ended",
            None if reply.status == 504 => "timed_out",
            None => "failed",
        };
        gateway.metrics.waited(service, outcome);
    }
    reply
}

/// One request on its way to a service and back.
struct Forwarding<'a> {
    gateway: &'a Shared,
    service: &'a str,
    started: Duration,
    /// The state it waits for (`?wait=`), if any.
    wanted: Option<&'a str>,
}

impl Forwarding<'_> {
    async fn run(&self, call: &Call) -> Reply {
        let gateway = self.gateway;
        if let Some(wanted) = self.wanted {
            // Before the request exists: its events must all lie past where the reader starts.
            let topic = events_topic(self.service);
            match gateway.events.read(&topic).await {
                Ok(()) => {}
                Err(EventsError::NoTopic(topic)) => {
                    return error_reply(
                        400,
                        &format!("cannot wait for {wanted:?}: the service publishes no events"),
                        json!({ "events_topic": topic }),
                    );
                }
                Err(too_many @ EventsError::TooMany(_)) => {
                    return retry_later(gateway, "events_topics", &too_many.to_string());
                }
                Err(other) => {
                    return retry_later(
                        gateway,
                        "events",
                        &format!("cannot read the service's events: {other}"),
                    );
                }
            }
        }
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
        let parked = match self.wanted {
            Some(wanted) => gateway.parked.park_waiting(&id, deadline, wanted),
            None => gateway.parked.park(&id, deadline),
        };
        let (guard, reply) = match parked {
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
        let mut record = ProducerRecord::new(request_topic(self.service), call.body.clone())
            .key(id.clone().into_bytes())
            .header(headers::CORRELATION_ID, id.clone().into_bytes())
            .header(
                headers::REPLY_TO,
                gateway.response_topic.clone().into_bytes(),
            )
            .header(headers::METHOD, call.method.clone().into_bytes())
            .header(headers::PATH, call.rest.clone().into_bytes())
            .header(headers::DEADLINE_MS, deadline_ms.to_string().into_bytes());
        if let Some(query) = &call.query {
            record = record.header(headers::QUERY, query.clone().into_bytes());
        }
        for (name, value) in &call.headers {
            record = record.header(name.clone(), value.clone());
        }
        // Parked, nothing produced yet: a crash here must leave neither a request nor a parked entry.
        tidepool_io::crash_point!(gateway.env.disk, "gateway.parked");
        let delivery = match gateway.producer.send(record).await {
            Ok(delivery) => delivery,
            Err(cause) => return self.not_sent(&cause),
        };
        let answer = self.wait(&id, reply, delivery, deadline).await;
        drop(guard);
        answer
    }

    /// Waits for the reply, noticing a failed delivery of the request on the way.
    async fn wait(
        &self,
        id: &str,
        mut reply: tokio::sync::oneshot::Receiver<Reply>,
        delivery: DeliveryFuture,
        deadline: Duration,
    ) -> Reply {
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
                        Ok(answer) => answer,
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
                    // A reply may have been handed over just now: it wins over the 504, and so
                    // does a state reached while the reply is still on its way.
                    return match reply.try_recv() {
                        Ok(answer) => answer,
                        Err(_) => gateway
                            .parked
                            .take_reached(id)
                            .unwrap_or_else(|| self.timed_out()),
                    };
                }
            }
        }
    }

    fn timed_out(&self) -> Reply {
        self.gateway.metrics.timed_out(self.service);
        let reason = match self.wanted {
            Some(wanted) => format!("the service did not reach {wanted:?} in time"),
            None => "the service did not answer in time".to_owned(),
        };
        error_reply(
            504,
            &reason,
            json!({
                "service": self.service,
                "timeout_ms": self.gateway.config.request_timeout.as_millis(),
            }),
        )
    }

    fn not_sent(&self, cause: &Error) -> Reply {
        let message = format!("the request could not be handed to the service: {cause}");
        let transient = cause.is_retriable()
            || matches!(
                cause,
                Error::BufferFull | Error::UnknownOutcome(_) | Error::Timeout { .. }
            );
        if transient {
            retry_later(self.gateway, "produce", &message)
        } else {
            error_reply(502, &message, json!({}))
        }
    }
}

pub(crate) fn http_reply(reply: Reply) -> Response {
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
