//! InitProducerId (api key 22) assigns an idempotent or transactional producer id:
//! InitProducerIdRequest v0-5 and InitProducerIdResponse v0-6, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 22,
    versions: between(0, 5),
    flexible: since(2),
    body: &Struct {
        name: "InitProducerIdRequest",
        fields: &[
            field("transactional_id", ALL, NULLABLE_STRING),
            field("transaction_timeout_ms", ALL, INT32),
            field("producer_id", since(3), INT64),
            field("producer_epoch", since(3), INT16),
        ],
        tagged_fields: &[],
    },
};

pub(crate) const RESPONSE: Message = Message {
    api_key: 22,
    versions: between(0, 6),
    flexible: since(2),
    body: &Struct {
        name: "InitProducerIdResponse",
        fields: &[
            field("throttle_time_ms", ALL, INT32),
            field("error_code", ALL, INT16),
            field("producer_id", ALL, INT64),
            field("producer_epoch", ALL, INT16),
            field("ongoing_txn_producer_id", since(6), INT64),
            field("ongoing_txn_producer_epoch", since(6), INT16),
        ],
        tagged_fields: &[],
    },
};
