//! LeaveGroup (api key 13) leaves a classic consumer group: LeaveGroupRequest v0-5 and
//! LeaveGroupResponse v0-5, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 13,
    versions: between(0, 5),
    flexible: since(4),
    body: &Struct {
        name: "LeaveGroupRequest",
        fields: &[
            field("group_id", ALL, STRING),
            field("member_id", until(2), STRING),
            field("members", since(3), array(&MEMBER_IDENTITY)),
        ],
        tagged_fields: &[],
    },
};

const MEMBER_IDENTITY: Kind = Kind::Struct(&Struct {
    name: "MemberIdentity",
    fields: &[
        field("member_id", since(3), STRING),
        field("group_instance_id", since(3), NULLABLE_STRING),
        field("reason", since(5), NULLABLE_STRING),
    ],
    tagged_fields: &[],
});

pub(crate) const RESPONSE: Message = Message {
    api_key: 13,
    versions: between(0, 5),
    flexible: since(4),
    body: &Struct {
        name: "LeaveGroupResponse",
        fields: &[
            field("throttle_time_ms", since(1), INT32),
            field("error_code", ALL, INT16),
            field("members", since(3), array(&MEMBER_RESPONSE)),
        ],
        tagged_fields: &[],
    },
};

const MEMBER_RESPONSE: Kind = Kind::Struct(&Struct {
    name: "MemberResponse",
    fields: &[
        field("member_id", since(3), STRING),
        field("group_instance_id", since(3), NULLABLE_STRING),
        field("error_code", since(3), INT16),
    ],
    tagged_fields: &[],
});
