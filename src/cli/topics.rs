//! `tidepool topics ...`.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use tidepool_client::{
    Admin, AlterOp, ConfigResource, ConfigSource, KafkaCode, NewTopic, OffsetSpec, TopicMetadata,
    TopicPartition,
};

use super::table::{Table, or_dash};

pub async fn list(admin: &Admin) -> anyhow::Result<()> {
    let mut topics = admin.client().list_topics().await?;
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    let mut table = Table::new(&["TOPIC", "PARTITIONS", "REPLICATION-FACTOR"]);
    for topic in topics {
        let replication = topic.partitions.first().map(|p| p.replicas.len());
        table.row(vec![
            topic.name,
            topic.partitions.len().to_string(),
            or_dash(replication),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

pub async fn describe(admin: &Admin, name: &str) -> anyhow::Result<()> {
    let topic = existing_topic(admin, name).await?;
    let configs = admin
        .describe_configs(ConfigResource::Topic(name.to_string()))
        .await?;
    let partitions: Vec<TopicPartition> = topic
        .partitions
        .iter()
        .map(|p| TopicPartition::new(name, p.partition))
        .collect();
    let earliest = offsets(admin, &partitions, OffsetSpec::Earliest).await?;
    let latest = offsets(admin, &partitions, OffsetSpec::Latest).await?;
    let replication = topic.partitions.first().map_or(0, |p| p.replicas.len());

    println!("Topic: {name}");
    println!("Topic id: {}", topic.id);
    println!("Partitions: {}", topic.partitions.len());
    println!("Replication factor: {replication}");
    println!();
    let mut table = Table::new(&[
        "PARTITION",
        "LEADER",
        "REPLICAS",
        "ISR",
        "EARLIEST-OFFSET",
        "END-OFFSET",
    ]);
    for (partition, tp) in topic.partitions.iter().zip(&partitions) {
        table.row(vec![
            partition.partition.to_string(),
            if partition.leader >= 0 {
                partition.leader.to_string()
            } else {
                "none".to_string()
            },
            join(&partition.replicas),
            join(&partition.isr),
            or_dash(earliest.get(tp)),
            or_dash(latest.get(tp)),
        ]);
    }
    print!("{}", table.render());
    // Defaults are the bulk of the list and say nothing about this topic.
    let set: Vec<_> = configs
        .iter()
        .filter(|entry| entry.source != ConfigSource::Default)
        .collect();
    println!();
    if set.is_empty() {
        println!("Configs: all defaults");
    } else {
        let mut table = Table::new(&["CONFIG", "VALUE", "SOURCE"]);
        for entry in set {
            let value = match (&entry.value, entry.sensitive) {
                (_, true) => "(sensitive)".to_string(),
                (value, false) => or_dash(value.as_deref()),
            };
            table.row(vec![
                entry.name.clone(),
                value,
                entry.source.name().to_string(),
            ]);
        }
        print!("{}", table.render());
    }
    Ok(())
}

pub async fn create(
    admin: &Admin,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: Vec<(String, String)>,
) -> anyhow::Result<()> {
    let topic = NewTopic {
        name: name.to_string(),
        partitions,
        replication_factor,
        configs: configs.into_iter().collect(),
    };
    admin.create_topic(topic).await?;
    println!("Created topic {name}.");
    Ok(())
}

pub async fn delete(admin: &Admin, name: &str) -> anyhow::Result<()> {
    let mut outcomes = admin.delete_topics(&[name]).await?;
    match outcomes.remove(name) {
        Some(Ok(())) => {}
        Some(Err(error)) if error.code() == Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION) => {
            bail!("topic {name} does not exist")
        }
        Some(Err(error)) => return Err(error.into()),
        None => bail!("the broker did not answer for topic {name}"),
    }
    println!("Deleted topic {name}.");
    Ok(())
}

pub async fn alter_config(
    admin: &Admin,
    name: &str,
    set: Vec<(String, String)>,
    delete: Vec<String>,
) -> anyhow::Result<()> {
    if set.is_empty() && delete.is_empty() {
        bail!("nothing to change: give NAME=VALUE pairs and/or --delete-config NAME");
    }
    let mut changes = Vec::new();
    let mut ops = Vec::new();
    for (config, value) in set {
        changes.push(format!("set {config}={value}"));
        ops.push(AlterOp::Set(config, value));
    }
    for config in delete {
        changes.push(format!("deleted {config}"));
        ops.push(AlterOp::Delete(config));
    }
    existing_topic(admin, name).await?;
    admin
        .alter_configs(ConfigResource::Topic(name.to_string()), ops)
        .await?;
    println!("Updated configs of topic {name}: {}.", changes.join(", "));
    Ok(())
}

/// The topic's metadata, or an error saying plainly that it does not exist.
pub async fn existing_topic(admin: &Admin, name: &str) -> anyhow::Result<TopicMetadata> {
    // Fresh metadata: the cache may predate a topic created or deleted a moment ago.
    admin.client().refresh_topics(&[name]).await?;
    match admin.client().cached_topic(name) {
        Some(topic) => Ok(topic),
        None => bail!("topic {name} does not exist"),
    }
}

/// One offset per partition, each asked of its leader.
pub async fn offsets(
    admin: &Admin,
    partitions: &[TopicPartition],
    spec: OffsetSpec,
) -> anyhow::Result<BTreeMap<TopicPartition, i64>> {
    let wanted = partitions.iter().map(|tp| (tp.clone(), spec)).collect();
    let listed = admin
        .list_offsets(wanted)
        .await
        .with_context(|| format!("looking up {spec:?} offsets"))?;
    Ok(listed
        .into_iter()
        .map(|(tp, listed)| (tp, listed.offset))
        .collect())
}

fn join(nodes: &[i32]) -> String {
    let nodes: Vec<String> = nodes.iter().map(i32::to_string).collect();
    nodes.join(",")
}
