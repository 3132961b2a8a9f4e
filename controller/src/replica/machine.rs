//! One broker's replica of one partition as a state machine, sans-IO: its role taken from
//! the applied metadata, the leader's progress and ISR asks, the leader's checks of a
//! follower's fetch and the reassignment throttle. The server's `replication/` and the
//! simulator (`sim/replication.rs`) drive the same machine: the host owns the log, the
//! clock, the lease and the messages; the machine decides.

use super::throttle::Throttle;
use super::{
    check_fetch, role_of, FetchDecision, FetchRefusal, IsrChange, LeaderProgress, ReplicaConfig,
    RoleDecision,
};
use crate::node::Request;
use crate::records::PartitionState;

/// What a broker is for one replicated partition.
#[derive(Debug, Default)]
pub enum Role {
    /// Neither leader nor follower (not a replica, or the partition has no leader).
    #[default]
    Idle,
    /// It follows `leader`, which leads at `epoch`.
    Follower {
        /// The leader's node id.
        leader: u32,
        /// The leader epoch the metadata names.
        epoch: u32,
    },
    /// It leads.
    Leader(Box<Leading>),
}

/// A leader's state.
#[derive(Debug)]
pub struct Leading {
    /// The epoch it leads at.
    pub epoch: u32,
    /// The ISR the metadata holds.
    pub isr: Vec<u32>,
    /// The replicas the metadata holds (they change during a reassignment).
    replicas: Vec<u32>,
    /// Followers' progress and the high watermark.
    pub progress: LeaderProgress,
    /// The partition epoch of the metadata it last applied.
    partition_epoch: u32,
    /// When it last asked for an ISR change (ms), and at which partition epoch.
    asked: Option<(u64, u32)>,
    /// Replicas a reassignment is adding, and the throttle on what they are sent.
    pub throttle: Throttle,
}

/// A topic's replication settings, read from its configs when a leader needs them.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `min.insync.replicas` and `replica.lag.time.max.ms`.
    pub config: ReplicaConfig,
    /// `reassignment.throttle.bytes.per.sec` (0: none).
    pub throttle_rate: u64,
}

/// What applying the metadata did to the role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The same role at the same epoch; `Some(high watermark)` when the leader took a
    /// metadata change (ISR, replicas, throttle) and its high watermark may have moved.
    Kept(Option<i64>),
    /// It leads from now, at `epoch`; the log shows `high_watermark`.
    Leads {
        /// The leader epoch (stamped on what it appends).
        epoch: u32,
        /// What the log shows consumers.
        high_watermark: i64,
    },
    /// It follows `leader` from now, at `epoch`; the log shows what the replicas agreed.
    Follows {
        /// The leader's node id.
        leader: u32,
        /// The leader epoch.
        epoch: u32,
    },
    /// It is idle from now; the log shows what the replicas agreed.
    Idle,
}

impl Applied {
    /// Whether the role changed (a leader's waiters must look again).
    pub fn changed(self) -> bool {
        !matches!(self, Applied::Kept(_))
    }
}

/// What a leader answers a follower's fetch it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Send from the offset asked: at most `allowance` bytes (`None`: no throttle;
    /// `Some(0)`: nothing yet). The follower's progress is counted: the log shows
    /// `high_watermark`.
    Records {
        /// The throttle's allowance.
        allowance: Option<u64>,
        /// The high watermark after this fetch.
        high_watermark: i64,
    },
    /// The follower's log diverged: it truncates first (KIP-320).
    Diverging {
        /// The largest epoch this log has at most the follower's.
        epoch: i32,
        /// Where that epoch ends here.
        end_offset: i64,
    },
}

/// A follower's fetch of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerFetch {
    /// The follower's node id.
    pub replica: u32,
    /// The leader epoch it names.
    pub leader_epoch: i32,
    /// The epoch of the last batch it holds (-1: none).
    pub last_fetched_epoch: i32,
    /// Where it fetches from (its log end).
    pub fetch_offset: i64,
}

/// The leader's log as a fetch needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderLog {
    /// The log's start offset.
    pub start: i64,
    /// Its end (what a follower may read up to).
    pub end: i64,
    /// What the leader holds itself (counted towards the high watermark).
    pub local_end: i64,
}

impl Role {
    /// Brings the role in line with the partition's `state` in the metadata broker `me`
    /// applied (the topic's `settings` read only when a leader needs them). `agreed` is
    /// what the replicas agreed on so far (the log's cap or checkpoint), `local_end` what
    /// the log holds; cheap when nothing changed.
    pub fn apply(
        &mut self,
        (me, state): (u32, &PartitionState),
        settings: impl FnOnce() -> Settings,
        (agreed, local_end): (i64, i64),
        now_ms: u64,
    ) -> Applied {
        let decision = role_of(me, state.leader, &state.replicas, &state.isr);
        match (decision, &mut *self) {
            (RoleDecision::Lead, Role::Leader(leading)) if leading.epoch == state.leader_epoch => {
                Applied::Kept(leading.update(state, settings, now_ms))
            }
            (RoleDecision::Follow(leader), Role::Follower { leader: l, epoch })
                if leader == *l && state.leader_epoch == *epoch =>
            {
                Applied::Kept(None)
            }
            (RoleDecision::Lead, _) => {
                let leading = Leading::new((me, state), settings(), (agreed, local_end), now_ms);
                let high_watermark = leading.progress.high_watermark();
                *self = Role::Leader(Box::new(leading));
                Applied::Leads {
                    epoch: state.leader_epoch,
                    high_watermark,
                }
            }
            (RoleDecision::Follow(leader), _) => {
                *self = Role::Follower {
                    leader,
                    epoch: state.leader_epoch,
                };
                Applied::Follows {
                    leader,
                    epoch: state.leader_epoch,
                }
            }
            (RoleDecision::Idle, _) => {
                *self = Role::Idle;
                Applied::Idle
            }
        }
    }

