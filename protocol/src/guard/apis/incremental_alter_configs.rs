//! IncrementalAlterConfigs (api key 44) changes single config entries:
//! IncrementalAlterConfigsRequest v0-1 and IncrementalAlterConfigsResponse v0-1, as kafka-protocol
//! 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 44,
    versions: between(0, 1),
    flexible: since(1),
    body: &Struct {
        name: "IncrementalAlterConfigsRequest",
        fields: &[
            field("resources", ALL, array(&ALTER_CONFIGS_RESOURCE)),
            field("validate_only", ALL, BOOL),
        ],
        tagged_fields: &[],
    },
};

const ALTER_CONFIGS_RESOURCE: Kind = Kind::Struct(&Struct {
    name: "AlterConfigsResource",
    fields: &[
        field("resource_type", ALL, INT8),
        field("resource_name", ALL, STRING),
        field("configs", ALL, array(&ALTERABLE_CONFIG)),
    ],
    tagged_fields: &[],
});

const ALTERABLE_CONFIG: Kind = Kind::Struct(&Struct {
    name: "AlterableConfig",
    fields: &[
        field("name", ALL, STRING),
        field("config_operation", ALL, INT8),
        field("value", ALL, NULLABLE_STRING),
    ],
    tagged_fields: &[],
});

pub(crate) const RESPONSE: Message = Message {
    api_key: 44,
    versions: between(0, 1),
    flexible: since(1),
    body: &Struct {
        name: "IncrementalAlterConfigsResponse",
        fields: &[
            field("throttle_time_ms", ALL, INT32),
            field("responses", ALL, array(&ALTER_CONFIGS_RESOURCE_RESPONSE)),
        ],
        tagged_fields: &[],
    },
};

const ALTER_CONFIGS_RESOURCE_RESPONSE: Kind = Kind::Struct(&Struct {
    name: "AlterConfigsResourceResponse",
    fields: &[
        field("error_code", ALL, INT16),
        field("error_message", ALL, NULLABLE_STRING),
        field("resource_type", ALL, INT8),
        field("resource_name", ALL, STRING),
    ],
    tagged_fields: &[],
});
