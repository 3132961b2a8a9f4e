//! Replication progress of one partition, sans-IO (run by the server's `replication/`).
//!
//! On the leader, [`LeaderProgress`] tracks each follower's log end (learnt from the offset
//! it fetches from), computes the high watermark (the lowest log end among the in-sync
//! replicas, never moving back), decides when `acks=all` appends are complete, refuses them
//! while the ISR is smaller than `min.insync.replicas`, and proposes ISR shrinks (a follower
//! not caught up for `replica.lag.time.max.ms`) and expansions (a follower caught up again).
//! [`check_fetch`] and [`diverged_truncation`] decide, from each log's leader epochs (the
//! engine's `leader-epoch-checkpoint`), where a returning follower's log diverged from its
//! leader's (Kafka KIP-101/KIP-279/KIP-320); [`role_of`] reads a broker's role from the
//! metadata. [`Role`] puts them together as one broker's replica of one partition, the state
//! machine both the server and the simulator drive.

use std::collections::BTreeMap;

mod fetch;
mod machine;
mod throttle;

pub use fetch::{
    check_fetch, diverged_truncation, role_of, FetchDecision, FetchRefusal, RoleDecision,
};
pub use machine::{Applied, FollowerFetch, LeaderLog, Leading, Role, Served, Settings};
pub use throttle::Throttle;

/// Why an `acks=all` append is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// Fewer in-sync replicas than the topic's `min.insync.replicas`; nothing is appended.
    #[error("not enough replicas: {isr} in sync, min.insync.replicas is {min}")]
    NotEnoughReplicas {
        /// ISR size now.
        isr: usize,
        /// The topic's minimum.
        min: usize,
    },
    /// Appended, but the ISR shrank below `min.insync.replicas` before it was replicated.
    #[error("not enough replicas after append: {isr} in sync, min.insync.replicas is {min}")]
    NotEnoughReplicasAfterAppend {
        /// ISR size now.
        isr: usize,
        /// The topic's minimum.
        min: usize,
    },
}

/// A partition's replication settings (topic configs).
#[derive(Debug, Clone, Copy)]
pub struct ReplicaConfig {
    /// `min.insync.replicas`.
    pub min_insync: usize,
    /// `replica.lag.time.max.ms`.
    pub lag_time_max_ms: u64,
}

/// An ISR change the leader asks the controller for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsrChange {
    /// Remove these followers: not caught up for longer than the lag time.
    Shrink(Vec<u32>),
    /// Add this follower: it has reached the high watermark.
    Expand(u32),
}

#[derive(Debug, Clone)]
struct Follower {
    log_end_offset: i64,
    /// It fetched since this leader began: its log end is known, not assumed.
    fetched: bool,
    /// When it last fetched.
    fetched_at_ms: u64,
    /// When the follower last had everything the leader had (or joined).
    caught_up_at_ms: u64,
}

/// A follower joins the ISR only while it fetches: its last fetch at most this long ago
/// (followers long-poll for at most half a second).
pub const RECENT_FETCH_MS: u64 = 2_000;

/// The leader's view of a partition's replicas.
#[derive(Debug, Clone)]
pub struct LeaderProgress {
    leader: u32,
    isr: Vec<u32>,
    min_insync: usize,
    lag_time_max_ms: u64,
    log_end_offset: i64,
    high_watermark: i64,
    followers: BTreeMap<u32, Follower>,
    /// An ISR asked of the controller and not yet committed: until it is, the high
    /// watermark also waits for its members (Kafka's "maximal ISR", KIP-497), so a
    /// follower joining never lacks what was committed meanwhile.
    asked: Option<Vec<u32>>,
}

impl LeaderProgress {
    /// A leader with `replicas` (the leader among them) and `isr`, whose log spans
    /// `(high_watermark, log_end_offset)` (the high watermark: what the previous leader had
    /// made visible, never less), at time `now_ms`.
    ///
    /// # Panics
    /// The leader is not in `isr`, or an ISR member is not a replica.
    pub fn new(
        leader: u32,
        (replicas, isr): (&[u32], &[u32]),
        (high_watermark, log_end_offset): (i64, i64),
        config: ReplicaConfig,
        now_ms: u64,
    ) -> LeaderProgress {
        let ReplicaConfig {
            min_insync,
            lag_time_max_ms,
        } = config;
        assert!(isr.contains(&leader), "the leader is in the ISR");
        assert!(
            isr.iter().all(|r| replicas.contains(r)),
            "the ISR is a subset of the replicas"
        );
        assert!(
            high_watermark <= log_end_offset,
            "the high watermark is within the log"
        );
        let followers = replicas
            .iter()
            .filter(|r| **r != leader)
            .map(|r| {
                (
                    *r,
                    Follower {
                        // Unknown until it fetches: assume nothing beyond the high watermark.
                        log_end_offset: if isr.contains(r) { high_watermark } else { 0 },
                        fetched: false,
                        fetched_at_ms: now_ms,
                        caught_up_at_ms: now_ms,
                    },
                )
            })
            .collect();
        LeaderProgress {
            leader,
            isr: isr.to_vec(),
            min_insync: min_insync.max(1),
            lag_time_max_ms,
            log_end_offset,
            high_watermark,
            followers,
            asked: None,
        }
    }

