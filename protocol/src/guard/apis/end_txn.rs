//! EndTxn (api key 26) commits or aborts a transaction: EndTxnRequest v0-5 and EndTxnResponse v0-5,
//! as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 26,
    versions: between(0, 5),
    flexible: since(3),
    body: &Struct {
        name: "EndTxnRequest",
        fields: &[
            field("transactional_id", ALL, STRING),
            field("producer_id", ALL, INT64),
            field("producer_epoch", ALL, INT16),
            field("committed", ALL, BOOL),
        ],
        tagged_fields: &[],
    },
};

pub(crate) const RESPONSE: Message = Message {
    api_key: 26,
    versions: between(0, 5),
    flexible: since(3),
    body: &Struct {
        name: "EndTxnResponse",
        fields: &[
            field("throttle_time_ms", ALL, INT32),
            field("error_code", ALL, INT16),
            field("producer_id", since(5), INT64),
            field("producer_epoch", since(5), INT16),
        ],
        tagged_fields: &[],
    },
};
