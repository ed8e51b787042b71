//! The pipeline's topics and how they are created. Names follow the case study; partitions
//! and the replication factor come from [`TopicsConfig`], so the same code creates them on a
//! one-node Tidepool and on a real cluster.

use tidepool_client::{Admin, KafkaCode, NewTopic};

/// What the collector produces to; every stage reads it.
pub const RAW: &str = "events.raw";
/// Failed events waiting for another attempt (all stages share it; a header names the stage).
pub const RETRY: &str = "events.retry";
/// Events that failed their last attempt.
pub const DEAD_LETTERS: &str = "events.dlq";
/// The enrichment stage's output.
pub const ENRICHED: &str = "events.enriched";
/// What the outbox relay publishes for persisted events.
pub const PERSISTED: &str = "events.persisted";

#[derive(Debug, Clone)]
pub struct TopicsConfig {
    pub partitions: i32,
    pub replication_factor: i16,
}

impl Default for TopicsConfig {
    fn default() -> TopicsConfig {
        TopicsConfig {
            partitions: 6,
            replication_factor: 1,
        }
    }
}

/// Creates every pipeline topic that does not exist yet.
pub async fn ensure_topics(admin: &Admin, config: &TopicsConfig) -> tidepool_client::Result<()> {
    for name in [RAW, RETRY, DEAD_LETTERS, ENRICHED, PERSISTED] {
        let topic = NewTopic::new(name, config.partitions, config.replication_factor);
        match admin.create_topic(topic).await {
            Ok(()) => {}
            Err(error) if error.code() == Some(KafkaCode::TOPIC_ALREADY_EXISTS) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