    /// The leader asked the controller for `isr`: its members count for the high watermark
    /// from now on (with those of every other ask at the same partition epoch), until
    /// [`LeaderProgress::asks_resolved`].
    pub fn asked(&mut self, isr: &[u32]) {
        let asked = self.asked.get_or_insert_with(Vec::new);
        for id in isr {
            if !asked.contains(id) {
                asked.push(*id);
            }
        }
    }

    /// The metadata moved past the partition epoch the asks were made at: each was applied
    /// or can no longer be, so only the ISR the metadata holds counts.
    pub fn asks_resolved(&mut self) {
        self.asked = None;
        self.advance_high_watermark();
    }

    /// The high watermark: consumers read below it.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }
    /// The in-sync replicas.
    pub fn isr(&self) -> &[u32] {
        &self.isr
    }
    /// The partition's replicas changed (a reassignment): new followers start unknown
    /// (log end 0 until they fetch), replicas no longer listed are forgotten.
    pub fn set_replicas(&mut self, replicas: &[u32], now_ms: u64) {
        self.followers.retain(|id, _| replicas.contains(id));
        for id in replicas {
            if *id != self.leader && !self.followers.contains_key(id) {
                self.followers.insert(
                    *id,
                    Follower {
                        log_end_offset: 0,
                        fetched: false,
                        fetched_at_ms: now_ms,
                        caught_up_at_ms: now_ms,
                    },
                );
            }
        }
    }

    /// True for a replica of the partition other than the leader.
    pub fn is_follower(&self, id: u32) -> bool {
        self.followers.contains_key(&id)
    }

