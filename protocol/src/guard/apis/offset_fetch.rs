//! OffsetFetch (api key 9) reads a consumer group's offsets: OffsetFetchRequest v1-9 and
//! OffsetFetchResponse v1-10, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 9,
    versions: between(1, 9),
    flexible: since(6),
    body: &Struct {
        name: "OffsetFetchRequest",
        fields: &[
            field("group_id", until(7), STRING),
            field(
                "topics",
                until(7),
                nullable_array(&OFFSET_FETCH_REQUEST_TOPIC),
            ),
            field("groups", since(8), array(&OFFSET_FETCH_REQUEST_GROUP)),
            field("require_stable", since(7), BOOL),
        ],
        tagged_fields: &[],
    },
};

const OFFSET_FETCH_REQUEST_TOPIC: Kind = Kind::Struct(&Struct {
    name: "OffsetFetchRequestTopic",
    fields: &[
        field("name", until(7), STRING),
        field("partition_indexes", until(7), array(&INT32)),
    ],
    tagged_fields: &[],
});

const OFFSET_FETCH_REQUEST_GROUP: Kind = Kind::Struct(&Struct {
    name: "OffsetFetchRequestGroup",
    fields: &[
        field("group_id", since(8), STRING),
        field("member_id", since(9), NULLABLE_STRING),
        field("member_epoch", since(9), INT32),
        field(
            "topics",
            since(8),
            nullable_array(&OFFSET_FETCH_REQUEST_TOPICS),
        ),
    ],
    tagged_fields: &[],
});

const OFFSET_FETCH_REQUEST_TOPICS: Kind = Kind::Struct(&Struct {
    name: "OffsetFetchRequestTopics",
    fields: &[
        field("name", since(8), STRING),
        field("partition_indexes", since(8), array(&INT32)),
    ],
    tagged_fields: &[],
});

pub(crate) const RESPONSE: Message = Message {
    api_key: 9,
    versions: between(1, 10),
    flexible: since(6),
    body: &Struct {
        name: "OffsetFetchResponse",
        fields: &[
            field("throttle_time_ms", since(3), INT32),
            field("topics", until(7), array(&OFFSET_FETCH_RESPONSE_TOPIC)),
            field("error_code", between(2, 7), INT16),
            field("groups", since(8), array(&OFFSET_FETCH_RESPONSE_GROUP)),
        ],
        tagged_fields: &[],
    },
};

const OFFSET_FETCH_RESPONSE_TOPIC: Kind = Kind::Struct(&Struct {
    name: "OffsetFetchResponseTopic",
    fields: &[
        field("name", until(7), STRING),
        field(
            "partitions",
            until(7),
            array(&OFFSET_FETCH_RESPONSE_PARTITION),
        ),
    ],
    tagged_fields: &[],
});

const OFFSET_FETCH_RESPONSE_GROUP: Kind = Kind::Struct(&Struct {
    name: "OffsetFetchResponseGroup",
    fields: &[
        field("group_id", since(8), STRING),
        field("topics", since(8), array(&OFFSET_FETCH_RESPONSE_TOPICS)),
        field("error_code", since(8), INT16),
    ],
    tagged_fields: &[],
});

const OFFSET_FETCH_RESPONSE_PARTITION: Kind = Kind::Struct(&Struct {
    name: "OffsetFetchResponsePartition",
    fields: &[
        field("partition_index", until(7), INT32),
        field("committed_offset", until(7), INT64),
        field("committed_leader_epoch", between(5, 7), INT32),
        field("metadata", until(7), NULLABLE_STRING),
        field("error_code", until(7), INT16),
    ],
    tagged_fields: &[],
});

const OFFSET_FETCH_RESPONSE_TOPICS: Kind = Kind::Struct(&Struct {
    name: "OffsetFetchResponseTopics",
    fields: &[
        field("name", between(8, 9), STRING),
        field("topic_id", since(10), UUID),
        field(
            "partitions",
            since(8),
            array(&OFFSET_FETCH_RESPONSE_PARTITIONS),
        ),
    ],
    tagged_fields: &[],
});

const OFFSET_FETCH_RESPONSE_PARTITIONS: Kind = Kind::Struct(&Struct {
    name: "OffsetFetchResponsePartitions",
    fields: &[
        field("partition_index", since(8), INT32),
        field("committed_offset", since(8), INT64),
        field("committed_leader_epoch", since(8), INT32),
        field("metadata", since(8), NULLABLE_STRING),
        field("error_code", since(8), INT16),
    ],
    tagged_fields: &[],
});
