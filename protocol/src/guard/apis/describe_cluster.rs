//! DescribeCluster (api key 60) describes the cluster's brokers: DescribeClusterRequest v0-2 and
//! DescribeClusterResponse v0-2, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 60,
    versions: between(0, 2),
    flexible: ALL,
    body: &Struct {
        name: "DescribeClusterRequest",
        fields: &[
            field("include_cluster_authorized_operations", ALL, BOOL),
            field("endpoint_type", since(1), INT8),
            field("include_fenced_brokers", since(2), BOOL),
        ],
        tagged_fields: &[],
    },
};

pub(crate) const RESPONSE: Message = Message {
    api_key: 60,
    versions: between(0, 2),
    flexible: ALL,
    body: &Struct {
        name: "DescribeClusterResponse",
        fields: &[
            field("throttle_time_ms", ALL, INT32),
            field("error_code", ALL, INT16),
            field("error_message", ALL, NULLABLE_STRING),
            field("endpoint_type", since(1), INT8),
            field("cluster_id", ALL, STRING),
            field("controller_id", ALL, INT32),
            field("brokers", ALL, array(&DESCRIBE_CLUSTER_BROKER)),
            field("cluster_authorized_operations", ALL, INT32),
        ],
        tagged_fields: &[],
    },
};

const DESCRIBE_CLUSTER_BROKER: Kind = Kind::Struct(&Struct {
    name: "DescribeClusterBroker",
    fields: &[
        field("broker_id", ALL, INT32),
        field("host", ALL, STRING),
        field("port", ALL, INT32),
        field("rack", ALL, NULLABLE_STRING),
        field("is_fenced", since(2), BOOL),
    ],
    tagged_fields: &[],
});
