//! Huge array counts: every array the tables know is refused, and the hazard is real.

use super::encoder::{self, BOMB_FILLER_BYTES};
use super::every_case;
use crate::guard::{GuardError, check_request};

#[test]
fn every_array_claiming_more_elements_than_bytes_left_is_refused() {
    let mut failures = Vec::new();
    let mut arrays = 0;
    for case in every_case() {
        let expected = GuardError::ArrayTooLong {
            count: encoder::bomb_count(case.message.flexible.contains(case.version)),
            remaining: BOMB_FILLER_BYTES,
        };
        for target in encoder::array_fields(case.message, case.version) {
            arrays += 1;
            let body = encoder::bomb_body(case.message, case.version, target);
            let verdict = case.check(&body);
            if verdict != Err(expected.clone()) {
                failures.push(format!("{case} {target:?}: {verdict:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} arrays not refused:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // A guard with no tables would pass the loop above vacuously.
    assert!(arrays > 500, "only {arrays} array fields found");
}

/// Set in the child process that performs the unguarded decode.
const CHILD_ENVIRONMENT_VARIABLE: &str = "TIDEPOOL_GUARD_BOMB_CHILD";
/// A Metadata v0 body claiming i32::MAX topics.
const FOUR_BYTE_BOMB: [u8; 4] = [0x7f, 0xff, 0xff, 0xff];

/// The hazard the guard exists for, shown without killing this test run: the test re-runs
/// itself in a child process, which decodes the bomb with the crate and nothing else, and the
/// parent checks that the child was aborted. Unix only, for the signal and the `ulimit`.
#[cfg(unix)]
#[test]
fn unguarded_decode_of_a_four_byte_body_aborts_the_process() {
    use kafka_protocol::messages::MetadataRequest;
    use kafka_protocol::protocol::Decodable;
    use std::os::unix::process::ExitStatusExt;

    if std::env::var_os(CHILD_ENVIRONMENT_VARIABLE).is_some() {
        let mut body = bytes::Bytes::from_static(&FOUR_BYTE_BOMB);
        // Aborts. Returning instead would let the child exit 0, which the parent reports.
        let _ = MetadataRequest::decode(&mut body, 0);
        return;
    }
    const SIGABRT: i32 = 6;
    let test_name = format!(
        "{}::unguarded_decode_of_a_four_byte_body_aborts_the_process",
        module_path!()
            .split_once("::")
            .map_or(module_path!(), |(_, path)| path)
    );
    // The address-space limit makes the allocation fail on any machine; without it, a host that
    // overcommits memory could hand out the 150 GB of address space and the child would live.
    let output = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg("ulimit -v 4194304 && exec \"$0\" \"$@\"")
        .arg(std::env::current_exe().expect("the test binary's path"))
        .args([
            test_name.as_str(),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENVIRONMENT_VARIABLE, "1")
        .output()
        .expect("the child test process starts");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.signal(),
        Some(SIGABRT),
        "child {:?}, stderr:\n{stderr}",
        output.status
    );
    assert!(
        stderr.contains("memory allocation of"),
        "child stderr:\n{stderr}"
    );
    // And the guard refuses those four bytes.
    let refused = GuardError::ArrayTooLong {
        count: i32::MAX as u64,
        remaining: 0,
    };
    assert_eq!(check_request(3, 0, &FOUR_BYTE_BOMB), Err(refused));
}
