//! The group coordinator: owns every group's state machine, the requests parked on them, and
//! the groups' committed offsets, which it keeps in the compacted internal topic
//! `__consumer_offsets` (rebuilt from it on start) as Kafka does.
//!
//! A group lives in partition `hash(group id) % partitions` of that topic, hashed as Java's
//! `String.hashCode`, and the partition's leader is the group's coordinator: moving that
//! leader moves the coordinator, and requests to the old node get NOT_COORDINATOR.
//!
//! **Lock order:** the coordinator's lock, then the controller's, then a partition's; never a
//! partition's first (asserted in debug builds).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use tidepool_io::crash_point;
use tidepool_protocol::batch;
use tidepool_protocol::records::{self as batch_records, BatchBuilder, DecodeLimits};
use tokio::sync::oneshot;

use super::records::{GroupValue, OffsetValue, RecordKey, RecordValue};
use super::state::{
    Completions, Group, GroupError, GroupLimits, GroupState, JoinRequest, JoinResult,
    MemberSummary, Reply, SyncRequest, SyncResult,
};
use crate::cluster::Cluster;
use crate::partition::{Partition, assert_no_partition_lock_held};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Kafka's `offset.metadata.max.bytes`.
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp_ms: i64,
}

/// A group with what waits on it and what it committed.
struct Slot {
    group: Group,
    joins: BTreeMap<String, oneshot::Sender<JoinResult>>,
    syncs: BTreeMap<String, oneshot::Sender<SyncResult>>,
    offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// When the group was first seen holding nothing (see `is_forgettable`).
    empty_since: Option<Duration>,
}

impl Slot {
    fn new(group: Group) -> Slot {
        Slot {
            group,
            joins: BTreeMap::new(),
            syncs: BTreeMap::new(),
            offsets: BTreeMap::new(),
            empty_since: None,
        }
    }

    /// Answers parked requests. A waiter that went away (its connection closed) is skipped.
    fn deliver(&mut self, completions: Completions) {
        for (member_id, result) in completions.joins {
            if let Some(waiter) = self.joins.remove(&member_id) {
                let _ = waiter.send(result);
            }
        }
        for (member_id, result) in completions.syncs {
            if let Some(waiter) = self.syncs.remove(&member_id) {
                let _ = waiter.send(result);
            }
        }
    }

    /// Nothing would be lost by forgetting this group.
    fn is_forgettable(&self) -> bool {
        self.group.state() == GroupState::Empty
            && !self.group.has_pending_members()
            && self.offsets.is_empty()
            && self.joins.is_empty()
            && self.syncs.is_empty()
    }

    /// Whether to forget the group now. One that members joined stays listed (Empty, with its
    /// protocol type) for `retention` after it emptied, as Kafka keeps it until its next
    /// offsets-retention check; one that never had members (only looked up) goes at once.
    fn expired(&mut self, now: Duration, retention: Duration) -> bool {
        if !self.is_forgettable() {
            self.empty_since = None;
            return false;
        }
        if self.group.protocol_type().is_none() {
            return true;
        }
        let since = *self.empty_since.get_or_insert(now);
        now.saturating_sub(since) >= retention
    }
}

/// A group as the admin API and DescribeGroups show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSnapshot {
    pub group_id: String,
    pub state: GroupState,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub generation: i32,
    pub members: Vec<MemberSummary>,
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// Topics the members subscribe to (consumer protocol), for OffsetDelete.
    pub subscribed_topics: Vec<String>,
}

pub struct GroupCoordinator {
    slots: Mutex<BTreeMap<String, Slot>>,
    limits: GroupLimits,
    /// `Config::groups_max`: every group id a client names would otherwise be kept.
    groups_max: usize,
}

/// Java's `String.hashCode` over UTF-16 code units, then Kafka's `Utils.abs` (clear the sign
/// bit), so a group lands in the partition Kafka would put it in.
pub fn offsets_partition_of(group_id: &str, partitions: usize) -> i32 {
    let hash = group_id.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    ((hash & 0x7fff_ffff) as usize % partitions.max(1)) as i32
}

impl GroupCoordinator {
    pub fn new(limits: GroupLimits, groups_max: usize) -> GroupCoordinator {
        GroupCoordinator {
            slots: Mutex::new(BTreeMap::new()),
            limits,
            groups_max,
        }
    }

