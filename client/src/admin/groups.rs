//! Consumer groups: list, describe, delete, and their committed offsets (read, set, delete).

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, GroupId, ListGroupsRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::{Admin, Route, check, no_answer, topic_name};
use crate::error::{Error, KafkaCode, Result};
use crate::types::TopicPartition;
use crate::versions;

/// The protocol type of groups formed by Kafka consumers; only their assignments are decoded.
const CONSUMER_PROTOCOL: &str = "consumer";

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    /// `consumer` for consumer groups; empty for groups that only hold committed offsets.
    pub protocol_type: String,
    /// `Stable`, `Empty`, ... (brokers before Kafka 2.6 do not say).
    pub state: Option<String>,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    /// `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty`, or `Dead` for a group
    /// that does not exist.
    pub state: String,
    pub protocol_type: String,
    /// The assignor the members agreed on (`range`, `cooperative-sticky`, ...).
    pub protocol: String,
    /// The node coordinating the group.
    pub coordinator: i32,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The member's partitions in the current generation, sorted; empty until the group is
    /// Stable, and for groups that are not consumer groups.
    pub assignment: Vec<TopicPartition>,
}

impl Admin {
    /// Every group of the cluster. Each broker answers only for the groups it coordinates, so
    /// every broker is asked; sorted by group id.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let mut brokers: Vec<i32> = self.client.metadata().brokers.keys().copied().collect();
        if brokers.is_empty() {
            self.client.refresh_topics(&[]).await?;
            brokers = self.client.metadata().brokers.keys().copied().collect();
        }
        let mut groups = BTreeMap::new();
        for broker in brokers {
            let listed = self
                .call(Route::Node(broker), |node| async move {
                    let response = self
                        .client
                        .send(node, versions::LIST_GROUPS, |_| {
                            ListGroupsRequest::default()
                        })
                        .await?;
                    check(
                        response.error_code,
                        || format!("ListGroups on node {node}"),
                        None,
                    )?;
                    Ok(response.groups)
                })
                .await?;
            for group in listed {
                let group_id = group.group_id.0.to_string();
                let state = (!group.group_state.is_empty()).then(|| group.group_state.to_string());
                groups.insert(
                    group_id.clone(),
                    GroupListing {
                        group_id,
                        protocol_type: group.protocol_type.to_string(),
                        state,
                    },
                );
            }
        }
        Ok(groups.into_values().collect())
    }

    /// Describes each group, in the order asked. A group that does not exist is described as
    /// `Dead` with no members, as Kafka describes it.
    pub async fn describe_groups(&self, groups: &[&str]) -> Result<Vec<GroupDescription>> {
        let mut described = Vec::with_capacity(groups.len());
        for &group in groups {
            described.push(self.describe_group(group).await?);
        }
        Ok(described)
    }

    async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        self.call(Route::Coordinator(group), |node| async move {
            let response = self
                .client
                .send(node, versions::DESCRIBE_GROUPS, |_| {
                    DescribeGroupsRequest::default().with_groups(vec![group_id(group)])
                })
                .await?;
            let answer = response
                .groups
                .into_iter()
                .find(|answer| answer.group_id.0.as_str() == group)
                .ok_or_else(|| no_answer(group))?;
            if answer.error_code == KafkaCode::GROUP_ID_NOT_FOUND.0 {
                return Ok(dead(group, node));
            }
            check(
                answer.error_code,
                || format!("DescribeGroups for {group}"),
                answer.error_message,
            )?;
            let consumers = answer.protocol_type.as_str() == CONSUMER_PROTOCOL;
            let members = answer
                .members
                .into_iter()
                .map(|member| MemberDescription {
                    member_id: member.member_id.to_string(),
                    group_instance_id: member.group_instance_id.map(|id| id.to_string()),
                    client_id: member.client_id.to_string(),
                    client_host: member.client_host.to_string(),
                    assignment: if consumers {
                        assigned_partitions(&member.member_assignment)
                    } else {
                        Vec::new()
                    },
                })
                .collect();
            Ok(GroupDescription {
                group_id: group.to_string(),
                state: answer.group_state.to_string(),
                protocol_type: answer.protocol_type.to_string(),
                protocol: answer.protocol_data.to_string(),
                coordinator: node,
                members,
            })
        })
        .await
    }

    /// Deletes groups with their committed offsets; one outcome per group (`NON_EMPTY_GROUP`
    /// while it has members, `GROUP_ID_NOT_FOUND`).
    pub async fn delete_groups(&self, groups: &[&str]) -> Result<BTreeMap<String, Result<()>>> {
        let mut outcomes = BTreeMap::new();
        for &group in groups {
            let outcome = self
                .call(Route::Coordinator(group), |node| async move {
                    let response = self
                        .client
                        .send(node, versions::DELETE_GROUPS, |_| {
                            DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)])
                        })
                        .await?;
                    let answer = response
                        .results
                        .into_iter()
                        .find(|answer| answer.group_id.0.as_str() == group)
                        .ok_or_else(|| no_answer(group))?;
                    let outcome = check(
                        answer.error_code,
                        || format!("DeleteGroups for {group}"),
                        None,
                    );
                    // A moved coordinator is retried; any other answer is the group's outcome.
                    match outcome {
                        Err(error) if super::worth_retrying(&error) => Err(error),
                        outcome => Ok(outcome),
                    }
                })
                .await?;
            outcomes.insert(group.to_string(), outcome);
        }
        Ok(outcomes)
    }

    /// Every offset the group has committed (partitions without one are left out).
    pub async fn list_group_offsets(&self, group: &str) -> Result<BTreeMap<TopicPartition, i64>> {
        self.call(Route::Coordinator(group), |node| async move {
            let response = self
                .client
                .send(node, versions::OFFSET_FETCH, |_| {
                    OffsetFetchRequest::default()
                        .with_group_id(group_id(group))
                        .with_topics(None)
                })
                .await?;
            check(
                response.error_code,
                || format!("OffsetFetch for group {group}"),
                None,
            )?;
            let mut offsets = BTreeMap::new();
            for topic in response.topics {
                for partition in topic.partitions {
                    let tp =
                        TopicPartition::new(topic.name.0.to_string(), partition.partition_index);
                    check(
                        partition.error_code,
                        || format!("OffsetFetch for group {group}, {tp}"),
                        None,
                    )?;
                    if partition.committed_offset >= 0 {
                        offsets.insert(tp, partition.committed_offset);
                    }
                }
            }
            Ok(offsets)
        })
        .await
    }

    /// Commits `offsets` for the group from outside it (generation -1, no member id), which
    /// Kafka accepts only while the group has no members: otherwise this fails with the
    /// broker's answer, usually `UNKNOWN_MEMBER_ID`. Describe the group first to tell why.
    pub async fn alter_group_offsets(
        &self,
        group: &str,
        offsets: BTreeMap<TopicPartition, i64>,
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (tp, offset) in &offsets {
            by_topic.entry(&tp.topic).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(tp.partition)
                    .with_committed_offset(*offset)
                    .with_committed_leader_epoch(-1),
            );
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(StrBytes::from_static_str(""))
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(topic, partitions)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(topic_name(topic))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        self.call(Route::Coordinator(group), |node| {
            let request = request.clone();
            async move {
                let response = self
                    .client
                    .send(node, versions::OFFSET_COMMIT, |_| request)
                    .await?;
                for topic in response.topics {
                    for partition in topic.partitions {
                        let Some(code) = KafkaCode::from_code(partition.error_code) else {
                            continue;
                        };
                        let tp = TopicPartition::new(
                            topic.name.0.to_string(),
                            partition.partition_index,
                        );
                        let hint = matches!(
                            code,
                            KafkaCode::UNKNOWN_MEMBER_ID | KafkaCode::ILLEGAL_GENERATION
                        )
                        .then(|| {
                            "Kafka accepts offsets from outside a group only while the group has \
                             no members"
                                .to_string()
                        });
                        return Err(Error::kafka(
                            code,
                            format!("OffsetCommit for group {group}, {tp}"),
                            hint,
                        ));
                    }
                }
                Ok(())
            }
        })
        .await
    }

    /// Deletes the group's committed offsets of `partitions`. Kafka refuses
    /// (`GROUP_SUBSCRIBED_TO_TOPIC`) while members are subscribed to the topic.
    pub async fn delete_group_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<()> {
        if partitions.is_empty() {
            return Ok(());
        }
        let mut by_topic: BTreeMap<&str, Vec<OffsetDeleteRequestPartition>> = BTreeMap::new();
        for tp in partitions {
            by_topic
                .entry(&tp.topic)
                .or_default()
                .push(OffsetDeleteRequestPartition::default().with_partition_index(tp.partition));
        }
        let request = OffsetDeleteRequest::default()
            .with_group_id(group_id(group))
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(topic, partitions)| {
                        OffsetDeleteRequestTopic::default()
                            .with_name(topic_name(topic))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        self.call(Route::Coordinator(group), |node| {
            let request = request.clone();
            async move {
                let response = self
                    .client
                    .send(node, versions::OFFSET_DELETE, |_| request)
                    .await?;
                check(
                    response.error_code,
                    || format!("OffsetDelete for group {group}"),
                    None,
                )?;
                for topic in response.topics {
                    for partition in topic.partitions {
                        check(
                            partition.error_code,
                            || {
                                format!(
                                    "OffsetDelete for group {group}, {}-{}",
                                    topic.name.0, partition.partition_index
                                )
                            },
                            None,
                        )?;
                    }
                }
                Ok(())
            }
        })
        .await
    }
}

