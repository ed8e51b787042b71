//! Arbitrary bytes: the guard never panics, and whatever it accepts the crate decodes without
//! aborting (an abort here would end the whole test run, loudly).

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::RngAlgorithm;

use super::{Direction, every_case};
use crate::guard::{check_request, check_response, guards_request, guards_response};

/// Bytes biased towards the values that make lengths and counts interesting.
fn wire_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        any::<u8>(),
        Just(0x00),
        Just(0x01),
        Just(0x7f),
        Just(0x80),
        Just(0xff)
    ];
    proptest::collection::vec(byte, 0..256)
}

proptest! {
    // XorShift: the default ChaCha generator, unoptimised in test builds, took most of a minute.
    #![proptest_config(ProptestConfig {
        cases: 4096,
        rng_algorithm: RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes_never_panic_the_guard_and_what_it_accepts_decodes_safely(
        case_index in any::<Index>(),
        body in wire_bytes(),
    ) {
        let cases = every_case();
        let case = cases[case_index.index(cases.len())];
        if case.check(&body).is_ok() {
            let _ = case.decode(&body);
        }
    }

    #[test]
    fn random_api_keys_and_versions_never_panic_the_guard(
        api_key in any::<i16>(),
        version in any::<i16>(),
        body in wire_bytes(),
    ) {
        let request = check_request(api_key, version, &body);
        let response = check_response(api_key, version, &body);
        if !guards_request(api_key, version) {
            prop_assert!(request.is_err());
        }
        if !guards_response(api_key, version) {
            prop_assert!(response.is_err());
        }
        if request.is_ok() {
            let _ = super::crate_decode(Direction::Request, api_key, version, &body);
        }
        if response.is_ok() {
            let _ = super::crate_decode(Direction::Response, api_key, version, &body);
        }
    }
}
