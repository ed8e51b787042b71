//! Deterministic simulation of Tidepool (issue 8, DESIGN.md §7): the simulated seams and the
//! delivery-semantics checker.
//!
//! - `history`: what a run records, one JSON line per operation or fault.
//! - `checker`: judges a history (pure; also reads histories recorded over real TCP).
//! - `env`: the simulated seams: `SimDisk`, virtual clock, split entropy, turmoil transport,
//!   fault sites (crash points and buggify).
//! - `scenario`: what a run does: seed, swarm configuration, schedule of actions (proptest).
//! - `runner`: runs a scenario in turmoil (safety phase, then heal) and judges its history.
//! - `campaign`: many seeds at once; failing runs written to disk and replayed.
//! - `pipeline`: the ingestion pipeline as simulator hosts, and its per-event checker.
//! - `gateway`: the REST gateway's nodes, services and HTTP clients as simulator hosts, and its
//!   per-request checker.
//! - `report`: a timeline picture of a history and its findings.

pub mod campaign;
pub mod checker;
pub mod env;
pub mod gateway;
pub mod history;
pub mod pipeline;
pub mod report;
pub mod runner;
pub mod scenario;
