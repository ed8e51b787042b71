//! Leadership: which node leads each partition, and moving it. Every move bumps the
//! partition's leader epoch and records where the new epoch starts in the log, so clients
//! that still talk to the old leader get NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH and
//! refresh their metadata.

use std::sync::Arc;

use super::{Cluster, ControllerState, first_live_in, lock};
use crate::partition::Partition;

/// Why a leadership change was refused.
#[derive(Debug, thiserror::Error)]
pub enum LeadershipError {
    #[error("no topic {0}")]
    UnknownTopic(String),
    #[error("topic {topic} has no partition {partition}")]
    UnknownPartition { topic: String, partition: i32 },
    #[error("no node {0}")]
    UnknownNode(i32),
    #[error("node {0} is down")]
    NodeDown(i32),
    #[error("node {node} is not a replica of {topic}-{partition} (replicas {replicas:?})")]
    NotAReplica {
        node: i32,
        topic: String,
        partition: i32,
        replicas: Vec<i32>,
    },
    #[error("recording the change failed: {0}")]
    Storage(#[from] std::io::Error),
}

/// Makes `leader` (or nobody, -1) lead `partition` in a new epoch; wakes parked fetches so
/// they answer with the change instead of waiting out their time.
fn change_leader(partition: &Partition, leader: i32) -> i32 {
    let epoch = {
        let mut state = partition.state();
        state.leader = leader;
        state.leader_epoch += 1;
        let log_end_offset = state.log.log_end_offset();
        let epoch = state.leader_epoch;
        state.log.assign_epoch(epoch, log_end_offset);
        epoch
    };
    partition.wake_watchers();
    tracing::info!(topic = %partition.topic, partition = partition.index, leader, epoch, "leader changed");
    epoch
}

impl Cluster {
    /// Moves `topic`-`partition`'s leadership to `node`, a live replica. Returns the new
    /// leader epoch.
    pub fn move_leader(
        &self,
        topic: &str,
        partition: i32,
        node: i32,
    ) -> Result<i32, LeadershipError> {
        let state = lock(&self.state);
        let found = state
            .topics
            .get(topic)
            .ok_or_else(|| LeadershipError::UnknownTopic(topic.to_owned()))?;
        let target = found
            .partitions
            .get(partition as usize)
            .cloned()
            .ok_or_else(|| LeadershipError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
            })?;
        self.check_live(&state, node)?;
        let replicas = target.state().replicas.clone();
        if !replicas.contains(&node) {
            return Err(LeadershipError::NotAReplica {
                node,
                topic: topic.to_owned(),
                partition,
                replicas,
            });
        }
        let epoch = change_leader(&target, node);
        self.persist(&state)?;
        Ok(epoch)
    }

    fn check_live(&self, state: &ControllerState, node: i32) -> Result<(), LeadershipError> {
        if !state.nodes.contains_key(&node) {
            return Err(LeadershipError::UnknownNode(node));
        }
        if !state.live.contains(&node) {
            return Err(LeadershipError::NodeDown(node));
        }
        Ok(())
    }

    /// Takes `node` out: Metadata stops listing it, and each partition it led moves to
    /// another live replica, or to no leader if none is left.
    pub fn node_down(&self, node: i32) -> Result<(), LeadershipError> {
        let mut state = lock(&self.state);
        self.check_live(&state, node)?;
        state.live.remove(&node);
        self.reelect(&state, |partition_leader, _| partition_leader == node);
        Ok(self.persist(&state)?)
    }

    /// Brings `node` back: it is listed again and leads the partitions left without a leader
    /// that it is a replica of. (It does not take back partitions others now lead.)
    pub fn node_up(&self, node: i32) -> Result<(), LeadershipError> {
        let mut state = lock(&self.state);
        if !state.nodes.contains_key(&node) {
            return Err(LeadershipError::UnknownNode(node));
        }
        state.live.insert(node);
        self.reelect(&state, |partition_leader, replicas| {
            partition_leader == -1 && replicas.contains(&node)
        });
        Ok(self.persist(&state)?)
    }

    /// After a restart with a different node set: every partition whose leader is not serving
    /// gets a live replica as leader (or none).
    pub fn reconcile_leaders(&self) -> Result<(), LeadershipError> {
        let state = lock(&self.state);
        let live = state.live.clone();
        let changed = self.reelect(&state, |partition_leader, replicas| {
            let leaderless = partition_leader == -1 && replicas.iter().any(|r| live.contains(r));
            leaderless || (partition_leader != -1 && !live.contains(&partition_leader))
        });
        if changed > 0 {
            self.persist(&state)?;
        }
        Ok(())
    }

    /// Re-elects, as the first live replica or nobody, every partition `needs` picks (given its
    /// leader and replicas). Returns how many changed.
    fn reelect(&self, state: &ControllerState, needs: impl Fn(i32, &[i32]) -> bool) -> usize {
        let mut changed = 0;
        for partition in state
            .topics
            .values()
            .flat_map(|topic| topic.partitions.iter())
        {
            let (leader, replicas) = {
                let partition_state = partition.state();
                (partition_state.leader, partition_state.replicas.clone())
            };
            if !needs(leader, &replicas) {
                continue;
            }
            let elected = first_live_in(state, &replicas);
            if elected != leader {
                change_leader(partition, elected);
                changed += 1;
            }
        }
        changed
    }

    /// Every partition, for maintenance passes (flushing).
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        let state = lock(&self.state);
        state
            .topics
            .values()
            .flat_map(|topic| topic.partitions.iter().cloned())
            .collect()
    }
}
