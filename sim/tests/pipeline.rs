//! The pipeline in the simulator: plain runs are valid, and the checker sees each known-bad
//! variant's damage.

use tidepool_sim::pipeline::{
    PipelineAction, PipelineHost, PipelineScenario, PipelineStep, PipelineSwarm, run_pipeline,
};
use tidepool_sim::scenario::Variant;

fn step(at_ms: u64, action: PipelineAction) -> PipelineStep {
    PipelineStep { at_ms, action }
}

fn post(at_ms: u64, count: u8, fail: u8) -> PipelineStep {
    step(at_ms, PipelineAction::Post { count, fail })
}

#[test]
fn posted_events_are_processed_once_by_every_stage_without_faults() {
    let scenario = PipelineScenario {
        seed: 1,
        swarm: PipelineSwarm::default(),
        schedule: vec![post(100, 3, 0), post(300, 2, 1), post(500, 2, 3)],
    };
    let outcome = run_pipeline(&scenario, Variant::None);
    eprintln!("{}", serde_json::to_string_pretty(&outcome.report).unwrap());
    eprintln!("{:?}", outcome.faults);
    assert!(!outcome.is_anomalous(), "{}", outcome.summary());
    assert_eq!(outcome.report.events, 7);
}

fn crash_at(at_ms: u64, point: &str, hit: u8) -> PipelineStep {
    step(
        at_ms,
        PipelineAction::CrashAt {
            host: PipelineHost::Stages,
            point: point.to_owned(),
            hit,
        },
    )
}

#[test]
fn probe_variants() {
    for (variant, point) in [
        (Variant::NonIdempotentConsumer, "stage.effect.applied"),
        (Variant::CommitBeforeProcess, "store.committed"),
        (Variant::NoOutbox, "store.committed"),
        (Variant::None, "store.committed"),
        (Variant::None, "stage.effect.applied"),
        (Variant::None, "stage.handed_on"),
        (Variant::None, "outbox.published"),
    ] {
        for hit in 1..=5 {
            let scenario = PipelineScenario {
                seed: 3,
                swarm: PipelineSwarm::default(),
                schedule: vec![crash_at(50, point, hit), post(100, 4, 0), post(150, 2, 3)],
            };
            let outcome = run_pipeline(&scenario, variant);
            eprintln!(
                "{variant} {point} {hit}: {} {:?}",
                outcome.summary(),
                outcome.faults
            );
        }
    }
}
