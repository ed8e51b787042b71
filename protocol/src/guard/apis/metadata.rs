//! Metadata (api key 3) describes brokers, topics and partition leaders: MetadataRequest v0-13 and
//! MetadataResponse v0-13, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 3,
    versions: between(0, 13),
    flexible: since(9),
    body: &Struct {
        name: "MetadataRequest",
        fields: &[
            field("topics", ALL, nullable_array(&METADATA_REQUEST_TOPIC)),
            field("allow_auto_topic_creation", since(4), BOOL),
            field(
                "include_cluster_authorized_operations",
                between(8, 10),
                BOOL,
            ),
            field("include_topic_authorized_operations", since(8), BOOL),
        ],
        tagged_fields: &[],
    },
};

const METADATA_REQUEST_TOPIC: Kind = Kind::Struct(&Struct {
    name: "MetadataRequestTopic",
    fields: &[
        field("topic_id", since(10), UUID),
        field("name", ALL, NULLABLE_STRING),
    ],
    tagged_fields: &[],
});

pub(crate) const RESPONSE: Message = Message {
    api_key: 3,
    versions: between(0, 13),
    flexible: since(9),
    body: &Struct {
        name: "MetadataResponse",
        fields: &[
            field("throttle_time_ms", since(3), INT32),
            field("brokers", ALL, array(&METADATA_RESPONSE_BROKER)),
            field("cluster_id", since(2), NULLABLE_STRING),
            field("controller_id", since(1), INT32),
            field("topics", ALL, array(&METADATA_RESPONSE_TOPIC)),
            field("cluster_authorized_operations", between(8, 10), INT32),
            field("error_code", since(13), INT16),
        ],
        tagged_fields: &[],
    },
};

const METADATA_RESPONSE_BROKER: Kind = Kind::Struct(&Struct {
    name: "MetadataResponseBroker",
    fields: &[
        field("node_id", ALL, INT32),
        field("host", ALL, STRING),
        field("port", ALL, INT32),
        field("rack", since(1), NULLABLE_STRING),
    ],
    tagged_fields: &[],
});

const METADATA_RESPONSE_TOPIC: Kind = Kind::Struct(&Struct {
    name: "MetadataResponseTopic",
    fields: &[
        field("error_code", ALL, INT16),
        field("name", ALL, NULLABLE_STRING),
        field("topic_id", since(10), UUID),
        field("is_internal", since(1), BOOL),
        field("partitions", ALL, array(&METADATA_RESPONSE_PARTITION)),
        field("topic_authorized_operations", since(8), INT32),
    ],
    tagged_fields: &[],
});

const METADATA_RESPONSE_PARTITION: Kind = Kind::Struct(&Struct {
    name: "MetadataResponsePartition",
    fields: &[
        field("error_code", ALL, INT16),
        field("partition_index", ALL, INT32),
        field("leader_id", ALL, INT32),
        field("leader_epoch", since(7), INT32),
        field("replica_nodes", ALL, array(&INT32)),
        field("isr_nodes", ALL, array(&INT32)),
        field("offline_replicas", since(5), array(&INT32)),
    ],
    tagged_fields: &[],
});
