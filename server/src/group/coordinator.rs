//! The group coordinator as a synchronous state machine: native groups, committed offsets,
//! and the Kafka (classic) groups beside them. No clocks, channels or I/O: the caller passes
//! `now_ms`, hands in a [`Token`] for each JoinGroup, and sends the answers this returns.
//! Membership itself (phases, generations, sessions) is the shared core in `membership.rs`.
//!
//! Rebalances are eager and assignment is done here (server-side): a join from a new
//! member, a subscription change, a leave or an expired session moves the group to
//! `PreparingRebalance`; members learn it from their next heartbeat and rejoin; when every
//! member has rejoined (or the rebalance timeout passes, dropping those that did not) the
//! generation advances, the assignor runs, and every pending join is answered.

use super::assignor::{Assignment, Assignor, Subscription};
pub use super::limits::{check_group_id, Limits};
use super::membership::{MemberIds, Membership, Refusal, Seat};
pub use super::membership::{Phase, Token};
use keel_protocol::api::ErrorCode;
use std::collections::{BTreeMap, BTreeSet};

/// A JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// Member id (assigned on first join).
    pub member_id: String,
    /// The generation the member is now in.
    pub generation: i32,
    /// Every member of the generation.
    pub members: Vec<String>,
}

/// Answers ready to send: (token, outcome).
pub type JoinAnswers = Vec<(Token, Result<Joined, ErrorCode>)>;

/// The native error for a refusal of the membership core.
fn native(refusal: Refusal) -> ErrorCode {
    match refusal {
        Refusal::UnknownMember => ErrorCode::UnknownMemberId,
        Refusal::IllegalGeneration => ErrorCode::IllegalGeneration,
        Refusal::RebalanceInProgress => ErrorCode::RebalanceInProgress,
    }
}

/// A native group: the shared membership (each member's subscribed topics) and the
/// assignment the broker made for the generation.
#[derive(Debug, Clone)]
pub(super) struct Group {
    pub(super) core: Membership<Vec<String>>,
    pub(super) assignor: Assignor,
    pub(super) assignment: Assignment,
}

impl Group {
    fn new(assignor: Assignor) -> Group {
        Group {
            core: Membership::default(),
            assignor,
            assignment: Assignment::new(),
        }
    }

    /// Ends the join phase when it can, assigns partitions and answers every parked join.
    fn try_complete(&mut self, now_ms: i64, partitions_of: &dyn Fn(&str) -> u32) -> JoinAnswers {
        let Some(joined) = self.core.complete_join(now_ms) else {
            return Vec::new();
        };
        if joined.is_empty() {
            self.assignment.clear();
            return Vec::new();
        }
        let subscriptions: Vec<Subscription<'_>> = self
            .core
            .members
            .iter()
            .map(|(id, m)| (id.as_str(), m.extra.as_slice()))
            .collect();
        self.assignment = self.assignor.assign(&subscriptions, partitions_of);
        self.core.phase = Phase::Stable;
        let members = self.core.ids();
        let generation = self.core.generation;
        joined
            .into_iter()
            .map(|(member_id, token)| {
                let answer = Joined {
                    member_id,
                    generation,
                    members: members.clone(),
                };
                (token, Ok(answer))
            })
            .collect()
    }

    /// After members left or expired: the others rebalance (an emptied group is Empty).
    fn after_removal(&mut self, now_ms: i64, partitions_of: &dyn Fn(&str) -> u32) -> JoinAnswers {
        self.core.after_removal(now_ms);
        if self.core.members.is_empty() {
            self.assignment.clear();
        }
        self.try_complete(now_ms, partitions_of)
    }
}

/// Every group of the broker, and their committed offsets.
#[derive(Debug, Default)]
pub struct Coordinator {
    pub(super) groups: BTreeMap<String, Group>,
    /// Groups of Kafka clients (classic protocol, client-side assignment); they share the
    /// committed offsets below.
    pub classic: super::classic::Classic,
    offsets: BTreeMap<String, BTreeMap<(String, u32), i64>>,
    pub(super) member_ids: MemberIds,
    limits: Limits,
    /// Groups whose record is due (`save.rs`).
    pub(super) noted: BTreeSet<String>,
}

