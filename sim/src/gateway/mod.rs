//! The REST gateway in the simulator (issue 10 item 8, DESIGN.md §6 and §7).
//!
//! Hosts: `broker` (three nodes, its own SimDisk, syncing before it acknowledges), gateway
//! nodes `gw1..gw3` (each runs a node while it is a member of the deployment; the swarm says
//! how many are members at the start, and the schedule makes nodes join and leave), `services`
//! (the orders service's responders on one store on the host's SimDisk) and `client` (HTTP
//! requests, each to a member node of its own pick). Crash points: `gateway.parked` on a node
//! (parked, not produced), `responder.handled` and `responder.replied` on the services host,
//! and the broker's own.
//!
//! A run starts once the first members own every response partition between them and the
//! responders run (the schedule's times count from then). Then the schedule (faults on) over
//! a steady trickle of creates, then the heal: links
//! repaired, every host restarted, every request settled, the nodes' parked maps given one
//! request timeout to drain, and the store read. [`check`] judges the result per request. A
//! run that does not get there within [`crate::runner::HEAL_BUDGET`] is anomalous for that
//! reason alone.
//!
//! The driver records each fault as a time window (a crash until its restart, a cut link
//! until the heal); the checker allows a 504 only near one. Joins and leaves are not faults:
//! forwarding makes the partition moves they cause invisible to clients.

pub mod campaign;
pub mod check;
mod hosts;
pub mod scenario;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidepool_broker::Control;

pub use check::{
    Disturbance, GatewayReport, Observations, RequestKind, RequestOutcome, SentRequest, check,
};
pub use scenario::{
    GATEWAYS_MAX, GatewayAction, GatewayHost, GatewayScenario, GatewayShape, GatewayStep,
    GatewaySwarm, gateway_name, gateway_scenario_strategy, gateway_scenario_tree,
};

use crate::env::{DISK, FAULTS, FaultSites, RunSeed, SimDisk, TraceHash, crash_host};
use crate::runner::workload::{DATA_DIR, broker_config, lock, serve_broker};
use crate::runner::{HEAL_BUDGET, host_seams};
use crate::scenario::{Swarm, Variant};
use hosts::{Ask, GatewayShared, REQUEST_TIMEOUT};

/// How long the first members and the responders may take to start.
const WARM_UP_BUDGET: Duration = Duration::from_secs(60);
/// How long after the last scheduled step the safety phase (and its steady traffic) lasts at
/// least: long enough for a node that joins last to start and the group to rebalance.
const SETTLE: Duration = Duration::from_millis(1_500);
/// The steady traffic under the schedule's own requests: one create this often, so a
/// partition move always finds requests waiting for their replies.
const STEADY: Duration = Duration::from_millis(40);
/// The services host is a hop away from the broker: a request waits for its reply for a
/// while, as behind a real service, so a partition move finds replies in flight.
const SERVICE_LINK_LATENCY: Duration = Duration::from_millis(30);
/// How long after a fault ends the system may still be recovering from it (clients
/// reconnecting, groups rebalancing). In 300 plain campaign seeds every 504 came from a request
/// sent before its fault ended; one request timeout of margin on top.
const GRACE: Duration = REQUEST_TIMEOUT;

/// What one gateway run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewayOutcome {
    pub observations: Observations,
    pub report: GatewayReport,
    pub not_converged: Option<String>,
    /// Faults and membership changes as they happened: (virtual ms, what).
    pub faults: Vec<(u64, String)>,
    /// When the schedule's time 0 was (the first members ready), in virtual ms.
    pub started_ms: u64,
    pub trace: u64,
    pub elapsed_ms: u64,
}

impl GatewayOutcome {
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

fn all_hosts() -> Vec<&'static str> {
    let mut hosts = vec![GatewayHost::Broker.name()];
    hosts.extend((0..GATEWAYS_MAX).map(gateway_name));
    hosts.push(GatewayHost::Services.name());
    hosts.push(GatewayHost::Client.name());
    hosts
}

