//! Known-bad variants are caught (issue 8 item 5): each switch breaks one guarantee on purpose;
//! proptest searches scenarios until the checker flags the run, then shrinks the schedule. The
//! tests assert the anomaly the broken guarantee predicts and a shrunk schedule of at most ten
//! actions. The search is seeded (`TestRunner::deterministic`), so each test does the same work
//! on every run.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestError, TestRunner};
use tidepool_sim::checker::Anomaly;
use tidepool_sim::runner::run;
use tidepool_sim::scenario::{Scenario, Shape, Swarm, Variant, scenario_strategy_with};

/// Most actions a shrunk failing schedule may keep.
const SHRUNK_STEPS_MAX: usize = 10;

/// Swarms with the promises a variant breaks switched on; the rest still varies.
fn strong_swarm() -> BoxedStrategy<Swarm> {
    (1..=2i32, 1..=2u8, 1..=2u8)
        .prop_map(|(partitions, producers, consumers)| Swarm {
            partitions,
            producers,
            consumers,
            idempotent: true,
            sync_before_ack: true,
            acks_one: false,
            compacted: false,
            buggify: false,
        })
        .boxed()
}

fn shape() -> Shape {
    Shape {
        steps_max: 16,
        fault_weight: 6,
        ..Shape::default()
    }
    .with_broker_points(tidepool_broker::CRASH_POINTS)
}

/// Searches for a scenario the checker flags under `variant` and returns it shrunk.
fn caught_and_shrunk(variant: Variant) -> Scenario {
    let config = Config {
        cases: 256,
        max_shrink_iters: 2_000,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, TestRunner::deterministic().new_rng());
    let strategy = scenario_strategy_with(shape(), strong_swarm());
    let result = runner.run(&strategy, |scenario| {
        let outcome = run(&scenario, variant);
        prop_assert!(!outcome.is_anomalous(), "{}", outcome.summary());
        Ok(())
    });
    match result {
        Err(TestError::Fail(reason, scenario)) => {
            eprintln!(
                "{variant}: {reason}\nshrunk to {}",
                serde_json::to_string(&scenario.schedule).unwrap_or_default()
            );
            scenario
        }
        other => panic!("variant {variant} was never caught: {other:?}"),
    }
}

/// Runs the shrunk scenario again and checks what the checker says about it.
fn assert_flags(variant: Variant, scenario: &Scenario, expected: &[Anomaly]) {
    let outcome = run(scenario, variant);
    let flagged: Vec<Anomaly> = outcome
        .report
        .violations()
        .map(|(anomaly, _)| anomaly)
        .collect();
    assert!(
        expected.iter().any(|anomaly| flagged.contains(anomaly)),
        "{variant}: expected one of {expected:?}, the checker says {}\n{scenario:#?}",
        outcome.summary()
    );
    assert!(
        scenario.schedule.len() <= SHRUNK_STEPS_MAX,
        "{variant}: shrunk to {} steps, more than {SHRUNK_STEPS_MAX}: {scenario:#?}",
        scenario.schedule.len()
    );
    // And the plain build survives the same scenario.
    let plain = run(scenario, Variant::None);
    assert!(
        !plain.is_anomalous(),
        "{variant}'s scenario also fails without the variant: {}",
        plain.summary()
    );
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "minutes unoptimised; scripts/test runs it with --release"
)]
fn acknowledging_before_fsync_loses_acknowledged_writes() {
    let scenario = caught_and_shrunk(Variant::AckBeforeFsync);
    assert_flags(
        Variant::AckBeforeFsync,
        &scenario,
        &[
            Anomaly::LostWrite,
            Anomaly::Unseen,
            Anomaly::InconsistentOffsets,
        ],
    );
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "minutes unoptimised; scripts/test runs it with --release"
)]
fn committing_before_processing_skips_records() {
    let scenario = caught_and_shrunk(Variant::ClientCommitBeforeProcess);
    assert_flags(
        Variant::ClientCommitBeforeProcess,
        &scenario,
        &[
            Anomaly::CommittedUnread,
            Anomaly::Unseen,
            Anomaly::LostWrite,
        ],
    );
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "minutes unoptimised; scripts/test runs it with --release"
)]
fn forgetting_producer_state_duplicates_retried_batches() {
    let scenario = caught_and_shrunk(Variant::ForgetProducerState);
    assert_flags(
        Variant::ForgetProducerState,
        &scenario,
        &[Anomaly::Duplicate],
    );
}