/// What a JoinGroup asks.
#[derive(Debug, Clone)]
pub struct JoinRequest<'a> {
    /// Group id.
    pub group: &'a str,
    /// Empty for a new member.
    pub member_id: &'a str,
    /// Session timeout.
    pub session_timeout_ms: u32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: u32,
    /// Assignor name.
    pub assignor: &'a str,
    /// Subscribed topics.
    pub topics: &'a [String],
}

impl Coordinator {
    /// A coordinator with these limits.
    pub fn new(limits: Limits) -> Coordinator {
        Coordinator {
            limits,
            ..Coordinator::default()
        }
    }

    /// Member ids carry `incarnation` (which broker, since when), so that ids made here
    /// never repeat those of members restored from another coordinator.
    pub fn set_incarnation(&mut self, incarnation: &str) {
        self.member_ids = MemberIds::new(incarnation);
        self.classic.member_ids = MemberIds::new(incarnation);
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Handles a JoinGroup; the answer for `token` comes back now or from a later call.
    pub fn join(
        &mut self,
        now_ms: i64,
        request: JoinRequest<'_>,
        token: Token,
        partitions_of: &dyn Fn(&str) -> u32,
    ) -> JoinAnswers {
        if let Err(error) = check_group_id(request.group, self.limits.group_id_bytes_max) {
            return vec![(token, Err(error))];
        }
        if request.session_timeout_ms < self.limits.session_timeout_ms_min
            || request.session_timeout_ms > self.limits.session_timeout_ms_max
        {
            return vec![(token, Err(ErrorCode::InvalidSessionTimeout))];
        }
        if request.rebalance_timeout_ms > self.limits.rebalance_timeout_ms_max {
            return vec![(token, Err(ErrorCode::InvalidRebalanceTimeout))];
        }
        let Some(assignor) = Assignor::from_name(request.assignor) else {
            return vec![(token, Err(ErrorCode::UnknownAssignor))];
        };
        if self.classic.has(request.group) {
            // A Kafka client's group: one protocol per group.
            return vec![(token, Err(ErrorCode::UnknownAssignor))];
        }
        if !self.groups.contains_key(request.group) && self.groups.len() >= self.limits.groups_max {
            return vec![(token, Err(ErrorCode::TooManyGroups))];
        }
        let group = self
            .groups
            .entry(request.group.to_owned())
            .or_insert_with(|| Group::new(assignor));
        let member_id = if request.member_id.is_empty() {
            if group.core.members.len() >= self.limits.members_max {
                return vec![(token, Err(ErrorCode::GroupMaxSizeReached))];
            }
            self.member_ids.next("member")
        } else if group.core.members.contains_key(request.member_id) {
            request.member_id.to_owned()
        } else {
            return vec![(token, Err(ErrorCode::UnknownMemberId))];
        };
        let mut answers = JoinAnswers::new();
        let member = group
            .core
            .members
            .entry(member_id)
            .or_insert_with(|| Seat::new(now_ms, Vec::new()));
        let session = i64::from(request.session_timeout_ms);
        let rebalance = i64::from(request.rebalance_timeout_ms);
        if let Some(previous) = member.park_join(now_ms, token, session, rebalance) {
            // A member joining twice: the older request is answered as superseded.
            answers.push((previous, Err(ErrorCode::RebalanceInProgress)));
        }
        member.extra = request.topics.to_vec();
        group.assignor = assignor;
        group.core.prepare(now_ms);
        answers.extend(group.try_complete(now_ms, partitions_of));
        answers
    }

    fn group(&mut self, group: &str) -> Result<&mut Group, ErrorCode> {
        self.groups.get_mut(group).ok_or(ErrorCode::UnknownMemberId)
    }

    /// A member's assignment for `generation`: topic → partitions.
    ///
    /// # Errors
    /// `UnknownMemberId`, `IllegalGeneration`, `RebalanceInProgress`.
    pub fn sync(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
    ) -> Result<BTreeMap<String, Vec<u32>>, ErrorCode> {
        let group = self.group(group)?;
        group.core.seat(member_id).map_err(native)?;
        if group.core.phase == Phase::PreparingRebalance {
            return Err(ErrorCode::RebalanceInProgress);
        }
        if generation != group.core.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        Ok(group.assignment.get(member_id).cloned().unwrap_or_default())
    }

    /// Keeps a member alive.
    ///
    /// # Errors
    /// `UnknownMemberId`, `IllegalGeneration`, `RebalanceInProgress` (the member must rejoin).
    pub fn heartbeat(
        &mut self,
        now_ms: i64,
        group: &str,
        generation: i32,
        member_id: &str,
    ) -> Result<(), ErrorCode> {
        let group = self.group(group)?;
        group
            .core
            .heartbeat(now_ms, member_id, generation)
            .map_err(native)
    }

    /// Removes a member; the others rebalance.
    ///
    /// # Errors
    /// `UnknownMemberId`.
    pub fn leave(
        &mut self,
        now_ms: i64,
        group_id: &str,
        member_id: &str,
        partitions_of: &dyn Fn(&str) -> u32,
    ) -> Result<JoinAnswers, ErrorCode> {
        let group = self.group(group_id)?;
        let member = group.core.members.remove(member_id);
        let member = member.ok_or(ErrorCode::UnknownMemberId)?;
        let mut answers = JoinAnswers::new();
        if let Some(token) = member.join {
            answers.push((token, Err(ErrorCode::UnknownMemberId)));
        }
        answers.extend(group.after_removal(now_ms, partitions_of));
        Ok(answers)
    }

    /// Expires members whose session ran out and finishes rebalances whose time is up.
    pub fn tick(&mut self, now_ms: i64, partitions_of: &dyn Fn(&str) -> u32) -> JoinAnswers {
        let mut answers = JoinAnswers::new();
        for group in self.groups.values_mut() {
            if !group.core.expire(now_ms).is_empty() {
                answers.extend(group.after_removal(now_ms, partitions_of));
            }
            answers.extend(group.try_complete(now_ms, partitions_of));
        }
        self.note_changed();
        // A group with no members holds nothing but its generation: forget it, so groups
        // made and left by peers do not accumulate (committed offsets are kept apart).
        self.groups
            .retain(|_, g| !(g.core.members.is_empty() && g.core.phase == Phase::Empty));
        answers
    }

    /// Checks a commit is allowed: from a member of the current generation, or from outside
    /// (generation -1, no member id) while the group has no members.
    ///
    /// # Errors
    /// `UnknownMemberId`, `IllegalGeneration`, `RebalanceInProgress`.
    pub fn check_commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
    ) -> Result<(), ErrorCode> {
        check_group_id(group_id, self.limits.group_id_bytes_max)?;
        if let Some(error) = self.classic.check_commit(group_id, generation, member_id) {
            return match error {
                0 => Ok(()),
                keel_kafka::errors::ILLEGAL_GENERATION => Err(ErrorCode::IllegalGeneration),
                keel_kafka::errors::REBALANCE_IN_PROGRESS => Err(ErrorCode::RebalanceInProgress),
                _ => Err(ErrorCode::UnknownMemberId),
            };
        }
        if !self.offsets.contains_key(group_id)
            && self.offsets.len() >= self.limits.offset_groups_max
        {
            return Err(ErrorCode::TooManyGroups);
        }
        let Some(group) = self.groups.get(group_id) else {
            return if member_id.is_empty() {
                Ok(())
            } else {
                Err(ErrorCode::UnknownMemberId)
            };
        };
        group
            .core
            .check_commit(generation, member_id)
            .map_err(native)
    }

