//! Runs a [`Scenario`] in turmoil and judges it (DESIGN.md §7).
//!
//! The driver owns the simulation: it steps turmoil, carries out the schedule's actions at
//! their times (orders to client hosts through their mailboxes, faults on the simulation
//! itself), crashes a host whose armed crash point fired, and records every fault. After the
//! schedule comes the heal phase: links repaired, buggify off, every host restarted, every send
//! settled, the group caught up (lag 0) and the reader drained to the end of every partition.
//! A run that does not converge within [`HEAL_BUDGET`] is anomalous for that reason alone.
//!
//! Hosts: `broker` (one process with three nodes on one SimDisk), `producer-N`,
//! `consumer-N` (one group) and `reader` (a standalone consumer). The history's promises
//! (`meta.config`) follow the swarm, never the variant: a variant breaks a promise the history
//! still makes, which is how the checker catches it.

pub(crate) mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidepool_broker::InjectedError;
use tidepool_io::{Clock, Env};

use crate::checker::{Report, check};
use crate::env::{
    DISK, FAULTS, FaultSites, HashingTransport, RunSeed, SimClock, SimDisk, SimTransport,
    TraceHash, crash_host, sim_builder,
};
use crate::history::{Acks, Config, Fault, History, Phase, RunMeta};
use crate::scenario::{Action, Host, Scenario, Swarm, Variant};

use workload::{Command, DATA_DIR, GROUP, Mailbox, Shared, TOPIC, lock};

pub const BROKER: &str = "broker";
const READER: &str = "reader";
const NEMESIS: &str = "nemesis";
/// How long the heal phase may take before the run counts as not converging.
pub const HEAL_BUDGET: Duration = Duration::from_secs(120);
/// How long after the last scheduled step the safety phase lasts at least.
const SETTLE: Duration = Duration::from_millis(300);
/// `buggify!` odds per site visit during the safety phase, per mille.
const BUGGIFY_PER_MILLE: u32 = 50;

/// What one run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunOutcome {
    pub history: History,
    pub report: Report,
    /// Why the heal phase failed to converge, if it did.
    pub not_converged: Option<String>,
    /// Hash of every byte the hosts exchanged and of the history: same seed, same trace.
    pub trace: u64,
    /// Virtual time the run took.
    pub elapsed_ms: u64,
}

impl RunOutcome {
    /// The checker found a forbidden anomaly, or the run did not converge.
    pub fn is_anomalous(&self) -> bool {
        !self.report.is_valid() || self.not_converged.is_some()
    }

    /// One line: the verdict and the checker's summary.
    pub fn summary(&self) -> String {
        match &self.not_converged {
            Some(reason) => format!("NOT CONVERGED: {reason}; {}", self.report.summary()),
            None => self.report.summary().to_owned(),
        }
    }
}

/// What the history promises for `swarm`.
pub fn promises(swarm: &Swarm) -> Config {
    Config {
        idempotent: swarm.idempotent,
        acks: if swarm.acks_one { Acks::One } else { Acks::All },
        sync_before_ack: swarm.sync_before_ack,
        compacted_topics: if swarm.compacted {
            BTreeSet::from([TOPIC.to_owned()])
        } else {
            BTreeSet::new()
        },
        ..Config::default()
    }
}

fn host_name(host: Host, swarm: &Swarm) -> String {
    match host {
        Host::Broker => BROKER.to_owned(),
        Host::Producer(index) => format!("producer-{}", index % swarm.producers.max(1)),
        Host::Consumer(index) => format!("consumer-{}", index % swarm.consumers.max(1)),
        Host::Reader => READER.to_owned(),
    }
}

/// A host's seams, its clock kept apart so the driver can make it jump.
pub(crate) struct HostSeams {
    pub(crate) env: Env,
    pub(crate) clock: Arc<SimClock>,
}

pub(crate) fn host_seams(
    name: &str,
    seed: RunSeed,
    disk: Arc<SimDisk>,
    trace: &TraceHash,
) -> HostSeams {
    let clock = Arc::new(SimClock::new());
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let transport = HashingTransport::new(Arc::new(SimTransport), dyn_clock.clone(), trace.clone());
    HostSeams {
        env: Env {
            transport: Arc::new(transport),
            clock: dyn_clock,
            entropy: Arc::new(seed.host_stream(name)),
            disk,
        },
        clock,
    }
}

