//! What a pipeline run does: a seed, a few settings and a schedule of timed actions, drawn by
//! proptest strategies so a failing run shrinks (the same scheme as [`crate::scenario`]).

use std::fmt;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde::{Deserialize, Serialize};

use crate::scenario::{action_counts, seeded_runner};

/// The pipeline's hosts, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PipelineHost {
    /// The Kafka broker (three nodes in one process, on its own disk).
    Broker,
    /// The HTTP collector: `POST /v1/events` → `events.raw`.
    Collector,
    /// The three stages and the outbox relay, with their store on the host's disk.
    Stages,
    /// The HTTP client posting events.
    Client,
}

impl PipelineHost {
    pub fn name(self) -> &'static str {
        match self {
            PipelineHost::Broker => crate::runner::BROKER,
            PipelineHost::Collector => "collector",
            PipelineHost::Stages => "stages",
            PipelineHost::Client => "client",
        }
    }
}

/// The run's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineSwarm {
    /// Partitions of every pipeline topic.
    pub partitions: i32,
    /// Attempts before an event is dead-lettered.
    pub max_attempts: u32,
}

impl Default for PipelineSwarm {
    fn default() -> PipelineSwarm {
        PipelineSwarm {
            partitions: 2,
            max_attempts: 3,
        }
    }
}

/// One step of a pipeline schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum PipelineAction {
    /// The client posts `count` new events in one request; each fails its first `fail` attempts
    /// in every stage (at `max_attempts` or more, it ends in the dead-letter topic).
    Post { count: u8, fail: u8 },
    /// The host stops at once; its unsynced writes meet the disk's crash model.
    Crash { host: PipelineHost },
    /// The host crashes the `hit`-th time from now it reaches crash point `point`.
    CrashAt {
        host: PipelineHost,
        point: String,
        hit: u8,
    },
    /// A stopped host starts again (from its disk).
    Restart { host: PipelineHost },
    /// Cut the link between two hosts.
    Partition { a: PipelineHost, b: PipelineHost },
    /// Restore every link.
    Heal,
    /// Move a partition of `events.raw` to node `node` (1-based, wraps).
    MoveLeader { partition: i32, node: u8 },
}

