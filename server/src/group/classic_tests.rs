use super::*;

fn join(member_id: &str, instance: Option<&str>, protocols: &[&str]) -> Join {
    Join {
        group: "g".into(),
        member_id: member_id.into(),
        instance_id: instance.map(Into::into),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("md-{p}"))))
            .collect(),
        require_known_member_id: true,
    }
}

#[allow(clippy::too_many_arguments)]
fn sync(
    c: &mut Classic,
    now: i64,
    group: &str,
    generation: i32,
    member: &str,
    instance: Option<&str>,
    assignments: Vec<(String, Bytes)>,
    token: Token,
) -> Vec<Answer> {
    let request = members::SyncGroup {
        group: group.into(),
        generation,
        member_id: member.into(),
        group_instance_id: instance.map(Into::into),
        assignments,
    };
    c.sync(now, request, token)
}

fn joined(answers: &[Answer], token: Token) -> Joined {
    answers
        .iter()
        .find_map(|a| match a {
            Answer::Join(t, j) if *t == token => Some(j.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no join answer for {token} in {answers:?}"))
}

fn synced(answers: &[Answer], token: Token) -> (i16, Bytes) {
    answers
        .iter()
        .find_map(|a| match a {
            Answer::Sync(t, e, b) if *t == token => Some((*e, b.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no sync answer for {token} in {answers:?}"))
}

/// A new member's id: MEMBER_ID_REQUIRED first, as Kafka 2.2+ does.
fn member_id(c: &mut Classic, now: i64, token: Token) -> String {
    let limits = Limits::default();
    let first = joined(
        &c.join(now, &limits, join("", None, &["range"]), token),
        token,
    );
    assert_eq!(first.error, errors::MEMBER_ID_REQUIRED);
    first.member_id
}

#[test]
fn two_members_get_the_leaders_assignment() {
    // Goal: the classic protocol end to end: ids, one join phase, the leader sees every
    // member's metadata, SyncGroup hands each member what the leader assigned.
    let limits = Limits::default();
    let mut c = Classic::default();
    let a = member_id(&mut c, 0, 1);
    let answers = c.join(
        0,
        &limits,
        join(&a, None, &["cooperative-sticky", "range"]),
        2,
    );
    let first = joined(&answers, 2);
    assert_eq!((first.error, first.generation), (0, 1));
    assert_eq!(first.protocol.as_deref(), Some("cooperative-sticky"));
    // A second member: the first learns from its heartbeat and rejoins.
    let b = member_id(&mut c, 10, 3);
    assert!(c
        .join(10, &limits, join(&b, None, &["range"]), 4)
        .is_empty());
    assert_eq!(
        c.heartbeat(20, "g", 1, &a, None),
        errors::REBALANCE_IN_PROGRESS
    );
    let answers = c.join(
        30,
        &limits,
        join(&a, None, &["cooperative-sticky", "range"]),
        5,
    );
    let (ja, jb) = (joined(&answers, 5), joined(&answers, 4));
    assert_eq!((ja.generation, jb.generation), (2, 2));
    // The only protocol both support.
    assert_eq!(ja.protocol.as_deref(), Some("range"));
    assert_eq!(ja.leader, a, "the leader stays");
    assert_eq!(ja.members.len(), 2, "the leader sees every member");
    assert!(jb.members.is_empty());
    assert_eq!(ja.members[1].2, Bytes::from("md-range"));
    // The follower's sync waits for the leader's.
    assert!(sync(&mut c, 40, "g", 2, &b, None, Vec::new(), 6).is_empty());
    let answers = sync(
        &mut c,
        41,
        "g",
        2,
        &a,
        None,
        vec![
            (a.clone(), Bytes::from("to-a")),
            (b.clone(), Bytes::from("to-b")),
        ],
        7,
    );
    assert_eq!(synced(&answers, 6), (0, Bytes::from("to-b")));
    assert_eq!(synced(&answers, 7), (0, Bytes::from("to-a")));
    assert_eq!(c.heartbeat(50, "g", 2, &b, None), 0);
    assert_eq!(
        c.heartbeat(50, "g", 1, &b, None),
        errors::ILLEGAL_GENERATION
    );
    assert_eq!(c.check_commit("g", 2, &a), Some(0));
    assert_eq!(
        c.check_commit("g", -1, ""),
        Some(errors::REBALANCE_IN_PROGRESS)
    );
    assert_eq!(c.check_commit("other", -1, ""), None);
    let view = c.describe("g").unwrap();
    assert_eq!(
        (view.state, view.protocol.as_str()),
        (Phase::Stable, "range")
    );
}

#[test]
fn expired_and_leaving_members_trigger_rebalances() {
    // Goal: a member whose session runs out is removed and the rest rebalance; leaving
    // empties the group so outside commits are accepted again.
    let limits = Limits::default();
    let mut c = Classic::default();
    let a = member_id(&mut c, 0, 1);
    joined(&c.join(0, &limits, join(&a, None, &["range"]), 2), 2);
    sync(
        &mut c,
        0,
        "g",
        1,
        &a,
        None,
        vec![(a.clone(), Bytes::from("x"))],
        3,
    );
    let b = member_id(&mut c, 0, 4);
    c.join(0, &limits, join(&b, None, &["range"]), 5);
    let answers = c.join(1, &limits, join(&a, None, &["range"]), 6);
    assert_eq!(joined(&answers, 5).generation, 2);
    // b never syncs nor heartbeats; a does.
    sync(&mut c, 2, "g", 2, &a, None, Vec::new(), 7);
    assert_eq!(c.heartbeat(9_000, "g", 2, &a, None), 0);
    c.tick(10_500);
    assert_eq!(
        c.heartbeat(10_600, "g", 2, &a, None),
        errors::REBALANCE_IN_PROGRESS
    );
    assert_eq!(
        c.heartbeat(10_600, "g", 2, &b, None),
        errors::UNKNOWN_MEMBER_ID
    );
    let answers = c.join(10_700, &limits, join(&a, None, &["range"]), 8);
    assert_eq!(joined(&answers, 8).generation, 3);
    let (results, _) = c.leave(10_800, "g", &[(a.clone(), None), ("nobody".into(), None)]);
    assert_eq!(results, [0, errors::UNKNOWN_MEMBER_ID]);
    assert_eq!(c.check_commit("g", -1, ""), Some(0));
    c.tick(20_000);
    assert!(!c.has("g"), "an empty group is forgotten");
}

#[test]
fn a_static_member_comes_back_without_a_rebalance() {
    // Goal: KIP-345: a restarted static member gets a new id and its old assignment while
    // the group stays stable; the old id is fenced.
    let limits = Limits::default();
    let mut c = Classic::default();
    let first = joined(&c.join(0, &limits, join("", Some("i-1"), &["range"]), 1), 1);
    assert_eq!((first.error, first.generation), (0, 1));
    let old = first.member_id;
    sync(
        &mut c,
        0,
        "g",
        1,
        &old,
        Some("i-1"),
        vec![(old.clone(), Bytes::from("p0"))],
        2,
    );
    let again = joined(&c.join(5, &limits, join("", Some("i-1"), &["range"]), 3), 3);
    assert_eq!(
        (again.error, again.generation),
        (0, 1),
        "same generation: no rebalance"
    );
    assert_ne!(again.member_id, old);
    assert_eq!(
        synced(
            &sync(
                &mut c,
                6,
                "g",
                1,
                &again.member_id,
                Some("i-1"),
                Vec::new(),
                4
            ),
            4
        ),
        (0, Bytes::from("p0"))
    );
    assert_eq!(
        c.heartbeat(7, "g", 1, &old, Some("i-1")),
        errors::FENCED_INSTANCE_ID
    );
    // Leaving by instance id.
    let (results, _) = c.leave(8, "g", &[(String::new(), Some("i-1".into()))]);
    assert_eq!(results, [0]);
}

#[test]
fn members_without_a_common_protocol_are_refused() {
    // Goal: Kafka's INCONSISTENT_GROUP_PROTOCOL for a member no assignor fits.
    let limits = Limits::default();
    let mut c = Classic::default();
    let a = member_id(&mut c, 0, 1);
    c.join(0, &limits, join(&a, None, &["range"]), 2);
    let mut other = join("", None, &["roundrobin"]);
    other.require_known_member_id = false;
    let answer = joined(&c.join(1, &limits, other, 3), 3);
    assert_eq!(answer.error, errors::INCONSISTENT_GROUP_PROTOCOL);
    let mut bad = join("", None, &[]);
    bad.group = "h".into();
    assert_eq!(
        joined(&c.join(1, &limits, bad, 4), 4).error,
        errors::INCONSISTENT_GROUP_PROTOCOL
    );
}

#[test]
fn waiting_for_the_leaders_assignment_is_not_a_new_rebalance() {
    // Goal: between the join answers and the leader's SyncGroup, heartbeats are fine and a
    // follower's repeated join gets the same generation back: neither restarts the
    // rebalance (which, repeated, kept a group from ever settling).
    let limits = Limits::default();
    let mut c = Classic::default();
    let a = member_id(&mut c, 0, 1);
    c.join(0, &limits, join(&a, None, &["range"]), 2);
    sync(
        &mut c,
        0,
        "g",
        1,
        &a,
        None,
        vec![(a.clone(), Bytes::from("all"))],
        3,
    );
    let b = member_id(&mut c, 1, 4);
    c.join(1, &limits, join(&b, None, &["range"]), 5);
    let answers = c.join(2, &limits, join(&a, None, &["range"]), 6);
    assert_eq!(joined(&answers, 5).generation, 2);
    // CompletingRebalance: b heartbeats and joins again before a (the leader) syncs.
    assert_eq!(c.heartbeat(3, "g", 2, &b, None), 0);
    let again = joined(&c.join(4, &limits, join(&b, None, &["range"]), 7), 7);
    assert_eq!((again.error, again.generation), (0, 2));
    assert!(sync(&mut c, 5, "g", 2, &b, None, Vec::new(), 8).is_empty());
    let answers = sync(
        &mut c,
        6,
        "g",
        2,
        &a,
        None,
        vec![(b.clone(), Bytes::from("half"))],
        9,
    );
    assert_eq!(synced(&answers, 8), (0, Bytes::from("half")));
    // Stable: a follower joining with the same metadata changes nothing either.
    let again = joined(&c.join(7, &limits, join(&b, None, &["range"]), 10), 10);
    assert_eq!(again.generation, 2);
    assert_eq!(c.heartbeat(8, "g", 2, &a, None), 0, "no rebalance started");
}
