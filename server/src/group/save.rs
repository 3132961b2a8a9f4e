//! Groups' membership saved to and restored from `__consumer_offsets` (`record.rs`): which
//! groups have a record due, the record of a Stable group, and a group rebuilt from one.
//! The caller writes what [`Coordinator::take_saved`] returns and, loading a partition,
//! hands each record to [`Coordinator::restore`] or, for a tombstone, [`Coordinator::unsave`].

use super::assignor::Assignor;
use super::classic::{self, Classic};
use super::coordinator::{Coordinator, Group};
use super::membership::{Membership, Phase, Seat};
use super::record::{self, Kind, SavedGroup, SavedMember};
use keel_protocol::wire::DecodeError;
use std::collections::{BTreeMap, BTreeSet};

/// Moves the groups flagged `changed` into `noted`.
fn note_flagged<'a, P: 'a>(
    groups: impl Iterator<Item = (&'a String, &'a mut Membership<P>)>,
    noted: &mut BTreeSet<String>,
) {
    for (name, core) in groups {
        if std::mem::take(&mut core.changed) {
            noted.insert(name.clone());
        }
    }
}

/// What is due for `noted` groups: the record of a Stable group, a tombstone for a group
/// emptied or gone; nothing for one still rebalancing (its last record stands).
fn due(
    noted: BTreeSet<String>,
    core: impl Fn(&str) -> Option<(Phase, Option<SavedGroup>)>,
) -> Vec<(String, Option<SavedGroup>)> {
    let mut due = Vec::new();
    for name in noted {
        match core(&name) {
            Some((Phase::Stable, Some(saved))) => due.push((name, Some(saved))),
            Some((Phase::PreparingRebalance | Phase::CompletingRebalance, _)) => {}
            _ => due.push((name, None)),
        }
    }
    due
}

fn seat<P>(member: &SavedMember, now_ms: i64, extra: P) -> Seat<P> {
    let mut seat = Seat::new(now_ms, extra);
    seat.unconfirmed = true;
    seat.session_timeout_ms = member.session_timeout_ms;
    seat.rebalance_timeout_ms = member.rebalance_timeout_ms;
    seat
}

impl Coordinator {
    /// After a request of `group`: notes its record as due if its membership changed.
    pub fn note(&mut self, group: &str) {
        let flag = match self.groups.get_mut(group) {
            Some(g) => Some((&mut g.core.changed, &mut self.noted)),
            None => {
                let classic = &mut self.classic;
                let found = classic.groups.get_mut(group);
                found.map(|g| (&mut g.core.changed, &mut classic.noted))
            }
        };
        if let Some((changed, noted)) = flag {
            if std::mem::take(changed) {
                noted.insert(group.to_owned());
            }
        }
    }

    /// Notes every native group whose membership changed (the tick's expiries).
    pub(super) fn note_changed(&mut self) {
        let cores = self.groups.iter_mut().map(|(n, g)| (n, &mut g.core));
        note_flagged(cores, &mut self.noted);
    }

    /// The records due, native and classic: (group, record or tombstone).
    pub fn take_saved(&mut self) -> Vec<(String, Option<SavedGroup>)> {
        let noted = std::mem::take(&mut self.noted);
        let groups = &self.groups;
        let mut saved = due(noted, |name| {
            let group = groups.get(name)?;
            Some((group.core.phase, group.save()))
        });
        saved.extend(self.classic.take_saved());
        saved
    }

    /// Rebuilds a group from its record: Stable at the saved generation, every member's
    /// session running from `now_ms`.
    ///
    /// # Errors
    /// A native member's topics or assignment cannot be read.
    pub fn restore(
        &mut self,
        group: &str,
        saved: SavedGroup,
        now_ms: i64,
    ) -> Result<(), DecodeError> {
        self.unsave(group);
        if saved.kind == Kind::Classic {
            let restored = classic::Group::restored(saved, now_ms);
            self.classic.groups.insert(group.to_owned(), restored);
            return Ok(());
        }
        let mut members = BTreeMap::new();
        let mut assignment = BTreeMap::new();
        for member in &saved.members {
            let topics = record::decode_topics(member.subscription.clone())?;
            let assigned = record::decode_assignment(member.assignment.clone())?;
            assignment.insert(member.member_id.clone(), assigned);
            members.insert(member.member_id.clone(), seat(member, now_ms, topics));
        }
        let phase = if members.is_empty() {
            Phase::Empty
        } else {
            Phase::Stable
        };
        let restored = Group {
            core: Membership::restored(phase, saved.generation, members),
            assignor: Assignor::from_name(&saved.protocol).unwrap_or(Assignor::Range),
            assignment,
        };
        self.groups.insert(group.to_owned(), restored);
        Ok(())
    }

