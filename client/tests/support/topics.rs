//! Topics for tests, created explicitly: a test must not depend on the cluster auto-creating
//! them (real Kafka deployments often turn it off).

#![allow(dead_code)]

use tidepool_client::{Admin, Client, NewTopic};

/// Creates `name` with `partitions` partitions (replication factor: the broker's default) and
/// waits until every partition has a leader.
pub async fn create_topic(client: &Client, name: &str, partitions: i32) {
    Admin::new(client.clone())
        .create_topic(NewTopic::new(name, partitions, -1))
        .await
        .unwrap_or_else(|error| panic!("creating topic {name} failed: {error}"));
}
