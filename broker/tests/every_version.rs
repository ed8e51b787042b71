//! Every API at every version we advertise gets a well-formed, successful answer. The
//! `kafka-protocol` encoder refuses a field set in a version that lacks it, so a handler that
//! forgets a version check would close the connection mid-answer for that version only.

mod common;

use common::*;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tidepool_broker::handler::supported_versions;

fn versions(api_key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let (min, max) = supported_versions(api_key).expect("advertised");
    min..=max
}

/// A topic with one partition holding a few records; returns its id.
async fn topic_with_records(
    client: &mut Client,
    broker: &tidepool_broker::BrokerHandle,
    name: &str,
) -> uuid::Uuid {
    create_topic(client, name, 1).await;
    produce(client, name, 0, batch(3, 1_000)).await;
    broker.cluster().topic(name).unwrap().id
}

#[tokio::test]
async fn api_versions_answers_at_every_version() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    for version in versions(ApiKey::ApiVersions) {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("test"))
            .with_client_software_version(StrBytes::from_static_str("1"));
        let request = if version >= 3 {
            request
        } else {
            ApiVersionsRequest::default()
        };
        assert_eq!(
            client.call(version, request).await.error_code,
            0,
            "v{version}"
        );
    }
}

#[tokio::test]
async fn metadata_answers_at_every_version() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    topic_with_records(&mut client, &broker, "t").await;
    for version in versions(ApiKey::Metadata) {
        let request = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name("t"))),
        ]));
        let response = client.call(version, request).await;
        assert_eq!(response.topics.len(), 1, "v{version}");
        assert_eq!(response.topics[0].error_code, 0, "v{version}");
        assert_eq!(
            response.topics[0].partitions[0].leader_id.0, 1,
            "v{version}"
        );
    }
}

#[tokio::test]
async fn produce_answers_at_every_version() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    let id = topic_with_records(&mut client, &broker, "t").await;
    for version in versions(ApiKey::Produce) {
        let topic = TopicProduceData::default().with_partition_data(vec![
            PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch(2, 5))),
        ]);
        let topic = if version >= 13 {
            topic.with_topic_id(id)
        } else {
            topic.with_name(topic_name("t"))
        };
        let request = ProduceRequest::default()
            .with_transactional_id(None)
            .with_acks(-1)
            .with_timeout_ms(1_000)
            .with_topic_data(vec![topic]);
        let response = client.call(version, request).await;
        let answer = &response.responses[0].partition_responses[0];
        assert_eq!(
            answer.error_code, 0,
            "v{version}: {:?}",
            answer.error_message
        );
        assert!(answer.base_offset >= 3, "v{version}");
    }
}

#[tokio::test]
async fn fetch_answers_at_every_version() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    let id = topic_with_records(&mut client, &broker, "t").await;
    for version in versions(ApiKey::Fetch) {
        let topic = FetchTopic::default().with_partitions(vec![
            FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20),
        ]);
        let topic = if version >= 13 {
            topic.with_topic_id(id)
        } else {
            topic.with_topic(topic_name("t"))
        };
        let request = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![topic]);
        let response = client.call(version, request).await;
        let data = &response.responses[0].partitions[0];
        assert_eq!(data.error_code, 0, "v{version}");
        assert_eq!(records_of(&data.records).len(), 3, "v{version}");
        assert_eq!(data.high_watermark, 3, "v{version}");
    }
}

#[tokio::test]
async fn list_offsets_answers_at_every_version() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    topic_with_records(&mut client, &broker, "t").await;
    for version in versions(ApiKey::ListOffsets) {
        let request = ListOffsetsRequest::default().with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(topic_name("t"))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1),
                ]),
        ]);
        let response = client.call(version, request).await;
        let answer = &response.topics[0].partitions[0];
        assert_eq!((answer.error_code, answer.offset), (0, 3), "v{version}");
    }
}

