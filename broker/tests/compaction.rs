//! Compaction, retention and DeleteRecords over the wire and through Control.

mod common;

use bytes::Bytes;
use common::*;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tidepool_broker::Broker;
use tidepool_protocol::records::BatchBuilder;

async fn create_with(client: &mut Client, name: &str, configs: &[(&str, &str)]) {
    let request = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            ),
    ]);
    let response = client.call(7, request).await;
    assert_eq!(
        response.topics[0].error_code, 0,
        "{:?}",
        response.topics[0].error_message
    );
}

fn updates(entries: &[(&str, Option<&str>)]) -> Bytes {
    let mut builder = BatchBuilder::new();
    for (key, value) in entries {
        builder.append(
            1_000,
            Some(Bytes::from(key.to_string())),
            value.map(|v| Bytes::from(v.to_string())),
            Vec::new(),
        );
    }
    builder.build().unwrap()
}

async fn earliest(client: &mut Client, topic: &str) -> i64 {
    let request = ListOffsetsRequest::default().with_topics(vec![
        ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![
                ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-2),
            ]),
    ]);
    client.call(8, request).await.topics[0].partitions[0].offset
}

async fn delete_records(client: &mut Client, topic: &str, offset: i64) -> (i16, i64) {
    let request = DeleteRecordsRequest::default()
        .with_timeout_ms(1_000)
        .with_topics(vec![
            DeleteRecordsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![
                    DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(offset),
                ]),
        ]);
    let answer = client.call(2, request).await.topics[0].partitions[0].clone();
    (answer.error_code, answer.low_watermark)
}

#[tokio::test]
async fn a_compacted_topic_keeps_the_latest_value_per_key_and_reports_the_pass() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    create_with(
        &mut client,
        "compacted",
        &[("cleanup.policy", "compact"), ("delete.retention.ms", "0")],
    )
    .await;
    produce(
        &mut client,
        "compacted",
        0,
        updates(&[("a", Some("1")), ("b", Some("1"))]),
    )
    .await;
    produce(
        &mut client,
        "compacted",
        0,
        updates(&[("a", Some("2")), ("b", None)]),
    )
    .await;
    let control = broker.control();
    control.roll("compacted", 0).unwrap();
    let report = control.clean_now("compacted", 0).unwrap().unwrap();
    assert_eq!(report.records_before, 4);
    assert_eq!(
        report.records_removed, 3,
        "a=1, b=1, and the tombstone (delete.retention.ms=0)"
    );
    assert_eq!(report.tombstones_removed, 1);
    assert_eq!(report.keys_kept, 1);
    assert!(report.bytes_after < report.bytes_before);
    assert_eq!(control.cleaner_reports().last(), Some(&report));
    let data = fetch(&mut client, fetch_request("compacted", 0, 0)).await;
    let left: Vec<(i64, Option<Bytes>)> = records_of(&data.records)
        .into_iter()
        .map(|r| (r.offset, r.value))
        .collect();
    assert_eq!(left, vec![(2, Some(Bytes::from("2")))]);
    assert_eq!(data.high_watermark, 4, "offsets are kept");
}

#[tokio::test]
async fn a_compacted_topic_refuses_records_without_keys() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    create_with(&mut client, "compacted", &[("cleanup.policy", "compact")]).await;
    let answer = produce(&mut client, "compacted", 0, batch(1, 1)).await;
    assert_eq!(answer.error_code, 0, "keys present");
    let mut keyless = BatchBuilder::new();
    keyless.append(1, None, Some(Bytes::from("v")), Vec::new());
    let answer = produce(&mut client, "compacted", 0, keyless.build().unwrap()).await;
    assert_eq!(answer.error_code, ResponseError::InvalidRecord.code());
}

#[tokio::test]
async fn delete_records_moves_the_earliest_offset_and_fetches_below_it_are_out_of_range() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    produce(&mut client, "t", 0, batch(5, 1)).await;
    produce(&mut client, "t", 0, batch(5, 1)).await;
    assert_eq!(delete_records(&mut client, "t", 7).await, (0, 7));
    assert_eq!(earliest(&mut client, "t").await, 7);
    let below = fetch(&mut client, fetch_request("t", 0, 3)).await;
    assert_eq!(below.error_code, ResponseError::OffsetOutOfRange.code());
    let from_start = fetch(&mut client, fetch_request("t", 0, 7)).await;
    assert_eq!(from_start.log_start_offset, 7);
    assert_eq!(
        delete_records(&mut client, "t", 99).await.0,
        ResponseError::OffsetOutOfRange.code()
    );
    assert_eq!(
        delete_records(&mut client, "t", -1).await,
        (0, 10),
        "-1 means the high watermark"
    );
}

#[tokio::test]
async fn the_log_start_offset_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("tidepool-delete-records-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let broker = Broker::builder().data_dir(&dir).start().await.unwrap();
    let mut client = Client::connect(&broker).await;
    produce(&mut client, "t", 0, batch(10, 1)).await;
    delete_records(&mut client, "t", 4).await;
    broker.shutdown().await;
    let broker = Broker::builder().data_dir(&dir).start().await.unwrap();
    let mut client = Client::connect(&broker).await;
    assert_eq!(earliest(&mut client, "t").await, 4);
    broker.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn retention_by_size_drops_old_segments_and_the_earliest_offset_follows() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    create_with(
        &mut client,
        "sized",
        &[("retention.bytes", "1"), ("retention.ms", "-1")],
    )
    .await;
    let control = broker.control();
    for _ in 0..3 {
        produce(&mut client, "sized", 0, batch(2, 1)).await;
        control.roll("sized", 0).unwrap();
    }
    produce(&mut client, "sized", 0, batch(2, 1)).await;
    let stats = control.apply_retention_now("sized", 0).unwrap();
    assert_eq!((stats.segments_removed, stats.log_start_offset), (3, 6));
    assert_eq!(earliest(&mut client, "sized").await, 6);
}
