//! A classic group's members after they joined: SyncGroup, Heartbeat, LeaveGroup, session
//! expiry, commit checks and what DescribeGroups shows.

use super::*;
pub use keel_kafka::requests::SyncGroup;

impl Classic {
    fn member<'a>(
        &'a mut self,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<&'a mut Group, i16> {
        let g = self
            .groups
            .get_mut(group)
            .ok_or(errors::UNKNOWN_MEMBER_ID)?;
        match g.members.get(member_id) {
            None if instance_id.is_some_and(|i| {
                g.members
                    .values()
                    .any(|m| m.instance_id.as_deref() == Some(i))
            }) =>
            {
                Err(errors::FENCED_INSTANCE_ID)
            }
            None => Err(errors::UNKNOWN_MEMBER_ID),
            Some(m) if instance_id.is_some() && m.instance_id.as_deref() != instance_id => {
                Err(errors::FENCED_INSTANCE_ID)
            }
            Some(_) => Ok(g),
        }
    }

    /// Handles a SyncGroup; answered now or when the leader's assignment arrives.
    pub fn sync(&mut self, now_ms: i64, sync: SyncGroup, token: Token) -> Vec<Answer> {
        let SyncGroup {
            group: group_id,
            generation,
            member_id,
            group_instance_id: instance_id,
            assignments,
        } = sync;
        let (member_id, instance_id) = (member_id.as_str(), instance_id.as_deref());
        let group = match self.member(&group_id, member_id, instance_id) {
            Ok(group) => group,
            Err(error) => return vec![Answer::Sync(token, error, Bytes::new())],
        };
        if generation != group.generation {
            return vec![Answer::Sync(
                token,
                errors::ILLEGAL_GENERATION,
                Bytes::new(),
            )];
        }
        let member = group.members.get_mut(member_id).expect("checked");
        member.last_seen_ms = now_ms;
        match group.state {
            State::Empty | State::PreparingRebalance => {
                vec![Answer::Sync(
                    token,
                    errors::REBALANCE_IN_PROGRESS,
                    Bytes::new(),
                )]
            }
            State::Stable => vec![Answer::Sync(token, 0, member.assignment.clone())],
            State::CompletingRebalance => {
                let mut answers = Vec::new();
                if let Some(previous) = member.sync.replace(token) {
                    answers.push(Answer::Sync(
                        previous,
                        errors::REBALANCE_IN_PROGRESS,
                        Bytes::new(),
                    ));
                }
                if group.leader.as_deref() == Some(member_id) {
                    for (id, assignment) in assignments {
                        if let Some(m) = group.members.get_mut(&id) {
                            m.assignment = assignment;
                        }
                    }
                    group.state = State::Stable;
                    for m in group.members.values_mut() {
                        if let Some(t) = m.sync.take() {
                            answers.push(Answer::Sync(t, 0, m.assignment.clone()));
                        }
                    }
                }
                answers
            }
        }
    }

    /// Keeps a member alive; Kafka's error tells it to rejoin or that it is fenced.
    pub fn heartbeat(
        &mut self,
        now_ms: i64,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        let group = match self.member(group_id, member_id, instance_id) {
            Ok(group) => group,
            Err(error) => return error,
        };
        group
            .members
            .get_mut(member_id)
            .expect("checked")
            .last_seen_ms = now_ms;
        // While the leader's assignment is awaited (CompletingRebalance) members that
        // joined heartbeat normally, as with Kafka: telling them to rejoin would start
        // another rebalance before this one finished, again and again.
        match group.state {
            State::PreparingRebalance => errors::REBALANCE_IN_PROGRESS,
            _ if generation != group.generation => errors::ILLEGAL_GENERATION,
            _ => 0,
        }
    }

