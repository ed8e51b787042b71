//! The client reading a hostile broker's answer to each request it sends
//! (`tidepool_client::fuzzing::read_answer`: response header, guard, `kafka-protocol` decode,
//! then the consumer's reading of Fetch records and group member metadata).
//!
//! Input: `[selector, version, offset, frame…]`: the selector picks one of the requests the
//! client sends (`fuzzing::REQUESTS`), the version byte a version the client may send it at,
//! the offset byte where a Fetch asked to read from; `frame` is the answer after its size
//! prefix (correlation id first).
//!
//! Checks: no panic and bounded memory (a refused answer is an `Err`, the connection closes);
//! member metadata the consumer reads survives its own re-encoding (asserted inside).

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tidepool_client::fuzzing::{REQUESTS, read_answer};

fuzz_target!(|data: &[u8]| {
    let Some((&[selector, version_pick, offset], frame)) = data.split_first_chunk::<3>() else {
        return;
    };
    let (api_key, (min, max)) = REQUESTS[usize::from(selector) % REQUESTS.len()];
    let version = min + i16::from(version_pick) % (max - min + 1);
    let _ = read_answer(
        api_key,
        version,
        Bytes::copy_from_slice(frame),
        i64::from(offset),
    );
});
