//! `tidepool groups ...`.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, bail};
use clap::{ArgGroup, Args};
use tidepool_client::{Admin, GroupDescription, OffsetSpec, ResetTo, TopicPartition};

use super::datetime;
use super::table::{Table, or_dash};
use super::topics::{existing_topic, offsets};

#[derive(Args)]
#[command(group(
    ArgGroup::new("target")
        .required(true)
        .args(["to_earliest", "to_latest", "to_datetime", "to_offset"]),
))]
pub struct ResetArgs {
    group: String,
    /// To each partition's first readable offset.
    #[arg(long)]
    to_earliest: bool,
    /// To each partition's end: the group skips every record written so far.
    #[arg(long)]
    to_latest: bool,
    /// To the first record at or after a time: RFC 3339 (2026-01-02T03:04:05Z) or epoch
    /// milliseconds. Partitions with no record that late go to their end.
    #[arg(long, value_name = "TIME", value_parser = datetime::parse_millis)]
    to_datetime: Option<i64>,
    /// To this offset, clamped to each partition's earliest and end offsets.
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// `TOPIC` or `TOPIC:PARTITION,PARTITION...`; repeatable. Default: every partition the
    /// group has committed an offset for.
    #[arg(long = "topic", value_name = "TOPIC[:PARTITIONS]")]
    topics: Vec<String>,
    /// Show the new offsets without committing them.
    #[arg(long)]
    dry_run: bool,
}

