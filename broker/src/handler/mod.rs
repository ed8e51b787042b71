//! One file per Kafka API, named after it. This module owns the table of what we advertise
//! (ApiVersions answers from it, and requests outside it are refused before decoding) and the
//! dispatch from a decoded request to its handler.

pub mod alter_configs;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sasl_authenticate;
pub mod sasl_handshake;
pub mod sync_group;

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

use crate::request::Request;
use crate::server::Node;

/// Every API we implement, with the versions we answer. Exactly what ApiVersions advertises.
/// Minimums are Kafka 4's (the `kafka-protocol` crate has no older versions); maximums are
/// the newest versions current clients send that we implement in full.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
];

/// Who sent a request, for what group members report about themselves.
#[derive(Debug, Clone)]
pub struct Caller {
    pub client_id: String,
    /// As Kafka shows it: a slash and the peer's address.
    pub host: String,
}

/// The versions of `api_key` we answer, if we implement it. The SASL APIs are answered
/// whether or not SASL is on (ILLEGAL_SASL_STATE without it, as Kafka's PLAINTEXT listener
/// does) but advertised only with it (`crate::sasl::SASL_APIS`).
pub fn supported_versions(api_key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .chain(crate::sasl::SASL_APIS)
        .find(|(key, _, _)| *key == api_key)
        .map(|&(_, min, max)| (min, max))
}

/// What the connection does after a handler ran.
#[derive(Debug)]
pub enum Outcome {
    Respond(Box<ResponseKind>),
    /// No response at all (Produce with acks=0).
    Silent,
    /// Close the connection without answering (Produce with acks=0 that failed, as Kafka does).
    Close(String),
}

/// `scratch` is the connection's reusable read buffer (see `Segment::read_batches`).
pub async fn dispatch(
    node: &Node,
    request: Request,
    scratch: &mut BytesMut,
    peer: std::net::SocketAddr,
) -> Outcome {
    let version = request.header.request_api_version;
    let api_key = request.api_key;
    let caller = Caller {
        client_id: request
            .header
            .client_id
            .as_deref()
            .unwrap_or_default()
            .to_owned(),
        host: format!("/{}", peer.ip()),
    };
    let response = match request.body {
        RequestKind::ApiVersions(body) => ResponseKind::ApiVersions(api_versions::handle(
            version,
            body,
            node.cluster.config.sasl.is_some(),
        )),
        RequestKind::SaslHandshake(body) => {
            ResponseKind::SaslHandshake(sasl_handshake::handle(body))
        }
        RequestKind::SaslAuthenticate(body) => {
            ResponseKind::SaslAuthenticate(sasl_authenticate::handle(body))
        }
        RequestKind::Metadata(body) => {
            ResponseKind::Metadata(metadata::handle(node, version, body))
        }
        RequestKind::Produce(body) => return produce::handle(node, version, body),
        RequestKind::Fetch(body) => {
            ResponseKind::Fetch(fetch::handle(node, version, body, scratch).await)
        }
        RequestKind::ListOffsets(body) => {
            ResponseKind::ListOffsets(list_offsets::handle(node, version, body))
        }
        RequestKind::CreateTopics(body) => {
            ResponseKind::CreateTopics(create_topics::handle(node, version, body))
        }
        RequestKind::DeleteTopics(body) => {
            ResponseKind::DeleteTopics(delete_topics::handle(node, version, body))
        }
        RequestKind::CreatePartitions(body) => {
            ResponseKind::CreatePartitions(create_partitions::handle(node, body))
        }
        RequestKind::InitProducerId(body) => {
            ResponseKind::InitProducerId(init_producer_id::handle(node, body))
        }
        RequestKind::OffsetForLeaderEpoch(body) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(node, body))
        }
        RequestKind::DescribeCluster(body) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(node, version, body))
        }
        RequestKind::FindCoordinator(body) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(node, version, body))
        }
        RequestKind::JoinGroup(body) => {
            ResponseKind::JoinGroup(join_group::handle(node, version, &caller, body).await)
        }
        RequestKind::SyncGroup(body) => {
            ResponseKind::SyncGroup(sync_group::handle(node, body).await)
        }
        RequestKind::Heartbeat(body) => ResponseKind::Heartbeat(heartbeat::handle(node, body)),
        RequestKind::LeaveGroup(body) => {
            ResponseKind::LeaveGroup(leave_group::handle(node, version, body))
        }
        RequestKind::OffsetCommit(body) => {
            ResponseKind::OffsetCommit(offset_commit::handle(node, body))
        }
        RequestKind::OffsetFetch(body) => {
            ResponseKind::OffsetFetch(offset_fetch::handle(node, version, body))
        }
        RequestKind::ListGroups(body) => ResponseKind::ListGroups(list_groups::handle(node, body)),
        RequestKind::DescribeGroups(body) => {
            ResponseKind::DescribeGroups(describe_groups::handle(node, version, body))
        }
        RequestKind::DeleteGroups(body) => {
            ResponseKind::DeleteGroups(delete_groups::handle(node, body))
        }
        RequestKind::OffsetDelete(body) => {
            ResponseKind::OffsetDelete(offset_delete::handle(node, body))
        }
        RequestKind::DeleteRecords(body) => {
            ResponseKind::DeleteRecords(delete_records::handle(node, body))
        }
        RequestKind::DescribeConfigs(body) => {
            ResponseKind::DescribeConfigs(describe_configs::handle(node, version, body))
        }
        RequestKind::AlterConfigs(body) => {
            ResponseKind::AlterConfigs(alter_configs::handle(node, body))
        }
        RequestKind::IncrementalAlterConfigs(body) => {
            ResponseKind::IncrementalAlterConfigs(incremental_alter_configs::handle(node, body))
        }
        _ => {
            // `request::parse` refuses APIs outside SUPPORTED_APIS, so this is a table bug.
            return Outcome::Close(format!("no handler for {api_key:?}"));
        }
    };
    Outcome::Respond(Box::new(response))
}
