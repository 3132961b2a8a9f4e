//! Unit tests of the sans-IO group coordinator.
use super::*;

fn six(_: &str) -> u32 {
    6
}

fn join(c: &mut Coordinator, now: i64, member: &str, token: Token) -> JoinAnswers {
    let topics = vec!["orders".to_string()];
    c.join(
        now,
        JoinRequest {
            group: "g",
            member_id: member,
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            assignor: "range",
            topics: &topics,
        },
        token,
        &six,
    )
}

fn partitions(c: &mut Coordinator, joined: &Joined) -> Vec<u32> {
    c.sync("g", joined.generation, &joined.member_id)
        .unwrap()
        .remove("orders")
        .unwrap_or_default()
}

#[test]
fn first_member_gets_everything_then_a_second_one_triggers_a_rebalance() {
    // Goal: the join barrier, generations, and disjoint full coverage after a rebalance.
    let mut c = Coordinator::new(Limits::default());
    let answers = join(&mut c, 0, "", 1);
    let first = answers[0].1.clone().unwrap();
    assert_eq!(first.generation, 1);
    assert_eq!(partitions(&mut c, &first), vec![0, 1, 2, 3, 4, 5]);
    assert!(
        join(&mut c, 10, "", 2).is_empty(),
        "the newcomer waits for the others"
    );
    assert_eq!(
        c.heartbeat(20, "g", 1, &first.member_id),
        Err(ErrorCode::RebalanceInProgress)
    );
    let answers = join(&mut c, 30, &first.member_id, 3);
    assert_eq!(answers.len(), 2, "both joins answered when everyone is in");
    let joined: Vec<Joined> = answers.into_iter().map(|(_, r)| r.unwrap()).collect();
    assert!(joined.iter().all(|j| j.generation == 2));
    let mut all: Vec<u32> = joined.iter().flat_map(|j| partitions(&mut c, j)).collect();
    all.sort_unstable();
    assert_eq!(all, vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(c.heartbeat(40, "g", 2, &joined[0].member_id), Ok(()));
    assert_eq!(
        c.sync("g", 1, &joined[0].member_id),
        Err(ErrorCode::IllegalGeneration)
    );
}

#[test]
fn a_silent_member_is_dropped_after_its_session_and_its_partitions_move() {
    // Goal: session timeout evicts a dead member; the survivor rebalances to everything.
    let mut c = Coordinator::new(Limits::default());
    let a = join(&mut c, 0, "", 1)[0].1.clone().unwrap();
    join(&mut c, 0, "", 2);
    let answers = join(&mut c, 0, &a.member_id, 3);
    let b = answers
        .iter()
        .map(|(_, r)| r.clone().unwrap())
        .find(|j| j.member_id != a.member_id)
        .unwrap();
    // Only b heartbeats from now on.
    for now in (1_000..=11_000).step_by(1_000) {
        let _ = c.heartbeat(now, "g", 2, &b.member_id);
        assert!(c.tick(now, &six).is_empty());
    }
    assert!(c.tick(11_500, &six).is_empty(), "a expired; b must rejoin");
    assert_eq!(
        c.heartbeat(11_600, "g", 2, &b.member_id),
        Err(ErrorCode::RebalanceInProgress)
    );
    let answers = join(&mut c, 11_700, &b.member_id, 4);
    let b = answers[0].1.clone().unwrap();
    assert_eq!(b.members, vec![b.member_id.clone()]);
    assert_eq!(partitions(&mut c, &b), vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn members_that_do_not_rejoin_in_time_are_removed() {
    // Goal: the rebalance timeout bounds how long one slow member holds everyone back.
    let mut c = Coordinator::new(Limits::default());
    let a = join(&mut c, 0, "", 1)[0].1.clone().unwrap();
    assert!(join(&mut c, 100, "", 2).is_empty());
    let answers = c.tick(10_200, &six);
    assert_eq!(
        answers.len(),
        1,
        "the newcomer is answered once a's time is up"
    );
    let b = answers[0].1.clone().unwrap();
    assert_ne!(b.member_id, a.member_id);
    assert_eq!(
        c.heartbeat(10_300, "g", b.generation, &a.member_id),
        Err(ErrorCode::UnknownMemberId)
    );
}

#[test]
fn leave_rebalances_and_commits_are_checked() {
    // Goal: leaving hands partitions over; only current members (or anyone, while the
    // group is empty) may commit.
    let mut c = Coordinator::new(Limits::default());
    let a = join(&mut c, 0, "", 1)[0].1.clone().unwrap();
    assert_eq!(c.check_commit("g", a.generation, &a.member_id), Ok(()));
    assert_eq!(
        c.check_commit("g", a.generation + 1, &a.member_id),
        Err(ErrorCode::IllegalGeneration)
    );
    assert_eq!(
        c.check_commit("g", -1, ""),
        Err(ErrorCode::RebalanceInProgress)
    );
    c.leave(5, "g", &a.member_id, &six).unwrap();
    assert_eq!(
        c.check_commit("g", -1, ""),
        Ok(()),
        "empty group: an admin may reset offsets"
    );
    c.store_offset("g", "orders", 3, 42);
    assert_eq!(c.committed("g", "orders", 3), Some(42));
    assert_eq!(c.list(), vec![("g".to_string(), Phase::Empty)]);
}

#[test]
fn bad_joins_are_refused() {
    let mut c = Coordinator::new(Limits::default());
    let topics = vec!["t".to_string()];
    let request = |session, assignor, member| JoinRequest {
        group: "g",
        member_id: member,
        session_timeout_ms: session,
        rebalance_timeout_ms: 1000,
        assignor,
        topics: &topics,
    };
    assert_eq!(
        c.join(0, request(10, "range", ""), 1, &six)[0].1,
        Err(ErrorCode::InvalidSessionTimeout)
    );
    assert_eq!(
        c.join(0, request(5000, "sticky-ish", ""), 2, &six)[0].1,
        Err(ErrorCode::UnknownAssignor)
    );
    assert_eq!(
        c.join(0, request(5000, "range", "ghost"), 3, &six)[0].1,
        Err(ErrorCode::UnknownMemberId)
    );
}

fn join_group(c: &mut Coordinator, group: &str, rebalance_ms: u32, token: Token) -> JoinAnswers {
    let topics = vec!["orders".to_string()];
    c.join(
        0,
        JoinRequest {
            group,
            member_id: "",
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: rebalance_ms,
            assignor: "range",
            topics: &topics,
        },
        token,
        &six,
    )
}

#[test]
fn peers_hit_limits_with_clear_errors() {
    // Goal: a group id past its limit (member ids are built from it and once overflowed the
    // wire), a rebalance timeout past the broker's, too many groups or members: each is
    // refused with its own error, and nothing is created.
    let limits = Limits {
        groups_max: 2,
        members_max: 2,
        offset_groups_max: 1,
        ..Limits::default()
    };
    let mut c = Coordinator::new(limits);
    let long = "g".repeat(limits.group_id_bytes_max + 1);
    assert_eq!(
        join_group(&mut c, &long, 10_000, 1)[0]
            .1
            .clone()
            .unwrap_err(),
        ErrorCode::InvalidGroupId
    );
    assert_eq!(
        join_group(&mut c, "a", limits.rebalance_timeout_ms_max + 1, 2)[0]
            .1
            .clone()
            .unwrap_err(),
        ErrorCode::InvalidRebalanceTimeout
    );
    assert!(c.list().is_empty(), "refused joins create no group");
    assert!(join_group(&mut c, "a", 10_000, 3)[0].1.is_ok());
    assert!(join_group(&mut c, "b", 10_000, 4)[0].1.is_ok());
    assert_eq!(
        join_group(&mut c, "c", 10_000, 5)[0].1.clone().unwrap_err(),
        ErrorCode::TooManyGroups
    );
    // "a" rebalances with a second member (parked), then a third is refused.
    assert!(join_group(&mut c, "a", 10_000, 6).is_empty());
    assert_eq!(
        join_group(&mut c, "a", 10_000, 7)[0].1.clone().unwrap_err(),
        ErrorCode::GroupMaxSizeReached
    );
    assert_eq!(
        c.check_commit(&long, -1, ""),
        Err(ErrorCode::InvalidGroupId)
    );
    c.store_offset("x", "orders", 0, 1);
    assert_eq!(
        c.check_commit("y", -1, ""),
        Err(ErrorCode::TooManyGroups),
        "offsets of one more group are refused"
    );
    assert_eq!(c.check_commit("x", -1, ""), Ok(()));
}

#[test]
fn empty_groups_are_forgotten_but_their_offsets_stay() {
    // Goal: groups made and left by peers do not accumulate.
    let mut c = Coordinator::new(Limits::default());
    for (n, group) in ["a", "b", "c"].iter().enumerate() {
        let joined = join_group(&mut c, group, 10_000, n as Token + 1)[0]
            .1
            .clone()
            .unwrap();
        c.leave(1, group, &joined.member_id, &six).unwrap();
    }
    c.store_offset("b", "orders", 0, 42);
    c.tick(2, &six);
    assert_eq!(c.groups.len(), 0, "no empty group kept");
    assert_eq!(c.list(), vec![("b".to_string(), Phase::Empty)]);
    assert_eq!(c.committed("b", "orders", 0), Some(42));
}

#[test]
fn forgetting_a_group_answers_its_parked_joins_and_drops_its_offsets() {
    // Goal: a coordinator that lost the group's partition keeps nothing of it and leaves no
    // join hanging; other groups are untouched.
    let mut c = Coordinator::new(Limits::default());
    let first = join(&mut c, 0, "", 1)[0].1.clone().unwrap();
    assert!(join(&mut c, 10, "", 2).is_empty(), "the newcomer is parked");
    c.store_offset("g", "orders", 0, 42);
    c.store_offset("other", "orders", 0, 7);
    let (answers, classic) = c.forget(&|group| group == "g");
    assert_eq!(answers, vec![(2, Err(ErrorCode::NotCoordinator))]);
    assert!(classic.is_empty());
    assert_eq!(c.committed("g", "orders", 0), None);
    assert_eq!(c.committed("other", "orders", 0), Some(7));
    assert!(!c.has_members("g"));
    assert_eq!(
        c.heartbeat(20, "g", first.generation, &first.member_id),
        Err(ErrorCode::UnknownMemberId)
    );
}
