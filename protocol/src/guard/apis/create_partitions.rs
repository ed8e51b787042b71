//! CreatePartitions (api key 37) adds partitions to topics: CreatePartitionsRequest v0-3 and
//! CreatePartitionsResponse v0-3, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 37,
    versions: between(0, 3),
    flexible: since(2),
    body: &Struct {
        name: "CreatePartitionsRequest",
        fields: &[
            field("topics", ALL, array(&CREATE_PARTITIONS_TOPIC)),
            field("timeout_ms", ALL, INT32),
            field("validate_only", ALL, BOOL),
        ],
        tagged_fields: &[],
    },
};

const CREATE_PARTITIONS_TOPIC: Kind = Kind::Struct(&Struct {
    name: "CreatePartitionsTopic",
    fields: &[
        field("name", ALL, STRING),
        field("count", ALL, INT32),
        field(
            "assignments",
            ALL,
            nullable_array(&CREATE_PARTITIONS_ASSIGNMENT),
        ),
    ],
    tagged_fields: &[],
});

const CREATE_PARTITIONS_ASSIGNMENT: Kind = Kind::Struct(&Struct {
    name: "CreatePartitionsAssignment",
    fields: &[field("broker_ids", ALL, array(&INT32))],
    tagged_fields: &[],
});

pub(crate) const RESPONSE: Message = Message {
    api_key: 37,
    versions: between(0, 3),
    flexible: since(2),
    body: &Struct {
        name: "CreatePartitionsResponse",
        fields: &[
            field("throttle_time_ms", ALL, INT32),
            field("results", ALL, array(&CREATE_PARTITIONS_TOPIC_RESULT)),
        ],
        tagged_fields: &[],
    },
};

const CREATE_PARTITIONS_TOPIC_RESULT: Kind = Kind::Struct(&Struct {
    name: "CreatePartitionsTopicResult",
    fields: &[
        field("name", ALL, STRING),
        field("error_code", ALL, INT16),
        field("error_message", ALL, NULLABLE_STRING),
    ],
    tagged_fields: &[],
});
