//! Classic group membership on the wire: JoinGroup (with the KIP-394 member id retry), the
//! leader's assignment, SyncGroup, Heartbeat and LeaveGroup, and the member's view of its
//! generation. The consumer (`mod.rs`) decides when to call these; this file knows how.
//!
//! JoinGroup and SyncGroup go over a connection of their own whose request timeout covers the
//! rebalance timeout: a JoinGroup is parked by the coordinator until every member rejoined,
//! which may take that long, and a shorter timeout would close the shared connection under the
//! fetches and heartbeats using it (Java gives these requests a longer timeout for the same
//! reason).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    SyncGroupRequest, join_group_request::JoinGroupRequestProtocol,
    leave_group_request::MemberIdentity, sync_group_request::SyncGroupRequestAssignment,
};
use kafka_protocol::protocol::{Request, StrBytes};

use super::assignor::{self, AssignorKind, MemberSubscription};
use super::protocol::{self, Assignment, Subscription};
use crate::client::{Broker, Client};
use crate::config::ClientConfig;
use crate::conn::Connection;
use crate::error::{Error, KafkaCode, Result};
use crate::types::TopicPartition;
use crate::versions;

const PROTOCOL_TYPE: &str = "consumer";
/// Java's JOIN_GROUP_TIMEOUT_LAPSE: how long past the rebalance timeout a JoinGroup may take.
const JOIN_TIMEOUT_LAPSE: Duration = Duration::from_secs(5);

/// A generation this member completed (JoinGroup and SyncGroup both answered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Generation {
    pub id: i32,
    pub member_id: String,
    pub protocol: AssignorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not in a generation, and no join under way.
    Unjoined,
    /// A JoinGroup/SyncGroup exchange is under way.
    Joining,
    /// In `generation`, with its assignment.
    Stable,
}

/// The member's side of the group protocol.
#[derive(Debug)]
pub(crate) struct Membership {
    /// Kept across generations; cleared when the coordinator no longer knows it.
    pub member_id: String,
    /// The last completed generation, while the coordinator may still accept it.
    pub generation: Option<Generation>,
    pub phase: Phase,
    /// The coordinator started a rebalance, or something we watch changed: join again.
    pub rejoin_needed: bool,
    /// The next join must first run the revocation step (commit, callbacks).
    pub needs_prepare: bool,
    /// No join starts before this (backoff after a failed one).
    pub next_join_at: Duration,
    pub failed_joins: u32,
    /// Partition counts, at the last assignment, of the topics whose change means a rebalance:
    /// the whole group's topics for the leader, our own for the others.
    pub watched: BTreeMap<String, usize>,
    /// The subscription the last successful join was made with.
    pub joined_topics: BTreeSet<String>,
}

impl Membership {
    pub fn new() -> Membership {
        Membership {
            member_id: String::new(),
            generation: None,
            phase: Phase::Unjoined,
            rejoin_needed: false,
            needs_prepare: true,
            next_join_at: Duration::ZERO,
            failed_joins: 0,
            watched: BTreeMap::new(),
            joined_topics: BTreeSet::new(),
        }
    }

    /// The coordinator no longer accepts our generation: its partitions are lost, and we join
    /// again. As Java, the member id survives ILLEGAL_GENERATION (the member is still known)
    /// but not UNKNOWN_MEMBER_ID or a proactive leave.
    pub fn reset_generation(&mut self, forget_member_id: bool) {
        self.generation = None;
        self.phase = Phase::Unjoined;
        self.needs_prepare = true;
        if forget_member_id {
            self.member_id.clear();
        }
    }

    /// The generation commits and heartbeats may use now.
    pub fn stable_generation(&self) -> Option<&Generation> {
        (self.phase == Phase::Stable)
            .then_some(self.generation.as_ref())
            .flatten()
    }
}

/// The connection JoinGroup and SyncGroup use, to the current coordinator.
pub(crate) struct GroupConnection {
    config: ClientConfig,
    open: tokio::sync::Mutex<Option<(i32, Arc<Connection>)>>,
}

