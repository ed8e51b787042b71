//! A bound check run on a request or response body before `kafka-protocol` decodes it.
//!
//! # The defect
//! `kafka-protocol` 0.18 decodes an array by reading its count from the wire (an i32, or an
//! unsigned varint minus one in flexible versions) and calling `Vec::with_capacity(count)`
//! before it reads a single element. Four bytes, `7f ff ff ff`, as a Metadata v0 body ask for
//! two billion 72-byte topic structs, 154 GB. The allocation fails and Rust's allocation-error
//! handler *aborts* the process: no panic, nothing to catch, and the process that dies is the
//! user's test run, since Tidepool is embedded in it.
//!
//! # The decision
//! We do not vendor or patch the crate (DESIGN.md §8). No release has a fix: 0.18.0 is the
//! newest in our registry index, and the upstream pull requests that bound the count
//! (kafka-protocol-rs #152, #161, #200) were still open when this was written. Two guards were
//! possible:
//! - An allocator that reserves oversized requests lazily. Only a `#[global_allocator]` sees
//!   the crate's allocations, and a library must not install one: a process has exactly one,
//!   the broker is embedded in users' test binaries, and those may bring their own (jemalloc,
//!   mimalloc, a heap profiler, a counting allocator in a benchmark). It would also need
//!   `unsafe` code, which the workspace forbids, would tax every allocation the user's program
//!   makes, and would still hand out the address space, which fails under `ulimit -v`.
//! - A pre-decode walk, which we chose. Each API has a table describing its message the way
//!   the crate decodes it (`schema` holds the vocabulary, `apis` the tables). [`check_request`]
//!   walks the body with that table, reading lengths and counts and skipping everything else,
//!   and refuses the body unless every array count is at most the bytes left at that point and
//!   every element walks. Every element takes at least one byte, so any count the crate can
//!   decode passes, and any count that passes makes the crate reserve at most `body.len()`
//!   elements. If the guard accepts, the crate's decode is safe to call. It may still fail
//!   (bad UTF-8, a null where none is allowed): the guard is permissive on purpose, because it
//!   must never refuse a body the crate decodes.
//!
//! The walk mirrors the crate where bytes are counted: compact lengths in flexible versions, a
//! tagged-field section after every struct, known tagged fields decoded from the body itself
//! (the crate ignores their size prefix), unknown ones skipped by size, records as bytes. It
//! also refuses two things no encoder writes: a varint longer than five bytes (the crate stops
//! after five and reads the rest as the next field) and a tagged-field count above the bytes
//! left (which can never decode). Trailing bytes after the message pass, as they do in the crate.
//!
//! # Adding an API
//! Write `apis/<api_name>.rs` with a `REQUEST` and a `RESPONSE` table, reading the crate's
//! generated `src/messages/<api_name>_request.rs` and `_response.rs`: each `decode` lists the
//! fields in wire order with their version conditions, then its tagged-field `match`. Add both
//! to the lists in `apis/mod.rs`. The tests pick the new tables up: they generate valid bodies
//! from them and check that the crate decodes every byte and re-encodes the same bytes, so a
//! wrong table fails them.
//!
//! ```
//! use tidepool_protocol::guard::{check_request, GuardError};
//!
//! // A Metadata v0 body claiming i32::MAX topics.
//! let bomb = [0x7f, 0xff, 0xff, 0xff];
//! assert_eq!(
//!     check_request(3, 0, &bomb),
//!     Err(GuardError::ArrayTooLong { count: i32::MAX as u64, remaining: 0 })
//! );
//! ```

mod apis;
mod schema;
mod walk;

#[cfg(test)]
mod tests;

use schema::Message;
use thiserror::Error;

/// Why the guard refused a body. The broker answers any of these by closing the connection or
/// with a Kafka error code; none of them is a bug on our side.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum GuardError {
    #[error("api key {api_key} has no guard schema")]
    UnknownApi { api_key: i16 },
    #[error("api key {api_key} version {version} is not one kafka-protocol decodes")]
    UnsupportedVersion { api_key: i16, version: i16 },
    #[error("body truncated: a field needs {needed} bytes, {remaining} remain")]
    Truncated { needed: usize, remaining: usize },
    #[error("array claims {count} elements with {remaining} bytes left")]
    ArrayTooLong { count: u64, remaining: usize },
    #[error("tagged-field section claims {count} fields with {remaining} bytes left")]
    TooManyTaggedFields { count: u64, remaining: usize },
    #[error("varint longer than five bytes")]
    VarintTooLong,
    #[error("malformed body: {0}")]
    Malformed(&'static str),
}

/// Checks a request body (the bytes after the request header) before it is decoded with
/// `kafka-protocol`. `Ok` means the crate's decode will not over-allocate.
pub fn check_request(api_key: i16, version: i16, body: &[u8]) -> Result<(), GuardError> {
    check(apis::request(api_key), api_key, version, body)
}

/// Checks a response body (the bytes after the response header) before it is decoded with
/// `kafka-protocol`. `Ok` means the crate's decode will not over-allocate.
pub fn check_response(api_key: i16, version: i16, body: &[u8]) -> Result<(), GuardError> {
    check(apis::response(api_key), api_key, version, body)
}

/// True if [`check_request`] has a schema for this API and version.
pub fn guards_request(api_key: i16, version: i16) -> bool {
    apis::request(api_key).is_some_and(|message| message.versions.contains(version))
}

/// True if [`check_response`] has a schema for this API and version.
pub fn guards_response(api_key: i16, version: i16) -> bool {
    apis::response(api_key).is_some_and(|message| message.versions.contains(version))
}

fn check(
    message: Option<&Message>,
    api_key: i16,
    version: i16,
    body: &[u8],
) -> Result<(), GuardError> {
    let message = message.ok_or(GuardError::UnknownApi { api_key })?;
    if !message.versions.contains(version) {
        return Err(GuardError::UnsupportedVersion { api_key, version });
    }
    walk::walk_message(message, version, body)
}
