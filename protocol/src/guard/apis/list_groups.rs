//! ListGroups (api key 16) lists groups: ListGroupsRequest v0-5 and ListGroupsResponse v0-5, as
//! kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 16,
    versions: between(0, 5),
    flexible: since(3),
    body: &Struct {
        name: "ListGroupsRequest",
        fields: &[
            field("states_filter", since(4), array(&STRING)),
            field("types_filter", since(5), array(&STRING)),
        ],
        tagged_fields: &[],
    },
};

pub(crate) const RESPONSE: Message = Message {
    api_key: 16,
    versions: between(0, 5),
    flexible: since(3),
    body: &Struct {
        name: "ListGroupsResponse",
        fields: &[
            field("throttle_time_ms", since(1), INT32),
            field("error_code", ALL, INT16),
            field("groups", ALL, array(&LISTED_GROUP)),
        ],
        tagged_fields: &[],
    },
};

const LISTED_GROUP: Kind = Kind::Struct(&Struct {
    name: "ListedGroup",
    fields: &[
        field("group_id", ALL, STRING),
        field("protocol_type", ALL, STRING),
        field("group_state", since(4), STRING),
        field("group_type", since(5), STRING),
    ],
    tagged_fields: &[],
});
