//! Every bound and default the broker uses, in one place (TigerBeetle style: a limit on everything).

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;

/// Broker-wide settings. `Config::default()` is what `tidepool serve` and embedding start with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Open connections per node; further connections are accepted and closed at once.
    pub connections_max: usize,
    /// Largest request frame accepted; larger sizes close the connection before any allocation.
    /// Kafka's `socket.request.max.bytes` default.
    pub request_bytes_max: usize,
    /// Responses one connection holds unwritten. Requests are handled in order; once this many
    /// answers wait (or 1 MiB of them), they are written before the next request is read, so
    /// a client that sends without reading is no longer read (TCP back-pressure) instead of
    /// growing the broker's memory.
    pub in_flight_requests_max: usize,
    /// Upper bound on a Fetch response's record bytes, whatever the client asks for
    /// (Kafka's `fetch.max.bytes` broker default).
    pub fetch_bytes_max: usize,
    /// Record bytes one Fetch response carries at most, below `fetch_bytes_max` (the first batch
    /// always goes, as KIP-74 requires). A broker may answer with less than a client asks for;
    /// this bounds what one fetch holds in memory (a 55 MiB answer was held twice while encoding)
    /// at no cost in consume throughput (BENCHMARKS.md, Peers).
    pub fetch_response_bytes_max: usize,
    /// Fetch requests parked waiting for data across the cluster; beyond it they answer at once.
    pub parked_fetches_max: usize,
    /// Upper bound on a fetch's `max_wait_ms`, so a client cannot park a request for days.
    pub fetch_wait_ms_max: u64,
    pub topics_max: usize,
    /// Partitions across all topics.
    pub partitions_max: usize,
    /// Idempotent producers remembered per partition; the least recently used is forgotten.
    pub producers_per_partition_max: usize,
    /// Create unknown topics on Metadata and Produce (Kafka's `auto.create.topics.enable`).
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic or a CreateTopics asking for -1 (`num.partitions`).
    pub default_partitions: i32,
    /// Replication factor used when a CreateTopics asks for -1 (`default.replication.factor`).
    pub default_replication_factor: i16,
    /// Topic config defaults (`log.segment.bytes` and friends), overridable per topic.
    pub topic_defaults: TopicConfig,
    /// The cluster id reported in Metadata; random when `None`.
    pub cluster_id: Option<String>,
    /// Partitions of `__consumer_offsets` (Kafka's `offsets.topic.num.partitions`); groups
    /// spread over them, and so over the nodes leading them.
    pub offsets_topic_partitions: i32,
    /// Replication factor of `__consumer_offsets`, capped at the number of nodes.
    pub offsets_topic_replication_factor: i16,
    /// Session timeouts a JoinGroup may ask for (`group.min/max.session.timeout.ms`).
    pub group_min_session_timeout_ms: u64,
    pub group_max_session_timeout_ms: u64,
    /// `group.initial.rebalance.delay.ms`. Kafka's default is 3000; ours is 0, as test
    /// set-ups for Kafka configure it, so a single consumer starts at once.
    pub group_initial_rebalance_delay_ms: u64,
    /// Members per group (`group.max.size`).
    pub group_members_max: usize,
    /// Groups the coordinator holds (Kafka has no such bound). A JoinGroup or OffsetCommit
    /// that would create one more gets COORDINATOR_NOT_AVAILABLE, which clients retry: the
    /// room comes back as empty groups expire (`group_empty_retention_ms`) or are deleted.
    pub groups_max: usize,
    /// How long a group that emptied, and has no committed offsets, is still listed and
    /// described (as Empty) before it is forgotten. Kafka removes such groups at its next
    /// offsets-retention check (`offsets.retention.check.interval.ms`, 10 minutes).
    pub group_empty_retention_ms: u64,
    /// How often compacted partitions are checked for cleaning (`log.cleaner.backoff.ms`).
    pub cleaner_backoff_ms: u64,
    /// How often retention runs (`log.retention.check.interval.ms`).
    pub retention_check_interval_ms: u64,
    /// Distinct keys one compaction pass may map (Kafka's dedupe buffer, 128 MiB by
    /// default, holds about 5.6 million); a partition with more is cleaned in parts.
    pub cleaner_keys_max: usize,
    /// Test control plane bounds (`Control::intercept` and friends, DESIGN.md §3): active
    /// interceptions, injected errors waiting, requests kept in the request log, control
    /// actions kept in the action log, requests kept per observing interception.
    pub control_interceptions_max: usize,
    pub control_injected_errors_max: usize,
    pub control_request_log_max: usize,
    pub control_action_log_max: usize,
    pub control_observed_max: usize,
    /// Breaks a guarantee on purpose, for the simulator's known-bad variants (issue 8), so a
    /// test can show the checker catches the breakage. Nothing but tidepool-sim sets it;
    /// `tidepool serve` has no flag for it. The default breaks nothing.
    pub sabotage: Sabotage,
    /// SASL authentication on every node's listener (Kafka's SASL_PLAINTEXT): mechanisms,
    /// users and the bound on authentication frames. `None` is a PLAINTEXT listener.
    pub sasl: Option<crate::sasl::SaslConfig>,
}

