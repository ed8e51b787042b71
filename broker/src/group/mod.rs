//! Consumer groups (the classic protocol): a pure state machine per group (`state`), the
//! coordinator that owns the groups and their committed offsets, and the records it keeps in
//! `__consumer_offsets`.

pub mod state;

pub use state::{Group, GroupError, GroupLimits, GroupState};
