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
