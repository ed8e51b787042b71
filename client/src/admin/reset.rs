//! Resetting a consumer group's committed offsets from outside the group, as
//! `kafka-consumer-groups --reset-offsets` does: refused while the group has members, each
//! partition's target resolved with ListOffsets, then committed in one OffsetCommit.

use std::collections::BTreeMap;

use super::{Admin, GroupDescription, OffsetSpec, no_answer};
use crate::error::{Error, KafkaCode, Result};
use crate::types::TopicPartition;

/// Where a reset moves a partition's committed offset: `kafka-consumer-groups`'
/// `--to-earliest`, `--to-latest`, `--to-datetime` and `--to-offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The partition's first readable offset.
    Earliest,
    /// The partition's end: the group skips every record written so far.
    Latest,
    /// The first record whose timestamp is at or after this many ms since the epoch; the end
    /// when no record is that late.
    Timestamp(i64),
    /// This offset, clamped to the partition's earliest and end offsets.
    Offset(i64),
}

impl Admin {
    /// The group's description, provided it has no members (it is `Empty`, or `Dead`: unknown).
    /// Otherwise fails with `NON_EMPTY_GROUP`: Kafka takes offsets from outside a group only
    /// while it has none, and a member would overwrite them with its next commit anyway.
    pub async fn ensure_group_inactive(&self, group: &str) -> Result<GroupDescription> {
        let description = self
            .describe_groups(&[group])
            .await?
            .pop()
            .ok_or_else(|| no_answer(group))?;
        let inactive = matches!(description.state.as_str(), "Empty" | "Dead");
        if inactive && description.members.is_empty() {
            return Ok(description);
        }
        Err(Error::kafka(
            KafkaCode::NON_EMPTY_GROUP,
            format!("resetting the offsets of group {group}"),
            Some(format!(
                "offsets can only be reset while the group is inactive, but it is {} with {} \
                 member(s); stop its consumers first",
                description.state,
                description.members.len()
            )),
        ))
    }

    /// The offset each partition's target resolves to now; changes nothing. A dry run of
    /// [`Admin::reset_group_offsets`].
    pub async fn plan_offset_reset(
        &self,
        targets: &BTreeMap<TopicPartition, ResetTo>,
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        if targets.is_empty() {
            return Ok(BTreeMap::new());
        }
        let lookup = |spec: OffsetSpec| targets.keys().map(move |tp| (tp.clone(), spec)).collect();
        let earliest = self.list_offsets(lookup(OffsetSpec::Earliest)).await?;
        let latest = self.list_offsets(lookup(OffsetSpec::Latest)).await?;
        let at_times: BTreeMap<TopicPartition, OffsetSpec> = targets
            .iter()
            .filter_map(|(tp, target)| match target {
                ResetTo::Timestamp(ms) => Some((tp.clone(), OffsetSpec::Timestamp(*ms))),
                _ => None,
            })
            .collect();
        let found = if at_times.is_empty() {
            BTreeMap::new()
        } else {
            self.list_offsets(at_times).await?
        };

        let mut planned = BTreeMap::new();
        for (tp, target) in targets {
            let listed = |offsets: &BTreeMap<TopicPartition, super::ListedOffset>| {
                offsets
                    .get(tp)
                    .map(|listed| listed.offset)
                    .ok_or_else(|| no_answer(&tp.to_string()))
            };
            let (first, end) = (listed(&earliest)?, listed(&latest)?);
            let offset = match target {
                ResetTo::Earliest => first,
                ResetTo::Latest => end,
                // -1: no record that late.
                ResetTo::Timestamp(_) => match listed(&found)? {
                    -1 => end,
                    offset => offset,
                },
                ResetTo::Offset(offset) => (*offset).clamp(first, end.max(first)),
            };
            planned.insert(tp.clone(), offset);
        }
        Ok(planned)
    }

    /// Moves the group's committed offsets to `targets` and returns the offsets committed.
    /// Refused while the group has members ([`Admin::ensure_group_inactive`]); a member that
    /// joins between that check and the commit makes the broker refuse the commit
    /// (`UNKNOWN_MEMBER_ID` or `ILLEGAL_GENERATION`), so either way nothing is changed under a
    /// running consumer.
    pub async fn reset_group_offsets(
        &self,
        group: &str,
        targets: &BTreeMap<TopicPartition, ResetTo>,
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        self.ensure_group_inactive(group).await?;
        let offsets = self.plan_offset_reset(targets).await?;
        self.alter_group_offsets(group, offsets.clone()).await?;
        Ok(offsets)
    }
}
