//! tidepool-broker: a Kafka wire-protocol broker for tests, embeddable in a process.
//!
//! # Layout
//! - [`broker`]: `Broker::builder()…start()` and the running [`BrokerHandle`].
//! - [`server`], [`connection`]: accept loop with a connection bound; framing, ordered
//!   request handling and responses per connection.
//! - [`request`]: frame → checked, guarded, decoded request; response → frame.
//! - [`handler`]: one file per Kafka API, and the table of what we advertise.
//! - [`cluster`]: the controller — nodes, topics, partitions, leaders, producer ids.
//! - [`partition`], [`producer_state`]: one partition's log, leader and idempotence state.
//! - [`log`]: segments of record batches with sparse offset and time indexes, on the Disk seam.
//! - [`config`]: every bound and default in one place.
//! - [`sasl`]: SASL PLAIN and SCRAM authentication of connections (Kafka's SASL_PLAINTEXT).
//!
//! Everything reaches sockets, files, time and randomness through `tidepool_io::Env`.
//!
//! ```no_run
//! # async fn example() -> Result<(), tidepool_broker::StartError> {
//! let broker = tidepool_broker::Broker::builder().memory().start().await?;
//! println!("bootstrap.servers={}", broker.bootstrap());
//! broker.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod admin;
pub mod broker;
pub mod cleaner;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod control;
pub mod group;
pub mod handler;
pub mod log;
pub mod partition;
pub mod producer_state;
pub mod request;
pub mod sasl;
pub mod server;

pub use broker::{Broker, BrokerBuilder, BrokerHandle, Control, ControlError, StartError};
pub use config::{Config, Sabotage, TopicConfig};
pub use control::{
    ActionRecord, InjectedError, InterceptAction, Interception, InterceptionId, PlaneError,
    RequestLogEntry,
};
pub use sasl::{Mechanism, Password, SaslConfig, SaslConfigError};

/// Every crash point in the broker (`crash_point!`, DESIGN.md §7): a named step between two
/// writes that must both land. The simulator can crash a host at the n-th hit of any of them
/// (its disk then keeps a seed-chosen part of what was not synced); recovery must keep every
/// acknowledged write and never store one twice.
pub const CRASH_POINTS: &[&str] = &[
    // Append (log/segment.rs `Segment::append`): the batch header written, its records not.
    "log.append.header",
    // Append: the whole batch written to the segment, the indexes not yet updated.
    "log.append.written",
    // Append: the indexes updated (when due), nothing synced yet.
    "log.append.indexed",
    // Produce (partition.rs `PartitionState::produce`): flush.messages fsynced the log, the
    // answer not sent yet.
    "log.append.synced",
    // Roll (log/mod.rs `Log::roll`): the new segment's files created, the directory not synced.
    "log.roll.created",
    // Segment removal (log/mod.rs `remove_segment_files`): the .log gone, its indexes not yet.
    "log.segment.log_removed",
    // Compaction swap (log/compact.rs `write_swap`): cleaned file and manifest written and
    // synced, not yet renamed to .swap.
    "cleaner.swap.written",
    // Compaction swap (`write_swap`): renamed to .swap and the directory synced (the commit
    // point), the source segments not yet removed.
    "cleaner.swap.committed",
    // Compaction swap (`finish_swap`, also run by recovery): sources removed, .swap not yet
    // renamed to .log.
    "cleaner.swap.finished",
    // Compaction swap (`finish_swap`): renamed to .log and synced, manifest not yet removed.
    "cleaner.swap.renamed",
    // OffsetCommit (group/coordinator.rs `GroupCoordinator::commit`): the offsets appended to
    // __consumer_offsets, the commit not yet applied in memory nor answered.
    "offsets.commit.appended",
    // DeleteRecords (handler/delete_records.rs): segments below the new log start removed,
    // the log start offset not yet recorded in cluster.json.
    "delete_records.applied",
    // Topic creation (cluster/mod.rs `Cluster::create_topic`): partition directories created
    // and synced, the topic not yet recorded.
    "topic.create.logs_created",
    // Topic deletion (`Cluster::delete_topic`): recorded, its directories not yet removed.
    "topic.delete.recorded",
    // CreatePartitions (`Cluster::create_partitions`): new directories created and synced,
    // not yet recorded.
    "partitions.create.logs_created",
    // Metadata (cluster/store.rs `save`): cluster.json.tmp written and synced, not renamed.
    "cluster.store.written",
    // Metadata (`save`): renamed over cluster.json, the directory not yet synced.
    "cluster.store.renamed",
];

/// Every buggify site in the broker (`buggify!`): a legal but unusual answer a real Kafka
/// broker can give too, taken only when the simulator's disk says so. None of them loses or
/// duplicates an acknowledged write.
pub const BUGGIFY_SITES: &[&str] = &[
    // Fetch (handler/fetch.rs `read_partition`): a partition's answer cut to its first batch.
    "fetch.short",
    // Produce (handler/produce.rs): an acks=all partition refused with NOT_ENOUGH_REPLICAS
    // (retriable) before anything is appended.
    "produce.not_enough_replicas",
    // Group requests (cluster/groups.rs `Cluster::check_coordinator`): NOT_COORDINATOR from
    // the coordinator, before anything is done.
    "group.not_coordinator",
];

#[cfg(test)]
mod fault_site_tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    /// The names used with `macro_name!(disk, "name")` in the crate's sources.
    fn names_in_sources(macro_name: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                for entry in std::fs::read_dir(&path).unwrap() {
                    stack.push(entry.unwrap().path());
                }
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") || path.ends_with("lib.rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap();
            let needle = format!("{macro_name}!(");
            for (at, _) in source.match_indices(&needle) {
                let call = &source[at..];
                let name = call
                    .split('"')
                    .nth(1)
                    .unwrap_or_else(|| panic!("{}: {macro_name}! without a name", path.display()));
                names.push(name.to_owned());
            }
        }
        names.sort();
        names
    }

    fn check(listed: &[&str], macro_name: &str) {
        let unique: BTreeSet<&str> = listed.iter().copied().collect();
        assert_eq!(
            unique.len(),
            listed.len(),
            "{macro_name} names repeat: {listed:?}"
        );
        let used = names_in_sources(macro_name);
        let used_set: BTreeSet<&str> = used.iter().map(String::as_str).collect();
        assert_eq!(
            used_set.len(),
            used.len(),
            "one {macro_name} site per name: {used:?}"
        );
        assert_eq!(
            unique, used_set,
            "the list matches the {macro_name}! calls in src/"
        );
    }

    #[test]
    fn crash_points_are_listed_once_each_and_all_used() {
        check(super::CRASH_POINTS, "crash_point");
    }

    #[test]
    fn buggify_sites_are_listed_once_each_and_all_used() {
        check(super::BUGGIFY_SITES, "buggify");
    }
}
