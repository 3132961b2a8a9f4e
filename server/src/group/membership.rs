//! The membership core every group shares, native or classic: who is a member, the
//! generation, the rebalance's phases, session expiry and the checks of heartbeats and
//! commits. What a member brings (a native member's topics, a Kafka member's protocols and
//! assignment bytes) is the type parameter; how an assignment is made is the caller's
//! (server-side for native groups, the leader's SyncGroup for classic ones). No clocks or
//! I/O: the caller passes `now_ms` and the tokens of the requests it parks.

use std::collections::BTreeMap;

/// The caller's handle for a parked request (a JoinGroup or SyncGroup waiting for its answer).
pub type Token = u64;

/// A group's phase, with Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No members.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Everyone joined; waiting for the assignment (classic groups: the leader's SyncGroup).
    CompletingRebalance,
    /// Members have their assignments.
    Stable,
}

impl Phase {
    /// Name as Kafka's tools print it.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Empty => "Empty",
            Phase::PreparingRebalance => "PreparingRebalance",
            Phase::CompletingRebalance => "CompletingRebalance",
            Phase::Stable => "Stable",
        }
    }
}

/// Why a member's request is refused; each protocol maps it to its own error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a member (expired, left, or never joined).
    UnknownMember,
    /// A member, but of another generation.
    IllegalGeneration,
    /// The group is rebalancing: rejoin.
    RebalanceInProgress,
}

/// One member: its timeouts, when it was last heard from, its parked requests and what its
/// protocol keeps about it.
#[derive(Debug, Clone)]
pub struct Seat<P> {
    /// Session timeout.
    pub session_timeout_ms: i64,
    /// How long a rebalance waits for this member.
    pub rebalance_timeout_ms: i64,
    /// Last request from the member.
    pub last_seen_ms: i64,
    /// Restored from the offsets log and not heard from since: a rebalance does not wait
    /// for it (it may be long gone: a member whose session ran out while the coordinator
    /// moved took a new id), and it expires with its session as any member.
    pub unconfirmed: bool,
    /// A parked JoinGroup.
    pub join: Option<Token>,
    /// A parked SyncGroup.
    pub sync: Option<Token>,
    /// The protocol's part.
    pub extra: P,
}

impl<P> Seat<P> {
    /// A member just seen, with nothing parked.
    pub fn new(now_ms: i64, extra: P) -> Seat<P> {
        Seat {
            session_timeout_ms: 0,
            rebalance_timeout_ms: 0,
            last_seen_ms: now_ms,
            unconfirmed: false,
            join: None,
            sync: None,
            extra,
        }
    }

    /// The member was heard from.
    pub fn seen(&mut self, now_ms: i64) {
        self.last_seen_ms = now_ms;
        self.unconfirmed = false;
    }

    /// Parks a join with its timeouts; returns the join it replaces (answered as superseded).
    pub fn park_join(
        &mut self,
        now_ms: i64,
        token: Token,
        session_timeout_ms: i64,
        rebalance_timeout_ms: i64,
    ) -> Option<Token> {
        self.session_timeout_ms = session_timeout_ms;
        self.rebalance_timeout_ms = rebalance_timeout_ms.max(session_timeout_ms);
        self.seen(now_ms);
        self.join.replace(token)
    }
}

/// Makes member ids unique across coordinators: the incarnation (which broker, since when)
/// and a counter, so that a broker taking a group over never hands out an id a restored
/// member holds.
#[derive(Debug, Default)]
pub struct MemberIds {
    incarnation: String,
    next: u64,
}

impl MemberIds {
    /// Ids from this coordinator's incarnation.
    pub fn new(incarnation: &str) -> MemberIds {
        MemberIds {
            incarnation: incarnation.to_owned(),
            next: 0,
        }
    }

    /// A new id starting with `name`.
    pub fn next(&mut self, name: &str) -> String {
        self.next += 1;
        match self.incarnation.is_empty() {
            true => format!("{name}-{}", self.next),
            false => format!("{name}-{}-{}", self.incarnation, self.next),
        }
    }
}

/// A group's members and the state of its rebalance.
#[derive(Debug, Clone)]
pub struct Membership<P> {
    /// The phase.
    pub phase: Phase,
    /// The generation; advances with every completed join phase and when the last member goes.
    pub generation: i32,
    /// Members by id.
    pub members: BTreeMap<String, Seat<P>>,
    rebalance_started_ms: i64,
    /// Set when the group reached a new generation or emptied: its record is due.
    pub changed: bool,
}

