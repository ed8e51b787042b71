use super::*;

const SECOND: Duration = Duration::from_secs(1);

fn limits() -> GroupLimits {
    GroupLimits {
        members_max: 100,
        initial_rebalance_delay: Duration::ZERO,
        empty_retention: Duration::from_secs(600),
    }
}

fn request(member_id: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.into(),
        instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: 10 * SECOND,
        rebalance_timeout: 30 * SECOND,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|name| Protocol {
                name: (*name).into(),
                metadata: Bytes::from(format!("{name}-{member_id}")),
            })
            .collect(),
        require_known_member_id: true,
        supports_skip_assignment: true,
    }
}

/// Joins a new dynamic member through MEMBER_ID_REQUIRED; returns its id and the reply.
fn join_new(
    group: &mut Group,
    now: Duration,
    suffix: &str,
) -> (String, Reply<JoinResult>, Completions) {
    let (first, _) = group.join(now, request("", &["range"]), suffix);
    let Reply::Now(Err(GroupError::MemberIdRequired(member_id))) = first else {
        panic!("expected MEMBER_ID_REQUIRED, got {first:?}");
    };
    let (reply, completions) = group.join(now, request(&member_id, &["range"]), "unused");
    (member_id, reply, completions)
}

fn sync(
    group: &mut Group,
    now: Duration,
    member_id: &str,
    assignments: &[(&str, &str)],
) -> (Reply<SyncResult>, Completions) {
    group.sync(
        now,
        SyncRequest {
            member_id: member_id.into(),
            instance_id: None,
            generation: group.generation(),
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignments: assignments
                .iter()
                .map(|(m, a)| ((*m).to_owned(), Bytes::copy_from_slice(a.as_bytes())))
                .collect(),
        },
    )
}

fn joined(completions: &Completions, member_id: &str) -> JoinAnswer {
    completions
        .joins
        .iter()
        .find(|(id, _)| id == member_id)
        .and_then(|(_, result)| result.clone().ok())
        .unwrap_or_else(|| panic!("no join answer for {member_id} in {completions:?}"))
}

/// A Stable group of the given members (joined one after another, each rebalance completed).
fn stable_group(suffixes: &[&str]) -> (Group, Vec<String>) {
    let mut group = Group::new("g", limits());
    let mut ids = Vec::new();
    for suffix in suffixes {
        let (id, _, completions) = join_new(&mut group, Duration::ZERO, suffix);
        ids.push(id);
        let mut completions = completions;
        // Earlier members rejoin, as they would on REBALANCE_IN_PROGRESS.
        for earlier in &ids[..ids.len() - 1] {
            let (_, more) = group.join(Duration::ZERO, request(earlier, &["range"]), "unused");
            completions.joins.extend(more.joins);
        }
        let leader = group.leader().unwrap().to_owned();
        let assignments: Vec<(String, String)> = ids
            .iter()
            .map(|id| (id.clone(), format!("gen{}-{id}", group.generation())))
            .collect();
        let borrowed: Vec<(&str, &str)> = assignments
            .iter()
            .map(|(m, a)| (m.as_str(), a.as_str()))
            .collect();
        for follower in ids.iter().filter(|id| **id != leader) {
            sync(&mut group, Duration::ZERO, follower, &[]);
        }
        sync(&mut group, Duration::ZERO, &leader, &borrowed);
        assert_eq!(group.state(), GroupState::Stable);
    }
    (group, ids)
}

#[test]
fn a_new_member_is_asked_for_a_member_id_then_leads_generation_one() {
    let mut group = Group::new("g", limits());
    let (member_id, reply, completions) = join_new(&mut group, Duration::ZERO, "a");
    assert_eq!(member_id, "client-a");
    assert_eq!(
        reply,
        Reply::Parked {
            member_id: member_id.clone()
        }
    );
    let answer = joined(&completions, &member_id);
    assert_eq!(
        (answer.generation, answer.leader.as_str()),
        (1, member_id.as_str())
    );
    assert_eq!(answer.protocol_name.as_deref(), Some("range"));
    assert_eq!(
        answer.members.len(),
        1,
        "the leader gets every subscription"
    );
    assert_eq!(group.state(), GroupState::CompletingRebalance);

    let (reply, completions) = sync(
        &mut group,
        Duration::ZERO,
        &member_id,
        &[(&member_id, "p0")],
    );
    assert_eq!(
        reply,
        Reply::Parked {
            member_id: member_id.clone()
        }
    );
    assert_eq!(
        completions.syncs[0].1.as_ref().unwrap().assignment,
        Bytes::from("p0")
    );
    assert_eq!(group.state(), GroupState::Stable);
}

