//! The classic consumer-group state machine (`group::state::Group`) checked against a reference
//! model of Kafka's classic group protocol with proptest-state-machine.
//!
//! The model (`Model`) is written from Kafka's `GroupMetadataManager` and `ClassicGroup`
//! (group-coordinator, classic groups), not from `state.rs`. Where Kafka leaves a choice open
//! it fixes one that any correct group may take, or accepts every allowed outcome:
//! - the leader stays while it is a member; when it is gone, the earliest arrival among the
//!   members that joined the new generation leads (Kafka takes any of them);
//! - protocols with equal votes may each be selected, so the model keeps the set of winners;
//! - the first rebalance of an empty group waits `initial_rebalance_delay` once, without
//!   Kafka's extensions for each newcomer; after that it waits for every member (and every
//!   member id handed out with MEMBER_ID_REQUIRED) until the rebalance timeout;
//! - a JoinGroup, a SyncGroup and a Heartbeat all keep a member's session alive;
//! - members that did not rejoin when a rebalance completes leave the group, static ones too;
//! - member ids handed out with MEMBER_ID_REQUIRED reserve their places: a new member, dynamic
//!   or static, is refused once members and reserved ids reach `members_max`.
//!
//! And it holds the group to Kafka where Kafka is clear:
//! - a member whose parked SyncGroup is answered (assignment or REBALANCE_IN_PROGRESS) starts
//!   a fresh session (`propagateAssignment`);
//! - a member that joined a generation and never sent SyncGroup is removed after its rebalance
//!   timeout, in CompletingRebalance and in Stable (`expirePendingSync`);
//! - a request naming an instance id that is not registered is UNKNOWN_MEMBER_ID
//!   (`validateMember`);
//! - a static member that restarts while the group is PreparingRebalance only rejoins it.
//!
//! Transitions are what clients send (JoinGroup with and without KIP-394's
//! `require_known_member_id`, dynamic and static; SyncGroup from the leader and followers;
//! Heartbeat; LeaveGroup by member id and by instance id; OffsetCommit's `check_commit`),
//! time passing (`tick`) and deletion (`kill`). A client has one JoinGroup or SyncGroup in
//! flight at a time, as the Java consumer does. Time only moves forward by `Tick`, and never
//! past the model's next deadline, so every tick handles the events of one instant.
//!
//! After every transition the test compares the group with the model and checks, without the
//! model: the generation never decreases; a commit at a generation other than the current
//! one is refused (except a simple consumer's, generation -1 on an Empty group); in Stable
//! every assignment carries the current generation's tag (while rebalancing, at most it); a
//! Completing or Stable group's leader is a member; an instance id maps to one member; every
//! join answer names the group's generation at that time; Empty ⇔ no members once rebalances complete; the group
//! never exceeds `members_max`; every parked request is answered exactly once, and never
//! outlives its member; `next_deadline` is never in the past and never later than the
//! model's next event.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::FileFailurePersistence;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};
use tidepool_broker::group::state::{
    Completions, Group, GroupError, GroupLimits, GroupState, JoinAnswer, JoinRequest, Protocol,
    Reply, SyncRequest,
};

/// Protocol type and (name, metadata) per protocol, as a client sends them in JoinGroup.
/// Entries 0 and 1 differ only in metadata: a changed subscription with the same assignor.
const PROTOCOL_SETS: [(&str, &[(&str, &str)]); 7] = [
    ("consumer", &[("range", "r1")]),
    ("consumer", &[("range", "r2")]),
    ("consumer", &[("range", "r1"), ("roundrobin", "rr1")]),
    ("consumer", &[("roundrobin", "rr1"), ("range", "r1")]),
    ("consumer", &[("roundrobin", "rr1")]),
    ("consumer", &[]),
    ("connect", &[("range", "r1")]),
];

/// (session timeout, rebalance timeout) in milliseconds; some sessions outlast rebalances.
const TIMEOUTS_MS: [(u64, u64); 3] = [(10_000, 15_000), (6_000, 4_000), (20_000, 8_000)];

const CLIENTS: [&str; 3] = ["c0", "c1", "c2"];
const INSTANCES: [&str; 3] = ["i0", "i1", "i2"];
const GHOST: &str = "ghost-n0";
const TICK_STEPS_MS: [u64; 5] = [500, 2_000, 5_000, 12_000, 40_000];

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// The bytes a leader assigns to `member_id` in `generation`.
fn assignment_bytes(generation: i32, member_id: &str) -> Bytes {
    Bytes::from(format!("g{generation}:{member_id}"))
}

/// The generation an assignment was made in, from its tag.
fn assignment_generation(assignment: &Bytes) -> Option<i32> {
    let text = std::str::from_utf8(assignment).ok()?;
    text.strip_prefix('g')?.split(':').next()?.parse().ok()
}

// ---- Transitions -------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SyncProtocol {
    /// The protocol type and name of the member's join answer (the group's).
    AsJoined,
    /// SyncGroup before v5 carries neither.
    Omitted,
    /// A protocol name the group did not select.
    Wrong,
}

#[derive(Clone, Debug)]
enum Transition {
    /// JoinGroup without a member id: a new client, or a static member that restarted.
    JoinNew {
        client: &'static str,
        instance: Option<&'static str>,
        require_known_member_id: bool,
        protocols: usize,
        timeouts: usize,
        /// Makes the new member id `<instance or client>-n<suffix>`.
        suffix: u64,
    },
    /// JoinGroup with a member id: KIP-394's second join, or a member rejoining.
    Rejoin {
        member_id: String,
        instance: Option<String>,
        protocols: usize,
        timeouts: usize,
    },
    /// SyncGroup; the leader assigns `g<generation>:<member>` to each of `assign_to`.
    Sync {
        member_id: String,
        instance: Option<String>,
        generation: i32,
        protocol: SyncProtocol,
        assign_to: Vec<String>,
    },
    Heartbeat {
        member_id: String,
        instance: Option<String>,
        generation: i32,
    },
    /// LeaveGroup by member id, or by instance id alone (an empty member id).
    Leave {
        member_id: String,
        instance: Option<String>,
    },
    CheckCommit {
        member_id: String,
        instance: Option<String>,
        generation: i32,
    },
    /// Time passes by `step_ms`, or less: never past the model's next event.
    Tick {
        step_ms: u64,
    },
    Kill,
}

// ---- What the model expects a transition to answer ---------------------------------------------

/// A successful join answer as the test compares it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct JoinView {
    member_id: String,
    generation: i32,
    leader: String,
    /// Every member's id for the leader (sorted); empty for followers.
    members: Vec<String>,
}

/// What the group answered a transition at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Answer {
    #[default]
    Nothing,
    JoinParked(String),
    Joined(Result<JoinView, GroupError>),
    SyncParked(String),
    Synced(Result<Bytes, GroupError>),
    Status(Result<(), GroupError>),
}

/// What the model says the last transition answers, at once and to parked requests.
#[derive(Clone, Debug, Default)]
struct Expected {
    answer: Answer,
    joins: BTreeMap<String, Result<JoinView, GroupError>>,
    syncs: BTreeMap<String, Result<Bytes, GroupError>>,
}

