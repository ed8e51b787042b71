//! The pipeline in the simulator (issue 9 item 9): plain runs are valid through crashes at
//! every crash point, runs are deterministic, and each known-bad variant is caught by a seeded
//! search and shrunk to at most ten steps, while the plain build survives the same scenario.

use tidepool_sim::pipeline::campaign::shrink_pipeline_seed;
use tidepool_sim::pipeline::{
    PipelineAction, PipelineHost, PipelineScenario, PipelineShape, PipelineStep, PipelineSwarm,
    run_pipeline,
};
use tidepool_sim::scenario::Variant;

fn step(at_ms: u64, action: PipelineAction) -> PipelineStep {
    PipelineStep { at_ms, action }
}

fn post(at_ms: u64, count: u8, fail: u8) -> PipelineStep {
    step(at_ms, PipelineAction::Post { count, fail })
}

fn crash_stages_at(at_ms: u64, point: &str, hit: u8) -> PipelineStep {
    step(
        at_ms,
        PipelineAction::CrashAt {
            host: PipelineHost::Stages,
            point: point.to_owned(),
            hit,
        },
    )
}

fn scenario(seed: u64, schedule: Vec<PipelineStep>) -> PipelineScenario {
    PipelineScenario {
        seed,
        swarm: PipelineSwarm::default(),
        schedule,
    }
}

#[test]
fn posted_events_are_applied_once_by_every_stage_or_dead_lettered() {
    // Three succeed at once, two after one retry, two fail every attempt.
    let plain = scenario(1, vec![post(100, 3, 0), post(300, 2, 1), post(500, 2, 3)]);
    let outcome = run_pipeline(&plain, Variant::None);
    assert!(!outcome.is_anomalous(), "{}", outcome.summary());
    assert_eq!(outcome.report.events, 7);
    let dead_letters = outcome
        .observations
        .records
        .iter()
        .filter(|record| record.topic == "events.dlq")
        .count();
    assert!(
        dead_letters >= 2 * 3,
        "two events in each of three stages: {dead_letters}"
    );
}

#[test]
fn a_crash_at_any_stage_crash_point_loses_and_doubles_nothing() {
    for point in tidepool_pipeline::stages::CRASH_POINTS {
        for hit in [1, 3] {
            let crashing = scenario(
                3,
                vec![
                    crash_stages_at(50, point, hit),
                    post(100, 4, 0),
                    post(150, 2, 3),
                ],
            );
            let outcome = run_pipeline(&crashing, Variant::None);
            assert!(
                outcome
                    .faults
                    .iter()
                    .any(|(_, fault)| fault.contains(point)),
                "{point} hit {hit} never fired: {:?}",
                outcome.faults
            );
            assert!(
                !outcome.is_anomalous(),
                "crash at {point} hit {hit}: {}",
                outcome.summary()
            );
        }
    }
}

#[test]
fn a_seed_runs_the_same_way_twice() {
    for seed in [5, 17] {
        let generated = PipelineScenario::generate(seed, PipelineShape::default());
        let first = run_pipeline(&generated, Variant::None);
        let again = run_pipeline(&generated, Variant::None);
        assert_eq!(first.trace, again.trace, "seed {seed}");
        assert_eq!(first.faults, again.faults, "seed {seed}");
        assert!(!first.is_anomalous(), "seed {seed}: {}", first.summary());
    }
}

/// Searches campaign seeds for one `variant` breaks, shrinks it, and checks the shrunk
/// scenario shows `anomaly` under the variant and nothing under the plain build.
fn caught_and_shrunk(variant: Variant, anomaly: &str) {
    let seed = (0..300)
        .find(|seed| {
            run_pipeline(
                &PipelineScenario::generate(*seed, PipelineShape::default()),
                variant,
            )
            .is_anomalous()
        })
        .unwrap_or_else(|| panic!("no seed below 300 catches {variant}"));
    let (shrunk, outcome, _) = shrink_pipeline_seed(seed, variant, 200);
    assert!(
        shrunk.schedule.len() <= 10,
        "{variant}: shrunk only to {} steps",
        shrunk.schedule.len()
    );
    assert!(
        outcome.report.anomalies.contains_key(anomaly),
        "{variant}: expected {anomaly}, got {}",
        outcome.summary()
    );
    let plain = run_pipeline(&shrunk, Variant::None);
    assert!(
        !plain.is_anomalous(),
        "the plain build fails the shrunk {variant} scenario: {}",
        plain.summary()
    );
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "minutes unoptimised; scripts/test runs it with --release"
)]
fn committing_before_processing_is_caught_as_unprocessed_events() {
    caught_and_shrunk(Variant::CommitBeforeProcess, "not-processed");
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "minutes unoptimised; scripts/test runs it with --release"
)]
fn a_consumer_without_dedup_is_caught_applying_effects_twice() {
    caught_and_shrunk(Variant::NonIdempotentConsumer, "applied-twice");
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "minutes unoptimised; scripts/test runs it with --release"
)]
fn writing_then_producing_without_an_outbox_is_caught_losing_notices() {
    caught_and_shrunk(Variant::NoOutbox, "committed-not-published");
}
