//! The scripted sessions. Each scenario creates what it needs under its own names, so the
//! scenarios are independent of each other except for the warm-up (which makes both brokers'
//! group coordinators ready, so no scenario sees Kafka's first-use COORDINATOR_NOT_AVAILABLE).
//!
//! Versions are pinned per step: mostly the newest that both brokers serve with topic names,
//! plus older and topic-id versions where the answer's shape changes.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::alter_configs_request::{
    AlterConfigsResource, AlterableConfig as AlterConfig,
};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource as IncrementalResource, AlterableConfig as IncrementalConfig,
};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    AlterConfigsRequest, ApiVersionsRequest, BrokerId, ConsumerProtocolAssignment,
    ConsumerProtocolSubscription, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteGroupsRequest, DeleteRecordsRequest, DeleteTopicsRequest, DescribeClusterRequest,
    DescribeConfigsRequest, DescribeGroupsRequest, FetchRequest, FindCoordinatorRequest,
    HeartbeatRequest, IncrementalAlterConfigsRequest, InitProducerIdRequest, JoinGroupRequest,
    LeaveGroupRequest, ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest, OffsetForLeaderEpochRequest, ProduceRequest,
    ProducerId, SyncGroupRequest, TopicName, TransactionalId,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use serde_json::Value;
use tidepool_protocol::batch::Compression;
use tidepool_protocol::records::{BatchBuilder, Header, Record};

use super::scenario::{Ctx, Scenario, Step, await_answer, call, group, scenario, sleep};

const TIMEOUT_MS: i32 = 30_000;
const SESSION_MS: i32 = 30_000;
const REBALANCE_MS: i32 = 30_000;
/// A UUID neither broker handed out.
const UNKNOWN_ID: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";

pub fn all() -> Vec<Scenario> {
    vec![
        warm_up(),
        api_versions(),
        metadata(),
        create_topics(),
        delete_topics(),
        create_partitions(),
        produce(),
        idempotent_produce(),
        codecs_and_acks_zero(),
        fetch(),
        list_offsets(),
        init_producer_id(),
        offset_for_leader_epoch(),
        find_coordinator(),
        group_membership(),
        refused_joins(),
        group_rebalance(),
        static_members(),
        group_offsets(),
        group_administration(),
        delete_records(),
        describe_configs(),
        alter_configs(),
        incremental_alter_configs(),
        describe_cluster(),
        internal_topics(),
    ]
}

// ---------------------------------------------------------------------------------------------
// Request helpers.

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

fn error_code(raw: &Value, pointer: &str) -> i64 {
    raw.pointer(pointer).and_then(Value::as_i64).unwrap_or(-1)
}

fn metadata_request(ctx: &Ctx, topics: &[&str]) -> MetadataRequest {
    MetadataRequest::default().with_topics(Some(
        topics
            .iter()
            .map(|topic| MetadataRequestTopic::default().with_name(Some(ctx.topic(topic))))
            .collect(),
    ))
}

fn new_topic(ctx: &Ctx, name: &str, partitions: i32, configs: &[(&str, &str)]) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(ctx.topic(name))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(
            configs
                .iter()
                .map(|(key, value)| {
                    CreatableTopicConfig::default()
                        .with_name(s(key))
                        .with_value(Some(s(value)))
                })
                .collect(),
        )
}

fn create(
    step: &str,
    name: &'static str,
    partitions: i32,
    configs: &'static [(&'static str, &'static str)],
) -> Step {
    call(step, 7, move |ctx| {
        CreateTopicsRequest::default()
            .with_timeout_ms(TIMEOUT_MS)
            .with_topics(vec![new_topic(ctx, name, partitions, configs)])
    })
}

/// Polls Metadata until `name` has `partitions` partitions, each with a leader, then
/// ListOffsets until every partition answers (Kafka's metadata shows a leader a moment before
/// the partition serves).
fn wait_for(name: &'static str, partitions: usize) -> Step {
    let count = partitions as i32;
    group(vec![
        wait_for_metadata(name, partitions),
        call(&format!("wait for {name} to serve"), 1, move |ctx| {
            let queries: Vec<(i32, i64)> = (0..count).map(|partition| (partition, -1)).collect();
            list_offsets_request(ctx, name, &queries)
        })
        .until(|raw| {
            raw.pointer("/topics/0/partitions")
                .and_then(Value::as_array)
                .is_some_and(|partitions| {
                    partitions
                        .iter()
                        .all(|partition| partition["error_code"].as_i64() == Some(0))
                })
        }),
    ])
}

fn wait_for_metadata(name: &'static str, partitions: usize) -> Step {
    call(&format!("wait for {name}"), 12, move |ctx| {
        metadata_request(ctx, &[name])
    })
    .until(move |raw| {
        let Some(found) = raw
            .pointer("/topics/0/partitions")
            .and_then(Value::as_array)
        else {
            return false;
        };
        error_code(raw, "/topics/0/error_code") == 0
            && found.len() == partitions
            && found
                .iter()
                .all(|partition| partition["leader_id"].as_i64().is_some_and(|id| id >= 0))
    })
}

/// Polls Metadata until `name` is unknown.
fn wait_gone(name: &'static str) -> Step {
    call(&format!("wait until {name} is gone"), 12, move |ctx| {
        metadata_request(ctx, &[name])
    })
    .until(|raw| error_code(raw, "/topics/0/error_code") == 3)
}

/// `count` records: keys `key-i`, values `value-i`, one header on odd records, timestamps
/// `base_ms + first_ms + i`.
fn records(ctx: &Ctx, count: usize, first_ms: i64) -> Bytes {
    let mut builder = BatchBuilder::new();
    fill(&mut builder, ctx, count, first_ms);
    builder.build().expect("a batch")
}

fn fill(builder: &mut BatchBuilder, ctx: &Ctx, count: usize, first_ms: i64) {
    for index in 0..count {
        builder.push(Record {
            offset: index as i64,
            timestamp: ctx.base_ms + first_ms + index as i64,
            key: Some(Bytes::from(format!("key-{index}"))),
            value: if index == 2 {
                None
            } else {
                Some(Bytes::from(format!("value-{index}")))
            },
            headers: if index % 2 == 1 {
                vec![Header {
                    key: "h".to_owned(),
                    value: Some(Bytes::from(format!("{index}"))),
                }]
            } else {
                Vec::new()
            },
        });
    }
}

fn idempotent_records(
    ctx: &Ctx,
    producer_id: i64,
    epoch: i16,
    sequence: i32,
    count: usize,
) -> Bytes {
    let mut builder = BatchBuilder::new();
    builder.producer(producer_id, epoch, sequence);
    fill(&mut builder, ctx, count, 0);
    builder.build().expect("a batch")
}

fn produce_request(
    ctx: &Ctx,
    topic: &str,
    partition: i32,
    records: Bytes,
    acks: i16,
) -> ProduceRequest {
    ProduceRequest::default()
        .with_transactional_id(None)
        .with_acks(acks)
        .with_timeout_ms(TIMEOUT_MS)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(ctx.topic(topic))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ]),
        ])
}

/// Produces `count` plain records at v11, acks=all (set-up for fetch-side scenarios).
fn produce_plain(
    step: &str,
    topic: &'static str,
    partition: i32,
    count: usize,
    first_ms: i64,
) -> Step {
    call(step, 11, move |ctx| {
        produce_request(ctx, topic, partition, records(ctx, count, first_ms), -1)
    })
}

fn fetch_partition(partition: i32, offset: i64) -> FetchPartition {
    FetchPartition::default()
        .with_partition(partition)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(1024 * 1024)
}

fn fetch_request(ctx: &Ctx, topic: &str, partitions: Vec<FetchPartition>) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(50 * 1024 * 1024)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(ctx.topic(topic))
                .with_partitions(partitions),
        ])
}

fn list_offsets_request(ctx: &Ctx, topic: &str, queries: &[(i32, i64)]) -> ListOffsetsRequest {
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(ctx.topic(topic))
                .with_partitions(
                    queries
                        .iter()
                        .map(|&(partition, timestamp)| {
                            ListOffsetsPartition::default()
                                .with_partition_index(partition)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                ),
        ])
}

/// The consumer protocol's bytes: a version, then the message at that version.
fn consumer_protocol(message: &impl Encodable) -> Bytes {
    let mut bytes = BytesMut::new();
    bytes.put_i16(0);
    message.encode(&mut bytes, 0).expect("consumer protocol");
    bytes.freeze()
}

fn subscription(ctx: &Ctx, topics: &[&str]) -> Bytes {
    consumer_protocol(
        &ConsumerProtocolSubscription::default()
            .with_topics(topics.iter().map(|topic| ctx.str(topic)).collect()),
    )
}

fn assignment(ctx: &Ctx, topic: &str, partitions: &[i32]) -> Bytes {
    consumer_protocol(
        &ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            AssignedPartitions::default()
                .with_topic(ctx.topic(topic))
                .with_partitions(partitions.to_vec()),
        ]),
    )
}

fn join(ctx: &Ctx, group: &str, member_id: StrBytes, topic: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(ctx.group(group))
        .with_session_timeout_ms(SESSION_MS)
        .with_rebalance_timeout_ms(REBALANCE_MS)
        .with_member_id(member_id)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(subscription(ctx, &[topic])),
        ])
}

fn sync(
    ctx: &Ctx,
    group: &str,
    generation: i64,
    member_id: StrBytes,
    assignments: Vec<SyncGroupRequestAssignment>,
) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(ctx.group(group))
        .with_generation_id(generation as i32)
        .with_member_id(member_id)
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(assignments)
}

fn heartbeat(ctx: &Ctx, group: &str, generation: i64, member_id: StrBytes) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(ctx.group(group))
        .with_generation_id(generation as i32)
        .with_member_id(member_id)
}

fn commit(
    ctx: &Ctx,
    group: &str,
    generation: i64,
    member_id: StrBytes,
    topic: &str,
    offsets: &[(i32, i64)],
) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(ctx.group(group))
        .with_generation_id_or_member_epoch(generation as i32)
        .with_member_id(member_id)
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(ctx.topic(topic))
                .with_partitions(
                    offsets
                        .iter()
                        .map(|&(partition, offset)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(partition)
                                .with_committed_offset(offset)
                                .with_committed_metadata(Some(s("meta")))
                        })
                        .collect(),
                ),
        ])
}

