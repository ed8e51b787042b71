//! Cut bodies: every strict prefix of a valid body gets the same verdict from the guard as from
//! the crate, and neither panics.

use super::{Rng, encoder, every_case, hex};

const BODIES_PER_VERSION: u64 = 8;

#[test]
fn every_strict_prefix_of_a_valid_body_gets_the_crates_verdict() {
    let mut failures = Vec::new();
    let mut prefixes = 0_u64;
    for case in every_case() {
        for seed in 0..BODIES_PER_VERSION {
            let body = encoder::random_body(case.message, case.version, &mut Rng::new(seed)).body;
            for length in 0..body.len() {
                prefixes += 1;
                let prefix = &body[..length];
                let guard = case.check(prefix);
                // Safe to decode unguarded: the encoder's counts are at most
                // `encoder::ARRAY_ELEMENTS_MAX`.
                let decoded = case.decode(prefix);
                if guard.is_ok() != decoded.is_ok() {
                    failures.push(format!(
                        "{case} {}: guard {guard:?}, crate {:?}",
                        hex(prefix),
                        decoded.err()
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(prefixes > 10_000, "only {prefixes} prefixes tried");
}
