//! Kafka's classic group protocol as a synchronous state machine, for groups made by Kafka
//! clients: the members bring their own assignors (range, round-robin, sticky,
//! cooperative-sticky: whatever they name), the broker picks the protocol every member
//! supports, the leader computes the assignment and hands it in with its SyncGroup, and the
//! broker passes each member its share. Static members (`group.instance.id`) keep their
//! place across restarts. No clocks or I/O: the caller passes `now_ms` and a token for
//! every JoinGroup and SyncGroup it parks, and sends the answers this returns. Error codes
//! are Kafka's.

mod members;

use super::coordinator::{check_group_id, Limits};
use super::membership::{MemberIds, Membership, Refusal, Seat};
pub use super::membership::{Phase, Token};
use bytes::Bytes;
use keel_kafka::errors;
use std::collections::{BTreeMap, BTreeSet};

/// A JoinGroup as the state machine needs it.
#[derive(Debug, Clone)]
pub struct Join {
    /// Group id.
    pub group: String,
    /// Empty for a new member.
    pub member_id: String,
    /// Static membership.
    pub instance_id: Option<String>,
    /// The client's id and host, shown by DescribeGroups.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// `consumer`, or another client's type.
    pub protocol_type: String,
    /// Assignors in preference order, each with the member's metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// Version 4+: a new member first gets its id with MEMBER_ID_REQUIRED and rejoins.
    pub require_known_member_id: bool,
}

/// A JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// Kafka error code (0: none).
    pub error: i16,
    /// Generation.
    pub generation: i32,
    /// The protocol (assignor) chosen.
    pub protocol: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// For the leader only: every member with its instance id and metadata.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl Joined {
    fn error(error: i16, member_id: String) -> Joined {
        Joined {
            error,
            generation: -1,
            protocol: None,
            leader: String::new(),
            member_id,
            members: Vec::new(),
        }
    }
}

/// An answer the caller sends: a parked JoinGroup's or SyncGroup's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// To a JoinGroup.
    Join(Token, Joined),
    /// To a SyncGroup: error and assignment.
    Sync(Token, i16, Bytes),
}

/// What a Kafka member brings to the membership core.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    /// Assignors in preference order, each with the member's metadata.
    pub(crate) protocols: Vec<(String, Bytes)>,
    /// This generation's assignment, from the leader's SyncGroup.
    pub(crate) assignment: Bytes,
}

/// One group's state.
#[derive(Debug, Clone)]
pub struct Group {
    pub(crate) core: Membership<Member>,
    pub(crate) protocol_type: String,
    pub(crate) protocol: Option<String>,
    pub(crate) leader: Option<String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, and when.
    pub(crate) pending: BTreeMap<String, i64>,
}

/// Kafka's error for a refusal of the membership core.
fn kafka(refusal: Refusal) -> i16 {
    match refusal {
        Refusal::UnknownMember => errors::UNKNOWN_MEMBER_ID,
        Refusal::IllegalGeneration => errors::ILLEGAL_GENERATION,
        Refusal::RebalanceInProgress => errors::REBALANCE_IN_PROGRESS,
    }
}

/// Answers the parked syncs of a group whose rebalance starts again: their members rejoin.
fn rejoin(syncs: Vec<Token>, answers: &mut Vec<Answer>) {
    let refused = syncs.into_iter().map(|t| {
        let error = errors::REBALANCE_IN_PROGRESS;
        Answer::Sync(t, error, Bytes::new())
    });
    answers.extend(refused);
}

/// What DescribeGroups shows of a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// Member id.
    pub member_id: String,
    /// Static membership.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Metadata for the chosen protocol.
    pub metadata: Bytes,
    /// Assignment bytes.
    pub assignment: Bytes,
}

/// What DescribeGroups shows of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// State.
    pub state: Phase,
    /// Generation.
    pub generation: i32,
    /// Protocol type (`consumer`).
    pub protocol_type: String,
    /// Chosen protocol.
    pub protocol: String,
    /// Members.
    pub members: Vec<MemberView>,
}

/// Every classic group.
#[derive(Debug, Default)]
pub struct Classic {
    pub(crate) groups: BTreeMap<String, Group>,
    pub(crate) member_ids: MemberIds,
    /// Groups whose record is due (`save.rs`).
    pub(crate) noted: BTreeSet<String>,
}

impl Classic {
    /// Forgets every group for which `gone` is true (another broker coordinates it now);
    /// their parked joins and syncs are answered NOT_COORDINATOR.
    pub fn forget(&mut self, gone: &dyn Fn(&str) -> bool) -> Vec<Answer> {
        self.noted.retain(|name| !gone(name));
        let mut answers = Vec::new();
        self.groups.retain(|name, group| {
            if !gone(name) {
                return true;
            }
            for (member_id, join, sync) in group.core.parked() {
                if let Some(token) = join {
                    let refused = Joined::error(errors::NOT_COORDINATOR, member_id.to_owned());
                    answers.push(Answer::Join(token, refused));
                }
                if let Some(token) = sync {
                    answers.push(Answer::Sync(token, errors::NOT_COORDINATOR, Bytes::new()));
                }
            }
            false
        });
        answers
    }

