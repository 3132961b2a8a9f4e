//! Kafka's classic group protocol as a synchronous state machine, for groups made by Kafka
//! clients: the members bring their own assignors (range, round-robin, sticky,
//! cooperative-sticky: whatever they name), the broker picks the protocol every member
//! supports, the leader computes the assignment and hands it in with its SyncGroup, and the
//! broker passes each member its share. Static members (`group.instance.id`) keep their
//! place across restarts. No clocks or I/O: the caller passes `now_ms` and a token for
//! every JoinGroup and SyncGroup it parks, and sends the answers this returns. Error codes
//! are Kafka's.

mod members;

use super::coordinator::{check_group_id, GroupState, Limits, Token};
use bytes::Bytes;
use keel_kafka::errors;
use std::collections::BTreeMap;

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

/// Kafka's state names (CompletingRebalance has no native twin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No members.
    Empty,
    /// Waiting for members to join.
    PreparingRebalance,
    /// Waiting for the leader's assignment.
    CompletingRebalance,
    /// Members have their assignments.
    Stable,
}

impl State {
    /// Name as Kafka's tools print it.
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }

    /// The nearest native state.
    pub fn native(self) -> GroupState {
        match self {
            State::Empty => GroupState::Empty,
            State::PreparingRebalance | State::CompletingRebalance => {
                GroupState::PreparingRebalance
            }
            State::Stable => GroupState::Stable,
        }
    }
}

#[derive(Debug, Clone)]
struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i64,
    rebalance_timeout_ms: i64,
    protocols: Vec<(String, Bytes)>,
    last_seen_ms: i64,
    join: Option<Token>,
    sync: Option<Token>,
    assignment: Bytes,
}

/// One group's state.
#[derive(Debug, Clone)]
pub struct Group {
    state: State,
    generation: i32,
    protocol_type: String,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, and when.
    pending: BTreeMap<String, i64>,
    rebalance_started_ms: i64,
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
    pub state: State,
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
    groups: BTreeMap<String, Group>,
    next_member: u64,
}

impl Classic {
    /// Forgets every group for which `gone` is true (another broker coordinates it now);
    /// their parked joins and syncs are answered NOT_COORDINATOR.
    pub fn forget(&mut self, gone: &dyn Fn(&str) -> bool) -> Vec<Answer> {
        let mut answers = Vec::new();
        self.groups.retain(|name, group| {
            if !gone(name) {
                return true;
            }
            for (member_id, member) in &group.members {
                if let Some(token) = member.join {
                    let refused = Joined::error(errors::NOT_COORDINATOR, member_id.clone());
                    answers.push(Answer::Join(token, refused));
                }
                if let Some(token) = member.sync {
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
                state: State::Empty,
                generation: 0,
                protocol_type: join.protocol_type.clone(),
                protocol: None,
                leader: None,
                members: BTreeMap::new(),
                pending: BTreeMap::new(),
                rebalance_started_ms: now_ms,
            });
        if !group.members.is_empty()
            && (group.protocol_type != join.protocol_type
                || !group.members.values().all(|m| {
                    m.protocols
                        .iter()
                        .any(|(name, _)| join.protocols.iter().any(|(n, _)| n == name))
                }))
        {
            return refuse(errors::INCONSISTENT_GROUP_PROTOCOL, &join.member_id);
        }
        group.protocol_type = join.protocol_type.clone();
        let mut answers = Vec::new();
        let static_id = join.instance_id.as_ref().and_then(|instance| {
            group
                .members
                .iter()
                .find(|(_, m)| m.instance_id.as_ref() == Some(instance))
                .map(|(id, _)| id.clone())
        });
        let member_id = if let (Some(old), true) = (&static_id, join.member_id.is_empty()) {
            // A static member back (after a restart): it takes a new id and its old place;
            // whoever still used the old id is fenced.
            self.next_member += 1;
            let new_id = format!(
                "{}-{}",
                join.instance_id.as_deref().unwrap_or("static"),
                self.next_member
            );
            let mut member = group.members.remove(old).expect("found above");
            if let Some(t) = member.join.take() {
                answers.push(Answer::Join(
                    t,
                    Joined::error(errors::FENCED_INSTANCE_ID, old.clone()),
                ));
            }
            if let Some(t) = member.sync.take() {
                answers.push(Answer::Sync(t, errors::FENCED_INSTANCE_ID, Bytes::new()));
            }
            if group.leader.as_ref() == Some(old) {
                group.leader = Some(new_id.clone());
            }
            member.protocols = join.protocols.clone();
            member.last_seen_ms = now_ms;
            group.members.insert(new_id.clone(), member);
            if group.state == State::Stable {
                // Nothing changed for the others: answer at once, no rebalance (KIP-345).
                let joined = Self::joined(group, &new_id);
                answers.push(Answer::Join(token, joined));
                return answers;
            }
            new_id
        } else if join.member_id.is_empty() {
            if group.members.len() + group.pending.len() >= limits.members_max {
                return refuse(81, "");
            }
            self.next_member += 1;
            let id = format!(
                "{}-{}",
                if join.client_id.is_empty() {
                    "member"
                } else {
                    &join.client_id
                },
                self.next_member
            );
            if join.require_known_member_id && join.instance_id.is_none() {
                group.pending.insert(id.clone(), now_ms);
                return refuse(errors::MEMBER_ID_REQUIRED, &id);
            }
            id
        } else if group.members.contains_key(&join.member_id) {
            let member = &group.members[&join.member_id];
            if let Some(instance) = &join.instance_id {
                if member.instance_id.as_ref() != Some(instance) {
                    return refuse(errors::FENCED_INSTANCE_ID, &join.member_id);
                }
            }
            // A member joining again with what it had: while the assignment is awaited, or
            // (a follower) once it is given, it gets the current generation back and
            // nothing rebalances (as Kafka's coordinator does).
            let unchanged = member.protocols == join.protocols && member.join.is_none();
            let leader = group.leader.as_deref() == Some(join.member_id.as_str());
            if unchanged
                && (group.state == State::CompletingRebalance
                    || (group.state == State::Stable && !leader))
            {
                let joined = Self::joined(group, &join.member_id);
                if let Some(m) = group.members.get_mut(&join.member_id) {
                    m.last_seen_ms = now_ms;
                }
                return vec![Answer::Join(token, joined)];
            }
            join.member_id.clone()
        } else if group.pending.remove(&join.member_id).is_some() {
            join.member_id.clone()
        } else {
            return refuse(
                if static_id.is_some() {
                    errors::FENCED_INSTANCE_ID
                } else {
                    errors::UNKNOWN_MEMBER_ID
                },
                &join.member_id,
            );
        };
        let member = group
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                instance_id: join.instance_id.clone(),
                client_id: join.client_id.clone(),
                client_host: join.client_host.clone(),
                session_timeout_ms: 0,
                rebalance_timeout_ms: 0,
                protocols: Vec::new(),
                last_seen_ms: now_ms,
                join: None,
                sync: None,
                assignment: Bytes::new(),
            });
        if let Some(previous) = member.join.replace(token) {
            answers.push(Answer::Join(
                previous,
                Joined::error(errors::REBALANCE_IN_PROGRESS, member_id.clone()),
            ));
        }
        member.protocols = join.protocols;
        member.session_timeout_ms = i64::from(join.session_timeout_ms);
        member.rebalance_timeout_ms =
            i64::from(join.rebalance_timeout_ms.max(join.session_timeout_ms));
        member.last_seen_ms = now_ms;
        Self::prepare(group, now_ms, &mut answers);
        answers.extend(Self::try_complete(group, now_ms));
        answers
    }

