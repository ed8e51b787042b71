//! `/ws`: a client's requests and answers over one WebSocket (crate docs, "WebSocket").
//!
//! Each text frame is one request; each gets exactly one answer frame, in the order the
//! answers come, not the order asked. A request travels exactly as an HTTP request does
//! ([`crate::http::exchange`]): a correlation id owned by this node, parked in the same
//! bounded map, so a reply that lands on another node after a partition move is forwarded
//! here and answers the frame. What a socket has waiting leaves the map when it closes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::task::JoinSet;

use crate::http::{
    Call, error_reply, exchange, forwarded_headers, http_reply, retry_later, too_large,
};
use crate::node::Shared;
use crate::parked::Reply;

/// The longest client id a frame may carry, as JSON text.
pub const ID_BYTES_MAX: usize = 256;
/// The longest path or query a frame may carry.
const LOCATOR_BYTES_MAX: usize = 8 * 1024;
/// How long a closing socket waits for its requests' last answers when the node shuts down
/// (they end at once: the parked map is closed, so they answer 503).
const CLOSING_GRACE: Duration = Duration::from_secs(1);
/// "Going away": the close code when the node shuts down.
const GOING_AWAY: u16 = 1001;

/// Upgrades to a WebSocket, unless `ws_connections_max` are open already (503).
pub(crate) async fn upgrade(State(gateway): State<Arc<Shared>>, ws: WebSocketUpgrade) -> Response {
    let max = gateway.config.ws_connections_max;
    if gateway.websockets.fetch_add(1, Ordering::SeqCst) >= max {
        gateway.websockets.fetch_sub(1, Ordering::SeqCst);
        return http_reply(retry_later(
            &gateway,
            "websockets_full",
            &format!("{max} WebSockets are open already"),
        ));
    }
    gateway.metrics.websocket_opened();
    let slot = Slot(Arc::clone(&gateway));
    ws.max_message_size(gateway.config.ws_message_bytes_max)
        .max_frame_size(gateway.config.ws_message_bytes_max)
        .on_upgrade(move |socket| serve(socket, slot))
        .into_response()
}

/// A place among the open WebSockets, given back when dropped (also when the upgrade fails).
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.websockets.fetch_sub(1, Ordering::SeqCst);
        self.0.metrics.websocket_closed();
    }
}

/// What one request frame asked, or the answer refusing it.
enum Incoming {
    Request {
        id: Value,
        call: Call,
    },
    Refused {
        id: Value,
        reply: Reply,
        reason: &'static str,
    },
}