    /// The leader's state, when it leads.
    pub fn leading(&mut self) -> Option<&mut Leading> {
        match self {
            Role::Leader(leading) => Some(leading),
            _ => None,
        }
    }

    /// Whether it leads at `epoch`.
    pub fn leads_at(&self, epoch: u32) -> bool {
        matches!(self, Role::Leader(l) if l.epoch == epoch)
    }
}

impl Leading {
    fn new(
        (me, state): (u32, &PartitionState),
        settings: Settings,
        (agreed, local_end): (i64, i64),
        now_ms: u64,
    ) -> Leading {
        let mut progress = LeaderProgress::new(
            me,
            (&state.replicas, &state.isr),
            (agreed.min(local_end), local_end),
            settings.config,
            now_ms,
        );
        progress.appended(local_end);
        let mut throttle = Throttle::default();
        throttle.set(settings.throttle_rate, &state.adding);
        Leading {
            epoch: state.leader_epoch,
            isr: state.isr.clone(),
            replicas: state.replicas.clone(),
            progress,
            partition_epoch: state.partition_epoch,
            asked: None,
            throttle,
        }
    }

    /// A metadata change at the same leader epoch; `None` when the partition did not move
    /// on (every change bumps its partition epoch: a produce or fetch on an unchanged
    /// partition stops here), else the high watermark.
    fn update(
        &mut self,
        state: &PartitionState,
        settings: impl FnOnce() -> Settings,
        now_ms: u64,
    ) -> Option<i64> {
        if self.partition_epoch == state.partition_epoch {
            return None;
        }
        // The ISR first: it stays within the replicas the metadata holds.
        if self.isr != state.isr {
            self.progress.set_isr(&state.isr, now_ms);
            self.isr = state.isr.clone();
        }
        if self.replicas != state.replicas {
            self.progress.set_replicas(&state.replicas, now_ms);
            self.replicas = state.replicas.clone();
        }
        self.partition_epoch = state.partition_epoch;
        self.throttle.set(settings().throttle_rate, &state.adding);
        // Each ask was applied or can no longer be once the partition moved on; until
        // then the high watermark waits for the members asked for too.
        if self
            .asked
            .is_some_and(|(_, base)| state.partition_epoch > base)
        {
            self.asked = None;
            self.progress.asks_resolved();
        }
        Some(self.progress.high_watermark())
    }

    /// The leader's log holds everything before `local_end`; `Some(high watermark)` when
    /// that is news (the high watermark may have moved).
    pub fn appended(&mut self, local_end: i64) -> Option<i64> {
        if local_end <= self.progress.log_end_offset() {
            return None;
        }
        self.progress.appended(local_end);
        Some(self.progress.high_watermark())
    }

    /// The ISR change to ask the controller for now, if any, as broker `me`; none while an
    /// ask made less than `retry_ms` ago is outstanding (asked again after that: the
    /// request or its entry may be lost).
    pub fn isr_ask(
        &mut self,
        (topic, partition, me): (&str, u32, u32),
        now_ms: u64,
        retry_ms: u64,
    ) -> Option<Request> {
        if self
            .asked
            .is_some_and(|(at, _)| now_ms.saturating_sub(at) < retry_ms)
        {
            return None;
        }
        let isr = match self.progress.isr_change(now_ms)? {
            IsrChange::Shrink(out) => self
                .isr
                .iter()
                .copied()
                .filter(|r| !out.contains(r))
                .collect(),
            IsrChange::Expand(id) => {
                let mut isr = self.isr.clone();
                isr.push(id);
                isr.sort_unstable();
                isr
            }
        };
        self.asked = Some((now_ms, self.partition_epoch));
        self.progress.asked(&isr);
        Some(Request::AlterIsr {
            topic: topic.to_owned(),
            partition,
            leader: me,
            leader_epoch: self.epoch,
            partition_epoch: self.partition_epoch,
            isr,
        })
    }

    /// The controller refused the ask made at `partition_epoch` outright: it was never
    /// proposed, so it cannot apply later. Returns the high watermark when that ask was
    /// the outstanding one (it no longer holds the high watermark back).
    pub fn ask_refused(&mut self, partition_epoch: u32) -> Option<i64> {
        if self.asked.is_none_or(|(_, base)| base != partition_epoch) {
            return None;
        }
        self.asked = None;
        self.progress.asks_resolved();
        Some(self.progress.high_watermark())
    }

