//! AddPartitionsToTxn (api key 24) adds partitions to a transaction: AddPartitionsToTxnRequest v0-5
//! and AddPartitionsToTxnResponse v0-5, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 24,
    versions: between(0, 5),
    flexible: since(3),
    body: &Struct {
        name: "AddPartitionsToTxnRequest",
        fields: &[
            field(
                "transactions",
                since(4),
                array(&ADD_PARTITIONS_TO_TXN_TRANSACTION),
            ),
            field("v3_and_below_transactional_id", until(3), STRING),
            field("v3_and_below_producer_id", until(3), INT64),
            field("v3_and_below_producer_epoch", until(3), INT16),
            field(
                "v3_and_below_topics",
                until(3),
                array(&ADD_PARTITIONS_TO_TXN_TOPIC),
            ),
        ],
        tagged_fields: &[],
    },
};

const ADD_PARTITIONS_TO_TXN_TRANSACTION: Kind = Kind::Struct(&Struct {
    name: "AddPartitionsToTxnTransaction",
    fields: &[
        field("transactional_id", since(4), STRING),
        field("producer_id", since(4), INT64),
        field("producer_epoch", since(4), INT16),
        field("verify_only", since(4), BOOL),
        field("topics", since(4), array(&ADD_PARTITIONS_TO_TXN_TOPIC)),
    ],
    tagged_fields: &[],
});

const ADD_PARTITIONS_TO_TXN_TOPIC: Kind = Kind::Struct(&Struct {
    name: "AddPartitionsToTxnTopic",
    fields: &[
        field("name", ALL, STRING),
        field("partitions", ALL, array(&INT32)),
    ],
    tagged_fields: &[],
});

pub(crate) const RESPONSE: Message = Message {
    api_key: 24,
    versions: between(0, 5),
    flexible: since(3),
    body: &Struct {
        name: "AddPartitionsToTxnResponse",
        fields: &[
            field("throttle_time_ms", ALL, INT32),
            field("error_code", since(4), INT16),
            field(
                "results_by_transaction",
                since(4),
                array(&ADD_PARTITIONS_TO_TXN_RESULT),
            ),
            field(
                "results_by_topic_v3_and_below",
                until(3),
                array(&ADD_PARTITIONS_TO_TXN_TOPIC_RESULT),
            ),
        ],
        tagged_fields: &[],
    },
};

const ADD_PARTITIONS_TO_TXN_RESULT: Kind = Kind::Struct(&Struct {
    name: "AddPartitionsToTxnResult",
    fields: &[
        field("transactional_id", since(4), STRING),
        field(
            "topic_results",
            since(4),
            array(&ADD_PARTITIONS_TO_TXN_TOPIC_RESULT),
        ),
    ],
    tagged_fields: &[],
});

const ADD_PARTITIONS_TO_TXN_TOPIC_RESULT: Kind = Kind::Struct(&Struct {
    name: "AddPartitionsToTxnTopicResult",
    fields: &[
        field("name", ALL, STRING),
        field(
            "results_by_partition",
            ALL,
            array(&ADD_PARTITIONS_TO_TXN_PARTITION_RESULT),
        ),
    ],
    tagged_fields: &[],
});

const ADD_PARTITIONS_TO_TXN_PARTITION_RESULT: Kind = Kind::Struct(&Struct {
    name: "AddPartitionsToTxnPartitionResult",
    fields: &[
        field("partition_index", ALL, INT32),
        field("partition_error_code", ALL, INT16),
    ],
    tagged_fields: &[],
});
