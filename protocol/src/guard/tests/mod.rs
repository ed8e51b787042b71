//! Tests of the guard against the crate it protects.
//!
//! - `tables`: the tables cover exactly the versions the crate decodes, and every array element
//!   takes at least one byte (the fact the array bound rests on).
//! - `differential`: random valid bodies generated from the tables decode with the crate,
//!   consume every byte, re-encode to the same bytes and pass the guard; mutated bodies the
//!   guard refuses, the crate refuses too.
//! - `bombs`: every array of every message and version, given a huge count, is refused; and an
//!   unguarded decode of a four-byte body really does abort a process.
//! - `truncation`: every strict prefix of a valid body gets the same verdict from both.
//! - `random_bytes`: arbitrary bytes never panic the guard, and whatever it accepts the crate
//!   decodes without aborting.

mod bombs;
mod differential;
mod encoder;
mod random_bytes;
mod tables;
mod truncation;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

use super::schema::Message;
use super::{GuardError, apis, check_request, check_response};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    Request,
    Response,
}

impl Direction {
    pub(super) fn messages(self) -> &'static [&'static Message] {
        match self {
            Direction::Request => apis::REQUESTS,
            Direction::Response => apis::RESPONSES,
        }
    }

    pub(super) fn check(self, api_key: i16, version: i16, body: &[u8]) -> Result<(), GuardError> {
        match self {
            Direction::Request => check_request(api_key, version, body),
            Direction::Response => check_response(api_key, version, body),
        }
    }
}

/// One message at one version, the unit every test loops over.
#[derive(Clone, Copy)]
pub(super) struct Case {
    pub(super) direction: Direction,
    pub(super) message: &'static Message,
    pub(super) version: i16,
}

impl Case {
    pub(super) fn check(&self, body: &[u8]) -> Result<(), GuardError> {
        self.direction
            .check(self.message.api_key, self.version, body)
    }

    pub(super) fn decode(&self, body: &[u8]) -> Result<Decoded, String> {
        crate_decode(self.direction, self.message.api_key, self.version, body)
    }
}

impl std::fmt::Display for Case {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{} v{}", self.message.body.name, self.version)
    }
}

/// Every version of every request and response in the tables.
pub(super) fn every_case() -> Vec<Case> {
    let mut cases = Vec::new();
    for direction in [Direction::Request, Direction::Response] {
        for &message in direction.messages() {
            for version in message.versions.min..=message.versions.max {
                cases.push(Case {
                    direction,
                    message,
                    version,
                });
            }
        }
    }
    cases
}

/// What the crate made of a body, and how many bytes it left unread.
#[derive(Debug, PartialEq)]
pub(super) struct Decoded {
    pub(super) message: DecodedMessage,
    pub(super) bytes_left: usize,
}

#[derive(Debug, PartialEq)]
pub(super) enum DecodedMessage {
    Request(RequestKind),
    Response(ResponseKind),
}

/// Decodes with the crate. Call it only on bodies the guard accepted or on bodies known to hold
/// no large count: that is the point of the guard.
pub(super) fn crate_decode(
    direction: Direction,
    api_key: i16,
    version: i16,
    body: &[u8],
) -> Result<Decoded, String> {
    let api = ApiKey::try_from(api_key).map_err(|()| format!("no api key {api_key}"))?;
    let mut buffer = Bytes::copy_from_slice(body);
    let message = match direction {
        Direction::Request => {
            RequestKind::decode(api, &mut buffer, version).map(DecodedMessage::Request)
        }
        Direction::Response => {
            ResponseKind::decode(api, &mut buffer, version).map(DecodedMessage::Response)
        }
    };
    let message = message.map_err(|error| format!("{error:#}"))?;
    Ok(Decoded {
        message,
        bytes_left: buffer.len(),
    })
}

pub(super) fn crate_encode(message: &DecodedMessage, version: i16) -> Result<Vec<u8>, String> {
    let mut buffer = BytesMut::new();
    let encoded = match message {
        DecodedMessage::Request(request) => request.encode(&mut buffer, version),
        DecodedMessage::Response(response) => response.encode(&mut buffer, version),
    };
    encoded.map_err(|error| format!("{error:#}"))?;
    Ok(buffer.to_vec())
}

/// A small seeded generator (SplitMix64), so a failing case is reproduced from its seed alone.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }

    /// A value in `0..bound`; `bound` must be positive.
    pub(super) fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }

    pub(super) fn percent(&mut self, chance: u64) -> bool {
        self.next_u64() % 100 < chance
    }

    pub(super) fn bytes(&mut self, count: usize) -> Vec<u8> {
        (0..count).map(|_| self.next_u64() as u8).collect()
    }
}

/// A body as hex, for failure messages.
pub(super) fn hex(body: &[u8]) -> String {
    body.iter().map(|byte| format!("{byte:02x}")).collect()
}
