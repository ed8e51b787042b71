//! SyncGroup (api key 14) distributes a classic group's assignment: SyncGroupRequest v0-5 and
//! SyncGroupResponse v0-5, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 14,
    versions: between(0, 5),
    flexible: since(4),
    body: &Struct {
        name: "SyncGroupRequest",
        fields: &[
            field("group_id", ALL, STRING),
            field("generation_id", ALL, INT32),
            field("member_id", ALL, STRING),
            field("group_instance_id", since(3), NULLABLE_STRING),
            field("protocol_type", since(5), NULLABLE_STRING),
            field("protocol_name", since(5), NULLABLE_STRING),
            field("assignments", ALL, array(&SYNC_GROUP_REQUEST_ASSIGNMENT)),
        ],
        tagged_fields: &[],
    },
};

const SYNC_GROUP_REQUEST_ASSIGNMENT: Kind = Kind::Struct(&Struct {
    name: "SyncGroupRequestAssignment",
    fields: &[
        field("member_id", ALL, STRING),
        field("assignment", ALL, BYTES),
    ],
    tagged_fields: &[],
});

pub(crate) const RESPONSE: Message = Message {
    api_key: 14,
    versions: between(0, 5),
    flexible: since(4),
    body: &Struct {
        name: "SyncGroupResponse",
        fields: &[
            field("throttle_time_ms", since(1), INT32),
            field("error_code", ALL, INT16),
            field("protocol_type", since(5), NULLABLE_STRING),
            field("protocol_name", since(5), NULLABLE_STRING),
            field("assignment", ALL, BYTES),
        ],
        tagged_fields: &[],
    },
};