#[tokio::test]
async fn topic_administration_answers_at_every_version() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    for version in versions(ApiKey::CreateTopics) {
        let name = format!("created-{version}");
        let request = CreateTopicsRequest::default().with_topics(vec![
            CreatableTopic::default()
                .with_name(topic_name(&name))
                .with_num_partitions(1)
                .with_replication_factor(1),
        ]);
        assert_eq!(
            client.call(version, request).await.topics[0].error_code,
            0,
            "CreateTopics v{version}"
        );
    }
    for version in versions(ApiKey::CreatePartitions) {
        let request = CreatePartitionsRequest::default().with_topics(vec![
            CreatePartitionsTopic::default()
                .with_name(topic_name("created-7"))
                .with_count(i32::from(version) + 2)
                .with_assignments(None),
        ]);
        assert_eq!(
            client.call(version, request).await.results[0].error_code,
            0,
            "CreatePartitions v{version}"
        );
    }
    for version in versions(ApiKey::DeleteTopics) {
        let name = format!("created-{}", version + 1);
        let request = if version >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                DeleteTopicState::default().with_name(Some(topic_name(&name))),
            ])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![topic_name(&name)])
        };
        assert_eq!(
            client.call(version, request).await.responses[0].error_code,
            0,
            "DeleteTopics v{version}"
        );
    }
}

#[tokio::test]
async fn producer_ids_epochs_and_cluster_answer_at_every_version() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    topic_with_records(&mut client, &broker, "t").await;
    for version in versions(ApiKey::InitProducerId) {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(1_000);
        let response = client.call(version, request).await;
        assert_eq!(response.error_code, 0, "InitProducerId v{version}");
        assert!(response.producer_id.0 >= 0);
    }
    for version in versions(ApiKey::OffsetForLeaderEpoch) {
        let request = OffsetForLeaderEpochRequest::default().with_topics(vec![
            OffsetForLeaderTopic::default()
                .with_topic(topic_name("t"))
                .with_partitions(vec![
                    OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_leader_epoch(0),
                ]),
        ]);
        let response = client.call(version, request).await;
        let answer = &response.topics[0].partitions[0];
        assert_eq!(
            (answer.error_code, answer.end_offset),
            (0, 3),
            "OffsetForLeaderEpoch v{version}"
        );
    }
    for version in versions(ApiKey::DescribeCluster) {
        let response = client
            .call(version, DescribeClusterRequest::default())
            .await;
        assert_eq!(
            (response.error_code, response.brokers.len()),
            (0, 1),
            "DescribeCluster v{version}"
        );
    }
}

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// Joins group `id` at JoinGroup `version` (through MEMBER_ID_REQUIRED from v4) and syncs;
/// returns (member id, generation).
async fn join_and_sync(
    client: &mut Client,
    id: &str,
    version: i16,
    sync_version: i16,
) -> (String, i32) {
    let request = |member: &str| {
        let mut request = JoinGroupRequest::default()
            .with_group_id(GroupId(text(id)))
            .with_session_timeout_ms(10_000)
            .with_member_id(text(member))
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default()
                    .with_name(text("range"))
                    .with_metadata(bytes::Bytes::from_static(b"m")),
            ]);
        if version >= 1 {
            request.rebalance_timeout_ms = 10_000;
        }
        request
    };
    let mut answer = client.call(version, request("")).await;
    if version >= 4 {
        assert_eq!(
            answer.error_code,
            kafka_protocol::ResponseError::MemberIdRequired.code(),
            "JoinGroup v{version}"
        );
        let member = answer.member_id.to_string();
        answer = client.call(version, request(&member)).await;
    }
    assert_eq!(answer.error_code, 0, "JoinGroup v{version}");
    let member_id = answer.member_id.to_string();
    let mut sync = SyncGroupRequest::default()
        .with_group_id(GroupId(text(id)))
        .with_generation_id(answer.generation_id)
        .with_member_id(text(&member_id));
    if sync_version >= 5 {
        sync.protocol_type = Some(text("consumer"));
        sync.protocol_name = Some(text("range"));
    }
    assert_eq!(
        client.call(sync_version, sync).await.error_code,
        0,
        "SyncGroup v{sync_version}"
    );
    (member_id, answer.generation_id)
}

