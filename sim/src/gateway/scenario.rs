//! What a gateway run does: a seed, a few settings and a schedule of timed actions, drawn by
//! proptest strategies so a failing run shrinks (the scheme of [`crate::scenario`] and
//! [`crate::pipeline::scenario`]).
//!
//! Gateway nodes are named by index; an index beyond [`GATEWAYS_MAX`] wraps, so a shrunk
//! schedule stays valid. A join of a node that is a member, a leave of one that is not (or of
//! the last member: clients would have nowhere to go), a crash of a host that is down and a
//! restart of one that is up do nothing.

use std::fmt;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde::{Deserialize, Serialize};

use crate::scenario::{action_counts, seeded_runner};

/// Gateway node hosts in every run; the swarm says how many are members at the start.
pub const GATEWAYS_MAX: u8 = 3;

/// The gateway run's hosts, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GatewayHost {
    /// The Kafka broker (three nodes in one process, on its own disk).
    Broker,
    /// Gateway node `gw{n+1}` (the index wraps at [`GATEWAYS_MAX`]).
    Gateway(u8),
    /// The orders service: its responders and their store on the host's disk.
    Services,
    /// The HTTP clients.
    Client,
}

impl GatewayHost {
    pub fn name(self) -> &'static str {
        match self {
            GatewayHost::Broker => crate::runner::BROKER,
            GatewayHost::Gateway(index) => gateway_name(index),
            GatewayHost::Services => "services",
            GatewayHost::Client => "client",
        }
    }
}

/// The host name of gateway node `index` (wrapping).
pub fn gateway_name(index: u8) -> &'static str {
    ["gw1", "gw2", "gw3"][usize::from(index % GATEWAYS_MAX)]
}

/// The run's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewaySwarm {
    /// Gateway nodes that are members from the start (1 to [`GATEWAYS_MAX`]).
    pub gateways: u8,
    /// Partitions of the deployment's response topic.
    pub response_partitions: i32,
    /// Partitions of `orders.requests`.
    pub request_partitions: i32,
    /// Responder instances of the orders service (one consumer group, one store).
    pub responders: u8,
}

impl Default for GatewaySwarm {
    fn default() -> GatewaySwarm {
        GatewaySwarm {
            gateways: 2,
            response_partitions: 4,
            request_partitions: 2,
            responders: 1,
        }
    }
}

/// One step of a gateway schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum GatewayAction {
    /// The clients create `count` orders at once, each through a gateway node of its own pick.
    Create { count: u8 },
    /// The clients read `count` orders at once (ones created earlier, when there are any).
    Read { count: u8 },
    /// Gateway node `node` joins the deployment (starts).
    Join { node: u8 },
    /// Gateway node `node` leaves the deployment (shuts down gracefully).
    Leave { node: u8 },
    /// The host stops at once; its unsynced writes meet the disk's crash model.
    Crash { host: GatewayHost },
    /// The host crashes the `hit`-th time from now it reaches crash point `point`.
    CrashAt {
        host: GatewayHost,
        point: String,
        hit: u8,
    },
    /// A stopped host starts again (from its disk).
    Restart { host: GatewayHost },
    /// Cut the link between two hosts.
    Partition { a: GatewayHost, b: GatewayHost },
    /// Restore every link.
    Heal,
}

