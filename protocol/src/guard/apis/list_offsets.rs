//! ListOffsets (api key 2) finds offsets by timestamp: ListOffsetsRequest v1-10 and
//! ListOffsetsResponse v1-10, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 2,
    versions: between(1, 10),
    flexible: since(6),
    body: &Struct {
        name: "ListOffsetsRequest",
        fields: &[
            field("replica_id", ALL, INT32),
            field("isolation_level", since(2), INT8),
            field("topics", ALL, array(&LIST_OFFSETS_TOPIC)),
            field("timeout_ms", since(10), INT32),
        ],
        tagged_fields: &[],
    },
};

const LIST_OFFSETS_TOPIC: Kind = Kind::Struct(&Struct {
    name: "ListOffsetsTopic",
    fields: &[
        field("name", ALL, STRING),
        field("partitions", ALL, array(&LIST_OFFSETS_PARTITION)),
    ],
    tagged_fields: &[],
});

const LIST_OFFSETS_PARTITION: Kind = Kind::Struct(&Struct {
    name: "ListOffsetsPartition",
    fields: &[
        field("partition_index", ALL, INT32),
        field("current_leader_epoch", since(4), INT32),
        field("timestamp", ALL, INT64),
    ],
    tagged_fields: &[],
});

pub(crate) const RESPONSE: Message = Message {
    api_key: 2,
    versions: between(1, 10),
    flexible: since(6),
    body: &Struct {
        name: "ListOffsetsResponse",
        fields: &[
            field("throttle_time_ms", since(2), INT32),
            field("topics", ALL, array(&LIST_OFFSETS_TOPIC_RESPONSE)),
        ],
        tagged_fields: &[],
    },
};

const LIST_OFFSETS_TOPIC_RESPONSE: Kind = Kind::Struct(&Struct {
    name: "ListOffsetsTopicResponse",
    fields: &[
        field("name", ALL, STRING),
        field("partitions", ALL, array(&LIST_OFFSETS_PARTITION_RESPONSE)),
    ],
    tagged_fields: &[],
});

const LIST_OFFSETS_PARTITION_RESPONSE: Kind = Kind::Struct(&Struct {
    name: "ListOffsetsPartitionResponse",
    fields: &[
        field("partition_index", ALL, INT32),
        field("error_code", ALL, INT16),
        field("timestamp", ALL, INT64),
        field("offset", ALL, INT64),
        field("leader_epoch", since(4), INT32),
    ],
    tagged_fields: &[],
});