impl<P> Default for Membership<P> {
    fn default() -> Self {
        Membership {
            phase: Phase::Empty,
            generation: 0,
            members: BTreeMap::new(),
            rebalance_started_ms: 0,
            changed: false,
        }
    }
}

impl<P> Membership<P> {
    /// A group restored in `phase` at `generation` (from the offsets log); the caller
    /// makes each seat as seen at the restore, so that sessions start again from it.
    pub fn restored(phase: Phase, generation: i32, members: BTreeMap<String, Seat<P>>) -> Self {
        Membership {
            phase,
            generation,
            members,
            rebalance_started_ms: 0,
            changed: false,
        }
    }

    /// The member `id`, if it is one.
    ///
    /// # Errors
    /// `UnknownMember`.
    pub fn seat(&mut self, id: &str) -> Result<&mut Seat<P>, Refusal> {
        self.members.get_mut(id).ok_or(Refusal::UnknownMember)
    }

    /// Starts a rebalance unless one is being prepared; returns the parked syncs, which wait
    /// for an assignment that will not come (their members must rejoin).
    pub fn prepare(&mut self, now_ms: i64) -> Vec<Token> {
        if self.phase == Phase::PreparingRebalance {
            return Vec::new();
        }
        self.phase = Phase::PreparingRebalance;
        self.rebalance_started_ms = now_ms;
        self.members
            .values_mut()
            .filter_map(|m| m.sync.take())
            .collect()
    }

    /// Ends the join phase once every member rejoined or the rebalance timeout passed:
    /// members that did not rejoin are dropped, the generation advances and the phase
    /// becomes CompletingRebalance (Empty when nobody is left). Returns each member with its
    /// parked join, or `None` while the phase goes on.
    pub fn complete_join(&mut self, now_ms: i64) -> Option<Vec<(String, Token)>> {
        if self.phase != Phase::PreparingRebalance {
            return None;
        }
        let all_joined = self
            .members
            .values()
            .all(|m| m.join.is_some() || m.unconfirmed);
        let longest = self.members.values().map(|m| m.rebalance_timeout_ms).max();
        let deadline = self.rebalance_started_ms + longest.unwrap_or(0);
        if !all_joined && now_ms < deadline {
            return None;
        }
        self.members.retain(|_, m| m.join.is_some());
        self.generation += 1;
        self.changed = true;
        if self.members.is_empty() {
            self.phase = Phase::Empty;
            return Some(Vec::new());
        }
        self.phase = Phase::CompletingRebalance;
        let joined = self.members.iter_mut().filter_map(|(id, member)| {
            member.last_seen_ms = now_ms;
            Some((id.clone(), member.join.take()?))
        });
        Some(joined.collect())
    }

    /// After members were removed: an empty group becomes Empty at the next generation,
    /// the others rebalance. Returns the syncs to answer as [`Membership::prepare`] does.
    pub fn after_removal(&mut self, now_ms: i64) -> Vec<Token> {
        if self.members.is_empty() {
            self.phase = Phase::Empty;
            self.generation += 1;
            self.changed = true;
            Vec::new()
        } else {
            self.prepare(now_ms)
        }
    }