    /// Forgets a group's membership (its record's tombstone).
    pub fn unsave(&mut self, group: &str) {
        self.groups.remove(group);
        self.classic.groups.remove(group);
    }
}

impl Group {
    /// This native group's record.
    fn save(&self) -> Option<SavedGroup> {
        let empty = BTreeMap::new();
        let members = self.core.members.iter().map(|(id, seat)| {
            let assignment = self.assignment.get(id).unwrap_or(&empty);
            Some(SavedMember {
                member_id: id.clone(),
                instance_id: None,
                client_id: String::new(),
                client_host: String::new(),
                session_timeout_ms: seat.session_timeout_ms,
                rebalance_timeout_ms: seat.rebalance_timeout_ms,
                subscription: record::encode_topics(&seat.extra).ok()?,
                assignment: record::encode_assignment(assignment).ok()?,
            })
        });
        Some(SavedGroup {
            kind: Kind::Native,
            generation: self.core.generation,
            protocol_type: String::new(),
            protocol: self.assignor.name().to_owned(),
            leader: None,
            members: members.collect::<Option<_>>()?,
        })
    }
}

impl Classic {
    /// Notes every classic group whose membership changed.
    pub(super) fn note_changed(&mut self) {
        let cores = self.groups.iter_mut().map(|(n, g)| (n, &mut g.core));
        note_flagged(cores, &mut self.noted);
    }

    fn take_saved(&mut self) -> Vec<(String, Option<SavedGroup>)> {
        let noted = std::mem::take(&mut self.noted);
        let groups = &self.groups;
        due(noted, |name| {
            let group = groups.get(name)?;
            Some((group.core.phase, Some(group.save())))
        })
    }
}

impl classic::Group {
    /// This Kafka group's record: each member with its metadata for the chosen protocol.
    fn save(&self) -> SavedGroup {
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = self.core.members.iter().map(|(id, seat)| {
            let m = &seat.extra;
            let metadata = m.protocols.iter().find(|(n, _)| *n == protocol);
            SavedMember {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout_ms: seat.session_timeout_ms,
                rebalance_timeout_ms: seat.rebalance_timeout_ms,
                subscription: metadata.map(|(_, md)| md.clone()).unwrap_or_default(),
                assignment: m.assignment.clone(),
            }
        });
        let members = members.collect();
        SavedGroup {
            kind: Kind::Classic,
            generation: self.core.generation,
            protocol_type: self.protocol_type.clone(),
            protocol,
            leader: self.leader.clone(),
            members,
        }
    }

    /// A Kafka group rebuilt from its record.
    fn restored(saved: SavedGroup, now_ms: i64) -> classic::Group {
        let members = saved.members.iter().map(|m| {
            let extra = classic::Member {
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                protocols: vec![(saved.protocol.clone(), m.subscription.clone())],
                assignment: m.assignment.clone(),
            };
            (m.member_id.clone(), seat(m, now_ms, extra))
        });
        let members: BTreeMap<String, Seat<classic::Member>> = members.collect();
        let phase = if members.is_empty() {
            Phase::Empty
        } else {
            Phase::Stable
        };
        classic::Group {
            core: Membership::restored(phase, saved.generation, members),
            protocol_type: saved.protocol_type,
            protocol: Some(saved.protocol).filter(|p| !p.is_empty()),
            leader: saved.leader,
            pending: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::classic::{Answer, Join};
    use crate::group::coordinator::{JoinRequest, Limits};
    use bytes::Bytes;
    use keel_kafka::requests::SyncGroup;
    use keel_protocol::api::ErrorCode;

    fn six(_: &str) -> u32 {
        6
    }

    /// A native join of group `g` to the `orders` topic.
    fn request<'a>(member_id: &'a str, topics: &'a [String]) -> JoinRequest<'a> {
        JoinRequest {
            group: "g",
            member_id,
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            assignor: "range",
            topics,
        }
    }

    /// Saves what is due on `old` and restores it on a new coordinator, as a broker taking
    /// the offsets partition over does.
    fn move_to_new_coordinator(old: &mut Coordinator, now: i64) -> Coordinator {
        let mut new = Coordinator::new(Limits::default());
        new.set_incarnation("2.0");
        for (group, saved) in old.take_saved() {
            match saved {
                Some(saved) => {
                    let bytes = saved.encode().unwrap();
                    let saved = SavedGroup::decode(bytes).unwrap();
                    new.restore(&group, saved, now).unwrap();
                }
                None => new.unsave(&group),
            }
        }
        new
    }

    #[test]
    fn a_native_group_carries_on_at_a_new_coordinator_without_a_rebalance() {
        // Goal: generation, members and assignment survive a coordinator move; sessions run
        // again from the move; a newcomer's id never repeats a restored one.
        let mut old = Coordinator::new(Limits::default());
        old.set_incarnation("1.0");
        let topics = vec!["orders".to_owned()];
        let request = |member_id| request(member_id, &topics);
        let answers = old.join(0, request(""), 1, &six);
        let joined = answers[0].1.clone().unwrap();
        old.note("g");
        let before = old.sync("g", 1, &joined.member_id).unwrap();
        let mut new = move_to_new_coordinator(&mut old, 5_000);
        assert_eq!(new.heartbeat(14_000, "g", 1, &joined.member_id), Ok(()));
        assert_eq!(new.sync("g", 1, &joined.member_id).unwrap(), before);
        assert!(new.tick(14_500, &six).is_empty(), "no rebalance, no expiry");
        let newcomer = new.join(15_000, request(""), 2, &six);
        assert!(newcomer.is_empty(), "a newcomer makes the group rebalance");
        let answers = new.join(15_001, request(&joined.member_id), 3, &six);
        let ids: Vec<String> = answers
            .iter()
            .map(|(_, r)| r.clone().unwrap().member_id)
            .collect();
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1]);
        assert_eq!(answers[0].1.clone().unwrap().generation, 2);
    }