struct Driver<'a> {
    sim: turmoil::Sim<'a>,
    shared: Arc<GatewayShared>,
    control: Arc<std::sync::Mutex<Option<Control>>>,
    disks: BTreeMap<&'static str, Arc<SimDisk>>,
    crash_entropy: crate::env::SimEntropy,
    down: BTreeSet<&'static str>,
    cut: BTreeSet<(&'static str, &'static str)>,
    faults: Vec<(u64, String)>,
    /// Disturbances still going on, by what ends them (a host's name, or "links").
    open: BTreeMap<&'static str, Vec<(u64, String)>>,
    disturbances: Vec<Disturbance>,
}

const LINKS: &str = "links";

impl Driver<'_> {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.sim.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn fault(&mut self, what: String) {
        let at = self.now_ms();
        self.faults.push((at, what));
    }

    /// A fault that lasts until `until` (a host restarting, or the links healing).
    fn disturb(&mut self, until: &'static str, what: String) {
        let at = self.now_ms();
        self.faults.push((at, what.clone()));
        self.open.entry(until).or_default().push((at, what));
    }

    fn settle(&mut self, until: &'static str) {
        let at = self.now_ms();
        for (from_ms, what) in self.open.remove(until).unwrap_or_default() {
            self.disturbances.push(Disturbance {
                from_ms,
                to_ms: at,
                what,
            });
        }
    }

    fn crash(&mut self, host: &'static str, disk_already_crashed: bool) {
        if self.down.contains(host) {
            return;
        }
        let peers: Vec<&str> = all_hosts()
            .into_iter()
            .filter(|peer| *peer != host)
            .collect();
        crash_host(&mut self.sim, host, &peers);
        if let Some(disk) = self.disks.get(host)
            && !disk_already_crashed
        {
            disk.crash(&self.crash_entropy);
        }
        if host == GatewayHost::Broker.name() {
            *lock(&self.control) = None;
        }
        if host == GatewayHost::Services.name() {
            *lock(&self.shared.store) = None;
            self.shared.responders.store(0, Ordering::SeqCst);
        }
        lock(&self.shared.running).remove(host);
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
        self.settle(host);
    }

    fn heal_links(&mut self) {
        if self.cut.is_empty() {
            return;
        }
        for (a, b) in std::mem::take(&mut self.cut) {
            self.sim.repair(a, b);
        }
        self.fault("heal".to_owned());
        self.settle(LINKS);
    }

    fn apply(&mut self, action: &GatewayAction) {
        match action {
            GatewayAction::Create { count } => self.shared.ask(Ask::Create(*count)),
            GatewayAction::Read { count } => self.shared.ask(Ask::Read(*count)),
            GatewayAction::Join { node } => {
                if !self.shared.is_member(*node) {
                    self.fault(format!("join {}", gateway_name(*node)));
                    self.shared.set_member(*node, true);
                    self.restart(gateway_name(*node));
                }
            }
            GatewayAction::Leave { node } => {
                let members = self.shared.member_names();
                if self.shared.is_member(*node) && members.len() > 1 {
                    self.fault(format!("leave {}", gateway_name(*node)));
                    self.shared.set_member(*node, false);
                }
            }
            GatewayAction::Crash { host } => {
                let host = host.name();
                if !self.down.contains(host) {
                    self.disturb(host, format!("crash {host}"));
                    self.crash(host, false);
                }
            }
            GatewayAction::CrashAt { host, point, hit } => {
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
            GatewayAction::Restart { host } => self.restart(host.name()),
            GatewayAction::Partition { a, b } => {
                let (a, b) = (a.name(), b.name());
                if a != b && !self.cut.contains(&(a, b)) {
                    self.sim.partition(a, b);
                    self.disturb(LINKS, format!("partition {a} | {b}"));
                    self.cut.insert((a, b));
                }
            }
            GatewayAction::Heal => self.heal_links(),
        }
    }

    fn step(&mut self) -> Result<(), String> {
        self.sim.step().map_err(|error| error.to_string())?;
        self.crash_fired();
        Ok(())
    }

    fn crash_fired(&mut self) {
        for fired in self.shared.sites.take_fired() {
            let Some(host) = all_hosts().into_iter().find(|name| *name == fired.host) else {
                continue;
            };
            self.disturb(
                host,
                format!("crash {host} at {} (hit {})", fired.site, fired.hit),
            );
            // The disk that fired crashed itself.
            self.crash(host, true);
        }
    }

    fn elapsed(&self) -> Duration {
        self.sim.elapsed()
    }

    /// Why the first members or the responders are not ready yet, if they are not.
    fn not_ready(&self) -> Option<String> {
        let wanted = u64::from(self.shared.swarm.responders.max(1));
        let responders = self.shared.responders.load(Ordering::SeqCst);
        if responders < wanted {
            return Some(format!("{responders} of {wanted} responders running"));
        }
        let running = lock(&self.shared.running);
        // Every partition owned by exactly one member: the group has settled (with fewer
        // partitions than members, some member owns none, and answers 503).
        let members = self.shared.member_names();
        let mut owned = Vec::new();
        let mut partitions = 0;
        for name in &members {
            let Some(gateway) = running.get(name) else {
                return Some(format!("{name} is not running"));
            };
            owned.push(gateway.owned_partitions().len());
            partitions = usize::try_from(gateway.response_partitions()).unwrap_or(0);
        }
        let total: usize = owned.iter().sum();
        let idle = owned.iter().filter(|owned| **owned == 0).count();
        (total != partitions || idle > members.len().saturating_sub(partitions))
            .then(|| format!("response partitions owned per member: {owned:?} of {partitions}"))
    }

    /// Parked requests per running node.
    fn parked(&self) -> BTreeMap<String, usize> {
        lock(&self.shared.running)
            .iter()
            .map(|(name, gateway)| ((*name).to_owned(), gateway.parked()))
            .collect()
    }
}

