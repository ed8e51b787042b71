//! Metadata: nodes, cluster id, controller, and topics with their partitions' leaders.
//! Unknown topics are auto-created here when the broker and the request allow it.

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::describe_cluster::CLUSTER_AUTHORIZED_OPERATIONS;
use crate::cluster::{Cluster, Topic, validate_topic_name};
use crate::server::Node;

/// What Kafka answers, without an authorizer, for every topic operation it supports (READ,
/// WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS), when a client
/// asks for a topic's authorized operations.
const TOPIC_AUTHORIZED_OPERATIONS: i32 = 3576;
/// v12 made a topic's name nullable (topics looked up by id).
const NULLABLE_TOPIC_NAME_FROM_VERSION: i16 = 12;

pub fn handle(node: &Node, version: i16, request: MetadataRequest) -> MetadataResponse {
    let cluster = &node.cluster;
    // v4 added the flag; before it, Metadata always auto-created.
    let may_create =
        cluster.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let mut topics = match request.topics {
        // v0 has no null: an empty list meant "all topics".
        None => all_topics(cluster),
        Some(requested) if requested.is_empty() && version == 0 => all_topics(cluster),
        Some(requested) => {
            // As in Kafka: a request naming any topic id looks every topic up by id.
            let by_ids = requested.iter().any(|wanted| !wanted.topic_id.is_nil());
            requested
                .into_iter()
                .map(|wanted| match wanted.name {
                    Some(name) if !by_ids => by_name(cluster, &name.0, may_create),
                    _ => by_id(cluster, version, wanted.topic_id),
                })
                .collect()
        }
    };
    if request.include_topic_authorized_operations {
        for topic in topics.iter_mut().filter(|topic| topic.error_code == 0) {
            topic.topic_authorized_operations = TOPIC_AUTHORIZED_OPERATIONS;
        }
    }
    let mut response = MetadataResponse::default()
        .with_brokers(brokers(cluster))
        .with_cluster_id(Some(StrBytes::from_string(cluster.cluster_id.clone())))
        .with_controller_id(BrokerId(cluster.controller_id()))
        .with_topics(topics);
    if request.include_cluster_authorized_operations {
        response.cluster_authorized_operations = CLUSTER_AUTHORIZED_OPERATIONS;
    }
    response
}

fn brokers(cluster: &Cluster) -> Vec<MetadataResponseBroker> {
    cluster
        .nodes()
        .into_iter()
        .map(|info| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(info.id))
                .with_host(StrBytes::from_string(info.host))
                .with_port(i32::from(info.port))
        })
        .collect()
}

fn all_topics(cluster: &Cluster) -> Vec<MetadataResponseTopic> {
    let live = live_nodes(cluster);
    cluster
        .topics()
        .iter()
        .map(|topic| describe(topic, &live))
        .collect()
}

fn live_nodes(cluster: &Cluster) -> BTreeSet<i32> {
    cluster.nodes().iter().map(|node| node.id).collect()
}

fn by_name(cluster: &Cluster, name: &StrBytes, may_create: bool) -> MetadataResponseTopic {
    let found = match cluster.topic(name) {
        Some(topic) => Ok(topic),
        None if may_create => cluster
            .topic_or_auto_create(name)
            .map_err(|refusal| refusal.error),
        // Kafka tells an illegal name from a missing topic.
        None => Err(match validate_topic_name(name) {
            Ok(()) => ResponseError::UnknownTopicOrPartition,
            Err(_) => ResponseError::InvalidTopicException,
        }),
    };
    match found {
        Ok(topic) => describe(&topic, &live_nodes(cluster)),
        Err(error) => MetadataResponseTopic::default()
            .with_name(Some(TopicName(name.clone())))
            .with_error_code(error.code()),
    }
}

fn by_id(cluster: &Cluster, version: i16, id: Uuid) -> MetadataResponseTopic {
    match cluster.topic_by_id(id) {
        Some(topic) => describe(&topic, &live_nodes(cluster)),
        // No name: null where the field is nullable (v12+), as Kafka answers.
        None => MetadataResponseTopic::default()
            .with_name((version < NULLABLE_TOPIC_NAME_FROM_VERSION).then(TopicName::default))
            .with_topic_id(id)
            .with_error_code(ResponseError::UnknownTopicId.code()),
    }
}

/// A topic as Metadata shows it: replicas on nodes that are down are offline and out of the
/// in-sync set, and a partition without a live leader says LEADER_NOT_AVAILABLE.
fn describe(topic: &Arc<Topic>, live: &BTreeSet<i32>) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|partition| {
            let state = partition.state();
            let ids = |keep: bool| -> Vec<BrokerId> {
                state
                    .replicas
                    .iter()
                    .copied()
                    .filter(|id| live.contains(id) == keep)
                    .map(BrokerId)
                    .collect()
            };
            let error = if state.leader < 0 {
                ResponseError::LeaderNotAvailable.code()
            } else {
                0
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(partition.index)
                .with_leader_id(BrokerId(state.leader))
                .with_leader_epoch(state.leader_epoch)
                .with_replica_nodes(state.replicas.iter().copied().map(BrokerId).collect())
                .with_isr_nodes(ids(true))
                .with_offline_replicas(ids(false))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.internal)
        .with_partitions(partitions)
}
