use super::*;

fn cluster_of(nodes: i32) -> Cluster {
    let cluster = Cluster::open(Env::memory(), Config::default(), PathBuf::from("/data")).unwrap();
    for id in 1..=nodes {
        cluster.register_node(NodeInfo {
            id,
            host: "127.0.0.1".into(),
            port: 9000 + id as u16,
        });
    }
    cluster
}

fn request(name: &str, partitions: i32, replication_factor: i16) -> TopicRequest {
    TopicRequest {
        name: name.into(),
        partitions,
        replication_factor,
        ..TopicRequest::default()
    }
}

#[test]
fn topic_names_follow_kafka_rules() {
    assert!(validate_topic_name("orders.v1_raw-2").is_ok());
    for bad in ["", ".", "..", "has space", "slash/y", &"x".repeat(250)] {
        let refusal = validate_topic_name(bad).unwrap_err();
        assert_eq!(
            refusal.error,
            ResponseError::InvalidTopicException,
            "{bad:?}"
        );
    }
}

#[test]
fn created_topics_spread_leaders_over_nodes_and_get_unique_ids() {
    let cluster = cluster_of(3);
    let orders = cluster
        .create_topic(&request("orders", 6, 2), false)
        .unwrap()
        .topic;
    let leaders: Vec<i32> = orders.partitions.iter().map(|p| p.state().leader).collect();
    for node in 1..=3 {
        assert_eq!(
            leaders.iter().filter(|&&l| l == node).count(),
            2,
            "{leaders:?}"
        );
    }
    for partition in &orders.partitions {
        let state = partition.state();
        assert_eq!(state.replicas.len(), 2);
        assert_eq!(state.replicas[0], state.leader);
    }
    let payments = cluster
        .create_topic(&request("payments", 1, 1), false)
        .unwrap()
        .topic;
    assert_ne!(orders.id, payments.id);
    assert_eq!(cluster.topic_by_id(orders.id).unwrap().name, "orders");
}

#[test]
fn creating_a_topic_twice_or_beyond_the_nodes_is_refused() {
    let cluster = cluster_of(1);
    cluster.create_topic(&request("t", 1, 1), false).unwrap();
    let again = cluster
        .create_topic(&request("t", 1, 1), false)
        .err()
        .unwrap();
    assert_eq!(again.error, ResponseError::TopicAlreadyExists);
    let too_many = cluster
        .create_topic(&request("u", 1, 3), false)
        .err()
        .unwrap();
    assert_eq!(too_many.error, ResponseError::InvalidReplicationFactor);
    let zero = cluster
        .create_topic(&request("v", 0, 1), false)
        .err()
        .unwrap();
    assert_eq!(zero.error, ResponseError::InvalidPartitions);
}

#[test]
fn validate_only_creates_nothing() {
    let cluster = cluster_of(1);
    let planned = cluster.create_topic(&request("t", 3, 1), true).unwrap();
    assert_eq!((planned.partitions, planned.replication_factor), (3, 1));
    assert!(cluster.topic("t").is_none());
    assert!(!cluster.env.disk.exists(&PathBuf::from("/data/t-0")));
}

#[test]
fn auto_creation_uses_defaults_and_can_be_turned_off() {
    let cluster = cluster_of(1);
    let topic = cluster.topic_or_auto_create("fresh").unwrap();
    assert_eq!(topic.partitions.len(), 1);
    let strict = Cluster::open(
        Env::memory(),
        Config {
            auto_create_topics: false,
            ..Config::default()
        },
        PathBuf::from("/data"),
    )
    .unwrap();
    let refusal = strict.topic_or_auto_create("fresh").err().unwrap();
    assert_eq!(refusal.error, ResponseError::UnknownTopicOrPartition);
}