/// The run's moving parts outside turmoil.
struct Driver<'a> {
    sim: turmoil::Sim<'a>,
    shared: Arc<Shared>,
    swarm: Swarm,
    hosts: Vec<String>,
    clocks: BTreeMap<String, Arc<SimClock>>,
    broker_disk: Arc<SimDisk>,
    crash_entropy: crate::env::SimEntropy,
    down: BTreeSet<String>,
    /// Links cut or held by the schedule, to cut again after a crash restores them.
    cut: BTreeSet<(String, String)>,
    held: BTreeSet<(String, String)>,
}

impl Driver<'_> {
    /// Virtual milliseconds since the run began (the driver runs outside turmoil's hosts, so
    /// it asks the simulation rather than the ambient clock).
    fn now_ms(&self) -> u64 {
        u64::try_from(self.sim.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn fault(&self, fault: Fault) {
        lock(&self.shared.recorder).fault(self.now_ms(), NEMESIS, fault);
    }

    fn peers(&self, host: &str) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|other| *other != host)
            .cloned()
            .collect()
    }

    /// Stops `host` now; the broker's disk keeps what the seed's crash model says.
    fn crash(&mut self, host: &str, disk_already_crashed: bool) {
        if self.down.contains(host) {
            return;
        }
        let peers = self.peers(host);
        let peer_refs: Vec<&str> = peers.iter().map(String::as_str).collect();
        crash_host(&mut self.sim, host, &peer_refs);
        if host == BROKER {
            if !disk_already_crashed {
                self.broker_disk.crash(&self.crash_entropy);
            }
            *lock(&self.shared.control) = None;
        }
        self.down.insert(host.to_owned());
        // crash_host leaves the host's links healthy: cut again what the schedule had cut.
        for (a, b) in &self.cut {
            if a == host || b == host {
                self.sim.partition(a.as_str(), b.as_str());
            }
        }
    }

    fn restart(&mut self, host: &str) {
        if !self.down.remove(host) {
            return;
        }
        if host == BROKER {
            self.broker_disk.resume();
        }
        self.sim.bounce(host);
        self.fault(Fault::Restart {
            host: host.to_owned(),
        });
    }

    fn tell(&self, host: &str, command: Command) {
        if !self.down.contains(host) {
            self.shared.mailbox(host).send(command);
        }
    }

    fn apply(&mut self, action: &Action) {
        let swarm = self.swarm.clone();
        let name = |host: Host| host_name(host, &swarm);
        match action {
            Action::Produce { producer, count } => {
                self.tell(&name(Host::Producer(*producer)), Command::Produce(*count));
            }
            Action::Poll => self.tell(READER, Command::Poll),
            Action::Commit { consumer } => {
                self.tell(&name(Host::Consumer(*consumer)), Command::Commit)
            }
            Action::Join { consumer } => self.tell(&name(Host::Consumer(*consumer)), Command::Join),
            Action::Leave { consumer } => {
                self.tell(&name(Host::Consumer(*consumer)), Command::Leave)
            }
            Action::Crash { host } => {
                let host = name(*host);
                if !self.down.contains(&host) {
                    self.fault(Fault::Crash { host: host.clone() });
                    self.crash(&host, false);
                }
            }
            Action::CrashAt { host, point, hit } => {
                let host = name(*host);
                let so_far = self
                    .shared
                    .sites
                    .hits()
                    .get(&(host.clone(), point.clone()))
                    .copied()
                    .unwrap_or(0);
                self.shared
                    .sites
                    .arm(&host, point, so_far + u64::from(*hit));
            }
            Action::Restart { host } => self.restart(&name(*host)),
            Action::Partition { a, b } => {
                let (a, b) = (name(*a), name(*b));
                if a != b {
                    self.sim.partition(a.as_str(), b.as_str());
                    self.fault(Fault::Partition {
                        left: vec![a.clone()],
                        right: vec![b.clone()],
                    });
                    self.cut.insert((a, b));
                }
            }
            Action::Hold { a, b } => {
                let (a, b) = (name(*a), name(*b));
                if a != b {
                    self.sim.hold(a.as_str(), b.as_str());
                    self.fault(Fault::Hold {
                        a: a.clone(),
                        b: b.clone(),
                    });
                    self.held.insert((a, b));
                }
            }
            Action::Release { a, b } => {
                let (a, b) = (name(*a), name(*b));
                if self.held.remove(&(a.clone(), b.clone())) {
                    self.sim.release(a.as_str(), b.as_str());
                    self.fault(Fault::Release { a, b });
                }
            }
            Action::Heal => self.heal_links(),
            Action::MoveLeader { partition, node } => {
                let partition = partition.rem_euclid(swarm.partitions.max(1));
                let node = i32::from(node % 3) + 1;
                let moved = lock(&self.shared.control)
                    .as_ref()
                    .map(|control| control.move_leader(TOPIC, partition, node));
                if let Some(Ok(to)) = moved {
                    self.fault(Fault::LeaderMove {
                        topic: TOPIC.to_owned(),
                        partition,
                        to: Some(to),
                    });
                }
            }
            Action::MoveCoordinator { node } => {
                let node = i32::from(node % 3) + 1;
                let moved = lock(&self.shared.control)
                    .as_ref()
                    .map(|control| control.move_group_coordinator(GROUP, node));
                if let Some(Ok(to)) = moved {
                    self.fault(Fault::CoordinatorMove {
                        group: GROUP.to_owned(),
                        to: Some(to),
                    });
                }
            }
            Action::InjectErrors { api, count } => {
                let errors = vec![InjectedError::new(api.code()); usize::from(*count)];
                let injected = lock(&self.shared.control)
                    .as_ref()
                    .map(|control| control.push_errors(api.api_key(), None, &errors));
                if let Some(Ok(())) = injected {
                    self.fault(Fault::Injected {
                        action: format!("{count}× error {} on {:?}", api.code(), api.api_key()),
                    });
                }
            }
            Action::SlowNode { node, delay_ms } => {
                let node = i32::from(node % 3) + 1;
                let delay = Duration::from_millis(u64::from(*delay_ms));
                let slowed = lock(&self.shared.control)
                    .as_ref()
                    .map(|control| control.set_round_trip(node, delay));
                if slowed.is_some() {
                    self.fault(Fault::Injected {
                        action: format!("node {node} round trip {delay_ms} ms"),
                    });
                }
            }
            Action::ForceRebalance => {
                let forced = lock(&self.shared.control)
                    .as_ref()
                    .map(|control| control.force_rebalance(GROUP));
                if let Some(Ok(())) = forced {
                    self.fault(Fault::Injected {
                        action: format!("force a rebalance of {GROUP}"),
                    });
                }
            }
            Action::ClockJump { host, delta_ms } => {
                let host = name(*host);
                if let Some(clock) = self.clocks.get(&host) {
                    clock.jump_ms(i64::from(*delta_ms));
                    self.fault(Fault::ClockJump {
                        host,
                        delta_ms: i64::from(*delta_ms),
                    });
                }
            }
        }
    }

    fn heal_links(&mut self) {
        if self.cut.is_empty() && self.held.is_empty() {
            return;
        }
        for (a, b) in std::mem::take(&mut self.cut) {
            self.sim.repair(a.as_str(), b.as_str());
        }
        for (a, b) in std::mem::take(&mut self.held) {
            self.sim.release(a.as_str(), b.as_str());
        }
        self.fault(Fault::Heal);
    }

    /// One turmoil step, then any crash point that fired is turned into a crash.
    fn step(&mut self) -> Result<(), String> {
        self.sim.step().map_err(|error| error.to_string())?;
        self.crash_fired();
        Ok(())
    }

    /// Crashes every host whose armed crash point fired (in a step, or in a control action).
    fn crash_fired(&mut self) {
        for fired in self.shared.sites.take_fired() {
            self.fault(Fault::CrashPoint {
                host: fired.host.clone(),
                point: fired.site.clone(),
                hit: fired.hit,
            });
            self.crash(&fired.host, fired.host == BROKER);
        }
    }

    fn elapsed(&self) -> Duration {
        self.sim.elapsed()
    }
}

