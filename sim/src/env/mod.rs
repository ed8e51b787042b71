//! The simulated seams (DESIGN.md §2): what a host's [`Env`] is made of inside a turmoil
//! simulation.
//!
//! - [`SimDisk`] (`disk`): durable vs pending bytes and directory entries; a crash keeps a
//!   seed-chosen part of what was never synced.
//! - [`SimClock`] (`clock`): turmoil's virtual time, a fixed epoch, per-host wall-clock skew.
//! - [`RunSeed`], [`SimEntropy`] (`entropy`): one run seed split into independent named
//!   streams (network, disk, faults, workload, one per host).
//! - [`SimTransport`] (`transport`): turmoil TCP; [`HashingTransport`] adds every byte to a
//!   [`TraceHash`] for determinism checks.
//!
//! A host's `Env` is made once, outside turmoil's host closure, and cloned into every
//! incarnation of the host: its entropy stream then carries on across a restart instead of
//! replaying the same numbers, and its disk is the one the crash left behind.
//!
//! ```
//! use std::sync::Arc;
//! use tidepool_sim::env::{RunSeed, SimDisk, sim_builder, sim_env};
//!
//! let seed = RunSeed::new(7);
//! let disk = Arc::new(SimDisk::new());
//! let env = sim_env("broker-1", seed, disk.clone());
//! let mut sim = sim_builder(seed).build();
//! sim.host("broker-1", move || {
//!     let env = env.clone();
//!     async move {
//!         // Start the broker on `env` here.
//!         let _ = env;
//!         Ok(())
//!     }
//! });
//! # sim.client("test", async { Ok(()) });
//! sim.run().unwrap();
//! ```

mod clock;
mod disk;
mod entropy;
mod points;
mod transport;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use tidepool_io::{Entropy, Env};

pub use clock::{SIM_EPOCH_MS, SimClock};
pub use disk::{CrashMode, CrashPolicy, CrashReport, FileCrash, SimDisk, TornWrite};
pub use entropy::{DISK, FAULTS, NETWORK, RunSeed, SimEntropy, WORKLOAD, below, coin};
pub use points::{FaultSites, FiredPoint, OnFire};
pub use transport::{HashingTransport, SimTransport, TraceEvent, TraceHash, first_divergence};

/// The seams of host `host` in a run seeded by `seed`: turmoil TCP, virtual time without
/// skew, the host's own entropy stream, and `disk`. To skew the host's clock or trace its
/// bytes, replace a field: `Env { clock: Arc::new(SimClock::skewed(300)), ..sim_env(...) }`.
pub fn sim_env(host: &str, seed: RunSeed, disk: Arc<SimDisk>) -> Env {
    Env {
        transport: Arc::new(SimTransport),
        clock: Arc::new(SimClock::new()),
        entropy: Arc::new(seed.host_stream(host)),
        disk,
    }
}

/// A turmoil builder for a run seeded by `seed`: the network draws from the run's
/// [`NETWORK`] stream, and turmoil's own epoch is pinned to [`SIM_EPOCH_MS`] (its default is
/// the real time, which would leak into anything that reads it).
pub fn sim_builder(seed: RunSeed) -> turmoil::Builder {
    let mut builder = turmoil::Builder::new();
    let epoch_ms = u64::try_from(SIM_EPOCH_MS).unwrap_or(0);
    builder
        .rng_seed(seed.stream(NETWORK).next_u64())
        .epoch(UNIX_EPOCH + Duration::from_millis(epoch_ms));
    builder
}

/// Crashes turmoil host `host` deterministically: its tasks die and its sockets vanish
/// without a word to `peers` (as with a power cut; a peer learns of it from a reset when it
/// next sends, or from its own timeout).
///
/// Why not `sim.crash(host)` alone: turmoil drops the host's tokio runtime, which shuts its
/// tasks down in an order that depends on tokio's process-wide task ids (the runtime's task
/// list is sharded by id), so it changes with whatever else the process ran. Each dropped
/// socket sends a reset, and each message sent draws its latency from the network's random
/// stream: a different order, a different run. Cutting the links first makes every one of
/// those resets vanish before it draws anything.
///
/// The links between `host` and `peers` are healthy afterwards: a scenario that had cut one
/// of them on purpose cuts it again after this call. The host's disk is not touched; crash a
/// [`SimDisk`] separately (before restarting the host with `sim.bounce`).
pub fn crash_host(sim: &mut turmoil::Sim<'_>, host: &str, peers: &[&str]) {
    for peer in peers {
        sim.partition(host, *peer);
    }
    sim.crash(host);
    for peer in peers {
        sim.repair(host, *peer);
    }
}