/// Guarantees the broker breaks on purpose when asked (see [`Config::sabotage`]). Chosen at
/// run time, never by a cargo feature: features unify across the workspace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sabotage {
    /// Acknowledge produces without the fsync that `flush.messages` asks for before the
    /// answer; the sync is left to the `flush.ms` flusher, a roll or a clean stop (if any).
    /// A crash in between loses acknowledged records.
    pub ack_before_fsync: bool,
    /// On open, do not rebuild idempotent producers' state (sequence numbers, last batches)
    /// from the log: a producer retrying a batch that was written before a crash gets it
    /// appended a second time.
    pub forget_producer_state: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            connections_max: 1024,
            request_bytes_max: 100 * 1024 * 1024,
            in_flight_requests_max: 256,
            fetch_bytes_max: 55 * 1024 * 1024,
            fetch_response_bytes_max: 4 * 1024 * 1024,
            parked_fetches_max: 4096,
            fetch_wait_ms_max: 30_000,
            topics_max: 10_000,
            partitions_max: 100_000,
            producers_per_partition_max: 10_000,
            auto_create_topics: true,
            default_partitions: 1,
            default_replication_factor: 1,
            topic_defaults: TopicConfig::default(),
            cluster_id: None,
            offsets_topic_partitions: 50,
            offsets_topic_replication_factor: 3,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_initial_rebalance_delay_ms: 0,
            group_members_max: 1_000,
            groups_max: 10_000,
            group_empty_retention_ms: 600_000,
            cleaner_backoff_ms: 15_000,
            retention_check_interval_ms: 300_000,
            cleaner_keys_max: 4_000_000,
            control_interceptions_max: 1_000,
            control_injected_errors_max: 100_000,
            control_request_log_max: 10_000,
            control_action_log_max: 10_000,
            control_observed_max: 1_000,
            sabotage: Sabotage::default(),
            sasl: None,
        }
    }
}

impl Config {
    pub(crate) fn plane_limits(&self) -> crate::control::PlaneLimits {
        crate::control::PlaneLimits {
            interceptions_max: self.control_interceptions_max,
            injected_errors_max: self.control_injected_errors_max,
            request_log_max: self.control_request_log_max,
            action_log_max: self.control_action_log_max,
            observed_max: self.control_observed_max,
        }
    }
}

/// How record timestamps are set (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// The topic configs the log acts on, parsed, plus every config as given (for describing later).
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub max_message_bytes: usize,
    pub message_timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: how far behind the broker's clock a CreateTime
    /// timestamp may be before the batch is refused with INVALID_TIMESTAMP.
    pub message_timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far ahead of the broker's clock it may be.
    pub message_timestamp_after_max_ms: i64,
    pub index_interval_bytes: u64,
    /// fsync after this many records (`flush.messages`; 1 = before every acknowledgement).
    pub flush_messages: u64,
    /// fsync once the oldest unflushed record is this old (`flush.ms`).
    pub flush_ms: i64,
    /// `cleanup.policy`: delete old segments, compact by key, or both.
    pub cleanup_policy: CleanupPolicy,
    /// `retention.ms`: delete segments whose newest record is older; -1 keeps forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest segments while the log is larger; -1 for no limit.
    pub retention_bytes: i64,
    /// `min.cleanable.dirty.ratio`: compact once this share of the log is uncleaned.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: records younger than this are never compacted.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a segment this old is compacted whatever the dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// `delete.retention.ms`: how long a tombstone survives after compaction first keeps it.
    pub delete_retention_ms: i64,
    /// Every config set explicitly on the topic, by Kafka name.
    pub overrides: BTreeMap<String, String>,
}

