//! TxnOffsetCommit (api key 28) commits offsets inside a transaction: TxnOffsetCommitRequest v0-5
//! and TxnOffsetCommitResponse v0-5, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 28,
    versions: between(0, 5),
    flexible: since(3),
    body: &Struct {
        name: "TxnOffsetCommitRequest",
        fields: &[
            field("transactional_id", ALL, STRING),
            field("group_id", ALL, STRING),
            field("producer_id", ALL, INT64),
            field("producer_epoch", ALL, INT16),
            field("generation_id", since(3), INT32),
            field("member_id", since(3), STRING),
            field("group_instance_id", since(3), NULLABLE_STRING),
            field("topics", ALL, array(&TXN_OFFSET_COMMIT_REQUEST_TOPIC)),
        ],
        tagged_fields: &[],
    },
};

const TXN_OFFSET_COMMIT_REQUEST_TOPIC: Kind = Kind::Struct(&Struct {
    name: "TxnOffsetCommitRequestTopic",
    fields: &[
        field("name", ALL, STRING),
        field(
            "partitions",
            ALL,
            array(&TXN_OFFSET_COMMIT_REQUEST_PARTITION),
        ),
    ],
    tagged_fields: &[],
});

const TXN_OFFSET_COMMIT_REQUEST_PARTITION: Kind = Kind::Struct(&Struct {
    name: "TxnOffsetCommitRequestPartition",
    fields: &[
        field("partition_index", ALL, INT32),
        field("committed_offset", ALL, INT64),
        field("committed_leader_epoch", since(2), INT32),
        field("committed_metadata", ALL, NULLABLE_STRING),
    ],
    tagged_fields: &[],
});

pub(crate) const RESPONSE: Message = Message {
    api_key: 28,
    versions: between(0, 5),
    flexible: since(3),
    body: &Struct {
        name: "TxnOffsetCommitResponse",
        fields: &[
            field("throttle_time_ms", ALL, INT32),
            field("topics", ALL, array(&TXN_OFFSET_COMMIT_RESPONSE_TOPIC)),
        ],
        tagged_fields: &[],
    },
};

const TXN_OFFSET_COMMIT_RESPONSE_TOPIC: Kind = Kind::Struct(&Struct {
    name: "TxnOffsetCommitResponseTopic",
    fields: &[
        field("name", ALL, STRING),
        field(
            "partitions",
            ALL,
            array(&TXN_OFFSET_COMMIT_RESPONSE_PARTITION),
        ),
    ],
    tagged_fields: &[],
});

const TXN_OFFSET_COMMIT_RESPONSE_PARTITION: Kind = Kind::Struct(&Struct {
    name: "TxnOffsetCommitResponsePartition",
    fields: &[
        field("partition_index", ALL, INT32),
        field("error_code", ALL, INT16),
    ],
    tagged_fields: &[],
});