    fn slots(&self) -> MutexGuard<'_, BTreeMap<String, Slot>> {
        assert_no_partition_lock_held();
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn slot<'a>(&self, slots: &'a mut BTreeMap<String, Slot>, group_id: &str) -> &'a mut Slot {
        slots
            .entry(group_id.to_owned())
            .or_insert_with(|| Slot::new(Group::new(group_id, self.limits)))
    }

    /// The group's slot, created if there is room for one more group. Kafka bounds no group
    /// count, so there is no error of its own for this: COORDINATOR_NOT_AVAILABLE is in every
    /// group API's error list and retriable, and the condition passes as empty groups expire
    /// or are deleted.
    fn slot_within_bound<'a>(
        &self,
        slots: &'a mut BTreeMap<String, Slot>,
        group_id: &str,
    ) -> Result<&'a mut Slot, ResponseError> {
        if !slots.contains_key(group_id) && slots.len() >= self.groups_max {
            tracing::warn!(
                group = group_id,
                limit = self.groups_max,
                "group limit reached, refusing a new group"
            );
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        Ok(self.slot(slots, group_id))
    }

    // ---- membership --------------------------------------------------------------------------

    pub async fn join(
        &self,
        cluster: &Cluster,
        group_id: &str,
        request: JoinRequest,
    ) -> JoinResult {
        let now = cluster.env.clock.now();
        let suffix = cluster.env.entropy.uuid().to_string();
        let waiter = {
            let mut slots = self.slots();
            if !request.member_id.is_empty() && !slots.contains_key(group_id) {
                return Err(GroupError::UnknownMemberId);
            }
            let Ok(slot) = self.slot_within_bound(&mut slots, group_id) else {
                return Err(GroupError::CoordinatorNotAvailable);
            };
            let generation = slot.group.generation();
            let (reply, completions) = slot.group.join(now, request, &suffix);
            let waiter = match reply {
                Reply::Now(result) => Err(result),
                Reply::Parked { member_id } => {
                    let (sender, receiver) = oneshot::channel();
                    slot.joins.insert(member_id, sender);
                    Ok(receiver)
                }
            };
            slot.deliver(completions);
            self.record_generation(cluster, slot, generation);
            waiter
        };
        match waiter {
            Err(result) => result,
            // A dropped sender means the member was replaced by a newer join of its own.
            Ok(receiver) => receiver.await.unwrap_or(Err(GroupError::UnknownMemberId)),
        }
    }

    pub async fn sync(
        &self,
        cluster: &Cluster,
        group_id: &str,
        request: SyncRequest,
    ) -> SyncResult {
        let now = cluster.env.clock.now();
        let waiter = {
            let mut slots = self.slots();
            let Some(slot) = slots.get_mut(group_id) else {
                return Err(GroupError::UnknownMemberId);
            };
            let (reply, completions) = slot.group.sync(now, request);
            let waiter = match reply {
                Reply::Now(result) => Err(result),
                Reply::Parked { member_id } => {
                    let (sender, receiver) = oneshot::channel();
                    slot.syncs.insert(member_id, sender);
                    Ok(receiver)
                }
            };
            slot.deliver(completions);
            waiter
        };
        match waiter {
            Err(result) => result,
            Ok(receiver) => receiver.await.unwrap_or(Err(GroupError::UnknownMemberId)),
        }
    }

    pub fn heartbeat(
        &self,
        cluster: &Cluster,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        let now = cluster.env.clock.now();
        let mut slots = self.slots();
        let slot = slots.get_mut(group_id).ok_or(GroupError::UnknownMemberId)?;
        slot.group
            .heartbeat(now, member_id, instance_id, generation)
    }

    /// LeaveGroup for each (member id, instance id); one result per member.
    pub fn leave(
        &self,
        cluster: &Cluster,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Vec<Result<(), GroupError>> {
        let now = cluster.env.clock.now();
        let mut slots = self.slots();
        let Some(slot) = slots.get_mut(group_id) else {
            return members
                .iter()
                .map(|_| Err(GroupError::UnknownMemberId))
                .collect();
        };
        let generation = slot.group.generation();
        let results = members
            .iter()
            .map(|(member_id, instance_id)| {
                let (result, completions) =
                    slot.group.leave(now, member_id, instance_id.as_deref());
                slot.deliver(completions);
                result
            })
            .collect();
        self.record_generation(cluster, slot, generation);
        results
    }

    /// Starts a rebalance of a group with members (a test control action); Err names the
    /// state that made it impossible (unknown groups are `Dead`).
    pub fn force_rebalance(&self, cluster: &Cluster, group_id: &str) -> Result<(), GroupState> {
        let now = cluster.env.clock.now();
        let mut slots = self.slots();
        let slot = slots.get_mut(group_id).ok_or(GroupState::Dead)?;
        let completions = slot.group.force_rebalance(now)?;
        slot.deliver(completions);
        Ok(())
    }

    /// Expires sessions and ends timed-out rebalances in every group; forgets groups that
    /// have held nothing for long enough.
    pub fn tick(&self, cluster: &Cluster) {
        let now = cluster.env.clock.now();
        let mut slots = self.slots();
        for slot in slots.values_mut() {
            if slot
                .group
                .next_deadline()
                .is_some_and(|deadline| deadline <= now)
            {
                let generation = slot.group.generation();
                let completions = slot.group.tick(now);
                slot.deliver(completions);
                self.record_generation(cluster, slot, generation);
            }
        }
        let retention = self.limits.empty_retention;
        slots.retain(|_, slot| !slot.expired(now, retention));
    }

    /// Writes the group's generation to `__consumer_offsets` when an operation changed it, so
    /// a restarted broker continues from it and still fences older generations.
    fn record_generation(&self, cluster: &Cluster, slot: &Slot, before: i32) {
        let group = &slot.group;
        if group.generation() == before {
            return;
        }
        let value = RecordValue::Group(GroupValue {
            protocol_type: group.protocol_type().unwrap_or_default().to_owned(),
            generation: group.generation(),
            protocol: group.protocol_name().map(str::to_owned),
            leader: group.leader().map(str::to_owned),
            state_timestamp_ms: cluster.env.clock.wall_ms(),
        });
        let record = (
            RecordKey::Group {
                group: group.id().to_owned(),
            },
            Some(value),
        );
        if let Err(error) = append(cluster, group.id(), vec![record]) {
            tracing::warn!(group = group.id(), error = %error, "could not record a group generation");
        }
    }

    // ---- offsets ---------------------------------------------------------------------------

    /// OffsetCommit: checks the member and generation, then records every offset in one batch.
    /// Per-partition results; an Err is the whole request's answer for every partition.
    #[allow(
        clippy::type_complexity,
        reason = "a list of (topic, partition, result)"
    )]
    pub fn commit(
        &self,
        cluster: &Cluster,
        group_id: &str,
        member: (&str, Option<&str>, i32),
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Result<Vec<(String, i32, Result<(), ResponseError>)>, ResponseError> {
        let (member_id, instance_id, generation) = member;
        let mut slots = self.slots();
        if !slots.contains_key(group_id) && generation >= 0 {
            return Err(ResponseError::IllegalGeneration);
        }
        let slot = self.slot_within_bound(&mut slots, group_id)?;
        slot.group
            .check_commit(member_id, instance_id, generation)
            .map_err(|error| error.code())?;
        let mut results = Vec::with_capacity(offsets.len());
        let mut accepted = Vec::new();
        for (topic, partition, committed) in offsets {
            let known = cluster.topic(&topic).is_some_and(|found| {
                (partition as usize) < found.partitions.len() && partition >= 0
            });
            let result = if !known {
                Err(ResponseError::UnknownTopicOrPartition)
            } else if committed
                .metadata
                .as_ref()
                .is_some_and(|m| m.len() > OFFSET_METADATA_BYTES_MAX)
            {
                Err(ResponseError::OffsetMetadataTooLarge)
            } else {
                accepted.push((topic.clone(), partition, committed));
                Ok(())
            };
            results.push((topic, partition, result));
        }
        if accepted.is_empty() {
            return Ok(results);
        }
        let records = accepted
            .iter()
            .map(|(topic, partition, committed)| {
                offset_record(group_id, topic, *partition, Some(committed))
            })
            .collect();
        append(cluster, group_id, records)?;
        // In __consumer_offsets (durable as its flush policy says), not yet answered.
        crash_point!(cluster.env.disk, "offsets.commit.appended");
        for (topic, partition, committed) in accepted {
            slot.offsets.insert((topic, partition), committed);
        }
        Ok(results)
    }

    /// Committed offsets of a group: of the given partitions (None where nothing is
    /// committed), or all of them.
    pub fn committed(
        &self,
        group_id: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Vec<((String, i32), Option<CommittedOffset>)> {
        let slots = self.slots();
        let offsets = slots.get(group_id).map(|slot| &slot.offsets);
        match partitions {
            Some(wanted) => wanted
                .iter()
                .map(|key| (key.clone(), offsets.and_then(|o| o.get(key)).cloned()))
                .collect(),
            None => offsets
                .into_iter()
                .flatten()
                .map(|(key, committed)| (key.clone(), Some(committed.clone())))
                .collect(),
        }
    }

    /// DeleteGroups: only empty groups; their offsets are deleted with them.
    pub fn delete_group(&self, cluster: &Cluster, group_id: &str) -> Result<(), ResponseError> {
        let mut slots = self.slots();
        let slot = slots
            .get_mut(group_id)
            .ok_or(ResponseError::GroupIdNotFound)?;
        match slot.group.state() {
            GroupState::Dead => return Err(ResponseError::GroupIdNotFound),
            GroupState::Empty => {}
            _ => return Err(ResponseError::NonEmptyGroup),
        }
        let mut records: Vec<(RecordKey, Option<RecordValue>)> = slot
            .offsets
            .keys()
            .map(|(topic, partition)| offset_record(group_id, topic, *partition, None))
            .collect();
        records.push((
            RecordKey::Group {
                group: group_id.to_owned(),
            },
            None,
        ));
        append(cluster, group_id, records)?;
        let completions = slot.group.kill();
        slot.deliver(completions);
        slots.remove(group_id);
        Ok(())
    }

    /// OffsetDelete: refused per partition for topics the group's members subscribe to.
    #[allow(
        clippy::type_complexity,
        reason = "a list of (topic, partition, result)"
    )]
    pub fn delete_offsets(
        &self,
        cluster: &Cluster,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<(String, i32, Result<(), ResponseError>)>, ResponseError> {
        let mut slots = self.slots();
        let slot = slots
            .get_mut(group_id)
            .ok_or(ResponseError::GroupIdNotFound)?;
        if slot.group.state() == GroupState::Dead {
            return Err(ResponseError::GroupIdNotFound);
        }
        let subscribed = subscribed_topics(&slot.group);
        let mut results = Vec::with_capacity(partitions.len());
        let mut deleted = Vec::new();
        for (topic, partition) in partitions {
            let result = if subscribed.contains(&topic) {
                Err(ResponseError::GroupSubscribedToTopic)
            } else {
                if slot.offsets.contains_key(&(topic.clone(), partition)) {
                    deleted.push((topic.clone(), partition));
                }
                Ok(())
            };
            results.push((topic, partition, result));
        }
        if !deleted.is_empty() {
            let records = deleted
                .iter()
                .map(|(topic, partition)| offset_record(group_id, topic, *partition, None))
                .collect();
            append(cluster, group_id, records)?;
            for key in deleted {
                slot.offsets.remove(&key);
            }
        }
        Ok(results)
    }

    // ---- inspection ------------------------------------------------------------------------

    pub fn snapshot(&self, group_id: &str) -> Option<GroupSnapshot> {
        let slots = self.slots();
        let slot = slots.get(group_id)?;
        let group = &slot.group;
        Some(GroupSnapshot {
            group_id: group_id.to_owned(),
            state: group.state(),
            protocol_type: group.protocol_type().map(str::to_owned),
            protocol: group.protocol_name().map(str::to_owned),
            generation: group.generation(),
            members: group.summaries(),
            offsets: slot.offsets.clone(),
            subscribed_topics: subscribed_topics(group),
        })
    }

    /// (group id, protocol type, state) of every group, by id.
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        self.slots()
            .values()
            .map(|slot| {
                let group = &slot.group;
                (
                    group.id().to_owned(),
                    group.protocol_type().unwrap_or_default().to_owned(),
                    group.state(),
                )
            })
            .collect()
    }

    // ---- recovery ----------------------------------------------------------------------------

    /// Rebuilds groups (generation only: members rejoin) and committed offsets from
    /// `__consumer_offsets`, replaying each partition in order; later records win and
    /// tombstones delete.
    pub fn load(&self, partitions: &[Arc<Partition>]) -> std::io::Result<()> {
        let mut slots = self.slots();
        let mut scratch = BytesMut::new();
        for partition in partitions {
            let state = partition.state();
            let log = &state.log;
            let mut offset = log.log_start_offset();
            while offset < log.log_end_offset() {
                let bytes = log
                    .read(offset, 1 << 20, true, &mut scratch)
                    .map_err(|error| std::io::Error::other(error.to_string()))?;
                let ranges = batch::split(&bytes).map_err(std::io::Error::other)?;
                let Some(last) = ranges.last() else {
                    break;
                };
                let last_offset = batch::BatchHeader::parse(&bytes[last.clone()])
                    .map_err(std::io::Error::other)?
                    .last_offset();
                for range in ranges {
                    self.replay_batch(&mut slots, &bytes[range]);
                }
                offset = last_offset + 1;
            }
        }
        slots.retain(|_, slot| !slot.is_forgettable() || slot.group.generation() > 0);
        Ok(())
    }

    fn replay_batch(&self, slots: &mut BTreeMap<String, Slot>, batch: &[u8]) {
        let records = match batch_records::decode(batch, &DecodeLimits::default()) {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!(%error, "skipping an unreadable batch in __consumer_offsets");
                return;
            }
        };
        for record in records {
            let Some(key) = record.key.as_deref().and_then(RecordKey::decode) else {
                continue;
            };
            let value = record
                .value
                .as_deref()
                .and_then(|bytes| RecordValue::decode(&key, bytes));
            self.replay_record(slots, key, value);
        }
    }

    fn replay_record(
        &self,
        slots: &mut BTreeMap<String, Slot>,
        key: RecordKey,
        value: Option<RecordValue>,
    ) {
        match (key, value) {
            (
                RecordKey::Offset {
                    group,
                    topic,
                    partition,
                },
                Some(RecordValue::Offset(value)),
            ) => {
                let committed = CommittedOffset {
                    offset: value.offset,
                    leader_epoch: value.leader_epoch,
                    metadata: Some(value.metadata),
                    commit_timestamp_ms: value.commit_timestamp_ms,
                };
                self.slot(slots, &group)
                    .offsets
                    .insert((topic, partition), committed);
            }
            (
                RecordKey::Offset {
                    group,
                    topic,
                    partition,
                },
                None,
            ) => {
                if let Some(slot) = slots.get_mut(&group) {
                    slot.offsets.remove(&(topic, partition));
                }
            }
            (RecordKey::Group { group }, Some(RecordValue::Group(value))) => {
                let slot = self.slot(slots, &group);
                // The protocol type comes back too: it is what keeps a memberless group
                // listed (and its generation fencing) instead of forgotten at the next tick.
                let protocol_type = Some(value.protocol_type).filter(|kind| !kind.is_empty());
                slot.group =
                    Group::with_generation(&group, value.generation, protocol_type, self.limits);
            }
            (RecordKey::Group { group }, None) => {
                slots.remove(&group);
            }
            _ => {}
        }
    }
}