/// OffsetFetch v8+ for one group: the named partitions, or all when `topic` is `None`.
fn offset_fetch(ctx: &Ctx, group: &str, topic: Option<(&str, &[i32])>) -> OffsetFetchRequest {
    OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(ctx.group(group))
            .with_topics(topic.map(|(topic, partitions)| {
                vec![
                    OffsetFetchRequestTopics::default()
                        .with_name(ctx.topic(topic))
                        .with_partition_indexes(partitions.to_vec()),
                ]
            })),
    ])
}

fn describe_groups(ctx: &Ctx, groups: &[&str]) -> DescribeGroupsRequest {
    DescribeGroupsRequest::default()
        .with_groups(groups.iter().map(|group| ctx.group(group)).collect())
}

fn topic_configs(ctx: &Ctx, topic: &str, keys: Option<&[&str]>) -> DescribeConfigsRequest {
    DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(ctx.str(topic))
            .with_configuration_keys(keys.map(|keys| keys.iter().map(|key| s(key)).collect())),
    ])
}

/// Polls DescribeConfigs until `key` of `topic` reads `value` (Kafka applies config changes
/// to the broker's view a moment after answering).
fn wait_config(topic: &'static str, key: &'static str, value: Option<&'static str>) -> Step {
    call(&format!("wait for {key}={value:?}"), 4, move |ctx| {
        topic_configs(ctx, topic, Some(&[key]))
    })
    .until(move |raw| {
        raw.pointer("/results/0/configs/0/value")
            .is_some_and(|found| found.as_str() == value)
    })
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

fn warm_up() -> Scenario {
    scenario(
        "warm-up",
        vec![
            call("group coordinator", 3, |ctx| {
                FindCoordinatorRequest::default().with_key(ctx.str("warm-up"))
            })
            .until(|raw| error_code(raw, "/error_code") == 0),
            call("group coordinator loaded", 8, |ctx| {
                offset_fetch(ctx, "warm-up", None)
            })
            .until(|raw| error_code(raw, "/groups/0/error_code") == 0),
            // Kafka's producer id manager answers COORDINATOR_LOAD_IN_PROGRESS at first.
            call("producer ids", 4, |_| {
                InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000)
            })
            .until(|raw| error_code(raw, "/error_code") == 0),
            // Kafka creates __transaction_state on the first look-up; Tidepool answers at
            // once that it has no transactions.
            call("transaction coordinator", 3, |ctx| {
                FindCoordinatorRequest::default()
                    .with_key(ctx.str("warm-up"))
                    .with_key_type(1)
            })
            .until(|raw| {
                error_code(raw, "/error_code") == 0
                    || raw["error_message"]
                        .as_str()
                        .is_some_and(|message| message.contains("not supported"))
            }),
        ],
    )
}

fn api_versions() -> Scenario {
    let request = || {
        ApiVersionsRequest::default()
            .with_client_software_name(s("tidepool-differential"))
            .with_client_software_version(s("1.0"))
    };
    scenario(
        "ApiVersions",
        vec![
            call("v0", 0, move |_| request()),
            call("v3", 3, move |_| request()),
            call("v4", 4, move |_| request()),
        ],
    )
}

fn metadata() -> Scenario {
    scenario(
        "Metadata",
        vec![
            create("create", "meta", 3, &[]),
            wait_for("meta", 3),
            call("existing topic v12", 12, |ctx| {
                metadata_request(ctx, &["meta"])
            }),
            call("existing topic v1", 1, |ctx| {
                metadata_request(ctx, &["meta"])
            }),
            call("existing topic v9 with authorized operations", 9, |ctx| {
                metadata_request(ctx, &["meta"])
                    .with_include_topic_authorized_operations(true)
                    .with_include_cluster_authorized_operations(true)
            }),
            call("unknown topic", 12, |ctx| {
                metadata_request(ctx, &["missing"])
            }),
            call("unknown topic, auto-creation requested", 12, |ctx| {
                metadata_request(ctx, &["missing"]).with_allow_auto_topic_creation(true)
            }),
            call("unknown topic, auto-creation requested, v4", 4, |ctx| {
                metadata_request(ctx, &["missing"]).with_allow_auto_topic_creation(true)
            }),
            call("unknown topic v0", 0, |ctx| {
                metadata_request(ctx, &["missing"])
            }),
            call("existing and unknown", 12, |ctx| {
                metadata_request(ctx, &["meta", "missing"])
            }),
            call("invalid topic name", 12, |_| {
                MetadataRequest::default().with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(TopicName(s("bad name!")))),
                ]))
            }),
            call("no topics", 12, |_| {
                MetadataRequest::default().with_topics(Some(vec![]))
            }),
            call("all topics", 12, |_| {
                MetadataRequest::default().with_topics(None)
            }),
            call("by topic id", 12, |ctx| {
                MetadataRequest::default().with_topics(Some(vec![
                    MetadataRequestTopic::default()
                        .with_name(None)
                        .with_topic_id(
                            ctx.string("create", "/topics/0/topic_id")
                                .parse()
                                .expect("uuid"),
                        ),
                ]))
            }),
            call("unknown topic id", 12, |_| {
                MetadataRequest::default().with_topics(Some(vec![
                    MetadataRequestTopic::default()
                        .with_name(None)
                        .with_topic_id(UNKNOWN_ID.parse().expect("uuid")),
                ]))
            }),
        ],
    )
}

fn create_topics() -> Scenario {
    fn one(step: &str, version: i16, topic: impl Fn(&Ctx) -> CreatableTopic + 'static) -> Step {
        call(step, version, move |ctx| {
            CreateTopicsRequest::default()
                .with_timeout_ms(TIMEOUT_MS)
                .with_topics(vec![topic(ctx)])
        })
    }
    scenario(
        "CreateTopics",
        vec![
            one("ok", 7, |ctx| {
                new_topic(ctx, "created", 2, &[("retention.ms", "3600000")])
            }),
            wait_for("created", 2),
            one("duplicate", 7, |ctx| new_topic(ctx, "created", 2, &[])),
            one("zero partitions", 7, |ctx| new_topic(ctx, "zero", 0, &[])),
            one("negative partitions", 7, |ctx| {
                new_topic(ctx, "negative", -5, &[])
            }),
            one("replication factor above the node count", 7, |ctx| {
                new_topic(ctx, "replicated", 1, &[]).with_replication_factor(3)
            }),
            one("zero replication factor", 7, |ctx| {
                new_topic(ctx, "unreplicated", 1, &[]).with_replication_factor(0)
            }),
            one("invalid config value", 7, |ctx| {
                new_topic(ctx, "bad-value", 1, &[("cleanup.policy", "bogus")])
            }),
            one("invalid number config", 7, |ctx| {
                new_topic(ctx, "bad-number", 1, &[("retention.ms", "soon")])
            }),
            one("unknown config", 7, |ctx| {
                new_topic(ctx, "bad-key", 1, &[("no.such.config", "1")])
            }),
            one("config with a null value", 7, |ctx| {
                let mut topic = new_topic(ctx, "null-value", 1, &[]);
                topic.configs = vec![
                    CreatableTopicConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(None),
                ];
                topic
            }),
            one("defaults (-1 partitions, -1 replication)", 7, |ctx| {
                new_topic(ctx, "defaults", -1, &[]).with_replication_factor(-1)
            }),
            wait_for("defaults", 1),
            call("validate only", 7, |ctx| {
                CreateTopicsRequest::default()
                    .with_timeout_ms(TIMEOUT_MS)
                    .with_validate_only(true)
                    .with_topics(vec![new_topic(
                        ctx,
                        "validated",
                        4,
                        &[("cleanup.policy", "compact")],
                    )])
            }),
            call("validate only created nothing", 12, |ctx| {
                metadata_request(ctx, &["validated"])
            }),
            one("invalid name", 7, |_| {
                CreatableTopic::default()
                    .with_name(TopicName(s("bad name!")))
                    .with_num_partitions(1)
                    .with_replication_factor(1)
            }),
            one("name too long", 7, |_| {
                CreatableTopic::default()
                    .with_name(TopicName(s(&"x".repeat(250))))
                    .with_num_partitions(1)
                    .with_replication_factor(1)
            }),
            one("name '..'", 7, |_| {
                CreatableTopic::default()
                    .with_name(TopicName(s("..")))
                    .with_num_partitions(1)
                    .with_replication_factor(1)
            }),
            call("several topics, mixed outcomes", 7, |ctx| {
                CreateTopicsRequest::default()
                    .with_timeout_ms(TIMEOUT_MS)
                    .with_topics(vec![
                        new_topic(ctx, "mixed-ok", 1, &[]),
                        new_topic(ctx, "created", 1, &[]),
                        new_topic(ctx, "mixed-zero", 0, &[]),
                    ])
            }),
            call("the same name twice in one request", 7, |ctx| {
                CreateTopicsRequest::default()
                    .with_timeout_ms(TIMEOUT_MS)
                    .with_topics(vec![
                        new_topic(ctx, "twice", 1, &[]),
                        new_topic(ctx, "twice", 1, &[]),
                    ])
            }),
            one("v2", 2, |ctx| new_topic(ctx, "old-version", 1, &[])),
            one("v4 duplicate", 4, |ctx| new_topic(ctx, "created", 1, &[])),
            one("explicit assignment", 7, |ctx| {
                let node = ctx.i64("wait for created", "/brokers/0/node_id") as i32;
                new_topic(ctx, "assigned", -1, &[])
                    .with_replication_factor(-1)
                    .with_assignments(vec![
                        CreatableReplicaAssignment::default()
                            .with_partition_index(0)
                            .with_broker_ids(vec![BrokerId(node)]),
                        CreatableReplicaAssignment::default()
                            .with_partition_index(1)
                            .with_broker_ids(vec![BrokerId(node)]),
                    ])
            }),
            one("assignment to an unknown node", 7, |ctx| {
                new_topic(ctx, "assigned-nowhere", -1, &[])
                    .with_replication_factor(-1)
                    .with_assignments(vec![
                        CreatableReplicaAssignment::default()
                            .with_partition_index(0)
                            .with_broker_ids(vec![BrokerId(99)]),
                    ])
            }),
            one("assignment and a partition count", 7, |ctx| {
                let node = ctx.i64("wait for created", "/brokers/0/node_id") as i32;
                new_topic(ctx, "assigned-and-counted", 1, &[]).with_assignments(vec![
                    CreatableReplicaAssignment::default()
                        .with_partition_index(0)
                        .with_broker_ids(vec![BrokerId(node)]),
                ])
            }),
        ],
    )
}