#[test]
fn partitions_only_grow_and_keep_their_logs() {
    let cluster = cluster_of(2);
    cluster.create_topic(&request("t", 2, 1), false).unwrap();
    let before = cluster.topic("t").unwrap();
    cluster.create_partitions("t", 5, None, false).unwrap();
    let after = cluster.topic("t").unwrap();
    assert_eq!(after.partitions.len(), 5);
    assert!(Arc::ptr_eq(&before.partitions[0], &after.partitions[0]));
    let shrink = cluster.create_partitions("t", 3, None, false).unwrap_err();
    assert_eq!(shrink.error, ResponseError::InvalidPartitions);
    let bad = cluster
        .create_partitions("t", 6, Some(&[vec![7]]), false)
        .unwrap_err();
    assert_eq!(bad.error, ResponseError::InvalidReplicaAssignment);
    let none_named = cluster
        .create_partitions("t", 6, Some(&[]), false)
        .unwrap_err();
    assert_eq!(none_named.error, ResponseError::InvalidReplicaAssignment);
    assert_eq!(
        none_named.message,
        "Attempted to add 1 additional partition(s), but only 0 assignment(s) were specified."
    );
    cluster
        .create_partitions("t", 6, Some(&[vec![2]]), false)
        .unwrap();
    assert_eq!(cluster.topic("t").unwrap().partitions[5].state().leader, 2);
}

#[test]
fn deleting_a_topic_removes_its_files_and_marks_held_partitions() {
    let cluster = cluster_of(1);
    let topic = cluster
        .create_topic(&request("t", 2, 1), false)
        .unwrap()
        .topic;
    assert!(cluster.env.disk.exists(&PathBuf::from("/data/t-1")));
    cluster.delete_topic("t").unwrap();
    assert!(cluster.topic("t").is_none());
    assert!(cluster.topic_by_id(topic.id).is_none());
    assert!(!cluster.env.disk.exists(&PathBuf::from("/data/t-1")));
    assert!(topic.partitions[0].state().deleted);
    assert_eq!(
        cluster.delete_topic("t").unwrap_err().error,
        ResponseError::UnknownTopicOrPartition
    );
}

#[test]
fn producer_ids_are_unique() {
    let cluster = cluster_of(1);
    let first = cluster.allocate_producer_id().unwrap();
    assert_ne!(first, cluster.allocate_producer_id().unwrap());
}

#[test]
fn cluster_ids_look_like_kafkas() {
    let id = kafka_style_id(Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef));
    assert_eq!(id.len(), 22);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
}

// ---- sabotage (known-bad variants for the simulator) -------------------------------------

mod sabotage {
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use tidepool_io::{Disk, DiskFile, MemDisk, OpenMode};
    use tidepool_protocol::records::BatchBuilder;

    use super::*;
    use crate::config::Sabotage;
    use crate::partition::AppendContext;

    /// A `MemDisk` that counts file syncs.
    #[derive(Default)]
    struct CountingDisk {
        inner: MemDisk,
        syncs: Arc<AtomicUsize>,
    }

    struct CountingFile {
        inner: Box<dyn DiskFile>,
        syncs: Arc<AtomicUsize>,
    }

