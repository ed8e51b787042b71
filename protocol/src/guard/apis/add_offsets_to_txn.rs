//! AddOffsetsToTxn (api key 25) adds a group's offsets to a transaction: AddOffsetsToTxnRequest
//! v0-4 and AddOffsetsToTxnResponse v0-4, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 25,
    versions: between(0, 4),
    flexible: since(3),
    body: &Struct {
        name: "AddOffsetsToTxnRequest",
        fields: &[
            field("transactional_id", ALL, STRING),
            field("producer_id", ALL, INT64),
            field("producer_epoch", ALL, INT16),
            field("group_id", ALL, STRING),
        ],
        tagged_fields: &[],
    },
};

pub(crate) const RESPONSE: Message = Message {
    api_key: 25,
    versions: between(0, 4),
    flexible: since(3),
    body: &Struct {
        name: "AddOffsetsToTxnResponse",
        fields: &[
            field("throttle_time_ms", ALL, INT32),
            field("error_code", ALL, INT16),
        ],
        tagged_fields: &[],
    },
};
