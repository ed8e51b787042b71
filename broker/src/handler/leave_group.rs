//! LeaveGroup: one member (up to v2) or a batch of members, by id or static instance id (v3+).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use crate::server::Node;

const BATCH_FROM_VERSION: i16 = 3;

pub fn handle(node: &Node, version: i16, request: LeaveGroupRequest) -> LeaveGroupResponse {
    let group_id = request.group_id.0.as_str();
    let check = if group_id.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else {
        node.cluster.check_coordinator(node.id, group_id)
    };
    if let Err(error) = check {
        return LeaveGroupResponse::default().with_error_code(error.code());
    }
    let leaving: Vec<(String, Option<String>)> = if version >= BATCH_FROM_VERSION {
        request
            .members
            .iter()
            .map(|member| {
                (
                    member.member_id.to_string(),
                    member.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let results = node.cluster.groups.leave(&node.cluster, group_id, &leaving);
    if version < BATCH_FROM_VERSION {
        let code = results
            .first()
            .and_then(|r| r.as_ref().err())
            .map_or(0, |e| e.code().code());
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let members = request
        .members
        .into_iter()
        .zip(results)
        .map(|(member, result)| {
            MemberResponse::default()
                .with_member_id(member.member_id)
                .with_group_instance_id(member.group_instance_id)
                .with_error_code(result.err().map_or(0, |error| error.code().code()))
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}
