//! Replicated partitions on one shard (cluster mode, replication factor above 1).
//!
//! Each replicated partition this shard owns has a [`Role`] taken from the applied
//! metadata: its leader keeps a [`LeaderProgress`] (follower log ends, the high watermark,
//! acks=all completion, ISR proposals), its followers fetch from the leader
//! (`fetcher.rs`) and append the leader's batches verbatim. The high watermark the
//! replicas agree on caps what the partition's log shows consumers
//! (`Log::set_replication_high_watermark`). The leader's side of a follower's fetch is in
//! `serve.rs`.
//!
//! Roles follow the metadata twice: every partition job refreshes its partition's role
//! before it runs (so nothing is served under a stale role), and [`run`] refreshes all of
//! them as metadata arrives, starts one fetcher per leader broker, and asks the controller
//! for ISR changes.

use crate::shard::{owner, Job, Reply, Shard};
use keel_controller::image::TopicInfo;
use keel_controller::node::Request as ControllerRequest;
use keel_controller::records::PartitionState;
use keel_controller::replica::{role_of, IsrChange, LeaderProgress, ReplicaConfig, RoleDecision};
use keel_engine::Log;
use keel_protocol::api::ErrorCode;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

pub mod checkpoint;
mod fetcher;
mod serve;
mod throttle;

pub use throttle::Throttle;

pub use crate::config::topic::{
    LAG_TIME_MAX, LAG_TIME_MAX_DEFAULT_MS, MIN_INSYNC, REASSIGNMENT_THROTTLE,
};
/// How often roles, ISR changes and gauges are looked at.
const TICK: Duration = Duration::from_millis(20);
/// An ISR change asked for and not yet seen in the metadata is asked again after this.
const ISR_ASK_TIMEOUT_MS: u64 = 5_000;

/// The replication settings of a topic, from its configs (validated when set).
pub fn replica_config(topic: &TopicInfo) -> ReplicaConfig {
    let number = |key: &str, default: u64| {
        topic
            .configs
            .get(key)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(default)
    };
    ReplicaConfig {
        min_insync: number(MIN_INSYNC, 1).max(1) as usize,
        lag_time_max_ms: number(LAG_TIME_MAX, LAG_TIME_MAX_DEFAULT_MS),
    }
}

fn throttle_rate(topic: &TopicInfo) -> u64 {
    topic
        .configs
        .get(REASSIGNMENT_THROTTLE)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// What this broker is for one replicated partition.
pub enum Role {
    /// It leads at `epoch`.
    Leader(Box<Leading>),
    /// It follows `leader`, which leads at `epoch`.
    Follower {
        /// The leader's node id.
        leader: u32,
        /// The leader epoch the metadata names.
        epoch: u32,
    },
}

/// A leader's state.
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
    pub(crate) throttle: Throttle,
}

/// The replicated partitions of one shard.
pub struct Replicas {
    roles: RefCell<HashMap<(String, u32), Role>>,
    /// Leader brokers with a fetcher task running on this shard.
    fetchers: RefCell<BTreeSet<u32>>,
    /// High-watermark checkpoints.
    pub checkpoints: RefCell<checkpoint::Checkpoints>,
}

impl Replicas {
    /// No roles yet; the high-watermark checkpoints of `data_dir` read.
    pub fn new(data_dir: &std::path::Path) -> Replicas {
        Replicas {
            roles: RefCell::default(),
            fetchers: RefCell::default(),
            checkpoints: RefCell::new(checkpoint::Checkpoints::load(data_dir)),
        }
    }

    /// The role of a partition, if replicated.
    pub fn with_role<T>(
        &self,
        topic: &str,
        partition: u32,
        f: impl FnOnce(&mut Role) -> T,
    ) -> Option<T> {
        self.roles
            .borrow_mut()
            .get_mut(&(topic.to_owned(), partition))
            .map(f)
    }

    /// Partitions following `leader` at their epochs.
    fn following(&self, leader: u32) -> Vec<(String, u32, u32)> {
        self.roles
            .borrow()
            .iter()
            .filter_map(|((topic, partition), role)| match role {
                Role::Follower { leader: l, epoch } if *l == leader => {
                    Some((topic.clone(), *partition, *epoch))
                }
                _ => None,
            })
            .collect()
    }

    /// Forgets a partition (its log closed or reopened); the next refresh starts it again.
    pub fn forget(&self, topic: &str, partition: u32) {
        self.roles
            .borrow_mut()
            .remove(&(topic.to_owned(), partition));
    }
}