    #[test]
    fn a_kafka_group_keeps_leader_assignment_and_static_members_across_a_move() {
        // Goal: a classic group restored Stable: heartbeats pass, SyncGroup hands back the
        // leader's bytes, a static member restarting takes its place without a rebalance.
        let limits = Limits::default();
        let mut old = Coordinator::new(limits);
        let join = Join {
            group: "k".into(),
            member_id: String::new(),
            instance_id: Some("pod-0".into()),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"md"))],
            require_known_member_id: true,
        };
        let answers = old.classic.join(0, &limits, join.clone(), 1);
        let Answer::Join(_, joined) = &answers[0] else {
            panic!("{answers:?}")
        };
        assert_eq!(joined.error, 0);
        old.note("k");
        assert!(
            old.take_saved().is_empty(),
            "nothing is saved before the assignment"
        );
        let sync = SyncGroup {
            group: "k".into(),
            generation: 1,
            member_id: joined.member_id.clone(),
            group_instance_id: Some("pod-0".into()),
            assignments: vec![(joined.member_id.clone(), Bytes::from_static(b"a0"))],
        };
        old.classic.sync(1, sync.clone(), 2);
        old.note("k");
        let mut new = move_to_new_coordinator(&mut old, 1_000);
        let id = joined.member_id.as_str();
        assert_eq!(new.classic.heartbeat(2_000, "k", 1, id, Some("pod-0")), 0);
        let answers = new.classic.sync(2_001, sync, 3);
        assert_eq!(answers, vec![Answer::Sync(3, 0, Bytes::from_static(b"a0"))]);
        assert_eq!(new.check_commit("k", 1, id), Ok(()));
        let answers = new.classic.join(3_000, &limits, join, 4);
        let Answer::Join(_, back) = &answers[0] else {
            panic!("{answers:?}")
        };
        assert_eq!(
            (back.error, back.generation),
            (0, 1),
            "a static member back, no rebalance"
        );
        assert_eq!(
            new.check_commit("k", 1, id),
            Err(ErrorCode::UnknownMemberId)
        );
    }

    #[test]
    fn a_rebalance_after_a_move_does_not_wait_for_members_not_heard_from_since() {
        // Goal: a member whose session ran out while the coordinator moved comes back with a
        // new id; the restored old id must not hold the rebalance for its whole session.
        let mut old = Coordinator::new(Limits::default());
        let topics = vec!["orders".to_owned()];
        let request = JoinRequest {
            rebalance_timeout_ms: 60_000,
            ..request("", &topics)
        };
        let ghost = old.join(0, request.clone(), 1, &six)[0].1.clone().unwrap();
        old.note("g");
        let mut new = move_to_new_coordinator(&mut old, 1_000);
        let answers = new.join(1_500, request, 2, &six);
        assert_eq!(answers.len(), 1, "answered at once: {answers:?}");
        let joined = answers[0].1.clone().unwrap();
        assert_eq!((joined.generation, joined.members.len()), (2, 1));
        assert_ne!(joined.member_id, ghost.member_id);
        let gone = new.heartbeat(1_600, "g", 1, &ghost.member_id);
        assert_eq!(gone, Err(ErrorCode::UnknownMemberId));
    }

    #[test]
    fn an_emptied_group_leaves_a_tombstone() {
        // Goal: a group whose last member left is not restored with members that are gone.
        let mut c = Coordinator::new(Limits::default());
        let topics = vec!["orders".to_owned()];
        let joined = c.join(0, request("", &topics), 1, &six)[0]
            .1
            .clone()
            .unwrap();
        c.note("g");
        assert!(c.take_saved()[0].1.is_some());
        c.leave(1, "g", &joined.member_id, &six).unwrap();
        c.note("g");
        assert_eq!(c.take_saved(), vec![("g".to_owned(), None)]);
    }
}