impl GatewayAction {
    pub fn name(&self) -> &'static str {
        match self {
            GatewayAction::Create { .. } => "create",
            GatewayAction::Read { .. } => "read",
            GatewayAction::Join { .. } => "join",
            GatewayAction::Leave { .. } => "leave",
            GatewayAction::Crash { .. } => "crash",
            GatewayAction::CrashAt { .. } => "crash-at",
            GatewayAction::Restart { .. } => "restart",
            GatewayAction::Partition { .. } => "partition",
            GatewayAction::Heal => "heal",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayStep {
    pub at_ms: u64,
    #[serde(flatten)]
    pub action: GatewayAction,
}

/// A whole gateway run; everything random about it follows from `seed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayScenario {
    pub seed: u64,
    pub swarm: GatewaySwarm,
    pub schedule: Vec<GatewayStep>,
}

/// Limits of generated gateway scenarios.
#[derive(Debug, Clone)]
pub struct GatewayShape {
    pub steps_max: usize,
    pub span_ms: u64,
    /// Weight of joins and leaves against requests.
    pub membership_weight: u32,
    /// Weight of fault actions against requests (0 = no faults).
    pub fault_weight: u32,
}

impl Default for GatewayShape {
    fn default() -> GatewayShape {
        GatewayShape {
            steps_max: 16,
            span_ms: 6_000,
            membership_weight: 3,
            fault_weight: 3,
        }
    }
}

fn host_strategy() -> impl Strategy<Value = GatewayHost> {
    prop_oneof![
        2 => Just(GatewayHost::Broker),
        3 => (0..GATEWAYS_MAX).prop_map(GatewayHost::Gateway),
        3 => Just(GatewayHost::Services),
    ]
}

/// Either end of a cut link: any host, the clients too.
fn link_end() -> impl Strategy<Value = GatewayHost> {
    prop_oneof![
        3 => host_strategy(),
        1 => Just(GatewayHost::Client),
    ]
}

/// Where a `crash-at` may aim: the gateway nodes' and the responders' points, and the broker's.
fn crash_points() -> Vec<(GatewayHost, String)> {
    let mut points = Vec::new();
    for point in tidepool_gateway::CRASH_POINTS {
        let host = if point.starts_with("gateway.") {
            GatewayHost::Gateway(0)
        } else {
            GatewayHost::Services
        };
        points.push((host, (*point).to_owned()));
    }
    for point in tidepool_broker::CRASH_POINTS {
        points.push((GatewayHost::Broker, (*point).to_owned()));
    }
    points
}

fn action_strategy(shape: &GatewayShape) -> BoxedStrategy<GatewayAction> {
    let requests = prop_oneof![
        3 => (1..=6u8).prop_map(|count| GatewayAction::Create { count }),
        1 => (1..=4u8).prop_map(|count| GatewayAction::Read { count }),
    ];
    let membership = prop_oneof![
        (0..GATEWAYS_MAX).prop_map(|node| GatewayAction::Join { node }),
        (0..GATEWAYS_MAX).prop_map(|node| GatewayAction::Leave { node }),
    ];
    // The gateway's and the responders' points first: they are what this simulation is for.
    let own_points: Vec<(GatewayHost, String)> = crash_points()
        .into_iter()
        .filter(|(host, _)| *host != GatewayHost::Broker)
        .collect();
    let crash_at = |points: Vec<(GatewayHost, String)>| {
        (prop::sample::select(points), 0..GATEWAYS_MAX, 1..=4u8).prop_map(
            |((host, point), node, hit)| {
                let host = match host {
                    GatewayHost::Gateway(_) => GatewayHost::Gateway(node),
                    other => other,
                };
                GatewayAction::CrashAt { host, point, hit }
            },
        )
    };
    let faults = prop_oneof![
        3 => host_strategy().prop_map(|host| GatewayAction::Crash { host }),
        3 => crash_at(own_points),
        1 => crash_at(crash_points()),
        4 => host_strategy().prop_map(|host| GatewayAction::Restart { host }),
        1 => (link_end(), link_end())
            .prop_map(|(a, b)| GatewayAction::Partition { a, b }),
        1 => Just(GatewayAction::Heal),
    ];
    let mut weighted: Vec<(u32, BoxedStrategy<GatewayAction>)> = vec![(8, requests.boxed())];
    if shape.membership_weight > 0 {
        weighted.push((shape.membership_weight, membership.boxed()));
    }
    if shape.fault_weight > 0 {
        weighted.push((shape.fault_weight, faults.boxed()));
    }
    prop::strategy::Union::new_weighted(weighted).boxed()
}

fn swarm_strategy() -> impl Strategy<Value = GatewaySwarm> {
    (1..=GATEWAYS_MAX, 2..=6i32, 1..=3i32, 1..=2u8).prop_map(
        |(gateways, response_partitions, request_partitions, responders)| GatewaySwarm {
            gateways,
            response_partitions,
            request_partitions,
            responders,
        },
    )
}

fn build_strategy(
    shape: GatewayShape,
    seed: BoxedStrategy<u64>,
) -> impl Strategy<Value = GatewayScenario> {
    let steps = prop::collection::vec(
        (0..shape.span_ms, action_strategy(&shape)),
        0..=shape.steps_max,
    );
    (seed, swarm_strategy(), steps).prop_map(|(seed, swarm, steps)| {
        let mut schedule: Vec<GatewayStep> = steps
            .into_iter()
            .map(|(at_ms, action)| GatewayStep { at_ms, action })
            .collect();
        // Stable: steps at the same moment keep their generated order.
        schedule.sort_by_key(|step| step.at_ms);
        GatewayScenario {
            seed,
            swarm,
            schedule,
        }
    })
}

/// Any gateway scenario of `shape`, for proptest searches.
pub fn gateway_scenario_strategy(shape: GatewayShape) -> impl Strategy<Value = GatewayScenario> {
    build_strategy(shape, any::<u64>().boxed())
}

/// The value tree of the scenario a campaign runs for `seed`; shrinking keeps the seed.
pub fn gateway_scenario_tree(
    seed: u64,
    shape: GatewayShape,
) -> Box<dyn ValueTree<Value = GatewayScenario>> {
    let mut runner = seeded_runner(seed, b"gateway_");
    match build_strategy(shape, Just(seed).boxed())
        .boxed()
        .new_tree(&mut runner)
    {
        Ok(tree) => tree,
        // No filters, so never rejected; an empty schedule is the harmless answer if it were.
        Err(_) => Box::new(Just(GatewayScenario {
            seed,
            swarm: GatewaySwarm::default(),
            schedule: Vec::new(),
        })),
    }
}

impl GatewayScenario {
    pub fn generate(seed: u64, shape: GatewayShape) -> GatewayScenario {
        gateway_scenario_tree(seed, shape).current()
    }

    pub fn describe(&self) -> String {
        let actions = action_counts(self.schedule.iter().map(|step| step.action.name()));
        format!(
            "gateway seed {} · {} nodes, {} response partitions, {} request partitions, {} responders · {} steps: {}",
            self.seed,
            self.swarm.gateways,
            self.swarm.response_partitions,
            self.swarm.request_partitions,
            self.swarm.responders,
            self.schedule.len(),
            actions
        )
    }
}

impl fmt::Display for GatewayScenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}
