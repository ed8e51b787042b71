//! A raw Kafka connection with pinned versions: no ApiVersions negotiation, so Tidepool and
//! Kafka receive byte-identical requests. Encodes the header and body with `kafka-protocol`,
//! decodes the response as a `ResponseKind`.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one response may take (a parked JoinGroup is read with [`Conn::receive`] later).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(20);

/// What came back for one request.
#[derive(Debug)]
pub enum Answer {
    Response(Box<ResponseKind>),
    /// The broker closed the connection instead of answering.
    Closed,
    TimedOut,
    /// A frame that does not decode as the response we expected.
    Undecodable(String),
}

pub struct Conn {
    stream: Option<TcpStream>,
    address: String,
    correlation_id: i32,
    /// Requests sent and not read yet, oldest first: (correlation id, api key, version).
    pending: std::collections::VecDeque<(i32, ApiKey, i16)>,
}

impl Conn {
    pub fn new(address: &str) -> Conn {
        Conn {
            stream: None,
            address: address.to_owned(),
            correlation_id: 0,
            pending: Default::default(),
        }
    }

    /// Encodes and writes one request; the answer is read by [`Conn::receive`].
    pub async fn send(&mut self, api_key: ApiKey, version: i16, body: &RequestKind) {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.address)
                .await
                .unwrap_or_else(|error| panic!("connect to {}: {error}", self.address));
            stream.set_nodelay(true).expect("nodelay");
            self.stream = Some(stream);
        }
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("tidepool-differential")));
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        header
            .encode(&mut frame, api_key.request_header_version(version))
            .expect("encode header");
        body.encode(&mut frame, version)
            .unwrap_or_else(|error| panic!("encode {api_key:?} v{version}: {error}"));
        let size = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        let stream = self.stream.as_mut().expect("connected");
        if stream.write_all(&frame).await.is_err() {
            // Reading will report the close.
        }
        self.pending
            .push_back((self.correlation_id, api_key, version));
    }

    /// Reads the answer to the oldest request sent and not read yet. A closed connection is
    /// reconnected by the next [`Conn::send`].
    pub async fn receive(&mut self) -> (ApiKey, i16, Answer) {
        let (correlation_id, api_key, version) =
            self.pending.pop_front().expect("a request was sent");
        let answer = self.read(correlation_id, api_key, version).await;
        (api_key, version, answer)
    }

    async fn read(&mut self, correlation_id: i32, api_key: ApiKey, version: i16) -> Answer {
        let Some(stream) = self.stream.as_mut() else {
            return Answer::Closed;
        };
        let read = async {
            let size = stream.read_i32().await.ok()?;
            let mut frame = vec![0u8; usize::try_from(size).ok()?];
            stream.read_exact(&mut frame).await.ok()?;
            Some(Bytes::from(frame))
        };
        let frame = match tokio::time::timeout(RESPONSE_TIMEOUT, read).await {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                self.stream = None;
                self.pending.clear();
                return Answer::Closed;
            }
            Err(_) => {
                self.stream = None;
                self.pending.clear();
                return Answer::TimedOut;
            }
        };
        decode(frame, correlation_id, api_key, version)
    }

    pub async fn call(&mut self, api_key: ApiKey, version: i16, body: &RequestKind) -> Answer {
        self.send(api_key, version, body).await;
        self.receive().await.2
    }
}

fn decode(mut frame: Bytes, correlation_id: i32, api_key: ApiKey, version: i16) -> Answer {
    let header = match ResponseHeader::decode(&mut frame, api_key.response_header_version(version))
    {
        Ok(header) => header,
        Err(error) => return Answer::Undecodable(format!("header: {error}")),
    };
    if header.correlation_id != correlation_id {
        return Answer::Undecodable(format!(
            "correlation id {} for request {correlation_id}",
            header.correlation_id
        ));
    }
    match ResponseKind::decode(api_key, &mut frame, version) {
        Ok(response) if frame.remaining() == 0 => Answer::Response(Box::new(response)),
        Ok(_) => Answer::Undecodable(format!("{} bytes left over", frame.remaining())),
        Err(error) => Answer::Undecodable(format!("body: {error}")),
    }
}