fn subscribed_topics(group: &Group) -> Vec<String> {
    if group.protocol_type() != Some("consumer") {
        return Vec::new();
    }
    let mut topics: Vec<String> = group
        .subscriptions()
        .iter()
        .flat_map(|metadata| super::assignment::subscribed_topics(metadata))
        .collect();
    topics.sort();
    topics.dedup();
    topics
}

fn offset_record(
    group: &str,
    topic: &str,
    partition: i32,
    committed: Option<&CommittedOffset>,
) -> (RecordKey, Option<RecordValue>) {
    let key = RecordKey::Offset {
        group: group.to_owned(),
        topic: topic.to_owned(),
        partition,
    };
    let value = committed.map(|committed| {
        RecordValue::Offset(OffsetValue {
            offset: committed.offset,
            leader_epoch: committed.leader_epoch,
            metadata: committed.metadata.clone().unwrap_or_default(),
            commit_timestamp_ms: committed.commit_timestamp_ms,
        })
    });
    (key, value)
}

/// Appends records to the group's `__consumer_offsets` partition, as its leader, durably per
/// the topic's flush policy.
fn append(
    cluster: &Cluster,
    group_id: &str,
    records: Vec<(RecordKey, Option<RecordValue>)>,
) -> Result<(), ResponseError> {
    let partition = cluster.offsets_partition(group_id)?;
    let now_ms = cluster.env.clock.wall_ms();
    let mut builder = BatchBuilder::new();
    for (key, value) in records {
        builder.append(
            now_ms,
            Some(key.encode()),
            value.map(|v| v.encode()),
            Vec::new(),
        );
    }
    let batch: Bytes = builder.build().map_err(|error| {
        tracing::error!(%error, "building an offsets batch failed");
        ResponseError::UnknownServerError
    })?;
    let outcome =
        partition.append_internal(&batch, now_ms, cluster.config.producers_per_partition_max);
    match outcome.error {
        None => Ok(()),
        Some(ResponseError::NotLeaderOrFollower) => Err(ResponseError::NotCoordinator),
        Some(error) => {
            tracing::error!(
                ?error,
                group = group_id,
                "recording to __consumer_offsets failed"
            );
            Err(ResponseError::CoordinatorNotAvailable)
        }
    }
}

/// How often the broker ticks the coordinator (session expiry has this granularity).
pub const TICK_INTERVAL: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_land_in_the_partitions_kafka_would_choose() {
        // Java: Math.abs("group".hashCode()) % 50 == 98629247 % 50 == 47; "" hashes to 0.
        assert_eq!(offsets_partition_of("group", 50), 47);
        assert_eq!(offsets_partition_of("", 50), 0);
        // Its hash is i32::MIN; Kafka's Utils.abs clears the sign bit, giving 0.
        assert_eq!(offsets_partition_of("polygenelubricants", 50), 0);
    }
}
