//! The group coordinator as a synchronous state machine: membership, rebalances, session
//! timeouts and committed offsets. No clocks, channels or I/O: the caller passes `now_ms`,
//! hands in a [`Token`] for each JoinGroup, and sends the answers this returns.
//!
//! Rebalances are eager and assignment is done here (server-side): a join from a new
//! member, a subscription change, a leave or an expired session moves the group to
//! `PreparingRebalance`; members learn it from their next heartbeat and rejoin; when every
//! member has rejoined (or the rebalance timeout passes, dropping those that did not) the
//! generation advances, the assignor runs, and every pending join is answered.

use super::assignor::{Assignment, Assignor, Subscription};
pub use super::limits::{check_group_id, Limits};
use keel_protocol::api::ErrorCode;
use std::collections::BTreeMap;

/// The caller's handle for a pending JoinGroup answer.
pub type Token = u64;

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

/// A group's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Members have their assignments.
    Stable,
}

impl GroupState {
    /// Name as shown to users.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

#[derive(Debug, Clone)]
struct Member {
    topics: Vec<String>,
    session_timeout_ms: i64,
    rebalance_timeout_ms: i64,
    last_seen_ms: i64,
    /// Set while the member waits in the current rebalance.
    pending: Option<Token>,
}

#[derive(Debug, Clone)]
struct Group {
    state: GroupState,
    generation: i32,
    assignor: Assignor,
    members: BTreeMap<String, Member>,
    assignment: Assignment,
    rebalance_started_ms: i64,
}

impl Group {
    fn new(assignor: Assignor) -> Group {
        Group {
            state: GroupState::Empty,
            generation: 0,
            assignor,
            members: BTreeMap::new(),
            assignment: Assignment::new(),
            rebalance_started_ms: 0,
        }
    }
}

/// Every group of the broker, and their committed offsets.
#[derive(Debug, Default)]
pub struct Coordinator {
    groups: BTreeMap<String, Group>,
    /// Groups of Kafka clients (classic protocol, client-side assignment); they share the
    /// committed offsets below.
    pub classic: super::classic::Classic,
    offsets: BTreeMap<String, BTreeMap<(String, u32), i64>>,
    next_member: u64,
    limits: Limits,
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
            if group.members.len() >= self.limits.members_max {
                return vec![(token, Err(ErrorCode::GroupMaxSizeReached))];
            }
            self.next_member += 1;
            format!("member-{}-{}", self.next_member, request.group)
        } else if group.members.contains_key(request.member_id) {
            request.member_id.to_owned()
        } else {
            return vec![(token, Err(ErrorCode::UnknownMemberId))];
        };
        let mut answers = JoinAnswers::new();
        let member = group
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                topics: Vec::new(),
                session_timeout_ms: 0,
                rebalance_timeout_ms: 0,
                last_seen_ms: now_ms,
                pending: None,
            });
        if let Some(previous) = member.pending.replace(token) {
            // A member joining twice: the older request is answered as superseded.
            answers.push((previous, Err(ErrorCode::RebalanceInProgress)));
        }
        member.topics = request.topics.to_vec();
        member.session_timeout_ms = i64::from(request.session_timeout_ms);
        member.rebalance_timeout_ms =
            i64::from(request.rebalance_timeout_ms.max(request.session_timeout_ms));
        member.last_seen_ms = now_ms;
        group.assignor = assignor;
        if group.state != GroupState::PreparingRebalance {
            group.state = GroupState::PreparingRebalance;
            group.rebalance_started_ms = now_ms;
        }
        answers.extend(Self::try_complete(group, now_ms, partitions_of));
        answers
    }

    /// Completes the rebalance if every member has rejoined, or if its time is up (members
    /// that did not rejoin are removed).
    fn try_complete(
        group: &mut Group,
        now_ms: i64,
        partitions_of: &dyn Fn(&str) -> u32,
    ) -> JoinAnswers {
        if group.state != GroupState::PreparingRebalance {
            return Vec::new();
        }
        let all_joined = group.members.values().all(|m| m.pending.is_some());
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
        group.members.retain(|_, m| m.pending.is_some());
        group.generation += 1;
        if group.members.is_empty() {
            group.state = GroupState::Empty;
            group.assignment.clear();
            return Vec::new();
        }
        let subscriptions: Vec<Subscription<'_>> = group
            .members
            .iter()
            .map(|(id, m)| (id.as_str(), m.topics.as_slice()))
            .collect();
        group.assignment = group.assignor.assign(&subscriptions, partitions_of);
        group.state = GroupState::Stable;
        let members: Vec<String> = group.members.keys().cloned().collect();
        let generation = group.generation;
        group
            .members
            .iter_mut()
            .filter_map(|(id, member)| {
                member.last_seen_ms = now_ms;
                let token = member.pending.take()?;
                Some((
                    token,
                    Ok(Joined {
                        member_id: id.clone(),
                        generation,
                        members: members.clone(),
                    }),
                ))
            })
            .collect()
    }

    fn member<'a>(
        groups: &'a mut BTreeMap<String, Group>,
        group: &str,
        member_id: &str,
    ) -> Result<(&'a mut Group, ()), ErrorCode> {
        let group = groups.get_mut(group).ok_or(ErrorCode::UnknownMemberId)?;
        if !group.members.contains_key(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        Ok((group, ()))
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
        let (group, ()) = Self::member(&mut self.groups, group, member_id)?;
        if group.state == GroupState::PreparingRebalance {
            return Err(ErrorCode::RebalanceInProgress);
        }
        if generation != group.generation {
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
        let (group, ()) = Self::member(&mut self.groups, group, member_id)?;
        group
            .members
            .get_mut(member_id)
            .expect("checked")
            .last_seen_ms = now_ms;
        if group.state == GroupState::PreparingRebalance {
            return Err(ErrorCode::RebalanceInProgress);
        }
        if generation != group.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        Ok(())
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
        let (group, ()) = Self::member(&mut self.groups, group_id, member_id)?;
        let mut answers = JoinAnswers::new();
        if let Some(member) = group.members.remove(member_id) {
            if let Some(token) = member.pending {
                answers.push((token, Err(ErrorCode::UnknownMemberId)));
            }
        }
        Self::start_rebalance(group, now_ms);
        answers.extend(Self::try_complete(group, now_ms, partitions_of));
        Ok(answers)
    }

    fn start_rebalance(group: &mut Group, now_ms: i64) {
        if group.members.is_empty() {
            group.state = GroupState::Empty;
            group.assignment.clear();
            group.generation += 1;
        } else if group.state != GroupState::PreparingRebalance {
            group.state = GroupState::PreparingRebalance;
            group.rebalance_started_ms = now_ms;
        }
    }

    /// Expires members whose session ran out and finishes rebalances whose time is up.
    pub fn tick(&mut self, now_ms: i64, partitions_of: &dyn Fn(&str) -> u32) -> JoinAnswers {
        let mut answers = JoinAnswers::new();
        for group in self.groups.values_mut() {
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, m)| {
                    m.pending.is_none() && now_ms - m.last_seen_ms > m.session_timeout_ms
                })
                .map(|(id, _)| id.clone())
                .collect();
            if !expired.is_empty() {
                for id in &expired {
                    group.members.remove(id);
                }
                Self::start_rebalance(group, now_ms);
            }
            answers.extend(Self::try_complete(group, now_ms, partitions_of));
        }
        // A group with no members holds nothing but its generation: forget it, so groups
        // made and left by peers do not accumulate (committed offsets are kept apart).
        self.groups
            .retain(|_, g| !(g.members.is_empty() && g.state == GroupState::Empty));
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
        if member_id.is_empty() && generation < 0 {
            return if group.members.is_empty() {
                Ok(())
            } else {
                Err(ErrorCode::RebalanceInProgress)
            };
        }
        if !group.members.contains_key(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        if generation != group.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        Ok(())
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
            let parked = group.members.values().filter_map(|m| m.pending);
            answers.extend(parked.map(|token| (token, Err(ErrorCode::NotCoordinator))));
            false
        });
        self.offsets.retain(|name, _| !gone(name));
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
            .is_some_and(|g| !g.members.is_empty())
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
    pub fn list(&self) -> Vec<(String, GroupState)> {
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
                    Some((_, state, _)) => state.native(),
                    None => self.groups.get(name).map_or(GroupState::Empty, |g| g.state),
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
        GroupState,
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
            return Some((view.state.native(), view.generation, view.protocol, members));
        }
        if let Some(g) = self.groups.get(group) {
            let members = g
                .members
                .iter()
                .map(|(id, m)| {
                    (
                        id.clone(),
                        m.topics.clone(),
                        g.assignment.get(id).cloned().unwrap_or_default(),
                    )
                })
                .collect();
            return Some((g.state, g.generation, g.assignor.name().to_owned(), members));
        }
        self.offsets.contains_key(group).then(|| {
            (
                GroupState::Empty,
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
