//! DeleteTopics (api key 20) deletes topics: DeleteTopicsRequest v1-6 and DeleteTopicsResponse
//! v1-6, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 20,
    versions: between(1, 6),
    flexible: since(4),
    body: &Struct {
        name: "DeleteTopicsRequest",
        fields: &[
            field("topics", since(6), array(&DELETE_TOPIC_STATE)),
            field("topic_names", until(5), array(&STRING)),
            field("timeout_ms", ALL, INT32),
        ],
        tagged_fields: &[],
    },
};

const DELETE_TOPIC_STATE: Kind = Kind::Struct(&Struct {
    name: "DeleteTopicState",
    fields: &[
        field("name", since(6), NULLABLE_STRING),
        field("topic_id", since(6), UUID),
    ],
    tagged_fields: &[],
});

pub(crate) const RESPONSE: Message = Message {
    api_key: 20,
    versions: between(1, 6),
    flexible: since(4),
    body: &Struct {
        name: "DeleteTopicsResponse",
        fields: &[
            field("throttle_time_ms", ALL, INT32),
            field("responses", ALL, array(&DELETABLE_TOPIC_RESULT)),
        ],
        tagged_fields: &[],
    },
};

const DELETABLE_TOPIC_RESULT: Kind = Kind::Struct(&Struct {
    name: "DeletableTopicResult",
    fields: &[
        field("name", ALL, NULLABLE_STRING),
        field("topic_id", since(6), UUID),
        field("error_code", ALL, INT16),
        field("error_message", since(5), NULLABLE_STRING),
    ],
    tagged_fields: &[],
});
