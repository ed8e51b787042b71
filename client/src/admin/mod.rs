//! The admin client: topics, partitions, configs, consumer groups, offsets and DeleteRecords,
//! over the same [`Client`] the producer and consumer use.
//!
//! Every operation retries what Kafka marks as worth another try — a moved controller or
//! coordinator, a stale leader, a lost connection — after refreshing what it points at, with
//! the client's backoff, until the request timeout. Everything else the broker answers is
//! returned at once as [`Error::Kafka`] with the broker's own message, so a caller sees why.
//! Operations on several independent items (topics, groups) return one outcome per item, as
//! Kafka's admin does: one refused topic does not hide that the others were created.

mod configs;
mod groups;
mod offsets;
mod reset;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

pub use configs::{AlterOp, ConfigEntry, ConfigResource, ConfigSource};
pub use groups::{GroupDescription, GroupListing, MemberDescription};
pub use offsets::{ListedOffset, OffsetSpec};
pub use reset::ResetTo;

use crate::client::Client;
use crate::error::{Error, KafkaCode, Result};
use crate::versions;

/// `NOT_CONTROLLER`: a KRaft broker forwarding to a controller that just lost leadership.
const NOT_CONTROLLER: KafkaCode = KafkaCode(41);
/// `THROTTLING_QUOTA_EXCEEDED`: the controller's mutation quota; nothing was changed.
const THROTTLING_QUOTA_EXCEEDED: KafkaCode = KafkaCode(89);

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    /// -1: the broker's default (`num.partitions`).
    pub partitions: i32,
    /// -1: the broker's default (`default.replication.factor`).
    pub replication_factor: i16,
    /// Topic config overrides, such as `cleanup.policy` or `retention.ms`.
    pub configs: BTreeMap<String, String>,
}

impl NewTopic {
    pub fn new(name: impl Into<String>, partitions: i32, replication_factor: i16) -> NewTopic {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor,
            configs: BTreeMap::new(),
        }
    }

    pub fn config(mut self, name: impl Into<String>, value: impl Into<String>) -> NewTopic {
        self.configs.insert(name.into(), value.into());
        self
    }
}

/// Administers a cluster through a [`Client`]. Cheap to clone; clones share connections.
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy)]
enum Route<'a> {
    /// The controller as metadata names it. KRaft brokers forward to the real one, so any
    /// broker would do; asking the named one saves a hop on older clusters.
    Controller,
    /// Any broker (requests every broker can answer, such as DescribeConfigs of a topic).
    Any,
    /// One broker: ListGroups (each answers for its own groups), broker configs, leaders.
    Node(i32),
    /// The coordinator of a consumer group.
    Coordinator(&'a str),
}

