//! What Kafka 4.3 says about each topic config (type, built-in default, the broker config that
//! backs it, what values it accepts) and the broker configs DescribeConfigs reports. Checked
//! against a running Apache Kafka 4.3.1; where Tidepool's limits differ, the entry says so.

use super::ConfigType;

/// The values a config accepts, as Kafka's `ConfigDef` validators do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Rule {
    /// A 32-bit number in `at_least..=at_most`.
    Int { at_least: i64, at_most: i64 },
    /// A 64-bit number of at least this.
    Long { at_least: i64 },
    /// `compression.gzip.level`: 1 to 9, or -1 for the codec's default.
    GzipLevel,
    /// A double between 0 and 1 (`min.cleanable.dirty.ratio`).
    Ratio,
    /// `true` or `false`, in any case.
    Boolean,
    /// `remote.storage.enable`: a boolean, but `true` needs tiered storage, which Tidepool (like
    /// a Kafka broker without `remote.log.storage.system.enable`) does not have.
    RemoteStorage,
    /// One of these strings, exactly.
    OneOf(&'static [&'static str]),
    /// A comma-separated list of these strings (possibly empty).
    ListOf(&'static [&'static str]),
    /// `*` or a list of `partition:broker` pairs.
    ThrottledReplicas,
}

impl Rule {
    pub(crate) fn config_type(self) -> ConfigType {
        match self {
            Rule::Int { .. } | Rule::GzipLevel => ConfigType::Int,
            Rule::Long { .. } => ConfigType::Long,
            Rule::Ratio => ConfigType::Double,
            Rule::Boolean | Rule::RemoteStorage => ConfigType::Boolean,
            Rule::OneOf(_) => ConfigType::String,
            Rule::ListOf(_) | Rule::ThrottledReplicas => ConfigType::List,
        }
    }
}

/// One topic config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TopicConfigDef {
    pub name: &'static str,
    pub rule: Rule,
    /// Kafka's built-in default, as Kafka prints it.
    pub kafka_default: &'static str,
    /// The broker config whose value a topic without an override gets (Kafka's
    /// `TopicConfigSynonyms`); `None` for configs with no broker-wide setting.
    pub broker_name: Option<&'static str>,
    pub documentation: &'static str,
}

const LONG_MAX: &str = "9223372036854775807";
const INT_MAX: i64 = i32::MAX as i64;

const fn def(
    name: &'static str,
    rule: Rule,
    kafka_default: &'static str,
    broker_name: Option<&'static str>,
    documentation: &'static str,
) -> TopicConfigDef {
    TopicConfigDef {
        name,
        rule,
        kafka_default,
        broker_name,
        documentation,
    }
}