fn delete_topics() -> Scenario {
    fn by_name(ctx: &Ctx, names: &[&str]) -> DeleteTopicsRequest {
        DeleteTopicsRequest::default()
            .with_timeout_ms(TIMEOUT_MS)
            .with_topics(
                names
                    .iter()
                    .map(|name| DeleteTopicState::default().with_name(Some(ctx.topic(name))))
                    .collect(),
            )
    }
    scenario(
        "DeleteTopics",
        vec![
            call("create", 7, |ctx| {
                CreateTopicsRequest::default()
                    .with_timeout_ms(TIMEOUT_MS)
                    .with_topics(vec![
                        new_topic(ctx, "doomed-a", 1, &[]),
                        new_topic(ctx, "doomed-b", 2, &[]),
                        new_topic(ctx, "doomed-c", 1, &[]),
                    ])
            })
            .quiet(),
            wait_for("doomed-a", 1),
            wait_for("doomed-b", 2),
            wait_for("doomed-c", 1),
            call("by name v6", 6, |ctx| by_name(ctx, &["doomed-a"])),
            wait_gone("doomed-a"),
            call("metadata after delete", 12, |ctx| {
                metadata_request(ctx, &["doomed-a"])
            }),
            call("again", 6, |ctx| by_name(ctx, &["doomed-a"])),
            call("unknown topic", 6, |ctx| by_name(ctx, &["never-created"])),
            call("by name v3", 3, |ctx| {
                DeleteTopicsRequest::default()
                    .with_timeout_ms(TIMEOUT_MS)
                    .with_topic_names(vec![ctx.topic("doomed-b")])
            }),
            call("unknown name v3", 3, |ctx| {
                DeleteTopicsRequest::default()
                    .with_timeout_ms(TIMEOUT_MS)
                    .with_topic_names(vec![ctx.topic("never-created")])
            }),
            call("by id v6", 6, |ctx| {
                let id = ctx.string("wait for doomed-c", "/topics/0/topic_id");
                DeleteTopicsRequest::default()
                    .with_timeout_ms(TIMEOUT_MS)
                    .with_topics(vec![
                        DeleteTopicState::default().with_topic_id(id.parse().expect("uuid")),
                    ])
            }),
            call("unknown id v6", 6, |_| {
                DeleteTopicsRequest::default()
                    .with_timeout_ms(TIMEOUT_MS)
                    .with_topics(vec![
                        DeleteTopicState::default()
                            .with_topic_id(UNKNOWN_ID.parse().expect("uuid")),
                    ])
            }),
        ],
    )
}

fn create_partitions() -> Scenario {
    fn grow(ctx: &Ctx, topic: &str, count: i32) -> CreatePartitionsTopic {
        CreatePartitionsTopic::default()
            .with_name(ctx.topic(topic))
            .with_count(count)
            .with_assignments(None)
    }
    fn request(topics: Vec<CreatePartitionsTopic>) -> CreatePartitionsRequest {
        CreatePartitionsRequest::default()
            .with_timeout_ms(TIMEOUT_MS)
            .with_topics(topics)
    }
    scenario(
        "CreatePartitions",
        vec![
            create("create", "growing", 2, &[]).quiet(),
            wait_for("growing", 2),
            call("grow to 4", 3, |ctx| request(vec![grow(ctx, "growing", 4)])),
            wait_for("growing", 4),
            call("metadata after growing", 12, |ctx| {
                metadata_request(ctx, &["growing"])
            }),
            call("shrink to 3", 3, |ctx| {
                request(vec![grow(ctx, "growing", 3)])
            }),
            call("same count", 3, |ctx| {
                request(vec![grow(ctx, "growing", 4)])
            }),
            call("unknown topic", 3, |ctx| {
                request(vec![grow(ctx, "never-created", 4)])
            }),
            call("empty assignments", 3, |ctx| {
                request(vec![grow(ctx, "growing", 6).with_assignments(Some(vec![]))])
            }),
            call("assignment to an unknown node", 3, |ctx| {
                request(vec![grow(ctx, "growing", 5).with_assignments(Some(vec![
                    CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(99)]),
                ]))])
            }),
            call("explicit assignment", 3, |ctx| {
                let node = ctx.i64("wait for growing", "/brokers/0/node_id") as i32;
                request(vec![grow(ctx, "growing", 5).with_assignments(Some(vec![
                    CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(node)]),
                ]))])
            }),
            call("validate only", 3, |ctx| {
                request(vec![grow(ctx, "growing", 8)]).with_validate_only(true)
            }),
            call("v0", 0, |ctx| request(vec![grow(ctx, "growing", 5)])),
            call("the same topic twice", 3, |ctx| {
                request(vec![grow(ctx, "growing", 9), grow(ctx, "growing", 10)])
            }),
            call("several topics, mixed outcomes", 3, |ctx| {
                request(vec![grow(ctx, "growing", 5), grow(ctx, "never-created", 2)])
            }),
        ],
    )
}

fn produce() -> Scenario {
    scenario(
        "Produce",
        vec![
            create("create", "produced", 2, &[]).quiet(),
            create("create small", "small", 1, &[("max.message.bytes", "200")]).quiet(),
            wait_for("produced", 2),
            wait_for("small", 1),
            call("acks=1, 3 records", 9, |ctx| {
                produce_request(ctx, "produced", 0, records(ctx, 3, 0), 1)
            }),
            call("acks=1 again: next offset", 9, |ctx| {
                produce_request(ctx, "produced", 0, records(ctx, 2, 10), 1)
            }),
            call("acks=all, partition 1, v11", 11, |ctx| {
                produce_request(ctx, "produced", 1, records(ctx, 4, 0), -1)
            }),
            call("v3", 3, |ctx| {
                produce_request(ctx, "produced", 1, records(ctx, 1, 0), -1)
            }),
            call("v7", 7, |ctx| {
                produce_request(ctx, "produced", 1, records(ctx, 1, 0), -1)
            }),
            call("v13 by topic id", 13, |ctx| {
                let id = ctx.string("wait for produced", "/topics/0/topic_id");
                let mut request = produce_request(ctx, "produced", 1, records(ctx, 1, 0), -1);
                request.topic_data[0].name = TopicName::default();
                request.topic_data[0].topic_id = id.parse().expect("uuid");
                request
            }),
            call("v13 unknown topic id", 13, |ctx| {
                let mut request = produce_request(ctx, "produced", 1, records(ctx, 1, 0), -1);
                request.topic_data[0].name = TopicName::default();
                request.topic_data[0].topic_id = UNKNOWN_ID.parse().expect("uuid");
                request
            }),
            call("unknown topic", 11, |ctx| {
                produce_request(ctx, "never-created", 0, records(ctx, 1, 0), 1)
            }),
            call("unknown partition", 11, |ctx| {
                produce_request(ctx, "produced", 7, records(ctx, 1, 0), 1)
            }),
            call("record batch above max.message.bytes", 11, |ctx| {
                let mut builder = BatchBuilder::new();
                for index in 0..10 {
                    builder.append(
                        ctx.base_ms + index,
                        None,
                        Some(Bytes::from(vec![b'x'; 50])),
                        vec![],
                    );
                }
                produce_request(ctx, "small", 0, builder.build().expect("batch"), 1)
            }),
            call("record batch within max.message.bytes", 11, |ctx| {
                produce_request(ctx, "small", 0, records(ctx, 1, 0), 1)
            }),
            call("acks=2", 11, |ctx| {
                produce_request(ctx, "produced", 0, records(ctx, 1, 0), 2)
            }),
            call("corrupt CRC", 11, |ctx| {
                let mut bytes = records(ctx, 2, 0).to_vec();
                let last = bytes.len() - 1;
                bytes[last] ^= 0xff;
                produce_request(ctx, "produced", 0, Bytes::from(bytes), 1)
            }),
            call("no records", 11, |ctx| {
                produce_request(ctx, "produced", 0, Bytes::new(), 1)
            }),
            call("two partitions in one request", 11, |ctx| {
                let mut request = produce_request(ctx, "produced", 0, records(ctx, 1, 0), -1);
                request.topic_data[0].partition_data.push(
                    PartitionProduceData::default()
                        .with_index(1)
                        .with_records(Some(records(ctx, 2, 0))),
                );
                request
            }),
            call("to an internal topic", 11, |ctx| {
                let mut request = produce_request(ctx, "", 0, records(ctx, 1, 0), 1);
                request.topic_data[0].name = TopicName(s("__consumer_offsets"));
                request
            }),
            call("fetch what was produced", 12, |ctx| {
                fetch_request(
                    ctx,
                    "produced",
                    vec![fetch_partition(0, 0), fetch_partition(1, 0)],
                )
            }),
            create(
                "create compacted",
                "compacted",
                1,
                &[("cleanup.policy", "compact")],
            )
            .quiet(),
            create(
                "create log-append-time",
                "appended",
                1,
                &[("message.timestamp.type", "LogAppendTime")],
            )
            .quiet(),
            create(
                "create timestamp-bounded",
                "bounded",
                1,
                &[("message.timestamp.before.max.ms", "1000")],
            )
            .quiet(),
            wait_for("compacted", 1),
            wait_for("appended", 1),
            wait_for("bounded", 1),
            call("keyless records to a compacted topic", 11, |ctx| {
                let mut builder = BatchBuilder::new();
                builder.append(ctx.base_ms, None, Some(Bytes::from_static(b"v")), vec![]);
                produce_request(ctx, "compacted", 0, builder.build().expect("batch"), 1)
            }),
            call("keyed records to a compacted topic", 11, |ctx| {
                produce_request(ctx, "compacted", 0, records(ctx, 2, 0), 1)
            }),
            call("to a LogAppendTime topic", 11, |ctx| {
                produce_request(ctx, "appended", 0, records(ctx, 2, 0), 1)
            }),
            call("fetch from the LogAppendTime topic", 12, |ctx| {
                fetch_request(ctx, "appended", vec![fetch_partition(0, 0)])
            }),
            call(
                "timestamps older than message.timestamp.before.max.ms",
                11,
                |ctx| produce_request(ctx, "bounded", 0, records(ctx, 2, 0), 1),
            ),
            call(
                "a timestamp two hours ahead (message.timestamp.after.max.ms)",
                11,
                |ctx| produce_request(ctx, "produced", 0, records(ctx, 1, 2 * 3_600_000), 1),
            ),
        ],
    )
}

