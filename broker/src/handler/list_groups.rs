//! ListGroups: the groups this node coordinates (Kafka answers per broker; admin clients ask
//! every broker), filtered by state (v4+) and type (v5+).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::server::Node;

/// Every group here speaks the classic protocol (KIP-848 groups are not implemented).
const GROUP_TYPE: &str = "classic";

pub fn handle(node: &Node, request: ListGroupsRequest) -> ListGroupsResponse {
    let wanted_state = |state: &str| {
        request.states_filter.is_empty()
            || request
                .states_filter
                .iter()
                .any(|s| s.eq_ignore_ascii_case(state))
    };
    let wanted_type = request.types_filter.is_empty()
        || request
            .types_filter
            .iter()
            .any(|t| t.eq_ignore_ascii_case(GROUP_TYPE));
    let groups = node
        .cluster
        .groups
        .list()
        .into_iter()
        .filter(|(group_id, _, state)| {
            wanted_type
                && wanted_state(state.name())
                && node.cluster.is_coordinator(node.id, group_id) == Ok(true)
        })
        .map(|(group_id, protocol_type, state)| {
            ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(group_id)))
                .with_protocol_type(StrBytes::from_string(protocol_type))
                .with_group_state(StrBytes::from_static_str(state.name()))
                .with_group_type(StrBytes::from_static_str(GROUP_TYPE))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
