//! Fault sites: crash points and buggify sites as the simulator sees them (DESIGN.md §7).
//!
//! Code under test marks a **crash point** with `crash_point!(disk, "name")` between two
//! writes that must both land, and a **buggify site** with `buggify!(disk, "name")` where it
//! may take a legal but unusual path. Both reach the host's disk; a [`SimDisk`] with
//! [`FaultSites`] attached (`SimDisk::attach_fault_sites`) passes them here.
//!
//! - A crash point counts a hit per (host, site). A scenario [`arm`](FaultSites::arm)s the
//!   n-th hit of a site on a host; when it comes, the point *fires*: the disk crashes itself
//!   at once and halts (every later operation of that incarnation fails), the on-fire hook
//!   runs (the runner cuts the host's links there, so nothing the halted incarnation still
//!   does leaves the host), and a [`FiredPoint`] waits for the driver, which polls
//!   [`take_fired`](FaultSites::take_fired) after every simulation step and crashes the host.
//! - A buggify site answers yes with a probability set by the scenario, drawn from its own
//!   entropy stream; off by default.
//!
//! Everything is kept in ordered maps and consulted from the simulation's one thread, so a
//! run replays the same hits, fires and answers.
//!
//! ```
//! use tidepool_sim::env::FaultSites;
//!
//! let sites = FaultSites::new();
//! sites.arm("broker", "log.append.written", 2);
//! assert!(!sites.hit("broker", "log.append.written"));
//! assert!(sites.hit("broker", "log.append.written"));
//! assert!(!sites.hit("broker", "log.append.written"), "fires once");
//! assert_eq!(sites.take_fired()[0].hit, 2);
//! ```
//!
//! [`SimDisk`]: super::SimDisk

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tidepool_io::Entropy;

use super::entropy::below;

/// A crash point that fired: `host` reached the `hit`-th hit of `site`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FiredPoint {
    pub host: String,
    pub site: String,
    /// 1-based, counted from when the [`FaultSites`] was made, across the host's restarts.
    pub hit: u64,
}

/// Called with the host's name when one of its crash points fires.
pub type OnFire = Box<dyn Fn(&str) + Send + Sync>;

/// An [`OnFire`] hook as kept, so it can be called without holding a lock.
type SharedHook = Arc<dyn Fn(&str) + Send + Sync>;

/// The crash points and buggify sites of a run: hit counts, armed points, fired points and
/// the buggify setting. Share it as `Arc<FaultSites>` between the driver and every host's
/// disk.
#[derive(Default)]
pub struct FaultSites {
    state: Mutex<State>,
    /// Apart from `state`, so the hook runs without the lock held.
    on_fire: Mutex<Option<SharedHook>>,
}

#[derive(Default)]
struct State {
    /// (host, site) → hits so far, crash points and buggify sites alike.
    hits: BTreeMap<(String, String), u64>,
    /// (host, site) → the hits at which to fire.
    armed: BTreeMap<(String, String), BTreeSet<u64>>,
    /// Fired and not yet taken by the driver, in firing order.
    fired: Vec<FiredPoint>,
    buggify: Option<Buggify>,
}

struct Buggify {
    per_mille: u32,
    entropy: Arc<dyn Entropy>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl fmt::Debug for FaultSites {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("FaultSites")
            .field("hits", &state.hits)
            .field("armed", &state.armed)
            .field("fired", &state.fired)
            .field(
                "buggify_per_mille",
                &state.buggify.as_ref().map(|buggify| buggify.per_mille),
            )
            .finish_non_exhaustive()
    }
}

impl State {
    /// Counts a hit of `site` on `host`; returns its number (1-based).
    fn count(&mut self, host: &str, site: &str) -> u64 {
        let count = self
            .hits
            .entry((host.to_owned(), site.to_owned()))
            .or_insert(0);
        *count += 1;
        *count
    }
}

impl FaultSites {
    /// No hits, nothing armed, buggify off.
    pub fn new() -> FaultSites {
        FaultSites::default()
    }

    /// Crashes `host` at the `hit`-th hit (1-based, counted from when this was made) of crash
    /// point `site` on that host. Several points may be armed, on one site or many; a hit
    /// number already passed never fires.
    pub fn arm(&self, host: &str, site: &str, hit: u64) {
        lock(&self.state)
            .armed
            .entry((host.to_owned(), site.to_owned()))
            .or_default()
            .insert(hit);
    }

    /// Counts a hit of crash point `site` on `host`. Returns true when it fires an armed point
    /// (which is disarmed): the [`FiredPoint`] is then recorded for [`FaultSites::take_fired`]
    /// and the on-fire hook has run.
    pub fn hit(&self, host: &str, site: &str) -> bool {
        {
            let mut state = lock(&self.state);
            let hit = state.count(host, site);
            let key = (host.to_owned(), site.to_owned());
            let Some(armed) = state.armed.get_mut(&key) else {
                return false;
            };
            if !armed.remove(&hit) {
                return false;
            }
            if armed.is_empty() {
                state.armed.remove(&key);
            }
            state.fired.push(FiredPoint {
                host: host.to_owned(),
                site: site.to_owned(),
                hit,
            });
        }
        let hook = lock(&self.on_fire).clone();
        if let Some(hook) = hook {
            hook(host);
        }
        true
    }

    /// Sets what runs, with the host's name, when a crash point fires: the runner cuts the
    /// host's links there (`turmoil::partition`), so nothing the halted incarnation does
    /// afterwards leaves the host. It runs inside the host's code, in the simulation.
    pub fn set_on_fire(&self, hook: OnFire) {
        *lock(&self.on_fire) = Some(Arc::from(hook));
    }

    /// The points fired since the last call, in firing order. The driver polls it after every
    /// simulation step and crashes each host named.
    pub fn take_fired(&self) -> Vec<FiredPoint> {
        std::mem::take(&mut lock(&self.state).fired)
    }

    /// Disarms every point not yet fired (the heal phase: faults off). Hits keep counting.
    pub fn disarm_all(&self) {
        lock(&self.state).armed.clear();
    }

    /// Points armed and not yet fired, by (host, site).
    pub fn armed(&self) -> BTreeMap<(String, String), BTreeSet<u64>> {
        lock(&self.state).armed.clone()
    }

    /// Hits so far per (host, site), crash points and buggify sites alike: a test checks
    /// every site of the code under test is reached by a workload.
    pub fn hits(&self) -> BTreeMap<(String, String), u64> {
        lock(&self.state).hits.clone()
    }

    /// Turns buggify on: each buggify site answers yes with probability
    /// `probability_per_mille`/1000 (capped at 1000), drawn from `entropy`. 0 turns it off.
    pub fn set_buggify(&self, probability_per_mille: u32, entropy: Arc<dyn Entropy>) {
        lock(&self.state).buggify = (probability_per_mille > 0).then(|| Buggify {
            per_mille: probability_per_mille.min(1000),
            entropy,
        });
    }

    /// Whether buggify site `site` on `host` misbehaves now. Counted in [`FaultSites::hits`]
    /// whether or not buggify is on; false when it is off, without drawing a number.
    pub fn buggify(&self, host: &str, site: &str) -> bool {
        let mut state = lock(&self.state);
        state.count(host, site);
        match &state.buggify {
            None => false,
            Some(buggify) => below(buggify.entropy.as_ref(), 1000) < u64::from(buggify.per_mille),
        }
    }
}
