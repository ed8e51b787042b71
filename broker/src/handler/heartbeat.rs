//! Heartbeat: keeps a member's session alive and tells it when to rejoin.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::server::Node;

pub fn handle(node: &Node, request: HeartbeatRequest) -> HeartbeatResponse {
    let group_id = request.group_id.0.as_str();
    let result = if group_id.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else {
        node.cluster
            .check_coordinator(node.id, group_id)
            .and_then(|()| {
                node.cluster
                    .groups
                    .heartbeat(
                        &node.cluster,
                        group_id,
                        &request.member_id,
                        request.group_instance_id.as_deref(),
                        request.generation_id,
                    )
                    .map_err(|error| error.code())
            })
    };
    HeartbeatResponse::default().with_error_code(result.err().map_or(0, |error| error.code()))
}
