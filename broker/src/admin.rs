//! Group administration for tests, on the broker handle (`Control`): list and describe groups
//! with lag per partition, reset an empty group's offsets, move a group's coordinator. The
//! same operations over the Kafka protocol come with the client.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;

use crate::cluster::Cluster;
use crate::group::assignment::assigned_partitions;
use crate::group::{CommittedOffset, GroupState, OFFSETS_TOPIC};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Partitions assigned to the member in the current generation (empty unless Stable).
    pub assignment: Vec<(String, i32)>,
}

/// One partition of a group: what it committed, where the log ends, and the difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub committed: Option<i64>,
    /// The partition's high watermark; -1 if the topic or partition is gone.
    pub end_offset: i64,
    /// `end_offset - committed`, when both are known.
    pub lag: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: GroupState,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub generation: i32,
    pub coordinator: i32,
    pub members: Vec<MemberDescription>,
    /// Every partition the group committed or is assigned, by topic and partition.
    pub partitions: Vec<PartitionLag>,
}

/// Where `reset_offsets` moves a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTarget {
    Earliest,
    Latest,
    /// The first offset with a timestamp at or after this (the end if none).
    Timestamp(i64),
    /// This offset, clamped to the partition's range.
    Offset(i64),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdminError {
    #[error("group {0} does not exist")]
    UnknownGroup(String),
    #[error(
        "group {group} has active members ({state}); stop its consumers before resetting offsets"
    )]
    GroupNotEmpty { group: String, state: &'static str },
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    #[error("the broker could not record the offsets: {0:?}")]
    Storage(ResponseError),
}

pub fn list_groups(cluster: &Cluster) -> Vec<GroupListing> {
    cluster
        .groups
        .list()
        .into_iter()
        .map(|(group_id, protocol_type, state)| GroupListing {
            group_id,
            protocol_type,
            state,
        })
        .collect()
}

pub fn describe_group(cluster: &Cluster, group_id: &str) -> Option<GroupDescription> {
    let snapshot = cluster.groups.snapshot(group_id)?;
    let members: Vec<MemberDescription> = snapshot
        .members
        .iter()
        .map(|member| MemberDescription {
            member_id: member.member_id.clone(),
            instance_id: member.instance_id.clone(),
            client_id: member.client_id.clone(),
            client_host: member.client_host.clone(),
            assignment: assigned_partitions(&member.assignment),
        })
        .collect();
    let mut keys: BTreeSet<(String, i32)> = snapshot.offsets.keys().cloned().collect();
    keys.extend(
        members
            .iter()
            .flat_map(|member| member.assignment.iter().cloned()),
    );
    let partitions = keys
        .into_iter()
        .map(|(topic, partition)| {
            let committed = snapshot
                .offsets
                .get(&(topic.clone(), partition))
                .map(|c| c.offset);
            lag_of(cluster, topic, partition, committed)
        })
        .collect();
    Some(GroupDescription {
        group_id: snapshot.group_id,
        state: snapshot.state,
        protocol_type: snapshot.protocol_type,
        protocol: snapshot.protocol,
        generation: snapshot.generation,
        coordinator: cluster.coordinator_for(group_id).map_or(-1, |node| node.id),
        members,
        partitions,
    })
}

fn lag_of(
    cluster: &Cluster,
    topic: String,
    partition: i32,
    committed: Option<i64>,
) -> PartitionLag {
    let end_offset = cluster
        .topic(&topic)
        .and_then(|found| found.partitions.get(partition as usize).cloned())
        .map_or(-1, |found| found.state().log.high_watermark());
    let lag = committed
        .filter(|_| end_offset >= 0)
        .map(|committed| (end_offset - committed).max(0));
    PartitionLag {
        topic,
        partition,
        committed,
        end_offset,
        lag,
    }
}

/// Sets an empty group's committed offsets on every partition of `topic`, as
/// `kafka-consumer-groups --reset-offsets` does; refused while the group has members.
/// Returns each partition's new offset.
pub fn reset_offsets(
    cluster: &Cluster,
    group_id: &str,
    topic: &str,
    target: ResetTarget,
) -> Result<Vec<(i32, i64)>, AdminError> {
    let snapshot = cluster
        .groups
        .snapshot(group_id)
        .ok_or_else(|| AdminError::UnknownGroup(group_id.to_owned()))?;
    if snapshot.state != GroupState::Empty {
        return Err(AdminError::GroupNotEmpty {
            group: group_id.to_owned(),
            state: snapshot.state.name(),
        });
    }
    let found = cluster
        .topic(topic)
        .ok_or_else(|| AdminError::UnknownTopic(topic.to_owned()))?;
    let now_ms = cluster.env.clock.wall_ms();
    let mut offsets = Vec::with_capacity(found.partitions.len());
    for partition in &found.partitions {
        let state = partition.state();
        let log = &state.log;
        let (start, end) = (log.log_start_offset(), log.high_watermark());
        let offset = match target {
            ResetTarget::Earliest => start,
            ResetTarget::Latest => end,
            ResetTarget::Offset(offset) => offset.clamp(start, end),
            ResetTarget::Timestamp(timestamp) => log
                .offset_for_timestamp(timestamp)
                .map_err(|_| AdminError::Storage(ResponseError::KafkaStorageError))?
                .map_or(end, |found| found.offset),
        };
        offsets.push((partition.index, offset));
    }
    let commits = offsets
        .iter()
        .map(|(partition, offset)| {
            let committed = CommittedOffset {
                offset: *offset,
                leader_epoch: -1,
                metadata: Some(String::new()),
                commit_timestamp_ms: now_ms,
            };
            (topic.to_owned(), *partition, committed)
        })
        .collect();
    // Generation -1 on an empty group: the "simple consumer" commit path, which is also what
    // refuses the reset if a member joined in the meantime.
    let results = cluster
        .groups
        .commit(cluster, group_id, ("", None, -1), commits)
        .map_err(|error| match error {
            ResponseError::UnknownMemberId | ResponseError::IllegalGeneration => {
                AdminError::GroupNotEmpty {
                    group: group_id.to_owned(),
                    state: "no longer empty",
                }
            }
            other => AdminError::Storage(other),
        })?;
    if let Some((_, _, Err(error))) = results.iter().find(|(_, _, result)| result.is_err()) {
        return Err(AdminError::Storage(*error));
    }
    Ok(offsets)
}

/// The `__consumer_offsets` partition whose leader coordinates `group_id`.
pub fn coordinator_partition(
    cluster: &Cluster,
    group_id: &str,
) -> Result<(String, i32), ResponseError> {
    let partition = cluster.offsets_partition(group_id)?;
    Ok((OFFSETS_TOPIC.to_owned(), partition.index))
}
