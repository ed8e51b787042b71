//! One connection to one broker: requests written in order and pipelined up to a bound, answers
//! matched to their callers by correlation id, every wait bounded by the Clock seam.
//!
//! A connection is opened with the ApiVersions exchange, so every request after it picks the
//! highest version both sides speak, then logs in when `ClientConfig::sasl` asks (`sasl.rs`). It closes itself on the first sign of trouble (a read or
//! write error, a malformed or unexpected answer, a request timeout) and fails whatever was
//! waiting; the client opens a new one on the next request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tidepool_io::{BoxStream, Clock, Env};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter, ReadHalf, WriteHalf};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::config::ClientConfig;
use crate::error::{Error, KafkaCode, Result};

const API_VERSIONS_KEY: i16 = 18;
/// The ApiVersions version we ask first; older brokers answer UNSUPPORTED_VERSION with their
/// own range (KIP-511), and we ask again within it.
const API_VERSIONS_MAX: i16 = 3;
const IO_BUFFER_BYTES: usize = 64 << 10;

struct Pending {
    response_header_version: i16,
    reply: oneshot::Sender<Result<Bytes>>,
}

#[derive(Default)]
struct State {
    pending: BTreeMap<i32, Pending>,
    closed: Option<String>,
    tasks: Vec<AbortHandle>,
}

pub(crate) struct Connection {
    addr: String,
    client_id: StrBytes,
    clock: Arc<dyn Clock>,
    request_timeout: Duration,
    outgoing: mpsc::Sender<Bytes>,
    in_flight: Arc<Semaphore>,
    state: Arc<Mutex<State>>,
    next_correlation_id: AtomicI32,
    /// The broker's supported range per API key, from ApiVersions.
    versions: OnceLock<BTreeMap<i16, (i16, i16)>>,
}

/// Splits `host:port` (or `[v6]:port`).
pub(crate) fn host_and_port(addr: &str) -> Result<(&str, u16)> {
    let invalid = || Error::Invalid(format!("address {addr:?} is not host:port"));
    let (host, port) = addr.rsplit_once(':').ok_or_else(invalid)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = port.parse().map_err(|_| invalid())?;
    if host.is_empty() {
        return Err(invalid());
    }
    Ok((host, port))
}

