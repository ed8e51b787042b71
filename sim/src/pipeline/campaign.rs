//! Pipeline campaigns and reproduction: the same scheme as [`crate::campaign`] (many seeds,
//! the first failure shrunk and written to disk with the command that replays it), for
//! pipeline scenarios.

use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{
    PipelineOutcome, PipelineScenario, PipelineShape, pipeline_scenario_tree, run_pipeline,
};
use crate::campaign::{CampaignResult, HasSeed, ScenarioResult, campaign, hex};
use crate::scenario::{Variant, shrink};

/// Marks a failure file as a pipeline run.
pub const SYSTEM: &str = "pipeline";

impl HasSeed for PipelineScenario {
    fn seed(&self) -> u64 {
        self.seed
    }
}

/// A failing pipeline run, as written to disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineFailure {
    /// Always [`SYSTEM`]: tells this file from a broker-and-client failure.
    pub system: String,
    pub replay: String,
    pub variant: Variant,
    pub scenario: PipelineScenario,
    pub trace: String,
    pub summary: String,
    pub outcome: PipelineOutcome,
}

impl PipelineFailure {
    /// Reads a pipeline failure; `Ok(None)` if the file is another system's.
    pub fn read(path: &Path) -> io::Result<Option<PipelineFailure>> {
        read_system_failure(path, SYSTEM)
    }
}

/// Reads the failure file at `path` if its `"system"` is `system`; `Ok(None)` if it is another
/// system's.
pub(crate) fn read_system_failure<T: serde::de::DeserializeOwned>(
    path: &Path,
    system: &str,
) -> io::Result<Option<T>> {
    let text = fs::read_to_string(path)?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|error| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not JSON: {error}", path.display()),
        )
    })?;
    if value.get("system").and_then(serde_json::Value::as_str) != Some(system) {
        return Ok(None);
    }
    serde_json::from_value(value).map(Some).map_err(|error| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a {system} failure: {error}", path.display()),
        )
    })
}

/// Writes the failure `make` builds (given its replay command) into `dir` (created if
/// missing) as `<trace>.json`; returns the file's path.
pub(crate) fn write_system_failure<T: Serialize>(
    dir: &Path,
    trace: u64,
    make: impl FnOnce(String) -> T,
) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = dir.join(format!("{}.json", hex(trace)));
    let failure = make(format!("tidepool sim --replay {}", path.display()));
    let json = serde_json::to_string_pretty(&failure).map_err(io::Error::other)?;
    fs::write(&path, json)?;
    Ok(path)
}

/// Writes a failing pipeline run into `dir` (created if missing); returns the file's path.
pub fn write_pipeline_failure(
    dir: &Path,
    scenario: &PipelineScenario,
    variant: Variant,
    outcome: &PipelineOutcome,
) -> io::Result<PathBuf> {
    write_system_failure(dir, outcome.trace, |replay| PipelineFailure {
        system: SYSTEM.to_owned(),
        replay,
        variant,
        scenario: scenario.clone(),
        trace: hex(outcome.trace),
        summary: outcome.summary(),
        outcome: outcome.clone(),
    })
}

/// Runs the pipeline scenario of every seed in `seeds` with `variant` on `threads` threads.
pub fn run_pipeline_campaign(
    seeds: Range<u64>,
    variant: Variant,
    threads: usize,
    progress: &(dyn Fn(u64, &ScenarioResult) + Sync),
) -> CampaignResult<PipelineScenario, PipelineOutcome> {
    campaign(seeds, threads, progress, &|seed| {
        let scenario = PipelineScenario::generate(seed, PipelineShape::default());
        let outcome = run_pipeline(&scenario, variant);
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
pub fn shrink_pipeline_seed(
    seed: u64,
    variant: Variant,
    budget: usize,
) -> (PipelineScenario, PipelineOutcome, usize) {
    let mut tree = pipeline_scenario_tree(seed, PipelineShape::default());
    let (scenario, runs) = shrink(tree.as_mut(), budget, &mut |candidate| {
        run_pipeline(candidate, variant).is_anomalous()
    });
    let outcome = run_pipeline(&scenario, variant);
    (scenario, outcome, runs)
}
