//! Forwarding a reply to the node that parked its request (crate docs, "Forwarding").
//!
//! The wire format of `POST /internal/responses`: one line of JSON,
//! `{"id": "...", "status": 200, "headers": [["name", "value"], ...]}`, a `\n`, then the reply
//! body as raw bytes. JSON never contains a raw newline, so the first `\n` ends the head and
//! the body stays binary-safe. The answer is `200 {"delivery": "delivered|late|duplicate|unknown"}`
//! once the receiving node handed it to its parked map, or 400 with a reason.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tidepool_io::Env;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::GatewayConfig;
use crate::correlation::CorrelationId;
use crate::metrics::GatewayMetrics;
use crate::nodes::NodeTable;
use crate::parked::Reply;

/// The internal route replies are forwarded to.
pub const INTERNAL_RESPONSES: &str = "/internal/responses";

/// Reply headers one forwarded reply may carry.
pub(crate) const REPLY_HEADERS_MAX: usize = 256;

/// The most of an answer to a forward the forwarding node reads (it needs the status line).
const ANSWER_BYTES_MAX: usize = 64 * 1024;

/// A forwarded reply, as the receiving node reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Forwarded {
    pub(crate) id: String,
    pub(crate) reply: Reply,
}

pub(crate) fn encode(id: &str, reply: &Reply) -> Vec<u8> {
    let headers: Vec<[&str; 2]> = reply
        .headers
        .iter()
        .map(|(name, value)| [name.as_str(), value.as_str()])
        .collect();
    let mut out = json!({ "id": id, "status": reply.status, "headers": headers })
        .to_string()
        .into_bytes();
    out.push(b'\n');
    out.extend_from_slice(&reply.body);
    out
}

/// Reads a forwarded reply; why not, if it is malformed.
pub(crate) fn decode(body: &Bytes) -> Result<Forwarded, String> {
    let newline = body
        .iter()
        .position(|byte| *byte == b'\n')
        .ok_or("no newline after the JSON head")?;
    let head: Value = serde_json::from_slice(&body[..newline])
        .map_err(|error| format!("the head is not JSON: {error}"))?;
    let id = head
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| CorrelationId::parse(id).is_some())
        .ok_or("no valid correlation id in \"id\"")?
        .to_owned();
    let status = head
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|status| u16::try_from(status).ok())
        .filter(|status| (200..=599).contains(status))
        .ok_or("\"status\" must be an HTTP status from 200 to 599")?;
    let pairs = head
        .get("headers")
        .and_then(Value::as_array)
        .ok_or("\"headers\" must be an array of [name, value] pairs")?;
    if pairs.len() > REPLY_HEADERS_MAX {
        return Err(format!("more than {REPLY_HEADERS_MAX} headers"));
    }
    let mut headers = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let pair = pair.as_array().filter(|pair| pair.len() == 2);
        let name = pair.and_then(|pair| pair[0].as_str());
        let value = pair.and_then(|pair| pair[1].as_str());
        let (Some(name), Some(value)) = (name, value) else {
            return Err("\"headers\" must be an array of [name, value] pairs".into());
        };
        headers.push((name.to_owned(), value.to_owned()));
    }
    Ok(Forwarded {
        id,
        reply: Reply {
            status,
            headers,
            body: body.slice(newline + 1..),
        },
    })
}

/// Forwards replies for other nodes' requests; clones share nothing mutable but the table.
#[derive(Clone)]
pub(crate) struct Forwarder {
    pub(crate) env: Env,
    pub(crate) table: NodeTable,
    pub(crate) metrics: GatewayMetrics,
    pub(crate) attempt_timeout: Duration,
    pub(crate) deadline: Duration,
    pub(crate) backoff: Duration,
}

impl Forwarder {
    pub(crate) fn new(
        env: Env,
        table: NodeTable,
        metrics: GatewayMetrics,
        config: &GatewayConfig,
    ) -> Self {
        Forwarder {
            env,
            table,
            metrics,
            attempt_timeout: config.forward_attempt_timeout,
            deadline: config.forward_deadline,
            backoff: config.forward_backoff,
        }
    }