impl Default for TopicConfig {
    fn default() -> TopicConfig {
        TopicConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            max_message_bytes: 1_048_588,
            message_timestamp_type: TimestampType::CreateTime,
            // Kafka 4's defaults: any age, at most one hour ahead.
            message_timestamp_before_max_ms: i64::MAX,
            message_timestamp_after_max_ms: 60 * 60 * 1000,
            index_interval_bytes: 4096,
            // Kafka's defaults: leave flushing to the operating system.
            flush_messages: i64::MAX as u64,
            flush_ms: i64::MAX,
            cleanup_policy: CleanupPolicy::DELETE,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            delete_retention_ms: 24 * 60 * 60 * 1000,
            overrides: BTreeMap::new(),
        }
    }
}

/// `cleanup.policy`: a list of `delete` and `compact`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

impl CleanupPolicy {
    pub const DELETE: CleanupPolicy = CleanupPolicy {
        delete: true,
        compact: false,
    };

    /// Parses Kafka's comma-separated list; an empty list means neither.
    pub fn parse(value: &str) -> Option<CleanupPolicy> {
        let mut policy = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for item in value
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            match item {
                "delete" => policy.delete = true,
                "compact" => policy.compact = true,
                _ => return None,
            }
        }
        Some(policy)
    }

    pub fn render(self) -> String {
        match (self.compact, self.delete) {
            (true, true) => "compact,delete".to_owned(),
            (true, false) => "compact".to_owned(),
            (false, true) => "delete".to_owned(),
            (false, false) => String::new(),
        }
    }
}

/// Topic config names Kafka 4 accepts. Names outside this list are refused with INVALID_CONFIG, as
/// Kafka does; names inside it but not acted on yet are kept so they can be described (with
/// Kafka's defaults, from `cluster::configs`, which lists every one of them).
pub(crate) const KNOWN_TOPIC_CONFIGS: &[&str] = &[
    "cleanup.policy",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.type",
    "compression.zstd.level",
    "delete.retention.ms",
    "file.delete.delay.ms",
    "flush.messages",
    "flush.ms",
    "follower.replication.throttled.replicas",
    "index.interval.bytes",
    "leader.replication.throttled.replicas",
    "local.retention.bytes",
    "local.retention.ms",
    "max.compaction.lag.ms",
    "max.message.bytes",
    "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.type",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "preallocate",
    "remote.log.copy.disable",
    "remote.log.delete.on.disable",
    "remote.storage.enable",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.index.bytes",
    "segment.jitter.ms",
    "segment.ms",
    "unclean.leader.election.enable",
];

/// A refused topic config: Kafka answers INVALID_CONFIG with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidConfig {
    pub message: String,
}

impl InvalidConfig {
    pub fn code(&self) -> i16 {
        ResponseError::InvalidConfig.code()
    }
}

fn parse_number<T: std::str::FromStr + PartialOrd>(
    name: &str,
    value: &str,
    at_least: T,
) -> Result<T, InvalidConfig> {
    match value.trim().parse::<T>() {
        Ok(number) if number >= at_least => Ok(number),
        _ => Err(InvalidConfig {
            message: format!("Invalid value {value} for configuration {name}"),
        }),
    }
}

impl TopicConfig {
    /// Applies `overrides` (Kafka config name → value) on top of `self`, validating each.
    pub fn with_overrides<'a>(
        &self,
        overrides: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<TopicConfig, InvalidConfig> {
        let mut config = self.clone();
        for (name, value) in overrides {
            config.apply(name, value)?;
            config.overrides.insert(name.to_owned(), value.to_owned());
        }
        Ok(config)
    }

