//! OffsetForLeaderEpoch (api key 23) finds the end offset of a leader epoch:
//! OffsetForLeaderEpochRequest v2-4 and OffsetForLeaderEpochResponse v2-4, as kafka-protocol 0.18
//! decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 23,
    versions: between(2, 4),
    flexible: since(4),
    body: &Struct {
        name: "OffsetForLeaderEpochRequest",
        fields: &[
            field("replica_id", since(3), INT32),
            field("topics", ALL, array(&OFFSET_FOR_LEADER_TOPIC)),
        ],
        tagged_fields: &[],
    },
};

const OFFSET_FOR_LEADER_TOPIC: Kind = Kind::Struct(&Struct {
    name: "OffsetForLeaderTopic",
    fields: &[
        field("topic", ALL, STRING),
        field("partitions", ALL, array(&OFFSET_FOR_LEADER_PARTITION)),
    ],
    tagged_fields: &[],
});

const OFFSET_FOR_LEADER_PARTITION: Kind = Kind::Struct(&Struct {
    name: "OffsetForLeaderPartition",
    fields: &[
        field("partition", ALL, INT32),
        field("current_leader_epoch", ALL, INT32),
        field("leader_epoch", ALL, INT32),
    ],
    tagged_fields: &[],
});

pub(crate) const RESPONSE: Message = Message {
    api_key: 23,
    versions: between(2, 4),
    flexible: since(4),
    body: &Struct {
        name: "OffsetForLeaderEpochResponse",
        fields: &[
            field("throttle_time_ms", ALL, INT32),
            field("topics", ALL, array(&OFFSET_FOR_LEADER_TOPIC_RESULT)),
        ],
        tagged_fields: &[],
    },
};

const OFFSET_FOR_LEADER_TOPIC_RESULT: Kind = Kind::Struct(&Struct {
    name: "OffsetForLeaderTopicResult",
    fields: &[
        field("topic", ALL, STRING),
        field("partitions", ALL, array(&EPOCH_END_OFFSET)),
    ],
    tagged_fields: &[],
});

const EPOCH_END_OFFSET: Kind = Kind::Struct(&Struct {
    name: "EpochEndOffset",
    fields: &[
        field("error_code", ALL, INT16),
        field("partition", ALL, INT32),
        field("leader_epoch", ALL, INT32),
        field("end_offset", ALL, INT64),
    ],
    tagged_fields: &[],
});
