//! The tables against the crate: what the tables say is valid, the crate must decode and
//! re-encode to the same bytes; what the guard refuses, the crate must refuse too.

use super::encoder::{self, Generated};
use super::{Case, Rng, crate_encode, every_case, hex};
use crate::guard::GuardError;

const BODIES_PER_VERSION: u64 = 200;
const MUTANTS_PER_VERSION: u64 = 200;

enum Reencoded {
    Identical,
    /// Equal as a message but not as bytes; see [`Generated::has_known_tagged_field`].
    Normalised,
}

#[test]
fn generated_bodies_decode_fully_reencode_identically_and_pass_the_guard() {
    let mut failures = Vec::new();
    let (mut identical, mut normalised) = (0_u64, 0_u64);
    for case in every_case() {
        for index in 0..BODIES_PER_VERSION {
            let seed = seed_for(&case, index);
            match check_generated(&case, seed) {
                Ok(Reencoded::Identical) => identical += 1,
                Ok(Reencoded::Normalised) => normalised += 1,
                Err(failure) => failures.push(format!("{case} seed {seed}: {failure}")),
            }
        }
    }
    report(&failures);
    // The message-equality fallback must stay the exception, or byte equality proves little.
    assert!(
        normalised * 10 < identical,
        "{normalised} normalised vs {identical} identical"
    );
}

fn check_generated(case: &Case, seed: u64) -> Result<Reencoded, String> {
    let Generated {
        body,
        has_known_tagged_field,
    } = encoder::random_body(case.message, case.version, &mut Rng::new(seed));
    let shown = hex(&body);
    case.check(&body)
        .map_err(|error| format!("guard refused a valid body: {error}; body {shown}"))?;
    let decoded = case
        .decode(&body)
        .map_err(|error| format!("crate refused: {error}; body {shown}"))?;
    if decoded.bytes_left != 0 {
        return Err(format!(
            "crate left {} bytes unread; body {shown}",
            decoded.bytes_left
        ));
    }
    let reencoded = crate_encode(&decoded.message, case.version)?;
    if reencoded == body {
        return Ok(Reencoded::Identical);
    }
    // The crate leaves out a known tagged field whose value is the field's default, so such a
    // body re-encodes shorter; it must still be the same message.
    if has_known_tagged_field && case.decode(&reencoded).is_ok_and(|again| again == decoded) {
        return Ok(Reencoded::Normalised);
    }
    Err(format!(
        "re-encoding differs:\n  generated  {shown}\n  re-encoded {}",
        hex(&reencoded)
    ))
}

#[test]
fn guard_refuses_only_bodies_the_crate_also_refuses() {
    let mut failures = Vec::new();
    let mut compared = 0_u64;
    for case in every_case() {
        for index in 0..MUTANTS_PER_VERSION {
            let seed = seed_for(&case, index) ^ 0x5eed;
            let mut rng = Rng::new(seed);
            let mut body = encoder::random_body(case.message, case.version, &mut rng).body;
            mutate(&mut body, &mut rng);
            match case.check(&body) {
                // The guard's promise: this decode cannot abort. Its result does not matter,
                // since the guard lets through what it cannot judge (bad UTF-8, bad nulls).
                Ok(()) => drop(case.decode(&body)),
                Err(error) if crate_stops_at_the_same_place(&error) => {
                    compared += 1;
                    if case.decode(&body).is_ok() {
                        failures.push(format!(
                            "{case} seed {seed}: guard said {error}, crate decoded {}",
                            hex(&body)
                        ));
                    }
                }
                Err(_) => {}
            }
        }
    }
    report(&failures);
    assert!(
        compared > 10_000,
        "only {compared} refusals were compared with the crate"
    );
}

/// Whether the crate, given a body the guard refused with `error`, fails at the same point and
/// so is safe to run. Not after a count the guard refused: the crate reserves it and reads on
/// into the elements, where a nested count can be a real bomb (a mutant found one). Those
/// refusals rest on every element taking a byte (see `tables`) rather than on this test.
fn crate_stops_at_the_same_place(error: &GuardError) -> bool {
    matches!(
        error,
        GuardError::Truncated { .. } | GuardError::Malformed(_)
    )
}

/// One to three edits aimed at lengths and counts: overwrite a byte with a boundary or random
/// value, insert, delete, or cut the tail.
fn mutate(body: &mut Vec<u8>, rng: &mut Rng) {
    const BOUNDARY_BYTES: [u8; 6] = [0x00, 0x01, 0x02, 0x7f, 0x80, 0xff];
    for _ in 0..1 + rng.below(3) {
        let position = rng.below(body.len() + 1);
        match rng.below(6) {
            0 if position < body.len() => body[position] = BOUNDARY_BYTES[rng.below(6)],
            1 if position < body.len() => body[position] = rng.next_u64() as u8,
            2 if position < body.len() => drop(body.remove(position)),
            3 => body.truncate(position),
            _ => body.insert(position, BOUNDARY_BYTES[rng.below(6)]),
        }
    }
}

/// A seed that names its case, so a failure can be replayed by hand.
fn seed_for(case: &Case, index: u64) -> u64 {
    let direction = case.direction as u64;
    (direction << 60)
        | ((case.message.api_key as u64) << 40)
        | ((case.version as u64) << 24)
        | index
}

fn report(failures: &[String]) {
    let shown: Vec<&str> = failures.iter().take(20).map(String::as_str).collect();
    assert!(
        failures.is_empty(),
        "{} failures; the first:\n{}",
        failures.len(),
        shown.join("\n")
    );
}