// ---- The reference model -----------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Limits {
    members_max: usize,
    initial_delay_ms: u64,
}

#[derive(Clone, Debug)]
struct ModelMember {
    instance: Option<String>,
    protocols: usize,
    timeouts: usize,
    /// A JoinGroup of this member waits for the rebalance to complete.
    joining: bool,
    /// A SyncGroup of this member waits for the leader's assignment.
    syncing: bool,
    session_deadline_ms: u64,
    /// Joined a generation and has not sent SyncGroup yet: removed at this time (Kafka's
    /// pending-sync expiry, in CompletingRebalance and in Stable).
    sync_deadline_ms: Option<u64>,
    /// The generation of the last join answer this member's client received.
    known_generation: Option<i32>,
    arrival: u64,
    assignment: Bytes,
}

impl ModelMember {
    fn session_ms(&self) -> u64 {
        TIMEOUTS_MS[self.timeouts].0
    }

    fn rebalance_ms(&self) -> u64 {
        TIMEOUTS_MS[self.timeouts].1
    }

    fn names(&self) -> impl Iterator<Item = &'static str> {
        PROTOCOL_SETS[self.protocols]
            .1
            .iter()
            .map(|(name, _)| *name)
    }
}

#[derive(Clone, Debug)]
struct Model {
    limits: Limits,
    initial_generation: i32,
    now_ms: u64,
    state: GroupState,
    generation: i32,
    protocol_type: Option<&'static str>,
    /// The protocols the last completed join may have selected (ties are Kafka's choice).
    protocol_choices: BTreeSet<&'static str>,
    leader: Option<String>,
    members: BTreeMap<String, ModelMember>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their expiry.
    pending: BTreeMap<String, u64>,
    /// Instance id → member id.
    statics: BTreeMap<String, String>,
    rebalance_deadline_ms: Option<u64>,
    initial_delay_until_ms: Option<u64>,
    arrivals: u64,
    next_suffix: u64,
    /// Member ids that were in the group once and are no longer, for stale requests.
    retired: BTreeSet<String>,
    expected: Expected,
}

impl Model {
    fn new(limits: Limits, initial_generation: i32) -> Model {
        Model {
            limits,
            initial_generation,
            now_ms: 0,
            state: GroupState::Empty,
            generation: initial_generation,
            protocol_type: None,
            protocol_choices: BTreeSet::new(),
            leader: None,
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
            statics: BTreeMap::new(),
            rebalance_deadline_ms: None,
            initial_delay_until_ms: None,
            arrivals: 0,
            next_suffix: 0,
            retired: BTreeSet::new(),
            expected: Expected::default(),
        }
    }

    fn is_parked(&self, member_id: &str) -> bool {
        self.members
            .get(member_id)
            .is_some_and(|member| member.joining || member.syncing)
    }

    fn instance_of(&self, member_id: &str) -> Option<String> {
        self.members
            .get(member_id)
            .and_then(|member| member.instance.clone())
    }

    /// The earliest time at which time passing changes the group.
    fn next_deadline_ms(&self) -> Option<u64> {
        if self.state == GroupState::Dead {
            return None;
        }
        let syncs_expire = matches!(
            self.state,
            GroupState::CompletingRebalance | GroupState::Stable
        );
        let sessions = self.members.values().flat_map(|member| {
            let session =
                (!member.joining && !member.syncing).then_some(member.session_deadline_ms);
            let sync = member.sync_deadline_ms.filter(|_| syncs_expire);
            session.into_iter().chain(sync)
        });
        let preparing = self.state == GroupState::PreparingRebalance;
        let rebalance = self.rebalance_deadline_ms.filter(|_| preparing);
        let initial_delay = self
            .initial_delay_until_ms
            .filter(|until| preparing && *until > self.now_ms);
        sessions
            .chain(self.pending.values().copied())
            .chain(rebalance)
            .chain(initial_delay)
            .min()
    }

    fn apply(&mut self, transition: &Transition) {
        self.expected = Expected::default();
        let answer = match transition {
            Transition::JoinNew {
                client,
                instance,
                require_known_member_id,
                protocols,
                timeouts,
                suffix,
            } => {
                self.next_suffix = self.next_suffix.max(suffix + 1);
                let member_id = format!("{}-n{suffix}", instance.unwrap_or(client));
                self.join_new(
                    member_id,
                    *instance,
                    *require_known_member_id,
                    *protocols,
                    *timeouts,
                )
            }
            Transition::Rejoin {
                member_id,
                instance,
                protocols,
                timeouts,
            } => self.rejoin(member_id, instance.as_deref(), *protocols, *timeouts),
            Transition::Sync {
                member_id,
                instance,
                generation,
                protocol,
                assign_to,
            } => self.sync(
                member_id,
                instance.as_deref(),
                *generation,
                *protocol,
                assign_to,
            ),
            Transition::Heartbeat {
                member_id,
                instance,
                generation,
            } => Answer::Status(self.heartbeat(member_id, instance.as_deref(), *generation)),
            Transition::Leave {
                member_id,
                instance,
            } => Answer::Status(self.leave(member_id, instance.as_deref())),
            Transition::CheckCommit {
                member_id,
                instance,
                generation,
            } => Answer::Status(self.check_commit(member_id, instance.as_deref(), *generation)),
            Transition::Tick { step_ms } => {
                let mut to_ms = self.now_ms + step_ms;
                if let Some(next_ms) = self.next_deadline_ms() {
                    to_ms = to_ms.min(next_ms.max(self.now_ms));
                }
                self.tick(to_ms);
                Answer::Nothing
            }
            Transition::Kill => {
                self.kill();
                Answer::Nothing
            }
        };
        self.expected.answer = answer;
    }

    // ---- Membership checks ---------------------------------------------------------------------

    /// Kafka's `supportsProtocols`: an empty group takes any non-empty protocol list; otherwise
    /// the type must match and one protocol must be supported by every member.
    fn supports(&self, protocols: usize) -> bool {
        let (protocol_type, offered) = PROTOCOL_SETS[protocols];
        if protocol_type.is_empty() || offered.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type == Some(protocol_type)
            && offered
                .iter()
                .any(|(name, _)| self.candidates().contains(name))
    }

