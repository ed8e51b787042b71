//! SaslAuthenticate (api key 36) carries SASL authentication bytes: SaslAuthenticateRequest v0-2
//! and SaslAuthenticateResponse v0-2, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 36,
    versions: between(0, 2),
    flexible: since(2),
    body: &Struct {
        name: "SaslAuthenticateRequest",
        fields: &[field("auth_bytes", ALL, BYTES)],
        tagged_fields: &[],
    },
};

pub(crate) const RESPONSE: Message = Message {
    api_key: 36,
    versions: between(0, 2),
    flexible: since(2),
    body: &Struct {
        name: "SaslAuthenticateResponse",
        fields: &[
            field("error_code", ALL, INT16),
            field("error_message", ALL, NULLABLE_STRING),
            field("auth_bytes", ALL, BYTES),
            field("session_lifetime_ms", since(1), INT64),
        ],
        tagged_fields: &[],
    },
};
