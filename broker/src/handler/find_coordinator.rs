//! FindCoordinator: the node coordinating a group (the leader of its `__consumer_offsets`
//! partition). Transaction coordinators are not offered until transactions are implemented.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::NodeInfo;
use crate::server::Node;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;
/// v4 (KIP-699) looks up many keys at once.
const BATCHED_FROM_VERSION: i16 = 4;

pub fn handle(
    node: &Node,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let keys = if version >= BATCHED_FROM_VERSION {
        request.coordinator_keys
    } else {
        vec![request.key]
    };
    let answers: Vec<Coordinator> = keys
        .into_iter()
        .map(|key| answer(key.clone(), lookup(node, request.key_type, &key)))
        .collect();
    if version >= BATCHED_FROM_VERSION {
        return FindCoordinatorResponse::default().with_coordinators(answers);
    }
    let single = answers.into_iter().next().unwrap_or_default();
    FindCoordinatorResponse::default()
        .with_error_code(single.error_code)
        .with_error_message(if version >= 1 {
            single.error_message
        } else {
            None
        })
        .with_node_id(single.node_id)
        .with_host(single.host)
        .with_port(single.port)
}

fn lookup(node: &Node, key_type: i8, key: &str) -> Result<NodeInfo, (ResponseError, &'static str)> {
    match key_type {
        KEY_TYPE_GROUP => node
            .cluster
            .coordinator_for(key)
            .map_err(|error| (error, "the group's coordinator is not available")),
        KEY_TYPE_TRANSACTION => Err((
            ResponseError::CoordinatorNotAvailable,
            "transactions are not supported by this broker yet",
        )),
        _ => Err((
            ResponseError::InvalidRequest,
            "unknown coordinator key type",
        )),
    }
}

fn answer(key: StrBytes, found: Result<NodeInfo, (ResponseError, &'static str)>) -> Coordinator {
    match found {
        Ok(coordinator) => Coordinator::default()
            .with_key(key)
            .with_node_id(BrokerId(coordinator.id))
            .with_host(StrBytes::from_string(coordinator.host))
            .with_port(i32::from(coordinator.port)),
        Err((error, message)) => Coordinator::default()
            .with_key(key)
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_static_str(message)))
            .with_node_id(BrokerId(-1))
            .with_host(StrBytes::from_static_str(""))
            .with_port(-1),
    }
}
