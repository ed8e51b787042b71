//! DeleteRecords (api key 21) moves a partition's log start offset: DeleteRecordsRequest v0-2 and
//! DeleteRecordsResponse v0-2, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 21,
    versions: between(0, 2),
    flexible: since(2),
    body: &Struct {
        name: "DeleteRecordsRequest",
        fields: &[
            field("topics", ALL, array(&DELETE_RECORDS_TOPIC)),
            field("timeout_ms", ALL, INT32),
        ],
        tagged_fields: &[],
    },
};

const DELETE_RECORDS_TOPIC: Kind = Kind::Struct(&Struct {
    name: "DeleteRecordsTopic",
    fields: &[
        field("name", ALL, STRING),
        field("partitions", ALL, array(&DELETE_RECORDS_PARTITION)),
    ],
    tagged_fields: &[],
});

const DELETE_RECORDS_PARTITION: Kind = Kind::Struct(&Struct {
    name: "DeleteRecordsPartition",
    fields: &[
        field("partition_index", ALL, INT32),
        field("offset", ALL, INT64),
    ],
    tagged_fields: &[],
});

pub(crate) const RESPONSE: Message = Message {
    api_key: 21,
    versions: between(0, 2),
    flexible: since(2),
    body: &Struct {
        name: "DeleteRecordsResponse",
        fields: &[
            field("throttle_time_ms", ALL, INT32),
            field("topics", ALL, array(&DELETE_RECORDS_TOPIC_RESULT)),
        ],
        tagged_fields: &[],
    },
};

const DELETE_RECORDS_TOPIC_RESULT: Kind = Kind::Struct(&Struct {
    name: "DeleteRecordsTopicResult",
    fields: &[
        field("name", ALL, STRING),
        field("partitions", ALL, array(&DELETE_RECORDS_PARTITION_RESULT)),
    ],
    tagged_fields: &[],
});

const DELETE_RECORDS_PARTITION_RESULT: Kind = Kind::Struct(&Struct {
    name: "DeleteRecordsPartitionResult",
    fields: &[
        field("partition_index", ALL, INT32),
        field("low_watermark", ALL, INT64),
        field("error_code", ALL, INT16),
    ],
    tagged_fields: &[],
});
