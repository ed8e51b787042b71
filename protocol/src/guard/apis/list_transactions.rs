//! ListTransactions (api key 66) lists transactions: ListTransactionsRequest v0-2 and
//! ListTransactionsResponse v0-2, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 66,
    versions: between(0, 2),
    flexible: ALL,
    body: &Struct {
        name: "ListTransactionsRequest",
        fields: &[
            field("state_filters", ALL, array(&STRING)),
            field("producer_id_filters", ALL, array(&INT64)),
            field("duration_filter", since(1), INT64),
            field("transactional_id_pattern", since(2), NULLABLE_STRING),
        ],
        tagged_fields: &[],
    },
};

pub(crate) const RESPONSE: Message = Message {
    api_key: 66,
    versions: between(0, 2),
    flexible: ALL,
    body: &Struct {
        name: "ListTransactionsResponse",
        fields: &[
            field("throttle_time_ms", ALL, INT32),
            field("error_code", ALL, INT16),
            field("unknown_state_filters", ALL, array(&STRING)),
            field("transaction_states", ALL, array(&TRANSACTION_STATE)),
        ],
        tagged_fields: &[],
    },
};

const TRANSACTION_STATE: Kind = Kind::Struct(&Struct {
    name: "TransactionState",
    fields: &[
        field("transactional_id", ALL, STRING),
        field("producer_id", ALL, INT64),
        field("transaction_state", ALL, STRING),
    ],
    tagged_fields: &[],
});