    /// Protocols every member supports.
    fn candidates(&self) -> BTreeSet<&'static str> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return BTreeSet::new();
        };
        let mut common: BTreeSet<&'static str> = first.names().collect();
        for member in members {
            let names: BTreeSet<&'static str> = member.names().collect();
            common.retain(|name| names.contains(name));
        }
        common
    }

    /// Kafka's `selectProtocol`: every member votes for its most preferred candidate; any of
    /// the protocols with the most votes may win.
    fn protocol_winners(&self) -> BTreeSet<&'static str> {
        let candidates = self.candidates();
        let mut votes: BTreeMap<&'static str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(choice) = member.names().find(|name| candidates.contains(name)) {
                *votes.entry(choice).or_default() += 1;
            }
        }
        let most = votes.values().copied().max().unwrap_or_default();
        votes
            .into_iter()
            .filter(|(_, count)| *count == most)
            .map(|(name, _)| name)
            .collect()
    }

    /// Kafka's `validateMember`: an instance id must be registered and name this member.
    fn validate(&self, member_id: &str, instance: Option<&str>) -> Result<(), GroupError> {
        if let Some(instance) = instance {
            match self.statics.get(instance) {
                None => return Err(GroupError::UnknownMemberId),
                Some(current) if current != member_id => {
                    return Err(GroupError::FencedInstanceId);
                }
                Some(_) => {}
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(GroupError::UnknownMemberId)
        }
    }

    fn touch(&mut self, member_id: &str) {
        let now_ms = self.now_ms;
        if let Some(member) = self.members.get_mut(member_id) {
            member.session_deadline_ms = now_ms + member.session_ms();
        }
    }

    fn join_view(&self, member_id: &str, with_members: bool) -> JoinView {
        JoinView {
            member_id: member_id.to_owned(),
            generation: self.generation,
            leader: self.leader.clone().unwrap_or_default(),
            members: if with_members {
                self.members.keys().cloned().collect()
            } else {
                Vec::new()
            },
        }
    }

    // ---- JoinGroup -----------------------------------------------------------------------------

    fn join_new(
        &mut self,
        member_id: String,
        instance: Option<&str>,
        require_known_member_id: bool,
        protocols: usize,
        timeouts: usize,
    ) -> Answer {
        if self.state == GroupState::Dead {
            return Answer::Joined(Err(GroupError::CoordinatorNotAvailable));
        }
        if !self.supports(protocols) {
            return Answer::Joined(Err(GroupError::InconsistentGroupProtocol));
        }
        // A restarted static member takes its old place, even in a full group.
        if let Some(old_id) = instance.and_then(|instance| self.statics.get(instance).cloned()) {
            return self.replace_static_member(old_id, member_id, protocols, timeouts);
        }
        // A member id handed out with MEMBER_ID_REQUIRED reserves its place.
        if self.members.len() + self.pending.len() >= self.limits.members_max {
            return Answer::Joined(Err(GroupError::GroupMaxSizeReached));
        }
        if let Some(instance) = instance {
            self.statics.insert(instance.to_owned(), member_id.clone());
            return self.add_member(member_id, Some(instance), protocols, timeouts);
        }
        if require_known_member_id {
            let session_ms = TIMEOUTS_MS[timeouts].0;
            self.pending
                .insert(member_id.clone(), self.now_ms + session_ms);
            return Answer::Joined(Err(GroupError::MemberIdRequired(member_id)));
        }
        self.add_member(member_id, None, protocols, timeouts)
    }

    fn rejoin(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        protocols: usize,
        timeouts: usize,
    ) -> Answer {
        if self.state == GroupState::Dead {
            return Answer::Joined(Err(GroupError::CoordinatorNotAvailable));
        }
        if !self.supports(protocols) {
            return Answer::Joined(Err(GroupError::InconsistentGroupProtocol));
        }
        if self.pending.contains_key(member_id) {
            return self.add_member(member_id.to_owned(), None, protocols, timeouts);
        }
        if let Err(error) = self.validate(member_id, instance) {
            return Answer::Joined(Err(error));
        }
        let unchanged = self.members[member_id].protocols == protocols;
        let leads = self.leader.as_deref() == Some(member_id);
        match self.state {
            GroupState::PreparingRebalance => {
                self.await_join(member_id, protocols, timeouts);
                self.maybe_complete_join();
                Answer::JoinParked(member_id.to_owned())
            }
            GroupState::CompletingRebalance if unchanged => {
                // A retried join: the same answer again.
                self.touch(member_id);
                Answer::Joined(Ok(self.join_view(member_id, leads)))
            }
            GroupState::Stable if unchanged && !leads => {
                self.touch(member_id);
                Answer::Joined(Ok(self.join_view(member_id, false)))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.await_join(member_id, protocols, timeouts);
                self.prepare_rebalance();
                self.maybe_complete_join();
                Answer::JoinParked(member_id.to_owned())
            }
            GroupState::Empty | GroupState::Dead => {
                Answer::Joined(Err(GroupError::UnknownMemberId))
            }
        }
    }

    /// Kafka's `replaceStaticMember` then `updateStaticMemberThenRebalanceOrCompleteJoin`.
    fn replace_static_member(
        &mut self,
        old_id: String,
        new_id: String,
        protocols: usize,
        timeouts: usize,
    ) -> Answer {
        let Some(mut member) = self.members.remove(&old_id) else {
            return Answer::Joined(Err(GroupError::UnknownMemberId));
        };
        if member.joining {
            self.expected
                .joins
                .insert(old_id.clone(), Err(GroupError::FencedInstanceId));
        }
        if member.syncing {
            self.expected
                .syncs
                .insert(old_id.clone(), Err(GroupError::FencedInstanceId));
        }
        member.joining = false;
        member.syncing = false;
        // Kafka stays Stable when the selected protocol cannot change: the same protocol names
        // in the same order (the metadata, e.g. owned partitions, may differ and is replaced).
        let unchanged = member
            .names()
            .eq(PROTOCOL_SETS[protocols].1.iter().map(|(name, _)| *name))
            && PROTOCOL_SETS[member.protocols].0 == PROTOCOL_SETS[protocols].0;
        if unchanged {
            member.protocols = protocols;
        }
        let instance = member.instance.clone().unwrap_or_default();
        self.members.insert(new_id.clone(), member);
        self.statics.insert(instance, new_id.clone());
        if self.leader.as_deref() == Some(old_id.as_str()) {
            self.leader = Some(new_id.clone());
        }
        self.retired.insert(old_id);
        if self.state == GroupState::Stable && unchanged {
            let generation = self.generation;
            let member = self.members.get_mut(&new_id).expect("inserted above");
            member.timeouts = timeouts;
            member.known_generation = Some(generation);
            self.touch(&new_id);
            // KIP-814: a restarted static leader is told the members (with skip_assignment).
            let leads = self.leader.as_deref() == Some(new_id.as_str());
            return Answer::Joined(Ok(self.join_view(&new_id, leads)));
        }
        self.await_join(&new_id, protocols, timeouts);
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance
        ) {
            self.prepare_rebalance();
        }
        self.maybe_complete_join();
        Answer::JoinParked(new_id)
    }

    fn add_member(
        &mut self,
        member_id: String,
        instance: Option<&str>,
        protocols: usize,
        timeouts: usize,
    ) -> Answer {
        self.pending.remove(&member_id);
        if self.members.is_empty() {
            self.protocol_type = Some(PROTOCOL_SETS[protocols].0);
        }
        self.arrivals += 1;
        let member = ModelMember {
            instance: instance.map(str::to_owned),
            protocols,
            timeouts,
            joining: true,
            syncing: false,
            session_deadline_ms: self.now_ms + TIMEOUTS_MS[timeouts].0,
            sync_deadline_ms: None,
            known_generation: None,
            arrival: self.arrivals,
            assignment: Bytes::new(),
        };
        self.members.insert(member_id.clone(), member);
        if self.leader.is_none() {
            self.leader = Some(member_id.clone());
        }
        if matches!(
            self.state,
            GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance
        ) {
            self.prepare_rebalance();
        }
        self.maybe_complete_join();
        Answer::JoinParked(member_id)
    }

    fn await_join(&mut self, member_id: &str, protocols: usize, timeouts: usize) {
        let now_ms = self.now_ms;
        if let Some(member) = self.members.get_mut(member_id) {
            member.protocols = protocols;
            member.timeouts = timeouts;
            member.joining = true;
            member.sync_deadline_ms = None;
            member.session_deadline_ms = now_ms + member.session_ms();
        }
    }

    /// Kafka's `prepareRebalance`. Parked syncs fail, and their sessions start again from now,
    /// as after every answered sync (`propagateAssignment`).
    fn prepare_rebalance(&mut self) {
        let interrupted = self.state == GroupState::CompletingRebalance;
        if interrupted {
            let now_ms = self.now_ms;
            for (member_id, member) in &mut self.members {
                if member.syncing {
                    member.syncing = false;
                    member.session_deadline_ms = now_ms + member.session_ms();
                    self.expected
                        .syncs
                        .insert(member_id.clone(), Err(GroupError::RebalanceInProgress));
                }
            }
        }
        // Leaving Stable keeps the last assignments (DescribeGroups shows them); interrupting
        // CompletingRebalance drops them (Kafka's resetAndPropagateAssignmentError).
        for member in self.members.values_mut() {
            if interrupted {
                member.assignment = Bytes::new();
            }
            member.sync_deadline_ms = None;
        }
        let rebalance_ms = self
            .members
            .values()
            .map(ModelMember::rebalance_ms)
            .max()
            .unwrap_or_default();
        if self.state == GroupState::Empty {
            self.initial_delay_until_ms =
                Some(self.now_ms + self.limits.initial_delay_ms.min(rebalance_ms));
        }
        self.rebalance_deadline_ms = Some(self.now_ms + rebalance_ms);
        self.state = GroupState::PreparingRebalance;
    }

    fn maybe_complete_join(&mut self) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        if self
            .initial_delay_until_ms
            .is_some_and(|until| self.now_ms < until)
        {
            return;
        }
        let everyone_joined =
            self.members.values().all(|member| member.joining) && self.pending.is_empty();
        let timed_out = self
            .rebalance_deadline_ms
            .is_some_and(|deadline| deadline <= self.now_ms);
        if everyone_joined || timed_out {
            self.complete_join();
        }
    }

    /// Kafka's `completeClassicGroupJoin` and `initNextGeneration`.
    fn complete_join(&mut self) {
        let absent: Vec<String> = self
            .members
            .iter()
            .filter(|(_, member)| !member.joining)
            .map(|(member_id, _)| member_id.clone())
            .collect();
        for member_id in absent {
            self.forget(&member_id);
        }
        self.initial_delay_until_ms = None;
        self.rebalance_deadline_ms = None;
        let leader_stays = self
            .leader
            .as_ref()
            .is_some_and(|leader| self.members.contains_key(leader));
        if !leader_stays {
            self.leader = self
                .members
                .iter()
                .min_by_key(|(_, member)| member.arrival)
                .map(|(member_id, _)| member_id.clone());
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol_choices.clear();
            self.state = GroupState::Empty;
            return;
        }
        self.protocol_choices = self.protocol_winners();
        self.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in ids {
            let leads = self.leader.as_deref() == Some(member_id.as_str());
            let view = self.join_view(&member_id, leads);
            let (now_ms, generation) = (self.now_ms, self.generation);
            let member = self.members.get_mut(&member_id).expect("listed above");
            member.joining = false;
            member.known_generation = Some(generation);
            member.session_deadline_ms = now_ms + member.session_ms();
            member.sync_deadline_ms = Some(now_ms + member.rebalance_ms());
            self.expected.joins.insert(member_id, Ok(view));
        }
    }

    // ---- SyncGroup -----------------------------------------------------------------------------

    fn sync(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        protocol: SyncProtocol,
        assign_to: &[String],
    ) -> Answer {
        if self.state == GroupState::Dead {
            return Answer::Synced(Err(GroupError::CoordinatorNotAvailable));
        }
        if let Err(error) = self.validate(member_id, instance) {
            return Answer::Synced(Err(error));
        }
        if generation != self.generation {
            return Answer::Synced(Err(GroupError::IllegalGeneration));
        }
        if protocol == SyncProtocol::Wrong {
            return Answer::Synced(Err(GroupError::InconsistentGroupProtocol));
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => {
                Answer::Synced(Err(GroupError::UnknownMemberId))
            }
            GroupState::PreparingRebalance => Answer::Synced(Err(GroupError::RebalanceInProgress)),
            GroupState::Stable => {
                self.touch(member_id);
                let member = self.members.get_mut(member_id).expect("validated");
                member.sync_deadline_ms = None;
                Answer::Synced(Ok(member.assignment.clone()))
            }
            GroupState::CompletingRebalance => {
                self.touch(member_id);
                let member = self.members.get_mut(member_id).expect("validated");
                member.syncing = true;
                member.sync_deadline_ms = None;
                if self.leader.as_deref() == Some(member_id) {
                    self.propagate_assignment(generation, assign_to);
                }
                Answer::SyncParked(member_id.to_owned())
            }
        }
    }

    /// Kafka's `setAndPropagateAssignment`: every member gets its part (or nothing), parked
    /// syncs are answered, and their sessions start again from now.
    fn propagate_assignment(&mut self, generation: i32, assign_to: &[String]) {
        let now_ms = self.now_ms;
        for (member_id, member) in &mut self.members {
            member.assignment = if assign_to.contains(member_id) {
                assignment_bytes(generation, member_id)
            } else {
                Bytes::new()
            };
            if member.syncing {
                member.syncing = false;
                member.session_deadline_ms = now_ms + member.session_ms();
                self.expected
                    .syncs
                    .insert(member_id.clone(), Ok(member.assignment.clone()));
            }
        }
        self.state = GroupState::Stable;
    }

    // ---- Heartbeat, LeaveGroup, OffsetCommit, time ---------------------------------------------

    fn heartbeat(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        match self.state {
            GroupState::Dead => return Err(GroupError::CoordinatorNotAvailable),
            GroupState::Empty => return Err(GroupError::UnknownMemberId),
            _ => {}
        }
        self.validate(member_id, instance)?;
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        self.touch(member_id);
        if self.state == GroupState::PreparingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    fn leave(&mut self, member_id: &str, instance: Option<&str>) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let member_id = match (member_id.is_empty(), instance) {
            (true, Some(instance)) => match self.statics.get(instance) {
                Some(member_id) => member_id.clone(),
                None => return Err(GroupError::UnknownMemberId),
            },
            _ => member_id.to_owned(),
        };
        if self.pending.remove(&member_id).is_some() {
            self.maybe_complete_join();
            return Ok(());
        }
        self.validate(&member_id, instance)?;
        self.remove_member(&member_id);
        Ok(())
    }

    fn check_commit(
        &self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        self.validate(member_id, instance)?;
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    fn tick(&mut self, to_ms: u64) {
        self.now_ms = self.now_ms.max(to_ms);
        if self.state == GroupState::Dead {
            return;
        }
        let now_ms = self.now_ms;
        let pending_before = self.pending.len();
        self.pending.retain(|_, expiry_ms| *expiry_ms > now_ms);
        let pending_expired = self.pending.len() != pending_before;
        let syncs_expire = matches!(
            self.state,
            GroupState::CompletingRebalance | GroupState::Stable
        );
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, member)| {
                let silent =
                    !member.joining && !member.syncing && member.session_deadline_ms <= now_ms;
                let never_synced =
                    syncs_expire && member.sync_deadline_ms.is_some_and(|at| at <= now_ms);
                silent || never_synced
            })
            .map(|(member_id, _)| member_id.clone())
            .collect();
        for member_id in expired {
            self.remove_member(&member_id);
        }
        if pending_expired || self.state == GroupState::PreparingRebalance {
            self.maybe_complete_join();
        }
    }

    fn kill(&mut self) {
        for (member_id, member) in &self.members {
            if member.joining {
                self.expected
                    .joins
                    .insert(member_id.clone(), Err(GroupError::CoordinatorNotAvailable));
            }
            if member.syncing {
                self.expected
                    .syncs
                    .insert(member_id.clone(), Err(GroupError::CoordinatorNotAvailable));
            }
        }
        self.retired.extend(self.members.keys().cloned());
        self.members.clear();
        self.pending.clear();
        self.statics.clear();
        self.leader = None;
        self.state = GroupState::Dead;
    }

    /// A member leaves (LeaveGroup or expiry): the group rebalances without it.
    fn remove_member(&mut self, member_id: &str) {
        self.forget(member_id);
        match self.state {
            GroupState::PreparingRebalance => self.maybe_complete_join(),
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance();
                self.maybe_complete_join();
            }
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Drops a member; its parked requests get UNKNOWN_MEMBER_ID.
    fn forget(&mut self, member_id: &str) {
        let Some(member) = self.members.remove(member_id) else {
            return;
        };
        if let Some(instance) = &member.instance
            && self.statics.get(instance).map(String::as_str) == Some(member_id)
        {
            self.statics.remove(instance);
        }
        if member.joining {
            self.expected
                .joins
                .insert(member_id.to_owned(), Err(GroupError::UnknownMemberId));
        }
        if member.syncing {
            self.expected
                .syncs
                .insert(member_id.to_owned(), Err(GroupError::UnknownMemberId));
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
        self.retired.insert(member_id.to_owned());
    }
}

// ---- Generating transitions --------------------------------------------------------------------

struct Reference;

impl ReferenceStateMachine for Reference {
    type State = Model;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<Model> {
        (
            prop::sample::select(vec![100_usize, 3]),
            prop::sample::select(vec![0_u64, 3_000]),
            prop::sample::select(vec![0_i32, 4]),
        )
            .prop_map(|(members_max, initial_delay_ms, generation)| {
                let limits = Limits {
                    members_max,
                    initial_delay_ms,
                };
                Model::new(limits, generation)
            })
            .boxed()
    }

    fn transitions(model: &Model) -> BoxedStrategy<Transition> {
        let members: Vec<String> = model.members.keys().cloned().collect();
        let idle: Vec<String> = members
            .iter()
            .filter(|member_id| !model.is_parked(member_id))
            .cloned()
            .collect();
        let completing = model.state == GroupState::CompletingRebalance;
        let mut options: Vec<(u32, BoxedStrategy<Transition>)> = vec![
            (60, join_new(model)),
            (60, tick()),
            (20, check_commit(model)),
            (10, leave_by_instance()),
            (16, stale_request(model)),
        ];
        if !model.pending.is_empty() {
            options.push((120, join_pending(model)));
        }
        if !idle.is_empty() {
            options.push((50, rejoin(model, idle.clone())));
            options.push((if completing { 200 } else { 30 }, sync(model, idle)));
        }
        if !members.is_empty() {
            options.push((40, heartbeat(model, members.clone())));
            options.push((30, leave(model, members)));
        }
        if model.state != GroupState::Dead {
            options.push((1, Just(Transition::Kill).boxed()));
        }
        Union::new_weighted(options).boxed()
    }

    fn apply(mut model: Model, transition: &Transition) -> Model {
        model.apply(transition);
        model
    }

    /// What a client would not send; checked again while shrinking, when earlier transitions
    /// are gone.
    fn preconditions(model: &Model, transition: &Transition) -> bool {
        match transition {
            Transition::JoinNew { suffix, .. } => *suffix >= model.next_suffix,
            Transition::Rejoin {
                member_id,
                instance,
                ..
            } => {
                !member_id.is_empty()
                    && !model.is_parked(member_id)
                    && (instance.is_none() || !model.pending.contains_key(member_id))
            }
            Transition::Sync { member_id, .. } => !model.is_parked(member_id),
            Transition::Tick { .. }
            | Transition::Heartbeat { .. }
            | Transition::Leave { .. }
            | Transition::CheckCommit { .. }
            | Transition::Kill => true,
        }
    }
}

fn protocols() -> BoxedStrategy<usize> {
    prop_oneof![
        12 => Just(0_usize),
        3 => Just(2_usize),
        3 => Just(3_usize),
        2 => Just(1_usize),
        2 => Just(4_usize),
        1 => Just(5_usize),
        1 => Just(6_usize),
    ]
    .boxed()
}

fn timeouts() -> BoxedStrategy<usize> {
    (0..TIMEOUTS_MS.len()).boxed()
}

/// Mostly the member's own instance id; sometimes none, or another one.
fn instance_for(own: Option<String>) -> BoxedStrategy<Option<String>> {
    let other = prop::sample::select(INSTANCES.to_vec()).prop_map(|id| Some(id.to_owned()));
    match own {
        Some(own) => prop_oneof![12 => Just(Some(own)), 1 => Just(None), 1 => other].boxed(),
        None => prop_oneof![16 => Just(None), 1 => other].boxed(),
    }
}

/// Mostly the generation the member's client learned from its last join answer.
fn generation_for(model: &Model, member_id: &str) -> BoxedStrategy<i32> {
    let current = model.generation;
    let known = model
        .members
        .get(member_id)
        .and_then(|member| member.known_generation)
        .unwrap_or(current);
    prop_oneof![
        8 => Just(known),
        2 => Just(current),
        1 => Just(current - 1),
        1 => Just(current + 1),
        1 => Just(-1),
    ]
    .boxed()
}

fn join_new(model: &Model) -> BoxedStrategy<Transition> {
    let suffix = model.next_suffix;
    let instance = prop_oneof![
        3 => Just(None),
        2 => prop::sample::select(INSTANCES.to_vec()).prop_map(Some),
    ];
    (
        prop::sample::select(CLIENTS.to_vec()),
        instance,
        prop::bool::weighted(0.6),
        protocols(),
        timeouts(),
    )
        .prop_map(
            move |(client, instance, require_known_member_id, protocols, timeouts)| {
                Transition::JoinNew {
                    client,
                    instance,
                    require_known_member_id,
                    protocols,
                    timeouts,
                    suffix,
                }
            },
        )
        .boxed()
}

/// KIP-394's second JoinGroup, with the member id MEMBER_ID_REQUIRED handed out.
fn join_pending(model: &Model) -> BoxedStrategy<Transition> {
    let pending: Vec<String> = model.pending.keys().cloned().collect();
    (prop::sample::select(pending), protocols(), timeouts())
        .prop_map(|(member_id, protocols, timeouts)| Transition::Rejoin {
            member_id,
            instance: None,
            protocols,
            timeouts,
        })
        .boxed()
}

fn rejoin(model: &Model, idle: Vec<String>) -> BoxedStrategy<Transition> {
    let model = model.clone();
    prop::sample::select(idle)
        .prop_flat_map(move |member_id| {
            let member = &model.members[&member_id];
            (
                Just(member_id.clone()),
                instance_for(member.instance.clone()),
                prop_oneof![7 => Just(member.protocols), 3 => protocols()],
                prop_oneof![3 => Just(member.timeouts), 1 => timeouts()],
            )
        })
        .prop_map(
            |(member_id, instance, protocols, timeouts)| Transition::Rejoin {
                member_id,
                instance,
                protocols,
                timeouts,
            },
        )
        .boxed()
}

fn sync(model: &Model, idle: Vec<String>) -> BoxedStrategy<Transition> {
    let idle_leader = model.leader.clone().filter(|leader| idle.contains(leader));
    let member = match idle_leader {
        Some(leader) => prop_oneof![3 => Just(leader), 2 => prop::sample::select(idle)].boxed(),
        None => prop::sample::select(idle).boxed(),
    };
    let model = model.clone();
    member
        .prop_flat_map(move |member_id| {
            let members: Vec<String> = model.members.keys().cloned().collect();
            let assign_to = (
                prop::collection::vec(prop::bool::weighted(0.9), members.len()),
                prop::bool::weighted(0.1),
            )
                .prop_map(move |(chosen, ghost)| {
                    let mut assign_to: Vec<String> = members
                        .iter()
                        .zip(chosen)
                        .filter(|(_, chosen)| *chosen)
                        .map(|(member_id, _)| member_id.clone())
                        .collect();
                    if ghost {
                        assign_to.push(GHOST.to_owned());
                    }
                    assign_to
                });
            let protocol = prop_oneof![
                12 => Just(SyncProtocol::AsJoined),
                2 => Just(SyncProtocol::Omitted),
                1 => Just(SyncProtocol::Wrong),
            ];
            (
                Just(member_id.clone()),
                instance_for(model.instance_of(&member_id)),
                generation_for(&model, &member_id),
                protocol,
                assign_to,
            )
        })
        .prop_map(
            |(member_id, instance, generation, protocol, assign_to)| Transition::Sync {
                member_id,
                instance,
                generation,
                protocol,
                assign_to,
            },
        )
        .boxed()
}

fn heartbeat(model: &Model, members: Vec<String>) -> BoxedStrategy<Transition> {
    let model = model.clone();
    prop::sample::select(members)
        .prop_flat_map(move |member_id| {
            (
                Just(member_id.clone()),
                instance_for(model.instance_of(&member_id)),
                generation_for(&model, &member_id),
            )
        })
        .prop_map(|(member_id, instance, generation)| Transition::Heartbeat {
            member_id,
            instance,
            generation,
        })
        .boxed()
}

fn leave(model: &Model, mut member_ids: Vec<String>) -> BoxedStrategy<Transition> {
    member_ids.extend(model.pending.keys().cloned());
    let model = model.clone();
    prop::sample::select(member_ids)
        .prop_flat_map(move |member_id| {
            (
                Just(member_id.clone()),
                instance_for(model.instance_of(&member_id)),
            )
        })
        .prop_map(|(member_id, instance)| Transition::Leave {
            member_id,
            instance,
        })
        .boxed()
}

fn leave_by_instance() -> BoxedStrategy<Transition> {
    prop::sample::select(INSTANCES.to_vec())
        .prop_map(|instance| Transition::Leave {
            member_id: String::new(),
            instance: Some(instance.to_owned()),
        })
        .boxed()
}

fn check_commit(model: &Model) -> BoxedStrategy<Transition> {
    let mut member_ids: Vec<String> = model.members.keys().cloned().collect();
    member_ids.extend(model.retired.iter().rev().take(2).cloned());
    member_ids.push(String::new());
    let model = model.clone();
    prop::sample::select(member_ids)
        .prop_flat_map(move |member_id| {
            (
                Just(member_id.clone()),
                instance_for(model.instance_of(&member_id)),
                generation_for(&model, &member_id),
            )
        })
        .prop_map(
            |(member_id, instance, generation)| Transition::CheckCommit {
                member_id,
                instance,
                generation,
            },
        )
        .boxed()
}

/// A request from a member that is gone (left, expired, fenced) or never was.
fn stale_request(model: &Model) -> BoxedStrategy<Transition> {
    let mut member_ids: Vec<String> = model.retired.iter().rev().take(4).cloned().collect();
    member_ids.push(GHOST.to_owned());
    let generations = vec![model.generation, model.generation - 1];
    (
        prop::sample::select(member_ids),
        prop::sample::select(generations),
        0..4_u8,
        prop::sample::select(INSTANCES.to_vec()).prop_map(|id| Some(id.to_owned())),
    )
        .prop_map(|(member_id, generation, kind, instance)| match kind {
            0 => Transition::Heartbeat {
                member_id,
                instance: None,
                generation,
            },
            1 => Transition::Sync {
                member_id,
                instance: None,
                generation,
                protocol: SyncProtocol::AsJoined,
                assign_to: Vec::new(),
            },
            2 => Transition::Rejoin {
                member_id,
                instance,
                protocols: 0,
                timeouts: 0,
            },
            _ => Transition::Leave {
                member_id,
                instance: None,
            },
        })
        .boxed()
}

fn tick() -> BoxedStrategy<Transition> {
    prop::sample::select(TICK_STEPS_MS.to_vec())
        .prop_map(|step_ms| Transition::Tick { step_ms })
        .boxed()
}

// ---- Driving the real group --------------------------------------------------------------------

/// The group under test, with the clock and the requests it has parked.
struct Harness {
    group: Group,
    now: Duration,
    /// Members whose JoinGroup got `Reply::Parked` and no answer yet.
    parked_joins: BTreeSet<String>,
    /// Members whose SyncGroup got `Reply::Parked` and no answer yet.
    parked_syncs: BTreeSet<String>,
}

fn join_request(
    member_id: &str,
    client: &str,
    instance: Option<String>,
    protocols: usize,
    timeouts: usize,
    require_known_member_id: bool,
) -> JoinRequest {
    let (protocol_type, offered) = PROTOCOL_SETS[protocols];
    let (session_ms, rebalance_ms) = TIMEOUTS_MS[timeouts];
    JoinRequest {
        member_id: member_id.to_owned(),
        instance_id: instance,
        client_id: client.to_owned(),
        client_host: "/127.0.0.1".to_owned(),
        session_timeout: millis(session_ms),
        rebalance_timeout: millis(rebalance_ms),
        protocol_type: protocol_type.to_owned(),
        protocols: offered
            .iter()
            .map(|(name, metadata)| Protocol {
                name: (*name).to_owned(),
                metadata: Bytes::from_static(metadata.as_bytes()),
            })
            .collect(),
        require_known_member_id,
        supports_skip_assignment: true,
    }
}

fn join_view(answer: &JoinAnswer) -> JoinView {
    let mut members: Vec<String> = answer
        .members
        .iter()
        .map(|member| member.member_id.clone())
        .collect();
    members.sort();
    JoinView {
        member_id: answer.member_id.clone(),
        generation: answer.generation,
        leader: answer.leader.clone(),
        members,
    }
}

impl Harness {
    fn run(
        &mut self,
        model: &Model,
        transition: &Transition,
    ) -> (Answer, Completions, Vec<JoinAnswer>) {
        let now = self.now;
        match transition {
            Transition::JoinNew {
                client,
                instance,
                require_known_member_id,
                protocols,
                timeouts,
                suffix,
            } => {
                let instance = instance.map(str::to_owned);
                let request = join_request(
                    "",
                    client,
                    instance,
                    *protocols,
                    *timeouts,
                    *require_known_member_id,
                );
                let (reply, completions) = self.group.join(now, request, &format!("n{suffix}"));
                let (answer, joined) = join_answer(reply);
                (answer, completions, joined)
            }
            Transition::Rejoin {
                member_id,
                instance,
                protocols,
                timeouts,
            } => {
                let request = join_request(
                    member_id,
                    "c0",
                    instance.clone(),
                    *protocols,
                    *timeouts,
                    true,
                );
                let (reply, completions) = self.group.join(now, request, "unused");
                let (answer, joined) = join_answer(reply);
                (answer, completions, joined)
            }
            Transition::Sync {
                member_id,
                instance,
                generation,
                protocol,
                assign_to,
            } => {
                let (protocol_type, protocol_name) = match protocol {
                    SyncProtocol::AsJoined => (
                        self.group.protocol_type().map(str::to_owned),
                        self.group.protocol_name().map(str::to_owned),
                    ),
                    SyncProtocol::Omitted => (None, None),
                    SyncProtocol::Wrong => (Some("consumer".to_owned()), Some("bogus".to_owned())),
                };
                let request = SyncRequest {
                    member_id: member_id.clone(),
                    instance_id: instance.clone(),
                    generation: *generation,
                    protocol_type,
                    protocol_name,
                    assignments: assign_to
                        .iter()
                        .map(|id| (id.clone(), assignment_bytes(*generation, id)))
                        .collect(),
                };
                let (reply, completions) = self.group.sync(now, request);
                let answer = match reply {
                    Reply::Parked { member_id } => Answer::SyncParked(member_id),
                    Reply::Now(result) => Answer::Synced(result.map(|synced| synced.assignment)),
                };
                (answer, completions, Vec::new())
            }
            Transition::Heartbeat {
                member_id,
                instance,
                generation,
            } => {
                let result = self
                    .group
                    .heartbeat(now, member_id, instance.as_deref(), *generation);
                (Answer::Status(result), Completions::default(), Vec::new())
            }
            Transition::Leave {
                member_id,
                instance,
            } => {
                let (result, completions) = self.group.leave(now, member_id, instance.as_deref());
                (Answer::Status(result), completions, Vec::new())
            }
            Transition::CheckCommit {
                member_id,
                instance,
                generation,
            } => {
                let result = self
                    .group
                    .check_commit(member_id, instance.as_deref(), *generation);
                (Answer::Status(result), Completions::default(), Vec::new())
            }
            Transition::Tick { .. } => {
                // The model moved its clock to the step's end or its next event, if sooner.
                self.now = millis(model.now_ms);
                let completions = self.group.tick(self.now);
                (Answer::Nothing, completions, Vec::new())
            }
            Transition::Kill => (Answer::Nothing, self.group.kill(), Vec::new()),
        }
    }

    /// Parked requests must be answered exactly once: every answer matches a parked request.
    fn record_parked(&mut self, answer: &Answer, completions: &Completions) {
        match answer {
            Answer::JoinParked(member_id) => assert!(
                self.parked_joins.insert(member_id.clone()),
                "a second JoinGroup of {member_id} parked while the first waits"
            ),
            Answer::SyncParked(member_id) => assert!(
                self.parked_syncs.insert(member_id.clone()),
                "a second SyncGroup of {member_id} parked while the first waits"
            ),
            _ => {}
        }
        for (member_id, _) in &completions.joins {
            assert!(
                self.parked_joins.remove(member_id),
                "a join answer for {member_id}, who has no parked JoinGroup (answered twice?)"
            );
        }
        for (member_id, _) in &completions.syncs {
            assert!(
                self.parked_syncs.remove(member_id),
                "a sync answer for {member_id}, who has no parked SyncGroup (answered twice?)"
            );
        }
    }

    /// A join answer describes the group as it is when the answer leaves.
    fn check_join_answer(&self, answer: &JoinAnswer, model: &Model) {
        let group = &self.group;
        assert_eq!(
            answer.generation,
            group.generation(),
            "{} was answered with another generation than the group's",
            answer.member_id
        );
        assert_eq!(Some(answer.leader.as_str()), group.leader());
        assert_eq!(answer.protocol_name.as_deref(), group.protocol_name());
        assert_eq!(answer.protocol_type.as_deref(), group.protocol_type());
        for joined in &answer.members {
            let member = model
                .members
                .get(&joined.member_id)
                .unwrap_or_else(|| panic!("the leader was told of {}", joined.member_id));
            let metadata = PROTOCOL_SETS[member.protocols]
                .1
                .iter()
                .find(|(name, _)| Some(*name) == answer.protocol_name.as_deref())
                .map(|(_, metadata)| *metadata)
                .unwrap_or_default();
            assert_eq!(joined.metadata, Bytes::from_static(metadata.as_bytes()));
            assert_eq!(joined.instance_id, member.instance);
        }
    }

    fn check_answers(
        &self,
        model: &Model,
        answer: &Answer,
        completions: &Completions,
        joined_now: &[JoinAnswer],
    ) {
        let expected = &model.expected;
        assert_eq!(answer, &expected.answer, "the reply");
        let joins: BTreeMap<String, Result<JoinView, GroupError>> = completions
            .joins
            .iter()
            .map(|(member_id, result)| {
                let result = result.as_ref().map(join_view).map_err(GroupError::clone);
                (member_id.clone(), result)
            })
            .collect();
        assert_eq!(joins, expected.joins, "the parked joins answered");
        let syncs: BTreeMap<String, Result<Bytes, GroupError>> = completions
            .syncs
            .iter()
            .map(|(member_id, result)| {
                let result = result
                    .as_ref()
                    .map(|synced| synced.assignment.clone())
                    .map_err(GroupError::clone);
                (member_id.clone(), result)
            })
            .collect();
        assert_eq!(syncs, expected.syncs, "the parked syncs answered");

        let joined_later = completions
            .joins
            .iter()
            .filter_map(|(_, result)| result.as_ref().ok());
        for answer in joined_now.iter().chain(joined_later) {
            self.check_join_answer(answer, model);
        }
        for (member_id, result) in &completions.syncs {
            if let Ok(synced) = result {
                assert_eq!(
                    Some(&synced.assignment),
                    self.group.assignment_of(member_id).as_ref()
                );
                assert_eq!(synced.protocol_name.as_deref(), self.group.protocol_name());
            }
        }
    }
}

fn join_answer(reply: Reply<Result<JoinAnswer, GroupError>>) -> (Answer, Vec<JoinAnswer>) {
    match reply {
        Reply::Parked { member_id } => (Answer::JoinParked(member_id), Vec::new()),
        Reply::Now(Ok(answer)) => (Answer::Joined(Ok(join_view(&answer))), vec![answer]),
        Reply::Now(Err(error)) => (Answer::Joined(Err(error)), Vec::new()),
    }
}

// ---- Invariants --------------------------------------------------------------------------------

impl Harness {
    /// The invariants, checked on the group alone.
    fn check_invariants(&self, limits: Limits) {
        let group = &self.group;
        let generation = group.generation();
        let state = group.state();
        let member_ids = group.member_ids();
        assert!(
            member_ids.len() <= limits.members_max,
            "{} members, more than members_max {}",
            member_ids.len(),
            limits.members_max
        );
        match state {
            GroupState::Empty => assert!(!group.has_members(), "an Empty group has members"),
            GroupState::CompletingRebalance | GroupState::Stable => {
                let leader = group
                    .leader()
                    .unwrap_or_else(|| panic!("{state:?} without a leader"));
                assert!(
                    member_ids.iter().any(|id| id == leader),
                    "the leader {leader} of a {state:?} group is not a member"
                );
            }
            GroupState::PreparingRebalance | GroupState::Dead => {}
        }
        for member_id in &member_ids {
            let assignment = group.assignment_of(member_id).unwrap_or_default();
            // In Stable an assignment is this generation's; while rebalancing a member may
            // still hold the last one it synced, never a later one.
            let tagged = assignment_generation(&assignment);
            if state == GroupState::Stable {
                assert!(
                    assignment.is_empty() || tagged == Some(generation),
                    "{member_id} holds {assignment:?} in generation {generation}"
                );
            } else if !assignment.is_empty() {
                assert!(
                    tagged.is_some_and(|made_in| made_in <= generation),
                    "{member_id} holds {assignment:?} in generation {generation}"
                );
            }
        }
        let mut instances = BTreeSet::new();
        for summary in group.summaries() {
            if let Some(instance) = summary.instance_id {
                assert!(
                    instances.insert(instance.clone()),
                    "instance {instance} maps to two members"
                );
            }
        }
        for member_id in self.parked_joins.iter().chain(&self.parked_syncs) {
            assert!(
                member_ids.contains(member_id),
                "{member_id} is gone but its parked request was never answered"
            );
        }
        if let Some(deadline) = group.next_deadline() {
            assert!(
                deadline > self.now,
                "next_deadline {deadline:?} is not after now {:?}",
                self.now
            );
        }
    }

    /// Offset commits: a generation other than the current one never commits (except a
    /// simple consumer's -1 on an Empty group), and the answers are the model's.
    fn check_commits(&self, model: &Model) {
        let group = &self.group;
        let generation = group.generation();
        let mut member_ids = group.member_ids();
        member_ids.push(String::new());
        member_ids.extend(model.retired.iter().rev().take(2).cloned());
        for member_id in &member_ids {
            let instance = model.instance_of(member_id);
            for asked in [generation - 1, generation, generation + 1, -1] {
                let result = group.check_commit(member_id, instance.as_deref(), asked);
                if result.is_ok() {
                    assert!(
                        asked == generation || (group.state() == GroupState::Empty && asked < 0),
                        "{member_id} may commit at generation {asked} in generation {generation}"
                    );
                }
                assert_eq!(
                    result,
                    model.check_commit(member_id, instance.as_deref(), asked),
                    "check_commit({member_id:?}, {instance:?}, {asked})"
                );
            }
        }
    }

    /// The group is what the model says it is.
    fn check_against(&self, model: &Model) {
        let group = &self.group;
        assert_eq!(group.state(), model.state, "state");
        assert_eq!(group.generation(), model.generation, "generation");
        let model_ids: Vec<String> = model.members.keys().cloned().collect();
        assert_eq!(group.member_ids(), model_ids, "members");
        assert_eq!(group.leader(), model.leader.as_deref(), "leader");
        assert_eq!(group.protocol_type(), model.protocol_type, "protocol type");
        match group.protocol_name() {
            None => assert!(
                model.protocol_choices.is_empty(),
                "no protocol selected, expected one of {:?}",
                model.protocol_choices
            ),
            Some(name) => assert!(
                model.protocol_choices.contains(name),
                "protocol {name} selected, expected one of {:?}",
                model.protocol_choices
            ),
        }
        for summary in group.summaries() {
            assert_eq!(
                summary.instance_id,
                model.instance_of(&summary.member_id),
                "instance id of {}",
                summary.member_id
            );
        }
        let joining: BTreeSet<String> = model
            .members
            .iter()
            .filter(|(_, member)| member.joining)
            .map(|(member_id, _)| member_id.clone())
            .collect();
        let syncing: BTreeSet<String> = model
            .members
            .iter()
            .filter(|(_, member)| member.syncing)
            .map(|(member_id, _)| member_id.clone())
            .collect();
        assert_eq!(self.parked_joins, joining, "parked joins");
        assert_eq!(self.parked_syncs, syncing, "parked syncs");
        if group.state() == GroupState::Stable {
            for (member_id, member) in &model.members {
                assert_eq!(
                    group.assignment_of(member_id),
                    Some(member.assignment.clone()),
                    "assignment of {member_id}"
                );
            }
        }
        if let Some(next_event_ms) = model.next_deadline_ms() {
            assert!(
                group
                    .next_deadline()
                    .is_some_and(|deadline| deadline <= millis(next_event_ms)),
                "next_deadline {:?} misses the event at {next_event_ms} ms",
                group.next_deadline()
            );
        }
    }
}

struct GroupAgainstModel;

impl StateMachineTest for GroupAgainstModel {
    type SystemUnderTest = Harness;
    type Reference = Reference;

    fn init_test(model: &Model) -> Harness {
        let limits = GroupLimits {
            members_max: model.limits.members_max,
            initial_rebalance_delay: millis(model.limits.initial_delay_ms),
            empty_retention: millis(600_000),
        };
        Harness {
            group: Group::with_generation("g", model.initial_generation, None, limits),
            now: Duration::ZERO,
            parked_joins: BTreeSet::new(),
            parked_syncs: BTreeSet::new(),
        }
    }

    fn apply(mut harness: Harness, model: &Model, transition: Transition) -> Harness {
        let generation_before = harness.group.generation();
        let (answer, completions, joined_now) = harness.run(model, &transition);
        assert!(
            harness.group.generation() >= generation_before,
            "the generation went back from {generation_before} to {}",
            harness.group.generation()
        );
        harness.record_parked(&answer, &completions);

        harness.check_answers(model, &answer, &completions, &joined_now);
        harness
    }

    fn check_invariants(harness: &Harness, model: &Model) {
        harness.check_invariants(model.limits);
        harness.check_against(model);
        harness.check_commits(model);
    }
}

// 256 cases (proptest's default) of up to 60 transitions run in about 2 s in a debug build;
// PROPTEST_CASES=20000 makes a longer campaign. Failing cases are saved to the regressions file
// (relative to the package directory, where cargo runs integration tests) and replayed first.
prop_state_machine! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/group_model.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_group_agrees_with_the_reference_model(sequential 1..=60 => GroupAgainstModel);
}