impl GroupConnection {
    pub fn new(client: &Client, rebalance_timeout: Duration) -> GroupConnection {
        let mut config = client.config().clone();
        config.request_timeout = config
            .request_timeout
            .max(rebalance_timeout.saturating_add(JOIN_TIMEOUT_LAPSE));
        GroupConnection {
            config,
            open: tokio::sync::Mutex::new(None),
        }
    }

    async fn to(&self, client: &Client, node: i32) -> Result<Arc<Connection>> {
        let address = client
            .metadata()
            .brokers
            .get(&node)
            .map(Broker::address)
            .ok_or_else(|| Error::Invalid(format!("coordinator {node} is not in the metadata")))?;
        let mut open = self.open.lock().await;
        if let Some((known, connection)) = open.as_ref() {
            if *known == node && !connection.is_closed() && connection.addr() == address {
                return Ok(Arc::clone(connection));
            }
            connection.close("the coordinator moved");
        }
        let connection = Connection::open(client.env(), &self.config, &address).await?;
        *open = Some((node, Arc::clone(&connection)));
        Ok(connection)
    }

    async fn send<R: Request>(
        &self,
        client: &Client,
        node: i32,
        ours: (i16, i16),
        build: impl FnOnce(i16) -> R,
    ) -> Result<R::Response> {
        let connection = self.to(client, node).await?;
        let version = connection.version::<R>(ours)?;
        connection.send(version, &build(version)).await
    }

    pub fn close(&self) {
        if let Ok(mut open) = self.open.try_lock()
            && let Some((_, connection)) = open.take()
        {
            connection.close("consumer closed");
        }
    }
}

/// What a join needs, copied out of the consumer so the exchange can run as its own task.
pub(crate) struct JoinSpec {
    pub client: Client,
    pub connection: Arc<GroupConnection>,
    pub group_id: String,
    pub instance_id: Option<String>,
    pub member_id: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub assignors: Vec<AssignorKind>,
    pub topics: BTreeSet<String>,
    /// Partitions we own going in (empty under the eager protocol, which revoked them).
    pub owned: Vec<TopicPartition>,
    /// The generation we owned them in, -1 if none.
    pub generation: i32,
}

/// A completed join: the generation and our part of its assignment.
#[derive(Debug)]
pub(crate) struct JoinOutcome {
    pub generation: Generation,
    /// The subscription we joined with.
    pub topics: BTreeSet<String>,
    pub assignment: BTreeSet<TopicPartition>,
    pub watched: BTreeMap<String, usize>,
}

/// Why a join did not complete, and what the member must do about it.
#[derive(Debug)]
pub(crate) enum JoinFailure {
    /// Try again after a backoff, as the same member (coordinator moved, rebalance restarted,
    /// connection lost).
    Retry(Error),
    /// ILLEGAL_GENERATION: our generation is gone (partitions lost); keep the member id.
    ResetGeneration(Error),
    /// UNKNOWN_MEMBER_ID: the coordinator forgot us; join as a new member.
    ResetMember(Error),
    /// Report to the caller of poll, then retry after a backoff.
    Failed(Error),
    /// The consumer cannot continue (FENCED_INSTANCE_ID: another process has our instance id).
    Fatal(Error),
}

/// The end of a join task: the member id to keep (KIP-394 may have handed us one even if the
/// join then failed) and the outcome.
pub(crate) struct JoinReport {
    pub member_id: String,
    pub result: std::result::Result<JoinOutcome, JoinFailure>,
}

/// One JoinGroup/SyncGroup exchange, retrying JoinGroup once with the member id the
/// coordinator requires (KIP-394).
pub(crate) async fn join_and_sync(spec: JoinSpec) -> JoinReport {
    let mut member_id = spec.member_id.clone();
    let result = join_and_sync_as(&spec, &mut member_id).await;
    JoinReport { member_id, result }
}

