//! Partition assignors: the group leader runs the one the coordinator chose over every member's
//! subscription. Pure functions of their input, so every leader (and every test) computes the
//! same assignment from the same subscriptions, and so do Java clients for range and round-robin.
//!
//! - `range`: per topic, members in order, each a contiguous run; the first members get one
//!   extra when the count does not divide (Java's `RangeAssignor`).
//! - `roundrobin`: every topic-partition in (topic, partition) order dealt to the members in
//!   order, skipping members not subscribed to its topic (Java's `RoundRobinAssignor`).
//! - `cooperative-sticky`: balanced, keeping each member's owned partitions where balance
//!   allows; a partition moving between members is withheld for one generation so its owner
//!   can revoke it first (KIP-429), and the follow-up rebalance hands it over.
//!
//! Member order is Java's: static members (with a `group.instance.id`) first, by instance id,
//! then dynamic members by member id. Static members' order thus survives restarts, which new
//! member ids would not.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use crate::types::TopicPartition;

/// A partition assignment strategy, by its protocol name in JoinGroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AssignorKind {
    Range,
    RoundRobin,
    CooperativeSticky,
}

impl AssignorKind {
    /// The protocol name Java clients and librdkafka use.
    pub fn protocol_name(self) -> &'static str {
        match self {
            AssignorKind::Range => "range",
            AssignorKind::RoundRobin => "roundrobin",
            AssignorKind::CooperativeSticky => "cooperative-sticky",
        }
    }

    pub fn from_protocol_name(name: &str) -> Option<AssignorKind> {
        [
            AssignorKind::Range,
            AssignorKind::RoundRobin,
            AssignorKind::CooperativeSticky,
        ]
        .into_iter()
        .find(|kind| kind.protocol_name() == name)
    }

    /// Whether the assignor supports the cooperative rebalance protocol (KIP-429).
    pub fn is_cooperative(self) -> bool {
        self == AssignorKind::CooperativeSticky
    }
}

/// One member's subscription as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberSubscription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub topics: BTreeSet<String>,
    /// Partitions the member owns going into this rebalance (cooperative members keep theirs).
    pub owned: Vec<TopicPartition>,
    /// The generation in which it owned them; -1 if unknown.
    pub generation: i32,
}

/// Member id → the partitions it gets. Every member is present, possibly with nothing.
pub(crate) type GroupAssignment = BTreeMap<String, BTreeSet<TopicPartition>>;

/// Runs `kind` over `members`; `partitions` gives each existing topic's partition count
/// (topics missing from it get no assignment).
pub(crate) fn assign(
    kind: AssignorKind,
    members: &[MemberSubscription],
    partitions: &BTreeMap<String, i32>,
) -> GroupAssignment {
    let ordered = java_order(members);
    match kind {
        AssignorKind::Range => range(&ordered, partitions),
        AssignorKind::RoundRobin => round_robin(&ordered, partitions),
        AssignorKind::CooperativeSticky => cooperative_sticky(members, partitions),
    }
}