async fn serve(mut socket: WebSocket, slot: Slot) {
    let gateway = Arc::clone(&slot.0);
    let mut stopped = gateway.stopped.clone();
    let stop = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stop);
    // Aborted with the socket: each task's park guard then takes its entry out of the map.
    let mut running: JoinSet<(String, Value)> = JoinSet::new();
    let mut in_flight: BTreeSet<String> = BTreeSet::new();
    loop {
        let outgoing = tokio::select! {
            biased;
            () = &mut stop => {
                close_going_away(&mut socket, &gateway, &mut running).await;
                return;
            }
            Some(done) = running.join_next(), if !running.is_empty() => {
                let Ok((key, frame)) = done else { continue };
                in_flight.remove(&key);
                frame
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    match parse(&gateway, text.as_str()) {
                        Incoming::Request { id, call } => {
                            let key = id.to_string();
                            if in_flight.contains(&key) {
                                gateway.metrics.ws_refused("duplicate_id");
                                frame(&id, error_reply(
                                    400,
                                    "this id already has a request in flight on this socket",
                                    json!({}),
                                ))
                            } else if in_flight.len() >= gateway.config.ws_in_flight_max {
                                gateway.metrics.ws_refused("in_flight");
                                let max = gateway.config.ws_in_flight_max;
                                frame(&id, retry_later(
                                    &gateway,
                                    "ws_in_flight",
                                    &format!("{max} requests are in flight on this socket already"),
                                ))
                            } else {
                                in_flight.insert(key.clone());
                                let gateway = Arc::clone(&gateway);
                                let started = gateway.env.clock.now();
                                running.spawn(async move {
                                    let reply = exchange(&gateway, call, started).await;
                                    (key, frame(&id, reply))
                                });
                                continue;
                            }
                        }
                        Incoming::Refused { id, reply, reason } => {
                            gateway.metrics.ws_refused(reason);
                            frame(&id, reply)
                        }
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    gateway.metrics.ws_refused("binary");
                    frame(&Value::Null, error_reply(
                        400,
                        "binary frames are not read here: send each request as a JSON text frame",
                        json!({}),
                    ))
                }
                // Pings are answered by the socket itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
            },
        };
        if socket
            .send(Message::Text(outgoing.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// The node shuts down: the requests still in flight answer at once (503, the parked map is
/// closed), their frames go out, then the socket closes with "going away".
async fn close_going_away(
    socket: &mut WebSocket,
    gateway: &Shared,
    running: &mut JoinSet<(String, Value)>,
) {
    let grace = gateway.env.clock.sleep(CLOSING_GRACE);
    tokio::pin!(grace);
    while !running.is_empty() {
        let done = tokio::select! {
            biased;
            done = running.join_next() => done,
            () = &mut grace => break,
        };
        if let Some(Ok((_, frame))) = done
            && socket
                .send(Message::Text(frame.to_string().into()))
                .await
                .is_err()
        {
            return;
        }
    }
    let close = CloseFrame {
        code: GOING_AWAY,
        reason: "the gateway node is shutting down".into(),
    };
    let _ = socket.send(Message::Close(Some(close))).await;
}

/// An answer frame: `{"id", "status", "headers", "body"}`; the body as JSON when it is JSON,
/// as a string otherwise (bytes that are not UTF-8 replaced).
fn frame(id: &Value, reply: Reply) -> Value {
    let mut headers = Map::new();
    for (name, value) in reply.headers {
        headers.insert(name, Value::String(value));
    }
    let json_type = headers
        .get(crate::headers::CONTENT_TYPE)
        .and_then(Value::as_str)
        .is_some_and(|kind| kind.contains("json"));
    let body = json_type
        .then(|| serde_json::from_slice::<Value>(&reply.body).ok())
        .flatten()
        .unwrap_or_else(|| Value::String(String::from_utf8_lossy(&reply.body).into_owned()));
    json!({ "id": id, "status": reply.status, "headers": headers, "body": body })
}

fn refused(id: Value, status: u16, reason: &str, why: &'static str) -> Incoming {
    Incoming::Refused {
        id,
        reply: error_reply(status, reason, json!({})),
        reason: why,
    }
}

/// Reads a request frame:
/// `{"id", "method", "service", "path", "query", "headers": {name: value}, "body"}`.
fn parse(gateway: &Shared, text: &str) -> Incoming {
    const SHAPE: &str = r#"a request frame is a JSON object {"id": string or number, "service": string, "method"?, "path"?, "query"?, "headers"?: {name: string}, "body"?}"#;
    let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(text) else {
        return refused(Value::Null, 400, SHAPE, "malformed");
    };
    let id = match fields.remove("id") {
        Some(id @ (Value::String(_) | Value::Number(_)))
            if id.to_string().len() <= ID_BYTES_MAX =>
        {
            id
        }
        _ => {
            return refused(
                Value::Null,
                400,
                &format!("\"id\": a string or number of at most {ID_BYTES_MAX} bytes; {SHAPE}"),
                "malformed",
            );
        }
    };
    let text_field = |fields: &Map<String, Value>, name: &str| -> Result<Option<String>, String> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text))
                if text.len() <= LOCATOR_BYTES_MAX && !text.chars().any(char::is_control) =>
            {
                Ok(Some(text.clone()))
            }
            Some(_) => Err(format!(
                "\"{name}\": a string of at most {LOCATOR_BYTES_MAX} bytes without control characters"
            )),
        }
    };
    let fields_read = (|| {
        let service = text_field(&fields, "service")?
            .ok_or_else(|| format!("\"service\" is missing; {SHAPE}"))?;
        let method = text_field(&fields, "method")?.unwrap_or_else(|| "GET".to_owned());
        if Method::from_bytes(method.as_bytes()).is_err() {
            return Err(format!("\"method\": {method:?} is not an HTTP method"));
        }
        let path = text_field(&fields, "path")?.unwrap_or_else(|| "/".to_owned());
        if !path.starts_with('/') {
            return Err("\"path\": the path after /api/{service}, starting with '/'".to_owned());
        }
        let query =
            text_field(&fields, "query")?.map(|query| query.trim_start_matches('?').to_owned());
        Ok((service, method, path, query))
    })();
    let (service, method, path, query) = match fields_read {
        Ok(read) => read,
        Err(reason) => return refused(id, 400, &reason, "malformed"),
    };
    let mut head: Vec<(String, String)> = Vec::new();
    match fields.remove("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(given)) => {
            for (name, value) in given {
                let Value::String(value) = value else {
                    return refused(
                        id,
                        400,
                        "\"headers\": every value must be a string",
                        "malformed",
                    );
                };
                head.push((name.to_ascii_lowercase(), value));
            }
        }
        Some(_) => return refused(id, 400, "\"headers\": an object of strings", "malformed"),
    }
    let body = match fields.remove("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(text)) => Bytes::from(text),
        Some(json) => {
            if !head
                .iter()
                .any(|(name, _)| name == crate::headers::CONTENT_TYPE)
            {
                head.push((
                    crate::headers::CONTENT_TYPE.to_owned(),
                    "application/json".to_owned(),
                ));
            }
            Bytes::from(json.to_string())
        }
    };
    if body.len() > gateway.config.body_bytes_max {
        return Incoming::Refused {
            id,
            reply: too_large(gateway),
            reason: "too_large",
        };
    }
    let headers = match forwarded_headers(
        gateway,
        head.iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes())),
    ) {
        Ok(headers) => headers,
        Err(reply) => {
            return Incoming::Refused {
                id,
                reply,
                reason: "malformed",
            };
        }
    };
    Incoming::Request {
        id,
        call: Call {
            service,
            method,
            rest: path,
            query,
            headers,
            body,
        },
    }
}