/// Runs a gateway scenario with `variant` (the gateway's, or none) and judges it.
pub fn run_gateway(scenario: &GatewayScenario, variant: Variant) -> GatewayOutcome {
    let seed = RunSeed::new(scenario.seed);
    let trace = TraceHash::new();
    let swarm = GatewaySwarm {
        gateways: scenario.swarm.gateways.clamp(1, GATEWAYS_MAX),
        response_partitions: scenario.swarm.response_partitions.clamp(1, 8),
        request_partitions: scenario.swarm.request_partitions.clamp(1, 4),
        responders: scenario.swarm.responders.clamp(1, 2),
    };
    let sites = Arc::new(FaultSites::new());
    let shared = Arc::new(GatewayShared::new(Arc::clone(&sites), swarm, variant));
    let control: Arc<std::sync::Mutex<Option<Control>>> = Arc::default();

    let mut disks = BTreeMap::new();
    for host in all_hosts() {
        let disk = Arc::new(SimDisk::new());
        let stream = if host == GatewayHost::Broker.name() {
            let _ = disk.prepare_dir(std::path::Path::new(DATA_DIR));
            seed.stream(DISK)
        } else {
            seed.stream(&format!("{host}-disk"))
        };
        disk.attach_fault_sites(host, Arc::clone(&sites), Arc::new(stream));
        disks.insert(host, disk);
    }
    {
        let all = all_hosts();
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
        // Requests pile up on a node that stops accepting (halted at a crash point) until
        // the driver crashes it; turmoil aborts the run when a socket's buffer overflows.
        .tcp_capacity(4_096)
        .build();
    for host in all_hosts() {
        let disk = Arc::clone(&disks[host]);
        let env = host_seams(host, seed, disk, &trace).env;
        let shared = Arc::clone(&shared);
        if host == GatewayHost::Broker.name() {
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
        } else if host == GatewayHost::Services.name() {
            sim.host(host, move || {
                hosts::services_host(env.clone(), Arc::clone(&shared))
            });
        } else if host == GatewayHost::Client.name() {
            sim.host(host, move || {
                hosts::client_host(env.clone(), Arc::clone(&shared))
            });
        } else {
            sim.host(host, move || {
                hosts::gateway_host(env.clone(), Arc::clone(&shared), host)
            });
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
        open: BTreeMap::new(),
        disturbances: Vec::new(),
    };
    let (observations, not_converged, started_ms) = drive(&mut driver, scenario);
    let elapsed_ms = driver.now_ms();
    let faults = std::mem::take(&mut driver.faults);
    // The nodes hold clients; they go before the simulation that runs their tasks.
    lock(&shared.running).clear();
    drop(driver);
    // An unconverged run has no complete picture to judge: its verdict is the failure to
    // converge.
    let report = if not_converged.is_none() {
        check(&observations)
    } else {
        GatewayReport::default()
    };
    if let Ok(json) = serde_json::to_vec(&observations) {
        trace.record("observations", &json);
    }
    GatewayOutcome {
        observations,
        report,
        not_converged,
        faults,
        started_ms,
        trace: trace.digest(),
        elapsed_ms,
    }
}

/// What the run observed, why it did not converge if it did not, and when the schedule began.
type Drive = (Observations, Option<String>, u64);

fn drive(driver: &mut Driver<'_>, scenario: &GatewayScenario) -> Drive {
    while let Some(reason) = driver.not_ready() {
        if driver.elapsed() > WARM_UP_BUDGET {
            return (
                observe(driver),
                Some(format!("did not start: {reason}")),
                driver.now_ms(),
            );
        }
        if let Err(error) = driver.step() {
            return (observe(driver), Some(error), driver.now_ms());
        }
    }
    // The link exists now (the responders have talked to the broker).
    driver.sim.set_link_latency(
        GatewayHost::Services.name(),
        GatewayHost::Broker.name(),
        SERVICE_LINK_LATENCY,
    );
    let base = driver.elapsed();
    let started_ms = driver.now_ms();
    let end = base
        + scenario
            .schedule
            .last()
            .map_or(Duration::ZERO, |step| Duration::from_millis(step.at_ms))
        + SETTLE;
    let mut next = 0;
    let mut next_steady = base;
    while next < scenario.schedule.len() || driver.elapsed() < end {
        if driver.elapsed() >= next_steady {
            driver.shared.ask(Ask::Create(1));
            next_steady += STEADY;
        }
        while next < scenario.schedule.len()
            && base + Duration::from_millis(scenario.schedule[next].at_ms) <= driver.elapsed()
        {
            driver.apply(&scenario.schedule[next].action);
            driver.crash_fired();
            next += 1;
        }
        if let Err(error) = driver.step() {
            return (observe(driver), Some(error), started_ms);
        }
    }
    let (observations, not_converged) = heal(driver);
    (observations, not_converged, started_ms)
}

fn observe(driver: &mut Driver<'_>) -> Observations {
    // Faults still going on end with the run.
    for until in driver.open.keys().copied().collect::<Vec<_>>() {
        driver.settle(until);
    }
    let store = lock(&driver.shared.store).clone();
    let orders = store
        .as_ref()
        .and_then(|store| hosts::stored_orders(store).ok())
        .unwrap_or_default();
    Observations {
        requests: lock(&driver.shared.sent).clone(),
        orders,
        parked: driver.parked(),
        disturbances: driver.disturbances.clone(),
        grace_ms: u64::try_from(GRACE.as_millis()).unwrap_or(u64::MAX),
    }
}

/// Faults off and every host up; then wait for the requests to settle and the nodes' parked
/// maps to drain, and read the store.
fn heal(driver: &mut Driver<'_>) -> (Observations, Option<String>) {
    driver.fault("heal phase".to_owned());
    driver.shared.sites.disarm_all();
    driver.heal_links();
    for host in driver.down.clone() {
        driver.restart(host);
    }
    let deadline = driver.elapsed() + HEAL_BUDGET;
    let mut waiting_for = String::new();
    loop {
        let reason = if driver.shared.in_flight.load(Ordering::SeqCst) > 0
            || !lock(&driver.shared.asks).is_empty()
        {
            Some("the clients' requests did not settle".to_owned())
        } else if lock(&driver.shared.store).is_none() {
            Some("the services host's store did not open".to_owned())
        } else {
            driver
                .shared
                .member_names()
                .into_iter()
                .find(|name| !lock(&driver.shared.running).contains_key(name))
                .map(|name| format!("member {name} did not start again"))
        };
        let Some(reason) = reason else {
            break;
        };
        waiting_for = reason;
        if driver.elapsed() > deadline {
            return (observe(driver), Some(waiting_for));
        }
        if let Err(error) = driver.step() {
            return (observe(driver), Some(error));
        }
    }
    tracing::debug!(at_ms = driver.now_ms(), %waiting_for, "requests settled");
    // A request whose client went away still waits out its timeout on its node.
    let drained_by = driver.elapsed() + REQUEST_TIMEOUT + Duration::from_secs(1);
    while driver.elapsed() < drained_by && driver.parked().values().any(|parked| *parked > 0) {
        if let Err(error) = driver.step() {
            return (observe(driver), Some(error));
        }
    }
    (observe(driver), None)
}