/// Every topic config Kafka 4 knows, by name (`config::KNOWN_TOPIC_CONFIGS`, checked by a test).
pub(crate) const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    def(
        "cleanup.policy",
        Rule::ListOf(&["compact", "delete"]),
        "delete",
        Some("log.cleanup.policy"),
        "What happens to old segments: \"delete\" removes them by retention.ms and \
         retention.bytes, \"compact\" keeps the latest record per key; both may be given.",
    ),
    def(
        "compression.gzip.level",
        Rule::GzipLevel,
        "-1",
        Some("compression.gzip.level"),
        "The gzip level used when compression.type is gzip (-1: the codec's default). \
         Tidepool stores batches as produced and does not recompress.",
    ),
    def(
        "compression.lz4.level",
        Rule::Int {
            at_least: 1,
            at_most: 17,
        },
        "9",
        Some("compression.lz4.level"),
        "The lz4 level used when compression.type is lz4. Not acted on by Tidepool.",
    ),
    def(
        "compression.type",
        Rule::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        "producer",
        Some("compression.type"),
        "The codec a topic's batches are stored with; \"producer\" keeps the producer's. \
         Tidepool always keeps the producer's.",
    ),
    def(
        "compression.zstd.level",
        Rule::Int {
            at_least: -131_072,
            at_most: 22,
        },
        "3",
        Some("compression.zstd.level"),
        "The zstd level used when compression.type is zstd. Not acted on by Tidepool.",
    ),
    def(
        "delete.retention.ms",
        Rule::Long { at_least: 0 },
        "86400000",
        Some("log.cleaner.delete.retention.ms"),
        "How long a tombstone survives on a compacted topic after the cleaner first keeps it.",
    ),
    def(
        "file.delete.delay.ms",
        Rule::Long { at_least: 0 },
        "60000",
        Some("log.segment.delete.delay.ms"),
        "How long a deleted segment's file lingers. Tidepool removes files at once.",
    ),
    def(
        "flush.messages",
        Rule::Long { at_least: 1 },
        LONG_MAX,
        Some("log.flush.interval.messages"),
        "Fsync a partition after this many records (1: before every acknowledgement).",
    ),
    def(
        "flush.ms",
        Rule::Long { at_least: 0 },
        LONG_MAX,
        Some("log.flush.interval.ms"),
        "Fsync a partition once its oldest unflushed record is this old.",
    ),
    def(
        "follower.replication.throttled.replicas",
        Rule::ThrottledReplicas,
        "",
        None,
        "Replicas whose follower-side replication is throttled. Not acted on by Tidepool.",
    ),
    def(
        "index.interval.bytes",
        Rule::Int {
            at_least: 0,
            at_most: INT_MAX,
        },
        "4096",
        Some("log.index.interval.bytes"),
        "Bytes of batches between two entries of a segment's offset and time indexes.",
    ),
    def(
        "leader.replication.throttled.replicas",
        Rule::ThrottledReplicas,
        "",
        None,
        "Replicas whose leader-side replication is throttled. Not acted on by Tidepool.",
    ),
    def(
        "local.retention.bytes",
        Rule::Long { at_least: -2 },
        "-2",
        Some("log.local.retention.bytes"),
        "Local retention by size for tiered storage (-2: retention.bytes). Not acted on.",
    ),
    def(
        "local.retention.ms",
        Rule::Long { at_least: -2 },
        "-2",
        Some("log.local.retention.ms"),
        "Local retention by time for tiered storage (-2: retention.ms). Not acted on.",
    ),
    def(
        "max.compaction.lag.ms",
        Rule::Long { at_least: 1 },
        LONG_MAX,
        Some("log.cleaner.max.compaction.lag.ms"),
        "A segment this old is compacted whatever the dirty ratio.",
    ),
    def(
        "max.message.bytes",
        Rule::Int {
            at_least: 0,
            at_most: INT_MAX,
        },
        "1048588",
        Some("message.max.bytes"),
        "The largest record batch a produce may append.",
    ),
    def(
        "message.timestamp.after.max.ms",
        Rule::Long { at_least: 0 },
        "3600000",
        Some("log.message.timestamp.after.max.ms"),
        "How far ahead of the broker's clock a CreateTime timestamp may be (else INVALID_TIMESTAMP).",
    ),
    def(
        "message.timestamp.before.max.ms",
        Rule::Long { at_least: 0 },
        LONG_MAX,
        Some("log.message.timestamp.before.max.ms"),
        "How far behind the broker's clock a CreateTime timestamp may be (else INVALID_TIMESTAMP).",
    ),
    def(
        "message.timestamp.type",
        Rule::OneOf(&["CreateTime", "LogAppendTime"]),
        "CreateTime",
        Some("log.message.timestamp.type"),
        "Whether records keep the producer's timestamp (CreateTime) or get the broker's time \
         of append (LogAppendTime).",
    ),
    def(
        "min.cleanable.dirty.ratio",
        Rule::Ratio,
        "0.5",
        Some("log.cleaner.min.cleanable.ratio"),
        "Compact once this share of the log has not been compacted yet.",
    ),
    def(
        "min.compaction.lag.ms",
        Rule::Long { at_least: 0 },
        "0",
        Some("log.cleaner.min.compaction.lag.ms"),
        "Records younger than this are never compacted.",
    ),
    def(
        "min.insync.replicas",
        Rule::Int {
            at_least: 1,
            at_most: INT_MAX,
        },
        "1",
        Some("min.insync.replicas"),
        "Replicas that must have a record before an acks=all produce succeeds. Tidepool's \
         replicas share one log, so every record is on all of them.",
    ),
    def(
        "preallocate",
        Rule::Boolean,
        "false",
        Some("log.preallocate"),
        "Preallocate segment files. Not acted on by Tidepool.",
    ),
    def(
        "remote.log.copy.disable",
        Rule::Boolean,
        "false",
        None,
        "Stop copying segments to tiered storage. Not acted on by Tidepool.",
    ),
    def(
        "remote.log.delete.on.disable",
        Rule::Boolean,
        "false",
        None,
        "Delete tiered data when tiered storage is disabled. Not acted on by Tidepool.",
    ),
    def(
        "remote.storage.enable",
        Rule::RemoteStorage,
        "false",
        None,
        "Tiered storage for the topic; Tidepool has none, so only false is accepted.",
    ),
    def(
        "retention.bytes",
        // Kafka accepts any number and treats every negative one as "no limit"; Tidepool
        // accepts -1 and up.
        Rule::Long { at_least: -1 },
        "-1",
        Some("log.retention.bytes"),
        "Delete the oldest segments while a partition is larger than this (-1: no limit).",
    ),
    def(
        "retention.ms",
        Rule::Long { at_least: -1 },
        "604800000",
        Some("log.retention.ms"),
        "Delete segments whose newest record is older than this (-1: keep forever).",
    ),
    def(
        "segment.bytes",
        // Kafka 4's minimum is 1048576; Tidepool accepts any size that holds a batch header,
        // so tests can roll segments with little data.
        Rule::Int {
            at_least: 14,
            at_most: INT_MAX,
        },
        "1073741824",
        Some("log.segment.bytes"),
        "A segment rolls when the next batch would make it larger than this.",
    ),
    def(
        "segment.index.bytes",
        Rule::Int {
            at_least: 4,
            at_most: INT_MAX,
        },
        "10485760",
        Some("log.index.size.max.bytes"),
        "The largest offset index of a segment. Not acted on by Tidepool.",
    ),
    def(
        "segment.jitter.ms",
        Rule::Long { at_least: 0 },
        "0",
        None,
        "Random jitter subtracted from segment.ms. Not acted on by Tidepool.",
    ),
    def(
        "segment.ms",
        Rule::Long { at_least: 1 },
        "604800000",
        Some("log.roll.ms"),
        "A segment rolls once its first record was appended this long ago.",
    ),
    def(
        "unclean.leader.election.enable",
        Rule::Boolean,
        "false",
        Some("unclean.leader.election.enable"),
        "Allow an out-of-sync replica to lead. Tidepool's replicas are always in sync.",
    ),
];

