//! One classic consumer group as a pure state machine: no I/O, no clock, no randomness. Time
//! comes in as `now` (the Clock seam's monotonic reading), new member ids come in from the
//! caller, and every operation returns what to answer now and which parked requests (joins
//! waiting for a rebalance, syncs waiting for the leader) complete as a result.
//!
//! States, as in Kafka: Empty → PreparingRebalance (members rejoin) → CompletingRebalance
//! (members wait for the leader's assignment) → Stable; Dead once deleted.
//!
//! **Invariants:** the generation only grows; a member's assignment always belongs to the
//! current generation; in Stable every member has an assignment from the leader's SyncGroup of
//! this generation; a static instance id maps to at most one member.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka uses in ListGroups and DescribeGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Why a group refused a request; each is a Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupError {
    InconsistentGroupProtocol,
    UnknownMemberId,
    IllegalGeneration,
    RebalanceInProgress,
    /// KIP-394: a new member must rejoin with this id.
    MemberIdRequired(String),
    FencedInstanceId,
    CoordinatorNotAvailable,
    GroupMaxSizeReached,
}

impl GroupError {
    pub fn code(&self) -> ResponseError {
        match self {
            GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
            GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
            GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
            GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
            GroupError::MemberIdRequired(_) => ResponseError::MemberIdRequired,
            GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
            GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
            GroupError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        }
    }
}

/// One protocol (assignor) a member supports, with its subscription metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Empty for a member joining for the first time.
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    /// JoinGroup v4+: a new dynamic member first gets MEMBER_ID_REQUIRED with its id.
    pub require_known_member_id: bool,
    /// JoinGroup v9+ (KIP-814): a static leader that restarts may be told the members with
    /// `skip_assignment`, so it watches their subscriptions without reassigning.
    pub supports_skip_assignment: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinAnswer {
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Every member's subscription, for the leader only.
    pub members: Vec<JoinedMember>,
    /// The leader must not compute an assignment (a restarted static leader, KIP-814).
    pub skip_assignment: bool,
}

pub type JoinResult = Result<JoinAnswer, GroupError>;

#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment per member; empty from followers.
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncAnswer {
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

pub type SyncResult = Result<SyncAnswer, GroupError>;

/// What to do with a request right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<T> {
    Now(T),
    /// Wait: a later [`Completions`] entry for this member answers it.
    Parked {
        member_id: String,
    },
}

/// Parked requests answered by an operation, by member id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Completions {
    pub joins: Vec<(String, JoinResult)>,
    pub syncs: Vec<(String, SyncResult)>,
}

impl Completions {
    pub fn is_empty(&self) -> bool {
        self.joins.is_empty() && self.syncs.is_empty()
    }
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSummary {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Subscription metadata for the group's protocol (empty unless Stable, as in Kafka).
    pub metadata: Bytes,
    /// Assignment (empty unless Stable, as in Kafka).
    pub assignment: Bytes,
}

#[derive(Debug, Clone)]
struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<Protocol>,
    assignment: Bytes,
    /// A JoinGroup of this member is parked until the rebalance completes.
    awaiting_join: bool,
    /// A SyncGroup of this member is parked until the leader's arrives.
    awaiting_sync: bool,
    /// The member is gone unless it heartbeats (or joins or syncs) before this.
    session_deadline: Duration,
    /// After a join completes, the member must send SyncGroup before this.
    sync_deadline: Option<Duration>,
    join_order: u64,
}

impl Member {
    fn kept_alive(&self) -> bool {
        self.awaiting_join || self.awaiting_sync
    }

    fn metadata_for(&self, protocol: Option<&str>) -> Bytes {
        protocol
            .and_then(|name| self.protocols.iter().find(|p| p.name == name))
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }
}

/// Bounds a group enforces (from the broker's Config).
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    pub members_max: usize,
    /// Kafka's group.initial.rebalance.delay.ms: the first rebalance of an empty group waits
    /// this long for more members.
    pub initial_rebalance_delay: Duration,
    /// How long an emptied group without offsets is kept (the coordinator forgets it then).
    pub empty_retention: Duration,
}

