//! A request frame as the broker reads it (`tidepool_broker::request::parse`: API key and
//! version check, header, guard, `kafka-protocol` decode), for every API the broker serves.
//!
//! Input: `[selector, version, rest…]`. The selector's low six bits pick an entry of
//! `SUPPORTED_APIS` (so every API is reached however the list grows); bit 7 hands the whole
//! input to the parser as a raw frame instead (unknown keys, any version); bit 6 has the
//! harness write a valid request header so that `rest` is all body. The version byte picks a
//! version in the API's range, and 255 the one past it.
//!
//! Checks: no panic, no allocation beyond libFuzzer's malloc limit (the guard's job); a body
//! the broker decodes re-encodes to bytes the guard accepts and that decode to the same request
//! (except for a kafka-protocol defect with tags of 2^31 and above, see below).

#![no_main]

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestKind};
use libfuzzer_sys::fuzz_target;
use tidepool_broker::handler::SUPPORTED_APIS;
use tidepool_broker::request::{self, FRAME_BYTES_MIN, Parsed};
use tidepool_protocol::guard;

fuzz_target!(|data: &[u8]| {
    let Some((&[selector, version_pick], rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let frame = if selector & 0x80 != 0 {
        Bytes::copy_from_slice(data)
    } else {
        let (api_key, min, max) =
            SUPPORTED_APIS[usize::from(selector & 0x3f) % SUPPORTED_APIS.len()];
        let version = if version_pick == 255 {
            max + 1
        } else {
            min + i16::from(version_pick) % (max - min + 1)
        };
        let mut frame = BytesMut::with_capacity(rest.len() + 16);
        frame.put_i16(api_key as i16);
        frame.put_i16(version);
        frame.put_i32(7);
        if selector & 0x40 != 0 {
            // Null client id, then an empty tagged-field section in flexible headers.
            frame.put_i16(-1);
            if api_key.request_header_version(version) >= 2 {
                frame.put_u8(0);
            }
        }
        frame.put_slice(rest);
        frame.freeze()
    };
    // The connection closes on shorter frames before parsing (connection.rs).
    if frame.len() < FRAME_BYTES_MIN {
        return;
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let raw_version = i16::from_be_bytes([frame[2], frame[3]]);
    let Ok(Parsed::Request(parsed)) = request::parse(frame) else {
        return;
    };
    assert_eq!(parsed.api_key as i16, raw_key);
    assert_eq!(parsed.header.request_api_key, raw_key);
    assert_eq!(parsed.header.request_api_version, raw_version);
    let round_trip = round_trip(&parsed.body, parsed.api_key, raw_version);
    if let Err(failure) = round_trip {
        // kafka-protocol 0.18 decodes a tag of 2^31 or more as a negative i32 key, counts it
        // when encoding but writes only keys from 0 (`write_unknown_tagged_fields(buf, 0.., …)`),
        // so such a request re-encodes malformed. The broker never re-encodes a request, so this
        // is the crate's defect to report, not ours (FUZZING.md).
        let negative_tag = format!("{:?}", parsed.body).contains("unknown_tagged_fields: {-");
        assert!(
            negative_tag,
            "{:?} v{raw_version}: {failure}",
            parsed.api_key
        );
    }
});

/// Encodes `body`, checks the guard accepts the bytes and that they decode to `body`.
fn round_trip(body: &RequestKind, api_key: ApiKey, version: i16) -> Result<(), String> {
    let mut encoded = BytesMut::new();
    body.encode(&mut encoded, version)
        .map_err(|error| format!("a decoded request does not re-encode: {error}"))?;
    let mut encoded = encoded.freeze();
    guard::check_request(api_key as i16, version, &encoded)
        .map_err(|error| format!("the guard refuses what kafka-protocol encodes: {error}"))?;
    let again = RequestKind::decode(api_key, &mut encoded, version)
        .map_err(|error| format!("a re-encoded request does not decode: {error}"))?;
    if &again != body {
        return Err(format!(
            "decode ∘ encode changed the request: {again:?} ≠ {body:?}"
        ));
    }
    Ok(())
}
