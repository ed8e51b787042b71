//! The ingestion pipeline in the simulator (issue 9 item 9, DESIGN.md §5 and §7).
//!
//! Hosts: `broker` (three nodes, its own SimDisk, syncing before it acknowledges), `collector`
//! (the shipped axum router on the simulated network), `stages` (enrichment, analytics and
//! persister groups plus the outbox relay, the store on the host's SimDisk), `client` (posts
//! events over HTTP) and `reader` (drains every pipeline topic in the heal phase). Crash points
//! on the stages host: `store.committed`, `stage.effect.applied` (effect → commit),
//! `stage.handed_on` (retry or dead-letter produce → commit) and `outbox.published`
//! (produce → mark sent); the broker's own points too.
//!
//! A run is the schedule (faults on), then the heal: links repaired, every host restarted, the
//! client's posts settled, then wait until every stage's group has committed to the end of
//! `events.raw` and `events.retry` and the outbox is empty, read every topic and snapshot the
//! store. [`check`] judges the result per event id. A run that does not get there within
//! [`crate::runner::HEAL_BUDGET`] is anomalous for that reason alone.

pub mod campaign;
pub mod check;
mod hosts;
pub(crate) mod http;
pub mod scenario;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidepool_broker::Control;

pub use check::{Observations, PipelineReport, check};
pub use hosts::Flaky;
pub use scenario::{
    PipelineAction, PipelineHost, PipelineScenario, PipelineShape, PipelineStep, PipelineSwarm,
    pipeline_scenario_strategy, pipeline_scenario_tree,
};

use crate::env::{DISK, FAULTS, FaultSites, RunSeed, SimClock, SimDisk, TraceHash, crash_host};
use crate::runner::workload::{DATA_DIR, broker_config, lock, serve_broker};
use crate::runner::{HEAL_BUDGET, host_seams};
use crate::scenario::{Swarm, Variant};
use check::{STAGES, StoreSnapshot};
use hosts::PipelineShared;
use tidepool_pipeline::topics;

const READER: &str = "reader";
const HOSTS: [PipelineHost; 4] = [
    PipelineHost::Broker,
    PipelineHost::Collector,
    PipelineHost::Stages,
    PipelineHost::Client,
];
/// How long after the last scheduled step the safety phase lasts at least.
const SETTLE: Duration = Duration::from_millis(300);
/// How often the heal phase looks for convergence.
const CONVERGENCE_CHECK: Duration = Duration::from_millis(250);

/// What one pipeline run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineOutcome {
    pub observations: Observations,
    pub report: PipelineReport,
    pub not_converged: Option<String>,
    /// Faults as they happened: (virtual ms, what).
    pub faults: Vec<(u64, String)>,
    pub trace: u64,
    pub elapsed_ms: u64,
}

impl PipelineOutcome {
    pub fn is_anomalous(&self) -> bool {
        !self.report.is_valid() || self.not_converged.is_some()
    }

    pub fn summary(&self) -> String {
        match &self.not_converged {
            Some(reason) => format!("NOT CONVERGED: {reason}; {}", self.report.summary()),
            None => self.report.summary(),
        }
    }
}

struct Driver<'a> {
    sim: turmoil::Sim<'a>,
    shared: Arc<PipelineShared>,
    control: Arc<std::sync::Mutex<Option<Control>>>,
    disks: BTreeMap<&'static str, Arc<SimDisk>>,
    crash_entropy: crate::env::SimEntropy,
    down: BTreeSet<&'static str>,
    cut: BTreeSet<(&'static str, &'static str)>,
    faults: Vec<(u64, String)>,
    partitions: i32,
}