#[test]
fn a_second_member_rebalances_the_group_and_followers_wait_for_the_leader() {
    let (mut group, ids) = stable_group(&["a"]);
    let (second, reply, completions) = join_new(&mut group, SECOND, "b");
    assert_eq!(
        reply,
        Reply::Parked {
            member_id: second.clone()
        }
    );
    assert!(
        completions.is_empty(),
        "waits for the first member to rejoin"
    );
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    assert_eq!(
        group.heartbeat(SECOND, &ids[0], None, 1),
        Err(GroupError::RebalanceInProgress)
    );

    let (_, completions) = group.join(SECOND, request(&ids[0], &["range"]), "unused");
    assert_eq!(group.generation(), 2);
    let leader_view = joined(&completions, &ids[0]);
    let follower_view = joined(&completions, &second);
    assert_eq!(leader_view.members.len(), 2);
    assert!(follower_view.members.is_empty());
    assert_eq!(follower_view.leader, ids[0], "the leader stays the leader");

    let (reply, completions) = sync(&mut group, SECOND, &second, &[]);
    assert_eq!(
        reply,
        Reply::Parked {
            member_id: second.clone()
        }
    );
    assert!(completions.is_empty());
    let (_, completions) = sync(
        &mut group,
        SECOND,
        &ids[0],
        &[(&ids[0], "p0"), (&second, "p1")],
    );
    let answers: BTreeMap<String, Bytes> = completions
        .syncs
        .into_iter()
        .map(|(id, r)| (id, r.unwrap().assignment))
        .collect();
    assert_eq!(answers[&second], Bytes::from("p1"));
    assert_eq!(answers[&ids[0]], Bytes::from("p0"));
}

