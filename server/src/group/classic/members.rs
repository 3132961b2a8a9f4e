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
        match g.core.members.get(member_id) {
            None if instance_id.is_some_and(|i| g.static_member(i).is_some()) => {
                Err(errors::FENCED_INSTANCE_ID)
            }
            None => Err(errors::UNKNOWN_MEMBER_ID),
            Some(m) if instance_id.is_some() && m.extra.instance_id.as_deref() != instance_id => {
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
        if generation != group.core.generation {
            let error = errors::ILLEGAL_GENERATION;
            return vec![Answer::Sync(token, error, Bytes::new())];
        }
        let phase = group.core.phase;
        let member = group.core.seat(member_id).expect("checked");
        member.seen(now_ms);
        match phase {
            Phase::Empty | Phase::PreparingRebalance => {
                let error = errors::REBALANCE_IN_PROGRESS;
                vec![Answer::Sync(token, error, Bytes::new())]
            }
            Phase::Stable => vec![Answer::Sync(token, 0, member.extra.assignment.clone())],
            Phase::CompletingRebalance => {
                let mut answers = Vec::new();
                if let Some(previous) = member.sync.replace(token) {
                    let error = errors::REBALANCE_IN_PROGRESS;
                    answers.push(Answer::Sync(previous, error, Bytes::new()));
                }
                if group.leader.as_deref() == Some(member_id) {
                    group.assign(assignments, &mut answers);
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
            .core
            .heartbeat(now_ms, member_id, generation)
            .err()
            .map_or(0, kafka)
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
            let id = match member_id.is_empty() {
                true => instance_id.as_deref().and_then(|i| group.static_member(i)),
                false => Some(member_id.clone()),
            };
            let removed = id.and_then(|id| {
                let member = group.core.members.get(&id)?;
                if instance_id.is_some() && member.extra.instance_id != *instance_id {
                    return None;
                }
                group.core.members.remove(&id)
            });
            let Some(member) = removed else {
                results.push(errors::UNKNOWN_MEMBER_ID);
                continue;
            };
            if let Some(t) = member.join {
                let gone = Joined::error(errors::UNKNOWN_MEMBER_ID, member_id.clone());
                answers.push(Answer::Join(t, gone));
            }
            if let Some(t) = member.sync {
                answers.push(Answer::Sync(t, errors::UNKNOWN_MEMBER_ID, Bytes::new()));
            }
            results.push(0);
        }
        if results.contains(&0) {
            Self::after_removal(group, now_ms, &mut answers);
        }
        (results, answers)
    }

    fn after_removal(group: &mut Group, now_ms: i64, answers: &mut Vec<Answer>) {
        rejoin(group.core.after_removal(now_ms), answers);
        if group.core.phase == Phase::Empty {
            group.protocol = None;
            group.leader = None;
        } else {
            answers.extend(Self::try_complete(group, now_ms));
        }
    }

    /// Expires members whose session ran out, finishes rebalances whose time is up, forgets
    /// member ids handed out and never used, and groups with nothing left.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Answer> {
        let mut answers = Vec::new();
        for group in self.groups.values_mut() {
            let expired = group.core.expire(now_ms);
            for (_, member) in &expired {
                if let Some(t) = member.sync {
                    answers.push(Answer::Sync(t, errors::UNKNOWN_MEMBER_ID, Bytes::new()));
                }
            }
            if !expired.is_empty() {
                Self::after_removal(group, now_ms, &mut answers);
            }
            answers.extend(Self::try_complete(group, now_ms));
            group.pending.retain(|_, at| now_ms - *at < 300_000);
        }
        self.note_changed();
        self.groups.retain(|_, g| {
            !(g.core.members.is_empty() && g.pending.is_empty() && g.core.phase == Phase::Empty)
        });
        answers
    }

    /// Whether a commit from this member at this generation may store offsets: `None`
    /// when the group is not a classic group (the native rules apply).
    pub fn check_commit(&self, group_id: &str, generation: i32, member_id: &str) -> Option<i16> {
        let group = self.groups.get(group_id)?;
        let checked = group.core.check_commit(generation, member_id);
        Some(checked.err().map_or(0, kafka))
    }

    /// Every classic group and its state.
    pub fn list(&self) -> Vec<(String, Phase, String)> {
        self.groups
            .iter()
            .map(|(name, g)| (name.clone(), g.core.phase, g.protocol_type.clone()))
            .collect()
    }

    /// A group as DescribeGroups shows it.
    pub fn describe(&self, group_id: &str) -> Option<GroupView> {
        let group = self.groups.get(group_id)?;
        let protocol = group.protocol.clone().unwrap_or_default();
        let members = group.core.members.iter().map(|(id, m)| MemberView {
            member_id: id.clone(),
            instance_id: m.extra.instance_id.clone(),
            client_id: m.extra.client_id.clone(),
            client_host: m.extra.client_host.clone(),
            metadata: m
                .extra
                .protocols
                .iter()
                .find(|(n, _)| *n == protocol)
                .or(m.extra.protocols.first())
                .map(|(_, md)| md.clone())
                .unwrap_or_default(),
            assignment: m.extra.assignment.clone(),
        });
        Some(GroupView {
            state: group.core.phase,
            generation: group.core.generation,
            protocol_type: group.protocol_type.clone(),
            protocol: protocol.clone(),
            members: members.collect(),
        })
    }
}

impl Group {
    /// The leader's assignment: kept per member, the group is Stable, every parked sync is
    /// answered with its member's share.
    fn assign(&mut self, assignments: Vec<(String, Bytes)>, answers: &mut Vec<Answer>) {
        for (id, assignment) in assignments {
            if let Ok(m) = self.core.seat(&id) {
                m.extra.assignment = assignment;
            }
        }
        self.core.phase = Phase::Stable;
        self.core.changed = true;
        for m in self.core.members.values_mut() {
            if let Some(t) = m.sync.take() {
                answers.push(Answer::Sync(t, 0, m.extra.assignment.clone()));
            }
        }
    }
}
