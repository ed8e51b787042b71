//! DescribeConfigs (api key 32) reads topic and broker configs: DescribeConfigsRequest v1-4 and
//! DescribeConfigsResponse v1-4, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 32,
    versions: between(1, 4),
    flexible: since(4),
    body: &Struct {
        name: "DescribeConfigsRequest",
        fields: &[
            field("resources", ALL, array(&DESCRIBE_CONFIGS_RESOURCE)),
            field("include_synonyms", ALL, BOOL),
            field("include_documentation", since(3), BOOL),
        ],
        tagged_fields: &[],
    },
};

const DESCRIBE_CONFIGS_RESOURCE: Kind = Kind::Struct(&Struct {
    name: "DescribeConfigsResource",
    fields: &[
        field("resource_type", ALL, INT8),
        field("resource_name", ALL, STRING),
        field("configuration_keys", ALL, nullable_array(&STRING)),
    ],
    tagged_fields: &[],
});

pub(crate) const RESPONSE: Message = Message {
    api_key: 32,
    versions: between(1, 4),
    flexible: since(4),
    body: &Struct {
        name: "DescribeConfigsResponse",
        fields: &[
            field("throttle_time_ms", ALL, INT32),
            field("results", ALL, array(&DESCRIBE_CONFIGS_RESULT)),
        ],
        tagged_fields: &[],
    },
};

const DESCRIBE_CONFIGS_RESULT: Kind = Kind::Struct(&Struct {
    name: "DescribeConfigsResult",
    fields: &[
        field("error_code", ALL, INT16),
        field("error_message", ALL, NULLABLE_STRING),
        field("resource_type", ALL, INT8),
        field("resource_name", ALL, STRING),
        field("configs", ALL, array(&DESCRIBE_CONFIGS_RESOURCE_RESULT)),
    ],
    tagged_fields: &[],
});

const DESCRIBE_CONFIGS_RESOURCE_RESULT: Kind = Kind::Struct(&Struct {
    name: "DescribeConfigsResourceResult",
    fields: &[
        field("name", ALL, STRING),
        field("value", ALL, NULLABLE_STRING),
        field("read_only", ALL, BOOL),
        field("config_source", ALL, INT8),
        field("is_sensitive", ALL, BOOL),
        field("synonyms", ALL, array(&DESCRIBE_CONFIGS_SYNONYM)),
        field("config_type", since(3), INT8),
        field("documentation", since(3), NULLABLE_STRING),
    ],
    tagged_fields: &[],
});

const DESCRIBE_CONFIGS_SYNONYM: Kind = Kind::Struct(&Struct {
    name: "DescribeConfigsSynonym",
    fields: &[
        field("name", ALL, STRING),
        field("value", ALL, NULLABLE_STRING),
        field("source", ALL, INT8),
    ],
    tagged_fields: &[],
});
