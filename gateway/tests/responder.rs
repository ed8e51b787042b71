//! The responder's delivery guarantee: at-least-once, made harmless by the example services.
//! A request delivered twice (the same correlation id, as after a crash before the offset
//! commit) applies its effect once and gets the same reply twice, byte for byte. Runs against an
//! embedded broker, or the cluster named by TIDEPOOL_TEST_BOOTSTRAP.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tidepool_client::{
    Admin, Client, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, Producer,
    ProducerConfig, ProducerRecord, TopicPartition,
};
use tidepool_gateway::headers;
use tidepool_gateway::services::OrdersService;
use tidepool_io::{Env, SystemClock};
use tidepool_pipeline::store::Store;

use support::{Service, create_topic, eventually, start_broker, unique};

fn order_request(
    topic: &str,
    replies: &str,
    correlation_id: &str,
    body: &serde_json::Value,
) -> ProducerRecord {
    ProducerRecord::new(topic.to_owned(), Bytes::from(body.to_string()))
        .key(correlation_id.to_owned().into_bytes())
        .header(
            headers::CORRELATION_ID,
            correlation_id.to_owned().into_bytes(),
        )
        .header(headers::REPLY_TO, replies.as_bytes().to_vec())
        .header(headers::METHOD, b"POST".to_vec())
        .header(headers::PATH, b"/".to_vec())
        .header(headers::CONTENT_TYPE, b"application/json".to_vec())
}

fn status_of(record: &ConsumerRecord) -> Option<&str> {
    headers::find(&record.headers, headers::STATUS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_request_gets_the_same_reply_and_applies_its_effect_once() {
    let broker = start_broker().await;
    let bootstrap = broker.bootstrap();
    let orders = unique("orders");
    let requests = format!("{orders}.requests");
    let replies_topic = unique("test-replies");
    create_topic(&bootstrap, &requests, 1).await;
    create_topic(&bootstrap, &replies_topic, 1).await;
    let client = Client::connect(Env::real(), ClientConfig::new(&bootstrap))
        .await
        .unwrap();

    // Written before the responder starts, so it reads all of them in order: a record that
    // is no request, a request, the same request again, and another request.
    let producer = Producer::new(client.clone(), ProducerConfig::default())
        .await
        .unwrap();
    let not_a_request = ProducerRecord::new(requests.clone(), Bytes::from_static(b"junk"));
    let first = order_request(
        &requests,
        &replies_topic,
        "test.0000000000000001.1",
        &json!({"item": "tea"}),
    );
    let other = order_request(
        &requests,
        &replies_topic,
        "test.0000000000000001.2",
        &json!({"item": "milk"}),
    );
    for record in [not_a_request, first.clone(), first, other] {
        producer.send(record).await.unwrap().await.unwrap();
    }

    let store = Store::memory().unwrap();
    let service = Service::start_on_existing_topic(
        &bootstrap,
        &orders,
        Arc::new(OrdersService::new(
            store.clone(),
            Arc::new(SystemClock::new()),
        )),
    )
    .await;

    let reader = Consumer::new(
        client.clone(),
        ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest),
    )
    .await
    .unwrap();
    reader
        .assign(vec![TopicPartition::new(replies_topic.as_str(), 0)])
        .await
        .unwrap();
    let mut replies: Vec<ConsumerRecord> = Vec::new();
    eventually("three replies", async || {
        replies.extend(reader.poll(Duration::from_millis(100)).await.unwrap());
        replies.len() >= 3
    })
    .await;

    let (once, again, next) = (&replies[0], &replies[1], &replies[2]);
    assert_eq!(status_of(once), Some("201"));
    assert_eq!(once.key, again.key);
    assert_eq!(
        once.value, again.value,
        "the redelivery replays the stored reply"
    );
    assert_eq!(once.headers, again.headers);
    let order: serde_json::Value = serde_json::from_slice(once.value.as_ref().unwrap()).unwrap();
    assert_eq!(order["id"], "o-1");
    // The second order takes the next id: the redelivery did not create one.
    let second: serde_json::Value = serde_json::from_slice(next.value.as_ref().unwrap()).unwrap();
    assert_eq!(second["id"], "o-2");
    assert_eq!(store.applied_count("orders").unwrap(), 2);
    assert!(store.effect("orders", b"order/o-3").unwrap().is_none());

    // Offsets are committed past every record once their replies were acknowledged, the
    // record that carried no request included.
    let admin = Admin::new(client.clone());
    eventually("the responder's offsets committed", async || {
        admin
            .list_group_offsets(&format!("{orders}.responder"))
            .await
            .map(|offsets| offsets.get(&TopicPartition::new(requests.as_str(), 0)) == Some(&4))
            .unwrap_or(false)
    })
    .await;

    reader.close().await.unwrap();
    producer.close().await.unwrap();
    service.stop().await;
    client.close();
    broker.shutdown().await;
}