async fn join_and_sync_as(
    spec: &JoinSpec,
    member_id: &mut String,
) -> std::result::Result<JoinOutcome, JoinFailure> {
    let node = spec
        .client
        .coordinator(&spec.group_id)
        .await
        .map_err(|error| retry_or_fail(spec, error))?;
    let protocols = join_protocols(spec);
    let mut joined = None;
    for _ in 0..2 {
        let response: JoinGroupResponse = spec
            .connection
            .send(&spec.client, node, versions::JOIN_GROUP, |version| {
                join_request(spec, member_id, &protocols, version)
            })
            .await
            .map_err(|error| retry_or_fail(spec, error))?;
        match KafkaCode::from_code(response.error_code) {
            None => {
                joined = Some(response);
                break;
            }
            Some(KafkaCode::MEMBER_ID_REQUIRED) => {
                *member_id = response.member_id.to_string();
            }
            Some(code) => return Err(classify(spec, code, "JoinGroup")),
        }
    }
    let Some(joined) = joined else {
        return Err(JoinFailure::Retry(Error::kafka(
            KafkaCode::MEMBER_ID_REQUIRED,
            "JoinGroup",
            Some("the coordinator asked for a member id twice".into()),
        )));
    };
    *member_id = joined.member_id.to_string();
    if let Some(protocol_type) = &joined.protocol_type
        && protocol_type.as_str() != PROTOCOL_TYPE
    {
        return Err(JoinFailure::Failed(inconsistent(format!(
            "the group's protocol type is {protocol_type}, not {PROTOCOL_TYPE}"
        ))));
    }
    let protocol_name = joined
        .protocol_name
        .as_ref()
        .map(|name| name.to_string())
        .unwrap_or_default();
    let Some(protocol) = AssignorKind::from_protocol_name(&protocol_name)
        .filter(|kind| spec.assignors.contains(kind))
    else {
        return Err(JoinFailure::Failed(inconsistent(format!(
            "the coordinator chose assignor {protocol_name:?}, which we did not offer"
        ))));
    };
    let is_leader = joined.leader.as_str() == member_id.as_str();
    // A static leader rejoining a stable group gets no member list before v9, and from v9 the
    // members with skip_assignment (KIP-814): the assignment stands, so it sends none, but it
    // still watches the members' subscriptions as a leader does.
    let (assignments, leader_watched) = if is_leader && !joined.members.is_empty() {
        let (assignments, watched) = lead(spec, protocol, &joined)
            .await
            .map_err(|error| retry_or_fail(spec, error))?;
        let assignments = if joined.skip_assignment {
            Vec::new()
        } else {
            assignments
        };
        (assignments, Some(watched))
    } else {
        (Vec::new(), None)
    };

    let synced = spec
        .connection
        .send(&spec.client, node, versions::SYNC_GROUP, |version| {
            let mut request = SyncGroupRequest::default()
                .with_group_id(GroupId(text(&spec.group_id)))
                .with_generation_id(joined.generation_id)
                .with_member_id(text(member_id))
                .with_assignments(
                    assignments
                        .iter()
                        .map(|(member, bytes)| {
                            SyncGroupRequestAssignment::default()
                                .with_member_id(text(member))
                                .with_assignment(bytes.clone())
                        })
                        .collect(),
                );
            if version >= 3 {
                request = request.with_group_instance_id(spec.instance_id.as_deref().map(text));
            }
            if version >= 5 {
                request = request
                    .with_protocol_type(Some(text(PROTOCOL_TYPE)))
                    .with_protocol_name(Some(text(protocol.protocol_name())));
            }
            request
        })
        .await
        .map_err(|error| retry_or_fail(spec, error))?;
    if let Some(code) = KafkaCode::from_code(synced.error_code) {
        return Err(classify(spec, code, "SyncGroup"));
    }
    let assignment = protocol::decode_assignment(&synced.assignment).ok_or_else(|| {
        JoinFailure::Failed(Error::Protocol {
            addr: format!("coordinator {node}"),
            reason: "SyncGroup answered an assignment that does not parse".into(),
        })
    })?;
    let watched = match leader_watched {
        Some(watched) => watched,
        None => {
            let topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
            // A follower compares against what the leader saw: fresh metadata, not our cache.
            if let Err(error) = spec.client.refresh_topics(&topics).await {
                tracing::debug!(%error, "metadata refresh after joining failed");
            }
            partition_counts(&spec.client, spec.topics.iter())
        }
    };
    Ok(JoinOutcome {
        generation: Generation {
            id: joined.generation_id,
            member_id: member_id.clone(),
            protocol,
        },
        topics: spec.topics.clone(),
        assignment: assignment.partitions.into_iter().collect(),
        watched,
    })
}

