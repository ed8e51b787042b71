//! DeleteGroups (api key 42) deletes groups: DeleteGroupsRequest v0-2 and DeleteGroupsResponse
//! v0-2, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 42,
    versions: between(0, 2),
    flexible: since(2),
    body: &Struct {
        name: "DeleteGroupsRequest",
        fields: &[field("groups_names", ALL, array(&STRING))],
        tagged_fields: &[],
    },
};

pub(crate) const RESPONSE: Message = Message {
    api_key: 42,
    versions: between(0, 2),
    flexible: since(2),
    body: &Struct {
        name: "DeleteGroupsResponse",
        fields: &[
            field("throttle_time_ms", ALL, INT32),
            field("results", ALL, array(&DELETABLE_GROUP_RESULT)),
        ],
        tagged_fields: &[],
    },
};

const DELETABLE_GROUP_RESULT: Kind = Kind::Struct(&Struct {
    name: "DeletableGroupResult",
    fields: &[
        field("group_id", ALL, STRING),
        field("error_code", ALL, INT16),
    ],
    tagged_fields: &[],
});