    /// Moves the group to PreparingRebalance; syncs waiting for an assignment that will
    /// not come are told to rejoin.
    fn prepare(group: &mut Group, now_ms: i64, answers: &mut Vec<Answer>) {
        if group.state == State::PreparingRebalance {
            return;
        }
        for member in group.members.values_mut() {
            if let Some(t) = member.sync.take() {
                answers.push(Answer::Sync(t, errors::REBALANCE_IN_PROGRESS, Bytes::new()));
            }
        }
        group.state = State::PreparingRebalance;
        group.rebalance_started_ms = now_ms;
    }

    fn joined(group: &Group, member_id: &str) -> Joined {
        let protocol = group.protocol.clone();
        let is_leader = group.leader.as_deref() == Some(member_id);
        Joined {
            error: 0,
            generation: group.generation,
            protocol: protocol.clone(),
            leader: group.leader.clone().unwrap_or_default(),
            member_id: member_id.to_owned(),
            members: if is_leader {
                group
                    .members
                    .iter()
                    .map(|(id, m)| {
                        let metadata = m
                            .protocols
                            .iter()
                            .find(|(name, _)| Some(name) == protocol.as_ref())
                            .map(|(_, md)| md.clone())
                            .unwrap_or_default();
                        (id.clone(), m.instance_id.clone(), metadata)
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// Completes the join phase once every member rejoined or the time is up: the
    /// generation advances, a protocol and leader are chosen, every join is answered.
    fn try_complete(group: &mut Group, now_ms: i64) -> Vec<Answer> {
        if group.state != State::PreparingRebalance {
            return Vec::new();
        }
        let all_joined = group.members.values().all(|m| m.join.is_some());
        let deadline = group.rebalance_started_ms
            + group
                .members
                .values()
                .map(|m| m.rebalance_timeout_ms)
                .max()
                .unwrap_or(0);
        if !all_joined && now_ms < deadline {
            return Vec::new();
        }
        group.members.retain(|_, m| m.join.is_some());
        group.generation += 1;
        if group.members.is_empty() {
            group.state = State::Empty;
            group.protocol = None;
            group.leader = None;
            return Vec::new();
        }
        // Each member votes for its most preferred protocol that every member supports.
        let candidates: Vec<String> = group
            .members
            .values()
            .next()
            .map(|m| {
                m.protocols
                    .iter()
                    .map(|(n, _)| n.clone())
                    .collect::<Vec<String>>()
            })
            .unwrap_or_default()
            .into_iter()
            .filter(|name: &String| {
                group
                    .members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in group.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(n))
            {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        group.protocol = candidates
            .iter()
            .max_by_key(|name| {
                (
                    votes.get(name.as_str()).copied().unwrap_or(0),
                    std::cmp::Reverse(candidates.iter().position(|c| c == *name)),
                )
            })
            .cloned();
        if !group
            .leader
            .as_ref()
            .is_some_and(|l| group.members.contains_key(l))
        {
            group.leader = group.members.keys().next().cloned();
        }
        group.state = State::CompletingRebalance;
        let ids: Vec<String> = group.members.keys().cloned().collect();
        let mut answers = Vec::with_capacity(ids.len());
        for id in ids {
            let joined = Self::joined(group, &id);
            let member = group.members.get_mut(&id).expect("listed");
            member.last_seen_ms = now_ms;
            member.assignment = Bytes::new();
            if let Some(token) = member.join.take() {
                answers.push(Answer::Join(token, joined));
            }
        }
        answers
    }
}

#[cfg(test)]
#[path = "../classic_tests.rs"]
mod tests;
