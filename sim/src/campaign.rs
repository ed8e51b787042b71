//! Campaigns and reproduction (issue 8 items 7 and 8): run many seeds, keep what fails, replay
//! it.
//!
//! A failing run is written to `<dir>/<trace>.json` as a [`Failure`]: the scenario, the
//! variant, the checker's report and the whole history, plus the one command that replays it.
//! Once the bug is fixed the file moves into the committed `sim/regressions/` folder, whose
//! every file the test suite replays: a failure of the plain build must now be valid, a
//! known-bad variant's must still be caught.

use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::checker::Report;
use crate::history::History;
use crate::runner::{RunOutcome, run};
use crate::scenario::{Scenario, Shape, Variant};

/// Where failing runs go unless told otherwise.
pub const FAILURES_DIR: &str = "target/sim-failures";

/// A failing run, as written to disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    /// The command that runs this scenario again.
    pub replay: String,
    pub variant: Variant,
    pub scenario: Scenario,
    /// The trace hash of the run, in hex: a replay must reproduce it.
    pub trace: String,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_converged: Option<String>,
    pub report: Report,
    pub history: History,
}

/// The trace hash as the CLI prints it.
pub fn hex(trace: u64) -> String {
    format!("{trace:016x}")
}

impl Failure {
    pub fn new(
        scenario: &Scenario,
        variant: Variant,
        outcome: &RunOutcome,
        path: &Path,
    ) -> Failure {
        Failure {
            replay: format!("tidepool sim --replay {}", path.display()),
            variant,
            scenario: scenario.clone(),
            trace: hex(outcome.trace),
            summary: outcome.summary(),
            not_converged: outcome.not_converged.clone(),
            report: outcome.report.clone(),
            history: outcome.history.clone(),
        }
    }

    pub fn read(path: &Path) -> io::Result<Failure> {
        let text = fs::read_to_string(path)?;
        serde_json::from_str(&text).map_err(|error| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a simulation failure: {error}", path.display()),
            )
        })
    }
}

/// Writes a failing run into `dir` (created if missing) and returns the file's path.
pub fn write_failure(
    dir: &Path,
    scenario: &Scenario,
    variant: Variant,
    outcome: &RunOutcome,
) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = dir.join(format!("{}.json", hex(outcome.trace)));
    let failure = Failure::new(scenario, variant, outcome, &path);
    let json = serde_json::to_string_pretty(&failure).map_err(io::Error::other)?;
    fs::write(&path, json)?;
    Ok(path)
}

/// The outcome of one scenario of a campaign, without its history (kept only for failures).
#[derive(Debug, Clone)]
pub struct ScenarioResult {
    pub seed: u64,
    pub trace: u64,
    pub anomalous: bool,
    pub summary: String,
}

/// What a campaign found (of broker-and-client scenarios unless told otherwise).
#[derive(Debug)]
pub struct CampaignResult<S = Scenario, O = RunOutcome> {
    /// Per seed, in seed order.
    pub results: Vec<ScenarioResult>,
    /// The first failing scenario (lowest seed) with its whole outcome.
    pub first_failure: Option<(S, O)>,
}

impl<S, O> Default for CampaignResult<S, O> {
    fn default() -> Self {
        CampaignResult {
            results: Vec::new(),
            first_failure: None,
        }
    }
}

impl<S, O> CampaignResult<S, O> {
    pub fn anomalous(&self) -> usize {
        self.results
            .iter()
            .filter(|result| result.anomalous)
            .count()
    }

