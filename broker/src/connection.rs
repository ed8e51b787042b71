//! One client connection: bytes in, frames out of them, requests handled strictly in order,
//! responses written back in the same order (Kafka's guarantee for pipelined requests).
//!
//! Requests on one connection are handled one at a time, as Kafka does (it mutes a channel
//! while a request is in flight). Answers wait unwritten for at most
//! `Config::in_flight_requests_max` requests (or 1 MiB); the write then blocks while the
//! client is not reading, and nothing more is read meanwhile, so a client that only sends
//! is held back by TCP rather than by the broker's memory.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tidepool_io::BoxStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use kafka_protocol::messages::{ApiVersionsResponse, ResponseKind};

use crate::control::{ControlPlane, PendingEntry, Verdict, inject};
use crate::handler::{self, Outcome};
use crate::request::{self, FRAME_BYTES_MIN, Parsed};
use crate::sasl;
use crate::server::Node;

/// Read buffer growth step when no size is known yet.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Responses are flushed once this much is buffered, even if more requests are waiting.
const WRITE_FLUSH_BYTES: usize = 1024 * 1024;
/// A buffer that grew past this for one large response is released rather than kept, so an
/// idle connection holds at most this much per buffer.
const RETAINED_BUFFER_BYTES_MAX: usize = 64 * 1024 * 1024;

/// A connection's buffers, reused across requests: memory touched for the first time costs a
/// page fault per 4 KiB, which on the fetch path cost more than copying the records.
struct Buffers {
    input: BytesMut,
    output: BytesMut,
    /// Fetched records are read into this and split off as `Bytes` for the response.
    scratch: BytesMut,
}

impl Buffers {
    fn release_oversized(&mut self) {
        for buffer in [&mut self.output, &mut self.scratch] {
            if buffer.is_empty() && buffer.capacity() > RETAINED_BUFFER_BYTES_MAX {
                *buffer = BytesMut::new();
            }
        }
    }
}

/// Why a connection ended, for the log.
#[derive(Debug)]
enum Closed {
    Peer,
    Shutdown,
    Io(std::io::Error),
    Refused(String),
}

pub async fn serve(
    mut stream: BoxStream,
    peer: SocketAddr,
    node: Arc<Node>,
    mut shutdown: watch::Receiver<crate::server::Stop>,
) {
    let mut buffers = Buffers {
        input: BytesMut::with_capacity(READ_CHUNK_BYTES),
        output: BytesMut::new(),
        scratch: BytesMut::new(),
    };
    // Present until the connection has authenticated, when SASL is on.
    let mut auth = node
        .cluster
        .config
        .sasl
        .as_ref()
        .map(|_| sasl::Session::new());
    let closed = loop {
        if let Err(closed) =
            handle_buffered(&mut buffers, &mut auth, &mut stream, &node, peer).await
        {
            break closed;
        }
        buffers.release_oversized();
        let input = &mut buffers.input;
        if input.capacity() - input.len() < READ_CHUNK_BYTES / 4 {
            input.reserve(READ_CHUNK_BYTES);
        }
        tokio::select! {
            biased;
            _ = shutdown.changed() => break Closed::Shutdown,
            read = stream.read_buf(input) => match read {
                Ok(0) => break Closed::Peer,
                Ok(_) => {}
                Err(error) => break Closed::Io(error),
            },
        }
    };
    match closed {
        Closed::Peer | Closed::Shutdown => {
            tracing::debug!(%peer, node = node.id, ?closed, "connection closed")
        }
        Closed::Io(error) => tracing::debug!(%peer, node = node.id, %error, "connection failed"),
        Closed::Refused(reason) => {
            tracing::info!(%peer, node = node.id, %reason, "closing connection")
        }
    }
    let _ = stream.shutdown().await;
}

/// Handles every whole frame in the input buffer, then writes the responses.
async fn handle_buffered(
    buffers: &mut Buffers,
    auth: &mut Option<sasl::Session>,
    stream: &mut BoxStream,
    node: &Node,
    peer: SocketAddr,
) -> Result<(), Closed> {
    // Answers held unwritten; bounded so a client that never reads stops being read.
    let mut unwritten = 0;
    let outcome = loop {
        let (frame_min, frame_max) = frame_bounds(auth.as_ref(), &node.cluster.config);
        match next_frame(&mut buffers.input, frame_min, frame_max) {
            Ok(Some(frame)) => {
                let handled = match auth.as_mut() {
                    Some(session) => authenticate_frame(session, frame, buffers, node, peer)
                        .await
                        .map(|authenticated| {
                            if authenticated {
                                *auth = None;
                            }
                        }),
                    None => handle_frame(frame, buffers, node, peer).await,
                };
                if let Err(reason) = handled {
                    break Err(Closed::Refused(reason));
                }
                unwritten += 1;
                if buffers.output.len() >= WRITE_FLUSH_BYTES
                    || unwritten >= node.cluster.config.in_flight_requests_max
                {
                    write_out(stream, &mut buffers.output).await?;
                    unwritten = 0;
                }
            }
            Ok(None) => break Ok(()),
            Err(reason) => break Err(Closed::Refused(reason)),
        }
    };
    // Answers to the requests before a bad one still go out, as they would from Kafka.
    write_out(stream, &mut buffers.output).await?;
    outcome
}