#[test]
fn a_stale_generation_cannot_sync_heartbeat_or_commit() {
    let (group, ids) = stable_group(&["a", "b"]);
    let mut group = group;
    assert_eq!(group.generation(), 2);
    assert_eq!(
        group.heartbeat(SECOND, &ids[0], None, 1),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(
        group.check_commit(&ids[0], None, 1),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(group.check_commit(&ids[0], None, 2), Ok(()));
    assert_eq!(
        group.check_commit("stranger", None, 2),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        group.check_commit("", None, -1),
        Err(GroupError::UnknownMemberId),
        "not a simple consumer's group"
    );
}

#[test]
fn an_empty_group_takes_commits_from_simple_consumers() {
    let group = Group::new("g", limits());
    assert_eq!(group.check_commit("", None, -1), Ok(()));
}

#[test]
fn leaving_rebalances_and_the_last_leaver_empties_the_group() {
    let (mut group, ids) = stable_group(&["a", "b"]);
    let (result, _) = group.leave(SECOND, &ids[1], None);
    assert_eq!(result, Ok(()));
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    let (_, completions) = group.join(SECOND, request(&ids[0], &["range"]), "unused");
    assert_eq!(joined(&completions, &ids[0]).generation, 3);
    let (result, _) = group.leave(SECOND, &ids[0], None);
    assert_eq!(result, Ok(()));
    assert_eq!(group.state(), GroupState::Empty);
    assert_eq!(
        group.generation(),
        4,
        "the empty generation counts too, as in Kafka"
    );
    assert_eq!(
        group.leave(SECOND, &ids[0], None).0,
        Err(GroupError::UnknownMemberId)
    );
}

#[test]
fn a_silent_member_expires_after_its_session_timeout() {
    let (mut group, ids) = stable_group(&["a", "b"]);
    assert_eq!(group.heartbeat(5 * SECOND, &ids[0], None, 2), Ok(()));
    assert!(group.tick(9 * SECOND).is_empty());
    let _ = group.tick(11 * SECOND);
    assert_eq!(
        group.member_ids(),
        vec![ids[0].clone()],
        "b never heartbeat"
    );
    assert_eq!(group.state(), GroupState::PreparingRebalance);
}

#[test]
fn members_that_do_not_rejoin_in_time_are_dropped_when_the_rebalance_times_out() {
    let (mut group, ids) = stable_group(&["a", "b"]);
    let (third, _, _) = join_new(&mut group, SECOND, "c");
    let (_, completions) = group.join(SECOND, request(&ids[0], &["range"]), "unused");
    assert!(completions.is_empty(), "b has not rejoined");
    group.heartbeat(20 * SECOND, &ids[1], None, 2).unwrap_err();
    let completions = group.tick(31 * SECOND);
    assert_eq!(completions.joins.len(), 2);
    assert_eq!(group.member_ids(), vec![ids[0].clone(), third]);
    assert_eq!(group.generation(), 3);
}

#[test]
fn a_member_that_never_syncs_is_dropped_after_the_rebalance_timeout() {
    let mut group = Group::new("g", limits());
    let (a, _, _) = join_new(&mut group, Duration::ZERO, "a");
    assert_eq!(group.state(), GroupState::CompletingRebalance);
    // Heartbeats keep its session alive, but not past the time it had to sync.
    for at in [8, 16, 24] {
        assert_eq!(group.heartbeat(at * SECOND, &a, None, 1), Ok(()));
        let _ = group.tick(at * SECOND);
    }
    let _ = group.tick(29 * SECOND);
    assert!(group.has_members());
    let _ = group.tick(30 * SECOND);
    assert!(!group.has_members(), "{a} joined but never sent SyncGroup");
    assert_eq!(group.state(), GroupState::Empty);
}

#[test]
fn a_rebalance_during_completing_fails_the_waiting_syncs() {
    let (mut group, ids) = stable_group(&["a", "b"]);
    let (_, _) = group.leave(SECOND, &ids[1], None);
    let (_, completions) = group.join(SECOND, request(&ids[0], &["range"]), "unused");
    assert_eq!(group.state(), GroupState::CompletingRebalance);
    assert!(!completions.joins.is_empty());
    let (_, _) = sync(&mut group, SECOND, &ids[0], &[]).clone();
    assert_eq!(
        group.state(),
        GroupState::Stable,
        "the leader alone completes its own sync"
    );
    let (third, _, _) = join_new(&mut group, SECOND, "c");
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    let (_, completions) = group.join(SECOND, request(&ids[0], &["range"]), "unused");
    assert_eq!(group.state(), GroupState::CompletingRebalance);
    let (reply, _) = sync(&mut group, SECOND, &third, &[]);
    assert_eq!(
        reply,
        Reply::Parked {
            member_id: third.clone()
        }
    );
    assert!(joined(&completions, &third).members.is_empty());
    let (fourth, _, _) = join_new(&mut group, SECOND, "d");
    assert_ne!(fourth, third);
    assert_eq!(group.state(), GroupState::PreparingRebalance);
}

#[test]
fn the_protocol_chosen_is_the_one_most_members_prefer_among_those_all_support() {
    let mut group = Group::new("g", limits());
    let mut completions = Completions::default();
    let mut joins = vec![];
    for (suffix, protocols) in [
        ("a", vec!["cooperative-sticky", "range"]),
        ("b", vec!["range", "cooperative-sticky"]),
        ("c", vec!["range"]),
    ] {
        let mut req = request("", &protocols);
        req.require_known_member_id = false;
        let (reply, more) = group.join(Duration::ZERO, req, suffix);
        completions.joins.extend(more.joins);
        if let Reply::Parked { member_id } = reply {
            joins.push((member_id, protocols));
        }
    }
    for (member_id, protocols) in &joins {
        let (_, more) = group.join(Duration::ZERO, request(member_id, protocols), "unused");
        completions.joins.extend(more.joins);
    }
    assert_eq!(
        group.protocol_name(),
        Some("range"),
        "only range is supported by all"
    );
    let mut req = request("", &["roundrobin"]);
    req.require_known_member_id = false;
    assert_eq!(
        group.join(Duration::ZERO, req, "z").0,
        Reply::Now(Err(GroupError::InconsistentGroupProtocol))
    );
}

#[test]
fn a_static_member_that_restarts_takes_its_place_without_a_rebalance() {
    let mut group = Group::new("g", limits());
    let static_join = |member_id: &str| JoinRequest {
        instance_id: Some("instance-1".into()),
        ..request(member_id, &["range"])
    };
    let (reply, completions) = group.join(Duration::ZERO, static_join(""), "a");
    let Reply::Parked {
        member_id: first_id,
    } = reply
    else {
        panic!()
    };
    assert_eq!(first_id, "instance-1-a");
    assert_eq!(joined(&completions, &first_id).generation, 1);
    sync(&mut group, Duration::ZERO, &first_id, &[(&first_id, "p0")]);
    assert_eq!(group.state(), GroupState::Stable);

    // Restarted: no member id, same instance id.
    let (reply, completions) = group.join(SECOND, static_join(""), "b");
    let Reply::Now(Ok(answer)) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(answer.member_id, "instance-1-b");
    assert_eq!(answer.generation, 1, "no rebalance");
    assert!(completions.is_empty());
    assert_eq!(group.state(), GroupState::Stable);
    assert_eq!(group.assignment_of("instance-1-b"), Some(Bytes::from("p0")));
    assert_eq!(
        group.heartbeat(SECOND, &first_id, Some("instance-1"), 1),
        Err(GroupError::FencedInstanceId)
    );
    assert_eq!(
        group.heartbeat(SECOND, "instance-1-b", Some("instance-1"), 1),
        Ok(())
    );
}

#[test]
fn the_first_rebalance_of_an_empty_group_waits_the_initial_delay() {
    let mut group = Group::new(
        "g",
        GroupLimits {
            members_max: 100,
            initial_rebalance_delay: 3 * SECOND,
            empty_retention: Duration::from_secs(600),
        },
    );
    let (a, _, completions) = join_new(&mut group, Duration::ZERO, "a");
    assert!(completions.is_empty());
    let (b, _, completions) = join_new(&mut group, SECOND, "b");
    assert!(completions.is_empty());
    let completions = group.tick(3 * SECOND);
    assert_eq!(
        completions.joins.len(),
        2,
        "{a} and {b} land in one generation"
    );
    assert_eq!(group.generation(), 1);
}

#[test]
fn unused_member_ids_expire_and_a_full_group_refuses_newcomers() {
    let mut group = Group::new(
        "g",
        GroupLimits {
            members_max: 1,
            initial_rebalance_delay: Duration::ZERO,
            empty_retention: Duration::from_secs(600),
        },
    );
    let (_, _, _) = join_new(&mut group, Duration::ZERO, "a");
    let (reply, _) = group.join(Duration::ZERO, request("", &["range"]), "b");
    assert_eq!(reply, Reply::Now(Err(GroupError::GroupMaxSizeReached)));
    let mut other = Group::new("h", limits());
    let (reply, _) = other.join(Duration::ZERO, request("", &["range"]), "x");
    assert!(matches!(
        reply,
        Reply::Now(Err(GroupError::MemberIdRequired(_)))
    ));
    let _ = other.tick(11 * SECOND);
    assert_eq!(
        other
            .join(SECOND * 12, request("client-x", &["range"]), "y")
            .0,
        Reply::Now(Err(GroupError::UnknownMemberId))
    );
}

#[test]
fn a_dead_group_refuses_everything_and_answers_its_parked_requests() {
    let (mut group, ids) = stable_group(&["a", "b"]);
    let (_, _) = group.leave(SECOND, &ids[1], None);
    let completions = group.kill();
    assert!(completions.joins.is_empty());
    assert_eq!(group.state(), GroupState::Dead);
    assert_eq!(
        group.heartbeat(SECOND, &ids[0], None, 2),
        Err(GroupError::CoordinatorNotAvailable)
    );
    assert_eq!(
        group.join(SECOND, request("", &["range"]), "z").0,
        Reply::Now(Err(GroupError::CoordinatorNotAvailable))
    );
}