/// Java's `MemberInfo` order: static members by instance id first, then dynamic by member id.
fn java_order(members: &[MemberSubscription]) -> Vec<&MemberSubscription> {
    let mut ordered: Vec<&MemberSubscription> = members.iter().collect();
    ordered.sort_by(|a, b| match (&a.instance_id, &b.instance_id) {
        (Some(x), Some(y)) => x.cmp(y).then_with(|| a.member_id.cmp(&b.member_id)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.member_id.cmp(&b.member_id),
    });
    ordered
}

fn empty_assignment(members: &[&MemberSubscription]) -> GroupAssignment {
    members
        .iter()
        .map(|member| (member.member_id.clone(), BTreeSet::new()))
        .collect()
}

fn range(members: &[&MemberSubscription], partitions: &BTreeMap<String, i32>) -> GroupAssignment {
    let mut assignment = empty_assignment(members);
    for (topic, &count) in partitions {
        let consumers: Vec<&&MemberSubscription> = members
            .iter()
            .filter(|member| member.topics.contains(topic))
            .collect();
        if consumers.is_empty() || count <= 0 {
            continue;
        }
        let count = count as usize;
        let per_member = count / consumers.len();
        let extra = count % consumers.len();
        for (index, member) in consumers.iter().enumerate() {
            let start = per_member * index + index.min(extra);
            let length = per_member + usize::from(index < extra);
            let owned = assignment.entry(member.member_id.clone()).or_default();
            owned.extend((start..start + length).map(|p| TopicPartition::new(topic, p as i32)));
        }
    }
    assignment
}

fn round_robin(
    members: &[&MemberSubscription],
    partitions: &BTreeMap<String, i32>,
) -> GroupAssignment {
    let mut assignment = empty_assignment(members);
    if members.is_empty() {
        return assignment;
    }
    let subscribed: BTreeSet<&String> = members.iter().flat_map(|m| &m.topics).collect();
    let mut next = 0;
    for topic in subscribed {
        let Some(&count) = partitions.get(topic) else {
            continue;
        };
        for partition in 0..count.max(0) {
            // Some member subscribes to `topic` (it came from a subscription), so this ends.
            while !members[next].topics.contains(topic) {
                next = (next + 1) % members.len();
            }
            assignment
                .entry(members[next].member_id.clone())
                .or_default()
                .insert(TopicPartition::new(topic, partition));
            next = (next + 1) % members.len();
        }
    }
    assignment
}

fn cooperative_sticky(
    members: &[MemberSubscription],
    partitions: &BTreeMap<String, i32>,
) -> GroupAssignment {
    let by_id: BTreeMap<&str, &MemberSubscription> =
        members.iter().map(|m| (m.member_id.as_str(), m)).collect();
    let exists = |tp: &TopicPartition| {
        partitions
            .get(&tp.topic)
            .is_some_and(|&count| tp.partition >= 0 && tp.partition < count)
    };
    let owners = previous_owners(&by_id, exists);

    let mut current: BTreeMap<&str, BTreeSet<TopicPartition>> =
        by_id.keys().map(|id| (*id, BTreeSet::new())).collect();
    for (tp, owner) in &owners {
        current.entry(*owner).or_default().insert(tp.clone());
    }

    // Partitions nobody validly owns go, in order, to the least loaded member subscribed.
    let subscribed_partitions: BTreeSet<TopicPartition> = by_id
        .values()
        .flat_map(|member| &member.topics)
        .filter_map(|topic| partitions.get(topic).map(|&count| (topic, count)))
        .flat_map(|(topic, count)| (0..count.max(0)).map(move |p| TopicPartition::new(topic, p)))
        .collect();
    for tp in subscribed_partitions {
        if owners.contains_key(&tp) {
            continue;
        }
        let receiver = by_id
            .values()
            .filter(|member| member.topics.contains(&tp.topic))
            .min_by_key(|member| (current[member.member_id.as_str()].len(), &member.member_id));
        if let Some(receiver) = receiver {
            current
                .get_mut(receiver.member_id.as_str())
                .expect("every member has an entry")
                .insert(tp);
        }
    }

    balance(&by_id, &owners, &mut current);

    // KIP-429: a partition changing hands is withheld this generation; its owner revokes it,
    // rejoins, and the follow-up rebalance gives it to the new member.
    let mut assignment: GroupAssignment = BTreeMap::new();
    for (member, assigned) in current {
        let kept = assigned
            .into_iter()
            .filter(|tp| owners.get(tp).is_none_or(|owner| *owner == member))
            .collect();
        assignment.insert(member.to_string(), kept);
    }
    assignment
}

/// Each partition's valid previous owner: the member claiming it in the highest generation,
/// still subscribed to its topic. Two claims in the same highest generation cancel out (one
/// of them is stale, and we cannot tell which).
fn previous_owners<'a>(
    by_id: &BTreeMap<&'a str, &MemberSubscription>,
    exists: impl Fn(&TopicPartition) -> bool,
) -> BTreeMap<TopicPartition, &'a str> {
    let mut claims: BTreeMap<TopicPartition, (i32, Vec<&'a str>)> = BTreeMap::new();
    for (&id, member) in by_id {
        for tp in &member.owned {
            if !exists(tp) || !member.topics.contains(&tp.topic) {
                continue;
            }
            let claim = claims
                .entry(tp.clone())
                .or_insert((member.generation, Vec::new()));
            match member.generation.cmp(&claim.0) {
                Ordering::Greater => *claim = (member.generation, vec![id]),
                Ordering::Equal if !claim.1.contains(&id) => claim.1.push(id),
                _ => {}
            }
        }
    }
    claims
        .into_iter()
        .filter_map(|(tp, (_, claimants))| match claimants.as_slice() {
            [only] => Some((tp, *only)),
            _ => None,
        })
        .collect()
}

