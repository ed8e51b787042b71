//! Metadata, topic administration, offsets and cluster description over the wire.

mod common;

use common::*;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiVersionsRequest, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, ListOffsetsRequest, MetadataRequest, OffsetForLeaderEpochRequest,
};
use kafka_protocol::protocol::StrBytes;
use tidepool_broker::handler::SUPPORTED_APIS;
use tidepool_broker::{Broker, Config};
use tidepool_protocol::records::BatchBuilder;

fn metadata_for(names: &[&str], allow_auto_topic_creation: bool) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(Some(
            names
                .iter()
                .map(|name| MetadataRequestTopic::default().with_name(Some(topic_name(name))))
                .collect(),
        ))
        .with_allow_auto_topic_creation(allow_auto_topic_creation)
}

#[tokio::test]
async fn api_versions_advertises_exactly_the_implemented_table() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    for version in [0, 3, 4] {
        let response = client.call(version, ApiVersionsRequest::default()).await;
        assert_eq!(response.error_code, 0);
        let advertised: Vec<(i16, i16, i16)> = response
            .api_keys
            .iter()
            .map(|api| (api.api_key, api.min_version, api.max_version))
            .collect();
        let table: Vec<(i16, i16, i16)> = SUPPORTED_APIS
            .iter()
            .map(|&(key, min, max)| (key as i16, min, max))
            .collect();
        assert_eq!(advertised, table);
        assert!(response.supported_features.is_empty() && response.finalized_features.is_empty());
    }
}

#[tokio::test]
async fn api_versions_v3_carries_no_tagged_fields_for_old_librdkafka() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    let (_, bytes) = client.encode(3, &ApiVersionsRequest::default());
    client.send_raw(&bytes).await;
    let frame = client.read_frame().await.unwrap();
    assert_eq!(
        frame.last(),
        Some(&0u8),
        "an empty tagged-field section ends the body"
    );
}

#[tokio::test]
async fn an_unknown_api_versions_version_gets_a_v0_answer_with_our_versions() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    let mut frame = Vec::new();
    frame.extend_from_slice(&18i16.to_be_bytes());
    frame.extend_from_slice(&99i16.to_be_bytes());
    frame.extend_from_slice(&7i32.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes());
    frame.push(0);
    let mut wire = (frame.len() as i32).to_be_bytes().to_vec();
    wire.extend_from_slice(&frame);
    client.send_raw(&wire).await;
    let response = Client::decode::<ApiVersionsRequest>(0, 7, client.read_frame().await.unwrap());
    assert_eq!(
        response.error_code,
        ResponseError::UnsupportedVersion.code()
    );
    assert_eq!(response.api_keys.len(), SUPPORTED_APIS.len());
}

#[tokio::test]
async fn metadata_lists_every_node_and_auto_creates_when_asked() {
    let broker = Broker::builder().memory().nodes(3).start().await.unwrap();
    let mut client = Client::connect(&broker).await;
    let response = client
        .call(12, metadata_for(&["made-on-demand"], true))
        .await;
    assert_eq!(response.brokers.len(), 3);
    assert_eq!(
        response.cluster_id.as_deref(),
        Some(broker.cluster().cluster_id.as_str())
    );
    let topic = &response.topics[0];
    assert_eq!(topic.error_code, 0);
    assert!(!topic.topic_id.is_nil());
    assert_eq!(topic.partitions.len(), 1);
    assert!((1..=3).contains(&topic.partitions[0].leader_id.0));

    let response = client
        .call(12, metadata_for(&["not-asked-to-create"], false))
        .await;
    assert_eq!(
        response.topics[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let all = client
        .call(12, MetadataRequest::default().with_topics(None))
        .await;
    assert_eq!(all.topics.len(), 1);
}

#[tokio::test]
async fn metadata_reports_invalid_topic_names() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    let response = client.call(12, metadata_for(&["bad name!"], true)).await;
    assert_eq!(
        response.topics[0].error_code,
        ResponseError::InvalidTopicException.code()
    );
}

#[tokio::test]
async fn metadata_finds_topics_by_id() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "t", 2).await;
    let id = broker.cluster().topic("t").unwrap().id;
    let request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default()
            .with_name(None)
            .with_topic_id(id),
        MetadataRequestTopic::default()
            .with_name(None)
            .with_topic_id(uuid::Uuid::from_u128(9)),
    ]));
    let response = client.call(12, request).await;
    assert_eq!(
        response.topics[0].name.as_ref().map(|n| n.0.as_str()),
        Some("t")
    );
    assert_eq!(
        response.topics[1].error_code,
        ResponseError::UnknownTopicId.code()
    );
}

