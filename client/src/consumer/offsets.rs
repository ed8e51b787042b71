//! Offsets on the wire: OffsetCommit and OffsetFetch to the group coordinator, ListOffsets to
//! partition leaders. One request per call; the consumer decides about retries, because what
//! an error means (a lost generation, a moved coordinator) depends on its state.

use std::collections::BTreeMap;

use kafka_protocol::messages::{
    BrokerId, GroupId, ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest, TopicName,
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
    offset_fetch_request::OffsetFetchRequestTopic,
};

use super::OffsetAndMetadata;
use super::group::text;
use crate::client::Client;
use crate::error::{KafkaCode, Result};
use crate::types::TopicPartition;
use crate::versions;

/// ListOffsets' timestamp for the log start.
pub(crate) const EARLIEST: i64 = -2;
/// ListOffsets' timestamp for the high watermark.
pub(crate) const LATEST: i64 = -1;

/// Who commits: a group member in a generation, or (generation -1, no member) a consumer that
/// assigns its partitions itself.
pub(crate) struct Committer<'a> {
    pub group_id: &'a str,
    pub generation: i32,
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
}

fn by_topic<T>(
    items: impl IntoIterator<Item = (TopicPartition, T)>,
) -> BTreeMap<String, Vec<(i32, T)>> {
    let mut topics: BTreeMap<String, Vec<(i32, T)>> = BTreeMap::new();
    for (tp, item) in items {
        topics
            .entry(tp.topic)
            .or_default()
            .push((tp.partition, item));
    }
    topics
}

/// One OffsetCommit; each partition's error code (`None`: committed).
pub(crate) async fn commit(
    client: &Client,
    node: i32,
    committer: &Committer<'_>,
    offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
) -> Result<BTreeMap<TopicPartition, Option<KafkaCode>>> {
    let topics = by_topic(offsets.iter().map(|(tp, o)| (tp.clone(), o.clone())));
    let response = client
        .send(node, versions::OFFSET_COMMIT, |version| {
            let mut request = OffsetCommitRequest::default()
                .with_group_id(GroupId(text(committer.group_id)))
                .with_generation_id_or_member_epoch(committer.generation)
                .with_member_id(text(committer.member_id))
                .with_topics(
                    topics
                        .iter()
                        .map(|(topic, partitions)| {
                            OffsetCommitRequestTopic::default()
                                .with_name(TopicName(text(topic)))
                                .with_partitions(
                                    partitions
                                        .iter()
                                        .map(|(partition, offset)| {
                                            let row = OffsetCommitRequestPartition::default()
                                                .with_partition_index(*partition)
                                                .with_committed_offset(offset.offset)
                                                .with_committed_metadata(Some(text(
                                                    offset.metadata.as_deref().unwrap_or_default(),
                                                )));
                                            if version >= 6 {
                                                row.with_committed_leader_epoch(
                                                    offset.leader_epoch.unwrap_or(-1),
                                                )
                                            } else {
                                                row
                                            }
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                );
            if version >= 7 {
                request = request.with_group_instance_id(committer.instance_id.map(text));
            }
            request
        })
        .await?;
    let mut answers = BTreeMap::new();
    for topic in response.topics {
        for partition in topic.partitions {
            answers.insert(
                TopicPartition::new(topic.name.0.to_string(), partition.partition_index),
                KafkaCode::from_code(partition.error_code),
            );
        }
    }
    Ok(answers)
}

/// What OffsetFetch answered: a group-level error, or per partition the committed offset
/// (`None`: nothing committed) or an error.
pub(crate) enum Committed {
    Group(KafkaCode),
    Partitions(BTreeMap<TopicPartition, std::result::Result<Option<OffsetAndMetadata>, KafkaCode>>),
}

pub(crate) async fn fetch_committed(
    client: &Client,
    node: i32,
    group_id: &str,
    partitions: &[TopicPartition],
) -> Result<Committed> {
    let topics = by_topic(partitions.iter().map(|tp| (tp.clone(), ())));
    let response = client
        .send(node, versions::OFFSET_FETCH, |_| {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(text(group_id)))
                .with_topics(Some(
                    topics
                        .iter()
                        .map(|(topic, partitions)| {
                            OffsetFetchRequestTopic::default()
                                .with_name(TopicName(text(topic)))
                                .with_partition_indexes(
                                    partitions.iter().map(|(p, ())| *p).collect(),
                                )
                        })
                        .collect(),
                ))
        })
        .await?;
    if let Some(code) = KafkaCode::from_code(response.error_code) {
        return Ok(Committed::Group(code));
    }
    let mut answers = BTreeMap::new();
    for topic in response.topics {
        for partition in topic.partitions {
            let tp = TopicPartition::new(topic.name.0.to_string(), partition.partition_index);
            let answer = match KafkaCode::from_code(partition.error_code) {
                Some(code) => Err(code),
                // Offset -1 is Kafka's "nothing committed".
                None if partition.committed_offset < 0 => Ok(None),
                None => Ok(Some(OffsetAndMetadata {
                    offset: partition.committed_offset,
                    metadata: partition
                        .metadata
                        .map(|m| m.to_string())
                        .filter(|m| !m.is_empty()),
                    leader_epoch: (partition.committed_leader_epoch >= 0)
                        .then_some(partition.committed_leader_epoch),
                })),
            };
            answers.insert(tp, answer);
        }
    }
    Ok(Committed::Partitions(answers))
}

/// One ListOffsets to a leader: per partition, the offset at `timestamp` (EARLIEST, LATEST)
/// and its leader epoch, or an error.
pub(crate) async fn list_offsets(
    client: &Client,
    node: i32,
    partitions: &[(TopicPartition, i32)],
    timestamp: i64,
) -> Result<BTreeMap<TopicPartition, std::result::Result<(i64, Option<i32>), KafkaCode>>> {
    let topics = by_topic(partitions.iter().cloned());
    let response = client
        .send(node, versions::LIST_OFFSETS, |version| {
            ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(
                    topics
                        .iter()
                        .map(|(topic, partitions)| {
                            ListOffsetsTopic::default()
                                .with_name(TopicName(text(topic)))
                                .with_partitions(
                                    partitions
                                        .iter()
                                        .map(|(partition, epoch)| {
                                            let row = ListOffsetsPartition::default()
                                                .with_partition_index(*partition)
                                                .with_timestamp(timestamp);
                                            if version >= 4 {
                                                row.with_current_leader_epoch(*epoch)
                                            } else {
                                                row
                                            }
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                )
        })
        .await?;
    let mut answers = BTreeMap::new();
    for topic in response.topics {
        for partition in topic.partitions {
            let tp = TopicPartition::new(topic.name.0.to_string(), partition.partition_index);
            let answer = match KafkaCode::from_code(partition.error_code) {
                Some(code) => Err(code),
                None => Ok((
                    partition.offset,
                    (partition.leader_epoch >= 0).then_some(partition.leader_epoch),
                )),
            };
            answers.insert(tp, answer);
        }
    }
    Ok(answers)
}
