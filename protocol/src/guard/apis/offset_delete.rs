//! OffsetDelete (api key 47) deletes a group's committed offsets: OffsetDeleteRequest v0 and
//! OffsetDeleteResponse v0, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 47,
    versions: between(0, 0),
    flexible: NEVER,
    body: &Struct {
        name: "OffsetDeleteRequest",
        fields: &[
            field("group_id", ALL, STRING),
            field("topics", ALL, array(&OFFSET_DELETE_REQUEST_TOPIC)),
        ],
        tagged_fields: &[],
    },
};

const OFFSET_DELETE_REQUEST_TOPIC: Kind = Kind::Struct(&Struct {
    name: "OffsetDeleteRequestTopic",
    fields: &[
        field("name", ALL, STRING),
        field("partitions", ALL, array(&OFFSET_DELETE_REQUEST_PARTITION)),
    ],
    tagged_fields: &[],
});

const OFFSET_DELETE_REQUEST_PARTITION: Kind = Kind::Struct(&Struct {
    name: "OffsetDeleteRequestPartition",
    fields: &[field("partition_index", ALL, INT32)],
    tagged_fields: &[],
});

pub(crate) const RESPONSE: Message = Message {
    api_key: 47,
    versions: between(0, 0),
    flexible: NEVER,
    body: &Struct {
        name: "OffsetDeleteResponse",
        fields: &[
            field("error_code", ALL, INT16),
            field("throttle_time_ms", ALL, INT32),
            field("topics", ALL, array(&OFFSET_DELETE_RESPONSE_TOPIC)),
        ],
        tagged_fields: &[],
    },
};

const OFFSET_DELETE_RESPONSE_TOPIC: Kind = Kind::Struct(&Struct {
    name: "OffsetDeleteResponseTopic",
    fields: &[
        field("name", ALL, STRING),
        field("partitions", ALL, array(&OFFSET_DELETE_RESPONSE_PARTITION)),
    ],
    tagged_fields: &[],
});

const OFFSET_DELETE_RESPONSE_PARTITION: Kind = Kind::Struct(&Struct {
    name: "OffsetDeleteResponsePartition",
    fields: &[
        field("partition_index", ALL, INT32),
        field("error_code", ALL, INT16),
    ],
    tagged_fields: &[],
});