/// Runs `scenario` with `variant` switched on and judges the history.
pub fn run(scenario: &Scenario, variant: Variant) -> RunOutcome {
    let swarm = normalised(&scenario.swarm);
    let seed = RunSeed::new(scenario.seed);
    let trace = TraceHash::new();

    let mut meta = RunMeta::new(promises(&swarm));
    meta.seed = Some(scenario.seed);
    meta.source = Some(format!("sim variant={variant}"));

    let mut hosts = vec![BROKER.to_owned()];
    hosts.extend((0..swarm.producers).map(|index| format!("producer-{index}")));
    hosts.extend((0..swarm.consumers).map(|index| format!("consumer-{index}")));
    hosts.push(READER.to_owned());

    let sites = Arc::new(FaultSites::new());
    let shared = Arc::new(Shared {
        recorder: Mutex::new(crate::history::Recorder::new(meta)),
        mailboxes: hosts
            .iter()
            .map(|host| (host.clone(), Arc::new(Mailbox::default())))
            .collect(),
        sites: Arc::clone(&sites),
        swarm: swarm.clone(),
        variant,
        control: Mutex::new(None),
        next_value: Mutex::new(BTreeMap::new()),
        healing: Default::default(),
        flushed: Mutex::new(BTreeMap::new()),
        drained: Default::default(),
        ends: Mutex::new(BTreeMap::new()),
        unsettled: Mutex::new(BTreeMap::new()),
    });

    let broker_disk = Arc::new(SimDisk::new());
    // Cannot fail on a fresh disk: the path is plain and absolute.
    let _ = broker_disk.prepare_dir(std::path::Path::new(DATA_DIR));
    broker_disk.attach_fault_sites(BROKER, Arc::clone(&sites), Arc::new(seed.stream(DISK)));
    {
        let all: Vec<String> = hosts.clone();
        sites.set_on_fire(Box::new(move |host: &str| {
            // Nothing the halted incarnation does from here on may leave the host. Outside a
            // host (a control action the driver made) nothing runs until the driver, which
            // crashes the host right after the action.
            if turmoil::in_simulation() {
                for peer in all.iter().filter(|peer| peer.as_str() != host) {
                    turmoil::partition(host, peer.as_str());
                }
            }
        }));
    }
    if swarm.buggify {
        sites.set_buggify(BUGGIFY_PER_MILLE, Arc::new(seed.stream("buggify")));
    }

    let mut sim = sim_builder(seed)
        .simulation_duration(Duration::from_secs(3_600))
        .max_message_latency(Duration::from_millis(5))
        .build();
    let mut clocks = BTreeMap::new();
    for host in &hosts {
        let disk = if host == BROKER {
            Arc::clone(&broker_disk)
        } else {
            Arc::new(SimDisk::new())
        };
        let seams = host_seams(host, seed, disk, &trace);
        clocks.insert(host.clone(), seams.clock);
        let env = seams.env;
        let shared = Arc::clone(&shared);
        let name = host.clone();
        if host == BROKER {
            let config = workload::broker_config(&swarm, variant);
            sim.host(BROKER, move || {
                let shared = Arc::clone(&shared);
                workload::serve_broker(env.clone(), config.clone(), move |control| {
                    *lock(&shared.control) = Some(control);
                })
            });
        } else if host.starts_with("producer") {
            sim.host(host.as_str(), move || {
                workload::producer_host(env.clone(), name.clone(), Arc::clone(&shared))
            });
        } else if host.starts_with("consumer") {
            sim.host(host.as_str(), move || {
                workload::consumer_host(env.clone(), name.clone(), Arc::clone(&shared))
            });
        } else {
            sim.host(host.as_str(), move || {
                workload::reader_host(env.clone(), name.clone(), Arc::clone(&shared))
            });
        }
    }

    let mut driver = Driver {
        sim,
        shared: Arc::clone(&shared),
        swarm: swarm.clone(),
        hosts,
        clocks,
        broker_disk,
        crash_entropy: seed.stream(FAULTS),
        down: BTreeSet::new(),
        cut: BTreeSet::new(),
        held: BTreeSet::new(),
    };
    let not_converged = drive(&mut driver, scenario).err();
    let elapsed_ms = u64::try_from(driver.elapsed().as_millis()).unwrap_or(u64::MAX);
    drop(driver);

    let recorder = match Arc::try_unwrap(shared) {
        Ok(shared) => shared
            .recorder
            .into_inner()
            .unwrap_or_else(|p| p.into_inner()),
        // A host's task still holds the shared state (turmoil keeps finished hosts' runtimes
        // until the Sim drops, which it did above); take a copy of the history instead.
        Err(shared) => {
            let history = lock(&shared.recorder).history().clone();
            return finish(history, not_converged, &trace, elapsed_ms);
        }
    };
    let history = recorder.finish().unwrap_or_else(|_| unreachable_history());
    finish(history, not_converged, &trace, elapsed_ms)
}