    /// Whether `group` is a classic group with members.
    pub fn has(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    /// Handles a JoinGroup; the answer for `token` comes now or from a later call.
    pub fn join(&mut self, now_ms: i64, limits: &Limits, join: Join, token: Token) -> Vec<Answer> {
        let refuse = |error: i16, member_id: &str| {
            vec![Answer::Join(
                token,
                Joined::error(error, member_id.to_owned()),
            )]
        };
        if check_group_id(&join.group, limits.group_id_bytes_max).is_err() {
            return refuse(errors::INVALID_GROUP_ID, &join.member_id);
        }
        if join.session_timeout_ms < limits.session_timeout_ms_min as i32
            || join.session_timeout_ms > limits.session_timeout_ms_max as i32
        {
            return refuse(26, &join.member_id);
        }
        if join.rebalance_timeout_ms > limits.rebalance_timeout_ms_max as i32 {
            return refuse(26, &join.member_id);
        }
        if join.protocol_type.is_empty() || join.protocols.is_empty() {
            return refuse(errors::INCONSISTENT_GROUP_PROTOCOL, &join.member_id);
        }
        if !self.groups.contains_key(&join.group) && self.groups.len() >= limits.groups_max {
            return refuse(errors::COORDINATOR_NOT_AVAILABLE, &join.member_id);
        }
        let group = self
            .groups
            .entry(join.group.clone())
            .or_insert_with(|| Group {
                core: Membership::default(),
                protocol_type: join.protocol_type.clone(),
                protocol: None,
                leader: None,
                pending: BTreeMap::new(),
            });
        let members = &group.core.members;
        if !members.is_empty()
            && (group.protocol_type != join.protocol_type
                || !members.values().all(|m| {
                    let theirs = &m.extra.protocols;
                    theirs
                        .iter()
                        .any(|(name, _)| join.protocols.iter().any(|(n, _)| n == name))
                }))
        {
            return refuse(errors::INCONSISTENT_GROUP_PROTOCOL, &join.member_id);
        }
        group.protocol_type = join.protocol_type.clone();
        let mut answers = Vec::new();
        let static_id = join
            .instance_id
            .as_ref()
            .and_then(|instance| group.static_member(instance));
        let member_id = if let (Some(old), true) = (&static_id, join.member_id.is_empty()) {
            let instance = join.instance_id.as_deref().unwrap_or("static");
            let new_id = self.member_ids.next(instance);
            let protocols = join.protocols.clone();
            group.replace_static(now_ms, old, &new_id, protocols, &mut answers);
            if group.core.phase == Phase::Stable {
                // Nothing changed for the others: answer at once, no rebalance (KIP-345).
                let joined = Self::joined(group, &new_id);
                answers.push(Answer::Join(token, joined));
                return answers;
            }
            new_id
        } else if join.member_id.is_empty() {
            if group.core.members.len() + group.pending.len() >= limits.members_max {
                return refuse(81, "");
            }
            let client = match join.client_id.is_empty() {
                true => "member",
                false => &join.client_id,
            };
            let id = self.member_ids.next(client);
            if join.require_known_member_id && join.instance_id.is_none() {
                group.pending.insert(id.clone(), now_ms);
                return refuse(errors::MEMBER_ID_REQUIRED, &id);
            }
            id
        } else if let Some(member) = group.core.members.get(&join.member_id) {
            if let Some(instance) = &join.instance_id {
                if member.extra.instance_id.as_ref() != Some(instance) {
                    return refuse(errors::FENCED_INSTANCE_ID, &join.member_id);
                }
            }
            // A member joining again with what it had: while the assignment is awaited, or
            // (a follower) once it is given, it gets the current generation back and
            // nothing rebalances (as Kafka's coordinator does).
            let unchanged = member.extra.protocols == join.protocols && member.join.is_none();
            let leader = group.leader.as_deref() == Some(join.member_id.as_str());
            let phase = group.core.phase;
            if unchanged
                && (phase == Phase::CompletingRebalance || (phase == Phase::Stable && !leader))
            {
                let joined = Self::joined(group, &join.member_id);
                if let Ok(m) = group.core.seat(&join.member_id) {
                    m.seen(now_ms);
                }
                return vec![Answer::Join(token, joined)];
            }
            join.member_id.clone()
        } else if group.pending.remove(&join.member_id).is_some() {
            join.member_id.clone()
        } else {
            let error = match static_id {
                Some(_) => errors::FENCED_INSTANCE_ID,
                None => errors::UNKNOWN_MEMBER_ID,
            };
            return refuse(error, &join.member_id);
        };
        let member = group
            .core
            .members
            .entry(member_id.clone())
            .or_insert_with(|| {
                let extra = Member {
                    instance_id: join.instance_id.clone(),
                    client_id: join.client_id.clone(),
                    client_host: join.client_host.clone(),
                    protocols: Vec::new(),
                    assignment: Bytes::new(),
                };
                Seat::new(now_ms, extra)
            });
        let session = i64::from(join.session_timeout_ms);
        let rebalance = i64::from(join.rebalance_timeout_ms);
        if let Some(previous) = member.park_join(now_ms, token, session, rebalance) {
            let superseded = Joined::error(errors::REBALANCE_IN_PROGRESS, member_id.clone());
            answers.push(Answer::Join(previous, superseded));
        }
        member.extra.protocols = join.protocols;
        rejoin(group.core.prepare(now_ms), &mut answers);
        answers.extend(Self::try_complete(group, now_ms));
        answers
    }

    fn joined(group: &Group, member_id: &str) -> Joined {
        let protocol = group.protocol.clone();
        let is_leader = group.leader.as_deref() == Some(member_id);
        let members = match is_leader {
            true => group
                .core
                .members
                .iter()
                .map(|(id, m)| {
                    let metadata = m.extra.metadata(protocol.as_deref());
                    (id.clone(), m.extra.instance_id.clone(), metadata)
                })
                .collect(),
            false => Vec::new(),
        };
        Joined {
            error: 0,
            generation: group.core.generation,
            protocol,
            leader: group.leader.clone().unwrap_or_default(),
            member_id: member_id.to_owned(),
            members,
        }
    }

    /// Completes the join phase once every member rejoined or the time is up: the
    /// generation advances, a protocol and leader are chosen, every join is answered.
    fn try_complete(group: &mut Group, now_ms: i64) -> Vec<Answer> {
        let Some(joined) = group.core.complete_join(now_ms) else {
            return Vec::new();
        };
        if joined.is_empty() {
            group.protocol = None;
            group.leader = None;
            return Vec::new();
        }
        group.protocol = group.vote();
        let leader_stays = group
            .leader
            .as_ref()
            .is_some_and(|l| group.core.members.contains_key(l));
        if !leader_stays {
            group.leader = group.core.members.keys().next().cloned();
        }
        for member in group.core.members.values_mut() {
            member.extra.assignment = Bytes::new();
        }
        joined
            .into_iter()
            .map(|(id, token)| Answer::Join(token, Self::joined(group, &id)))
            .collect()
    }
}

impl Member {
    /// The member's metadata for `protocol` (empty when it named no such protocol).
    fn metadata(&self, protocol: Option<&str>) -> Bytes {
        let found = self
            .protocols
            .iter()
            .find(|(n, _)| Some(n.as_str()) == protocol);
        found.map(|(_, md)| md.clone()).unwrap_or_default()
    }
}

impl Group {
    /// The member id of the static member `instance`, if it is one.
    fn static_member(&self, instance: &str) -> Option<String> {
        let members = self.core.members.iter();
        let mut found = members.filter(|(_, m)| m.extra.instance_id.as_deref() == Some(instance));
        found.next().map(|(id, _)| id.clone())
    }