async fn write_out(stream: &mut BoxStream, output: &mut BytesMut) -> Result<(), Closed> {
    if output.is_empty() {
        return Ok(());
    }
    stream.write_all(output).await.map_err(Closed::Io)?;
    output.clear();
    Ok(())
}

/// Splits one whole frame off `input`. The declared size is checked before any buffer grows
/// for it, so a hostile size costs nothing.
fn next_frame(
    input: &mut BytesMut,
    frame_bytes_min: usize,
    request_bytes_max: usize,
) -> Result<Option<bytes::Bytes>, String> {
    let Some(size) = request::frame_size(input) else {
        return Ok(None);
    };
    if size < 0 || size as usize > request_bytes_max {
        return Err(format!(
            "frame size {size} is outside 0..={request_bytes_max}"
        ));
    }
    let size = size as usize;
    if size < frame_bytes_min {
        return Err(format!(
            "frame of {size} bytes cannot hold a request header"
        ));
    }
    if input.len() < 4 + size {
        input.reserve(4 + size - input.len());
        return Ok(None);
    }
    let mut frame = input.split_to(4 + size).freeze();
    bytes::Buf::advance(&mut frame, 4);
    Ok(Some(frame))
}

/// Smallest and largest frame accepted now. Before authentication Kafka bounds every frame by
/// `sasl.server.max.receive.size`, and a v0 exchange's bare tokens may be of any size.
fn frame_bounds(auth: Option<&sasl::Session>, config: &crate::Config) -> (usize, usize) {
    match (auth, config.sasl.as_ref()) {
        (Some(session), Some(sasl)) => {
            let min = if session.expects_raw_tokens() {
                0
            } else {
                FRAME_BYTES_MIN
            };
            (min, sasl.auth_bytes_max.min(config.request_bytes_max))
        }
        _ => (FRAME_BYTES_MIN, config.request_bytes_max),
    }
}

/// A frame on a connection that has not authenticated yet; `Ok(true)` once it has. `Err`
/// closes the connection after what is in `output` (an error answer, if any) is written.
async fn authenticate_frame(
    session: &mut sasl::Session,
    frame: bytes::Bytes,
    buffers: &mut Buffers,
    node: &Node,
    peer: SocketAddr,
) -> Result<bool, String> {
    let Some(config) = node.cluster.config.sasl.as_ref() else {
        return Err("SASL session without a SASL config".into());
    };
    let entropy = &*node.cluster.env.entropy;
    let authenticated = |user: Option<String>| {
        if let Some(user) = &user {
            tracing::debug!(%peer, node = node.id, %user, "SASL authentication succeeded");
        }
        user.is_some()
    };
    if session.expects_raw_tokens() {
        let step = match session.raw_token(config, entropy, &frame) {
            Ok(step) => step,
            Err(reason) => {
                refusal_delay(config, node).await;
                return Err(reason);
            }
        };
        let size = i32::try_from(step.response.len()).map_err(|_| "SASL token too large")?;
        bytes::BufMut::put_i32(&mut buffers.output, size);
        buffers.output.extend_from_slice(&step.response);
        return match step.close {
            Some(reason) => Err(reason),
            None => Ok(authenticated(step.authenticated)),
        };
    }
    // `next_frame` guarantees a whole request header's first fields.
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let admission = session.admit(api_key, version)?;
    if admission == sasl::Admission::ApiVersions {
        handle_frame(frame, buffers, node, peer).await?;
        return Ok(false);
    }
    let (api_key, version, correlation_id, body) =
        match request::parse(frame).map_err(|error| error.to_string())? {
            Parsed::Request(request) => (
                request.api_key,
                request.header.request_api_version,
                request.header.correlation_id,
                request.body,
            ),
            Parsed::UnknownApiVersionsVersion { correlation_id } => (
                kafka_protocol::messages::ApiKey::ApiVersions,
                0,
                correlation_id,
                kafka_protocol::messages::RequestKind::ApiVersions(Default::default()),
            ),
        };
    let (response, close, user) = match body {
        kafka_protocol::messages::RequestKind::SaslHandshake(request) => {
            let step = session.handshake(config, version, &request);
            (
                ResponseKind::SaslHandshake(step.response),
                step.close,
                step.authenticated,
            )
        }
        kafka_protocol::messages::RequestKind::SaslAuthenticate(request) => {
            let step = session.authenticate(config, entropy, &request);
            (
                ResponseKind::SaslAuthenticate(step.response),
                step.close,
                step.authenticated,
            )
        }
        // Kafka answers an ApiVersions in the middle of an exchange with ILLEGAL_SASL_STATE
        // and closes.
        _ => (
            ResponseKind::ApiVersions(
                ApiVersionsResponse::default()
                    .with_error_code(kafka_protocol::ResponseError::IllegalSaslState.code()),
            ),
            Some(format!("{api_key:?} request during SASL authentication")),
            None,
        ),
    };
    request::encode_response(
        &mut buffers.output,
        api_key,
        version,
        correlation_id,
        &response,
    )
    .map_err(|error| error.to_string())?;
    match close {
        Some(reason) => {
            refusal_delay(config, node).await;
            Err(reason)
        }
        None => Ok(authenticated(user)),
    }
}

