//! The client core against a cluster: bootstrap, metadata, version negotiation, connections.

mod support;

use support::TestCluster;
use tidepool_client::{Client, ClientConfig, Error};
use tidepool_io::Env;

#[tokio::test]
async fn a_client_learns_the_brokers_from_a_bootstrap_address() {
    let cluster = TestCluster::start(3).await;
    let client = cluster.client().await;
    let metadata = client.metadata();
    assert!(!metadata.brokers.is_empty());
    if !cluster.is_external() {
        assert_eq!(metadata.brokers.len(), 3);
    }
    assert!(client.controller().is_some());
}

#[tokio::test]
async fn metadata_for_an_unknown_topic_is_unknown_topic_and_creates_nothing() {
    let cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    let topic = support::unique_topic("never-created");
    let error = client.topic(&topic).await.unwrap_err();
    assert_eq!(
        error.code(),
        Some(tidepool_client::KafkaCode::UNKNOWN_TOPIC_OR_PARTITION)
    );
    let listed = client.list_topics().await.unwrap();
    assert!(listed.iter().all(|t| t.name != topic));
}

#[tokio::test]
async fn an_unreachable_bootstrap_address_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let error = Client::connect(Env::real(), ClientConfig::new(address.to_string()))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Connect { .. }), "{error}");
}