    /// Forgets every group (members, parked joins, committed offsets; native and classic)
    /// for which `gone` is true: another broker coordinates it now. Parked joins are
    /// answered NotCoordinator.
    pub fn forget(
        &mut self,
        gone: &dyn Fn(&str) -> bool,
    ) -> (JoinAnswers, Vec<super::classic::Answer>) {
        let mut answers = JoinAnswers::new();
        self.groups.retain(|name, group| {
            if !gone(name) {
                return true;
            }
            let parked = group.core.parked().filter_map(|(_, join, _)| join);
            answers.extend(parked.map(|token| (token, Err(ErrorCode::NotCoordinator))));
            false
        });
        self.offsets.retain(|name, _| !gone(name));
        self.noted.retain(|name| !gone(name));
        (answers, self.classic.forget(gone))
    }

    /// Records a committed offset (after it is durable, or while replaying the offsets log).
    pub fn store_offset(&mut self, group: &str, topic: &str, partition: u32, offset: i64) {
        self.offsets
            .entry(group.to_owned())
            .or_default()
            .insert((topic.to_owned(), partition), offset);
    }

    /// Forgets a committed offset (a tombstone replayed from the offsets log).
    pub fn remove_offset(&mut self, group: &str, topic: &str, partition: u32) {
        if let Some(offsets) = self.offsets.get_mut(group) {
            offsets.remove(&(topic.to_owned(), partition));
            if offsets.is_empty() {
                self.offsets.remove(group);
            }
        }
    }