impl Driver<'_> {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.sim.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn fault(&mut self, what: String) {
        let at = self.now_ms();
        self.faults.push((at, what));
    }

    fn all_hosts() -> Vec<&'static str> {
        let mut hosts: Vec<&'static str> = HOSTS.iter().map(|host| host.name()).collect();
        hosts.push(READER);
        hosts
    }

    fn crash(&mut self, host: &'static str, disk_already_crashed: bool) {
        if self.down.contains(host) {
            return;
        }
        let peers: Vec<&str> = Self::all_hosts()
            .into_iter()
            .filter(|peer| *peer != host)
            .collect();
        crash_host(&mut self.sim, host, &peers);
        if let Some(disk) = self.disks.get(host)
            && !disk_already_crashed
        {
            disk.crash(&self.crash_entropy);
        }
        if host == PipelineHost::Broker.name() {
            *lock(&self.control) = None;
        }
        if host == PipelineHost::Stages.name() {
            *lock(&self.shared.store) = None;
        }
        if host == PipelineHost::Client.name() {
            // The request in flight died with the client: its events' fate is unknown.
            self.shared.posts_in_flight.store(0, Ordering::SeqCst);
            for event in lock(&self.shared.posted).values_mut() {
                if event.outcome == check::PostOutcome::Pending {
                    event.outcome = check::PostOutcome::Unknown {
                        reason: "the client crashed".to_owned(),
                    };
                }
            }
        }
        self.down.insert(host);
        for (a, b) in self.cut.clone() {
            if a == host || b == host {
                self.sim.partition(a, b);
            }
        }
    }

    fn restart(&mut self, host: &'static str) {
        if !self.down.remove(host) {
            return;
        }
        if let Some(disk) = self.disks.get(host) {
            disk.resume();
        }
        self.sim.bounce(host);
        self.fault(format!("restart {host}"));
    }

    fn heal_links(&mut self) {
        if self.cut.is_empty() {
            return;
        }
        for (a, b) in std::mem::take(&mut self.cut) {
            self.sim.repair(a, b);
        }
        self.fault("heal".to_owned());
    }

    fn apply(&mut self, action: &PipelineAction) {
        match action {
            PipelineAction::Post { count, fail } => self.shared.post(*count, *fail),
            PipelineAction::Crash { host } => {
                let host = host.name();
                if !self.down.contains(host) {
                    self.fault(format!("crash {host}"));
                    self.crash(host, false);
                }
            }
            PipelineAction::CrashAt { host, point, hit } => {
                let host = host.name();
                let so_far = self
                    .shared
                    .sites
                    .hits()
                    .get(&(host.to_owned(), point.clone()))
                    .copied()
                    .unwrap_or(0);
                self.shared.sites.arm(host, point, so_far + u64::from(*hit));
            }
            PipelineAction::Restart { host } => self.restart(host.name()),
            PipelineAction::Partition { a, b } => {
                let (a, b) = (a.name(), b.name());
                if a != b {
                    self.sim.partition(a, b);
                    self.fault(format!("partition {a} | {b}"));
                    self.cut.insert((a, b));
                }
            }
            PipelineAction::Heal => self.heal_links(),
            PipelineAction::MoveLeader { partition, node } => {
                let partition = partition.rem_euclid(self.partitions.max(1));
                let node = i32::from(node % 3) + 1;
                let moved = lock(&self.control)
                    .as_ref()
                    .map(|control| control.move_leader(topics::RAW, partition, node));
                if let Some(Ok(to)) = moved {
                    self.fault(format!("move {}/{partition} to node {to}", topics::RAW));
                }
            }
        }
    }

    fn step(&mut self) -> Result<(), String> {
        self.sim.step().map_err(|error| error.to_string())?;
        self.crash_fired();
        Ok(())
    }

    fn crash_fired(&mut self) {
        for fired in self.shared.sites.take_fired() {
            let Some(host) = HOSTS
                .iter()
                .map(|host| host.name())
                .find(|name| *name == fired.host)
            else {
                continue;
            };
            self.fault(format!(
                "crash {host} at {} (hit {})",
                fired.site, fired.hit
            ));
            // The disk that fired crashed itself.
            self.crash(host, true);
        }
    }

    fn elapsed(&self) -> Duration {
        self.sim.elapsed()
    }

    /// Whether every stage's group has committed to `ends` on the topics it reads.
    fn caught_up(&self, ends: &BTreeMap<(String, i32), i64>) -> Result<(), String> {
        let control = lock(&self.control);
        let Some(control) = control.as_ref() else {
            return Err("broker not up".to_owned());
        };
        for stage in STAGES {
            let lags = control.lag(stage);
            for ((topic, partition), end) in ends {
                if topic != topics::RAW && topic != topics::RETRY {
                    continue;
                }
                let committed = lags
                    .iter()
                    .find(|lag| &lag.topic == topic && lag.partition == *partition)
                    .and_then(|lag| lag.committed)
                    .unwrap_or(0);
                if committed < *end {
                    return Err(format!(
                        "{stage} at {committed} of {end} on {topic}/{partition}"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Runs a pipeline scenario with `variant` (one of the pipeline's, or none) and judges it.
pub fn run_pipeline(scenario: &PipelineScenario, variant: Variant) -> PipelineOutcome {
    let seed = RunSeed::new(scenario.seed);
    let trace = TraceHash::new();
    let swarm = PipelineSwarm {
        partitions: scenario.swarm.partitions.clamp(1, 4),
        max_attempts: scenario.swarm.max_attempts.clamp(1, 5),
    };
    let sites = Arc::new(FaultSites::new());
    let shared = Arc::new(PipelineShared::new(
        Arc::clone(&sites),
        swarm.clone(),
        variant,
    ));
    let control: Arc<std::sync::Mutex<Option<Control>>> = Arc::default();

    let broker_disk = Arc::new(SimDisk::new());
    let _ = broker_disk.prepare_dir(std::path::Path::new(DATA_DIR));
    broker_disk.attach_fault_sites(
        PipelineHost::Broker.name(),
        Arc::clone(&sites),
        Arc::new(seed.stream(DISK)),
    );
    let stages_disk = Arc::new(SimDisk::new());
    stages_disk.attach_fault_sites(
        PipelineHost::Stages.name(),
        Arc::clone(&sites),
        Arc::new(seed.stream("stages-disk")),
    );
    {
        let all = Driver::all_hosts();
        sites.set_on_fire(Box::new(move |host: &str| {
            if turmoil::in_simulation() {
                for peer in all.iter().filter(|peer| **peer != host) {
                    turmoil::partition(host, *peer);
                }
            }
        }));
    }

    let mut sim = crate::env::sim_builder(seed)
        .simulation_duration(Duration::from_secs(3_600))
        .max_message_latency(Duration::from_millis(5))
        .build();
    let mut clocks: BTreeMap<&str, Arc<SimClock>> = BTreeMap::new();
    let mut disks = BTreeMap::new();
    disks.insert(PipelineHost::Broker.name(), Arc::clone(&broker_disk));
    disks.insert(PipelineHost::Stages.name(), Arc::clone(&stages_disk));
    for host in Driver::all_hosts() {
        let disk = disks
            .get(host)
            .cloned()
            .unwrap_or_else(|| Arc::new(SimDisk::new()));
        let seams = host_seams(host, seed, disk, &trace);
        clocks.insert(host, seams.clock);
        let env = seams.env;
        let shared = Arc::clone(&shared);
        match host {
            "broker" => {
                let config = broker_config(
                    &Swarm {
                        sync_before_ack: true,
                        ..Swarm::default()
                    },
                    Variant::None,
                );
                let control = Arc::clone(&control);
                sim.host(host, move || {
                    let control = Arc::clone(&control);
                    serve_broker(env.clone(), config.clone(), move |started| {
                        *lock(&control) = Some(started);
                    })
                });
            }
            "collector" => sim.host(host, move || {
                hosts::collector_host(env.clone(), Arc::clone(&shared))
            }),
            "stages" => sim.host(host, move || {
                hosts::stages_host(env.clone(), Arc::clone(&shared))
            }),
            "client" => sim.host(host, move || {
                hosts::client_host(env.clone(), Arc::clone(&shared))
            }),
            _ => sim.host(host, move || {
                hosts::reader_host(env.clone(), Arc::clone(&shared))
            }),
        }
    }

    let mut driver = Driver {
        sim,
        shared: Arc::clone(&shared),
        control,
        disks,
        crash_entropy: seed.stream(FAULTS),
        down: BTreeSet::new(),
        cut: BTreeSet::new(),
        faults: Vec::new(),
        partitions: swarm.partitions,
    };
    let result = drive(&mut driver, scenario);
    let elapsed_ms = u64::try_from(driver.elapsed().as_millis()).unwrap_or(u64::MAX);
    let faults = std::mem::take(&mut driver.faults);
    let (observations, not_converged) = result;
    drop(driver);
    // An unconverged run has no complete picture to judge (nothing drained): its verdict is
    // the failure to converge.
    let report = if not_converged.is_none() {
        check(&observations)
    } else {
        PipelineReport::default()
    };
    if let Ok(json) = serde_json::to_vec(&observations) {
        trace.record("observations", &json);
    }
    PipelineOutcome {
        observations,
        report,
        not_converged,
        faults,
        trace: trace.digest(),
        elapsed_ms,
    }
}

/// What the run observed, and why it did not converge if it did not.
type Drive = (Observations, Option<String>);

fn drive(driver: &mut Driver<'_>, scenario: &PipelineScenario) -> Drive {
    let end = scenario
        .schedule
        .last()
        .map_or(Duration::ZERO, |step| Duration::from_millis(step.at_ms))
        + SETTLE;
    let mut next = 0;
    while next < scenario.schedule.len() || driver.elapsed() < end {
        while next < scenario.schedule.len()
            && Duration::from_millis(scenario.schedule[next].at_ms) <= driver.elapsed()
        {
            driver.apply(&scenario.schedule[next].action);
            driver.crash_fired();
            next += 1;
        }
        if let Err(error) = driver.step() {
            return (observe(driver, None), Some(error));
        }
    }
    heal(driver)
}

/// The store's state over the posted events, read by the driver between steps.
fn snapshot(driver: &Driver<'_>) -> Result<StoreSnapshot, String> {
    let store = lock(&driver.shared.store).clone();
    let Some(store) = store else {
        return Err("stages host not up".to_owned());
    };
    let posted: Vec<String> = lock(&driver.shared.posted).keys().cloned().collect();
    let failed = |error: tidepool_pipeline::store::StoreError| format!("store: {error}");
    let mut applied = BTreeMap::new();
    for stage in STAGES {
        let mut ids = BTreeSet::new();
        for id in &posted {
            if store.is_applied(stage, id).map_err(failed)? {
                ids.insert(id.clone());
            }
        }
        applied.insert(stage.to_owned(), ids);
    }
    Ok(StoreSnapshot {
        applied,
        rollups: store.all_rollups().map_err(failed)?,
        outbox_pending: store.outbox_pending().map_err(failed)?,
    })
}

fn observe(driver: &Driver<'_>, drained: Option<hosts::Drained>) -> Observations {
    let store = snapshot(driver).unwrap_or_default();
    let posted = lock(&driver.shared.posted).clone();
    Observations {
        max_attempts: driver.shared.swarm.max_attempts,
        posted,
        records: drained.map(|drained| drained.records).unwrap_or_default(),
        store,
    }
}

/// Faults off and every host up; then wait for the posts to settle and the pipeline to catch
/// up, and read what it left behind.
fn heal(driver: &mut Driver<'_>) -> Drive {
    driver.fault("heal phase".to_owned());
    driver.shared.sites.disarm_all();
    driver.heal_links();
    for host in driver.down.clone() {
        driver.restart(host);
    }
    let deadline = driver.elapsed() + HEAL_BUDGET;
    let give_up = |driver: &Driver<'_>, why: String| (observe(driver, None), Some(why));
    while driver.shared.posts_in_flight.load(Ordering::SeqCst) > 0
        || !lock(&driver.shared.posts).is_empty()
    {
        if driver.elapsed() > deadline {
            return give_up(driver, "the client's posts did not settle".to_owned());
        }
        if let Err(error) = driver.step() {
            return give_up(driver, error);
        }
    }
    let mut last_reason = String::from("never checked");
    loop {
        // Quiet first (outbox empty, groups at the ends last seen), then a fresh drain, then
        // the same checks against its ends: nothing moved in between.
        let ready = match snapshot(driver) {
            Ok(store) if store.outbox_pending == 0 => {
                let ends = lock(&driver.shared.drained)
                    .as_ref()
                    .map(|(_, drained)| drained.ends.clone());
                match ends {
                    Some(ends) => driver.caught_up(&ends),
                    None => Err("not drained yet".to_owned()),
                }
            }
            Ok(store) => Err(format!("{} unsent outbox rows", store.outbox_pending)),
            Err(reason) => Err(reason),
        };
        let number = driver.shared.ask_drain();
        let wait_until = driver.elapsed() + CONVERGENCE_CHECK;
        while driver.elapsed() < wait_until
            || lock(&driver.shared.drained)
                .as_ref()
                .is_none_or(|(done, _)| *done < number)
        {
            if driver.elapsed() > deadline {
                return give_up(
                    driver,
                    format!("after {}s of healing: {last_reason}", HEAL_BUDGET.as_secs()),
                );
            }
            if let Err(error) = driver.step() {
                return give_up(driver, error);
            }
        }
        let drained = lock(&driver.shared.drained)
            .as_ref()
            .map(|(_, drained)| drained.clone());
        match (ready, drained) {
            (Ok(()), Some(drained)) => {
                let settled = snapshot(driver).and_then(|store| {
                    if store.outbox_pending > 0 {
                        return Err(format!("{} unsent outbox rows", store.outbox_pending));
                    }
                    driver.caught_up(&drained.ends)
                });
                match settled {
                    Ok(()) => {
                        tracing::debug!(
                            at_ms = driver.now_ms(),
                            ends = ?drained.ends,
                            lags = ?lock(&driver.control).as_ref().map(|control| STAGES.map(|stage| control.lag(stage))),
                            "converged"
                        );
                        return (observe(driver, Some(drained)), None);
                    }
                    Err(reason) => last_reason = reason,
                }
            }
            (Err(reason), _) => last_reason = reason,
            (Ok(()), None) => last_reason = "not drained yet".to_owned(),
        }
    }
}