fn idempotent_produce() -> Scenario {
    fn send(step: &str, epoch: i16, sequence: i32, count: usize) -> Step {
        call(step, 11, move |ctx| {
            let producer = ctx.i64("init", "/producer_id");
            produce_request(
                ctx,
                "idempotent",
                0,
                idempotent_records(ctx, producer, epoch, sequence, count),
                -1,
            )
        })
    }
    scenario(
        "Produce (idempotent)",
        vec![
            create("create", "idempotent", 1, &[]).quiet(),
            wait_for("idempotent", 1),
            call("init", 4, |_| {
                InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000)
            }),
            send("sequence 0", 0, 0, 3),
            send("duplicate of sequence 0", 0, 0, 3),
            send("sequence 3", 0, 3, 2),
            send("duplicate of an older batch", 0, 0, 3),
            send("gap: sequence 9", 0, 9, 1),
            send("sequence 5", 0, 5, 1),
            send("higher epoch, sequence 0", 1, 0, 1),
            send("higher epoch, sequence 4", 3, 4, 1),
            send("old epoch", 0, 6, 1),
            call("unknown producer id, sequence 0", 11, |ctx| {
                let producer = ctx.i64("init", "/producer_id") + 1000;
                produce_request(
                    ctx,
                    "idempotent",
                    0,
                    idempotent_records(ctx, producer, 0, 0, 1),
                    -1,
                )
            }),
            call("unknown producer id, sequence 7", 11, |ctx| {
                let producer = ctx.i64("init", "/producer_id") + 2000;
                produce_request(
                    ctx,
                    "idempotent",
                    0,
                    idempotent_records(ctx, producer, 0, 7, 1),
                    -1,
                )
            }),
            call("fetch", 12, |ctx| {
                fetch_request(ctx, "idempotent", vec![fetch_partition(0, 0)])
            }),
        ],
    )
}

/// Compressed batches (stored and served as the producer sent them, `compression.type` being
/// `producer`), and acks=0: no answer, and a failed one closes the connection.
fn codecs_and_acks_zero() -> Scenario {
    fn compressed(step: &str, codec: Compression, first_ms: i64) -> Step {
        call(step, 11, move |ctx| {
            let mut builder = BatchBuilder::new();
            builder.compression(codec);
            fill(&mut builder, ctx, 4, first_ms);
            produce_request(ctx, "codecs", 0, builder.build().expect("a batch"), -1)
        })
    }
    scenario(
        "Produce: codecs and acks=0",
        vec![
            create("create", "codecs", 1, &[]).quiet(),
            wait_for("codecs", 1),
            compressed("gzip batch", Compression::Gzip, 0),
            compressed("snappy batch", Compression::Snappy, 10),
            compressed("lz4 batch", Compression::Lz4, 20),
            compressed("zstd batch", Compression::Zstd, 30),
            call("fetch every codec", 12, |ctx| {
                fetch_request(ctx, "codecs", vec![fetch_partition(0, 0)])
            }),
            call("fetch from inside a compressed batch", 12, |ctx| {
                fetch_request(ctx, "codecs", vec![fetch_partition(0, 6)])
            }),
            // acks=0 sends no answer; the next request on the connection sees the append.
            call("acks=0 produce", 11, |ctx| {
                produce_request(ctx, "codecs", 0, records(ctx, 2, 40), 0)
            })
            .on(1)
            .deferred(),
            call("fetch after acks=0 on the same connection", 12, |ctx| {
                fetch_request(ctx, "codecs", vec![fetch_partition(0, 16)])
            })
            .on(1),
            call("acks=0 to an unknown partition", 11, |ctx| {
                produce_request(ctx, "codecs", 5, records(ctx, 1, 50), 0)
            })
            .on(2)
            .deferred(),
            call(
                "the connection is closed after a failed acks=0",
                12,
                |ctx| metadata_request(ctx, &["codecs"]),
            )
            .on(2),
        ],
    )
}

fn fetch() -> Scenario {
    scenario(
        "Fetch",
        vec![
            create("create", "fetched", 2, &[]).quiet(),
            wait_for("fetched", 2),
            produce_plain("produce 5", "fetched", 0, 5, 0),
            produce_plain("produce 3 more", "fetched", 0, 3, 100),
            call("from 0 v12", 12, |ctx| {
                fetch_request(ctx, "fetched", vec![fetch_partition(0, 0)])
            }),
            call("from the middle of a batch", 12, |ctx| {
                fetch_request(ctx, "fetched", vec![fetch_partition(0, 3)])
            }),
            call("from the second batch", 12, |ctx| {
                fetch_request(ctx, "fetched", vec![fetch_partition(0, 5)])
            }),
            call("at the high watermark", 12, |ctx| {
                fetch_request(ctx, "fetched", vec![fetch_partition(0, 8)])
            }),
            call("at the high watermark, waiting 300 ms", 12, |ctx| {
                fetch_request(ctx, "fetched", vec![fetch_partition(0, 8)]).with_max_wait_ms(300)
            }),
            call("two partitions, one with data", 12, |ctx| {
                fetch_request(
                    ctx,
                    "fetched",
                    vec![fetch_partition(0, 6), fetch_partition(1, 0)],
                )
            }),
            call("past the high watermark", 12, |ctx| {
                fetch_request(ctx, "fetched", vec![fetch_partition(0, 100)])
            }),
            call("negative offset", 12, |ctx| {
                fetch_request(ctx, "fetched", vec![fetch_partition(0, -1)])
            }),
            call("empty partition", 12, |ctx| {
                fetch_request(ctx, "fetched", vec![fetch_partition(1, 0)])
            }),
            call("unknown partition", 12, |ctx| {
                fetch_request(ctx, "fetched", vec![fetch_partition(7, 0)])
            }),
            call("unknown topic", 12, |ctx| {
                fetch_request(ctx, "never-created", vec![fetch_partition(0, 0)])
            }),
            call("read committed", 12, |ctx| {
                fetch_request(ctx, "fetched", vec![fetch_partition(0, 0)]).with_isolation_level(1)
            }),
            call("current leader epoch ahead", 12, |ctx| {
                fetch_request(
                    ctx,
                    "fetched",
                    vec![fetch_partition(0, 0).with_current_leader_epoch(5)],
                )
            }),
            call("current leader epoch matches", 12, |ctx| {
                fetch_request(
                    ctx,
                    "fetched",
                    vec![fetch_partition(0, 0).with_current_leader_epoch(0)],
                )
            }),
            call("partition max bytes smaller than a batch", 12, |ctx| {
                fetch_request(
                    ctx,
                    "fetched",
                    vec![fetch_partition(0, 0).with_partition_max_bytes(10)],
                )
            }),
            call("v4", 4, |ctx| {
                fetch_request(ctx, "fetched", vec![fetch_partition(0, 0)])
            }),
            call("v11", 11, |ctx| {
                fetch_request(ctx, "fetched", vec![fetch_partition(0, 5)])
            }),
            call("v13 by topic id", 13, |ctx| {
                let id = ctx.string("wait for fetched", "/topics/0/topic_id");
                let mut request = fetch_request(ctx, "", vec![fetch_partition(0, 5)]);
                request.topics[0].topic_id = id.parse().expect("uuid");
                request
            }),
            call("v17 unknown topic id", 17, |ctx| {
                let mut request = fetch_request(ctx, "", vec![fetch_partition(0, 0)]);
                request.topics[0].topic_id = UNKNOWN_ID.parse().expect("uuid");
                request
            }),
            call("v17 by topic id, past the end", 17, |ctx| {
                let id = ctx.string("wait for fetched", "/topics/0/topic_id");
                let mut request = fetch_request(ctx, "", vec![fetch_partition(0, 50)]);
                request.topics[0].topic_id = id.parse().expect("uuid");
                request
            }),
        ],
    )
}

fn list_offsets() -> Scenario {
    fn query(step: &str, version: i16, queries: &'static [(i32, i64)]) -> Step {
        call(step, version, move |ctx| {
            list_offsets_request(ctx, "listed", queries)
        })
    }
    scenario(
        "ListOffsets",
        vec![
            create("create", "listed", 2, &[]).quiet(),
            wait_for("listed", 2),
            query("empty partition: earliest and latest", 8, &[(1, -2)]),
            query("empty partition: latest", 8, &[(1, -1)]),
            query("empty partition: max timestamp", 8, &[(1, -3)]),
            produce_plain("produce at +0", "listed", 0, 2, 0),
            produce_plain("produce at +10", "listed", 0, 2, 10),
            produce_plain("produce at +5", "listed", 0, 2, 5),
            query("earliest", 8, &[(0, -2)]),
            query("latest", 8, &[(0, -1)]),
            query("max timestamp", 8, &[(0, -3)]),
            call("by timestamp +10", 8, |ctx| {
                list_offsets_request(ctx, "listed", &[(0, ctx.base_ms + 10)])
            }),
            call("by timestamp +4", 8, |ctx| {
                list_offsets_request(ctx, "listed", &[(0, ctx.base_ms + 4)])
            }),
            call("by timestamp after the last", 8, |ctx| {
                list_offsets_request(ctx, "listed", &[(0, ctx.base_ms + 1_000)])
            }),
            call("by timestamp before the first", 8, |ctx| {
                list_offsets_request(ctx, "listed", &[(0, ctx.base_ms - 1_000)])
            }),
            query("unknown partition", 8, &[(9, -1)]),
            call("unknown topic", 8, |ctx| {
                list_offsets_request(ctx, "never-created", &[(0, -1)])
            }),
            query("v1 latest", 1, &[(0, -1)]),
            query("v1 earliest", 1, &[(0, -2)]),
            query("v5 by timestamp 0", 5, &[(0, 0)]),
            query("two partitions", 8, &[(0, -1), (1, -1)]),
            call("current leader epoch ahead", 8, |ctx| {
                let mut request = list_offsets_request(ctx, "listed", &[(0, -1)]);
                request.topics[0].partitions[0].current_leader_epoch = 7;
                request
            }),
            call("read committed", 8, |ctx| {
                list_offsets_request(ctx, "listed", &[(0, -1)]).with_isolation_level(1)
            }),
            query("the same partition twice", 8, &[(0, -1), (0, -2)]),
        ],
    )
}

