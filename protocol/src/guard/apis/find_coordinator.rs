//! FindCoordinator (api key 10) finds the group or transaction coordinator: FindCoordinatorRequest
//! v0-6 and FindCoordinatorResponse v0-6, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 10,
    versions: between(0, 6),
    flexible: since(3),
    body: &Struct {
        name: "FindCoordinatorRequest",
        fields: &[
            field("key", until(3), STRING),
            field("key_type", since(1), INT8),
            field("coordinator_keys", since(4), array(&STRING)),
        ],
        tagged_fields: &[],
    },
};

pub(crate) const RESPONSE: Message = Message {
    api_key: 10,
    versions: between(0, 6),
    flexible: since(3),
    body: &Struct {
        name: "FindCoordinatorResponse",
        fields: &[
            field("throttle_time_ms", since(1), INT32),
            field("error_code", until(3), INT16),
            field("error_message", between(1, 3), NULLABLE_STRING),
            field("node_id", until(3), INT32),
            field("host", until(3), STRING),
            field("port", until(3), INT32),
            field("coordinators", since(4), array(&COORDINATOR)),
        ],
        tagged_fields: &[],
    },
};

const COORDINATOR: Kind = Kind::Struct(&Struct {
    name: "Coordinator",
    fields: &[
        field("key", since(4), STRING),
        field("node_id", since(4), INT32),
        field("host", since(4), STRING),
        field("port", since(4), INT32),
        field("error_code", since(4), INT16),
        field("error_message", since(4), NULLABLE_STRING),
    ],
    tagged_fields: &[],
});
