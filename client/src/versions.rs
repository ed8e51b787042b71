//! The version range of each API this client speaks. The highest version both sides support is
//! used. Ranges stop below versions that name topics by id only (Produce 13, Fetch 13+), since
//! the client addresses topics by name, and below versions whose new semantics the client does
//! not implement (the KIP-848 consumer protocol).

pub type Range = (i16, i16);

pub const PRODUCE: Range = (3, 12);
pub const FETCH: Range = (4, 12);
pub const LIST_OFFSETS: Range = (1, 8);
pub const METADATA: Range = (1, 12);
pub const OFFSET_COMMIT: Range = (2, 8);
pub const OFFSET_FETCH: Range = (1, 7);
pub const FIND_COORDINATOR: Range = (0, 4);
pub const JOIN_GROUP: Range = (0, 9);
pub const HEARTBEAT: Range = (0, 4);
pub const LEAVE_GROUP: Range = (0, 5);
pub const SYNC_GROUP: Range = (0, 5);
pub const DESCRIBE_GROUPS: Range = (0, 5);
pub const LIST_GROUPS: Range = (0, 4);
pub const DELETE_GROUPS: Range = (0, 2);
pub const CREATE_TOPICS: Range = (2, 7);
pub const DELETE_TOPICS: Range = (1, 5);
pub const DELETE_RECORDS: Range = (0, 2);
pub const INIT_PRODUCER_ID: Range = (0, 4);
pub const DESCRIBE_CONFIGS: Range = (1, 4);
pub const ALTER_CONFIGS: Range = (0, 2);
pub const INCREMENTAL_ALTER_CONFIGS: Range = (0, 1);
pub const CREATE_PARTITIONS: Range = (0, 3);
pub const OFFSET_DELETE: Range = (0, 0);
