//! Produce (api key 0) writes record batches to partitions: ProduceRequest v3-13 and
//! ProduceResponse v3-13, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 0,
    versions: between(3, 13),
    flexible: since(9),
    body: &Struct {
        name: "ProduceRequest",
        fields: &[
            field("transactional_id", ALL, NULLABLE_STRING),
            field("acks", ALL, INT16),
            field("timeout_ms", ALL, INT32),
            field("topic_data", ALL, array(&TOPIC_PRODUCE_DATA)),
        ],
        tagged_fields: &[],
    },
};

const TOPIC_PRODUCE_DATA: Kind = Kind::Struct(&Struct {
    name: "TopicProduceData",
    fields: &[
        field("name", until(12), STRING),
        field("topic_id", since(13), UUID),
        field("partition_data", ALL, array(&PARTITION_PRODUCE_DATA)),
    ],
    tagged_fields: &[],
});

const PARTITION_PRODUCE_DATA: Kind = Kind::Struct(&Struct {
    name: "PartitionProduceData",
    fields: &[field("index", ALL, INT32), field("records", ALL, RECORDS)],
    tagged_fields: &[],
});

pub(crate) const RESPONSE: Message = Message {
    api_key: 0,
    versions: between(3, 13),
    flexible: since(9),
    body: &Struct {
        name: "ProduceResponse",
        fields: &[
            field("responses", ALL, array(&TOPIC_PRODUCE_RESPONSE)),
            field("throttle_time_ms", ALL, INT32),
        ],
        tagged_fields: &[tagged(
            0,
            "node_endpoints",
            since(10),
            array(&NODE_ENDPOINT),
        )],
    },
};

const TOPIC_PRODUCE_RESPONSE: Kind = Kind::Struct(&Struct {
    name: "TopicProduceResponse",
    fields: &[
        field("name", until(12), STRING),
        field("topic_id", since(13), UUID),
        field(
            "partition_responses",
            ALL,
            array(&PARTITION_PRODUCE_RESPONSE),
        ),
    ],
    tagged_fields: &[],
});

const NODE_ENDPOINT: Kind = Kind::Struct(&Struct {
    name: "NodeEndpoint",
    fields: &[
        field("node_id", since(10), INT32),
        field("host", since(10), STRING),
        field("port", since(10), INT32),
        field("rack", since(10), NULLABLE_STRING),
    ],
    tagged_fields: &[],
});

const PARTITION_PRODUCE_RESPONSE: Kind = Kind::Struct(&Struct {
    name: "PartitionProduceResponse",
    fields: &[
        field("index", ALL, INT32),
        field("error_code", ALL, INT16),
        field("base_offset", ALL, INT64),
        field("log_append_time_ms", ALL, INT64),
        field("log_start_offset", since(5), INT64),
        field(
            "record_errors",
            since(8),
            array(&BATCH_INDEX_AND_ERROR_MESSAGE),
        ),
        field("error_message", since(8), NULLABLE_STRING),
    ],
    tagged_fields: &[tagged(0, "current_leader", since(10), LEADER_ID_AND_EPOCH)],
});

const BATCH_INDEX_AND_ERROR_MESSAGE: Kind = Kind::Struct(&Struct {
    name: "BatchIndexAndErrorMessage",
    fields: &[
        field("batch_index", since(8), INT32),
        field("batch_index_error_message", since(8), NULLABLE_STRING),
    ],
    tagged_fields: &[],
});

const LEADER_ID_AND_EPOCH: Kind = Kind::Struct(&Struct {
    name: "LeaderIdAndEpoch",
    fields: &[
        field("leader_id", since(10), INT32),
        field("leader_epoch", since(10), INT32),
    ],
    tagged_fields: &[],
});