impl Shard {
    fn node_id(&self) -> u32 {
        self.config.node_id
    }

    fn now_ms(&self) -> u64 {
        self.cluster.as_ref().map_or(0, |v| v.now_ms())
    }

    /// Brings a partition's role in line with the applied metadata; returns whether the
    /// partition is replicated. Cheap when nothing changed.
    pub(crate) fn refresh_role(&self, topic: &str, partition: u32, log: &Log) -> bool {
        let Some(view) = self.cluster.as_ref() else {
            return false;
        };
        let image = view.image();
        let Some(info) = image.topic(topic) else {
            return false;
        };
        let Some(state) = info.partitions.get(partition as usize) else {
            return false;
        };
        self.apply_state(topic, partition, info, state, log);
        state.replicas.len() > 1
    }

    fn apply_state(
        &self,
        topic: &str,
        partition: u32,
        info: &TopicInfo,
        state: &PartitionState,
        log: &Log,
    ) {
        let me = self.node_id();
        let key = (topic.to_owned(), partition);
        let mut roles = self.replicas.roles.borrow_mut();
        if state.replicas.len() <= 1 {
            if roles.remove(&key).is_some() {
                log.set_replication_high_watermark(None);
            }
            return;
        }
        let agreed = checkpoint::agreed(&self.replicas, topic, partition, log);
        let role = role_of(me, state.leader, &state.replicas, &state.isr);
        let leads = role == RoleDecision::Lead;
        match roles.get_mut(&key) {
            Some(Role::Leader(leading)) if leads && leading.epoch == state.leader_epoch => {
                // Every change of the partition bumps its partition epoch (a config change
                // reopens the log, which makes the role again): the common case, a produce
                // or fetch job on an unchanged partition, stops here.
                if leading.partition_epoch == state.partition_epoch {
                    return;
                }
                // The ISR first: it stays within the replicas the metadata holds.
                if leading.isr != state.isr {
                    leading.progress.set_isr(&state.isr, self.now_ms());
                    leading.isr = state.isr.clone();
                }
                if leading.replicas != state.replicas {
                    leading
                        .progress
                        .set_replicas(&state.replicas, self.now_ms());
                    leading.replicas = state.replicas.clone();
                }
                leading.partition_epoch = state.partition_epoch;
                leading.throttle.set(throttle_rate(info), &state.adding);
                // Each ask was applied or can no longer be once the partition moved on;
                // until then the high watermark waits for the members asked for too.
                if leading
                    .asked
                    .is_some_and(|(_, base)| state.partition_epoch > base)
                {
                    leading.asked = None;
                    leading.progress.asks_resolved();
                }
                log.set_replication_high_watermark(Some(leading.progress.high_watermark()));
                return;
            }
            Some(Role::Follower { leader, epoch })
                if role == RoleDecision::Follow(*leader) && state.leader_epoch == *epoch =>
            {
                return;
            }
            _ => {}
        }
        if leads {
            log.set_leader_epoch(state.leader_epoch as i32);
            let local_end = log.local_end_offset();
            let mut progress = LeaderProgress::new(
                me,
                (&state.replicas, &state.isr),
                (agreed.min(local_end), local_end),
                replica_config(info),
                self.now_ms(),
            );
            progress.appended(local_end);
            log.set_replication_high_watermark(Some(progress.high_watermark()));
            tracing::info!(topic, partition, epoch = state.leader_epoch, isr = ?state.isr, high_watermark = progress.high_watermark(), "leading replicated partition");
            roles.insert(
                key,
                Role::Leader(Box::new(Leading {
                    epoch: state.leader_epoch,
                    isr: state.isr.clone(),
                    replicas: state.replicas.clone(),
                    progress,
                    partition_epoch: state.partition_epoch,
                    asked: None,
                    throttle: {
                        let mut throttle = Throttle::default();
                        throttle.set(throttle_rate(info), &state.adding);
                        throttle
                    },
                })),
            );
        } else if let RoleDecision::Follow(leader) = role {
            log.set_replication_high_watermark(Some(agreed));
            tracing::info!(
                topic,
                partition,
                leader = state.leader,
                epoch = state.leader_epoch,
                "following"
            );
            roles.insert(
                key,
                Role::Follower {
                    leader,
                    epoch: state.leader_epoch,
                },
            );
        } else {
            log.set_replication_high_watermark(Some(agreed));
            roles.remove(&key);
        }
    }

