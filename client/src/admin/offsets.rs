//! Requests answered by partition leaders: ListOffsets and DeleteRecords. Partitions are
//! grouped per leader; partitions whose leader moved are sent again to the new one.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, DeleteRecordsRequest, ListOffsetsRequest};

use super::{Admin, Route, topic_name, worth_retrying};
use crate::error::{Error, KafkaCode, Result};
use crate::types::TopicPartition;
use crate::versions;

/// Which offset of a partition to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset: the first offset still readable.
    Earliest,
    /// The high watermark: the offset the next record will get.
    Latest,
    /// The record with the largest timestamp (Kafka 3.0+).
    MaxTimestamp,
    /// The first record with a timestamp at or after this many ms since the epoch.
    Timestamp(i64),
}

impl OffsetSpec {
    /// The ListOffsets timestamp field, which encodes the special lookups as negative values.
    fn wire(self) -> Result<i64> {
        match self {
            OffsetSpec::Earliest => Ok(-2),
            OffsetSpec::Latest => Ok(-1),
            OffsetSpec::MaxTimestamp => Ok(-3),
            OffsetSpec::Timestamp(ms) if ms >= 0 => Ok(ms),
            OffsetSpec::Timestamp(ms) => Err(Error::Invalid(format!(
                "timestamp {ms} is negative; use Earliest or Latest"
            ))),
        }
    }
}

/// A ListOffsets answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// -1 when a timestamp lookup finds no record at or after the timestamp.
    pub offset: i64,
    /// The found record's timestamp; -1 for Earliest and Latest.
    pub timestamp: i64,
    pub leader_epoch: Option<i32>,
}

/// One partition's outcome in a leader's answer.
type Answers<T> = BTreeMap<TopicPartition, Result<T>>;

impl Admin {
    /// Looks up offsets, asking each partition's leader.
    pub async fn list_offsets(
        &self,
        wanted: BTreeMap<TopicPartition, OffsetSpec>,
    ) -> Result<BTreeMap<TopicPartition, ListedOffset>> {
        let wanted = wanted
            .into_iter()
            .map(|(tp, spec)| Ok((tp, spec.wire()?)))
            .collect::<Result<BTreeMap<TopicPartition, i64>>>()?;
        self.per_leader(wanted, |node, partitions| {
            self.list_offsets_once(node, partitions)
        })
        .await
    }