#[tokio::test]
async fn create_topics_reports_each_kafka_error() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "exists", 1).await;
    let creatable = |name: &str, partitions: i32, replication: i16| {
        CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(replication)
    };
    let request = CreateTopicsRequest::default().with_topics(vec![
        creatable("exists", 1, 1),
        creatable("bad/name", 1, 1),
        creatable("zero", 0, 1),
        creatable("replicated", 1, 3),
        creatable("configured", 2, 1).with_configs(vec![
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("no.such.config"))
                .with_value(Some(StrBytes::from_static_str("1"))),
        ]),
        creatable("fine", -1, -1),
    ]);
    let response = client.call(7, request).await;
    let codes: Vec<i16> = response.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(
        codes,
        vec![
            ResponseError::TopicAlreadyExists.code(),
            ResponseError::InvalidTopicException.code(),
            ResponseError::InvalidPartitions.code(),
            ResponseError::InvalidReplicationFactor.code(),
            ResponseError::InvalidConfig.code(),
            0,
        ]
    );
    assert!(
        response
            .topics
            .iter()
            .take(5)
            .all(|t| t.error_message.is_some())
    );
    let fine = &response.topics[5];
    assert_eq!((fine.num_partitions, fine.replication_factor), (1, 1));
    assert!(!fine.topic_id.is_nil());
    assert!(
        fine.configs
            .as_ref()
            .unwrap()
            .iter()
            .any(|c| c.name.as_str() == "segment.bytes")
    );
}

#[tokio::test]
async fn validate_only_creates_nothing_but_answers_as_if_it_had() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    let request = CreateTopicsRequest::default()
        .with_validate_only(true)
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(topic_name("dry"))
                .with_num_partitions(4)
                .with_replication_factor(1),
        ]);
    let response = client.call(7, request).await;
    assert_eq!(
        (
            response.topics[0].error_code,
            response.topics[0].num_partitions
        ),
        (0, 4)
    );
    assert!(broker.cluster().topic("dry").is_none());
}

#[tokio::test]
async fn delete_topics_by_name_and_by_id() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "a", 1).await;
    create_topic(&mut client, "b", 1).await;
    let b_id = broker.cluster().topic("b").unwrap().id;
    let by_name = client
        .call(
            5,
            DeleteTopicsRequest::default()
                .with_topic_names(vec![topic_name("a"), topic_name("gone")]),
        )
        .await;
    assert_eq!(by_name.responses[0].error_code, 0);
    assert_eq!(
        by_name.responses[1].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let by_id = client
        .call(
            6,
            DeleteTopicsRequest::default().with_topics(vec![
                DeleteTopicState::default()
                    .with_name(None)
                    .with_topic_id(b_id),
            ]),
        )
        .await;
    assert_eq!(by_id.responses[0].error_code, 0);
    assert_eq!(
        by_id.responses[0].name.as_ref().map(|n| n.0.as_str()),
        Some("b")
    );
    assert!(broker.cluster().topics().is_empty());
}

