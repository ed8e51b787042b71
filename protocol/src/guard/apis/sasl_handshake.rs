//! SaslHandshake (api key 17) chooses a SASL mechanism: SaslHandshakeRequest v0-1 and
//! SaslHandshakeResponse v0-1, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 17,
    versions: between(0, 1),
    flexible: NEVER,
    body: &Struct {
        name: "SaslHandshakeRequest",
        fields: &[field("mechanism", ALL, STRING)],
        tagged_fields: &[],
    },
};

pub(crate) const RESPONSE: Message = Message {
    api_key: 17,
    versions: between(0, 1),
    flexible: NEVER,
    body: &Struct {
        name: "SaslHandshakeResponse",
        fields: &[
            field("error_code", ALL, INT16),
            field("mechanisms", ALL, array(&STRING)),
        ],
        tagged_fields: &[],
    },
};