    /// POSTs the reply for `id` (which names another node) to that node, retrying with backoff
    /// until it is answered, the node is known gone, or the forward deadline passes. Returns
    /// once the reply needs no more work: the caller may then commit past it.
    pub(crate) async fn forward(&self, id: String, reply: Reply) {
        let Some(parsed) = CorrelationId::parse(&id) else {
            self.metrics.dropped("malformed");
            return;
        };
        let clock = &self.env.clock;
        let give_up = clock.now() + self.deadline;
        let mut backoff = self.backoff;
        let body = encode(&id, &reply);
        loop {
            // Looked up on every attempt: a node that left, or came back as a new incarnation,
            // while we retried is gone for this reply, and nothing parks it any more.
            let Some(target) = self.table.get(parsed.node) else {
                self.metrics.dropped("node_gone");
                return;
            };
            if target.incarnation != parsed.incarnation {
                self.metrics.dropped("stale_incarnation");
                return;
            }
            // Biased: an unbiased select draws from tokio's per-process random source, which
            // the simulator cannot seed.
            let attempt = tokio::select! {
                biased;
                answer = post(&self.env, &target.address, &body) => answer,
                () = clock.sleep(self.attempt_timeout) => Err("no answer in time".to_owned()),
            };
            match attempt {
                Ok(status) if (200..300).contains(&status) => {
                    self.metrics.forwarded("sent");
                    return;
                }
                Ok(status) if (400..500).contains(&status) => {
                    // The target refused it for good: retrying would not change its mind.
                    tracing::warn!(id, status, "gateway: a forwarded reply was refused");
                    self.metrics.forward_failed();
                    self.metrics.dropped("forward_refused");
                    return;
                }
                Ok(status) => {
                    tracing::debug!(id, status, "gateway: forwarding a reply failed");
                    self.metrics.forward_failed();
                }
                Err(error) => {
                    tracing::debug!(id, %error, "gateway: forwarding a reply failed");
                    self.metrics.forward_failed();
                }
            }
            if clock.now() + backoff >= give_up {
                self.metrics.dropped("forward_failed");
                return;
            }
            clock.sleep(backoff).await;
            backoff = (backoff * 2).min(self.deadline / 4).max(self.backoff);
        }
    }
}

/// One HTTP/1.1 POST of `body` to `address`'s internal route on a fresh connection (through the
/// Transport seam, so it runs in the simulator); the answer's status.
async fn post(env: &Env, address: &str, body: &[u8]) -> Result<u16, String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("{address:?} is not host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{address:?} has no valid port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut stream = env
        .transport
        .connect(host, port)
        .await
        .map_err(|error| error.to_string())?;
    let head = format!(
        "POST {INTERNAL_RESPONSES} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    stream
        .write_all(&request)
        .await
        .map_err(|error| error.to_string())?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    // The status line is all we need; stop at its end or at the bound.
    while !answer.windows(2).any(|window| window == b"\r\n") && answer.len() < ANSWER_BYTES_MAX {
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|error| error.to_string())?;
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..read]);
    }
    let line_end = answer
        .windows(2)
        .position(|window| window == b"\r\n")
        .ok_or("no status line in the answer")?;
    std::str::from_utf8(&answer[..line_end])
        .ok()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|status| status.parse().ok())
        .ok_or_else(|| "no status in the answer".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_reply_reads_back_as_it_was_sent_even_with_newlines_in_its_body() {
        let reply = Reply {
            status: 201,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: Bytes::from_static(b"line one\nline two\n\x00\xff"),
        };
        let decoded = decode(&Bytes::from(encode("gw-1.00000000000000ab.7", &reply))).unwrap();
        assert_eq!(decoded.id, "gw-1.00000000000000ab.7");
        assert_eq!(decoded.reply, reply);
    }

    #[test]
    fn malformed_forwards_are_refused_with_a_reason() {
        for body in [
            &b"no newline"[..],
            b"not json\nbody",
            b"{\"id\":\"garbage\",\"status\":200,\"headers\":[]}\n",
            b"{\"id\":\"gw.1.2\",\"status\":99,\"headers\":[]}\n",
            b"{\"id\":\"gw.1.2\",\"status\":200,\"headers\":[[\"a\"]]}\n",
        ] {
            assert!(decode(&Bytes::copy_from_slice(body)).is_err(), "{body:?}");
        }
    }
}