/// Moves partitions from the most to the least loaded members until no member could take one
/// from another and leave them closer (for identical subscriptions: counts within one). A
/// donor gives away partitions it did not own before first, so owned ones stay if they can.
fn balance(
    by_id: &BTreeMap<&str, &MemberSubscription>,
    owners: &BTreeMap<TopicPartition, &str>,
    current: &mut BTreeMap<&str, BTreeSet<TopicPartition>>,
) {
    loop {
        let mut donors: Vec<&str> = current.keys().copied().collect();
        donors.sort_by_key(|id| (std::cmp::Reverse(current[id].len()), *id));
        let mut moved = None;
        'search: for donor in donors {
            let load = current[donor].len();
            let mut candidates: Vec<&TopicPartition> = current[donor].iter().collect();
            // Not-owned-before first, then from the highest partition down: deterministic.
            candidates.sort_by_key(|tp| (owners.get(*tp) == Some(&donor), std::cmp::Reverse(*tp)));
            for tp in candidates {
                let receiver = by_id
                    .values()
                    .filter(|member| {
                        member.member_id != donor
                            && member.topics.contains(&tp.topic)
                            && current[member.member_id.as_str()].len() + 1 < load
                    })
                    .min_by_key(|member| {
                        (current[member.member_id.as_str()].len(), &member.member_id)
                    });
                if let Some(receiver) = receiver {
                    moved = Some((donor, receiver.member_id.as_str(), tp.clone()));
                    break 'search;
                }
            }
        }
        let Some((donor, receiver, tp)) = moved else {
            return;
        };
        current.get_mut(donor).expect("donor").remove(&tp);
        current.get_mut(receiver).expect("receiver").insert(tp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member(id: &str, topics: &[&str]) -> MemberSubscription {
        MemberSubscription {
            member_id: id.to_string(),
            instance_id: None,
            topics: topics.iter().map(|t| t.to_string()).collect(),
            owned: Vec::new(),
            generation: -1,
        }
    }

    fn owning(
        mut m: MemberSubscription,
        generation: i32,
        owned: &[(&str, i32)],
    ) -> MemberSubscription {
        m.generation = generation;
        m.owned = owned
            .iter()
            .map(|(t, p)| TopicPartition::new(*t, *p))
            .collect();
        m
    }

    fn topics(counts: &[(&str, i32)]) -> BTreeMap<String, i32> {
        counts.iter().map(|(t, c)| (t.to_string(), *c)).collect()
    }

    fn of(assignment: &GroupAssignment, member: &str) -> Vec<(String, i32)> {
        assignment[member]
            .iter()
            .map(|tp| (tp.topic.clone(), tp.partition))
            .collect()
    }

    fn tps(list: &[(&str, i32)]) -> Vec<(String, i32)> {
        list.iter().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    #[test]
    fn range_gives_contiguous_runs_per_topic_with_the_first_members_taking_the_extra() {
        let members = [
            member("c", &["t"]),
            member("a", &["t"]),
            member("b", &["t"]),
        ];
        let result = assign(AssignorKind::Range, &members, &topics(&[("t", 7)]));
        assert_eq!(of(&result, "a"), tps(&[("t", 0), ("t", 1), ("t", 2)]));
        assert_eq!(of(&result, "b"), tps(&[("t", 3), ("t", 4)]));
        assert_eq!(of(&result, "c"), tps(&[("t", 5), ("t", 6)]));
    }

    #[test]
    fn range_orders_static_members_by_instance_id_before_dynamic_ones() {
        let mut first = member("zzz", &["t"]);
        first.instance_id = Some("a".into());
        let mut second = member("aaa", &["t"]);
        second.instance_id = Some("b".into());
        let dynamic = member("0", &["t"]);
        let result = assign(
            AssignorKind::Range,
            &[dynamic, second, first],
            &topics(&[("t", 3)]),
        );
        assert_eq!(of(&result, "zzz"), tps(&[("t", 0)]));
        assert_eq!(of(&result, "aaa"), tps(&[("t", 1)]));
        assert_eq!(of(&result, "0"), tps(&[("t", 2)]));
    }

    #[test]
    fn round_robin_deals_sorted_partitions_skipping_members_not_subscribed() {
        // Java's documented example: C0 [t0], C1 [t0, t1], C2 [t0, t1, t2]; t0 1, t1 2, t2 3.
        let members = [
            member("c0", &["t0"]),
            member("c1", &["t0", "t1"]),
            member("c2", &["t0", "t1", "t2"]),
        ];
        let result = assign(
            AssignorKind::RoundRobin,
            &members,
            &topics(&[("t0", 1), ("t1", 2), ("t2", 3)]),
        );
        assert_eq!(of(&result, "c0"), tps(&[("t0", 0)]));
        assert_eq!(of(&result, "c1"), tps(&[("t1", 0)]));
        assert_eq!(
            of(&result, "c2"),
            tps(&[("t1", 1), ("t2", 0), ("t2", 1), ("t2", 2)])
        );
    }

    #[test]
    fn missing_topics_are_left_out_and_every_member_is_answered() {
        let members = [member("a", &["gone"]), member("b", &["t"])];
        for kind in [
            AssignorKind::Range,
            AssignorKind::RoundRobin,
            AssignorKind::CooperativeSticky,
        ] {
            let result = assign(kind, &members, &topics(&[("t", 2)]));
            assert!(result["a"].is_empty(), "{kind:?}");
            assert_eq!(result["b"].len(), 2, "{kind:?}");
        }
    }

    #[test]
    fn cooperative_sticky_withholds_a_moving_partition_until_its_owner_revokes_it() {
        let a = owning(
            member("a", &["t"]),
            1,
            &[("t", 0), ("t", 1), ("t", 2), ("t", 3)],
        );
        let b = member("b", &["t"]);
        let first = assign(
            AssignorKind::CooperativeSticky,
            &[a, b.clone()],
            &topics(&[("t", 4)]),
        );
        assert_eq!(first["a"].len(), 2, "a keeps half");
        assert!(first["b"].is_empty(), "b waits for a to revoke");

        let a = owning(member("a", &["t"]), 2, &[]);
        let a = MemberSubscription {
            owned: first["a"].iter().cloned().collect(),
            ..a
        };
        let second = assign(
            AssignorKind::CooperativeSticky,
            &[a, b],
            &topics(&[("t", 4)]),
        );
        assert_eq!(second["a"], first["a"], "no further moves");
        assert_eq!(second["b"].len(), 2, "b gets what a gave up");
    }

    #[test]
    fn stale_claims_lose_to_newer_generations_and_ties_cancel() {
        let a = owning(member("a", &["t"]), 5, &[("t", 0)]);
        let b = owning(member("b", &["t"]), 4, &[("t", 0), ("t", 1)]);
        let owners = {
            let by_id: BTreeMap<&str, &MemberSubscription> =
                [("a", &a), ("b", &b)].into_iter().collect();
            previous_owners(&by_id, |_| true)
                .into_iter()
                .map(|(tp, owner)| (tp.partition, owner.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(owners, vec![(0, "a".to_string()), (1, "b".to_string())]);

        let c = owning(member("c", &["t"]), 5, &[("t", 0)]);
        let by_id: BTreeMap<&str, &MemberSubscription> =
            [("a", &a), ("c", &c)].into_iter().collect();
        assert!(previous_owners(&by_id, |_| true).is_empty());
    }

    // ---- properties ---------------------------------------------------------------------

    fn all_partitions(counts: &BTreeMap<String, i32>) -> BTreeSet<TopicPartition> {
        counts
            .iter()
            .flat_map(|(t, &c)| (0..c).map(move |p| TopicPartition::new(t, p)))
            .collect()
    }

    fn counts_strategy() -> impl Strategy<Value = BTreeMap<String, i32>> {
        prop::collection::btree_map("t[0-3]", 0..9i32, 1..4)
    }

    /// Identical subscriptions to every topic; `members` members.
    fn identical(members: usize, counts: &BTreeMap<String, i32>) -> Vec<MemberSubscription> {
        let names: Vec<&str> = counts.keys().map(String::as_str).collect();
        (0..members)
            .map(|i| member(&format!("m{i:02}"), &names))
            .collect()
    }

    fn assert_exactly_once(
        assignment: &GroupAssignment,
        members: &[MemberSubscription],
        counts: &BTreeMap<String, i32>,
    ) -> Result<(), TestCaseError> {
        let mut seen = BTreeSet::new();
        for (id, partitions) in assignment {
            let subscriber = members.iter().find(|m| &m.member_id == id).unwrap();
            for tp in partitions {
                prop_assert!(seen.insert(tp.clone()), "{tp} assigned twice");
                prop_assert!(
                    subscriber.topics.contains(&tp.topic),
                    "{tp} to non-subscriber {id}"
                );
            }
        }
        let subscribed: BTreeSet<TopicPartition> = all_partitions(counts)
            .into_iter()
            .filter(|tp| members.iter().any(|m| m.topics.contains(&tp.topic)))
            .collect();
        prop_assert_eq!(seen, subscribed);
        Ok(())
    }

    fn spread(assignment: &GroupAssignment) -> usize {
        let sizes: Vec<usize> = assignment.values().map(BTreeSet::len).collect();
        sizes.iter().max().unwrap_or(&0) - sizes.iter().min().unwrap_or(&0)
    }

    proptest! {
        #[test]
        fn every_subscribed_partition_is_assigned_exactly_once(
            counts in counts_strategy(),
            subscriptions in prop::collection::vec(prop::collection::btree_set("t[0-3]", 0..4), 1..6),
            kind in prop::sample::select(vec![AssignorKind::Range, AssignorKind::RoundRobin, AssignorKind::CooperativeSticky]),
        ) {
            let members: Vec<MemberSubscription> = subscriptions
                .iter()
                .enumerate()
                .map(|(i, topics)| MemberSubscription {
                    topics: topics.clone(),
                    ..member(&format!("m{i}"), &[])
                })
                .collect();
            let result = assign(kind, &members, &counts);
            prop_assert_eq!(result.len(), members.len());
            assert_exactly_once(&result, &members, &counts)?;
        }

        #[test]
        fn identical_subscriptions_are_balanced_within_one(
            counts in counts_strategy(),
            members in 1..7usize,
        ) {
            let subscriptions = identical(members, &counts);
            for kind in [AssignorKind::RoundRobin, AssignorKind::CooperativeSticky] {
                let result = assign(kind, &subscriptions, &counts);
                prop_assert!(spread(&result) <= 1, "{:?}: {:?}", kind, result);
            }
            // Range balances each topic on its own.
            let result = assign(AssignorKind::Range, &subscriptions, &counts);
            for topic in counts.keys() {
                let per_topic: GroupAssignment = result
                    .iter()
                    .map(|(m, ps)| (m.clone(), ps.iter().filter(|tp| &tp.topic == topic).cloned().collect()))
                    .collect();
                prop_assert!(spread(&per_topic) <= 1);
            }
        }

        #[test]
        fn assignments_do_not_depend_on_the_order_members_arrive_in(
            counts in counts_strategy(),
            members in 1..6usize,
            rotation in 0..6usize,
            kind in prop::sample::select(vec![AssignorKind::Range, AssignorKind::RoundRobin, AssignorKind::CooperativeSticky]),
        ) {
            let subscriptions = identical(members, &counts);
            let mut rotated = subscriptions.clone();
            rotated.rotate_left(rotation % members);
            prop_assert_eq!(assign(kind, &subscriptions, &counts), assign(kind, &rotated, &counts));
        }

        /// Members own a random, valid split of the partitions; some leave and some join. The
        /// cooperative assignment never hands a partition to one member while another owns it,
        /// keeps what balance allows, and after the follow-up rebalance is complete, balanced
        /// and unchanged by a further one.
        #[test]
        fn cooperative_sticky_is_sticky_safe_and_converges(
            counts in counts_strategy(),
            before in 1..6usize,
            after in 1..6usize,
            owners in prop::collection::vec(0..6usize, 0..40),
        ) {
            let names: Vec<&str> = counts.keys().map(String::as_str).collect();
            let partitions: Vec<TopicPartition> = all_partitions(&counts).into_iter().collect();
            let mut members: Vec<MemberSubscription> = (0..after)
                .map(|i| owning(member(&format!("m{i:02}"), &names), 3, &[]))
                .collect();
            // Partition i belonged to old member owners[i] (if it is still in the group).
            for (index, tp) in partitions.iter().enumerate() {
                let owner = owners.get(index).copied().unwrap_or(index) % before;
                if owner < after {
                    members[owner].owned.push(tp.clone());
                }
            }
            let first = assign(AssignorKind::CooperativeSticky, &members, &counts);
            let total = partitions.len();
            let floor = total / after;
            for m in &members {
                let got = &first[&m.member_id];
                for tp in got {
                    let owner = members.iter().find(|o| o.owned.contains(tp));
                    prop_assert!(owner.is_none_or(|o| o.member_id == m.member_id),
                        "{} given {} while another member owns it", m.member_id, tp);
                }
                let kept = m.owned.iter().filter(|tp| got.contains(*tp)).count();
                prop_assert!(kept >= m.owned.len().min(floor), "{} kept {} of {}", m.member_id, kept, m.owned.len());
            }

            // Owners revoke what they lost and rejoin owning exactly what they were given.
            let followed: Vec<MemberSubscription> = members
                .iter()
                .map(|m| owning(m.clone(), 4, &[]))
                .map(|m| MemberSubscription { owned: first[&m.member_id].iter().cloned().collect(), ..m })
                .collect();
            let second = assign(AssignorKind::CooperativeSticky, &followed, &counts);
            assert_exactly_once(&second, &followed, &counts)?;
            prop_assert!(spread(&second) <= 1);
            for m in &followed {
                prop_assert!(first[&m.member_id].is_subset(&second[&m.member_id]));
            }
            let settled: Vec<MemberSubscription> = followed
                .iter()
                .map(|m| MemberSubscription { owned: second[&m.member_id].iter().cloned().collect(), generation: 5, ..m.clone() })
                .collect();
            prop_assert_eq!(assign(AssignorKind::CooperativeSticky, &settled, &counts), second);
        }
    }
}