/// Kafka holds a refused log-in's answer and close back by
/// `connection.failed.authentication.delay.ms`.
async fn refusal_delay(config: &sasl::SaslConfig, node: &Node) {
    if config.failed_authentication_delay_ms > 0 {
        let delay = std::time::Duration::from_millis(config.failed_authentication_delay_ms);
        node.cluster.env.clock.sleep(delay).await;
    }
}

async fn handle_frame(
    frame: bytes::Bytes,
    buffers: &mut Buffers,
    node: &Node,
    peer: SocketAddr,
) -> Result<(), String> {
    let output = &mut buffers.output;
    match request::parse(frame).map_err(|error| error.to_string())? {
        Parsed::UnknownApiVersionsVersion { correlation_id } => {
            let body = handler::api_versions::unsupported_version_response(
                node.cluster.config.sasl.is_some(),
            );
            request::encode_response(
                output,
                kafka_protocol::messages::ApiKey::ApiVersions,
                0,
                correlation_id,
                &body,
            )
            .map_err(|error| error.to_string())
        }
        Parsed::Request(mut request) => {
            let api_key = request.api_key;
            let version = request.header.request_api_version;
            let correlation_id = request.header.correlation_id;
            let control = &node.cluster.control;
            let name_of = |id| node.cluster.topic_by_id(id).map(|topic| topic.name.clone());
            let plan = control.admit(
                node.cluster.env.clock.wall_ms(),
                node.id,
                &request.header,
                api_key,
                &request.body,
                &inject::partitions_named(&request.body, &name_of),
            );
            let pending = PendingEntry::new(control, plan.entry);
            if !plan.delay.is_zero() {
                node.cluster.env.clock.sleep(plan.delay).await;
            }
            let outcome = match plan.verdict {
                Verdict::Handle | Verdict::HandleThenError(_) => {
                    let withheld =
                        inject::withhold(&mut request.body, &plan.partition_errors, &name_of);
                    let mut outcome =
                        handler::dispatch(node, *request, &mut buffers.scratch, peer).await;
                    if let Outcome::Respond(body) = &mut outcome {
                        inject::answer_withheld(body, &withheld);
                        if let Verdict::HandleThenError(code) = plan.verdict {
                            inject::overwrite_errors(body, code);
                        }
                    }
                    outcome
                }
                Verdict::Respond(body) => Outcome::Respond(body),
                Verdict::Drop => Outcome::Silent,
                Verdict::Close(reason) => Outcome::Close(reason),
            };
            match outcome {
                Outcome::Respond(mut body) => {
                    if let ResponseKind::ApiVersions(versions) = body.as_mut() {
                        cap_api_versions(control, versions);
                    }
                    pending.finish(Some(body.as_mut()));
                    request::encode_response(output, api_key, version, correlation_id, &body)
                        .map_err(|error| error.to_string())
                }
                Outcome::Silent => {
                    pending.finish(None);
                    Ok(())
                }
                Outcome::Close(reason) => {
                    pending.finish(None);
                    Err(reason)
                }
            }
        }
    }
}

/// Advertises only what the version cap allows: each API's newest version lowered to the
/// release's, and the APIs the release did not have (or only at versions below our oldest)
/// left out.
fn cap_api_versions(control: &ControlPlane, versions: &mut ApiVersionsResponse) {
    versions.api_keys.retain_mut(|api| {
        let Ok(key) = kafka_protocol::messages::ApiKey::try_from(api.api_key) else {
            return false;
        };
        // Every release in the cap table (2.8 on) answers SaslHandshake v1 and SaslAuthenticate
        // v2, and a client needs them to log in at all.
        if sasl::SASL_APIS
            .iter()
            .any(|&(sasl_key, _, _)| sasl_key == key)
        {
            return true;
        }
        match control.newest_version(key, api.max_version) {
            Some(newest) if newest >= api.min_version => {
                api.max_version = newest;
                true
            }
            _ => false,
        }
    });
}