impl Admin {
    pub fn new(client: Client) -> Admin {
        Admin { client }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates topics and answers one outcome per topic (`TOPIC_ALREADY_EXISTS`,
    /// `INVALID_CONFIG`, ... with the broker's message). With `validate_only` the broker checks
    /// the request and creates nothing. Returns without waiting for leaders; see
    /// [`Admin::create_topic`].
    pub async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Result<BTreeMap<String, Result<()>>> {
        let wanted: BTreeMap<String, NewTopic> = topics
            .into_iter()
            .map(|topic| (topic.name.clone(), topic))
            .collect();
        self.per_item(Route::Controller, wanted, |node, pending| {
            self.create_topics_once(node, pending, validate_only)
        })
        .await
    }

    async fn create_topics_once(
        &self,
        node: i32,
        pending: BTreeMap<String, NewTopic>,
        validate_only: bool,
    ) -> Result<BTreeMap<String, Result<()>>> {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(self.timeout_ms())
            .with_validate_only(validate_only)
            .with_topics(
                pending
                    .values()
                    .map(|topic| {
                        CreatableTopic::default()
                            .with_name(topic_name(&topic.name))
                            .with_num_partitions(topic.partitions)
                            .with_replication_factor(topic.replication_factor)
                            .with_configs(
                                topic
                                    .configs
                                    .iter()
                                    .map(|(name, value)| {
                                        CreatableTopicConfig::default()
                                            .with_name(StrBytes::from_string(name.clone()))
                                            .with_value(Some(StrBytes::from_string(value.clone())))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let response = self
            .client
            .send(node, versions::CREATE_TOPICS, |_| request.clone())
            .await?;
        Ok(response
            .topics
            .into_iter()
            .map(|answer| {
                let name = answer.name.0.to_string();
                let outcome = check(
                    answer.error_code,
                    || format!("CreateTopics for {name}"),
                    answer.error_message,
                );
                (name, outcome)
            })
            .collect())
    }

    /// Creates one topic and waits until metadata shows a leader for each of its partitions,
    /// so the topic can be used at once (bounded by the request timeout).
    pub async fn create_topic(&self, topic: NewTopic) -> Result<()> {
        let name = topic.name.clone();
        let partitions = topic.partitions;
        let mut outcomes = self.create_topics(vec![topic], false).await?;
        outcomes
            .remove(&name)
            .unwrap_or_else(|| Err(no_answer(&name)))?;
        self.wait_for_leaders(&name, partitions).await
    }

    /// Deletes topics; one outcome per topic (`UNKNOWN_TOPIC_OR_PARTITION` for a topic that
    /// does not exist). Kafka deletes asynchronously: brokers may list the topic for a moment.
    pub async fn delete_topics(&self, names: &[&str]) -> Result<BTreeMap<String, Result<()>>> {
        let wanted: BTreeMap<String, ()> =
            names.iter().map(|name| (name.to_string(), ())).collect();
        self.per_item(Route::Controller, wanted, |node, pending| {
            self.delete_topics_once(node, pending)
        })
        .await
    }

    async fn delete_topics_once(
        &self,
        node: i32,
        pending: BTreeMap<String, ()>,
    ) -> Result<BTreeMap<String, Result<()>>> {
        let request = DeleteTopicsRequest::default()
            .with_timeout_ms(self.timeout_ms())
            .with_topic_names(pending.keys().map(|name| topic_name(name)).collect());
        let response = self
            .client
            .send(node, versions::DELETE_TOPICS, |_| request.clone())
            .await?;
        Ok(response
            .responses
            .into_iter()
            .filter_map(|answer| {
                let name = answer.name?.0.to_string();
                let outcome = check(
                    answer.error_code,
                    || format!("DeleteTopics for {name}"),
                    answer.error_message,
                );
                Some((name, outcome))
            })
            .collect())
    }

    /// Grows a topic to `total` partitions and waits until each has a leader. Kafka refuses
    /// to shrink a topic (`INVALID_PARTITIONS`).
    pub async fn create_partitions(&self, topic: &str, total: i32) -> Result<()> {
        let request = CreatePartitionsRequest::default()
            .with_timeout_ms(self.timeout_ms())
            .with_topics(vec![
                CreatePartitionsTopic::default()
                    .with_name(topic_name(topic))
                    .with_count(total)
                    // Null lets the controller place the new partitions; Kafka reads an empty
                    // list as "zero placements given" and refuses the request.
                    .with_assignments(None),
            ]);
        self.call(Route::Controller, |node| {
            let request = request.clone();
            async move {
                let response = self
                    .client
                    .send(node, versions::CREATE_PARTITIONS, |_| request)
                    .await?;
                let answer = response
                    .results
                    .into_iter()
                    .find(|answer| answer.name.0.as_str() == topic)
                    .ok_or_else(|| no_answer(topic))?;
                check(
                    answer.error_code,
                    || format!("CreatePartitions for {topic}"),
                    answer.error_message,
                )
            }
        })
        .await?;
        self.wait_for_leaders(topic, total).await
    }

    /// Polls metadata until `topic` has at least `partitions` partitions (at least one when
    /// -1) and each has a leader: Kafka answers CreateTopics before every broker knows.
    async fn wait_for_leaders(&self, topic: &str, partitions: i32) -> Result<()> {
        let timeout = self.client.config().request_timeout;
        let deadline = self.client.now() + timeout;
        let wanted = usize::try_from(partitions).unwrap_or(0).max(1);
        let mut attempt = 0;
        loop {
            match self.client.refresh_topics(&[topic]).await {
                Ok(()) => {
                    let ready = self.client.cached_topic(topic).is_some_and(|known| {
                        known.partitions.len() >= wanted
                            && known.partitions.iter().all(|p| p.leader >= 0)
                    });
                    if ready {
                        return Ok(());
                    }
                }
                Err(error) if !worth_retrying(&error) => return Err(error),
                Err(error) => tracing::debug!(topic, %error, "metadata not available yet"),
            }
            if self.client.now() >= deadline {
                return Err(Error::Timeout {
                    context: format!("waiting for a leader of every partition of {topic}"),
                    after: timeout,
                });
            }
            self.client.sleep(self.client.backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// Runs `op` against the node `route` names until it succeeds, fails with an error not
    /// worth retrying, or the request timeout passes (then the last error is returned).
    async fn call<T, F, Fut>(&self, route: Route<'_>, op: F) -> Result<T>
    where
        F: Fn(i32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let deadline = self.client.now() + self.client.config().request_timeout;
        let mut attempt = 0;
        loop {
            let outcome = match self.node(route, attempt).await {
                Ok(node) => op(node).await,
                Err(error) => Err(error),
            };
            match outcome {
                Err(error) if worth_retrying(&error) && self.client.now() < deadline => {
                    tracing::debug!(?route, %error, attempt, "admin request retried");
                    self.recover(route, &error).await;
                    self.client.sleep(self.client.backoff(attempt)).await;
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    /// Like [`Admin::call`] for requests about several items with an outcome each: items
    /// whose outcome is worth retrying (the controller moved, a quota) are sent again, alone.
    async fn per_item<V: Clone, F, Fut>(
        &self,
        route: Route<'_>,
        mut pending: BTreeMap<String, V>,
        op: F,
    ) -> Result<BTreeMap<String, Result<()>>>
    where
        F: Fn(i32, BTreeMap<String, V>) -> Fut,
        Fut: Future<Output = Result<BTreeMap<String, Result<()>>>>,
    {
        let deadline = self.client.now() + self.client.config().request_timeout;
        let mut outcomes = BTreeMap::new();
        let mut attempt = 0;
        while !pending.is_empty() {
            let mut answers = self.call(route, |node| op(node, pending.clone())).await?;
            let mut retry_error = None;
            pending.retain(|name, _| {
                let outcome = answers.remove(name).unwrap_or_else(|| Err(no_answer(name)));
                match outcome {
                    Err(error) if worth_retrying(&error) && self.client.now() < deadline => {
                        retry_error = Some(error);
                        true
                    }
                    outcome => {
                        outcomes.insert(name.clone(), outcome);
                        false
                    }
                }
            });
            if let Some(error) = retry_error {
                tracing::debug!(%error, attempt, "admin request retried for some items");
                self.recover(route, &error).await;
                self.client.sleep(self.client.backoff(attempt)).await;
                attempt += 1;
            }
        }
        Ok(outcomes)
    }

    async fn node(&self, route: Route<'_>, attempt: u32) -> Result<i32> {
        match route {
            Route::Node(node) => Ok(node),
            Route::Coordinator(group) => self.client.coordinator(group).await,
            Route::Controller => match self.client.controller() {
                Some(node) => Ok(node),
                None => self.any_node(attempt),
            },
            Route::Any => self.any_node(attempt),
        }
    }

    /// A broker from metadata, a different one on each attempt so one that is down does not
    /// fail every retry.
    fn any_node(&self, attempt: u32) -> Result<i32> {
        let brokers: Vec<i32> = self.client.metadata().brokers.keys().copied().collect();
        if brokers.is_empty() {
            return Err(Error::Invalid("metadata names no broker".into()));
        }
        Ok(brokers[attempt as usize % brokers.len()])
    }

    /// Forgets what the error says is stale before the next attempt.
    async fn recover(&self, route: Route<'_>, error: &Error) {
        let lost_connection = matches!(
            error,
            Error::Connect { .. } | Error::Disconnected { .. } | Error::Timeout { .. }
        );
        let code = error.code().unwrap_or(KafkaCode::NONE);
        if let Route::Coordinator(group) = route
            && (lost_connection || code.is_coordinator_error())
        {
            self.client.forget_coordinator(group);
        }
        if (lost_connection || code == NOT_CONTROLLER || code.invalidates_metadata())
            && let Err(error) = self.client.refresh_metadata().await
        {
            tracing::debug!(%error, "metadata refresh before a retry failed");
        }
    }

    fn timeout_ms(&self) -> i32 {
        duration_ms(self.client.config().request_timeout)
    }
}

/// Errors after which the same request may succeed once the client has refreshed what it
/// points at. Kafka marks more codes retriable (UNKNOWN_TOPIC_OR_PARTITION, REQUEST_TIMED_OUT),
/// but for admin requests they are answers: the topic does not exist, the controller did not
/// finish in time (and may still), so they are returned, as Java's admin returns them.
fn worth_retrying(error: &Error) -> bool {
    match error {
        Error::Connect { .. } | Error::Disconnected { .. } | Error::Timeout { .. } => true,
        Error::Kafka { code, .. } => {
            *code == NOT_CONTROLLER
                || *code == THROTTLING_QUOTA_EXCEEDED
                || code.is_coordinator_error()
                || (code.invalidates_metadata() && *code != KafkaCode::UNKNOWN_TOPIC_OR_PARTITION)
        }
        _ => false,
    }
}

/// An error code as a result, with the broker's message.
fn check(
    error_code: i16,
    context: impl FnOnce() -> String,
    message: Option<StrBytes>,
) -> Result<()> {
    match KafkaCode::from_code(error_code) {
        None => Ok(()),
        Some(code) => Err(Error::kafka(
            code,
            context(),
            message.map(|message| message.to_string()),
        )),
    }
}

fn no_answer(item: &str) -> Error {
    Error::Protocol {
        addr: "broker".into(),
        reason: format!("the answer says nothing of {item}"),
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn duration_ms(duration: Duration) -> i32 {
    i32::try_from(duration.as_millis()).unwrap_or(i32::MAX)
}
