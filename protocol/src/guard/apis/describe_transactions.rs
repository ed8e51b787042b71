//! DescribeTransactions (api key 65) describes transactions: DescribeTransactionsRequest v0 and
//! DescribeTransactionsResponse v0, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 65,
    versions: between(0, 0),
    flexible: ALL,
    body: &Struct {
        name: "DescribeTransactionsRequest",
        fields: &[field("transactional_ids", ALL, array(&STRING))],
        tagged_fields: &[],
    },
};

pub(crate) const RESPONSE: Message = Message {
    api_key: 65,
    versions: between(0, 0),
    flexible: ALL,
    body: &Struct {
        name: "DescribeTransactionsResponse",
        fields: &[
            field("throttle_time_ms", ALL, INT32),
            field("transaction_states", ALL, array(&TRANSACTION_STATE)),
        ],
        tagged_fields: &[],
    },
};

const TRANSACTION_STATE: Kind = Kind::Struct(&Struct {
    name: "TransactionState",
    fields: &[
        field("error_code", ALL, INT16),
        field("transactional_id", ALL, STRING),
        field("transaction_state", ALL, STRING),
        field("transaction_timeout_ms", ALL, INT32),
        field("transaction_start_time_ms", ALL, INT64),
        field("producer_id", ALL, INT64),
        field("producer_epoch", ALL, INT16),
        field("topics", ALL, array(&TOPIC_DATA)),
    ],
    tagged_fields: &[],
});

const TOPIC_DATA: Kind = Kind::Struct(&Struct {
    name: "TopicData",
    fields: &[
        field("topic", ALL, STRING),
        field("partitions", ALL, array(&INT32)),
    ],
    tagged_fields: &[],
});
