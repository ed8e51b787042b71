//! DescribeGroups (api key 15) describes classic groups: DescribeGroupsRequest v0-6 and
//! DescribeGroupsResponse v0-6, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 15,
    versions: between(0, 6),
    flexible: since(5),
    body: &Struct {
        name: "DescribeGroupsRequest",
        fields: &[
            field("groups", ALL, array(&STRING)),
            field("include_authorized_operations", since(3), BOOL),
        ],
        tagged_fields: &[],
    },
};

pub(crate) const RESPONSE: Message = Message {
    api_key: 15,
    versions: between(0, 6),
    flexible: since(5),
    body: &Struct {
        name: "DescribeGroupsResponse",
        fields: &[
            field("throttle_time_ms", since(1), INT32),
            field("groups", ALL, array(&DESCRIBED_GROUP)),
        ],
        tagged_fields: &[],
    },
};

const DESCRIBED_GROUP: Kind = Kind::Struct(&Struct {
    name: "DescribedGroup",
    fields: &[
        field("error_code", ALL, INT16),
        field("error_message", since(6), NULLABLE_STRING),
        field("group_id", ALL, STRING),
        field("group_state", ALL, STRING),
        field("protocol_type", ALL, STRING),
        field("protocol_data", ALL, STRING),
        field("members", ALL, array(&DESCRIBED_GROUP_MEMBER)),
        field("authorized_operations", since(3), INT32),
    ],
    tagged_fields: &[],
});

const DESCRIBED_GROUP_MEMBER: Kind = Kind::Struct(&Struct {
    name: "DescribedGroupMember",
    fields: &[
        field("member_id", ALL, STRING),
        field("group_instance_id", since(4), NULLABLE_STRING),
        field("client_id", ALL, STRING),
        field("client_host", ALL, STRING),
        field("member_metadata", ALL, BYTES),
        field("member_assignment", ALL, BYTES),
    ],
    tagged_fields: &[],
});
