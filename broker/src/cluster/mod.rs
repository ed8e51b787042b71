//! The controller: one in-process owner of the cluster's metadata — nodes, topics, partitions,
//! their leaders and leader epochs — and of producer id allocation. Every node of a broker
//! shares one `Cluster`; nodes differ only in which partitions they lead.
//!
//! **Invariant:** topic names and ids map one to one; a partition's leader is one of its
//! replicas and a live node; partition counts only grow.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use kafka_protocol::ResponseError;
use tidepool_io::{Env, crash_point};
use uuid::Uuid;

use crate::config::{Config, TopicConfig};
use crate::group::GroupCoordinator;
use crate::log::Log;
use crate::partition::{Partition, PartitionState, log_config};
use crate::producer_state::ProducerStates;

/// A broker node as Metadata advertises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: i32,
    pub host: String,
    pub port: u16,
}

/// A topic. Immutable once published: changes (more partitions, new configs) publish a new
/// `Arc<Topic>`, so a request works on one consistent snapshot without holding a lock.
pub struct Topic {
    pub name: String,
    pub id: Uuid,
    pub config: TopicConfig,
    pub partitions: Vec<Arc<Partition>>,
    pub internal: bool,
}

/// A refused metadata change, as a Kafka error code with Kafka's kind of message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub error: ResponseError,
    pub message: String,
}

impl Refusal {
    fn new(error: ResponseError, message: impl Into<String>) -> Refusal {
        Refusal {
            error,
            message: message.into(),
        }
    }
}

/// A topic as created, or as it would be created for a `validate_only` request (whose topic
/// has no partitions, so the planned counts travel beside it).
pub struct Created {
    pub topic: Arc<Topic>,
    pub partitions: usize,
    pub replication_factor: usize,
}

/// What a CreateTopics entry (or an auto-creation) asks for.
#[derive(Debug, Clone, Default)]
pub struct TopicRequest {
    pub name: String,
    /// -1 for the broker default.
    pub partitions: i32,
    /// -1 for the broker default.
    pub replication_factor: i16,
    /// Explicit replica lists by partition index; when given, the two counts above must be -1.
    pub assignments: Vec<(i32, Vec<i32>)>,
    pub configs: Vec<(String, String)>,
}

pub struct Cluster {
    pub env: Env,
    pub config: Config,
    /// Directory holding one sub-directory per partition (`<topic>-<partition>`).
    pub data_root: PathBuf,
    pub cluster_id: String,
    state: Mutex<ControllerState>,
    /// Bounds parked fetches across all nodes (`Config::parked_fetches_max`).
    pub parked_fetches: Arc<tokio::sync::Semaphore>,
    /// Consumer groups and their committed offsets (kept in `__consumer_offsets`).
    pub groups: GroupCoordinator,
    /// Compaction and retention reports and schedule.
    pub cleaner: crate::cleaner::Cleaner,
    /// Test control: interceptions, injected errors, delays, version cap, request log.
    pub control: crate::control::ControlPlane,
}

struct ControllerState {
    /// Every node of this broker, up or down.
    nodes: BTreeMap<i32, NodeInfo>,
    /// Nodes serving now; Metadata lists only these and leaders are chosen among them.
    live: BTreeSet<i32>,
    topics: BTreeMap<String, Arc<Topic>>,
    topic_names_by_id: BTreeMap<Uuid, String>,
    partitions_total: usize,
    next_producer_id: i64,
    /// Producer ids are reserved in blocks, durably, so a restarted broker never reuses one.
    producer_ids_reserved_until: i64,
    /// Rotates the first replica of new topics across nodes, as Kafka's placement does.
    next_placement_start: usize,
}

/// Kafka's internal topics: clients may read them but not write them.
pub fn is_internal_topic(name: &str) -> bool {
    name == crate::group::OFFSETS_TOPIC || name == "__transaction_state"
}

