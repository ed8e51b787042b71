//! From a request frame to a decoded request, and from a response to a frame.
//!
//! Order of checks, each before the next allocates: frame size (in `connection`), API key and
//! version against what we advertise, the header, then the body through the bound-check guard
//! (`tidepool_protocol::guard`) and only then `kafka-protocol`'s decoder.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use tidepool_protocol::guard;

use crate::handler::supported_versions;

/// Smallest frame that can hold a request header: api key, version, correlation id.
pub const FRAME_BYTES_MIN: usize = 8;

/// A request ready for its handler.
#[derive(Debug)]
pub struct Request {
    pub api_key: ApiKey,
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// What parsing a frame can lead to besides a request.
#[derive(Debug)]
pub enum Parsed {
    Request(Box<Request>),
    /// ApiVersions at a version we do not know: answered the KIP-511 way, with a v0 response
    /// carrying UNSUPPORTED_VERSION and our supported versions.
    UnknownApiVersionsVersion {
        correlation_id: i32,
    },
}

/// A frame we cannot answer; the connection closes, as Kafka does.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("API {0:?} is not implemented by this broker")]
    UnsupportedApi(ApiKey),
    #[error("{api_key:?} version {version} is not supported (we support {min}..={max})")]
    UnsupportedVersion {
        api_key: ApiKey,
        version: i16,
        min: i16,
        max: i16,
    },
    #[error("malformed request header: {0}")]
    MalformedHeader(String),
    #[error("{api_key:?} v{version} request refused before decoding: {reason}")]
    Guarded {
        api_key: ApiKey,
        version: i16,
        reason: guard::GuardError,
    },
    #[error("malformed {api_key:?} v{version} request: {reason}")]
    MalformedBody {
        api_key: ApiKey,
        version: i16,
        reason: String,
    },
}

/// Parses one frame (the bytes after the 4-byte size).
pub fn parse(mut frame: Bytes) -> Result<Parsed, FrameError> {
    debug_assert!(frame.len() >= FRAME_BYTES_MIN);
    let raw_api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key =
        ApiKey::try_from(raw_api_key).map_err(|()| FrameError::UnknownApiKey(raw_api_key))?;
    let (min, max) = supported_versions(api_key).ok_or(FrameError::UnsupportedApi(api_key))?;
    if version < min || version > max {
        if api_key == ApiKey::ApiVersions && version > max {
            return Ok(Parsed::UnknownApiVersionsVersion { correlation_id });
        }
        return Err(FrameError::UnsupportedVersion {
            api_key,
            version,
            min,
            max,
        });
    }
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|error| FrameError::MalformedHeader(error.to_string()))?;
    guard::check_request(raw_api_key, version, &frame).map_err(|reason| FrameError::Guarded {
        api_key,
        version,
        reason,
    })?;
    let body = RequestKind::decode(api_key, &mut frame, version).map_err(|error| {
        FrameError::MalformedBody {
            api_key,
            version,
            reason: error.to_string(),
        }
    })?;
    Ok(Parsed::Request(Box::new(Request {
        api_key,
        header,
        body,
    })))
}

/// A response that could not be encoded: a bug in a handler, reported and the connection closed.
#[derive(Debug, thiserror::Error)]
#[error("{api_key:?} v{version} response encoding failed: {reason}")]
pub struct EncodeError {
    pub api_key: ApiKey,
    pub version: i16,
    pub reason: String,
}

/// Appends a framed response (size, header, body) to `output`.
pub fn encode_response(
    output: &mut BytesMut,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<(), EncodeError> {
    let failed = |reason: String| EncodeError {
        api_key,
        version,
        reason,
    };
    let start = output.len();
    let encoded = encode_framed(output, api_key, version, correlation_id, body);
    if encoded.is_err() {
        // Never let a half-written frame reach the wire ahead of the close.
        output.truncate(start);
    }
    encoded.map_err(failed)
}

fn encode_framed(
    output: &mut BytesMut,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<(), String> {
    let start = output.len();
    output.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(output, api_key.response_header_version(version))
        .map_err(|error| error.to_string())?;
    body.encode(output, version)
        .map_err(|error| error.to_string())?;
    let size = i32::try_from(output.len() - start - 4)
        .map_err(|_| "response larger than 2 GiB".to_owned())?;
    output[start..start + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

/// Reads the 4-byte size prefix, if present.
pub fn frame_size(input: &[u8]) -> Option<i32> {
    (input.len() >= 4).then(|| (&input[..4]).get_i32())
}