#[tokio::test]
async fn group_apis_answer_at_every_version() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    topic_with_records(&mut client, &broker, "t").await;
    for version in versions(ApiKey::FindCoordinator) {
        let request = if version >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![text("g")])
        } else {
            FindCoordinatorRequest::default().with_key(text("g"))
        };
        let response = client.call(version, request).await;
        let code = if version >= 4 {
            response.coordinators[0].error_code
        } else {
            response.error_code
        };
        assert_eq!(code, 0, "FindCoordinator v{version}");
    }
    let sync_versions: Vec<i16> = versions(ApiKey::SyncGroup).collect();
    for version in versions(ApiKey::JoinGroup) {
        let group_id = format!("join-{version}");
        let sync_version = sync_versions[(version as usize).min(sync_versions.len() - 1)];
        let (member_id, generation) =
            join_and_sync(&mut client, &group_id, version, sync_version).await;
        assert_eq!(generation, 1);
        for heartbeat_version in versions(ApiKey::Heartbeat) {
            let request = HeartbeatRequest::default()
                .with_group_id(GroupId(text(&group_id)))
                .with_generation_id(generation)
                .with_member_id(text(&member_id));
            assert_eq!(
                client.call(heartbeat_version, request).await.error_code,
                0,
                "Heartbeat v{heartbeat_version}"
            );
        }
    }
    for version in versions(ApiKey::OffsetCommit) {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(text("simple")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(topic_name("t"))
                    .with_partitions(vec![
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(i64::from(version)),
                    ]),
            ]);
        let response = client.call(version, request).await;
        assert_eq!(
            response.topics[0].partitions[0].error_code, 0,
            "OffsetCommit v{version}"
        );
    }
    for version in versions(ApiKey::OffsetFetch) {
        let committed = if version >= 8 {
            let request = OffsetFetchRequest::default().with_groups(vec![
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(text("simple")))
                    .with_topics(Some(vec![
                        OffsetFetchRequestTopics::default()
                            .with_name(topic_name("t"))
                            .with_partition_indexes(vec![0]),
                    ])),
            ]);
            client.call(version, request).await.groups[0].topics[0].partitions[0].committed_offset
        } else {
            let request = OffsetFetchRequest::default()
                .with_group_id(GroupId(text("simple")))
                .with_topics(Some(vec![
                    OffsetFetchRequestTopic::default()
                        .with_name(topic_name("t"))
                        .with_partition_indexes(vec![0]),
                ]));
            client.call(version, request).await.topics[0].partitions[0].committed_offset
        };
        assert_eq!(
            committed, 9,
            "OffsetFetch v{version}: the last commit was at v9"
        );
    }
    for version in versions(ApiKey::ListGroups) {
        let listed = client.call(version, ListGroupsRequest::default()).await;
        assert!(
            listed
                .groups
                .iter()
                .any(|g| g.group_id.0.as_str() == "simple"),
            "ListGroups v{version}"
        );
    }
    for version in versions(ApiKey::DescribeGroups) {
        let described = client
            .call(
                version,
                DescribeGroupsRequest::default().with_groups(vec![GroupId(text("join-0"))]),
            )
            .await;
        assert_eq!(
            described.groups[0].group_state.as_str(),
            "Stable",
            "DescribeGroups v{version}"
        );
    }
    for version in versions(ApiKey::OffsetDelete) {
        let request = OffsetDeleteRequest::default()
            .with_group_id(GroupId(text("simple")))
            .with_topics(vec![
                OffsetDeleteRequestTopic::default()
                    .with_name(topic_name("t"))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0),
                    ]),
            ]);
        assert_eq!(
            client.call(version, request).await.error_code,
            0,
            "OffsetDelete v{version}"
        );
    }
    for version in versions(ApiKey::LeaveGroup) {
        let group_id = format!("join-{}", version + 2);
        let member = broker.control().describe_group(&group_id).unwrap().members[0]
            .member_id
            .clone();
        let request = if version >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(text(&group_id)))
                .with_members(vec![
                    MemberIdentity::default().with_member_id(text(&member)),
                ])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(text(&group_id)))
                .with_member_id(text(&member))
        };
        let response = client.call(version, request).await;
        let code = if version >= 3 {
            response.members[0].error_code
        } else {
            response.error_code
        };
        assert_eq!(code, 0, "LeaveGroup v{version}");
    }
    for version in versions(ApiKey::DeleteGroups) {
        let group_id = format!("join-{}", version + 2);
        let response = client
            .call(
                version,
                DeleteGroupsRequest::default().with_groups_names(vec![GroupId(text(&group_id))]),
            )
            .await;
        assert_eq!(response.results[0].error_code, 0, "DeleteGroups v{version}");
    }
}