impl PipelineAction {
    pub fn name(&self) -> &'static str {
        match self {
            PipelineAction::Post { .. } => "post",
            PipelineAction::Crash { .. } => "crash",
            PipelineAction::CrashAt { .. } => "crash-at",
            PipelineAction::Restart { .. } => "restart",
            PipelineAction::Partition { .. } => "partition",
            PipelineAction::Heal => "heal",
            PipelineAction::MoveLeader { .. } => "move-leader",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineStep {
    pub at_ms: u64,
    #[serde(flatten)]
    pub action: PipelineAction,
}

/// A whole pipeline run; everything random about it follows from `seed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineScenario {
    pub seed: u64,
    pub swarm: PipelineSwarm,
    pub schedule: Vec<PipelineStep>,
}

/// Limits of generated pipeline scenarios.
#[derive(Debug, Clone)]
pub struct PipelineShape {
    pub steps_max: usize,
    pub span_ms: u64,
    /// Weight of fault actions against posts (0 = no faults).
    pub fault_weight: u32,
}

impl Default for PipelineShape {
    fn default() -> PipelineShape {
        PipelineShape {
            steps_max: 16,
            span_ms: 3_000,
            fault_weight: 4,
        }
    }
}

fn host_strategy() -> impl Strategy<Value = PipelineHost> {
    prop_oneof![
        2 => Just(PipelineHost::Broker),
        2 => Just(PipelineHost::Collector),
        4 => Just(PipelineHost::Stages),
        1 => Just(PipelineHost::Client),
    ]
}

/// Where a `crash-at` may aim: the stages' points and the broker's.
fn crash_points() -> Vec<(PipelineHost, String)> {
    let mut points: Vec<(PipelineHost, String)> = tidepool_pipeline::stages::CRASH_POINTS
        .iter()
        .map(|point| (PipelineHost::Stages, (*point).to_owned()))
        .collect();
    for point in tidepool_broker::CRASH_POINTS {
        points.push((PipelineHost::Broker, (*point).to_owned()));
    }
    points
}

fn action_strategy(shape: &PipelineShape) -> BoxedStrategy<PipelineAction> {
    let post = (
        1..=6u8,
        prop_oneof![6 => Just(0u8), 2 => Just(1u8), 1 => Just(2u8), 2 => Just(3u8)],
    )
        .prop_map(|(count, fail)| PipelineAction::Post { count, fail });
    if shape.fault_weight == 0 {
        return post.boxed();
    }
    // The stages' own points first: they are what this simulation is for.
    let stage_points: Vec<(PipelineHost, String)> = crash_points()
        .into_iter()
        .filter(|(host, _)| *host == PipelineHost::Stages)
        .collect();
    let crash_at = |points: Vec<(PipelineHost, String)>| {
        (prop::sample::select(points), 1..=4u8)
            .prop_map(|((host, point), hit)| PipelineAction::CrashAt { host, point, hit })
    };
    let faults = prop_oneof![
        3 => host_strategy().prop_map(|host| PipelineAction::Crash { host }),
        4 => crash_at(stage_points),
        1 => crash_at(crash_points()),
        4 => host_strategy().prop_map(|host| PipelineAction::Restart { host }),
        1 => (host_strategy(), host_strategy())
            .prop_map(|(a, b)| PipelineAction::Partition { a, b }),
        1 => Just(PipelineAction::Heal),
        1 => (0..3i32, 1..=3u8)
            .prop_map(|(partition, node)| PipelineAction::MoveLeader { partition, node }),
    ];
    prop_oneof![
        8 => post,
        shape.fault_weight => faults,
    ]
    .boxed()
}

fn swarm_strategy() -> impl Strategy<Value = PipelineSwarm> {
    (1..=3i32, 2..=3u32).prop_map(|(partitions, max_attempts)| PipelineSwarm {
        partitions,
        max_attempts,
    })
}

fn build_strategy(
    shape: PipelineShape,
    seed: BoxedStrategy<u64>,
) -> impl Strategy<Value = PipelineScenario> {
    let steps = prop::collection::vec(
        (0..shape.span_ms, action_strategy(&shape)),
        0..=shape.steps_max,
    );
    (seed, swarm_strategy(), steps).prop_map(|(seed, swarm, steps)| {
        let mut schedule: Vec<PipelineStep> = steps
            .into_iter()
            .map(|(at_ms, action)| PipelineStep { at_ms, action })
            .collect();
        schedule.sort_by_key(|step| step.at_ms);
        PipelineScenario {
            seed,
            swarm,
            schedule,
        }
    })
}

/// Any pipeline scenario of `shape`, for proptest searches.
pub fn pipeline_scenario_strategy(shape: PipelineShape) -> impl Strategy<Value = PipelineScenario> {
    build_strategy(shape, any::<u64>().boxed())
}

/// The value tree of the scenario a campaign runs for `seed`; shrinking keeps the seed.
pub fn pipeline_scenario_tree(
    seed: u64,
    shape: PipelineShape,
) -> Box<dyn ValueTree<Value = PipelineScenario>> {
    let mut runner = seeded_runner(seed, b"pipeline");
    match build_strategy(shape, Just(seed).boxed())
        .boxed()
        .new_tree(&mut runner)
    {
        Ok(tree) => tree,
        // No filters, so never rejected; an empty schedule is the harmless answer if it were.
        Err(_) => Box::new(Just(PipelineScenario {
            seed,
            swarm: PipelineSwarm::default(),
            schedule: Vec::new(),
        })),
    }
}

impl PipelineScenario {
    pub fn generate(seed: u64, shape: PipelineShape) -> PipelineScenario {
        pipeline_scenario_tree(seed, shape).current()
    }

    pub fn describe(&self) -> String {
        let actions = action_counts(self.schedule.iter().map(|step| step.action.name()));
        format!(
            "pipeline seed {} · {} partitions, {} attempts · {} steps: {}",
            self.seed,
            self.swarm.partitions,
            self.swarm.max_attempts,
            self.schedule.len(),
            actions
        )
    }
}

impl fmt::Display for PipelineScenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}
