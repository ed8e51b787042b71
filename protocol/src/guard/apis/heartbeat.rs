//! Heartbeat (api key 12) keeps a classic group membership alive: HeartbeatRequest v0-4 and
//! HeartbeatResponse v0-4, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 12,
    versions: between(0, 4),
    flexible: since(4),
    body: &Struct {
        name: "HeartbeatRequest",
        fields: &[
            field("group_id", ALL, STRING),
            field("generation_id", ALL, INT32),
            field("member_id", ALL, STRING),
            field("group_instance_id", since(3), NULLABLE_STRING),
        ],
        tagged_fields: &[],
    },
};

pub(crate) const RESPONSE: Message = Message {
    api_key: 12,
    versions: between(0, 4),
    flexible: since(4),
    body: &Struct {
        name: "HeartbeatResponse",
        fields: &[
            field("throttle_time_ms", since(1), INT32),
            field("error_code", ALL, INT16),
        ],
        tagged_fields: &[],
    },
};