fn init_producer_id() -> Scenario {
    scenario(
        "InitProducerId",
        vec![
            call("idempotent v4", 4, |_| {
                InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000)
            }),
            call("idempotent v0", 0, |_| {
                InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000)
            }),
            call("idempotent with an existing id and epoch", 4, |ctx| {
                InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(ctx.i64("idempotent v4", "/producer_id")))
                    .with_producer_epoch(0)
            }),
            call("transactional", 4, |ctx| {
                InitProducerIdRequest::default()
                    .with_transactional_id(Some(TransactionalId(ctx.str("txn"))))
                    .with_transaction_timeout_ms(60_000)
            }),
            call("transactional, timeout too long", 4, |ctx| {
                InitProducerIdRequest::default()
                    .with_transactional_id(Some(TransactionalId(ctx.str("txn-long"))))
                    .with_transaction_timeout_ms(i32::MAX)
            }),
            call("transaction coordinator", 4, |ctx| {
                FindCoordinatorRequest::default()
                    .with_key_type(1)
                    .with_coordinator_keys(vec![ctx.str("txn")])
            }),
        ],
    )
}

fn offset_for_leader_epoch() -> Scenario {
    fn request(ctx: &Ctx, topic: &str, queries: &[(i32, i32, i32)]) -> OffsetForLeaderEpochRequest {
        OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                OffsetForLeaderTopic::default()
                    .with_topic(ctx.topic(topic))
                    .with_partitions(
                        queries
                            .iter()
                            .map(|&(partition, current, epoch)| {
                                OffsetForLeaderPartition::default()
                                    .with_partition(partition)
                                    .with_current_leader_epoch(current)
                                    .with_leader_epoch(epoch)
                            })
                            .collect(),
                    ),
            ])
    }
    scenario(
        "OffsetForLeaderEpoch",
        vec![
            create("create", "epochs", 2, &[]).quiet(),
            wait_for("epochs", 2),
            call("empty partition, epoch 0", 4, |ctx| {
                request(ctx, "epochs", &[(1, -1, 0)])
            }),
            produce_plain("produce", "epochs", 0, 4, 0),
            call("epoch 0", 4, |ctx| request(ctx, "epochs", &[(0, -1, 0)])),
            call("epoch 0, current epoch 0", 4, |ctx| {
                request(ctx, "epochs", &[(0, 0, 0)])
            }),
            call("a later epoch", 4, |ctx| {
                request(ctx, "epochs", &[(0, -1, 3)])
            }),
            call("current epoch ahead", 4, |ctx| {
                request(ctx, "epochs", &[(0, 4, 0)])
            }),
            call("unknown partition", 4, |ctx| {
                request(ctx, "epochs", &[(8, -1, 0)])
            }),
            call("unknown topic", 4, |ctx| {
                request(ctx, "never-created", &[(0, -1, 0)])
            }),
            call("v2", 2, |ctx| request(ctx, "epochs", &[(0, -1, 0)])),
            call("as a follower (replica id 1)", 4, |ctx| {
                request(ctx, "epochs", &[(0, -1, 0)]).with_replica_id(BrokerId(1))
            }),
        ],
    )
}

fn find_coordinator() -> Scenario {
    scenario(
        "FindCoordinator",
        vec![
            call("group v0", 0, |ctx| {
                FindCoordinatorRequest::default().with_key(ctx.str("g"))
            }),
            call("group v3", 3, |ctx| {
                FindCoordinatorRequest::default().with_key(ctx.str("g"))
            }),
            call("groups v4", 4, |ctx| {
                FindCoordinatorRequest::default()
                    .with_coordinator_keys(vec![ctx.str("g"), ctx.str("h")])
            }),
            call("group v6", 6, |ctx| {
                FindCoordinatorRequest::default().with_coordinator_keys(vec![ctx.str("g")])
            }),
            call("empty group id v3", 3, |_| {
                FindCoordinatorRequest::default().with_key(s(""))
            }),
            call("unknown key type v3", 3, |ctx| {
                FindCoordinatorRequest::default()
                    .with_key(ctx.str("g"))
                    .with_key_type(7)
            }),
            call("transaction v3", 3, |ctx| {
                FindCoordinatorRequest::default()
                    .with_key(ctx.str("txn"))
                    .with_key_type(1)
            }),
        ],
    )
}

/// One member through the classic protocol's happy path and its error paths.
fn group_membership() -> Scenario {
    const G: &str = "members";
    const T: &str = "members-topic";
    fn member(ctx: &Ctx) -> StrBytes {
        ctx.text("join: member id required", "/member_id")
    }
    fn generation(ctx: &Ctx) -> i64 {
        ctx.i64("join with the member id", "/generation_id")
    }
    scenario(
        "Groups: membership",
        vec![
            create("create", T, 2, &[]).quiet(),
            wait_for(T, 2),
            call("join: member id required", 9, |ctx| join(ctx, G, s(""), T)),
            call("join with the member id", 9, |ctx| {
                join(ctx, G, member(ctx), T)
            }),
            call("heartbeat before sync", 4, |ctx| {
                heartbeat(ctx, G, generation(ctx), member(ctx))
            }),
            call("sync with a stale generation", 5, |ctx| {
                sync(ctx, G, generation(ctx) + 5, member(ctx), vec![])
            }),
            call("sync as an unknown member", 5, |ctx| {
                sync(ctx, G, generation(ctx), s("nobody"), vec![])
            }),
            call("sync with another protocol name", 5, |ctx| {
                sync(ctx, G, generation(ctx), member(ctx), vec![])
                    .with_protocol_name(Some(s("roundrobin")))
            }),
            call("sync", 5, |ctx| {
                sync(
                    ctx,
                    G,
                    generation(ctx),
                    member(ctx),
                    vec![
                        SyncGroupRequestAssignment::default()
                            .with_member_id(member(ctx))
                            .with_assignment(assignment(ctx, T, &[0, 1])),
                    ],
                )
            }),
            call("heartbeat", 4, |ctx| {
                heartbeat(ctx, G, generation(ctx), member(ctx))
            }),
            call("heartbeat v0", 0, |ctx| {
                heartbeat(ctx, G, generation(ctx), member(ctx))
            }),
            call("heartbeat with a stale generation", 4, |ctx| {
                heartbeat(ctx, G, generation(ctx) - 1, member(ctx))
            }),
            call("heartbeat as an unknown member", 4, |ctx| {
                heartbeat(ctx, G, generation(ctx), s("nobody"))
            }),
            call("heartbeat to an unknown group", 4, |ctx| {
                heartbeat(ctx, "no-such-group", 1, member(ctx))
            }),
            call("join as an unknown member", 9, |ctx| {
                join(ctx, G, s("nobody"), T)
            }),
            call("join with a session timeout too short", 9, |ctx| {
                join(ctx, G, s(""), T).with_session_timeout_ms(10)
            }),
            call("join with a session timeout too long", 9, |ctx| {
                join(ctx, G, s(""), T).with_session_timeout_ms(i32::MAX)
            }),
            call("join with another protocol type", 9, |ctx| {
                join(ctx, G, s(""), T).with_protocol_type(s("connect"))
            }),
            call("describe", 5, |ctx| describe_groups(ctx, &[G])),
            call("describe v0", 0, |ctx| describe_groups(ctx, &[G])),
            call("rejoin (the leader, same metadata)", 9, |ctx| {
                join(ctx, G, member(ctx), T)
            }),
            call("heartbeat after the rejoin", 4, |ctx| {
                heartbeat(ctx, G, generation(ctx), member(ctx))
            }),
            call("leave as an unknown member", 5, |ctx| {
                LeaveGroupRequest::default()
                    .with_group_id(ctx.group(G))
                    .with_members(vec![MemberIdentity::default().with_member_id(s("nobody"))])
            }),
            call("leave", 5, |ctx| {
                LeaveGroupRequest::default()
                    .with_group_id(ctx.group(G))
                    .with_members(vec![MemberIdentity::default().with_member_id(member(ctx))])
            }),
            call("leave again", 5, |ctx| {
                LeaveGroupRequest::default()
                    .with_group_id(ctx.group(G))
                    .with_members(vec![MemberIdentity::default().with_member_id(member(ctx))])
            }),
            call("leave v0 from an unknown group", 0, |ctx| {
                LeaveGroupRequest::default()
                    .with_group_id(ctx.group("no-such-group"))
                    .with_member_id(s("nobody"))
            }),
            // Tidepool forgets an empty group without offsets at its next maintenance tick
            // (every 50 ms): wait past it, so the answer does not depend on timing.
            sleep(300),
            call("describe after leaving", 5, |ctx| {
                describe_groups(ctx, &[G])
            }),
            call("list after leaving", 5, |_| ListGroupsRequest::default()),
            call("heartbeat after leaving", 4, |ctx| {
                heartbeat(ctx, G, generation(ctx), member(ctx))
            }),
        ],
    )
}

/// Joins refused before any member exists. Kafka creates each group before refusing the
/// join and shows it in listings only once a later write to its `__consumer_offsets`
/// partition commits, so these use their own scenario and no listing looks at them.
fn refused_joins() -> Scenario {
    const T: &str = "refused-topic";
    scenario(
        "Groups: refused joins",
        vec![
            call("join with no protocols", 9, |ctx| {
                join(ctx, "empty-protocols", s(""), T).with_protocols(vec![])
            }),
            call("join with an empty protocol type", 9, |ctx| {
                join(ctx, "empty-type", s(""), T).with_protocol_type(s(""))
            }),
            call("join with an empty group id", 9, |ctx| {
                join(ctx, "", s(""), T).with_group_id(kafka_protocol::messages::GroupId(s("")))
            }),
        ],
    )
}

