//! Replay (DESIGN.md §5): move one stage's consumer group back and let it reprocess. Nothing
//! upstream changes — the events are still in `events.raw` — and no other stage notices, since
//! each reads with its own group.
//!
//! A replay is: stop every instance of the stage; [`Store::clear_stage`] if its derived state
//! is to be rebuilt rather than re-confirmed (without it the dedup keys turn every replayed
//! event into a no-op); [`reset_stage`]; start the stage again.
//!
//! # The retry topic is left alone
//!
//! [`reset_stage`] moves only the topics it is given, normally the source topic. The group's
//! committed offsets on `events.retry` already say exactly which retries are finished (behind
//! them) and which are still pending (after them), and a replay of the source changes neither:
//!
//! - moving them back would run finished retries again, with stale attempt counts, and a
//!   timestamp there matches when a retry was *produced*, not when its event arrived;
//! - moving them to the end would drop the pending ones, and a replay from a timestamp or an
//!   offset after such an event's source record would never run it again.
//!
//! Left alone, a pending retry whose event is also replayed from the source is applied once:
//! the dedup key absorbs the second delivery, as for any redelivery.
//!
//! [`Store::clear_stage`]: crate::store::Store::clear_stage

use std::collections::BTreeMap;

use tidepool_client::{Admin, Client, KafkaCode, ResetTo, TopicPartition};

/// Where a replay starts, on every partition of the replayed topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    /// Each partition's first readable offset: everything the topic still retains.
    Earliest,
    /// The first record whose timestamp is at or after this many ms since the epoch; a
    /// partition with no record that late starts at its end. On `events.raw` the record
    /// timestamp is the event's arrival at the collector, not the event's own time.
    Timestamp(i64),
    /// This offset on every partition, clamped to each partition's earliest and end offsets.
    Offset(i64),
}

impl ReplayFrom {
    fn target(self) -> ResetTo {
        match self {
            ReplayFrom::Earliest => ResetTo::Earliest,
            ReplayFrom::Timestamp(ms) => ResetTo::Timestamp(ms),
            ReplayFrom::Offset(offset) => ResetTo::Offset(offset),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The stage's group has members. Offsets committed from outside would be overwritten by
    /// the members' next commit, so Kafka (and `kafka-consumer-groups`) refuse; so does this.
    #[error("cannot replay stage {group} while it runs: stop every instance of it first")]
    StageRunning {
        group: String,
        #[source]
        source: tidepool_client::Error,
    },
    #[error("nothing to replay: name at least one topic")]
    NoTopics,
    #[error("kafka: {0}")]
    Kafka(#[from] tidepool_client::Error),
}

/// Resets `group`'s committed offsets on every partition of `topics` to `from` and returns
/// the new offsets. Refused with [`ReplayError::StageRunning`] while the group has members,
/// including one that joins during the reset. Pass the source topic (`events.raw`), not the
/// retry topic: see the module documentation.
pub async fn reset_stage(
    client: &Client,
    group: &str,
    topics: &[&str],
    from: ReplayFrom,
) -> Result<BTreeMap<TopicPartition, i64>, ReplayError> {
    if topics.is_empty() {
        return Err(ReplayError::NoTopics);
    }
    // Fresh metadata: a cached partition count may predate partitions added since.
    client.refresh_topics(topics).await?;
    let mut targets = BTreeMap::new();
    for topic in topics {
        for partition in client.topic(topic).await?.partitions {
            targets.insert(
                TopicPartition::new(*topic, partition.partition),
                from.target(),
            );
        }
    }
    Admin::new(client.clone())
        .reset_group_offsets(group, &targets)
        .await
        .map_err(|error| {
            if refused_for_members(&error) {
                ReplayError::StageRunning {
                    group: group.to_owned(),
                    source: error,
                }
            } else {
                ReplayError::Kafka(error)
            }
        })
}

/// The answers meaning the group has members: the admin's own check, or the broker refusing
/// a commit from outside the group because one joined after that check.
fn refused_for_members(error: &tidepool_client::Error) -> bool {
    matches!(
        error.code(),
        Some(
            KafkaCode::NON_EMPTY_GROUP
                | KafkaCode::UNKNOWN_MEMBER_ID
                | KafkaCode::ILLEGAL_GENERATION
                | KafkaCode::REBALANCE_IN_PROGRESS
        )
    )
}