pub async fn list(admin: &Admin) -> anyhow::Result<()> {
    let groups = admin.list_groups().await?;
    let mut table = Table::new(&["GROUP", "STATE", "PROTOCOL-TYPE"]);
    for group in groups {
        table.row(vec![
            group.group_id,
            or_dash(group.state),
            or_dash((!group.protocol_type.is_empty()).then_some(group.protocol_type)),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

pub async fn describe(admin: &Admin, group: &str) -> anyhow::Result<()> {
    let description = existing_group(admin, group).await?;
    let committed = admin.list_group_offsets(group).await?;
    let mut owner: BTreeMap<TopicPartition, &str> = BTreeMap::new();
    for member in &description.members {
        for tp in &member.assignment {
            owner.insert(tp.clone(), &member.member_id);
        }
    }
    let partitions: BTreeSet<TopicPartition> =
        committed.keys().chain(owner.keys()).cloned().collect();
    let end_offsets = end_offsets(admin, &partitions).await;

    println!("Group: {group}");
    println!("State: {}", description.state);
    println!(
        "Protocol type: {}",
        or_dash(non_empty(&description.protocol_type))
    );
    println!("Assignor: {}", or_dash(non_empty(&description.protocol)));
    println!("Coordinator: {}", description.coordinator);
    println!();
    if description.members.is_empty() {
        println!("Members: none");
    } else {
        let mut table = Table::new(&[
            "MEMBER-ID",
            "INSTANCE-ID",
            "CLIENT-ID",
            "HOST",
            "ASSIGNMENT",
        ]);
        for member in &description.members {
            table.row(vec![
                member.member_id.clone(),
                or_dash(member.group_instance_id.as_deref()),
                member.client_id.clone(),
                member.client_host.clone(),
                or_dash(non_empty(&assignment(&member.assignment))),
            ]);
        }
        print!("{}", table.render());
    }
    println!();
    if partitions.is_empty() {
        println!("Offsets: none committed");
        return Ok(());
    }
    let mut table = Table::new(&[
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
    ]);
    for tp in &partitions {
        let current = committed.get(tp).copied();
        let end = end_offsets.get(tp).copied();
        let lag = current
            .zip(end)
            .map(|(current, end)| (end - current).max(0));
        table.row(vec![
            tp.topic.clone(),
            tp.partition.to_string(),
            or_dash(current),
            or_dash(end),
            or_dash(lag),
            or_dash(owner.get(tp)),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

pub async fn reset_offsets(admin: &Admin, args: ResetArgs) -> anyhow::Result<()> {
    let group = args.group.as_str();
    admin.ensure_group_inactive(group).await?;
    let committed = admin.list_group_offsets(group).await?;
    let partitions = if args.topics.is_empty() {
        if committed.is_empty() {
            bail!("group {group} has no committed offsets to reset; name partitions with --topic");
        }
        committed.keys().cloned().collect()
    } else {
        named_partitions(admin, &args.topics).await?
    };
    let target = if args.to_earliest {
        ResetTo::Earliest
    } else if args.to_latest {
        ResetTo::Latest
    } else if let Some(ms) = args.to_datetime {
        ResetTo::Timestamp(ms)
    } else if let Some(offset) = args.to_offset {
        ResetTo::Offset(offset)
    } else {
        bail!("name one of --to-earliest, --to-latest, --to-datetime, --to-offset");
    };
    let targets = partitions.into_iter().map(|tp| (tp, target)).collect();
    let new_offsets = admin
        .plan_offset_reset(&targets)
        .await
        .context("looking up the new offsets")?;

    let mut table = Table::new(&["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"]);
    for (tp, offset) in &new_offsets {
        table.row(vec![
            tp.topic.clone(),
            tp.partition.to_string(),
            or_dash(committed.get(tp)),
            offset.to_string(),
        ]);
    }
    print!("{}", table.render());
    if args.dry_run {
        println!("Dry run: the offsets of group {group} were not changed.");
        return Ok(());
    }
    admin.alter_group_offsets(group, new_offsets).await?;
    println!("Reset the offsets of group {group}.");
    Ok(())
}

async fn existing_group(admin: &Admin, group: &str) -> anyhow::Result<GroupDescription> {
    let description = admin.describe_groups(&[group]).await?.pop();
    match description {
        Some(description) if description.state != "Dead" => Ok(description),
        _ => bail!("group {group} does not exist"),
    }
}

/// `TOPIC` (every partition) or `TOPIC:0,2` (those partitions, which must exist).
async fn named_partitions(
    admin: &Admin,
    specs: &[String],
) -> anyhow::Result<BTreeSet<TopicPartition>> {
    let mut partitions = BTreeSet::new();
    for spec in specs {
        let (name, wanted) = match spec.split_once(':') {
            Some((name, list)) => (name, Some(list)),
            None => (spec.as_str(), None),
        };
        let topic = existing_topic(admin, name).await?;
        let count = topic.partitions.len();
        match wanted {
            None => partitions.extend((0..count).map(|p| TopicPartition::new(name, p as i32))),
            Some(list) => {
                for item in list.split(',') {
                    let partition: i32 = item.trim().parse().map_err(|_| {
                        anyhow::anyhow!("{item:?} in --topic {spec} is not a partition number")
                    })?;
                    if usize::try_from(partition).map_or(true, |p| p >= count) {
                        bail!("topic {name} has no partition {partition} (it has {count})");
                    }
                    partitions.insert(TopicPartition::new(name, partition));
                }
            }
        }
    }
    Ok(partitions)
}

/// End offsets per topic, so one deleted topic the group still has offsets for does not hide
/// the others' lag.
async fn end_offsets(
    admin: &Admin,
    partitions: &BTreeSet<TopicPartition>,
) -> BTreeMap<TopicPartition, i64> {
    let mut by_topic: BTreeMap<&str, Vec<TopicPartition>> = BTreeMap::new();
    for tp in partitions {
        by_topic.entry(&tp.topic).or_default().push(tp.clone());
    }
    let mut found = BTreeMap::new();
    for (topic, partitions) in by_topic {
        match offsets(admin, &partitions, OffsetSpec::Latest).await {
            Ok(offsets) => found.extend(offsets),
            Err(error) => tracing::warn!(topic, "no end offsets: {error:#}"),
        }
    }
    found
}

/// `topic:0,1 other:3`.
fn assignment(partitions: &[TopicPartition]) -> String {
    let mut by_topic: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for tp in partitions {
        by_topic
            .entry(&tp.topic)
            .or_default()
            .push(tp.partition.to_string());
    }
    let topics: Vec<String> = by_topic
        .into_iter()
        .map(|(topic, partitions)| format!("{topic}:{}", partitions.join(",")))
        .collect();
    topics.join(" ")
}

fn non_empty(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}