    /// Whether a group (native or classic) has members now.
    pub fn has_members(&self, group: &str) -> bool {
        self.groups
            .get(group)
            .is_some_and(|g| !g.core.members.is_empty())
            || self
                .classic
                .describe(group)
                .is_some_and(|g| !g.members.is_empty())
    }

    /// A group's committed offset for a partition.
    pub fn committed(&self, group: &str, topic: &str, partition: u32) -> Option<i64> {
        self.offsets
            .get(group)?
            .get(&(topic.to_owned(), partition))
            .copied()
    }

    /// Every committed offset of every group: (group, topic, partition, offset).
    pub fn all_offsets(&self) -> Vec<(String, String, u32, i64)> {
        self.offsets
            .iter()
            .flat_map(|(group, offsets)| {
                offsets.iter().map(move |((topic, partition), offset)| {
                    (group.clone(), topic.clone(), *partition, *offset)
                })
            })
            .collect()
    }

    /// Every committed offset of a group.
    pub fn committed_all(&self, group: &str) -> Vec<((String, u32), i64)> {
        self.offsets
            .get(group)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }

    /// Every group (with members or committed offsets) and its state.
    pub fn list(&self) -> Vec<(String, Phase)> {
        let classic = self.classic.list();
        let mut names: Vec<&String> = self
            .groups
            .keys()
            .chain(self.offsets.keys())
            .chain(classic.iter().map(|(name, ..)| name))
            .collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let state = match classic.iter().find(|(n, ..)| n == name) {
                    Some((_, state, _)) => *state,
                    None => self.groups.get(name).map_or(Phase::Empty, |g| g.core.phase),
                };
                (name.clone(), state)
            })
            .collect()
    }

    /// A group's state, generation, assignor and members with their subscriptions and
    /// assignments; `None` for an unknown group.
    #[allow(clippy::type_complexity)]
    pub fn describe(
        &self,
        group: &str,
    ) -> Option<(
        Phase,
        i32,
        String,
        Vec<(String, Vec<String>, BTreeMap<String, Vec<u32>>)>,
    )> {
        if let Some(view) = self.classic.describe(group) {
            // What the members' own assignor decided, read back from the consumer
            // protocol's bytes (unreadable bytes show as nothing).
            let members = view
                .members
                .into_iter()
                .map(|m| {
                    let topics =
                        keel_kafka::consumer::subscription_topics(m.metadata).unwrap_or_default();
                    let mut assignment: BTreeMap<String, Vec<u32>> = BTreeMap::new();
                    for (topic, partitions) in
                        keel_kafka::consumer::assignment_partitions(m.assignment)
                            .unwrap_or_default()
                    {
                        let entry = assignment.entry(topic).or_default();
                        entry.extend(partitions.into_iter().filter_map(|p| u32::try_from(p).ok()));
                    }
                    (m.member_id, topics, assignment)
                })
                .collect();
            return Some((view.state, view.generation, view.protocol, members));
        }
        if let Some(g) = self.groups.get(group) {
            let members = g
                .core
                .members
                .iter()
                .map(|(id, m)| {
                    let assignment = g.assignment.get(id).cloned().unwrap_or_default();
                    (id.clone(), m.extra.clone(), assignment)
                })
                .collect();
            let assignor = g.assignor.name().to_owned();
            return Some((g.core.phase, g.core.generation, assignor, members));
        }
        self.offsets.contains_key(group).then(|| {
            (
                Phase::Empty,
                0,
                Assignor::Range.name().to_owned(),
                Vec::new(),
            )
        })
    }
}

#[cfg(test)]
#[path = "coordinator_tests.rs"]
mod tests;
