//! Opening a cluster from its data root: the stored metadata, then every partition log,
//! recovered (see `Log::open`), with idempotent producer state rebuilt from the batches.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use tidepool_io::Env;

use super::store::{self, StoredCluster, StoredTopic};
use super::{Cluster, ControllerState, Topic, kafka_style_id};
use crate::config::Config;
use crate::group::{GroupCoordinator, GroupLimits, OFFSETS_TOPIC};
use crate::log::{Log, LogConfig};
use crate::partition::{Partition, PartitionState, log_config};
use crate::producer_state::{ProducerStates, RememberedBatch};

impl Cluster {
    /// Opens the cluster stored under `data_root`, or starts an empty one there. Every
    /// partition log is recovered; a node set that changed since is reconciled when nodes
    /// register (`Cluster::reconcile_leaders`).
    pub fn open(env: Env, config: Config, data_root: PathBuf) -> io::Result<Cluster> {
        env.disk.create_dir_all(&data_root)?;
        // A data root made just now must survive a crash with what is written into it.
        if let Some(parent) = data_root
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            env.disk.sync_dir(parent)?;
        }
        let stored = store::load(env.disk.as_ref(), &data_root)?;
        let fresh = stored.is_none();
        let stored = stored.unwrap_or_else(|| {
            let id = config
                .cluster_id
                .clone()
                .unwrap_or_else(|| kafka_style_id(env.entropy.uuid()));
            StoredCluster::new(id)
        });
        let mut state = ControllerState {
            nodes: BTreeMap::new(),
            live: BTreeSet::new(),
            topics: BTreeMap::new(),
            topic_names_by_id: BTreeMap::new(),
            partitions_total: 0,
            next_producer_id: stored.producer_ids_reserved_until,
            producer_ids_reserved_until: stored.producer_ids_reserved_until,
            next_placement_start: 0,
        };
        for stored_topic in &stored.topics {
            let topic = open_topic(&env, &config, &data_root, stored_topic)?;
            state.partitions_total += topic.partitions.len();
            state.topic_names_by_id.insert(topic.id, topic.name.clone());
            state.topics.insert(topic.name.clone(), Arc::new(topic));
        }
        remove_orphans(&env, &data_root, &state)?;
        let parked_fetches = Arc::new(tokio::sync::Semaphore::new(config.parked_fetches_max));
        let offsets_partitions: Vec<Arc<Partition>> = state
            .topics
            .get(OFFSETS_TOPIC)
            .map(|topic| topic.partitions.clone())
            .unwrap_or_default();
        let groups = GroupCoordinator::new(
            GroupLimits {
                members_max: config.group_members_max,
                initial_rebalance_delay: Duration::from_millis(
                    config.group_initial_rebalance_delay_ms,
                ),
                empty_retention: Duration::from_millis(config.group_empty_retention_ms),
            },
            config.groups_max,
        );
        groups.load(&offsets_partitions)?;
        let control = crate::control::ControlPlane::new(config.plane_limits());
        let cluster = Cluster {
            env,
            config,
            data_root,
            cluster_id: stored.cluster_id,
            state: Mutex::new(state),
            parked_fetches,
            groups,
            cleaner: crate::cleaner::Cleaner::default(),
            control,
        };
        if fresh {
            cluster.persist(&super::lock(&cluster.state))?;
        }
        Ok(cluster)
    }
}

fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn open_topic(env: &Env, config: &Config, root: &Path, stored: &StoredTopic) -> io::Result<Topic> {
    let topic_config = config
        .topic_defaults
        .with_overrides(
            stored
                .configs
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        )
        .map_err(|invalid| invalid_data(format!("topic {}: {}", stored.name, invalid.message)))?;
    let mut partitions = Vec::with_capacity(stored.partitions.len());
    for (index, stored_partition) in stored.partitions.iter().enumerate() {
        let dir = root.join(format!("{}-{index}", stored.name));
        let mut producers = ProducerStates::default();
        let log = open_log(env, &dir, log_config(&topic_config), config, &mut producers)?;
        let mut state = PartitionState::new(
            stored_partition.leader,
            stored_partition.leader_epoch,
            stored_partition.replicas.clone(),
            log,
            producers,
            topic_config.clone(),
        );
        state.set_sabotage(config.sabotage);
        let log_end_offset = state.log.log_end_offset();
        state
            .log
            .assign_epoch(stored_partition.leader_epoch, log_end_offset);
        state
            .log
            .advance_log_start(stored_partition.log_start_offset)?;
        partitions.push(Arc::new(Partition::new(
            &stored.name,
            stored.id,
            index as i32,
            state,
        )));
    }
    Ok(Topic {
        name: stored.name.clone(),
        id: stored.id,
        config: topic_config,
        partitions,
        internal: super::is_internal_topic(&stored.name),
    })
}

/// Recovers one partition's log, rebuilding its producers' last batches from the headers.
fn open_log(
    env: &Env,
    dir: &Path,
    log_config: LogConfig,
    config: &Config,
    producers: &mut ProducerStates,
) -> io::Result<Log> {
    if !env.disk.exists(dir) {
        // Created in memory but lost before its directory reached the disk: it held nothing
        // acknowledged, since a topic is recorded only after its directories exist.
        return Log::create(Arc::clone(&env.disk), dir, log_config, env.clock.wall_ms());
    }
    let forget = config.sabotage.forget_producer_state;
    let mut rebuild = |header: &tidepool_protocol::batch::BatchHeader| {
        if forget {
            // Sabotage (a known-bad variant): retries of batches written before the restart
            // are no longer recognised as duplicates.
            return;
        }
        let remembered = RememberedBatch {
            first_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
            timestamp_ms: header.max_timestamp,
        };
        producers.record(
            header,
            remembered,
            header.max_timestamp,
            config.producers_per_partition_max,
        );
    };
    let now_ms = env.clock.wall_ms();
    let recovered = Log::open(
        Arc::clone(&env.disk),
        dir,
        log_config,
        false,
        now_ms,
        &mut rebuild,
    )?;
    if let Some(reason) = &recovered.reason {
        tracing::warn!(
            dir = %dir.display(),
            removed_bytes = recovered.removed_bytes,
            removed_segments = recovered.removed_segments,
            %reason,
            "recovery cut the log"
        );
    }
    Ok(recovered.log)
}

/// Removes partition directories no topic owns (a crash between recording a deletion and
/// removing its files, or between creating files and recording a topic) and temporary files.
fn remove_orphans(env: &Env, root: &Path, state: &ControllerState) -> io::Result<()> {
    for name in env.disk.list(root)? {
        let path: PathBuf = root.join(&name);
        if name.ends_with(".tmp") {
            env.disk.remove_file(&path)?;
            continue;
        }
        let Some((topic, index)) = name.rsplit_once('-') else {
            continue;
        };
        let Ok(index) = index.parse::<usize>() else {
            continue;
        };
        let owned = state
            .topics
            .get(topic)
            .is_some_and(|topic| index < topic.partitions.len());
        if !owned {
            tracing::warn!(dir = %path.display(), "removing a partition directory no topic owns");
            env.disk.remove_dir_all(&path)?;
        }
    }
    Ok(())
}