/// A second member joins a stable group: the first sees the rebalance, rejoins, both sync.
fn group_rebalance() -> Scenario {
    const G: &str = "rebalanced";
    const T: &str = "rebalanced-topic";
    fn first(ctx: &Ctx) -> StrBytes {
        ctx.text("first: member id required", "/member_id")
    }
    fn second(ctx: &Ctx) -> StrBytes {
        ctx.text("second: member id required", "/member_id")
    }
    scenario(
        "Groups: rebalance",
        vec![
            create("create", T, 2, &[]).quiet(),
            wait_for(T, 2),
            call("first: member id required", 9, |ctx| join(ctx, G, s(""), T)),
            call("first: join", 9, |ctx| join(ctx, G, first(ctx), T)),
            call("first: sync", 5, |ctx| {
                let generation = ctx.i64("first: join", "/generation_id");
                sync(
                    ctx,
                    G,
                    generation,
                    first(ctx),
                    vec![
                        SyncGroupRequestAssignment::default()
                            .with_member_id(first(ctx))
                            .with_assignment(assignment(ctx, T, &[0, 1])),
                    ],
                )
            }),
            call("second: member id required", 9, |ctx| {
                join(ctx, G, s(""), T)
            })
            .on(1),
            call("second: join (parks)", 9, |ctx| {
                join(ctx, G, second(ctx), T)
            })
            .on(1)
            .deferred(),
            sleep(500),
            call("first: heartbeat during the rebalance", 4, |ctx| {
                heartbeat(ctx, G, ctx.i64("first: join", "/generation_id"), first(ctx))
            }),
            call("describe during the rebalance", 5, |ctx| {
                describe_groups(ctx, &[G])
            }),
            call("first: commit during the rebalance", 8, |ctx| {
                commit(
                    ctx,
                    G,
                    ctx.i64("first: join", "/generation_id"),
                    first(ctx),
                    T,
                    &[(0, 1)],
                )
            }),
            call("first: rejoin", 9, |ctx| join(ctx, G, first(ctx), T)),
            await_answer("second: join answered", 1),
            call("second: sync before the leader", 5, |ctx| {
                let generation = ctx.i64("second: join answered", "/generation_id");
                sync(ctx, G, generation, second(ctx), vec![])
            })
            .on(1)
            .deferred(),
            sleep(300),
            call("first: sync with both assignments", 5, |ctx| {
                let generation = ctx.i64("first: rejoin", "/generation_id");
                sync(
                    ctx,
                    G,
                    generation,
                    first(ctx),
                    vec![
                        SyncGroupRequestAssignment::default()
                            .with_member_id(first(ctx))
                            .with_assignment(assignment(ctx, T, &[0])),
                        SyncGroupRequestAssignment::default()
                            .with_member_id(second(ctx))
                            .with_assignment(assignment(ctx, T, &[1])),
                    ],
                )
            }),
            await_answer("second: sync answered", 1),
            call("describe", 5, |ctx| describe_groups(ctx, &[G])),
            call("first: commit with the old generation", 8, |ctx| {
                commit(
                    ctx,
                    G,
                    ctx.i64("first: join", "/generation_id"),
                    first(ctx),
                    T,
                    &[(0, 1)],
                )
            }),
            call("second leaves", 5, |ctx| {
                LeaveGroupRequest::default()
                    .with_group_id(ctx.group(G))
                    .with_members(vec![MemberIdentity::default().with_member_id(second(ctx))])
            })
            .on(1),
            call("first: heartbeat after the second left", 4, |ctx| {
                heartbeat(
                    ctx,
                    G,
                    ctx.i64("first: rejoin", "/generation_id"),
                    first(ctx),
                )
            }),
            call("both leave", 5, |ctx| {
                LeaveGroupRequest::default()
                    .with_group_id(ctx.group(G))
                    .with_members(vec![
                        MemberIdentity::default().with_member_id(first(ctx)),
                        MemberIdentity::default().with_member_id(second(ctx)),
                    ])
            }),
        ],
    )
}

/// Committing and fetching offsets: as a member, stale, from outside the group, and admin.
/// Static membership (KIP-345): a member with an instance id joins without MEMBER_ID_REQUIRED,
/// a restart with the same instance id takes over its member id's place without a rebalance,
/// the old member id is fenced, and LeaveGroup by instance id removes it.
fn static_members() -> Scenario {
    const G: &str = "static";
    const T: &str = "static-topic";
    fn static_join(ctx: &Ctx, member_id: StrBytes) -> JoinGroupRequest {
        join(ctx, G, member_id, T).with_group_instance_id(Some(s("instance-1")))
    }
    fn first(ctx: &Ctx) -> StrBytes {
        ctx.text("static: join", "/member_id")
    }
    fn second(ctx: &Ctx) -> StrBytes {
        ctx.text("static: restart with the same instance id", "/member_id")
    }
    fn leave(ctx: &Ctx, member_id: StrBytes) -> LeaveGroupRequest {
        LeaveGroupRequest::default()
            .with_group_id(ctx.group(G))
            .with_members(vec![
                MemberIdentity::default()
                    .with_member_id(member_id)
                    .with_group_instance_id(Some(s("instance-1"))),
            ])
    }
    scenario(
        "Groups: static members",
        vec![
            create("create", T, 2, &[]).quiet(),
            wait_for(T, 2),
            call("static: join", 9, |ctx| static_join(ctx, s(""))),
            call("static: sync", 5, |ctx| {
                let generation = ctx.i64("static: join", "/generation_id");
                sync(
                    ctx,
                    G,
                    generation,
                    first(ctx),
                    vec![
                        SyncGroupRequestAssignment::default()
                            .with_member_id(first(ctx))
                            .with_assignment(assignment(ctx, T, &[0, 1])),
                    ],
                )
                .with_group_instance_id(Some(s("instance-1")))
            }),
            call("static: restart with the same instance id", 9, |ctx| {
                static_join(ctx, s(""))
            }),
            call("static: heartbeat from the replaced member id", 4, |ctx| {
                let generation = ctx.i64("static: join", "/generation_id");
                heartbeat(ctx, G, generation, first(ctx))
                    .with_group_instance_id(Some(s("instance-1")))
            }),
            call("static: describe after the restart", 5, |ctx| {
                describe_groups(ctx, &[G])
            }),
            call("static: leave with the replaced member id", 5, |ctx| {
                leave(ctx, first(ctx))
            }),
            call("static: leave by instance id", 5, |ctx| {
                leave(ctx, second(ctx))
            }),
            call("static: describe after leaving", 5, |ctx| {
                describe_groups(ctx, &[G])
            }),
        ],
    )
}

fn group_offsets() -> Scenario {
    const G: &str = "offsets";
    const T: &str = "offsets-topic";
    fn member(ctx: &Ctx) -> StrBytes {
        ctx.text("join: member id required", "/member_id")
    }
    fn generation(ctx: &Ctx) -> i64 {
        ctx.i64("join", "/generation_id")
    }
    scenario(
        "Groups: offsets",
        vec![
            create("create", T, 2, &[]).quiet(),
            wait_for(T, 2),
            produce_plain("produce", T, 0, 5, 0),
            call("fetch offsets of an unknown group v8", 8, |ctx| {
                offset_fetch(ctx, "no-such-group", Some((T, &[0, 1])))
            }),
            call("simple commit to a new group", 8, |ctx| {
                commit(ctx, "simple", -1, s(""), T, &[(0, 2), (1, 0)])
            }),
            call("fetch the simple commit v8", 8, |ctx| {
                offset_fetch(ctx, "simple", Some((T, &[0, 1, 5])))
            }),
            call("fetch the simple commit v8, all topics", 8, |ctx| {
                offset_fetch(ctx, "simple", None)
            }),
            call("fetch the simple commit v7", 7, |ctx| {
                OffsetFetchRequest::default()
                    .with_group_id(ctx.group("simple"))
                    .with_topics(Some(vec![
                        OffsetFetchRequestTopic::default()
                            .with_name(ctx.topic(T))
                            .with_partition_indexes(vec![0, 1]),
                    ]))
            }),
            call("fetch the simple commit v1", 1, |ctx| {
                OffsetFetchRequest::default()
                    .with_group_id(ctx.group("simple"))
                    .with_topics(Some(vec![
                        OffsetFetchRequestTopic::default()
                            .with_name(ctx.topic(T))
                            .with_partition_indexes(vec![0]),
                    ]))
            }),
            call("fetch the simple commit v9", 9, |ctx| {
                offset_fetch(ctx, "simple", Some((T, &[0])))
            }),
            call("fetch two groups v8", 8, |ctx| {
                let mut request = offset_fetch(ctx, "simple", Some((T, &[0])));
                request.groups.push(
                    OffsetFetchRequestGroup::default()
                        .with_group_id(ctx.group("no-such-group"))
                        .with_topics(None),
                );
                request
            }),
            call("simple commit v2 with retention", 2, |ctx| {
                commit(ctx, "simple", -1, s(""), T, &[(1, 4)]).with_retention_time_ms(60_000)
            }),
            call("simple commit v9", 9, |ctx| {
                commit(ctx, "simple", -1, s(""), T, &[(1, 3)])
            }),
            call("commit to an unknown topic", 8, |ctx| {
                commit(ctx, "simple", -1, s(""), "never-created", &[(0, 1)])
            }),
            call("commit to an unknown partition", 8, |ctx| {
                commit(ctx, "simple", -1, s(""), T, &[(9, 1)])
            }),
            call("commit a negative offset", 8, |ctx| {
                commit(ctx, "simple", -1, s(""), T, &[(0, -5)])
            }),
            call("commit past the end", 8, |ctx| {
                commit(ctx, "simple", -1, s(""), T, &[(0, 1_000)])
            }),
            call("fetch after the odd commits", 8, |ctx| {
                offset_fetch(ctx, "simple", None)
            }),
            call("join: member id required", 9, |ctx| join(ctx, G, s(""), T)),
            call("join", 9, |ctx| join(ctx, G, member(ctx), T)),
            call("commit before sync", 8, |ctx| {
                commit(ctx, G, generation(ctx), member(ctx), T, &[(0, 1)])
            }),
            call("sync", 5, |ctx| {
                sync(
                    ctx,
                    G,
                    generation(ctx),
                    member(ctx),
                    vec![
                        SyncGroupRequestAssignment::default()
                            .with_member_id(member(ctx))
                            .with_assignment(assignment(ctx, T, &[0, 1])),
                    ],
                )
            }),
            call("commit as the member", 8, |ctx| {
                commit(ctx, G, generation(ctx), member(ctx), T, &[(0, 3), (1, 0)])
            }),
            call("commit with a stale generation", 8, |ctx| {
                commit(ctx, G, generation(ctx) - 1, member(ctx), T, &[(0, 4)])
            }),
            call("commit with a future generation", 8, |ctx| {
                commit(ctx, G, generation(ctx) + 1, member(ctx), T, &[(0, 4)])
            }),
            call("commit as an unknown member", 8, |ctx| {
                commit(ctx, G, generation(ctx), s("nobody"), T, &[(0, 4)])
            }),
            call("simple commit into the active group", 8, |ctx| {
                commit(ctx, G, -1, s(""), T, &[(0, 4)])
            }),
            call("commit v2 as the member", 2, |ctx| {
                commit(ctx, G, generation(ctx), member(ctx), T, &[(1, 1)])
            }),
            call("commit to an unknown group as a member", 8, |ctx| {
                commit(ctx, "no-such-group", 1, member(ctx), T, &[(0, 1)])
            }),
            call("fetch the group's offsets", 8, |ctx| {
                offset_fetch(ctx, G, Some((T, &[0, 1])))
            }),
            call("fetch v9 as the member", 9, |ctx| {
                let mut request = offset_fetch(ctx, G, Some((T, &[0, 1])));
                request.groups[0].member_id = Some(member(ctx));
                request.groups[0].member_epoch = generation(ctx) as i32;
                request
            }),
            call("fetch require stable", 8, |ctx| {
                offset_fetch(ctx, G, Some((T, &[0]))).with_require_stable(true)
            }),
            call("leave", 5, |ctx| {
                LeaveGroupRequest::default()
                    .with_group_id(ctx.group(G))
                    .with_members(vec![MemberIdentity::default().with_member_id(member(ctx))])
            }),
            call("simple commit into the emptied group", 8, |ctx| {
                commit(ctx, G, -1, s(""), T, &[(0, 5)])
            }),
            call("fetch after leaving", 8, |ctx| offset_fetch(ctx, G, None)),
        ],
    )
}