    /// Before an `acks=all` append to a replicated partition: refused while the ISR is
    /// below `min.insync.replicas`. `Ok(Some(epoch))` when the append must then wait for
    /// the ISR (see [`Shard::wait_replicated`]), `Ok(None)` when not replicated.
    pub(crate) fn replication_gate(
        &self,
        topic: &str,
        partition: u32,
        acks: i8,
    ) -> Result<Option<u32>, ErrorCode> {
        let gate = self
            .replicas
            .with_role(topic, partition, |role| match role {
                Role::Leader(leading) => {
                    if acks == -1 {
                        leading
                            .progress
                            .check_acks_all()
                            .map_err(|_| ErrorCode::NotEnoughReplicas)?;
                    }
                    Ok(Some(leading.epoch))
                }
                Role::Follower { .. } => Err(ErrorCode::NotLeaderOrFollower),
            });
        gate.unwrap_or(Ok(None))
    }

    /// The leader appended: its own log end counts towards the high watermark.
    pub(crate) fn replication_appended(&self, topic: &str, partition: u32, log: &Log) {
        self.replicas.with_role(topic, partition, |role| {
            if let Role::Leader(leading) = role {
                let local_end = log.local_end_offset();
                if local_end > leading.progress.log_end_offset() {
                    leading.progress.appended(local_end);
                    log.set_replication_high_watermark(Some(leading.progress.high_watermark()));
                }
            }
        });
    }

    /// Waits until every ISR member has everything before `end` (acks=all), while this
    /// broker still leads at `epoch`.
    ///
    /// # Errors
    /// `NotLeaderOrFollower` when leadership moved meanwhile, `RequestTimedOut` after
    /// `timeout`.
    pub(crate) async fn wait_replicated(
        &self,
        topic: &str,
        partition: u32,
        (log, epoch): (&Log, u32),
        end: i64,
        timeout: Duration,
    ) -> Result<(), ErrorCode> {
        let deadline = Instant::now() + timeout;
        loop {
            self.replication_appended(topic, partition, log);
            let still = self
                .replicas
                .with_role(
                    topic,
                    partition,
                    |role| matches!(role, Role::Leader(l) if l.epoch == epoch),
                )
                .unwrap_or(false);
            let lease = self.cluster.as_ref().is_some_and(|v| v.lease_valid());
            if !still || !lease {
                return Err(ErrorCode::NotLeaderOrFollower);
            }
            if log.high_watermark() >= end {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ErrorCode::RequestTimedOut);
            }
            futures_lite::future::or(
                async {
                    log.wait_for_data(end - 1).await;
                },
                glommio::timer::sleep(left.min(Duration::from_millis(50))),
            )
            .await;
        }
    }

    /// Per-tick work for the leaders: their own progress, and ISR changes to ask for.
    fn leader_tick(self: &Rc<Self>) {
        let now = self.now_ms();
        let mut asks = Vec::new();
        for ((topic, partition), role) in self.replicas.roles.borrow_mut().iter_mut() {
            let Role::Leader(leading) = role else {
                continue;
            };
            if let Some(log) = self.log_handle(topic, *partition) {
                let local_end = log.local_end_offset();
                if local_end > leading.progress.log_end_offset() {
                    leading.progress.appended(local_end);
                    log.set_replication_high_watermark(Some(leading.progress.high_watermark()));
                }
            }
            // Asked again after a while (the request or its entry may be lost).
            if leading
                .asked
                .is_some_and(|(at, _)| now.saturating_sub(at) < ISR_ASK_TIMEOUT_MS)
            {
                continue;
            }
            let isr = match leading.progress.isr_change(now) {
                None => continue,
                Some(IsrChange::Shrink(out)) => leading
                    .isr
                    .iter()
                    .copied()
                    .filter(|r| !out.contains(r))
                    .collect::<Vec<u32>>(),
                Some(IsrChange::Expand(id)) => {
                    let mut isr = leading.isr.clone();
                    isr.push(id);
                    isr.sort_unstable();
                    isr
                }
            };
            leading.asked = Some((now, leading.partition_epoch));
            leading.progress.asked(&isr);
            asks.push(ControllerRequest::AlterIsr {
                topic: topic.clone(),
                partition: *partition,
                leader: self.node_id(),
                leader_epoch: leading.epoch,
                partition_epoch: leading.partition_epoch,
                isr,
            });
        }
        for ask in asks {
            let shard = self.clone();
            glommio::spawn_local(async move {
                let ControllerRequest::AlterIsr {
                    topic,
                    partition,
                    isr,
                    partition_epoch,
                    ..
                } = ask.clone()
                else {
                    return;
                };
                tracing::info!(%topic, partition, ?isr, "asking the controller for a new ISR");
                let refused = match shard.call(0, Job::Cluster(ask)).await {
                    Reply::Cluster(Err(e)) => {
                        tracing::info!(error = %e, "ISR change refused");
                        // Refused outright, it was never proposed: it cannot apply later.
                        // Lost or unanswered, it might: keep waiting for the metadata.
                        matches!(
                            e,
                            keel_controller::Error::Invalid { .. }
                                | keel_controller::Error::StaleLeader { .. }
                                | keel_controller::Error::UnknownTopic(_)
                                | keel_controller::Error::UnknownPartition { .. }
                        )
                    }
                    _ => false,
                };
                if !refused {
                    return;
                }
                let resolved = shard
                    .replicas
                    .with_role(&topic, partition, |role| match role {
                        Role::Leader(leading)
                            if leading
                                .asked
                                .is_some_and(|(_, base)| base == partition_epoch) =>
                        {
                            leading.asked = None;
                            leading.progress.asks_resolved();
                            Some(leading.progress.high_watermark())
                        }
                        _ => None,
                    });
                if let (Some(Some(hw)), Some(log)) = (resolved, shard.log_handle(&topic, partition))
                {
                    log.set_replication_high_watermark(Some(hw));
                }
            })
            .detach();
        }
    }
}