#[tokio::test]
async fn create_partitions_grows_and_refuses_to_shrink() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "t", 2).await;
    let grow = |count| {
        CreatePartitionsRequest::default()
            .with_timeout_ms(1_000)
            .with_topics(vec![
                CreatePartitionsTopic::default()
                    .with_name(topic_name("t"))
                    .with_count(count)
                    .with_assignments(None),
            ])
    };
    assert_eq!(client.call(3, grow(5)).await.results[0].error_code, 0);
    assert_eq!(broker.cluster().topic("t").unwrap().partitions.len(), 5);
    let shrink = client.call(3, grow(3)).await;
    assert_eq!(
        shrink.results[0].error_code,
        ResponseError::InvalidPartitions.code()
    );
    assert!(produce(&mut client, "t", 4, batch(1, 1)).await.error_code == 0);
}

fn list_offsets(topic: &str, timestamp: i64) -> ListOffsetsRequest {
    ListOffsetsRequest::default().with_topics(vec![
        ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![
                ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(timestamp),
            ]),
    ])
}

#[tokio::test]
async fn list_offsets_answers_earliest_latest_by_time_and_max_time() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    let mut builder = BatchBuilder::new();
    for (index, timestamp) in [100, 300, 200].into_iter().enumerate() {
        builder.push(record(index, timestamp));
    }
    produce(&mut client, "t", 0, builder.build().unwrap()).await;
    produce(&mut client, "t", 0, batch(2, 400)).await;
    let mut ask = async |timestamp| {
        let response = client.call(8, list_offsets("t", timestamp)).await;
        let partition = response.topics[0].partitions[0].clone();
        assert_eq!(partition.error_code, 0);
        (partition.offset, partition.timestamp)
    };
    assert_eq!(ask(-2).await.0, 0);
    assert_eq!(ask(-1).await.0, 5);
    assert_eq!(
        ask(150).await,
        (1, 300),
        "the first record at or after the time"
    );
    assert_eq!(ask(250).await, (1, 300));
    assert_eq!(ask(350).await, (3, 400));
    assert_eq!(ask(999).await, (-1, -1));
    assert_eq!(
        ask(-3).await,
        (4, 401),
        "the record with the largest timestamp"
    );
}

#[tokio::test]
async fn list_offsets_checks_the_leader_epoch() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "t", 1).await;
    let mut request = list_offsets("t", -1);
    request.topics[0].partitions[0].current_leader_epoch = 5;
    let response = client.call(8, request).await;
    assert_eq!(
        response.topics[0].partitions[0].error_code,
        ResponseError::UnknownLeaderEpoch.code()
    );
}

#[tokio::test]
async fn offset_for_leader_epoch_reports_the_end_of_the_epoch() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    produce(&mut client, "t", 0, batch(3, 1)).await;
    let ask = |epoch| {
        OffsetForLeaderEpochRequest::default().with_topics(vec![
            OffsetForLeaderTopic::default()
                .with_topic(topic_name("t"))
                .with_partitions(vec![
                    OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(0)
                        .with_leader_epoch(epoch),
                ]),
        ])
    };
    let current = client.call(4, ask(0)).await;
    let answer = &current.topics[0].partitions[0];
    assert_eq!(
        (answer.error_code, answer.leader_epoch, answer.end_offset),
        (0, 0, 3)
    );
    let future = client.call(4, ask(7)).await;
    assert_eq!(future.topics[0].partitions[0].end_offset, -1);
}

#[tokio::test]
async fn describe_cluster_lists_the_nodes() {
    let broker = Broker::builder()
        .memory()
        .nodes(2)
        .config(Config::default())
        .start()
        .await
        .unwrap();
    let mut client = Client::connect(&broker).await;
    let response = client.call(1, DescribeClusterRequest::default()).await;
    assert_eq!(response.error_code, 0);
    assert_eq!(response.brokers.len(), 2);
    assert_eq!(response.controller_id.0, 1);
    assert_eq!(response.cluster_id.as_str(), broker.cluster().cluster_id);
}
