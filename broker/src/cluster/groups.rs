//! Where groups live: the internal topic `__consumer_offsets`, created on first use, and the
//! node leading a group's partition of it, which is the group's coordinator.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use tidepool_io::buggify;

use super::{Cluster, NodeInfo, TopicRequest};
use crate::group::OFFSETS_TOPIC;
use crate::group::coordinator::offsets_partition_of;
use crate::partition::Partition;

impl Cluster {
    /// The partition of `__consumer_offsets` holding `group_id`, creating the topic first if
    /// this is the first group (as Kafka does on the first FindCoordinator).
    pub fn offsets_partition(&self, group_id: &str) -> Result<Arc<Partition>, ResponseError> {
        let topic = match self.topic(OFFSETS_TOPIC) {
            Some(topic) => topic,
            None => self.create_offsets_topic()?,
        };
        let index = offsets_partition_of(group_id, topic.partitions.len());
        topic
            .partitions
            .get(index as usize)
            .cloned()
            .ok_or(ResponseError::CoordinatorNotAvailable)
    }

    fn create_offsets_topic(&self) -> Result<Arc<super::Topic>, ResponseError> {
        let nodes = self.nodes().len().max(1);
        let request = TopicRequest {
            name: OFFSETS_TOPIC.to_owned(),
            partitions: self.config.offsets_topic_partitions.max(1),
            replication_factor: self
                .config
                .offsets_topic_replication_factor
                .clamp(1, nodes as i16),
            assignments: Vec::new(),
            configs: vec![
                ("cleanup.policy".to_owned(), "compact".to_owned()),
                ("segment.bytes".to_owned(), "104857600".to_owned()),
            ],
        };
        match self.create_topic(&request, false) {
            Ok(created) => Ok(created.topic),
            // Created by a concurrent request in between.
            Err(refusal) if refusal.error == ResponseError::TopicAlreadyExists => self
                .topic(OFFSETS_TOPIC)
                .ok_or(ResponseError::CoordinatorNotAvailable),
            Err(refusal) => {
                tracing::error!(message = %refusal.message, "could not create {OFFSETS_TOPIC}");
                Err(ResponseError::CoordinatorNotAvailable)
            }
        }
    }

    /// The node coordinating `group_id`: the live leader of its `__consumer_offsets` partition.
    pub fn coordinator_for(&self, group_id: &str) -> Result<NodeInfo, ResponseError> {
        let partition = self.offsets_partition(group_id)?;
        let leader = partition.state().leader;
        self.nodes()
            .into_iter()
            .find(|node| node.id == leader)
            .ok_or(ResponseError::CoordinatorNotAvailable)
    }

    /// Whether `node_id` coordinates `group_id`, for a request about the group:
    /// NOT_COORDINATOR if another node does. Buggify site `group.not_coordinator`: the
    /// coordinator answers NOT_COORDINATOR anyway, as Kafka's does while its coordinator
    /// partition moves (clients look the coordinator up again and retry).
    pub fn check_coordinator(&self, node_id: i32, group_id: &str) -> Result<(), ResponseError> {
        if !self.is_coordinator(node_id, group_id)? {
            return Err(ResponseError::NotCoordinator);
        }
        if buggify!(self.env.disk, "group.not_coordinator") {
            return Err(ResponseError::NotCoordinator);
        }
        Ok(())
    }

    /// Whether `node_id` coordinates `group_id` (never buggified: ListGroups filters by it).
    pub fn is_coordinator(&self, node_id: i32, group_id: &str) -> Result<bool, ResponseError> {
        Ok(self.coordinator_for(group_id)?.id == node_id)
    }
}
