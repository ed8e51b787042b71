//! Deterministic simulation of Tidepool (issue 8, DESIGN.md §7): the simulated seams and the
//! delivery-semantics checker.
//!
//! - `history`: what a run records, one JSON line per operation or fault.
//! - `checker`: judges a history (pure; also reads histories recorded over real TCP).
//! - `env`: the simulated seams: `SimDisk`, virtual clock, split entropy, turmoil transport.

pub mod checker;
pub mod env;
pub mod history;