/// Kafka's legal topic names: 1 to 249 of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), Refusal> {
    let invalid = |why: &str| {
        Err(Refusal::new(
            ResponseError::InvalidTopicException,
            format!("Topic name \"{name}\" is illegal, {why}"),
        ))
    };
    if name.is_empty() {
        return invalid("it can't be empty");
    }
    if name == "." || name == ".." {
        return invalid("it can't be '.' or '..'");
    }
    if name.len() > 249 {
        return invalid("it can't be longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
    {
        return invalid("it contains a character other than ASCII alphanumerics, '.', '_' and '-'");
    }
    Ok(())
}

/// Producer ids reserved per write of `cluster.json`.
const PRODUCER_ID_BLOCK: i64 = 1000;

fn storage_refusal(doing: &str, error: &io::Error) -> Refusal {
    tracing::error!(%error, "{doing} failed");
    Refusal::new(
        ResponseError::KafkaStorageError,
        format!("{doing} failed: {error}"),
    )
}

/// The first of `replicas` that is serving, or -1 (no leader).
fn first_live_in(state: &ControllerState, replicas: &[i32]) -> i32 {
    replicas
        .iter()
        .copied()
        .find(|replica| state.live.contains(replica))
        .unwrap_or(-1)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    crate::partition::assert_no_partition_lock_held();
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Cluster {
    /// Adds a node, serving. Leaders are not moved to it; see `Cluster::node_up`.
    pub fn register_node(&self, node: NodeInfo) {
        let mut state = lock(&self.state);
        state.live.insert(node.id);
        state.nodes.insert(node.id, node);
    }

    /// Every node's id, serving or down.
    pub fn node_ids(&self) -> Vec<i32> {
        lock(&self.state).nodes.keys().copied().collect()
    }

    /// The nodes serving now, by id.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        let state = lock(&self.state);
        state
            .nodes
            .values()
            .filter(|node| state.live.contains(&node.id))
            .cloned()
            .collect()
    }

    /// The lowest live node id acts as the controller Metadata reports.
    pub fn controller_id(&self) -> i32 {
        lock(&self.state).live.iter().next().copied().unwrap_or(-1)
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        lock(&self.state).topics.get(name).cloned()
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        let state = lock(&self.state);
        let name = state.topic_names_by_id.get(&id)?;
        state.topics.get(name).cloned()
    }

    /// All topics, by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        lock(&self.state).topics.values().cloned().collect()
    }

    /// A producer id no one has had, even before a restart.
    pub fn allocate_producer_id(&self) -> Result<i64, Refusal> {
        let mut state = lock(&self.state);
        if state.next_producer_id >= state.producer_ids_reserved_until {
            state.producer_ids_reserved_until = state.next_producer_id + PRODUCER_ID_BLOCK;
            self.persist(&state).map_err(|error| {
                state.producer_ids_reserved_until = state.next_producer_id;
                storage_refusal("reserving producer ids", &error)
            })?;
        }
        let id = state.next_producer_id;
        state.next_producer_id += 1;
        Ok(id)
    }

    /// For a clean stop: fsyncs every partition's log and records the metadata.
    pub fn close(&self) -> io::Result<()> {
        let state = lock(&self.state);
        let now_ms = self.env.clock.wall_ms();
        for partition in state
            .topics
            .values()
            .flat_map(|topic| topic.partitions.iter())
        {
            partition
                .state()
                .flush_if_due(now_ms, true)
                .map_err(|error| {
                    io::Error::other(format!("{}-{}: {error}", partition.topic, partition.index))
                })?;
        }
        self.persist(&state)
    }

    /// Records the metadata now (after DeleteRecords moved a log start offset).
    pub fn record_metadata(&self) -> io::Result<()> {
        let state = lock(&self.state);
        self.persist(&state)
    }

    /// Writes the controller's metadata to `cluster.json` (see `store`).
    fn persist(&self, state: &ControllerState) -> io::Result<()> {
        let topics = state
            .topics
            .values()
            .map(|topic| store::StoredTopic {
                name: topic.name.clone(),
                id: topic.id,
                configs: topic.config.overrides.clone(),
                partitions: topic
                    .partitions
                    .iter()
                    .map(|partition| {
                        let partition = partition.state();
                        store::StoredPartition {
                            replicas: partition.replicas.clone(),
                            leader: partition.leader,
                            leader_epoch: partition.leader_epoch,
                            log_start_offset: partition.log.log_start_offset(),
                        }
                    })
                    .collect(),
            })
            .collect();
        let stored = store::StoredCluster {
            topics,
            producer_ids_reserved_until: state.producer_ids_reserved_until,
            ..store::StoredCluster::new(self.cluster_id.clone())
        };
        store::save(self.env.disk.as_ref(), &self.data_root, &stored)
    }

    /// The named topic, created with broker defaults first when auto-creation is on and the
    /// name is legal.
    pub fn topic_or_auto_create(&self, name: &str) -> Result<Arc<Topic>, Refusal> {
        if let Some(topic) = self.topic(name) {
            return Ok(topic);
        }
        if !self.config.auto_create_topics {
            return Err(Refusal::new(
                ResponseError::UnknownTopicOrPartition,
                format!("topic {name} does not exist and auto-creation is off"),
            ));
        }
        let request = TopicRequest {
            name: name.to_owned(),
            partitions: -1,
            replication_factor: -1,
            ..TopicRequest::default()
        };
        match self.create_topic(&request, false) {
            Ok(created) => Ok(created.topic),
            // Another request created it between our look-up and our creation.
            Err(refusal) if refusal.error == ResponseError::TopicAlreadyExists => {
                self.topic(name).ok_or(refusal)
            }
            Err(refusal) => Err(refusal),
        }
    }

    /// Creates a topic (or only checks that it could be, with `validate_only`).
    pub fn create_topic(
        &self,
        request: &TopicRequest,
        validate_only: bool,
    ) -> Result<Created, Refusal> {
        validate_topic_name(&request.name)?;
        let config = self
            .config
            .topic_defaults
            .with_overrides(
                request
                    .configs
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .map_err(|invalid| Refusal::new(ResponseError::InvalidConfig, invalid.message))?;
        let mut state = lock(&self.state);
        if state.topics.contains_key(&request.name) {
            return Err(Refusal::new(
                ResponseError::TopicAlreadyExists,
                format!("Topic '{}' already exists.", request.name),
            ));
        }
        if state.topics.len() >= self.config.topics_max {
            return Err(Refusal::new(
                ResponseError::PolicyViolation,
                format!(
                    "the broker holds its maximum of {} topics",
                    self.config.topics_max
                ),
            ));
        }
        let assignments = self.plan_assignments(&mut state, request)?;
        self.check_partition_budget(&state, assignments.len())?;
        let id = self.unused_topic_id(&state);
        let topic = Topic {
            name: request.name.clone(),
            id,
            partitions: Vec::new(),
            internal: is_internal_topic(&request.name),
            config,
        };
        let partitions = assignments.len();
        let replication_factor = assignments.first().map_or(0, Vec::len);
        if validate_only {
            return Ok(Created {
                topic: Arc::new(topic),
                partitions,
                replication_factor,
            });
        }
        let partitions_created = assignments
            .into_iter()
            .enumerate()
            .map(|(index, replicas)| {
                let leader = first_live_in(&state, &replicas);
                self.new_partition(&topic, index as i32, replicas, leader)
            })
            .collect::<Result<Vec<_>, Refusal>>()?;
        let topic = Arc::new(Topic {
            partitions: partitions_created,
            ..topic
        });
        // The partitions' directories are durable; the topic is not recorded yet.
        crash_point!(self.env.disk, "topic.create.logs_created");
        state.partitions_total += topic.partitions.len();
        state.topic_names_by_id.insert(id, topic.name.clone());
        state.topics.insert(topic.name.clone(), Arc::clone(&topic));
        if let Err(error) = self.persist(&state) {
            // Not recorded, so not created: undo, files included.
            state.partitions_total -= topic.partitions.len();
            state.topic_names_by_id.remove(&id);
            state.topics.remove(&topic.name);
            self.remove_partition_files(&topic);
            return Err(storage_refusal("recording a new topic", &error));
        }
        tracing::info!(topic = %topic.name, partitions, "created topic");
        Ok(Created {
            topic,
            partitions,
            replication_factor,
        })
    }

    fn unused_topic_id(&self, state: &ControllerState) -> Uuid {
        loop {
            let id = self.env.entropy.uuid();
            if !state.topic_names_by_id.contains_key(&id) && !id.is_nil() {
                return id;
            }
        }
    }

    fn check_partition_budget(&self, state: &ControllerState, more: usize) -> Result<(), Refusal> {
        if state.partitions_total + more > self.config.partitions_max {
            return Err(Refusal::new(
                ResponseError::InvalidPartitions,
                format!(
                    "the broker holds {} partitions and allows at most {}",
                    state.partitions_total, self.config.partitions_max
                ),
            ));
        }
        Ok(())
    }

    /// Replica lists for each new partition, from explicit assignments or by placement.
    fn plan_assignments(
        &self,
        state: &mut ControllerState,
        request: &TopicRequest,
    ) -> Result<Vec<Vec<i32>>, Refusal> {
        if !request.assignments.is_empty() {
            if request.partitions != -1 || request.replication_factor != -1 {
                return Err(Refusal::new(
                    ResponseError::InvalidRequest,
                    "Both numPartitions or replicationFactor and replicasAssignments were set. \
                     Both cannot be used at the same time.",
                ));
            }
            return explicit_assignments(state, &request.assignments, 0);
        }
        let partitions = match request.partitions {
            -1 => self.config.default_partitions,
            count if count <= 0 => {
                return Err(Refusal::new(
                    ResponseError::InvalidPartitions,
                    "Number of partitions must be larger than 0.",
                ));
            }
            count => count,
        };
        let replication_factor = match request.replication_factor {
            -1 => self.config.default_replication_factor,
            factor if factor <= 0 => {
                return Err(Refusal::new(
                    ResponseError::InvalidReplicationFactor,
                    "Replication factor must be larger than 0.",
                ));
            }
            factor => factor,
        };
        place_replicas(state, 0, partitions as usize, replication_factor)
    }

    fn new_partition(
        &self,
        topic: &Topic,
        index: i32,
        replicas: Vec<i32>,
        leader: i32,
    ) -> Result<Arc<Partition>, Refusal> {
        let dir = self.data_root.join(format!("{}-{index}", topic.name));
        let now_ms = self.env.clock.wall_ms();
        let mut log = Log::create(
            Arc::clone(&self.env.disk),
            &dir,
            log_config(&topic.config),
            now_ms,
        )
        .map_err(|error| {
            Refusal::new(
                ResponseError::KafkaStorageError,
                format!("creating {}: {error}", dir.display()),
            )
        })?;
        let leader_epoch = 0;
        log.assign_epoch(leader_epoch, 0);
        let mut state = PartitionState::new(
            leader,
            leader_epoch,
            replicas,
            log,
            ProducerStates::default(),
            topic.config.clone(),
        );
        state.set_sabotage(self.config.sabotage);
        Ok(Arc::new(Partition::new(
            &topic.name,
            topic.id,
            index,
            state,
        )))
    }

    /// Deletes a topic and its logs. Requests still holding a partition see it as deleted.
    pub fn delete_topic(&self, name: &str) -> Result<(), Refusal> {
        let topic = {
            let mut state = lock(&self.state);
            let topic = state.topics.remove(name).ok_or_else(|| {
                Refusal::new(
                    ResponseError::UnknownTopicOrPartition,
                    "This server does not host this topic-partition.",
                )
            })?;
            // Recorded first: a crash after this leaves only orphan files, removed at start.
            if let Err(error) = self.persist(&state) {
                state.topics.insert(name.to_owned(), topic);
                return Err(storage_refusal("recording a topic deletion", &error));
            }
            state.topic_names_by_id.remove(&topic.id);
            state.partitions_total -= topic.partitions.len();
            topic
        };
        // Recorded as deleted; its files are still there.
        crash_point!(self.env.disk, "topic.delete.recorded");
        self.remove_partition_files(&topic);
        tracing::info!(topic = %name, "deleted topic");
        Ok(())
    }

    /// Marks a topic's partitions deleted (requests still holding one see that) and removes
    /// their directories.
    fn remove_partition_files(&self, topic: &Topic) {
        for partition in &topic.partitions {
            let mut state = partition.state();
            state.deleted = true;
            let dir = state.log.dir().to_path_buf();
            if let Err(error) = self.env.disk.remove_dir_all(&dir) {
                tracing::warn!(%error, dir = %dir.display(), "could not remove a deleted partition's files");
            }
        }
    }

    /// Grows a topic to `count` partitions.
    pub fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: Option<&[Vec<i32>]>,
        validate_only: bool,
    ) -> Result<(), Refusal> {
        let mut state = lock(&self.state);
        let topic = state.topics.get(name).cloned().ok_or_else(|| {
            Refusal::new(
                ResponseError::UnknownTopicOrPartition,
                format!("The topic '{name}' does not exist."),
            )
        })?;
        let current = topic.partitions.len();
        if count as i64 <= current as i64 {
            let message = if count as usize == current {
                format!("Topic already has {current} partitions.")
            } else {
                format!(
                    "Topic currently has {current} partitions, which is higher than the requested {count}."
                )
            };
            return Err(Refusal::new(ResponseError::InvalidPartitions, message));
        }
        let added = count as usize - current;
        // No assignments (null) means "place them"; a list, even an empty one, must name every
        // new partition, as Kafka's controller insists.
        let new_replicas = if let Some(assignments) = assignments {
            if assignments.len() != added {
                return Err(Refusal::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "Attempted to add {added} additional partition(s), but only {} assignment(s) were specified.",
                        assignments.len()
                    ),
                ));
            }
            let numbered: Vec<(i32, Vec<i32>)> = assignments
                .iter()
                .enumerate()
                .map(|(offset, replicas)| ((current + offset) as i32, replicas.clone()))
                .collect();
            explicit_assignments(&state, &numbered, current)?
        } else {
            let replication_factor = topic.partitions[0].state().replicas.len() as i16;
            place_replicas(&mut state, current, added, replication_factor)?
        };
        self.check_partition_budget(&state, added)?;
        if validate_only {
            return Ok(());
        }
        let mut partitions = topic.partitions.clone();
        for (offset, replicas) in new_replicas.into_iter().enumerate() {
            let leader = first_live_in(&state, &replicas);
            let index = (current + offset) as i32;
            partitions.push(self.new_partition(&topic, index, replicas, leader)?);
        }
        let grown = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            config: topic.config.clone(),
            partitions,
            internal: topic.internal,
        });
        // The new partitions' directories are durable; they are not recorded yet.
        crash_point!(self.env.disk, "partitions.create.logs_created");
        state.partitions_total += added;
        state.topics.insert(name.to_owned(), Arc::clone(&grown));
        if let Err(error) = self.persist(&state) {
            state.partitions_total -= added;
            state.topics.insert(name.to_owned(), Arc::clone(&topic));
            let added_only = Topic {
                partitions: grown.partitions[current..].to_vec(),
                name: grown.name.clone(),
                id: grown.id,
                config: grown.config.clone(),
                internal: grown.internal,
            };
            self.remove_partition_files(&added_only);
            return Err(storage_refusal("recording new partitions", &error));
        }
        Ok(())
    }
}

/// Kafka prints cluster ids as URL-safe base64 of a UUID without padding (22 characters).
fn kafka_style_id(uuid: Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = uuid.as_bytes();
    let mut id = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let mut group = [0u8; 3];
        group[..chunk.len()].copy_from_slice(chunk);
        let bits = u32::from_be_bytes([0, group[0], group[1], group[2]]);
        let symbols = chunk.len() + 1;
        for position in 0..symbols {
            let index = (bits >> (18 - 6 * position)) & 0x3f;
            id.push(ALPHABET[index as usize] as char);
        }
    }
    id
}

pub mod configs;
mod groups;
mod leaders;

pub use leaders::LeadershipError;
mod open;
mod placement;
pub mod store;

use placement::{explicit_assignments, place_replicas};

#[cfg(test)]
mod tests;