/// ListGroups, DescribeGroups, DeleteGroups and OffsetDelete.
fn group_administration() -> Scenario {
    const G: &str = "admin";
    const T: &str = "admin-topic";
    const OTHER: &str = "admin-other";
    fn member(ctx: &Ctx) -> StrBytes {
        ctx.text("join: member id required", "/member_id")
    }
    fn generation(ctx: &Ctx) -> i64 {
        ctx.i64("join", "/generation_id")
    }
    fn offset_delete(
        ctx: &Ctx,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> OffsetDeleteRequest {
        OffsetDeleteRequest::default()
            .with_group_id(ctx.group(group))
            .with_topics(vec![
                OffsetDeleteRequestTopic::default()
                    .with_name(ctx.topic(topic))
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|&partition| {
                                OffsetDeleteRequestPartition::default()
                                    .with_partition_index(partition)
                            })
                            .collect(),
                    ),
            ])
    }
    fn delete_groups(ctx: &Ctx, groups: &[&str]) -> DeleteGroupsRequest {
        DeleteGroupsRequest::default()
            .with_groups_names(groups.iter().map(|group| ctx.group(group)).collect())
    }
    scenario(
        "Groups: administration",
        vec![
            create("create", T, 2, &[]).quiet(),
            create("create other", OTHER, 1, &[]).quiet(),
            wait_for(T, 2),
            wait_for(OTHER, 1),
            call("join: member id required", 9, |ctx| join(ctx, G, s(""), T)),
            call("join", 9, |ctx| join(ctx, G, member(ctx), T)),
            call("sync", 5, |ctx| {
                sync(
                    ctx,
                    G,
                    generation(ctx),
                    member(ctx),
                    vec![
                        SyncGroupRequestAssignment::default()
                            .with_member_id(member(ctx))
                            .with_assignment(assignment(ctx, T, &[0, 1])),
                    ],
                )
            }),
            call("commit", 8, |ctx| {
                let mut request =
                    commit(ctx, G, generation(ctx), member(ctx), T, &[(0, 1), (1, 1)]);
                request.topics.push(
                    OffsetCommitRequestTopic::default()
                        .with_name(ctx.topic(OTHER))
                        .with_partitions(vec![
                            OffsetCommitRequestPartition::default().with_committed_offset(0),
                        ]),
                );
                request
            }),
            call("simple commit to a memberless group", 8, |ctx| {
                commit(ctx, "memberless", -1, s(""), T, &[(0, 1)])
            }),
            call("list v5", 5, |_| ListGroupsRequest::default()),
            call("list v0", 0, |_| ListGroupsRequest::default()),
            call("list v4, Stable only", 4, |_| {
                ListGroupsRequest::default().with_states_filter(vec![s("Stable")])
            }),
            call("list v4, Empty only", 4, |_| {
                ListGroupsRequest::default().with_states_filter(vec![s("Empty")])
            }),
            call("list v5, classic only", 5, |_| {
                ListGroupsRequest::default().with_types_filter(vec![s("classic")])
            }),
            call("list v5, consumer only", 5, |_| {
                ListGroupsRequest::default().with_types_filter(vec![s("consumer")])
            }),
            call("describe v5", 5, |ctx| {
                describe_groups(ctx, &[G, "memberless", "no-such-group"])
            }),
            call("describe v6", 6, |ctx| {
                describe_groups(ctx, &[G, "memberless", "no-such-group"])
            }),
            call("describe v3 with authorized operations", 3, |ctx| {
                describe_groups(ctx, &[G]).with_include_authorized_operations(true)
            }),
            call("delete a group with members", 2, |ctx| {
                delete_groups(ctx, &[G])
            }),
            call("delete an unknown group", 2, |ctx| {
                delete_groups(ctx, &["no-such-group"])
            }),
            call("delete v0", 0, |ctx| delete_groups(ctx, &["no-such-group"])),
            call("offset delete: subscribed topic", 0, |ctx| {
                offset_delete(ctx, G, T, &[0])
            }),
            call("offset delete: topic not subscribed", 0, |ctx| {
                offset_delete(ctx, G, OTHER, &[0])
            }),
            call("offset delete: unknown group", 0, |ctx| {
                offset_delete(ctx, "no-such-group", T, &[0])
            }),
            call("offset delete: unknown topic", 0, |ctx| {
                offset_delete(ctx, G, "never-created", &[0])
            }),
            call("offset delete: unknown partition", 0, |ctx| {
                offset_delete(ctx, G, OTHER, &[5])
            }),
            call("fetch after offset delete", 8, |ctx| {
                offset_fetch(ctx, G, None)
            }),
            call("leave", 5, |ctx| {
                LeaveGroupRequest::default()
                    .with_group_id(ctx.group(G))
                    .with_members(vec![MemberIdentity::default().with_member_id(member(ctx))])
            }),
            call("offset delete: emptied group", 0, |ctx| {
                offset_delete(ctx, G, T, &[0])
            }),
            call("fetch after the second offset delete", 8, |ctx| {
                offset_fetch(ctx, G, None)
            }),
            call("delete the emptied group and a memberless one", 2, |ctx| {
                delete_groups(ctx, &[G, "memberless"])
            }),
            call("describe deleted groups", 5, |ctx| {
                describe_groups(ctx, &[G, "memberless"])
            }),
            call("fetch the deleted group's offsets", 8, |ctx| {
                offset_fetch(ctx, G, None)
            }),
            call("list after deleting", 5, |_| ListGroupsRequest::default()),
            call("delete again", 2, |ctx| delete_groups(ctx, &[G])),
        ],
    )
}

fn delete_records() -> Scenario {
    fn request(ctx: &Ctx, topic: &str, deletions: &[(i32, i64)]) -> DeleteRecordsRequest {
        DeleteRecordsRequest::default()
            .with_timeout_ms(TIMEOUT_MS)
            .with_topics(vec![
                DeleteRecordsTopic::default()
                    .with_name(ctx.topic(topic))
                    .with_partitions(
                        deletions
                            .iter()
                            .map(|&(partition, offset)| {
                                DeleteRecordsPartition::default()
                                    .with_partition_index(partition)
                                    .with_offset(offset)
                            })
                            .collect(),
                    ),
            ])
    }
    scenario(
        "DeleteRecords",
        vec![
            create("create", "trimmed", 2, &[]).quiet(),
            wait_for("trimmed", 2),
            produce_plain("produce", "trimmed", 0, 5, 0),
            produce_plain("produce more", "trimmed", 0, 3, 10),
            call("up to offset 2", 2, |ctx| {
                request(ctx, "trimmed", &[(0, 2)])
            }),
            call("earliest after deleting", 8, |ctx| {
                list_offsets_request(ctx, "trimmed", &[(0, -2)])
            }),
            call("fetch below the new start", 12, |ctx| {
                fetch_request(ctx, "trimmed", vec![fetch_partition(0, 0)])
            }),
            call("fetch at the new start", 12, |ctx| {
                fetch_request(ctx, "trimmed", vec![fetch_partition(0, 2)])
            }),
            call("below the start: no change", 2, |ctx| {
                request(ctx, "trimmed", &[(0, 1)])
            }),
            call("past the high watermark", 2, |ctx| {
                request(ctx, "trimmed", &[(0, 20)])
            }),
            call("to the high watermark (-1)", 2, |ctx| {
                request(ctx, "trimmed", &[(0, -1)])
            }),
            call("earliest after deleting everything", 8, |ctx| {
                list_offsets_request(ctx, "trimmed", &[(0, -2)])
            }),
            call("at the high watermark of an empty partition", 2, |ctx| {
                request(ctx, "trimmed", &[(1, 0)])
            }),
            call("negative offset other than -1", 2, |ctx| {
                request(ctx, "trimmed", &[(1, -7)])
            }),
            call("unknown partition", 2, |ctx| {
                request(ctx, "trimmed", &[(9, 0)])
            }),
            call("unknown topic", 2, |ctx| {
                request(ctx, "never-created", &[(0, 0)])
            }),
            call("v0", 0, |ctx| request(ctx, "trimmed", &[(0, 8)])),
            produce_plain("produce after deleting", "trimmed", 0, 2, 20),
            call("fetch after deleting", 12, |ctx| {
                fetch_request(ctx, "trimmed", vec![fetch_partition(0, 8)])
            }),
        ],
    )
}