impl Connection {
    /// Connects, starts the reader and writer, and negotiates API versions.
    pub(crate) async fn open(
        env: &Env,
        config: &ClientConfig,
        addr: &str,
    ) -> Result<Arc<Connection>> {
        let (host, port) = host_and_port(addr)?;
        let connect_error = |reason: String| Error::Connect {
            addr: addr.to_string(),
            reason,
        };
        let stream = tokio::select! {
            biased;
            stream = env.transport.connect(host, port) => stream.map_err(|e| connect_error(e.to_string()))?,
            () = env.clock.sleep(config.connect_timeout) => {
                return Err(connect_error(format!("no connection within {:?}", config.connect_timeout)));
            }
        };
        let (reader, writer) = tokio::io::split(stream);
        let in_flight = config.max_in_flight_per_connection.max(1);
        let (outgoing, frames) = mpsc::channel(in_flight);
        let connection = Arc::new(Connection {
            addr: addr.to_string(),
            client_id: StrBytes::from_string(config.client_id.clone()),
            clock: Arc::clone(&env.clock),
            request_timeout: config.request_timeout,
            outgoing,
            in_flight: Arc::new(Semaphore::new(in_flight)),
            state: Arc::new(Mutex::new(State::default())),
            next_correlation_id: AtomicI32::new(0),
            versions: OnceLock::new(),
        });
        let read = tokio::spawn(read_loop(
            reader,
            Arc::clone(&connection.state),
            addr.to_string(),
            config.max_response_bytes,
        ));
        let write = tokio::spawn(write_loop(
            writer,
            frames,
            Arc::clone(&connection.state),
            addr.to_string(),
        ));
        connection
            .lock()
            .tasks
            .extend([read.abort_handle(), write.abort_handle()]);
        let opened = async {
            connection.negotiate().await?;
            match &config.sasl {
                Some(credentials) => {
                    crate::sasl::authenticate(&connection, credentials, &*env.entropy).await
                }
                None => Ok(()),
            }
        };
        let negotiated = tokio::select! {
            biased;
            negotiated = opened => negotiated,
            () = env.clock.sleep(config.connect_timeout) => Err(connect_error(format!(
                "no ApiVersions answer (or SASL log-in) within {:?}", config.connect_timeout
            ))),
        };
        if let Err(error) = negotiated {
            connection.close(&error.to_string());
            return Err(error);
        }
        tracing::debug!(addr, "connected");
        Ok(connection)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Closes the connection and fails every request waiting on it.
    pub(crate) fn close(&self, reason: &str) {
        close_state(&self.state, &self.addr, reason);
        self.in_flight.close();
    }

    async fn negotiate(&self) -> Result<()> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("tidepool-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut version = API_VERSIONS_MAX;
        for _ in 0..2 {
            let response: ApiVersionsResponse = self.send(version, &request).await?;
            let offered: BTreeMap<i16, (i16, i16)> = response
                .api_keys
                .iter()
                .map(|api| (api.api_key, (api.min_version, api.max_version)))
                .collect();
            match KafkaCode::from_code(response.error_code) {
                None => {
                    let _ = self.versions.set(offered);
                    return Ok(());
                }
                Some(KafkaCode::UNSUPPORTED_VERSION) => {
                    // KIP-511: the broker lists its own ApiVersions range; ask within it.
                    let theirs = offered.get(&API_VERSIONS_KEY).map_or(0, |range| range.1);
                    version = theirs.min(API_VERSIONS_MAX);
                }
                Some(code) => return Err(Error::kafka(code, "ApiVersions", None)),
            }
        }
        Err(Error::Protocol {
            addr: self.addr.clone(),
            reason: "ApiVersions was refused at the version the broker offered".into(),
        })
    }

    /// The highest version of `R` in `ours` that the broker also speaks.
    pub(crate) fn version<R: Request>(&self, ours: (i16, i16)) -> Result<i16> {
        let theirs = self
            .versions
            .get()
            .and_then(|versions| versions.get(&R::KEY).copied());
        let unsupported = || Error::UnsupportedVersion {
            addr: self.addr.clone(),
            api_key: R::KEY,
            ours_min: ours.0,
            ours_max: ours.1,
        };
        let (min, max) = theirs.ok_or_else(unsupported)?;
        let best = max.min(ours.1);
        if best < min.max(ours.0) {
            return Err(unsupported());
        }
        Ok(best)
    }

    /// Whether the broker serves `api_key` at all.
    pub(crate) fn supports(&self, api_key: i16) -> bool {
        self.versions
            .get()
            .is_some_and(|versions| versions.contains_key(&api_key))
    }

    fn encode<R: Request>(&self, version: i16, body: &R) -> Result<(i32, Bytes)> {
        let correlation_id = self
            .next_correlation_id
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_abs();
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let encode_error = |e: &dyn std::fmt::Display| {
            Error::Invalid(format!("cannot encode API {} v{version}: {e}", R::KEY))
        };
        let mut frame = BytesMut::with_capacity(64);
        frame.put_i32(0);
        header
            .encode(&mut frame, R::header_version(version))
            .map_err(|e| encode_error(&e))?;
        body.encode(&mut frame, version)
            .map_err(|e| encode_error(&e))?;
        let size = i32::try_from(frame.len() - 4)
            .map_err(|_| Error::Invalid("request larger than 2 GiB".into()))?;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        Ok((correlation_id, frame.freeze()))
    }

    /// Sends `body` at `version` and waits for its answer, at most the request timeout.
    pub(crate) async fn send<R: Request>(&self, version: i16, body: &R) -> Result<R::Response> {
        let bytes = self.round_trip(version, body).await?;
        self.decode::<R>(version, bytes)
    }

    fn decode<R: Request>(&self, version: i16, bytes: Bytes) -> Result<R::Response> {
        decode_body::<R>(version, bytes).map_err(|reason| {
            let error = Error::Protocol {
                addr: self.addr.clone(),
                reason,
            };
            self.close(&error.to_string());
            error
        })
    }

    async fn round_trip<R: Request>(&self, version: i16, body: &R) -> Result<Bytes> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| self.disconnected())?;
        let (correlation_id, frame) = self.encode(version, body)?;
        let (reply, answer) = oneshot::channel();
        {
            let mut state = self.lock();
            if state.closed.is_some() {
                drop(state);
                return Err(self.disconnected());
            }
            state.pending.insert(
                correlation_id,
                Pending {
                    response_header_version: <R::Response as HeaderVersion>::header_version(
                        version,
                    ),
                    reply,
                },
            );
        }
        if self.outgoing.send(frame).await.is_err() {
            return Err(self.disconnected());
        }
        tokio::select! {
            biased;
            answer = answer => answer.map_err(|_| self.disconnected())?,
            () = self.clock.sleep(self.request_timeout) => {
                // A late answer must not be read as another request's: start afresh.
                self.close("a request timed out");
                Err(Error::Timeout {
                    context: format!("API {} v{version} to {}", R::KEY, self.addr),
                    after: self.request_timeout,
                })
            }
        }
    }

    /// Writes a request that gets no answer (a Produce with acks=0).
    pub(crate) async fn send_only<R: Request>(&self, version: i16, body: &R) -> Result<()> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| self.disconnected())?;
        let (_, frame) = self.encode(version, body)?;
        self.outgoing
            .send(frame)
            .await
            .map_err(|_| self.disconnected())
    }

    fn disconnected(&self) -> Error {
        Error::Disconnected {
            addr: self.addr.clone(),
            reason: self
                .lock()
                .closed
                .clone()
                .unwrap_or_else(|| "closed".into()),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        close_state(&self.state, &self.addr, "connection dropped");
    }
}

