//! Consumer groups (the classic protocol): a pure state machine per group (`state`), the
//! coordinator that owns the groups and their committed offsets (`coordinator`), the records
//! it keeps in `__consumer_offsets` (`records`) and what it reads from members' protocol
//! metadata (`assignment`).

pub mod assignment;
pub mod coordinator;
pub mod records;
pub mod state;

pub use coordinator::{CommittedOffset, GroupCoordinator, OFFSETS_TOPIC};
pub use state::{Group, GroupError, GroupLimits, GroupState};