    /// Members leave (by member id, or by instance id when the member id is empty); the
    /// others rebalance. Returns each member's error and the answers due.
    pub fn leave(
        &mut self,
        now_ms: i64,
        group_id: &str,
        leaving: &[(String, Option<String>)],
    ) -> (Vec<i16>, Vec<Answer>) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return (vec![errors::UNKNOWN_MEMBER_ID; leaving.len()], Vec::new());
        };
        let mut answers = Vec::new();
        let mut results = Vec::with_capacity(leaving.len());
        for (member_id, instance_id) in leaving {
            let id = if member_id.is_empty() {
                instance_id.as_ref().and_then(|instance| {
                    group
                        .members
                        .iter()
                        .find(|(_, m)| m.instance_id.as_ref() == Some(instance))
                        .map(|(id, _)| id.clone())
                })
            } else {
                Some(member_id.clone())
            };
            let removed = id.and_then(|id| {
                let member = group.members.get(&id)?;
                if instance_id.is_some() && member.instance_id != *instance_id {
                    return None;
                }
                group.members.remove(&id)
            });
            match removed {
                Some(member) => {
                    if let Some(t) = member.join {
                        answers.push(Answer::Join(
                            t,
                            Joined::error(errors::UNKNOWN_MEMBER_ID, member_id.clone()),
                        ));
                    }
                    if let Some(t) = member.sync {
                        answers.push(Answer::Sync(t, errors::UNKNOWN_MEMBER_ID, Bytes::new()));
                    }
                    results.push(0);
                }
                None => results.push(errors::UNKNOWN_MEMBER_ID),
            }
        }
        if results.contains(&0) {
            Self::after_removal(group, now_ms, &mut answers);
        }
        (results, answers)
    }

    fn after_removal(group: &mut Group, now_ms: i64, answers: &mut Vec<Answer>) {
        if group.members.is_empty() {
            group.state = State::Empty;
            group.generation += 1;
            group.protocol = None;
            group.leader = None;
        } else {
            Self::prepare(group, now_ms, answers);
            answers.extend(Self::try_complete(group, now_ms));
        }
    }

    /// Expires members whose session ran out, finishes rebalances whose time is up, forgets
    /// member ids handed out and never used, and groups with nothing left.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Answer> {
        let mut answers = Vec::new();
        for group in self.groups.values_mut() {
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, m)| m.join.is_none() && now_ms - m.last_seen_ms > m.session_timeout_ms)
                .map(|(id, _)| id.clone())
                .collect();
            for id in &expired {
                if let Some(member) = group.members.remove(id) {
                    if let Some(t) = member.sync {
                        answers.push(Answer::Sync(t, errors::UNKNOWN_MEMBER_ID, Bytes::new()));
                    }
                }
            }
            if !expired.is_empty() {
                Self::after_removal(group, now_ms, &mut answers);
            }
            answers.extend(Self::try_complete(group, now_ms));
            group.pending.retain(|_, at| now_ms - *at < 300_000);
        }
        self.groups.retain(|_, g| {
            !(g.members.is_empty() && g.pending.is_empty() && g.state == State::Empty)
        });
        answers
    }

    /// Whether a commit from this member at this generation may store offsets: `None`
    /// when the group is not a classic group (the native rules apply).
    pub fn check_commit(&self, group_id: &str, generation: i32, member_id: &str) -> Option<i16> {
        let group = self.groups.get(group_id)?;
        if member_id.is_empty() && generation < 0 {
            return Some(if group.members.is_empty() {
                0
            } else {
                errors::REBALANCE_IN_PROGRESS
            });
        }
        if !group.members.contains_key(member_id) {
            return Some(errors::UNKNOWN_MEMBER_ID);
        }
        if generation != group.generation {
            return Some(errors::ILLEGAL_GENERATION);
        }
        // As Kafka: a member of the current generation may commit while the group prepares a
        // rebalance (its commit on revocation); not while the leader's assignment is awaited.
        if group.state == State::CompletingRebalance {
            return Some(errors::REBALANCE_IN_PROGRESS);
        }
        Some(0)
    }

    /// Every classic group and its state.
    pub fn list(&self) -> Vec<(String, State, String)> {
        self.groups
            .iter()
            .map(|(name, g)| (name.clone(), g.state, g.protocol_type.clone()))
            .collect()
    }

    /// A group as DescribeGroups shows it.
    pub fn describe(&self, group_id: &str) -> Option<GroupView> {
        let group = self.groups.get(group_id)?;
        let protocol = group.protocol.clone().unwrap_or_default();
        Some(GroupView {
            state: group.state,
            generation: group.generation,
            protocol_type: group.protocol_type.clone(),
            protocol: protocol.clone(),
            members: group
                .members
                .iter()
                .map(|(id, m)| MemberView {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m
                        .protocols
                        .iter()
                        .find(|(n, _)| *n == protocol)
                        .or(m.protocols.first())
                        .map(|(_, md)| md.clone())
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }
}
