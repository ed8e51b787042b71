//! Gateway campaigns and reproduction: the scheme of [`crate::campaign`] and
//! [`crate::pipeline::campaign`] (many seeds, the first failure shrunk and written to disk with
//! the command that replays it), for gateway scenarios.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{GatewayOutcome, GatewayScenario, GatewayShape, gateway_scenario_tree, run_gateway};
use crate::campaign::{CampaignResult, HasSeed, ScenarioResult, campaign, hex};
use crate::pipeline::campaign::{read_system_failure, write_system_failure};
use crate::scenario::{Variant, shrink};

/// Marks a failure file as a gateway run.
pub const SYSTEM: &str = "gateway";

impl HasSeed for GatewayScenario {
    fn seed(&self) -> u64 {
        self.seed
    }
}

/// A failing gateway run, as written to disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewayFailure {
    /// Always [`SYSTEM`]: tells this file from another system's failure.
    pub system: String,
    pub replay: String,
    pub variant: Variant,
    pub scenario: GatewayScenario,
    pub trace: String,
    pub summary: String,
    pub outcome: GatewayOutcome,
}

impl GatewayFailure {
    /// Reads a gateway failure; `Ok(None)` if the file is another system's.
    pub fn read(path: &Path) -> io::Result<Option<GatewayFailure>> {
        read_system_failure(path, SYSTEM)
    }
}

/// Writes a failing gateway run into `dir` (created if missing); returns the file's path.
pub fn write_gateway_failure(
    dir: &Path,
    scenario: &GatewayScenario,
    variant: Variant,
    outcome: &GatewayOutcome,
) -> io::Result<PathBuf> {
    write_system_failure(dir, outcome.trace, |replay| GatewayFailure {
        system: SYSTEM.to_owned(),
        replay,
        variant,
        scenario: scenario.clone(),
        trace: hex(outcome.trace),
        summary: outcome.summary(),
        outcome: outcome.clone(),
    })
}

/// Runs the gateway scenario of every seed in `seeds` with `variant` on `threads` threads.
pub fn run_gateway_campaign(
    seeds: Range<u64>,
    variant: Variant,
    threads: usize,
    progress: &(dyn Fn(u64, &ScenarioResult) + Sync),
) -> CampaignResult<GatewayScenario, GatewayOutcome> {
    campaign(seeds, threads, progress, &|seed| {
        let scenario = GatewayScenario::generate(seed, GatewayShape::default());
        let outcome = run_gateway(&scenario, variant);
        let result = ScenarioResult {
            seed,
            trace: outcome.trace,
            anomalous: outcome.is_anomalous(),
            summary: outcome.summary(),
        };
        (scenario, outcome, result)
    })
}

/// Shrinks the campaign scenario of `seed` (which must fail under `variant`), spending at most
/// `budget` runs; returns the shrunk scenario, its outcome and the runs spent.
pub fn shrink_gateway_seed(
    seed: u64,
    variant: Variant,
    budget: usize,
) -> (GatewayScenario, GatewayOutcome, usize) {
    let mut tree = gateway_scenario_tree(seed, GatewayShape::default());
    let (scenario, runs) = shrink(tree.as_mut(), budget, &mut |candidate| {
        run_gateway(candidate, variant).is_anomalous()
    });
    let outcome = run_gateway(&scenario, variant);
    (scenario, outcome, runs)
}
