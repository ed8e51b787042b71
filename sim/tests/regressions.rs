//! Replays every failure kept in `sim/regressions/` (issue 8 item 7). A campaign writes a
//! failing run to `target/sim-failures/<trace>.json`; once the bug is fixed the file moves
//! here, named for what it caught. A failure of the plain build must now run clean; a
//! known-bad variant's must still be caught, or the checker has gone blind to it.

use std::path::Path;

use tidepool_sim::campaign::{Failure, replay};
use tidepool_sim::pipeline::campaign::PipelineFailure;
use tidepool_sim::pipeline::run_pipeline;
use tidepool_sim::scenario::Variant;

#[test]
fn every_kept_failure_replays_as_expected() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no failures", dir.display());
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy();
        if let Some(failure) = PipelineFailure::read(&path).unwrap() {
            let outcome = run_pipeline(&failure.scenario, failure.variant);
            assert_eq!(
                outcome.is_anomalous(),
                failure.variant != Variant::None,
                "{name} (variant {}): {}",
                failure.variant,
                outcome.summary()
            );
            continue;
        }
        let failure = Failure::read(&path).unwrap();
        let outcome = replay(&failure);
        if failure.variant == Variant::None {
            assert!(
                !outcome.is_anomalous(),
                "{name} fails again: {}",
                outcome.summary()
            );
        } else {
            assert!(
                outcome.is_anomalous(),
                "{name} (variant {}) is no longer caught: {}",
                failure.variant,
                outcome.summary()
            );
        }
    }
}