fn describe_configs() -> Scenario {
    scenario(
        "DescribeConfigs",
        vec![
            create(
                "create",
                "described",
                1,
                &[("retention.ms", "3600000"), ("cleanup.policy", "compact")],
            ),
            wait_for("described", 1),
            call("set and default keys v4", 4, |ctx| {
                topic_configs(ctx, "described", Some(&["retention.ms", "segment.bytes"]))
            }),
            call("set and default keys v4 with synonyms", 4, |ctx| {
                topic_configs(
                    ctx,
                    "described",
                    Some(&["retention.ms", "segment.bytes", "cleanup.policy"]),
                )
                .with_include_synonyms(true)
            }),
            call("all keys v4", 4, |ctx| {
                topic_configs(ctx, "described", None)
            }),
            call("all keys v1", 1, |ctx| {
                topic_configs(ctx, "described", None)
            }),
            call("an unknown key", 4, |ctx| {
                topic_configs(ctx, "described", Some(&["no.such.config"]))
            }),
            call("no keys", 4, |ctx| {
                topic_configs(ctx, "described", Some(&[]))
            }),
            call("with documentation", 4, |ctx| {
                topic_configs(ctx, "described", Some(&["retention.ms"]))
                    .with_include_documentation(true)
            }),
            call("unknown topic", 4, |ctx| {
                topic_configs(ctx, "never-created", None)
            }),
            call("invalid topic name", 4, |_| {
                DescribeConfigsRequest::default().with_resources(vec![
                    DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(s("bad name!"))
                        .with_configuration_keys(None),
                ])
            }),
            call("broker: two keys", 4, |ctx| {
                let node = ctx.i64("wait for described", "/brokers/0/node_id");
                DescribeConfigsRequest::default().with_resources(vec![
                    DescribeConfigsResource::default()
                        .with_resource_type(4)
                        .with_resource_name(s(&node.to_string()))
                        .with_configuration_keys(Some(vec![
                            s("num.partitions"),
                            s("log.retention.ms"),
                            s("auto.create.topics.enable"),
                        ])),
                ])
            }),
            call("broker: unknown node", 4, |_| {
                DescribeConfigsRequest::default().with_resources(vec![
                    DescribeConfigsResource::default()
                        .with_resource_type(4)
                        .with_resource_name(s("99"))
                        .with_configuration_keys(Some(vec![s("num.partitions")])),
                ])
            }),
            call("unknown resource type", 4, |ctx| {
                DescribeConfigsRequest::default().with_resources(vec![
                    DescribeConfigsResource::default()
                        .with_resource_type(9)
                        .with_resource_name(ctx.str("described"))
                        .with_configuration_keys(None),
                ])
            }),
        ],
    )
}

fn alter_configs() -> Scenario {
    fn request(ctx: &Ctx, topic: &str, configs: &[(&str, Option<&str>)]) -> AlterConfigsRequest {
        AlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(ctx.str(topic))
                .with_configs(
                    configs
                        .iter()
                        .map(|(key, value)| {
                            AlterConfig::default()
                                .with_name(s(key))
                                .with_value(value.map(s))
                        })
                        .collect(),
                ),
        ])
    }
    scenario(
        "AlterConfigs",
        vec![
            create("create", "altered", 1, &[("cleanup.policy", "compact")]).quiet(),
            wait_for("altered", 1),
            call("set retention.ms", 2, |ctx| {
                request(ctx, "altered", &[("retention.ms", Some("7200000"))])
            }),
            wait_config("altered", "retention.ms", Some("7200000")),
            call("describe: the other override is gone", 4, |ctx| {
                topic_configs(ctx, "altered", Some(&["retention.ms", "cleanup.policy"]))
            }),
            call("invalid value", 2, |ctx| {
                request(ctx, "altered", &[("retention.ms", Some("soon"))])
            }),
            call("invalid enum value", 2, |ctx| {
                request(ctx, "altered", &[("cleanup.policy", Some("bogus"))])
            }),
            call("unknown key", 2, |ctx| {
                request(ctx, "altered", &[("no.such.config", Some("1"))])
            }),
            call("null value", 2, |ctx| {
                request(ctx, "altered", &[("retention.ms", None)])
            }),
            call("validate only", 2, |ctx| {
                request(ctx, "altered", &[("segment.ms", Some("100000"))]).with_validate_only(true)
            }),
            call("describe after the refusals", 4, |ctx| {
                topic_configs(
                    ctx,
                    "altered",
                    Some(&["retention.ms", "segment.ms", "cleanup.policy"]),
                )
            }),
            call("unknown topic", 2, |ctx| {
                request(ctx, "never-created", &[("retention.ms", Some("1000"))])
            }),
            call("v0", 0, |ctx| {
                request(ctx, "altered", &[("segment.ms", Some("100000"))])
            }),
            wait_config("altered", "segment.ms", Some("100000")),
            call("describe after v0", 4, |ctx| {
                topic_configs(ctx, "altered", Some(&["retention.ms", "segment.ms"]))
            }),
            call("broker resource", 2, |ctx| {
                let node = ctx.i64("wait for altered", "/brokers/0/node_id");
                AlterConfigsRequest::default().with_resources(vec![
                    AlterConfigsResource::default()
                        .with_resource_type(4)
                        .with_resource_name(s(&node.to_string()))
                        .with_configs(vec![
                            AlterConfig::default()
                                .with_name(s("log.retention.ms"))
                                .with_value(Some(s("not-a-number"))),
                        ]),
                ])
            }),
        ],
    )
}

fn incremental_alter_configs() -> Scenario {
    fn request(
        ctx: &Ctx,
        topic: &str,
        configs: &[(&str, i8, Option<&str>)],
    ) -> IncrementalAlterConfigsRequest {
        IncrementalAlterConfigsRequest::default().with_resources(vec![
            IncrementalResource::default()
                .with_resource_type(2)
                .with_resource_name(ctx.str(topic))
                .with_configs(
                    configs
                        .iter()
                        .map(|(key, operation, value)| {
                            IncrementalConfig::default()
                                .with_name(s(key))
                                .with_config_operation(*operation)
                                .with_value(value.map(s))
                        })
                        .collect(),
                ),
        ])
    }
    const SET: i8 = 0;
    const DELETE: i8 = 1;
    const APPEND: i8 = 2;
    const SUBTRACT: i8 = 3;
    scenario(
        "IncrementalAlterConfigs",
        vec![
            create("create", "incremental", 1, &[("retention.ms", "3600000")]).quiet(),
            wait_for("incremental", 1),
            call("set", 1, |ctx| {
                request(ctx, "incremental", &[("segment.ms", SET, Some("100000"))])
            }),
            wait_config("incremental", "segment.ms", Some("100000")),
            call("describe: both overrides kept", 4, |ctx| {
                topic_configs(ctx, "incremental", Some(&["retention.ms", "segment.ms"]))
            }),
            call("append to a list", 1, |ctx| {
                request(
                    ctx,
                    "incremental",
                    &[("cleanup.policy", APPEND, Some("compact"))],
                )
            }),
            wait_config("incremental", "cleanup.policy", Some("delete,compact")),
            call("subtract from a list", 1, |ctx| {
                request(
                    ctx,
                    "incremental",
                    &[("cleanup.policy", SUBTRACT, Some("delete"))],
                )
            }),
            wait_config("incremental", "cleanup.policy", Some("compact")),
            call("append to a non-list", 1, |ctx| {
                request(ctx, "incremental", &[("retention.ms", APPEND, Some("5"))])
            }),
            call("delete", 1, |ctx| {
                request(ctx, "incremental", &[("retention.ms", DELETE, None)])
            }),
            wait_config("incremental", "retention.ms", Some("604800000")),
            call("describe after delete", 4, |ctx| {
                topic_configs(
                    ctx,
                    "incremental",
                    Some(&["retention.ms", "segment.ms", "cleanup.policy"]),
                )
            }),
            call("delete a key that was not set", 1, |ctx| {
                request(ctx, "incremental", &[("segment.bytes", DELETE, None)])
            }),
            call("invalid value", 1, |ctx| {
                request(ctx, "incremental", &[("retention.ms", SET, Some("soon"))])
            }),
            call("unknown key", 1, |ctx| {
                request(ctx, "incremental", &[("no.such.config", SET, Some("1"))])
            }),
            call("unknown operation", 1, |ctx| {
                request(ctx, "incremental", &[("retention.ms", 9, Some("1000"))])
            }),
            call("set with a null value", 1, |ctx| {
                request(ctx, "incremental", &[("retention.ms", SET, None)])
            }),
            call("the same key twice", 1, |ctx| {
                request(
                    ctx,
                    "incremental",
                    &[
                        ("retention.ms", SET, Some("1000")),
                        ("retention.ms", SET, Some("2000")),
                    ],
                )
            }),
            call("validate only", 1, |ctx| {
                request(ctx, "incremental", &[("retention.ms", SET, Some("1000"))])
                    .with_validate_only(true)
            }),
            call("unknown topic", 1, |ctx| {
                request(ctx, "never-created", &[("retention.ms", SET, Some("1000"))])
            }),
            call("v0", 0, |ctx| {
                request(ctx, "incremental", &[("retention.ms", SET, Some("5000"))])
            }),
            wait_config("incremental", "retention.ms", Some("5000")),
            call("describe at the end", 4, |ctx| {
                topic_configs(
                    ctx,
                    "incremental",
                    Some(&["retention.ms", "segment.ms", "cleanup.policy"]),
                )
            }),
        ],
    )
}

fn describe_cluster() -> Scenario {
    scenario(
        "DescribeCluster",
        vec![
            call("v0", 0, |_| DescribeClusterRequest::default()),
            call("v0 with authorized operations", 0, |_| {
                DescribeClusterRequest::default().with_include_cluster_authorized_operations(true)
            }),
            call("v1 brokers", 1, |_| {
                DescribeClusterRequest::default().with_endpoint_type(1)
            }),
            call("v1 controllers", 1, |_| {
                DescribeClusterRequest::default().with_endpoint_type(2)
            }),
            call("v1 unknown endpoint type", 1, |_| {
                DescribeClusterRequest::default().with_endpoint_type(9)
            }),
            call("v2 with fenced brokers", 2, |_| {
                DescribeClusterRequest::default().with_include_fenced_brokers(true)
            }),
        ],
    )
}

/// Last, as a refusal that Tidepool failed to make would break every later group step.
fn internal_topics() -> Scenario {
    scenario(
        "Internal topics",
        vec![
            call("metadata", 12, |_| {
                MetadataRequest::default().with_topics(Some(vec![
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(s("__consumer_offsets")))),
                ]))
            }),
            call("create __consumer_offsets", 7, |_| {
                CreateTopicsRequest::default()
                    .with_timeout_ms(TIMEOUT_MS)
                    .with_topics(vec![
                        CreatableTopic::default()
                            .with_name(TopicName(s("__consumer_offsets")))
                            .with_num_partitions(1)
                            .with_replication_factor(1),
                    ])
            }),
            call("grow __consumer_offsets", 3, |_| {
                CreatePartitionsRequest::default()
                    .with_timeout_ms(TIMEOUT_MS)
                    .with_topics(vec![
                        CreatePartitionsTopic::default()
                            .with_name(TopicName(s("__consumer_offsets")))
                            .with_count(60)
                            .with_assignments(None),
                    ])
                    .with_validate_only(true)
            }),
            call("delete __consumer_offsets", 6, |_| {
                DeleteTopicsRequest::default()
                    .with_timeout_ms(TIMEOUT_MS)
                    .with_topics(vec![
                        DeleteTopicState::default()
                            .with_name(Some(TopicName(s("__consumer_offsets")))),
                    ])
            }),
        ],
    )
}