    /// One hash over every scenario's trace, in seed order: two campaigns over the same seeds
    /// print the same value.
    pub fn trace(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for result in &self.results {
            for byte in result.trace.to_le_bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        hash
    }
}

/// The shape of campaign scenarios: every broker crash point may be named.
pub fn campaign_shape() -> Shape {
    Shape::default().with_broker_points(tidepool_broker::CRASH_POINTS)
}

/// Runs the scenario of every seed in `seeds` with `variant`, on `threads` threads (each
/// simulation is single-threaded and deterministic; threads only run several at once).
/// `progress` is called after each scenario with the number done so far.
pub fn run_campaign(
    seeds: Range<u64>,
    variant: Variant,
    threads: usize,
    progress: &(dyn Fn(u64, &ScenarioResult) + Sync),
) -> CampaignResult {
    run_campaign_keeping(seeds, variant, threads, None, progress)
}

/// Like [`run_campaign`], also writing every scenario's history to `histories/<seed>.jsonl`
/// when `histories` is given (a failure to write one is reported in that scenario's summary).
pub fn run_campaign_keeping(
    seeds: Range<u64>,
    variant: Variant,
    threads: usize,
    histories: Option<&Path>,
    progress: &(dyn Fn(u64, &ScenarioResult) + Sync),
) -> CampaignResult {
    campaign(seeds, threads, progress, &|seed| {
        let scenario = Scenario::generate(seed, campaign_shape());
        let outcome = run(&scenario, variant);
        let mut summary = outcome.summary();
        if let Some(dir) = histories {
            let path = dir.join(format!("{seed}.jsonl"));
            if let Err(error) = fs::write(&path, outcome.history.to_jsonl()) {
                summary = format!(
                    "{summary} (history not written to {}: {error})",
                    path.display()
                );
            }
        }
        let result = ScenarioResult {
            seed,
            trace: outcome.trace,
            anomalous: outcome.is_anomalous(),
            summary,
        };
        (scenario, outcome, result)
    })
}

/// A campaign of any system: `run` generates and runs the scenario of one seed and sums it up;
/// the lowest seed's anomalous (scenario, outcome) is kept for shrinking.
pub fn campaign<S: HasSeed + Send, O: Send>(
    seeds: Range<u64>,
    threads: usize,
    progress: &(dyn Fn(u64, &ScenarioResult) + Sync),
    run: &(dyn Fn(u64) -> (S, O, ScenarioResult) + Sync),
) -> CampaignResult<S, O> {
    let first_failure = Mutex::new(None);
    let results = for_each_seed(
        seeds,
        threads,
        &|seed| {
            let (scenario, outcome, result) = run(seed);
            if result.anomalous {
                keep_first(&first_failure, seed, (scenario, outcome));
            }
            result
        },
        progress,
    );
    CampaignResult {
        results,
        first_failure: first_failure
            .into_inner()
            .unwrap_or_else(|p| p.into_inner()),
    }
}

/// Keeps `failure` in `slot` if it is the lowest seed's so far.
pub fn keep_first<S: HasSeed, O>(slot: &Mutex<Option<(S, O)>>, seed: u64, failure: (S, O)) {
    let mut first = lock(slot);
    if first.as_ref().is_none_or(|(kept, _)| kept.seed() > seed) {
        *first = Some(failure);
    }
}

/// A scenario's seed, whatever the system it runs.
pub trait HasSeed {
    fn seed(&self) -> u64;
}

impl HasSeed for Scenario {
    fn seed(&self) -> u64 {
        self.seed
    }
}

/// Runs `work` for every seed of `seeds` on `threads` threads (each simulation is
/// single-threaded and deterministic; threads only run several at once), calling `progress`
/// after each with the number done so far. Results come back in seed order.
pub fn for_each_seed(
    seeds: Range<u64>,
    threads: usize,
    work: &(dyn Fn(u64) -> ScenarioResult + Sync),
    progress: &(dyn Fn(u64, &ScenarioResult) + Sync),
) -> Vec<ScenarioResult> {
    let next = AtomicU64::new(seeds.start);
    let done = AtomicU64::new(0);
    let results = Mutex::new(Vec::new());
    let worker = || {
        loop {
            let seed = next.fetch_add(1, Ordering::SeqCst);
            if seed >= seeds.end {
                break;
            }
            let result = work(seed);
            let count = done.fetch_add(1, Ordering::SeqCst) + 1;
            progress(count, &result);
            lock(&results).push(result);
        }
    };
    // Scoped threads each run whole simulations; nothing inside a simulation sees them.
    std::thread::scope(|scope| {
        for _ in 1..threads.max(1) {
            scope.spawn(worker);
        }
        worker();
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|result| result.seed);
    results
}

/// Shrinks the campaign scenario of `seed` (which must fail under `variant`) to the simplest
/// schedule that still fails, spending at most `budget` runs. Returns the shrunk scenario, its
/// outcome and the runs spent.
pub fn shrink_seed(seed: u64, variant: Variant, budget: usize) -> (Scenario, RunOutcome, usize) {
    let mut tree = crate::scenario::scenario_tree(seed, campaign_shape());
    let (scenario, runs) = crate::scenario::shrink(tree.as_mut(), budget, &mut |candidate| {
        run(candidate, variant).is_anomalous()
    });
    let outcome = run(&scenario, variant);
    (scenario, outcome, runs)
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Replays a written failure: runs its scenario and variant again.
pub fn replay(failure: &Failure) -> RunOutcome {
    run(&failure.scenario, failure.variant)
}