fn join_protocols(spec: &JoinSpec) -> Vec<(AssignorKind, Bytes)> {
    spec.assignors
        .iter()
        .map(|&kind| {
            let subscription = Subscription {
                topics: spec.topics.iter().cloned().collect(),
                // Java's cooperative-sticky assignor also writes the generation into its user
                // data, for members older than subscription v2; we do the same for them.
                user_data: (kind == AssignorKind::CooperativeSticky)
                    .then(|| Bytes::copy_from_slice(&spec.generation.to_be_bytes())),
                owned: spec.owned.clone(),
                generation: spec.generation,
                rack: None,
            };
            (kind, protocol::encode_subscription(&subscription))
        })
        .collect()
}

fn join_request(
    spec: &JoinSpec,
    member_id: &str,
    protocols: &[(AssignorKind, Bytes)],
    version: i16,
) -> JoinGroupRequest {
    let millis = |duration: Duration| i32::try_from(duration.as_millis()).unwrap_or(i32::MAX);
    let mut request = JoinGroupRequest::default()
        .with_group_id(GroupId(text(&spec.group_id)))
        .with_session_timeout_ms(millis(spec.session_timeout))
        .with_rebalance_timeout_ms(millis(spec.rebalance_timeout))
        .with_member_id(text(member_id))
        .with_protocol_type(text(PROTOCOL_TYPE))
        .with_protocols(
            protocols
                .iter()
                .map(|(kind, metadata)| {
                    JoinGroupRequestProtocol::default()
                        .with_name(text(kind.protocol_name()))
                        .with_metadata(metadata.clone())
                })
                .collect(),
        );
    if version >= 5 {
        request = request.with_group_instance_id(spec.instance_id.as_deref().map(text));
    }
    request
}

/// The leader's work: read every member's subscription, make sure we know every subscribed
/// topic's partitions, run the assignor. Returns each member's encoded assignment and the
/// partition counts we assigned from.
async fn lead(
    spec: &JoinSpec,
    protocol: AssignorKind,
    joined: &JoinGroupResponse,
) -> Result<(Vec<(String, Bytes)>, BTreeMap<String, usize>)> {
    let mut members = Vec::with_capacity(joined.members.len());
    let mut version = protocol::VERSION;
    for member in &joined.members {
        let (member_version, subscription) = protocol::decode_subscription(&member.metadata)
            .unwrap_or_else(|| {
                tracing::warn!(member = %member.member_id, "unreadable subscription; assigning it nothing");
                (protocol::VERSION, Subscription::default())
            });
        version = version.min(member_version);
        members.push(MemberSubscription {
            member_id: member.member_id.to_string(),
            instance_id: member.group_instance_id.as_ref().map(|id| id.to_string()),
            topics: subscription.topics.into_iter().collect(),
            owned: subscription.owned,
            generation: subscription.generation,
        });
    }
    let topics: BTreeSet<String> = members.iter().flat_map(|m| m.topics.clone()).collect();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    // Also registers the group's topics with the metadata refresher, so the leader notices
    // when one of them grows.
    spec.client.refresh_topics(&names).await?;
    let counts = partition_counts(&spec.client, topics.iter());
    let partitions: BTreeMap<String, i32> = counts
        .iter()
        .filter(|(_, count)| **count > 0)
        .map(|(topic, count)| (topic.clone(), i32::try_from(*count).unwrap_or(i32::MAX)))
        .collect();
    let assignment = assignor::assign(protocol, &members, &partitions);
    tracing::debug!(group = %spec.group_id, ?protocol, ?assignment, "assigned");
    let encoded = assignment
        .into_iter()
        .map(|(member, partitions)| {
            let bytes = protocol::encode_assignment(
                &Assignment {
                    partitions: partitions.into_iter().collect(),
                    user_data: None,
                },
                version,
            );
            (member, bytes)
        })
        .collect();
    Ok((encoded, counts))
}

