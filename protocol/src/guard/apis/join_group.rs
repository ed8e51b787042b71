//! JoinGroup (api key 11) joins a classic consumer group: JoinGroupRequest v0-9 and
//! JoinGroupResponse v0-9, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 11,
    versions: between(0, 9),
    flexible: since(6),
    body: &Struct {
        name: "JoinGroupRequest",
        fields: &[
            field("group_id", ALL, STRING),
            field("session_timeout_ms", ALL, INT32),
            field("rebalance_timeout_ms", since(1), INT32),
            field("member_id", ALL, STRING),
            field("group_instance_id", since(5), NULLABLE_STRING),
            field("protocol_type", ALL, STRING),
            field("protocols", ALL, array(&JOIN_GROUP_REQUEST_PROTOCOL)),
            field("reason", since(8), NULLABLE_STRING),
        ],
        tagged_fields: &[],
    },
};

const JOIN_GROUP_REQUEST_PROTOCOL: Kind = Kind::Struct(&Struct {
    name: "JoinGroupRequestProtocol",
    fields: &[field("name", ALL, STRING), field("metadata", ALL, BYTES)],
    tagged_fields: &[],
});

pub(crate) const RESPONSE: Message = Message {
    api_key: 11,
    versions: between(0, 9),
    flexible: since(6),
    body: &Struct {
        name: "JoinGroupResponse",
        fields: &[
            field("throttle_time_ms", since(2), INT32),
            field("error_code", ALL, INT16),
            field("generation_id", ALL, INT32),
            field("protocol_type", since(7), NULLABLE_STRING),
            field("protocol_name", ALL, NULLABLE_STRING),
            field("leader", ALL, STRING),
            field("skip_assignment", since(9), BOOL),
            field("member_id", ALL, STRING),
            field("members", ALL, array(&JOIN_GROUP_RESPONSE_MEMBER)),
        ],
        tagged_fields: &[],
    },
};

const JOIN_GROUP_RESPONSE_MEMBER: Kind = Kind::Struct(&Struct {
    name: "JoinGroupResponseMember",
    fields: &[
        field("member_id", ALL, STRING),
        field("group_instance_id", since(5), NULLABLE_STRING),
        field("metadata", ALL, BYTES),
    ],
    tagged_fields: &[],
});
