//! Topic names and their creation.

use tidepool_client::{Admin, KafkaCode, NewTopic};

/// The request topic of `service`.
pub fn request_topic(service: &str) -> String {
    format!("{service}.requests")
}

/// Whether Kafka accepts `name` as a topic name: 1 to 249 of `[a-zA-Z0-9._-]`, not `.`/`..`.
pub fn is_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
}

/// Whether `service` can name a service: its request topic is a legal topic name.
pub fn is_service_name(service: &str) -> bool {
    !service.is_empty() && is_topic_name(&request_topic(service))
}

/// Creates `topic` unless it exists.
pub async fn ensure_topic(
    admin: &Admin,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
) -> tidepool_client::Result<()> {
    match admin
        .create_topic(NewTopic::new(topic, partitions, replication_factor))
        .await
    {
        Ok(()) => Ok(()),
        Err(error) if error.code() == Some(KafkaCode::TOPIC_ALREADY_EXISTS) => Ok(()),
        Err(error) => Err(error),
    }
}