/// `Recorder::finish` fails only writing to a sink; the runner's recorder has none.
fn unreachable_history() -> History {
    History::new(RunMeta::default())
}

fn finish(
    history: History,
    not_converged: Option<String>,
    trace: &TraceHash,
    elapsed_ms: u64,
) -> RunOutcome {
    let report = check(&history, &history.meta.config);
    trace.record("history", history.to_jsonl().as_bytes());
    RunOutcome {
        history,
        report,
        not_converged,
        trace: trace.digest(),
        elapsed_ms,
    }
}

/// The swarm with its counts brought into the ranges the runner supports, and idempotence off
/// with `acks=1` (idempotence needs `acks=all`; clients refuse the combination).
pub fn normalised(swarm: &Swarm) -> Swarm {
    Swarm {
        partitions: swarm.partitions.clamp(1, 8),
        producers: swarm.producers.clamp(1, 4),
        consumers: swarm.consumers.clamp(1, 4),
        idempotent: swarm.idempotent && !swarm.acks_one,
        ..swarm.clone()
    }
}

/// The safety phase (the schedule), then the heal phase.
fn drive(driver: &mut Driver<'_>, scenario: &Scenario) -> Result<(), String> {
    driver.fault_phase(Phase::Safety);
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
        driver.step()?;
    }
    heal(driver)
}