fn close_state(state: &Mutex<State>, addr: &str, reason: &str) {
    let (pending, tasks) = {
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        if state.closed.is_some() {
            return;
        }
        state.closed = Some(reason.to_string());
        (
            std::mem::take(&mut state.pending),
            std::mem::take(&mut state.tasks),
        )
    };
    tracing::debug!(addr, reason, waiting = pending.len(), "connection closed");
    for (_, waiting) in pending {
        let _ = waiting.reply.send(Err(Error::Disconnected {
            addr: addr.to_string(),
            reason: reason.to_string(),
        }));
    }
    for task in tasks {
        task.abort();
    }
}

async fn write_loop(
    writer: WriteHalf<BoxStream>,
    mut frames: mpsc::Receiver<Bytes>,
    state: Arc<Mutex<State>>,
    addr: String,
) {
    let mut writer = BufWriter::with_capacity(IO_BUFFER_BYTES, writer);
    while let Some(frame) = frames.recv().await {
        let mut result = writer.write_all(&frame).await;
        // Everything queued meanwhile goes out in the same flush.
        while result.is_ok() {
            match frames.try_recv() {
                Ok(frame) => result = writer.write_all(&frame).await,
                Err(_) => break,
            }
        }
        if let Err(error) = result.and(writer.flush().await) {
            close_state(&state, &addr, &format!("write failed: {error}"));
            return;
        }
    }
}

async fn read_loop(
    reader: ReadHalf<BoxStream>,
    state: Arc<Mutex<State>>,
    addr: String,
    max_response_bytes: usize,
) {
    let mut reader = BufReader::with_capacity(IO_BUFFER_BYTES, reader);
    let reason = loop {
        match read_answer(&mut reader, &state, max_response_bytes).await {
            Ok(()) => {}
            Err(reason) => break reason,
        }
    };
    close_state(&state, &addr, &reason);
}

async fn read_answer(
    reader: &mut BufReader<ReadHalf<BoxStream>>,
    state: &Mutex<State>,
    max_response_bytes: usize,
) -> std::result::Result<(), String> {
    let size = match reader.read_i32().await {
        Ok(size) => size,
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err("the broker closed the connection".into());
        }
        Err(error) => return Err(format!("read failed: {error}")),
    };
    let size = usize::try_from(size)
        .ok()
        .filter(|size| (4..=max_response_bytes).contains(size))
        .ok_or_else(|| format!("answer size {size} outside 4..={max_response_bytes}"))?;
    let mut body = BytesMut::zeroed(size);
    reader
        .read_exact(&mut body)
        .await
        .map_err(|e| format!("read failed mid-answer: {e}"))?;
    let body = body.freeze();
    let correlation_id = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let pending = state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .pending
        .remove(&correlation_id)
        .ok_or_else(|| {
            format!("an answer to correlation id {correlation_id}, which no request has")
        })?;
    let body = strip_response_header(body, pending.response_header_version)?;
    let _ = pending.reply.send(Ok(body));
    Ok(())
}

/// The answer's body once its response header is read. A function of its own so the fuzz
/// target (`crate::fuzzing`) reads answers exactly as the connection does.
pub(crate) fn strip_response_header(
    mut frame: Bytes,
    header_version: i16,
) -> std::result::Result<Bytes, String> {
    ResponseHeader::decode(&mut frame, header_version)
        .map_err(|e| format!("malformed response header: {e}"))?;
    Ok(frame)
}

/// An answer body through the guard, then `kafka-protocol`'s decoder. A function of its own so
/// the fuzz target (`crate::fuzzing`) decodes answers exactly as the connection does.
pub(crate) fn decode_body<R: Request>(
    version: i16,
    mut bytes: Bytes,
) -> std::result::Result<R::Response, String> {
    if let Err(error) = tidepool_protocol::guard::check_response(R::KEY, version, &bytes) {
        return Err(format!("API {} v{version} answer: {error}", R::KEY));
    }
    R::Response::decode(&mut bytes, version)
        .map_err(|e| format!("API {} v{version} answer: {e}", R::KEY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(
            host_and_port("127.0.0.1:9092").unwrap(),
            ("127.0.0.1", 9092)
        );
        assert_eq!(host_and_port("[::1]:19092").unwrap(), ("::1", 19092));
        assert!(host_and_port("localhost").is_err());
        assert!(host_and_port(":9092").is_err());
        assert!(host_and_port("host:99999").is_err());
    }
}