    /// A follower's fetch: its epoch and divergence checked, its progress counted.
    /// `epoch_end(e)` is the largest epoch at most `e` on the leader's log and where it
    /// ends.
    ///
    /// # Errors
    /// The refusal to answer; [`FetchRefusal::NotAFollower`] for a replica that is not one
    /// of the partition's followers (only they read past the high watermark).
    pub fn serve_fetch(
        &mut self,
        fetch: FollowerFetch,
        epoch_end: impl FnOnce(i32) -> Option<(i32, i64)>,
        log: LeaderLog,
        now_ms: u64,
    ) -> Result<Served, FetchRefusal> {
        if !self.progress.is_follower(fetch.replica) {
            return Err(FetchRefusal::NotAFollower);
        }
        let decision = check_fetch(
            self.epoch,
            (
                fetch.leader_epoch,
                fetch.last_fetched_epoch,
                fetch.fetch_offset,
            ),
            epoch_end,
            (log.start, log.end),
        )?;
        if let FetchDecision::Diverging { epoch, end_offset } = decision {
            return Ok(Served::Diverging { epoch, end_offset });
        }
        self.appended(log.local_end);
        self.progress
            .fetched(fetch.replica, fetch.fetch_offset, now_ms);
        Ok(Served::Records {
            allowance: self.throttle.allowance(fetch.replica, now_ms),
            high_watermark: self.progress.high_watermark(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(leader: i32, epoch: u32, partition_epoch: u32, isr: &[u32]) -> PartitionState {
        PartitionState {
            leader,
            leader_epoch: epoch,
            partition_epoch,
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    fn settings() -> Settings {
        Settings {
            config: ReplicaConfig {
                min_insync: 2,
                lag_time_max_ms: 100,
            },
            throttle_rate: 0,
        }
    }

    #[test]
    fn roles_follow_the_metadata_and_report_each_change() {
        // Goal: a host learns from one call whether its broker leads, follows or neither,
        // and whether a leader's waiters must look again.
        let mut role = Role::default();
        let leads = state(1, 4, 10, &[1, 2, 3]);
        assert_eq!(
            role.apply((1, &leads), settings, (5, 8), 0),
            Applied::Leads {
                epoch: 4,
                high_watermark: 5
            }
        );
        assert_eq!(
            role.apply((1, &leads), settings, (5, 8), 0),
            Applied::Kept(None)
        );
        let shrunk = state(1, 4, 11, &[1, 2]);
        assert_eq!(
            role.apply((1, &shrunk), settings, (5, 8), 0),
            Applied::Kept(Some(5))
        );
        assert_eq!(role.leading().map(|l| l.isr.clone()), Some(vec![1, 2]));
        let moved = state(2, 5, 12, &[1, 2]);
        let applied = role.apply((1, &moved), settings, (5, 8), 0);
        assert_eq!(
            applied,
            Applied::Follows {
                leader: 2,
                epoch: 5
            }
        );
        assert!(applied.changed() && !role.leads_at(4));
        let leaderless = state(-1, 6, 13, &[2]);
        assert_eq!(
            role.apply((1, &leaderless), settings, (5, 8), 0),
            Applied::Idle
        );
    }

    #[test]
    fn a_leader_asks_for_an_isr_change_once_per_retry_and_clears_a_refused_ask() {
        // Goal: a lagging follower leaves the ISR through one AlterIsr, asked again only
        // after the retry time, and a refused ask stops holding the high watermark back.
        let mut role = Role::default();
        let all = state(1, 4, 10, &[1, 2, 3]);
        role.apply((1, &all), settings, (0, 0), 0);
        let leading = role.leading().expect("leads");
        assert_eq!(leading.appended(10), Some(0));
        assert_eq!(leading.appended(10), None, "no news");
        let fetch = |replica| FollowerFetch {
            replica,
            leader_epoch: 4,
            last_fetched_epoch: -1,
            fetch_offset: 10,
        };
        let log = LeaderLog {
            start: 0,
            end: 10,
            local_end: 10,
        };
        assert_eq!(
            leading.serve_fetch(fetch(2), |_| None, log, 50),
            Ok(Served::Records {
                allowance: None,
                high_watermark: 0
            }),
            "replica 3 holds the high watermark back"
        );
        assert_eq!(
            leading.serve_fetch(fetch(9), |_| None, log, 50),
            Err(FetchRefusal::NotAFollower)
        );
        let Some(Request::AlterIsr { isr, .. }) = leading.isr_ask(("t", 0, 1), 200, 500) else {
            panic!("replica 3 lagged past the lag time");
        };
        assert_eq!(isr, vec![1, 2]);
        assert!(
            leading.isr_ask(("t", 0, 1), 300, 500).is_none(),
            "asked already"
        );
        assert_eq!(leading.ask_refused(9), None, "not the ask outstanding");
        assert_eq!(leading.ask_refused(10), Some(0));
        assert!(
            leading.isr_ask(("t", 0, 1), 300, 500).is_some(),
            "asked again"
        );
    }
}