    impl Disk for CountingDisk {
        fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn DiskFile>> {
            Ok(Box::new(CountingFile {
                inner: self.inner.open(path, mode)?,
                syncs: Arc::clone(&self.syncs),
            }))
        }
        fn create_dir_all(&self, path: &Path) -> io::Result<()> {
            self.inner.create_dir_all(path)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            self.inner.rename(from, to)
        }
        fn remove_file(&self, path: &Path) -> io::Result<()> {
            self.inner.remove_file(path)
        }
        fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
            self.inner.remove_dir_all(path)
        }
        fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
            self.inner.list(dir)
        }
        fn exists(&self, path: &Path) -> bool {
            self.inner.exists(path)
        }
        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            self.inner.sync_dir(dir)
        }
    }

    impl DiskFile for CountingFile {
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
            self.inner.read_at(offset, buf)
        }
        fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
            self.inner.write_at(offset, data)
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.inner.set_len(len)
        }
        fn len(&self) -> io::Result<u64> {
            self.inner.len()
        }
        fn sync(&self) -> io::Result<()> {
            self.syncs.fetch_add(1, Ordering::SeqCst);
            self.inner.sync()
        }
    }

    fn open(disk: Arc<dyn Disk>, sabotage: Sabotage) -> Cluster {
        let config = Config {
            sabotage,
            ..Config::default()
        };
        let env = Env::memory().with_disk(disk);
        let cluster = Cluster::open(env, config, PathBuf::from("/data")).unwrap();
        cluster.register_node(NodeInfo {
            id: 1,
            host: "127.0.0.1".into(),
            port: 9001,
        });
        cluster
    }

    fn create_flushed_topic(cluster: &Cluster) -> Arc<Partition> {
        let request = TopicRequest {
            configs: vec![("flush.messages".to_owned(), "1".to_owned())],
            ..request("orders", 1, 1)
        };
        cluster.create_topic(&request, false).unwrap();
        cluster.topic("orders").unwrap().partitions[0].clone()
    }

    /// One record from idempotent producer 7, epoch 0, at `sequence`.
    fn idempotent_batch(sequence: i32) -> Bytes {
        let mut builder = BatchBuilder::new();
        builder.producer(7, 0, sequence);
        builder.append(
            1_000,
            Some(Bytes::from_static(b"key")),
            Some(Bytes::from_static(b"value")),
            Vec::new(),
        );
        builder.build().unwrap()
    }

    fn produce(partition: &Partition, batch: &Bytes) -> crate::partition::ProduceOutcome {
        let context = AppendContext {
            node_id: 1,
            now_ms: 1_000,
            producers_max: 100,
        };
        partition.produce(batch, context)
    }

    /// File syncs one acknowledged produce to a flush.messages=1 topic costs.
    fn syncs_per_produce(sabotage: Sabotage) -> usize {
        let disk = Arc::new(CountingDisk::default());
        let cluster = open(disk.clone(), sabotage);
        let partition = create_flushed_topic(&cluster);
        let before = disk.syncs.load(Ordering::SeqCst);
        let outcome = produce(&partition, &idempotent_batch(0));
        assert_eq!((outcome.error, outcome.base_offset), (None, 0));
        disk.syncs.load(Ordering::SeqCst) - before
    }

    #[test]
    fn ack_before_fsync_acknowledges_without_the_sync_flush_messages_asks_for() {
        assert_eq!(syncs_per_produce(Sabotage::default()), 1);
        let sabotaged = Sabotage {
            ack_before_fsync: true,
            ..Sabotage::default()
        };
        assert_eq!(syncs_per_produce(sabotaged), 0);
    }

    /// Produces a batch, "kills" the broker (drops it without a clean stop), reopens the data
    /// root with `sabotage` and sends the same batch again, as a producer retrying after a
    /// lost answer does. Returns the retry's base offset and the log end offset after it.
    fn retry_after_restart(sabotage: Sabotage) -> (i64, i64) {
        let disk: Arc<dyn Disk> = Arc::new(MemDisk::new());
        let batch = idempotent_batch(0);
        {
            let cluster = open(Arc::clone(&disk), Sabotage::default());
            let partition = create_flushed_topic(&cluster);
            assert_eq!(produce(&partition, &batch).base_offset, 0);
        }
        let cluster = open(disk, sabotage);
        let partition = cluster.topic("orders").unwrap().partitions[0].clone();
        let outcome = produce(&partition, &batch);
        assert_eq!(outcome.error, None);
        let log_end_offset = partition.state().log.log_end_offset();
        (outcome.base_offset, log_end_offset)
    }

    #[test]
    fn forget_producer_state_appends_a_retried_batch_twice_after_a_restart() {
        assert_eq!(
            retry_after_restart(Sabotage::default()),
            (0, 1),
            "recognised as a duplicate"
        );
        let sabotaged = Sabotage {
            forget_producer_state: true,
            ..Sabotage::default()
        };
        assert_eq!(retry_after_restart(sabotaged), (1, 2), "appended again");
    }
}