    /// A static member back (after a restart) takes a new id and its old place; whoever
    /// still used the old id is fenced.
    fn replace_static(
        &mut self,
        now_ms: i64,
        old: &str,
        new_id: &str,
        protocols: Vec<(String, Bytes)>,
        answers: &mut Vec<Answer>,
    ) {
        let mut member = self.core.members.remove(old).expect("found by the caller");
        if let Some(t) = member.join.take() {
            let fenced = Joined::error(errors::FENCED_INSTANCE_ID, old.to_owned());
            answers.push(Answer::Join(t, fenced));
        }
        if let Some(t) = member.sync.take() {
            answers.push(Answer::Sync(t, errors::FENCED_INSTANCE_ID, Bytes::new()));
        }
        if self.leader.as_deref() == Some(old) {
            self.leader = Some(new_id.to_owned());
        }
        member.extra.protocols = protocols;
        member.seen(now_ms);
        self.core.members.insert(new_id.to_owned(), member);
        self.core.changed = true;
    }

    /// The protocol every member supports that most members prefer (ties: the first
    /// member's order).
    fn vote(&self) -> Option<String> {
        let members = &self.core.members;
        let first = members.values().next()?;
        let candidates: Vec<&String> = first
            .extra
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|name| {
                let supports = |m: &Seat<Member>| m.extra.protocols.iter().any(|(n, _)| n == *name);
                members.values().all(supports)
            })
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in members.values() {
            let preferred = member
                .extra
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(&n));
            if let Some((name, _)) = preferred {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let score = |(index, name): &(usize, &&String)| {
            let count = votes.get(name.as_str()).copied().unwrap_or(0);
            (count, std::cmp::Reverse(*index))
        };
        let best = candidates.iter().enumerate().max_by_key(score);
        best.map(|(_, name)| (*name).clone())
    }
}

#[cfg(test)]
#[path = "../classic_tests.rs"]
mod tests;