impl Driver<'_> {
    fn fault_phase(&self, phase: Phase) {
        lock(&self.shared.recorder).phase(self.now_ms(), NEMESIS, phase);
    }
}

/// Faults off, everything restarted, then wait for convergence: every send settled, the group
/// at lag 0 with every member joined, the reader at the end of every partition.
fn heal(driver: &mut Driver<'_>) -> Result<(), String> {
    driver.fault_phase(Phase::Heal);
    driver.shared.sites.disarm_all();
    driver
        .shared
        .sites
        .set_buggify(0, Arc::new(crate::env::SimEntropy::new(0)));
    driver.heal_links();
    // Injected errors and slow nodes end with the faults.
    if let Some(control) = lock(&driver.shared.control).as_ref() {
        control.reset();
    }
    for host in driver.down.clone() {
        driver.restart(&host);
    }
    driver.shared.healing.store(true, Ordering::SeqCst);
    let producers: Vec<String> = driver
        .hosts
        .iter()
        .filter(|host| host.starts_with("producer"))
        .cloned()
        .collect();
    for host in driver.hosts.clone() {
        if host.starts_with("consumer") {
            driver.tell(&host, Command::Join);
        }
        if host.starts_with("producer") {
            driver.tell(&host, Command::Flush);
        }
    }
    let deadline = driver.elapsed() + HEAL_BUDGET;
    // Settle the producers first: the reader's drain must come after the last write.
    while !producers
        .iter()
        .all(|host| lock(&driver.shared.flushed).get(host).copied() == Some(true))
    {
        if driver.elapsed() > deadline {
            return Err("producers did not settle their sends".to_owned());
        }
        driver.step()?;
    }
    driver.tell(READER, Command::Drain);
    loop {
        let reader_done = driver.shared.drained.load(Ordering::SeqCst);
        let lag = group_lag(driver);
        if reader_done && lag == Some(0) {
            break;
        }
        if driver.elapsed() > deadline {
            return Err(format!(
                "after {}s of healing: reader {}, group lag {}",
                HEAL_BUDGET.as_secs(),
                if reader_done {
                    "drained"
                } else {
                    "not drained"
                },
                lag.map_or("unknown".to_owned(), |lag| lag.to_string()),
            ));
        }
        driver.step()?;
    }
    driver.fault_phase(Phase::Drained);
    Ok(())
}

/// The group's total lag over every partition of the topic: the reader's end offsets (taken
/// after the last write) less the group's committed offsets as the broker reports them; a
/// partition without a committed offset counts its whole log.
fn group_lag(driver: &Driver<'_>) -> Option<i64> {
    let ends = lock(&driver.shared.ends).clone();
    let control = lock(&driver.shared.control);
    let lags = control.as_ref()?.lag(GROUP);
    let mut total = 0;
    for partition in 0..driver.swarm.partitions {
        let end = *ends.get(&partition)?;
        let committed = lags
            .iter()
            .find(|lag| lag.topic == TOPIC && lag.partition == partition)
            .and_then(|lag| lag.committed)
            .unwrap_or(0);
        total += (end - committed).max(0);
    }
    Some(total)
}
