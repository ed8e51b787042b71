//! OffsetCommit (api key 8) stores a consumer group's offsets: OffsetCommitRequest v2-9 and
//! OffsetCommitResponse v2-10, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 8,
    versions: between(2, 9),
    flexible: since(8),
    body: &Struct {
        name: "OffsetCommitRequest",
        fields: &[
            field("group_id", ALL, STRING),
            field("generation_id_or_member_epoch", ALL, INT32),
            field("member_id", ALL, STRING),
            field("group_instance_id", since(7), NULLABLE_STRING),
            field("retention_time_ms", until(4), INT64),
            field("topics", ALL, array(&OFFSET_COMMIT_REQUEST_TOPIC)),
        ],
        tagged_fields: &[],
    },
};

const OFFSET_COMMIT_REQUEST_TOPIC: Kind = Kind::Struct(&Struct {
    name: "OffsetCommitRequestTopic",
    fields: &[
        field("name", ALL, STRING),
        field("partitions", ALL, array(&OFFSET_COMMIT_REQUEST_PARTITION)),
    ],
    tagged_fields: &[],
});

const OFFSET_COMMIT_REQUEST_PARTITION: Kind = Kind::Struct(&Struct {
    name: "OffsetCommitRequestPartition",
    fields: &[
        field("partition_index", ALL, INT32),
        field("committed_offset", ALL, INT64),
        field("committed_leader_epoch", since(6), INT32),
        field("committed_metadata", ALL, NULLABLE_STRING),
    ],
    tagged_fields: &[],
});

pub(crate) const RESPONSE: Message = Message {
    api_key: 8,
    versions: between(2, 10),
    flexible: since(8),
    body: &Struct {
        name: "OffsetCommitResponse",
        fields: &[
            field("throttle_time_ms", since(3), INT32),
            field("topics", ALL, array(&OFFSET_COMMIT_RESPONSE_TOPIC)),
        ],
        tagged_fields: &[],
    },
};

const OFFSET_COMMIT_RESPONSE_TOPIC: Kind = Kind::Struct(&Struct {
    name: "OffsetCommitResponseTopic",
    fields: &[
        field("name", until(9), STRING),
        field("topic_id", since(10), UUID),
        field("partitions", ALL, array(&OFFSET_COMMIT_RESPONSE_PARTITION)),
    ],
    tagged_fields: &[],
});

const OFFSET_COMMIT_RESPONSE_PARTITION: Kind = Kind::Struct(&Struct {
    name: "OffsetCommitResponsePartition",
    fields: &[
        field("partition_index", ALL, INT32),
        field("error_code", ALL, INT16),
    ],
    tagged_fields: &[],
});