#[derive(Debug, Clone)]
pub struct Group {
    id: String,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// KIP-394: ids handed out with MEMBER_ID_REQUIRED, until they join or expire.
    pending_members: BTreeMap<String, Duration>,
    /// Static membership: instance id → current member id.
    static_members: BTreeMap<String, String>,
    /// The current PreparingRebalance stops waiting for rejoins at this time.
    rebalance_deadline: Option<Duration>,
    /// An empty group's first rebalance does not complete before this.
    initial_delay_until: Option<Duration>,
    join_sequence: u64,
    limits: GroupLimits,
}

impl Group {
    pub fn new(id: &str, limits: GroupLimits) -> Group {
        Group::with_generation(id, 0, None, limits)
    }

    /// A group restored from storage: empty, at the generation it had.
    pub fn with_generation(
        id: &str,
        generation: i32,
        protocol_type: Option<String>,
        limits: GroupLimits,
    ) -> Group {
        Group {
            id: id.to_owned(),
            state: GroupState::Empty,
            generation,
            protocol_type,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            join_sequence: 0,
            limits,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    pub fn member_ids(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }

    pub fn has_members(&self) -> bool {
        !self.members.is_empty()
    }

    /// Ids handed out with MEMBER_ID_REQUIRED whose join has not come yet.
    pub fn has_pending_members(&self) -> bool {
        !self.pending_members.is_empty()
    }

    /// The assignment a member holds now (empty if none or unknown).
    pub fn assignment_of(&self, member_id: &str) -> Option<Bytes> {
        self.members
            .get(member_id)
            .map(|member| member.assignment.clone())
    }

    /// Every member's subscription for the group's protocol, for OffsetDelete's check.
    pub fn subscriptions(&self) -> Vec<Bytes> {
        let protocol = self.protocol_name.as_deref();
        self.members
            .values()
            .map(|member| member.metadata_for(protocol))
            .collect()
    }

    pub fn summaries(&self) -> Vec<MemberSummary> {
        let stable = self.state == GroupState::Stable;
        let protocol = self.protocol_name.as_deref();
        self.members
            .values()
            .map(|member| MemberSummary {
                member_id: member.id.clone(),
                instance_id: member.instance_id.clone(),
                client_id: member.client_id.clone(),
                client_host: member.client_host.clone(),
                metadata: if stable {
                    member.metadata_for(protocol)
                } else {
                    Bytes::new()
                },
                assignment: member.assignment.clone(),
            })
            .collect()
    }

    /// Marks the group deleted: every parked request fails and no request succeeds again.
    pub fn kill(&mut self) -> Completions {
        let mut completions = Completions::default();
        for member in self.members.values() {
            if member.awaiting_join {
                completions
                    .joins
                    .push((member.id.clone(), Err(GroupError::CoordinatorNotAvailable)));
            }
            if member.awaiting_sync {
                completions
                    .syncs
                    .push((member.id.clone(), Err(GroupError::CoordinatorNotAvailable)));
            }
        }
        self.members.clear();
        self.pending_members.clear();
        self.static_members.clear();
        self.leader = None;
        self.rebalance_deadline = None;
        self.initial_delay_until = None;
        self.state = GroupState::Dead;
        completions
    }

    // ---- JoinGroup -------------------------------------------------------------------------

    /// `fresh_suffix` is unique per call (the coordinator draws it from the Entropy seam); a new
    /// member's id is `<client id or instance id>-<fresh_suffix>`, as in Kafka.
    pub fn join(
        &mut self,
        now: Duration,
        request: JoinRequest,
        fresh_suffix: &str,
    ) -> (Reply<JoinResult>, Completions) {
        let mut completions = Completions::default();
        if self.state == GroupState::Dead {
            return (
                Reply::Now(Err(GroupError::CoordinatorNotAvailable)),
                completions,
            );
        }
        if !self.supports(&request) {
            return (
                Reply::Now(Err(GroupError::InconsistentGroupProtocol)),
                completions,
            );
        }
        let reply = if request.member_id.is_empty() {
            self.join_new_member(now, request, fresh_suffix, &mut completions)
        } else {
            self.join_known_member(now, request, &mut completions)
        };
        (reply, completions)
    }

    fn supports(&self, request: &JoinRequest) -> bool {
        if request.protocol_type.is_empty() || request.protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(request.protocol_type.as_str())
            && self
                .candidate_protocols()
                .iter()
                .any(|name| request.protocols.iter().any(|p| &p.name == name))
    }

    /// Protocols every member supports, in the first member's order of preference.
    fn candidate_protocols(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return Vec::new();
        };
        let others: Vec<&Member> = members.collect();
        first
            .protocols
            .iter()
            .map(|p| p.name.clone())
            .filter(|name| {
                others
                    .iter()
                    .all(|m| m.protocols.iter().any(|p| &p.name == name))
            })
            .collect()
    }

    fn join_new_member(
        &mut self,
        now: Duration,
        request: JoinRequest,
        fresh_suffix: &str,
        completions: &mut Completions,
    ) -> Reply<JoinResult> {
        let prefix = request.instance_id.as_deref().unwrap_or(&request.client_id);
        let member_id = format!("{prefix}-{fresh_suffix}");
        if let Some(instance) = request.instance_id.clone() {
            if let Some(old_id) = self.static_members.get(&instance).cloned() {
                return self.rejoin_static_member(now, old_id, member_id, request, completions);
            }
            // Handed-out member ids hold their places too (they will join).
            if self.members.len() + self.pending_members.len() >= self.limits.members_max {
                return Reply::Now(Err(GroupError::GroupMaxSizeReached));
            }
            self.static_members.insert(instance, member_id.clone());
            return self.add_member_and_rebalance(now, member_id, request, completions);
        }
        if self.members.len() + self.pending_members.len() >= self.limits.members_max {
            return Reply::Now(Err(GroupError::GroupMaxSizeReached));
        }
        if request.require_known_member_id {
            self.pending_members
                .insert(member_id.clone(), now + request.session_timeout);
            return Reply::Now(Err(GroupError::MemberIdRequired(member_id)));
        }
        self.add_member_and_rebalance(now, member_id, request, completions)
    }

    fn join_known_member(
        &mut self,
        now: Duration,
        request: JoinRequest,
        completions: &mut Completions,
    ) -> Reply<JoinResult> {
        let member_id = request.member_id.clone();
        if self.pending_members.contains_key(&member_id) {
            return self.add_member_and_rebalance(now, member_id, request, completions);
        }
        if let Err(error) = self.check_member(&member_id, request.instance_id.as_deref()) {
            return Reply::Now(Err(error));
        }
        let unchanged = self.members[&member_id].protocols == request.protocols;
        match self.state {
            GroupState::Empty | GroupState::Dead => Reply::Now(Err(GroupError::UnknownMemberId)),
            GroupState::PreparingRebalance => {
                let reply = self.update_and_await_join(now, request);
                self.try_complete_join(now, completions);
                reply
            }
            GroupState::CompletingRebalance if unchanged => {
                // A retried join of this generation: answer it again, as the first time.
                self.touch(now, &member_id);
                let answer = self.answer_for(&member_id);
                Reply::Now(Ok(answer))
            }
            GroupState::Stable
                if unchanged && self.leader.as_deref() != Some(member_id.as_str()) =>
            {
                self.touch(now, &member_id);
                let mut answer = self.answer_for(&member_id);
                answer.members.clear();
                Reply::Now(Ok(answer))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                let reply = self.update_and_await_join(now, request);
                self.prepare_rebalance(now, completions);
                self.try_complete_join(now, completions);
                reply
            }
        }
    }

    /// A static member restarted (it joins with its instance id and no member id): it takes
    /// over the old member's place under a new id. In Stable with the same protocols nothing
    /// rebalances, so the other members keep their assignments (KIP-345).
    fn rejoin_static_member(
        &mut self,
        now: Duration,
        old_id: String,
        new_id: String,
        request: JoinRequest,
        completions: &mut Completions,
    ) -> Reply<JoinResult> {
        let Some(mut member) = self.members.remove(&old_id) else {
            // The mapping outlived its member (cannot happen; repair rather than fail).
            self.static_members
                .remove(request.instance_id.as_deref().unwrap_or_default());
            return self.add_member_and_rebalance(now, new_id, request, completions);
        };
        if member.awaiting_join {
            completions
                .joins
                .push((old_id.clone(), Err(GroupError::FencedInstanceId)));
        }
        if member.awaiting_sync {
            completions
                .syncs
                .push((old_id.clone(), Err(GroupError::FencedInstanceId)));
        }
        // Kafka keeps the group Stable when the protocol it would select is unchanged. A
        // restarted client's metadata always differs (it carries its generation and owned
        // partitions), so compare the protocols it names, in its order of preference: the same
        // list cannot change the vote. (Kafka also skips the rebalance for some changed lists
        // that happen to elect the same protocol; we rebalance then, which is always safe.)
        let unchanged = member
            .protocols
            .iter()
            .map(|p| &p.name)
            .eq(request.protocols.iter().map(|p| &p.name));
        if unchanged {
            member.protocols = request.protocols.clone();
        }
        let previous_leader = self.leader.clone().unwrap_or_default();
        member.id = new_id.clone();
        member.awaiting_join = false;
        member.awaiting_sync = false;
        self.members.insert(new_id.clone(), member);
        if let Some(instance) = &request.instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        if self.leader.as_deref() == Some(old_id.as_str()) {
            self.leader = Some(new_id.clone());
        }
        if self.state == GroupState::Stable && unchanged {
            self.apply_timeouts(now, &new_id, &request);
            let mut answer = self.answer_for(&new_id);
            if request.supports_skip_assignment {
                // A restarted leader learns the members but keeps the current assignment.
                answer.skip_assignment = answer.leader == new_id;
            } else {
                // Older clients would reassign if told they lead: name the leader as it was.
                answer.members.clear();
                answer.leader = previous_leader;
            }
            return Reply::Now(Ok(answer));
        }
        // Decided from the state before the rejoin: recording it may let a rebalance complete,
        // and a rebalance that just completed must not be restarted by the same rejoin.
        let must_rebalance = self.state != GroupState::PreparingRebalance;
        let waiting_request = JoinRequest {
            member_id: new_id,
            ..request
        };
        let reply = self.update_and_await_join(now, waiting_request);
        if must_rebalance {
            self.maybe_prepare_rebalance(now, completions);
        }
        self.try_complete_join(now, completions);
        reply
    }

    fn add_member_and_rebalance(
        &mut self,
        now: Duration,
        member_id: String,
        request: JoinRequest,
        completions: &mut Completions,
    ) -> Reply<JoinResult> {
        self.pending_members.remove(&member_id);
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        self.join_sequence += 1;
        let member = Member {
            id: member_id.clone(),
            instance_id: request.instance_id.clone(),
            client_id: request.client_id.clone(),
            client_host: request.client_host.clone(),
            session_timeout: request.session_timeout,
            rebalance_timeout: request.rebalance_timeout,
            protocols: request.protocols.clone(),
            assignment: Bytes::new(),
            awaiting_join: true,
            awaiting_sync: false,
            session_deadline: now + request.session_timeout,
            sync_deadline: None,
            join_order: self.join_sequence,
        };
        self.members.insert(member_id.clone(), member);
        if self.leader.is_none() {
            self.leader = Some(member_id.clone());
        }
        self.maybe_prepare_rebalance(now, completions);
        self.try_complete_join(now, completions);
        Reply::Parked { member_id }
    }

    /// Records a member's rejoin; the caller decides whether that starts or completes a
    /// rebalance.
    fn update_and_await_join(&mut self, now: Duration, request: JoinRequest) -> Reply<JoinResult> {
        let member_id = request.member_id.clone();
        self.apply_timeouts(now, &member_id, &request);
        let member = self
            .members
            .get_mut(&member_id)
            .expect("checked by the caller");
        member.protocols = request.protocols;
        member.client_id = request.client_id;
        member.client_host = request.client_host;
        member.awaiting_join = true;
        member.sync_deadline = None;
        Reply::Parked { member_id }
    }

    fn apply_timeouts(&mut self, now: Duration, member_id: &str, request: &JoinRequest) {
        if let Some(member) = self.members.get_mut(member_id) {
            member.session_timeout = request.session_timeout;
            member.rebalance_timeout = request.rebalance_timeout;
            member.session_deadline = now + request.session_timeout;
        }
    }

    fn touch(&mut self, now: Duration, member_id: &str) {
        if let Some(member) = self.members.get_mut(member_id) {
            member.session_deadline = now + member.session_timeout;
        }
    }

    /// The join answer of the current generation for `member_id` (members for the leader).
    fn answer_for(&self, member_id: &str) -> JoinAnswer {
        let is_leader = self.leader.as_deref() == Some(member_id);
        let protocol = self.protocol_name.as_deref();
        let members = if is_leader {
            self.members
                .values()
                .map(|member| JoinedMember {
                    member_id: member.id.clone(),
                    instance_id: member.instance_id.clone(),
                    metadata: member.metadata_for(protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinAnswer {
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_owned(),
            members,
            skip_assignment: false,
        }
    }

    fn maybe_prepare_rebalance(&mut self, now: Duration, completions: &mut Completions) {
        if matches!(
            self.state,
            GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance
        ) {
            self.prepare_rebalance(now, completions);
        }
    }

    /// Starts a rebalance now, as a new member or a changed subscription would: members learn
    /// it from their next heartbeat (REBALANCE_IN_PROGRESS) and rejoin. Refused for a group
    /// without members or already rebalancing (there is nothing to force).
    pub fn force_rebalance(&mut self, now: Duration) -> Result<Completions, GroupState> {
        if !self.has_members() || self.state == GroupState::PreparingRebalance {
            return Err(self.state);
        }
        let mut completions = Completions::default();
        self.prepare_rebalance(now, &mut completions);
        Ok(completions)
    }

    fn prepare_rebalance(&mut self, now: Duration, completions: &mut Completions) {
        if self.state == GroupState::CompletingRebalance {
            // The leader's assignment for this generation will never come: fail the waiting
            // syncs so their members rejoin.
            for member in self.members.values_mut() {
                if member.awaiting_sync {
                    member.awaiting_sync = false;
                    // Its session was on hold while it waited; it starts again now.
                    member.session_deadline = now + member.session_timeout;
                    completions
                        .syncs
                        .push((member.id.clone(), Err(GroupError::RebalanceInProgress)));
                }
            }
        }
        // A rebalance from Stable keeps each member's last assignment (DescribeGroups still
        // shows it, as Kafka's does); one that interrupts CompletingRebalance drops them, since
        // that generation's assignment never came.
        let interrupted = self.state == GroupState::CompletingRebalance;
        for member in self.members.values_mut() {
            if interrupted {
                member.assignment = Bytes::new();
            }
            member.sync_deadline = None;
        }
        let rebalance_timeout = self
            .members
            .values()
            .map(|member| member.rebalance_timeout)
            .max()
            .unwrap_or_default();
        if self.state == GroupState::Empty {
            self.initial_delay_until =
                Some(now + self.limits.initial_rebalance_delay.min(rebalance_timeout));
        }
        self.rebalance_deadline = Some(now + rebalance_timeout);
        self.state = GroupState::PreparingRebalance;
    }

    fn try_complete_join(&mut self, now: Duration, completions: &mut Completions) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        match self.initial_delay_until {
            Some(until) if now < until => return,
            Some(_) => self.initial_delay_until = None,
            None => {}
        }
        let all_joined = self.members.values().all(|member| member.awaiting_join)
            && self.pending_members.is_empty();
        let timed_out = self
            .rebalance_deadline
            .is_some_and(|deadline| now >= deadline);
        if all_joined || timed_out {
            self.complete_join(now, completions);
        }
    }

    fn complete_join(&mut self, now: Duration, completions: &mut Completions) {
        let missing: Vec<String> = self
            .members
            .values()
            .filter(|member| !member.awaiting_join)
            .map(|member| member.id.clone())
            .collect();
        for member_id in missing {
            self.forget_member(&member_id, completions);
        }
        self.initial_delay_until = None;
        self.rebalance_deadline = None;
        let leader_rejoined = self
            .leader
            .as_ref()
            .is_some_and(|leader| self.members.contains_key(leader));
        if !leader_rejoined {
            self.leader = self
                .members
                .values()
                .min_by_key(|member| member.join_order)
                .map(|member| member.id.clone());
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.state = GroupState::Empty;
            return;
        }
        self.protocol_name = self.select_protocol();
        self.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in ids {
            let answer = self.answer_for(&member_id);
            let member = self.members.get_mut(&member_id).expect("listed above");
            member.awaiting_join = false;
            member.session_deadline = now + member.session_timeout;
            member.sync_deadline = Some(now + member.rebalance_timeout);
            completions.joins.push((member_id, Ok(answer)));
        }
    }

    /// Each member votes for its most preferred protocol among those all support; the most
    /// votes wins, ties going to the earlier in the first member's preference order.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(choice) = member
                .protocols
                .iter()
                .find(|p| candidates.contains(&p.name))
            {
                *votes.entry(choice.name.as_str()).or_default() += 1;
            }
        }
        candidates
            .iter()
            .max_by(|a, b| {
                let by_votes = votes.get(a.as_str()).cmp(&votes.get(b.as_str()));
                // max_by keeps the last of equals: compare positions reversed so the first wins.
                by_votes.then_with(|| {
                    let position = |name: &String| candidates.iter().position(|c| c == name);
                    position(b).cmp(&position(a))
                })
            })
            .cloned()
    }

    // ---- SyncGroup -------------------------------------------------------------------------

    pub fn sync(
        &mut self,
        now: Duration,
        request: SyncRequest,
    ) -> (Reply<SyncResult>, Completions) {
        let mut completions = Completions::default();
        let reply = self.sync_inner(now, request, &mut completions);
        (reply, completions)
    }

    fn sync_inner(
        &mut self,
        now: Duration,
        request: SyncRequest,
        completions: &mut Completions,
    ) -> Reply<SyncResult> {
        if self.state == GroupState::Dead {
            return Reply::Now(Err(GroupError::CoordinatorNotAvailable));
        }
        if let Err(error) = self.check_member(&request.member_id, request.instance_id.as_deref()) {
            return Reply::Now(Err(error));
        }
        if request.generation != self.generation {
            return Reply::Now(Err(GroupError::IllegalGeneration));
        }
        let type_mismatch =
            request.protocol_type.is_some() && request.protocol_type != self.protocol_type;
        let name_mismatch =
            request.protocol_name.is_some() && request.protocol_name != self.protocol_name;
        if type_mismatch || name_mismatch {
            return Reply::Now(Err(GroupError::InconsistentGroupProtocol));
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => Reply::Now(Err(GroupError::UnknownMemberId)),
            GroupState::PreparingRebalance => Reply::Now(Err(GroupError::RebalanceInProgress)),
            GroupState::Stable => {
                self.touch(now, &request.member_id);
                if let Some(member) = self.members.get_mut(&request.member_id) {
                    member.sync_deadline = None;
                }
                Reply::Now(Ok(self.sync_answer(&request.member_id)))
            }
            GroupState::CompletingRebalance => {
                let member_id = request.member_id.clone();
                {
                    let member = self.members.get_mut(&member_id).expect("checked above");
                    member.awaiting_sync = true;
                    member.sync_deadline = None;
                    member.session_deadline = now + member.session_timeout;
                }
                if self.leader.as_deref() == Some(member_id.as_str()) {
                    self.complete_sync(now, request.assignments, completions);
                }
                Reply::Parked { member_id }
            }
        }
    }

    fn sync_answer(&self, member_id: &str) -> SyncAnswer {
        SyncAnswer {
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment: self.assignment_of(member_id).unwrap_or_default(),
        }
    }

    /// The leader's assignment arrived: every member gets its part (or nothing), the group is
    /// Stable, and every parked sync is answered. Members that have not sent SyncGroup yet
    /// keep their deadline for it, in Stable too, as in Kafka.
    fn complete_sync(
        &mut self,
        now: Duration,
        assignments: Vec<(String, Bytes)>,
        completions: &mut Completions,
    ) {
        let mut by_member: BTreeMap<String, Bytes> = assignments.into_iter().collect();
        for member in self.members.values_mut() {
            member.assignment = by_member.remove(&member.id).unwrap_or_default();
        }
        self.state = GroupState::Stable;
        let waiting: Vec<String> = self
            .members
            .values()
            .filter(|member| member.awaiting_sync)
            .map(|member| member.id.clone())
            .collect();
        for member_id in waiting {
            let answer = self.sync_answer(&member_id);
            if let Some(member) = self.members.get_mut(&member_id) {
                member.awaiting_sync = false;
                member.sync_deadline = None;
                // Its session was on hold while it waited; it starts again now.
                member.session_deadline = now + member.session_timeout;
            }
            completions.syncs.push((member_id, Ok(answer)));
        }
    }

    // ---- Heartbeat, LeaveGroup, expiry -----------------------------------------------------

    pub fn heartbeat(
        &mut self,
        now: Duration,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        match self.state {
            GroupState::Dead => return Err(GroupError::CoordinatorNotAvailable),
            GroupState::Empty => return Err(GroupError::UnknownMemberId),
            _ => {}
        }
        self.check_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        self.touch(now, member_id);
        if self.state == GroupState::PreparingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// One member leaves (LeaveGroup names members by id, or static ones by instance id).
    pub fn leave(
        &mut self,
        now: Duration,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> (Result<(), GroupError>, Completions) {
        let mut completions = Completions::default();
        if self.state == GroupState::Dead {
            return (Err(GroupError::CoordinatorNotAvailable), completions);
        }
        let member_id = match (member_id.is_empty(), instance_id) {
            (true, Some(instance)) => match self.static_members.get(instance) {
                Some(id) => id.clone(),
                None => return (Err(GroupError::UnknownMemberId), completions),
            },
            _ => member_id.to_owned(),
        };
        if self.pending_members.remove(&member_id).is_some() {
            self.try_complete_join(now, &mut completions);
            return (Ok(()), completions);
        }
        if let Err(error) = self.check_member(&member_id, instance_id) {
            return (Err(error), completions);
        }
        self.remove_member(now, &member_id, &mut completions);
        (Ok(()), completions)
    }

    /// Expires members whose session or sync deadline passed and pending ids never used, and
    /// ends a rebalance whose time is up. Call regularly with the monotonic time.
    pub fn tick(&mut self, now: Duration) -> Completions {
        let mut completions = Completions::default();
        if self.state == GroupState::Dead {
            return completions;
        }
        let before = self.pending_members.len();
        self.pending_members.retain(|_, expiry| *expiry > now);
        let pending_expired = self.pending_members.len() != before;
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|member| {
                let session_over = !member.kept_alive() && member.session_deadline <= now;
                let sync_over = matches!(
                    self.state,
                    GroupState::CompletingRebalance | GroupState::Stable
                ) && !member.awaiting_sync
                    && member.sync_deadline.is_some_and(|deadline| deadline <= now);
                session_over || sync_over
            })
            .map(|member| member.id.clone())
            .collect();
        for member_id in &expired {
            self.remove_member(now, member_id, &mut completions);
        }
        if pending_expired || self.state == GroupState::PreparingRebalance {
            self.try_complete_join(now, &mut completions);
        }
        completions
    }

    /// The earliest time `tick` could change something, if any.
    pub fn next_deadline(&self) -> Option<Duration> {
        let members = self.members.values().flat_map(|member| {
            let session = (!member.kept_alive()).then_some(member.session_deadline);
            session.into_iter().chain(member.sync_deadline)
        });
        members
            .chain(self.pending_members.values().copied())
            .chain(self.rebalance_deadline)
            .chain(self.initial_delay_until)
            .min()
    }

    fn remove_member(&mut self, now: Duration, member_id: &str, completions: &mut Completions) {
        self.forget_member(member_id, completions);
        match self.state {
            GroupState::PreparingRebalance => self.try_complete_join(now, completions),
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, completions);
                self.try_complete_join(now, completions);
            }
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Drops a member, answering its parked requests: it is no longer part of the group.
    fn forget_member(&mut self, member_id: &str, completions: &mut Completions) {
        let Some(member) = self.members.remove(member_id) else {
            return;
        };
        if let Some(instance) = &member.instance_id
            && self.static_members.get(instance).map(String::as_str) == Some(member_id)
        {
            self.static_members.remove(instance);
        }
        if member.awaiting_join {
            completions
                .joins
                .push((member.id.clone(), Err(GroupError::UnknownMemberId)));
        }
        if member.awaiting_sync {
            completions
                .syncs
                .push((member.id.clone(), Err(GroupError::UnknownMemberId)));
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
    }

    // ---- Offsets ----------------------------------------------------------------------------

    /// Whether an OffsetCommit from this member at this generation may commit (Kafka's rules:
    /// generation -1 on an empty group is a "simple" consumer; otherwise the member must be in
    /// the current generation, and not while the leader's assignment is awaited).
    pub fn check_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        self.check_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// The member exists and, if it names an instance id, that instance is registered and is
    /// still this member (Kafka's validateMember).
    fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), GroupError> {
        if let Some(instance) = instance_id {
            match self.static_members.get(instance) {
                None => return Err(GroupError::UnknownMemberId),
                Some(current) if current != member_id => return Err(GroupError::FencedInstanceId),
                Some(_) => {}
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(GroupError::UnknownMemberId)
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
