//! ApiVersions (api key 18) negotiates API versions: ApiVersionsRequest v0-4 and
//! ApiVersionsResponse v0-4, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 18,
    versions: between(0, 4),
    flexible: since(3),
    body: &Struct {
        name: "ApiVersionsRequest",
        fields: &[
            field("client_software_name", since(3), STRING),
            field("client_software_version", since(3), STRING),
        ],
        tagged_fields: &[],
    },
};

pub(crate) const RESPONSE: Message = Message {
    api_key: 18,
    versions: between(0, 4),
    flexible: since(3),
    body: &Struct {
        name: "ApiVersionsResponse",
        fields: &[
            field("error_code", ALL, INT16),
            field("api_keys", ALL, array(&API_VERSION)),
            field("throttle_time_ms", since(1), INT32),
        ],
        tagged_fields: &[
            tagged(0, "supported_features", ALL, array(&SUPPORTED_FEATURE_KEY)),
            tagged(1, "finalized_features_epoch", ALL, INT64),
            tagged(2, "finalized_features", ALL, array(&FINALIZED_FEATURE_KEY)),
            tagged(3, "zk_migration_ready", ALL, BOOL),
        ],
    },
};

const API_VERSION: Kind = Kind::Struct(&Struct {
    name: "ApiVersion",
    fields: &[
        field("api_key", ALL, INT16),
        field("min_version", ALL, INT16),
        field("max_version", ALL, INT16),
    ],
    tagged_fields: &[],
});

const SUPPORTED_FEATURE_KEY: Kind = Kind::Struct(&Struct {
    name: "SupportedFeatureKey",
    fields: &[
        field("name", since(3), STRING),
        field("min_version", since(3), INT16),
        field("max_version", since(3), INT16),
    ],
    tagged_fields: &[],
});

const FINALIZED_FEATURE_KEY: Kind = Kind::Struct(&Struct {
    name: "FinalizedFeatureKey",
    fields: &[
        field("name", since(3), STRING),
        field("max_version_level", since(3), INT16),
        field("min_version_level", since(3), INT16),
    ],
    tagged_fields: &[],
});
