//! DescribeCluster: the nodes, the cluster id and the controller.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use crate::server::Node;

/// Endpoint type 1 asks for brokers (2 would ask for KRaft controllers, which we do not expose).
const ENDPOINT_TYPE_BROKERS: i8 = 1;

pub fn handle(
    node: &Node,
    version: i16,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let cluster = &node.cluster;
    let mut response = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(cluster.cluster_id.clone()))
        .with_controller_id(BrokerId(cluster.controller_id()))
        .with_endpoint_type(ENDPOINT_TYPE_BROKERS);
    if version >= 1 && request.endpoint_type != ENDPOINT_TYPE_BROKERS {
        return response
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(StrBytes::from_static_str(
                "only broker endpoints are exposed",
            )));
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