/// Each topic's partition count in the metadata cache (0 for a topic that does not exist).
pub(crate) fn partition_counts<'a>(
    client: &Client,
    topics: impl Iterator<Item = &'a String>,
) -> BTreeMap<String, usize> {
    topics
        .map(|topic| {
            let count = client
                .cached_topic(topic)
                .map_or(0, |found| found.partitions.len());
            (topic.clone(), count)
        })
        .collect()
}

/// INCONSISTENT_GROUP_PROTOCOL: the group speaks a protocol or assignor we do not.
fn inconsistent(message: String) -> Error {
    Error::kafka(KafkaCode(23), "JoinGroup", Some(message))
}

/// A request that did not get an answer: the coordinator may have moved or died.
fn retry_or_fail(spec: &JoinSpec, error: Error) -> JoinFailure {
    if let Some(code) = error.code() {
        return classify(spec, code, "FindCoordinator");
    }
    if error.is_retriable() {
        spec.client.forget_coordinator(&spec.group_id);
        JoinFailure::Retry(error)
    } else {
        JoinFailure::Failed(error)
    }
}

fn classify(spec: &JoinSpec, code: KafkaCode, context: &str) -> JoinFailure {
    let error = Error::kafka(code, format!("{context} for group {}", spec.group_id), None);
    match code {
        KafkaCode::UNKNOWN_MEMBER_ID => JoinFailure::ResetMember(error),
        KafkaCode::ILLEGAL_GENERATION => JoinFailure::ResetGeneration(error),
        KafkaCode::FENCED_INSTANCE_ID => JoinFailure::Fatal(fenced(spec.instance_id.as_deref())),
        KafkaCode::REBALANCE_IN_PROGRESS => JoinFailure::Retry(error),
        code if code.is_coordinator_error() => {
            spec.client.forget_coordinator(&spec.group_id);
            JoinFailure::Retry(error)
        }
        code if code.is_retriable() => JoinFailure::Retry(error),
        _ => JoinFailure::Failed(error),
    }
}

pub(crate) fn fenced(instance_id: Option<&str>) -> Error {
    Error::Fatal(format!(
        "FENCED_INSTANCE_ID: another consumer joined with group.instance.id {:?}",
        instance_id.unwrap_or_default()
    ))
}

/// One heartbeat of `generation`; the coordinator's error code, if any.
pub(crate) async fn heartbeat(
    client: &Client,
    group_id: &str,
    instance_id: Option<&str>,
    generation: &Generation,
) -> Result<Option<KafkaCode>> {
    let node = client.coordinator(group_id).await?;
    let response = client
        .send(node, versions::HEARTBEAT, |version| {
            let request = HeartbeatRequest::default()
                .with_group_id(GroupId(text(group_id)))
                .with_generation_id(generation.id)
                .with_member_id(text(&generation.member_id));
            if version >= 3 {
                request.with_group_instance_id(instance_id.map(text))
            } else {
                request
            }
        })
        .await?;
    Ok(KafkaCode::from_code(response.error_code))
}

/// Tells the coordinator this member leaves, so the group rebalances now rather than after
/// the session timeout.
pub(crate) async fn leave(client: &Client, group_id: &str, member_id: &str) -> Result<()> {
    let node = client.coordinator(group_id).await?;
    let response = client
        .send(node, versions::LEAVE_GROUP, |version| {
            let request = LeaveGroupRequest::default().with_group_id(GroupId(text(group_id)));
            if version >= 3 {
                request.with_members(vec![
                    MemberIdentity::default()
                        .with_member_id(text(member_id))
                        .with_reason((version >= 5).then(|| text("the consumer is closing"))),
                ])
            } else {
                request.with_member_id(text(member_id))
            }
        })
        .await?;
    let member_error = response
        .members
        .iter()
        .find_map(|member| KafkaCode::from_code(member.error_code));
    match KafkaCode::from_code(response.error_code).or(member_error) {
        None => Ok(()),
        Some(code) => Err(Error::kafka(
            code,
            format!("LeaveGroup for {group_id}"),
            None,
        )),
    }
}

pub(crate) fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}
