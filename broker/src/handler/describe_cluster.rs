//! DescribeCluster: the nodes, the cluster id and the controller.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use crate::server::Node;

/// Endpoint type 1 asks for brokers (2 would ask for KRaft controllers, which we do not expose).
const ENDPOINT_TYPE_BROKERS: i8 = 1;
const ENDPOINT_TYPE_CONTROLLERS: i8 = 2;
/// What Kafka answers, without an authorizer, for every cluster operation it supports
/// (CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS,
/// IDEMPOTENT_WRITE), when a client asks for the cluster's authorized operations.
pub const CLUSTER_AUTHORIZED_OPERATIONS: i32 = 8096;

pub fn handle(
    node: &Node,
    version: i16,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let cluster = &node.cluster;
    if version >= 1 && request.endpoint_type != ENDPOINT_TYPE_BROKERS {
        // As Kafka's brokers answer: no cluster id, controller or brokers.
        let (error, message) = if request.endpoint_type == ENDPOINT_TYPE_CONTROLLERS {
            (
                ResponseError::MismatchedEndpointType,
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint \
                 of type CONTROLLER"
                    .to_owned(),
            )
        } else {
            (
                ResponseError::UnsupportedEndpointType,
                format!("Unsupported endpoint type {}", request.endpoint_type),
            )
        };
        return DescribeClusterResponse::default()
            .with_endpoint_type(ENDPOINT_TYPE_BROKERS)
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_string(message)));
    }
    let mut response = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(cluster.cluster_id.clone()))
        .with_controller_id(BrokerId(cluster.controller_id()))
        .with_endpoint_type(ENDPOINT_TYPE_BROKERS);
    if request.include_cluster_authorized_operations {
        response.cluster_authorized_operations = CLUSTER_AUTHORIZED_OPERATIONS;
    }
    response.brokers = cluster
        .nodes()
        .into_iter()
        .map(|info| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(info.id))
                .with_host(StrBytes::from_string(info.host))
                .with_port(i32::from(info.port))
                .with_is_fenced(false)
        })
        .collect();
    response
}