#[tokio::test]
async fn delete_records_answers_at_every_version() {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    topic_with_records(&mut client, &broker, "t").await;
    for version in versions(ApiKey::DeleteRecords) {
        let request = DeleteRecordsRequest::default()
            .with_timeout_ms(1_000)
            .with_topics(vec![
                DeleteRecordsTopic::default()
                    .with_name(topic_name("t"))
                    .with_partitions(vec![
                        DeleteRecordsPartition::default()
                            .with_partition_index(0)
                            .with_offset(i64::from(version)),
                    ]),
            ]);
        let answer = client.call(version, request).await.topics[0].partitions[0].clone();
        assert_eq!(
            (answer.error_code, answer.low_watermark),
            (0, i64::from(version)),
            "DeleteRecords v{version}"
        );
    }
}

#[tokio::test]
async fn config_apis_answer_at_every_version() {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::incremental_alter_configs_request as incremental;

    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    topic_with_records(&mut client, &broker, "t").await;
    for version in versions(ApiKey::AlterConfigs) {
        let retention_ms = format!("{}", 1_000 + i64::from(version));
        let request = AlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(text("t"))
                .with_configs(vec![
                    AlterableConfig::default()
                        .with_name(text("retention.ms"))
                        .with_value(Some(text(&retention_ms))),
                ]),
        ]);
        let response = client.call(version, request).await;
        assert_eq!(
            response.responses[0].error_code, 0,
            "AlterConfigs v{version}"
        );
        assert_eq!(
            broker.cluster().topic("t").unwrap().config.retention_ms,
            1_000 + i64::from(version)
        );
    }
    for version in versions(ApiKey::IncrementalAlterConfigs) {
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(text("t"))
                .with_configs(vec![
                    incremental::AlterableConfig::default()
                        .with_name(text("segment.ms"))
                        .with_config_operation(0)
                        .with_value(Some(text(&format!("{}", 60_000 + i64::from(version))))),
                ]),
        ]);
        let response = client.call(version, request).await;
        assert_eq!(
            response.responses[0].error_code, 0,
            "IncrementalAlterConfigs v{version}"
        );
        assert_eq!(
            broker.cluster().topic("t").unwrap().config.segment_ms,
            60_000 + i64::from(version)
        );
    }
    for version in versions(ApiKey::DescribeConfigs) {
        let request = DescribeConfigsRequest::default()
            .with_include_synonyms(true)
            .with_include_documentation(version >= 3)
            .with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(text("t"))
                    .with_configuration_keys(None),
                DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(text("1"))
                    .with_configuration_keys(Some(vec![text("log.segment.bytes")])),
            ]);
        let response = client.call(version, request).await;
        assert_eq!(response.results.len(), 2, "DescribeConfigs v{version}");
        let topic = &response.results[0];
        assert_eq!(topic.error_code, 0, "DescribeConfigs v{version}");
        let segment_ms = topic
            .configs
            .iter()
            .find(|config| config.name.as_str() == "segment.ms")
            .unwrap();
        assert_eq!(
            (segment_ms.value.as_deref(), segment_ms.config_source),
            (Some("60001"), 1),
            "DescribeConfigs v{version}"
        );
        assert_eq!(segment_ms.synonyms.len(), 2, "DescribeConfigs v{version}");
        assert_eq!(
            response.results[1].configs.len(),
            1,
            "DescribeConfigs v{version}"
        );
    }
}