impl Shard {
    /// Follower lag gauges of the partitions this shard leads.
    fn replication_gauges(&self) {
        let now = self.now_ms();
        for ((topic, partition), role) in self.replicas.roles.borrow().iter() {
            let Role::Leader(leading) = role else {
                continue;
            };
            let end = leading.progress.log_end_offset();
            for (follower, log_end, lag_ms) in leading.progress.followers(now) {
                let label = crate::metrics::FollowerLabel {
                    topic: topic.clone(),
                    partition: *partition,
                    follower,
                };
                self.metrics
                    .follower_lag_offsets
                    .get_or_create(&label)
                    .set((end - log_end).max(0));
                self.metrics
                    .follower_lag_ms
                    .get_or_create(&label)
                    .set(lag_ms as i64);
            }
        }
    }
}

/// Runs on every shard in cluster mode until the process ends: refreshes the roles of the
/// partitions this shard owns as metadata arrives, starts fetchers, asks for ISR changes.
pub async fn run(shard: Rc<Shard>) {
    let Some(view) = shard.cluster.clone() else {
        return;
    };
    let mut applied = u64::MAX;
    let mut last_scan = Instant::now();
    loop {
        glommio::timer::sleep(TICK).await;
        let image = view.image();
        // Again after new metadata, after a scan that met a log not open yet (the
        // registry follows the metadata a moment later), and every second regardless.
        if image.offset() != applied || last_scan.elapsed() >= Duration::from_secs(1) {
            applied = image.offset();
            last_scan = Instant::now();
            for (name, info) in image.topics() {
                for (partition, state) in info.partitions.iter().enumerate() {
                    let partition = partition as u32;
                    if owner(name, partition, shard.shards()) != shard.id {
                        continue;
                    }
                    match shard.log_handle(name, partition) {
                        Some(log) => shard.apply_state(name, partition, info, state, &log),
                        None => applied = u64::MAX,
                    }
                }
            }
            // Roles of partitions gone from the metadata.
            shard
                .replicas
                .roles
                .borrow_mut()
                .retain(|(topic, _), _| image.topic(topic).is_some());
        }
        let leaders: BTreeSet<u32> = shard
            .replicas
            .roles
            .borrow()
            .values()
            .filter_map(|role| match role {
                Role::Follower { leader, .. } => Some(*leader),
                Role::Leader(_) => None,
            })
            .collect();
        for leader in leaders {
            if shard.replicas.fetchers.borrow_mut().insert(leader) {
                glommio::spawn_local(fetcher::run(shard.clone(), leader)).detach();
            }
        }
        shard.leader_tick();
        shard.replication_gauges();
    }
}

pub use serve::{replica_read, throttle_wait};
