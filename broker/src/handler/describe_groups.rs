//! DescribeGroups: state, protocol and members (with subscriptions and assignments when
//! Stable, as Kafka shows them) of each group this node coordinates.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};
use kafka_protocol::protocol::StrBytes;

use crate::group::GroupState;
use crate::server::Node;

/// v6 (KIP-1043) reports an unknown group as GROUP_ID_NOT_FOUND instead of a Dead group.
const NOT_FOUND_FROM_VERSION: i16 = 6;
/// v3 (KIP-430) can ask for the group's authorized operations.
const AUTHORIZED_OPERATIONS_FROM_VERSION: i16 = 3;
/// What Kafka answers, without an authorizer, for every group operation it supports (READ,
/// DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS).
const GROUP_AUTHORIZED_OPERATIONS: i32 = 3400;

pub fn handle(node: &Node, version: i16, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let mut groups: Vec<DescribedGroup> = request
        .groups
        .into_iter()
        .map(|group_id| describe(node, version, group_id))
        .collect();
    if version >= AUTHORIZED_OPERATIONS_FROM_VERSION && request.include_authorized_operations {
        for group in groups.iter_mut().filter(|group| group.error_code == 0) {
            group.authorized_operations = GROUP_AUTHORIZED_OPERATIONS;
        }
    }
    DescribeGroupsResponse::default().with_groups(groups)
}

fn describe(node: &Node, version: i16, group_id: GroupId) -> DescribedGroup {
    let described = DescribedGroup::default().with_group_id(group_id.clone());
    if let Err(error) = node.cluster.check_coordinator(node.id, &group_id.0) {
        return described.with_error_code(error.code());
    }
    let Some(snapshot) = node.cluster.groups.snapshot(&group_id.0) else {
        if version >= NOT_FOUND_FROM_VERSION {
            return described
                .with_error_code(ResponseError::GroupIdNotFound.code())
                .with_error_message(Some(StrBytes::from_string(format!(
                    "Group {} not found.",
                    group_id.0
                ))))
                .with_group_state(StrBytes::from_static_str(GroupState::Dead.name()));
        }
        return described.with_group_state(StrBytes::from_static_str(GroupState::Dead.name()));
    };
    let members = snapshot
        .members
        .into_iter()
        .map(|member| {
            DescribedGroupMember::default()
                .with_member_id(StrBytes::from_string(member.member_id))
                .with_group_instance_id(member.instance_id.map(StrBytes::from_string))
                .with_client_id(StrBytes::from_string(member.client_id))
                .with_client_host(StrBytes::from_string(member.client_host))
                .with_member_metadata(member.metadata)
                .with_member_assignment(member.assignment)
        })
        .collect();
    // Kafka names the chosen protocol only while the group is Stable.
    let protocol = match snapshot.state {
        GroupState::Stable => snapshot.protocol.unwrap_or_default(),
        _ => String::new(),
    };
    described
        .with_group_state(StrBytes::from_static_str(snapshot.state.name()))
        .with_protocol_type(StrBytes::from_string(
            snapshot.protocol_type.unwrap_or_default(),
        ))
        .with_protocol_data(StrBytes::from_string(protocol))
        .with_members(members)
}