fn group_id(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_string()))
}

fn dead(group: &str, coordinator: i32) -> GroupDescription {
    GroupDescription {
        group_id: group.to_string(),
        state: "Dead".to_string(),
        protocol_type: String::new(),
        protocol: String::new(),
        coordinator,
        members: Vec::new(),
    }
}

/// The partitions of a consumer-protocol assignment (an i16 version, then an array of topic
/// name and partition array), sorted; empty if the bytes do not parse. Read by hand with every
/// count checked against the bytes left, because a generated decoder reserves whatever count
/// the bytes claim before reading them.
fn assigned_partitions(assignment: &[u8]) -> Vec<TopicPartition> {
    let mut reader = Reader(assignment);
    let mut parse = || -> Option<Vec<TopicPartition>> {
        reader.i16()?;
        let topics = reader.count(2)?;
        let mut assigned = Vec::new();
        for _ in 0..topics {
            let topic = reader.string()?;
            let partitions = reader.count(4)?;
            for _ in 0..partitions {
                assigned.push(TopicPartition::new(topic.clone(), reader.i32()?));
            }
        }
        Some(assigned)
    };
    let mut assigned = parse().unwrap_or_default();
    assigned.sort();
    assigned
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, count: usize) -> Option<&[u8]> {
        if self.0.len() < count {
            return None;
        }
        let (taken, rest) = self.0.split_at(count);
        self.0 = rest;
        Some(taken)
    }

    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    /// An array count the bytes left could hold, each element taking at least `min_bytes`.
    fn count(&mut self, min_bytes: usize) -> Option<usize> {
        let count = usize::try_from(self.i32()?).ok()?;
        (count <= self.0.len() / min_bytes).then_some(count)
    }

    fn string(&mut self) -> Option<String> {
        let length = usize::try_from(self.i16()?).ok()?;
        Some(String::from_utf8_lossy(self.take(length)?).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};

    fn assignment(topics: &[(&str, &[i32])], version: i16) -> BytesMut {
        let mut bytes = BytesMut::new();
        bytes.put_i16(version);
        bytes.put_i32(topics.len() as i32);
        for (topic, partitions) in topics {
            bytes.put_i16(topic.len() as i16);
            bytes.put_slice(topic.as_bytes());
            bytes.put_i32(partitions.len() as i32);
            for partition in *partitions {
                bytes.put_i32(*partition);
            }
        }
        bytes
    }

    #[test]
    fn an_assignment_reads_as_sorted_partitions_whatever_its_version() {
        let mut bytes = assignment(&[("b", &[1, 0]), ("a", &[2])], 3);
        bytes.put_i32(-1); // user data: null, which later versions carry after the topics
        assert_eq!(
            assigned_partitions(&bytes),
            vec![
                TopicPartition::new("a", 2),
                TopicPartition::new("b", 0),
                TopicPartition::new("b", 1),
            ]
        );
    }

    #[test]
    fn an_assignment_claiming_more_than_its_bytes_reads_as_none() {
        let mut bytes = BytesMut::new();
        bytes.put_i16(0);
        bytes.put_i32(i32::MAX);
        assert!(assigned_partitions(&bytes).is_empty());
        let truncated = assignment(&[("topic", &[0, 1, 2])], 0);
        assert!(assigned_partitions(&truncated[..truncated.len() - 2]).is_empty());
        assert!(assigned_partitions(&[]).is_empty());
    }
}
