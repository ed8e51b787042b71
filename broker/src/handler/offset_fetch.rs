//! OffsetFetch: a group's committed offsets, for some partitions or all; one group up to v7,
//! many from v8.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::group::CommittedOffset;
use crate::server::Node;

const GROUPS_FROM_VERSION: i16 = 8;

/// One topic's partitions and what each committed.
type TopicRows = (String, Vec<(i32, Option<CommittedOffset>)>);

/// One group's answer: a group-level error, or (topic, partition, committed) rows.
type GroupAnswer = Result<Vec<(String, i32, Option<CommittedOffset>)>, ResponseError>;

pub fn handle(node: &Node, version: i16, request: OffsetFetchRequest) -> OffsetFetchResponse {
    if version >= GROUPS_FROM_VERSION {
        let groups = request
            .groups
            .into_iter()
            .map(|group| {
                let wanted = group.topics.map(|topics| {
                    topics
                        .into_iter()
                        .flat_map(|t| {
                            t.partition_indexes
                                .into_iter()
                                .map(move |p| (t.name.0.to_string(), p))
                        })
                        .collect::<Vec<_>>()
                });
                let answer = fetch(node, &group.group_id.0, wanted);
                group_answer_v8(group.group_id, answer)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = request.topics.map(|topics| {
        topics
            .into_iter()
            .flat_map(|t| {
                t.partition_indexes
                    .into_iter()
                    .map(move |p| (t.name.0.to_string(), p))
            })
            .collect::<Vec<_>>()
    });
    match fetch(node, &request.group_id.0, wanted) {
        Ok(rows) => {
            OffsetFetchResponse::default().with_topics(group_rows(rows, |topic, partitions| {
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic)))
                    .with_partitions(
                        partitions
                            .into_iter()
                            .map(|(partition, committed)| {
                                let (offset, epoch, metadata) = fields(committed);
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(partition)
                                    .with_committed_offset(offset)
                                    .with_committed_leader_epoch(epoch)
                                    .with_metadata(metadata)
                            })
                            .collect(),
                    )
            }))
        }
        Err(error) => OffsetFetchResponse::default().with_error_code(error.code()),
    }
}

fn fetch(node: &Node, group_id: &str, wanted: Option<Vec<(String, i32)>>) -> GroupAnswer {
    if group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    node.cluster.check_coordinator(node.id, group_id)?;
    let rows = node.cluster.groups.committed(group_id, wanted.as_deref());
    Ok(rows
        .into_iter()
        .map(|((topic, partition), committed)| (topic, partition, committed))
        .collect())
}

/// Offset -1, epoch -1 and empty metadata say "nothing committed", as in Kafka.
fn fields(committed: Option<CommittedOffset>) -> (i64, i32, Option<StrBytes>) {
    match committed {
        Some(committed) => (
            committed.offset,
            committed.leader_epoch,
            Some(StrBytes::from_string(
                committed.metadata.unwrap_or_default(),
            )),
        ),
        None => (-1, -1, Some(StrBytes::from_static_str(""))),
    }
}

/// Groups rows by topic, keeping the order topics first appear in.
fn group_rows<T>(
    rows: Vec<(String, i32, Option<CommittedOffset>)>,
    build: impl Fn(String, Vec<(i32, Option<CommittedOffset>)>) -> T,
) -> Vec<T> {
    let mut topics: Vec<TopicRows> = Vec::new();
    for (topic, partition, committed) in rows {
        match topics.iter_mut().find(|(name, _)| *name == topic) {
            Some((_, partitions)) => partitions.push((partition, committed)),
            None => topics.push((topic, vec![(partition, committed)])),
        }
    }
    topics
        .into_iter()
        .map(|(topic, partitions)| build(topic, partitions))
        .collect()
}

fn group_answer_v8(group_id: GroupId, answer: GroupAnswer) -> OffsetFetchResponseGroup {
    match answer {
        Ok(rows) => OffsetFetchResponseGroup::default()
            .with_group_id(group_id)
            .with_topics(group_rows(rows, |topic, partitions| {
                OffsetFetchResponseTopics::default()
                    .with_name(TopicName(StrBytes::from_string(topic)))
                    .with_partitions(
                        partitions
                            .into_iter()
                            .map(|(partition, committed)| {
                                let (offset, epoch, metadata) = fields(committed);
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(partition)
                                    .with_committed_offset(offset)
                                    .with_committed_leader_epoch(epoch)
                                    .with_metadata(metadata)
                            })
                            .collect(),
                    )
            })),
        Err(error) => OffsetFetchResponseGroup::default()
            .with_group_id(group_id)
            .with_error_code(error.code()),
    }
}
