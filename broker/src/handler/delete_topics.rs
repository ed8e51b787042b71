//! DeleteTopics: by name (up to v5) or by name or id (v6).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::server::Node;

const TOPIC_STATES_FROM_VERSION: i16 = 6;

pub fn handle(node: &Node, version: i16, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let wanted: Vec<(Option<TopicName>, Uuid)> = if version >= TOPIC_STATES_FROM_VERSION {
        request
            .topics
            .into_iter()
            .map(|topic| (topic.name, topic.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|name| (Some(name), Uuid::nil()))
            .collect()
    };
    let responses = wanted
        .into_iter()
        .map(|(name, id)| delete(node, name, id))
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

fn delete(node: &Node, name: Option<TopicName>, id: Uuid) -> DeletableTopicResult {
    let topic = match &name {
        Some(name) => node
            .cluster
            .topic(&name.0)
            .ok_or(ResponseError::UnknownTopicOrPartition),
        None => node
            .cluster
            .topic_by_id(id)
            .ok_or(ResponseError::UnknownTopicId),
    };
    let result = DeletableTopicResult::default()
        .with_name(name)
        .with_topic_id(id);
    let topic = match topic {
        Ok(topic) => topic,
        Err(error) => {
            return result
                .with_error_code(error.code())
                .with_error_message(Some(StrBytes::from_string(error.to_string())));
        }
    };
    let result = result
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id);
    match node.cluster.delete_topic(&topic.name) {
        Ok(()) => result,
        Err(refusal) => result
            .with_error_code(refusal.error.code())
            .with_error_message(Some(StrBytes::from_string(refusal.message))),
    }
}
