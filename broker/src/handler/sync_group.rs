//! SyncGroup: the leader hands out assignments; followers wait for theirs.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use crate::group::state::SyncRequest;
use crate::server::Node;

pub async fn handle(node: &Node, request: SyncGroupRequest) -> SyncGroupResponse {
    let group_id = request.group_id.0.to_string();
    let refused = |error: ResponseError| SyncGroupResponse::default().with_error_code(error.code());
    if group_id.is_empty() {
        return refused(ResponseError::InvalidGroupId);
    }
    if let Err(error) = node.cluster.check_coordinator(node.id, &group_id) {
        return refused(error);
    }
    let sync = SyncRequest {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(|id| id.to_string()),
        generation: request.generation_id,
        protocol_type: request.protocol_type.as_ref().map(|p| p.to_string()),
        protocol_name: request.protocol_name.as_ref().map(|p| p.to_string()),
        assignments: request
            .assignments
            .into_iter()
            .map(|assignment| (assignment.member_id.to_string(), assignment.assignment))
            .collect(),
    };
    match node
        .cluster
        .groups
        .sync(&node.cluster, &group_id, sync)
        .await
    {
        Ok(answer) => SyncGroupResponse::default()
            .with_protocol_type(answer.protocol_type.map(StrBytes::from_string))
            .with_protocol_name(answer.protocol_name.map(StrBytes::from_string))
            .with_assignment(answer.assignment),
        Err(error) => refused(error.code()),
    }
}