    fn apply(&mut self, name: &str, value: &str) -> Result<(), InvalidConfig> {
        match name {
            // Kafka's minimum segment size is 14 bytes (one empty batch header); we require a
            // whole batch header so a segment can always hold at least one batch.
            "segment.bytes" => self.segment_bytes = parse_number(name, value, 14u64)?,
            "segment.ms" => self.segment_ms = parse_number(name, value, 1i64)?,
            "max.message.bytes" => self.max_message_bytes = parse_number(name, value, 0usize)?,
            "index.interval.bytes" => self.index_interval_bytes = parse_number(name, value, 0u64)?,
            "flush.messages" => self.flush_messages = parse_number(name, value, 1u64)?,
            "flush.ms" => self.flush_ms = parse_number(name, value, 0i64)?,
            "cleanup.policy" => {
                self.cleanup_policy = CleanupPolicy::parse(value).ok_or_else(|| InvalidConfig {
                    message: format!(
                        "Invalid value {value} for configuration {name}: String must be one of: compact, delete"
                    ),
                })?
            }
            "retention.ms" => self.retention_ms = parse_number(name, value, -1i64)?,
            "retention.bytes" => self.retention_bytes = parse_number(name, value, -1i64)?,
            "min.compaction.lag.ms" => self.min_compaction_lag_ms = parse_number(name, value, 0i64)?,
            "max.compaction.lag.ms" => self.max_compaction_lag_ms = parse_number(name, value, 1i64)?,
            "delete.retention.ms" => self.delete_retention_ms = parse_number(name, value, 0i64)?,
            "message.timestamp.before.max.ms" => {
                self.message_timestamp_before_max_ms = parse_number(name, value, 0i64)?
            }
            "message.timestamp.after.max.ms" => {
                self.message_timestamp_after_max_ms = parse_number(name, value, 0i64)?
            }
            "min.cleanable.dirty.ratio" => {
                let ratio: f64 = parse_number(name, value, 0.0f64)?;
                if ratio > 1.0 {
                    return Err(InvalidConfig {
                        message: format!("Invalid value {value} for configuration {name}: Value must be no more than 1"),
                    });
                }
                self.min_cleanable_dirty_ratio = ratio;
            }
            "message.timestamp.type" => {
                self.message_timestamp_type = match value {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => {
                        return Err(InvalidConfig {
                            message: format!(
                                "Invalid value {value} for configuration {name}: \
                                 String must be one of: CreateTime, LogAppendTime"
                            ),
                        });
                    }
                }
            }
            known if KNOWN_TOPIC_CONFIGS.contains(&known) => {}
            unknown => {
                return Err(InvalidConfig {
                    message: format!("Unknown topic config name: {unknown}"),
                });
            }
        }
        Ok(())
    }
}

/// One topic config as CreateTopics (and later DescribeConfigs) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: String,
    /// False when set on the topic, true when inherited from the broker's defaults.
    pub is_default: bool,
}

impl TopicConfig {
    /// The configs the broker acts on, then every other override, by name.
    pub fn entries(&self) -> Vec<ConfigEntry> {
        let timestamp_type = match self.message_timestamp_type {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        };
        let modelled = [
            (
                "index.interval.bytes",
                self.index_interval_bytes.to_string(),
            ),
            ("cleanup.policy", self.cleanup_policy.render()),
            ("delete.retention.ms", self.delete_retention_ms.to_string()),
            ("flush.messages", self.flush_messages.to_string()),
            ("flush.ms", self.flush_ms.to_string()),
            (
                "max.compaction.lag.ms",
                self.max_compaction_lag_ms.to_string(),
            ),
            ("max.message.bytes", self.max_message_bytes.to_string()),
            (
                "message.timestamp.after.max.ms",
                self.message_timestamp_after_max_ms.to_string(),
            ),
            (
                "message.timestamp.before.max.ms",
                self.message_timestamp_before_max_ms.to_string(),
            ),
            ("message.timestamp.type", timestamp_type.to_owned()),
            (
                "min.cleanable.dirty.ratio",
                self.min_cleanable_dirty_ratio.to_string(),
            ),
            (
                "min.compaction.lag.ms",
                self.min_compaction_lag_ms.to_string(),
            ),
            ("retention.bytes", self.retention_bytes.to_string()),
            ("retention.ms", self.retention_ms.to_string()),
            ("segment.bytes", self.segment_bytes.to_string()),
            ("segment.ms", self.segment_ms.to_string()),
        ];
        let mut entries: BTreeMap<String, ConfigEntry> = modelled
            .into_iter()
            .map(|(name, value)| {
                let entry = ConfigEntry {
                    name: name.to_owned(),
                    value,
                    is_default: !self.overrides.contains_key(name),
                };
                (name.to_owned(), entry)
            })
            .collect();
        for (name, value) in &self.overrides {
            entries.entry(name.clone()).or_insert_with(|| ConfigEntry {
                name: name.clone(),
                value: value.clone(),
                is_default: false,
            });
        }
        entries.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_are_parsed_and_remembered() {
        let config = TopicConfig::default()
            .with_overrides([
                ("segment.bytes", "1024"),
                ("message.timestamp.type", "LogAppendTime"),
            ])
            .unwrap();
        assert_eq!(config.segment_bytes, 1024);
        assert_eq!(config.message_timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(config.overrides.len(), 2);
    }

    #[test]
    fn unknown_names_and_bad_values_are_invalid_config() {
        let defaults = TopicConfig::default();
        assert!(defaults.with_overrides([("no.such.config", "1")]).is_err());
        assert!(defaults.with_overrides([("segment.bytes", "-5")]).is_err());
        assert!(
            defaults
                .with_overrides([("message.timestamp.type", "Whenever")])
                .is_err()
        );
        assert!(defaults.with_overrides([("retention.ms", "1000")]).is_ok());
    }
}