    async fn list_offsets_once(
        &self,
        node: i32,
        partitions: BTreeMap<TopicPartition, i64>,
    ) -> Result<Answers<ListedOffset>> {
        let mut by_topic: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
        for (tp, timestamp) in &partitions {
            by_topic.entry(&tp.topic).or_default().push(
                ListOffsetsPartition::default()
                    .with_partition_index(tp.partition)
                    .with_timestamp(*timestamp),
            );
        }
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(0)
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(topic, partitions)| {
                        ListOffsetsTopic::default()
                            .with_name(topic_name(topic))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let response = self
            .client
            .send(node, versions::LIST_OFFSETS, |_| request)
            .await?;
        let mut answers = BTreeMap::new();
        for topic in response.topics {
            for partition in topic.partitions {
                let tp = TopicPartition::new(topic.name.0.to_string(), partition.partition_index);
                let answer = match KafkaCode::from_code(partition.error_code) {
                    Some(code) => Err(Error::kafka(code, format!("ListOffsets for {tp}"), None)),
                    None => Ok(ListedOffset {
                        offset: partition.offset,
                        timestamp: partition.timestamp,
                        leader_epoch: (partition.leader_epoch >= 0)
                            .then_some(partition.leader_epoch),
                    }),
                };
                answers.insert(tp, answer);
            }
        }
        Ok(answers)
    }

    /// Deletes every record before the given offset of each partition (-1: before the high
    /// watermark, so every record) and returns each partition's new log start offset.
    pub async fn delete_records(
        &self,
        before: BTreeMap<TopicPartition, i64>,
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        if let Some((tp, offset)) = before.iter().find(|(_, offset)| **offset < -1) {
            return Err(Error::Invalid(format!(
                "cannot delete records of {tp} before offset {offset}"
            )));
        }
        self.per_leader(before, |node, partitions| {
            self.delete_records_once(node, partitions)
        })
        .await
    }

    async fn delete_records_once(
        &self,
        node: i32,
        partitions: BTreeMap<TopicPartition, i64>,
    ) -> Result<Answers<i64>> {
        let mut by_topic: BTreeMap<&str, Vec<DeleteRecordsPartition>> = BTreeMap::new();
        for (tp, offset) in &partitions {
            by_topic.entry(&tp.topic).or_default().push(
                DeleteRecordsPartition::default()
                    .with_partition_index(tp.partition)
                    .with_offset(*offset),
            );
        }
        let request = DeleteRecordsRequest::default()
            .with_timeout_ms(self.timeout_ms())
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(topic, partitions)| {
                        DeleteRecordsTopic::default()
                            .with_name(topic_name(topic))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let response = self
            .client
            .send(node, versions::DELETE_RECORDS, |_| request)
            .await?;
        let mut answers = BTreeMap::new();
        for topic in response.topics {
            for partition in topic.partitions {
                let tp = TopicPartition::new(topic.name.0.to_string(), partition.partition_index);
                let answer = match KafkaCode::from_code(partition.error_code) {
                    Some(code) => Err(Error::kafka(
                        code,
                        format!("DeleteRecords for {tp} before {}", partitions[&tp]),
                        None,
                    )),
                    None => Ok(partition.low_watermark),
                };
                answers.insert(tp, answer);
            }
        }
        Ok(answers)
    }

    /// Sends each partition's request to its leader, and again to the new leader while the
    /// answer says leadership moved (or the leader is not known yet), until the request
    /// timeout. Any other error for any partition fails the whole call.
    async fn per_leader<V, T, F, Fut>(
        &self,
        mut pending: BTreeMap<TopicPartition, V>,
        op: F,
    ) -> Result<BTreeMap<TopicPartition, T>>
    where
        V: Clone,
        F: Fn(i32, BTreeMap<TopicPartition, V>) -> Fut,
        Fut: Future<Output = Result<Answers<T>>>,
    {
        let deadline = self.client.now() + self.client.config().request_timeout;
        let mut done = BTreeMap::new();
        let mut attempt = 0;
        loop {
            let mut by_leader: BTreeMap<i32, BTreeMap<TopicPartition, V>> = BTreeMap::new();
            let mut last_error = None;
            for (tp, value) in &pending {
                match self.leader_of(tp).await? {
                    Some(leader) => {
                        by_leader
                            .entry(leader)
                            .or_default()
                            .insert(tp.clone(), value.clone());
                    }
                    None => {
                        last_error = Some(Error::kafka(
                            KafkaCode::LEADER_NOT_AVAILABLE,
                            format!("metadata for {tp}"),
                            None,
                        ));
                    }
                }
            }
            for (leader, partitions) in by_leader {
                let sent: Vec<TopicPartition> = partitions.keys().cloned().collect();
                let mut answers = match op(leader, partitions).await {
                    Ok(answers) => answers,
                    Err(error) if worth_retrying(&error) => {
                        self.recover(Route::Node(leader), &error).await;
                        last_error = Some(error);
                        continue;
                    }
                    Err(error) => return Err(error),
                };
                for tp in sent {
                    match answers.remove(&tp) {
                        Some(Ok(answer)) => {
                            pending.remove(&tp);
                            done.insert(tp, answer);
                        }
                        // The topic was in metadata, so an unknown partition here means this
                        // broker has not heard of it yet; Kafka marks it retriable for that.
                        Some(Err(error)) if error.is_retriable() => last_error = Some(error),
                        Some(Err(error)) => return Err(error),
                        None => return Err(super::no_answer(&tp.to_string())),
                    }
                }
            }
            let Some(error) = last_error else {
                return Ok(done);
            };
            if self.client.now() >= deadline {
                return Err(error);
            }
            tracing::debug!(%error, attempt, "retrying partitions whose leader moved");
            let topics: BTreeSet<&str> = pending.keys().map(|tp| tp.topic.as_str()).collect();
            let topics: Vec<&str> = topics.into_iter().collect();
            if let Err(error) = self.client.refresh_topics(&topics).await {
                tracing::debug!(%error, "metadata refresh before a retry failed");
            }
            self.client.sleep(self.client.backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// The partition's leader from metadata (`None` while it has none). A topic metadata does
    /// not know, or a partition beyond its count, fails at once: no retry would find it.
    async fn leader_of(&self, tp: &TopicPartition) -> Result<Option<i32>> {
        let topic = self.client.topic(&tp.topic).await?;
        let partition = usize::try_from(tp.partition)
            .ok()
            .and_then(|index| topic.partitions.get(index))
            .ok_or_else(|| {
                Error::kafka(
                    KafkaCode::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("metadata for {tp}"),
                    Some(format!(
                        "topic {} has {} partitions",
                        tp.topic,
                        topic.partitions.len()
                    )),
                )
            })?;
        Ok((partition.leader >= 0).then_some(partition.leader))
    }
}