    /// The leader's own log end as last reported.
    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset
    }
    /// Each follower's log end as the leader knows it, and how long (ms, at `now_ms`)
    /// since it last had everything the leader had.
    pub fn followers(&self, now_ms: u64) -> impl Iterator<Item = (u32, i64, u64)> + '_ {
        self.followers.iter().map(move |(id, f)| {
            (
                *id,
                f.log_end_offset,
                if f.log_end_offset >= self.log_end_offset {
                    0
                } else {
                    now_ms.saturating_sub(f.caught_up_at_ms)
                },
            )
        })
    }

    /// May an `acks=all` append go ahead now?
    ///
    /// # Errors
    /// [`ReplicaError::NotEnoughReplicas`] while the ISR is below `min.insync.replicas`.
    pub fn check_acks_all(&self) -> Result<(), ReplicaError> {
        if self.isr.len() < self.min_insync {
            return Err(ReplicaError::NotEnoughReplicas {
                isr: self.isr.len(),
                min: self.min_insync,
            });
        }
        Ok(())
    }

    /// The leader appended (and, per the fsync policy, made durable) up to `log_end_offset`.
    pub fn appended(&mut self, log_end_offset: i64) {
        assert!(
            log_end_offset >= self.log_end_offset,
            "the log only grows while leading"
        );
        self.log_end_offset = log_end_offset;
        self.advance_high_watermark();
    }

    /// A follower fetched from `fetch_offset`: it has (durably) everything before it.
    /// Returns the new high watermark when it moved.
    pub fn fetched(&mut self, follower: u32, fetch_offset: i64, now_ms: u64) -> Option<i64> {
        let state = self.followers.get_mut(&follower)?;
        // A follower's log end only moves back after truncation, which it does before
        // fetching again; an older offset (a reordered request) teaches nothing. It may be
        // ahead of the leader's own durable end (followers read to the log end, and sync in
        // parallel with the leader): kept as is, the high watermark still never passes the
        // leader's durable end, and moves as soon as that does.
        if !state.fetched && !self.isr.contains(&follower) {
            // Outside the ISR nothing was assumed: its first fetch tells where it is.
            state.log_end_offset = fetch_offset;
        }
        state.fetched = true;
        state.fetched_at_ms = state.fetched_at_ms.max(now_ms);
        if fetch_offset > state.log_end_offset {
            state.log_end_offset = fetch_offset;
        }
        if state.log_end_offset >= self.log_end_offset {
            state.caught_up_at_ms = now_ms;
        }
        let before = self.high_watermark;
        self.advance_high_watermark();
        (self.high_watermark != before).then_some(self.high_watermark)
    }

    /// An `acks=all` append ending at `end_offset` is complete (every ISR member has it).
    pub fn acks_all_complete(&self, end_offset: i64) -> bool {
        end_offset <= self.high_watermark
    }

    /// The outcome of an `acks=all` append ending at `end_offset`: `None` while it waits;
    /// done once every ISR member has it, refused if the ISR has by then shrunk below
    /// `min.insync.replicas` (Kafka's NOT_ENOUGH_REPLICAS_AFTER_APPEND: the batch is
    /// stored, but on too few copies to promise anything).
    pub fn acks_all_outcome(&self, end_offset: i64) -> Option<Result<(), ReplicaError>> {
        if end_offset > self.high_watermark {
            return None;
        }
        if self.isr.len() < self.min_insync {
            return Some(Err(ReplicaError::NotEnoughReplicasAfterAppend {
                isr: self.isr.len(),
                min: self.min_insync,
            }));
        }
        Some(Ok(()))
    }

    /// The ISR change to ask the controller for now, if any: followers lagging longer than
    /// the lag time leave; a follower outside the ISR that fetched and reached the high
    /// watermark (so it holds everything committed) joins, as in Kafka.
    pub fn isr_change(&self, now_ms: u64) -> Option<IsrChange> {
        let lagging: Vec<u32> = self
            .isr
            .iter()
            .filter(|r| **r != self.leader)
            .filter(|r| {
                // A member this leader does not track (not a replica) cannot be in sync.
                self.followers.get(r).is_none_or(|f| {
                    f.log_end_offset < self.log_end_offset
                        && now_ms.saturating_sub(f.caught_up_at_ms) > self.lag_time_max_ms
                })
            })
            .copied()
            .collect();
        if !lagging.is_empty() {
            return Some(IsrChange::Shrink(lagging));
        }
        self.followers
            .iter()
            .find(|(id, f)| {
                !self.isr.contains(id)
                    && f.fetched
                    && now_ms.saturating_sub(f.fetched_at_ms) <= RECENT_FETCH_MS
                    && f.log_end_offset >= self.high_watermark
            })
            .map(|(id, _)| IsrChange::Expand(*id))
    }

    /// The controller committed a new ISR.
    ///
    /// # Panics
    /// The leader is not in it.
    pub fn set_isr(&mut self, isr: &[u32], now_ms: u64) {
        assert!(isr.contains(&self.leader), "the leader stays in the ISR");
        for id in isr {
            if !self.isr.contains(id) {
                if let Some(f) = self.followers.get_mut(id) {
                    f.caught_up_at_ms = now_ms;
                }
            }
        }
        self.isr = isr.to_vec();
        self.advance_high_watermark();
    }

    fn advance_high_watermark(&mut self) {
        let asked = self.asked.iter().flatten();
        let lowest = self
            .isr
            .iter()
            .chain(asked)
            .filter(|r| **r == self.leader || self.followers.contains_key(r))
            .map(|r| {
                if *r == self.leader {
                    self.log_end_offset
                } else {
                    self.followers[r].log_end_offset
                }
            })
            .min()
            .unwrap_or(self.log_end_offset);
        // Never back: a shrink cannot unpublish what consumers may have read.
        if lowest > self.high_watermark {
            self.high_watermark = lowest;
        }
        assert!(
            self.high_watermark <= self.log_end_offset,
            "high watermark within the log"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(min_insync: usize, lag_time_max_ms: u64) -> ReplicaConfig {
        ReplicaConfig {
            min_insync,
            lag_time_max_ms,
        }
    }

    fn progress(isr: &[u32]) -> LeaderProgress {
        LeaderProgress::new(1, (&[1, 2, 3], isr), (0, 0), config(2, 30_000), 0)
    }

    // The high watermark is the lowest log end among the ISR and never moves back.
    #[test]
    fn high_watermark_follows_the_slowest_in_sync_replica() {
        let mut p = progress(&[1, 2, 3]);
        p.appended(10);
        assert_eq!(p.high_watermark(), 0);
        assert_eq!(p.fetched(2, 10, 1), None, "3 has nothing yet");
        assert_eq!(p.fetched(3, 6, 1), Some(6));
        assert!(p.acks_all_complete(6) && !p.acks_all_complete(7));
        // An older fetch offset (reordered request) changes nothing.
        assert_eq!(p.fetched(3, 2, 2), None);
        p.set_isr(&[1, 2], 3);
        assert_eq!(p.high_watermark(), 10, "without 3, everything is in sync");
        p.set_isr(&[1, 2, 3], 4);
        assert_eq!(p.high_watermark(), 10, "never back");
    }

    // acks=all is refused while the ISR is below min.insync.replicas.
    #[test]
    fn not_enough_replicas() {
        let p = progress(&[1]);
        assert_eq!(
            p.check_acks_all(),
            Err(ReplicaError::NotEnoughReplicas { isr: 1, min: 2 })
        );
        assert!(progress(&[1, 3]).check_acks_all().is_ok());
    }

    // A follower behind for longer than the lag time leaves the ISR; caught up, it returns.
    #[test]
    fn isr_shrinks_and_expands() {
        let mut p = LeaderProgress::new(1, (&[1, 2, 3], &[1, 2, 3]), (0, 0), config(1, 1_000), 0);
        p.appended(5);
        p.fetched(2, 5, 500);
        p.fetched(3, 1, 500);
        assert_eq!(p.isr_change(900), None, "within the lag time");
        assert_eq!(p.isr_change(1_200), Some(IsrChange::Shrink(vec![3])));
        p.set_isr(&[1, 2], 1_200);
        assert_eq!(p.high_watermark(), 5);
        assert_eq!(p.isr_change(1_300), None, "3 is still behind");
        p.fetched(3, 5, 1_400);
        assert_eq!(p.isr_change(1_400), Some(IsrChange::Expand(3)));
    }

    // A leader answers a follower whose last epoch ends earlier on its log with where it
    // ends; the follower keeps what both logs agree on.
    #[test]
    fn divergent_suffixes_are_found() {
        // Leader: epoch 0 over [0, 8), epoch 2 from 8; log end 12. The follower wrote epoch 1
        // from 5 to 10 alone (an isolated leader).
        let leader_end = |epoch: i32| match epoch {
            0 | 1 => Some((0, 8)),
            _ => Some((2, 12)),
        };
        let decision = check_fetch(2, (2, 1, 10), leader_end, (0, 12));
        assert_eq!(
            decision,
            Ok(FetchDecision::Diverging {
                epoch: 0,
                end_offset: 8
            })
        );
        // Epoch 0 ends at 5 on the follower: it keeps [0, 5).
        assert_eq!(diverged_truncation((0, 8), Some((0, 5)), 0), 5);
        assert_eq!(diverged_truncation((-1, 0), None, 0), 0);
        assert_eq!(
            check_fetch(2, (2, 2, 11), leader_end, (0, 12)),
            Ok(FetchDecision::Serve)
        );
        assert_eq!(
            check_fetch(2, (1, 2, 11), leader_end, (0, 12)),
            Err(FetchRefusal::FencedLeaderEpoch)
        );
        assert_eq!(
            check_fetch(2, (3, 2, 11), leader_end, (0, 12)),
            Err(FetchRefusal::UnknownLeaderEpoch)
        );
        assert_eq!(
            check_fetch(2, (2, -1, 13), leader_end, (0, 12)),
            Err(FetchRefusal::OffsetOutOfRange)
        );
        // Retention deleted the follower's next offset: it starts again at the log start.
        assert_eq!(
            check_fetch(2, (2, -1, 3), leader_end, (4, 12)),
            Err(FetchRefusal::OffsetOutOfRange)
        );
        assert_eq!(role_of(1, 1, &[1, 2], &[1, 2]), RoleDecision::Lead);
        assert_eq!(role_of(1, 1, &[1, 2], &[2]), RoleDecision::Idle);
        assert_eq!(role_of(2, 1, &[1, 2], &[1]), RoleDecision::Follow(1));
        assert_eq!(role_of(3, 1, &[1, 2], &[1, 2]), RoleDecision::Idle);
    }

    proptest::proptest! {
        // Under any order of appends, fetches and ISR changes: the high watermark never
        // decreases, never passes the leader's log end, and never passes an ISR member's
        // log end at the time it moved.
        #[test]
        fn high_watermark_invariants(steps in proptest::collection::vec((0u8..4, 0u32..4, 0i64..50), 1..200)) {
            let mut p = LeaderProgress::new(1, (&[1, 2, 3], &[1, 2, 3]), (0, 0), config(1, 100), 0);
            let mut leo = 0i64;
            let mut now = 0u64;
            for (kind, who, n) in steps {
                now += 10;
                let before = p.high_watermark();
                match kind {
                    0 => { leo += n % 5; p.appended(leo); }
                    1 => { let _ = p.fetched(2 + who % 2, n, now); }
                    2 => {
                        if let Some(IsrChange::Shrink(out)) = p.isr_change(now) {
                            let isr: Vec<u32> = p.isr().iter().copied().filter(|r| !out.contains(r)).collect();
                            p.set_isr(&isr, now);
                        }
                    }
                    _ => {
                        if let Some(IsrChange::Expand(id)) = p.isr_change(now) {
                            let mut isr = p.isr().to_vec();
                            isr.push(id);
                            p.set_isr(&isr, now);
                        }
                    }
                }
                proptest::prop_assert!(p.high_watermark() >= before);
                proptest::prop_assert!(p.high_watermark() <= leo);
            }
        }
    }
}
