//! JoinGroup: a member enters a rebalance; the answer waits until the rebalance completes.

use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::Caller;
use crate::group::state::{JoinRequest, Protocol};
use crate::server::Node;

/// v4 (KIP-394): new members first get MEMBER_ID_REQUIRED with their id.
const KNOWN_MEMBER_ID_FROM_VERSION: i16 = 4;
/// v9 (KIP-814): a restarted static leader is told the members with skip_assignment.
const SKIP_ASSIGNMENT_FROM_VERSION: i16 = 9;
/// v1 added the rebalance timeout; before it the session timeout served for both.
const REBALANCE_TIMEOUT_FROM_VERSION: i16 = 1;
/// v7 made the protocol name nullable.
const NULLABLE_PROTOCOL_NAME_FROM_VERSION: i16 = 7;

pub async fn handle(
    node: &Node,
    version: i16,
    caller: &Caller,
    request: JoinGroupRequest,
) -> JoinGroupResponse {
    let group_id = request.group_id.0.to_string();
    // A refusal names no protocol: null from v7 (where it became nullable), as Kafka answers;
    // an empty string before.
    let no_protocol =
        (version < NULLABLE_PROTOCOL_NAME_FROM_VERSION).then(|| StrBytes::from_static_str(""));
    let refused = |error: ResponseError, member_id: StrBytes| {
        JoinGroupResponse::default()
            .with_error_code(error.code())
            .with_generation_id(-1)
            .with_protocol_name(no_protocol.clone())
            .with_member_id(member_id)
    };
    if group_id.is_empty() {
        return refused(ResponseError::InvalidGroupId, request.member_id);
    }
    if let Err(error) = node.cluster.check_coordinator(node.id, &group_id) {
        return refused(error, request.member_id);
    }
    let config = &node.cluster.config;
    let session_timeout_ms = u64::try_from(request.session_timeout_ms).unwrap_or(0);
    if !(config.group_min_session_timeout_ms..=config.group_max_session_timeout_ms)
        .contains(&session_timeout_ms)
    {
        return refused(ResponseError::InvalidSessionTimeout, request.member_id);
    }
    let rebalance_timeout_ms = if version >= REBALANCE_TIMEOUT_FROM_VERSION {
        u64::try_from(request.rebalance_timeout_ms).unwrap_or(session_timeout_ms)
    } else {
        session_timeout_ms
    };
    let join = JoinRequest {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(|id| id.to_string()),
        client_id: caller.client_id.clone(),
        client_host: caller.host.clone(),
        session_timeout: Duration::from_millis(session_timeout_ms),
        rebalance_timeout: Duration::from_millis(rebalance_timeout_ms),
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|protocol| Protocol {
                name: protocol.name.to_string(),
                metadata: protocol.metadata.clone(),
            })
            .collect(),
        require_known_member_id: version >= KNOWN_MEMBER_ID_FROM_VERSION,
        supports_skip_assignment: version >= SKIP_ASSIGNMENT_FROM_VERSION,
    };
    match node
        .cluster
        .groups
        .join(&node.cluster, &group_id, join)
        .await
    {
        Ok(answer) => JoinGroupResponse::default()
            .with_skip_assignment(answer.skip_assignment)
            .with_generation_id(answer.generation)
            .with_protocol_type(answer.protocol_type.map(StrBytes::from_string))
            .with_protocol_name(Some(StrBytes::from_string(
                answer.protocol_name.unwrap_or_default(),
            )))
            .with_leader(StrBytes::from_string(answer.leader))
            .with_member_id(StrBytes::from_string(answer.member_id))
            .with_members(
                answer
                    .members
                    .into_iter()
                    .map(|member| {
                        JoinGroupResponseMember::default()
                            .with_member_id(StrBytes::from_string(member.member_id))
                            .with_group_instance_id(member.instance_id.map(StrBytes::from_string))
                            .with_metadata(member.metadata)
                    })
                    .collect(),
            ),
        Err(error) => {
            let member_id = match &error {
                crate::group::GroupError::MemberIdRequired(id) => StrBytes::from_string(id.clone()),
                _ => request.member_id,
            };
            refused(error.code(), member_id)
        }
    }
}