pub(crate) fn topic_config(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|def| def.name == name)
}

/// A broker config as DescribeConfigs reports it: Tidepool's value, Kafka's default.
#[derive(Debug, Clone)]
pub(crate) struct BrokerConfigDef {
    pub name: &'static str,
    pub config_type: ConfigType,
    pub value: String,
    /// `None` when Kafka has no default (node.id).
    pub kafka_default: Option<&'static str>,
    pub documentation: &'static str,
}

/// Broker configs not behind a topic config, from Tidepool's `Config`.
pub(crate) fn broker_only_configs(
    config: &crate::config::Config,
    node_id: i32,
) -> Vec<BrokerConfigDef> {
    let int = ConfigType::Int;
    let long = ConfigType::Long;
    let entry = |name, config_type, value: String, kafka_default, documentation| BrokerConfigDef {
        name,
        config_type,
        value,
        kafka_default,
        documentation,
    };
    vec![
        entry(
            "auto.create.topics.enable",
            ConfigType::Boolean,
            config.auto_create_topics.to_string(),
            Some("true"),
            "Create unknown topics on Metadata (and, in Tidepool, Produce) requests.",
        ),
        entry(
            "broker.id",
            int,
            node_id.to_string(),
            Some("-1"),
            "This node's id.",
        ),
        entry(
            "default.replication.factor",
            int,
            config.default_replication_factor.to_string(),
            Some("1"),
            "Replication factor of topics created without one.",
        ),
        entry(
            "fetch.max.bytes",
            int,
            config.fetch_bytes_max.to_string(),
            Some("57671680"),
            "The most record bytes one Fetch response carries.",
        ),
        entry(
            "group.initial.rebalance.delay.ms",
            int,
            config.group_initial_rebalance_delay_ms.to_string(),
            Some("3000"),
            "How long a new group waits for more members before its first rebalance.",
        ),
        entry(
            "group.max.session.timeout.ms",
            int,
            config.group_max_session_timeout_ms.to_string(),
            Some("1800000"),
            "The longest session timeout a member may ask for.",
        ),
        entry(
            "group.max.size",
            int,
            config.group_members_max.to_string(),
            Some("2147483647"),
            "The most members a group may have.",
        ),
        entry(
            "group.min.session.timeout.ms",
            int,
            config.group_min_session_timeout_ms.to_string(),
            Some("6000"),
            "The shortest session timeout a member may ask for.",
        ),
        entry(
            "log.cleaner.backoff.ms",
            long,
            config.cleaner_backoff_ms.to_string(),
            Some("15000"),
            "How often compacted partitions are checked for cleaning.",
        ),
        entry(
            "log.retention.check.interval.ms",
            long,
            config.retention_check_interval_ms.to_string(),
            Some("300000"),
            "How often retention deletes old segments.",
        ),
        entry(
            "max.connections",
            int,
            config.connections_max.to_string(),
            Some("2147483647"),
            "Open connections a node accepts; more are closed at once.",
        ),
        entry("node.id", int, node_id.to_string(), None, "This node's id."),
        entry(
            "num.partitions",
            int,
            config.default_partitions.to_string(),
            Some("1"),
            "Partitions of topics created without a count.",
        ),
        entry(
            "offsets.topic.num.partitions",
            int,
            config.offsets_topic_partitions.to_string(),
            Some("50"),
            "Partitions of __consumer_offsets.",
        ),
        entry(
            "offsets.topic.replication.factor",
            ConfigType::Short,
            config.offsets_topic_replication_factor.to_string(),
            Some("3"),
            "Replication factor of __consumer_offsets (capped at the number of nodes).",
        ),
        entry(
            "socket.request.max.bytes",
            int,
            config.request_bytes_max.to_string(),
            Some("104857600"),
            "The largest request frame accepted.",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KNOWN_TOPIC_CONFIGS, TopicConfig};

    #[test]
    fn every_known_topic_config_is_described_and_nothing_else() {
        let described: Vec<&str> = TOPIC_CONFIGS.iter().map(|def| def.name).collect();
        assert_eq!(described, KNOWN_TOPIC_CONFIGS);
    }

    #[test]
    fn kafka_defaults_pass_their_own_rules() {
        for def in TOPIC_CONFIGS {
            let checked = super::super::normalize(def.name, def.kafka_default);
            assert_eq!(checked.as_deref(), Ok(def.kafka_default), "{}", def.name);
        }
    }

    /// The catalog's numeric limits must be the ones `TopicConfig::with_overrides` enforces,
    /// or a value would pass one check and fail the other with a vaguer message.
    #[test]
    fn numeric_minimums_agree_with_the_topic_config_parser() {
        let defaults = TopicConfig::default();
        for def in TOPIC_CONFIGS {
            let at_least = match def.rule {
                Rule::Int { at_least, .. } | Rule::Long { at_least } => at_least,
                _ => continue,
            };
            let lowest = at_least.to_string();
            assert!(
                defaults
                    .with_overrides([(def.name, lowest.as_str())])
                    .is_ok(),
                "{} accepts {lowest}",
                def.name
            );
            let below = (at_least - 1).to_string();
            assert!(
                defaults
                    .with_overrides([(def.name, below.as_str())])
                    .is_err()
                    || !is_modelled(def.name),
                "{} refuses {below}",
                def.name
            );
        }
    }

    fn is_modelled(name: &str) -> bool {
        TopicConfig::default()
            .entries()
            .iter()
            .any(|entry| entry.name == name)
    }
}
