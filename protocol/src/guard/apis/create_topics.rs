//! CreateTopics (api key 19) creates topics: CreateTopicsRequest v2-7 and CreateTopicsResponse
//! v2-7, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 19,
    versions: between(2, 7),
    flexible: since(5),
    body: &Struct {
        name: "CreateTopicsRequest",
        fields: &[
            field("topics", ALL, array(&CREATABLE_TOPIC)),
            field("timeout_ms", ALL, INT32),
            field("validate_only", ALL, BOOL),
        ],
        tagged_fields: &[],
    },
};

const CREATABLE_TOPIC: Kind = Kind::Struct(&Struct {
    name: "CreatableTopic",
    fields: &[
        field("name", ALL, STRING),
        field("num_partitions", ALL, INT32),
        field("replication_factor", ALL, INT16),
        field("assignments", ALL, array(&CREATABLE_REPLICA_ASSIGNMENT)),
        field("configs", ALL, array(&CREATABLE_TOPIC_CONFIG)),
    ],
    tagged_fields: &[],
});

const CREATABLE_REPLICA_ASSIGNMENT: Kind = Kind::Struct(&Struct {
    name: "CreatableReplicaAssignment",
    fields: &[
        field("partition_index", ALL, INT32),
        field("broker_ids", ALL, array(&INT32)),
    ],
    tagged_fields: &[],
});

const CREATABLE_TOPIC_CONFIG: Kind = Kind::Struct(&Struct {
    name: "CreatableTopicConfig",
    fields: &[
        field("name", ALL, STRING),
        field("value", ALL, NULLABLE_STRING),
    ],
    tagged_fields: &[],
});

pub(crate) const RESPONSE: Message = Message {
    api_key: 19,
    versions: between(2, 7),
    flexible: since(5),
    body: &Struct {
        name: "CreateTopicsResponse",
        fields: &[
            field("throttle_time_ms", ALL, INT32),
            field("topics", ALL, array(&CREATABLE_TOPIC_RESULT)),
        ],
        tagged_fields: &[],
    },
};

const CREATABLE_TOPIC_RESULT: Kind = Kind::Struct(&Struct {
    name: "CreatableTopicResult",
    fields: &[
        field("name", ALL, STRING),
        field("topic_id", since(7), UUID),
        field("error_code", ALL, INT16),
        field("error_message", ALL, NULLABLE_STRING),
        field("num_partitions", since(5), INT32),
        field("replication_factor", since(5), INT16),
        field(
            "configs",
            since(5),
            nullable_array(&CREATABLE_TOPIC_CONFIGS),
        ),
    ],
    tagged_fields: &[tagged(0, "topic_config_error_code", ALL, INT16)],
});

const CREATABLE_TOPIC_CONFIGS: Kind = Kind::Struct(&Struct {
    name: "CreatableTopicConfigs",
    fields: &[
        field("name", since(5), STRING),
        field("value", since(5), NULLABLE_STRING),
        field("read_only", since(5), BOOL),
        field("config_source", since(5), INT8),
        field("is_sensitive", since(5), BOOL),
    ],
    tagged_fields: &[],
});