    /// Removes the members whose session ran out (a member with a parked join is waiting
    /// for us, not silent) and returns them.
    pub fn expire(&mut self, now_ms: i64) -> Vec<(String, Seat<P>)> {
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.join.is_none() && now_ms - m.last_seen_ms > m.session_timeout_ms)
            .map(|(id, _)| id.clone())
            .collect();
        expired
            .into_iter()
            .filter_map(|id| self.members.remove_entry(&id))
            .collect()
    }

    /// A heartbeat: the member is alive; it learns whether to rejoin.
    ///
    /// # Errors
    /// `UnknownMember`; `RebalanceInProgress` while members rejoin; `IllegalGeneration`.
    pub fn heartbeat(&mut self, now_ms: i64, id: &str, generation: i32) -> Result<(), Refusal> {
        self.seat(id)?.seen(now_ms);
        // While an assignment is awaited (CompletingRebalance) members heartbeat normally:
        // telling them to rejoin would start another rebalance before this one finished.
        if self.phase == Phase::PreparingRebalance {
            return Err(Refusal::RebalanceInProgress);
        }
        if generation != self.generation {
            return Err(Refusal::IllegalGeneration);
        }
        Ok(())
    }

    /// Whether a commit may store offsets: from a member of the current generation (also
    /// while a rebalance is prepared: its commit on revocation, as Kafka allows; not while
    /// the assignment is awaited), or from outside the group (no member id, generation -1)
    /// while it has no members.
    ///
    /// # Errors
    /// `UnknownMember`, `IllegalGeneration`, `RebalanceInProgress`.
    pub fn check_commit(&self, generation: i32, member_id: &str) -> Result<(), Refusal> {
        if member_id.is_empty() && generation < 0 {
            return match self.members.is_empty() {
                true => Ok(()),
                false => Err(Refusal::RebalanceInProgress),
            };
        }
        if !self.members.contains_key(member_id) {
            return Err(Refusal::UnknownMember);
        }
        if generation != self.generation {
            return Err(Refusal::IllegalGeneration);
        }
        if self.phase == Phase::CompletingRebalance {
            return Err(Refusal::RebalanceInProgress);
        }
        Ok(())
    }

    /// Every parked join and sync (the group moves to another coordinator, or is removed).
    pub fn parked(&self) -> impl Iterator<Item = (&str, Option<Token>, Option<Token>)> {
        self.members
            .iter()
            .filter(|(_, m)| m.join.is_some() || m.sync.is_some())
            .map(|(id, m)| (id.as_str(), m.join, m.sync))
    }

    /// The member ids, in order.
    pub fn ids(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(members: &[&str]) -> Membership<()> {
        let mut group = Membership::default();
        for (token, id) in members.iter().enumerate() {
            let seat = group
                .members
                .entry((*id).to_owned())
                .or_insert(Seat::new(0, ()));
            seat.park_join(0, token as Token, 10_000, 30_000);
        }
        group.prepare(0);
        group
    }

    #[test]
    fn a_join_phase_ends_when_everyone_joined_or_the_longest_rebalance_timeout_passed() {
        // Goal: the generation advances once per completed join phase; the silent are dropped.
        let mut g = group(&["a", "b"]);
        let joined = g.complete_join(1).expect("everyone joined");
        assert_eq!(joined, vec![("a".to_owned(), 0), ("b".to_owned(), 1)]);
        assert_eq!((g.phase, g.generation), (Phase::CompletingRebalance, 1));
        g.phase = Phase::Stable;
        assert!(g.prepare(100).is_empty());
        g.seat("a").unwrap().park_join(100, 7, 10_000, 30_000);
        assert_eq!(g.complete_join(29_999), None, "b may still rejoin");
        let joined = g.complete_join(30_100).expect("time is up");
        assert_eq!(joined, vec![("a".to_owned(), 7)]);
        assert_eq!(g.ids(), ["a"]);
        assert_eq!(g.generation, 2);
    }

    #[test]
    fn heartbeats_and_commits_are_checked_against_phase_and_generation() {
        // Goal: the answers both protocols give, in one place.
        let mut g = group(&["a"]);
        assert_eq!(g.heartbeat(1, "a", 0), Err(Refusal::RebalanceInProgress));
        g.complete_join(1).unwrap();
        assert_eq!(
            g.heartbeat(2, "a", 1),
            Ok(()),
            "while the assignment is awaited"
        );
        assert_eq!(g.check_commit(1, "a"), Err(Refusal::RebalanceInProgress));
        g.phase = Phase::Stable;
        assert_eq!(g.check_commit(1, "a"), Ok(()));
        assert_eq!(g.check_commit(0, "a"), Err(Refusal::IllegalGeneration));
        assert_eq!(g.check_commit(1, "z"), Err(Refusal::UnknownMember));
        assert_eq!(g.check_commit(-1, ""), Err(Refusal::RebalanceInProgress));
        assert_eq!(g.heartbeat(3, "a", 0), Err(Refusal::IllegalGeneration));
        assert_eq!(g.heartbeat(3, "z", 1), Err(Refusal::UnknownMember));
        g.prepare(4);
        assert_eq!(g.check_commit(1, "a"), Ok(()), "a commit on revocation");
    }

    #[test]
    fn silent_members_expire_and_the_last_one_leaves_the_group_empty() {
        // Goal: sessions run from the last request; a parked join is not silence.
        let mut g = group(&["a", "b"]);
        g.complete_join(0).unwrap();
        g.phase = Phase::Stable;
        g.heartbeat(5_000, "a", 1).unwrap();
        let expired = g.expire(10_001);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].0, "b");
        assert!(g.after_removal(10_001).is_empty());
        assert_eq!(g.phase, Phase::PreparingRebalance);
        g.members.clear();
        g.after_removal(10_002);
        assert_eq!((g.phase, g.generation), (Phase::Empty, 2));
    }
}
