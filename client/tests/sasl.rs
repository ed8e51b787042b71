//! The client logging in to a broker that requires SASL: PLAIN, SCRAM-SHA-256 and
//! SCRAM-SHA-512 on every connection (bootstrap, leaders, group coordinators), and a wrong
//! password reported as Kafka's SASL_AUTHENTICATION_FAILED instead of retried.
//! Always against an embedded broker: an external cluster's users are not ours to know.

mod support;

use std::time::Duration;

use bytes::Bytes;
use support::fetch::fetch_all;
use support::topics::create_topic;
use support::unique_topic;
use tidepool_broker::{Broker, BrokerHandle, SaslConfig};
use tidepool_client::{
    Client, ClientConfig, KafkaCode, Producer, ProducerConfig, ProducerRecord, SaslMechanism,
};
use tidepool_io::Env;

const USER: &str = "pipeline";
const PASSWORD: &str = "pipeline-secret";

async fn secured_broker() -> BrokerHandle {
    Broker::builder()
        .nodes(3)
        .sasl(
            SaslConfig::all_mechanisms()
                .with_user(USER, PASSWORD)
                .expect("a valid user"),
        )
        .start()
        .await
        .expect("broker starts")
}

fn config(broker: &BrokerHandle, mechanism: SaslMechanism, password: &str) -> ClientConfig {
    ClientConfig::new(broker.bootstrap())
        .request_timeout(Duration::from_secs(10))
        .sasl(mechanism, USER, password)
}

#[tokio::test]
async fn every_mechanism_logs_in_and_produces() {
    let broker = secured_broker().await;
    for mechanism in [
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
    ] {
        let client = Client::connect(Env::real(), config(&broker, mechanism, PASSWORD))
            .await
            .unwrap_or_else(|error| panic!("{mechanism:?} log-in: {error}"));
        let topic = unique_topic("sasl");
        create_topic(&client, &topic, 1).await;
        let producer = Producer::new(client.clone(), ProducerConfig::default())
            .await
            .expect("a producer");
        let delivered = producer
            .send(ProducerRecord::new(
                topic.clone(),
                Bytes::from_static(b"secured"),
            ))
            .await
            .expect("queued")
            .await
            .expect("delivered");
        assert_eq!(delivered.offset, 0);
        let records = fetch_all(&client, &topic, delivered.partition).await;
        assert_eq!(records.len(), 1, "{mechanism:?}");
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn a_wrong_password_fails_with_sasl_authentication_failed() {
    let broker = secured_broker().await;
    for mechanism in [SaslMechanism::Plain, SaslMechanism::ScramSha512] {
        let error = Client::connect(Env::real(), config(&broker, mechanism, "guess"))
            .await
            .err()
            .unwrap_or_else(|| panic!("{mechanism:?} logged in with a wrong password"));
        assert_eq!(error.code(), Some(KafkaCode(58)), "{mechanism:?}: {error}");
        assert!(!error.is_retriable(), "{error}");
    }
    // A broker without SASL does not advertise the SASL APIs: the client says so.
    let plaintext = Broker::builder().start().await.expect("broker starts");
    let error = Client::connect(
        Env::real(),
        ClientConfig::new(plaintext.bootstrap()).sasl(SaslMechanism::Plain, USER, PASSWORD),
    )
    .await
    .expect_err("no log-in where there is no SASL");
    assert!(
        error.to_string().contains("supports no version of API 17"),
        "{error}"
    );
    broker.shutdown().await;
    plaintext.shutdown().await;
}
