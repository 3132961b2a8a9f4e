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

use crate::shard::{owner, ClusterAnswer, Job, Shard};
use futures_channel::oneshot;
use keel_controller::image::TopicInfo;
use keel_controller::node::Request as ControllerRequest;
use keel_controller::records::PartitionState;
pub use keel_controller::replica::Role;
use keel_controller::replica::{Applied, ReplicaConfig, Settings};
use keel_engine::Log;
use keel_protocol::api::ErrorCode;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

pub mod checkpoint;
mod fetcher;
mod serve;

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

/// The settings a leader of the topic's partitions needs.
fn settings(topic: &TopicInfo) -> Settings {
    Settings {
        config: replica_config(topic),
        throttle_rate: topic
            .configs
            .get(REASSIGNMENT_THROTTLE)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    }
}

/// Appends waiting on a leader, woken when their senders are dropped.
type Waiters = Vec<oneshot::Sender<()>>;

/// The replicated partitions of one shard.
pub struct Replicas {
    roles: RefCell<HashMap<(String, u32), Role>>,
    /// Per partition, the acks=all appends waiting on its leader: woken (their senders
    /// dropped) when its role changes.
    deposed: RefCell<HashMap<(String, u32), Waiters>>,
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
            deposed: RefCell::default(),
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
        let key = (topic.to_owned(), partition);
        self.roles.borrow_mut().remove(&key);
        self.deposed.borrow_mut().remove(&key);
    }

    /// Resolves when the partition's role next changes (or the partition is forgotten).
    fn on_deposed(&self, topic: &str, partition: u32) -> oneshot::Receiver<()> {
        let (sender, receiver) = oneshot::channel();
        let mut deposed = self.deposed.borrow_mut();
        let waiters = deposed.entry((topic.to_owned(), partition)).or_default();
        // Appends that completed leave their senders behind: pruned whenever the list has
        // doubled, so a long-lived leader keeps a list as long as its waiting appends.
        if waiters.len() >= 64 && waiters.len().is_power_of_two() {
            waiters.retain(|w| !w.is_canceled());
        }
        waiters.push(sender);
        receiver
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
                self.replicas.deposed.borrow_mut().remove(&key);
            }
            return;
        }
        let agreed = checkpoint::agreed(&self.replicas, topic, partition, log);
        let role = roles.entry(key.clone()).or_default();
        let applied = role.apply(
            (me, state),
            || settings(info),
            (agreed, log.local_end_offset()),
            self.now_ms(),
        );
        match applied {
            Applied::Kept(None) => return,
            Applied::Kept(Some(high_watermark)) => {
                log.set_replication_high_watermark(Some(high_watermark));
            }
            Applied::Leads {
                epoch,
                high_watermark,
            } => {
                log.set_leader_epoch(epoch as i32);
                log.set_replication_high_watermark(Some(high_watermark));
                tracing::info!(topic, partition, epoch, isr = ?state.isr, high_watermark, "leading replicated partition");
            }
            Applied::Follows { leader, epoch } => {
                log.set_replication_high_watermark(Some(agreed));
                tracing::info!(topic, partition, leader, epoch, "following");
            }
            Applied::Idle => {
                log.set_replication_high_watermark(Some(agreed));
                roles.remove(&key);
            }
        }
        if applied.changed() {
            // Dropping the senders wakes the appends waiting on the old role.
            self.replicas.deposed.borrow_mut().remove(&key);
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
                Role::Follower { .. } | Role::Idle => Err(ErrorCode::NotLeaderOrFollower),
            });
        gate.unwrap_or(Ok(None))
    }

    /// The leader appended: its own log end counts towards the high watermark.
    pub(crate) fn replication_appended(&self, topic: &str, partition: u32, log: &Log) {
        self.replicas.with_role(topic, partition, |role| {
            let moved = role
                .leading()
                .and_then(|leading| leading.appended(log.local_end_offset()));
            if let Some(high_watermark) = moved {
                log.set_replication_high_watermark(Some(high_watermark));
            }
        });
    }

    /// Waits until every ISR member has everything before `end` (acks=all), while this
    /// broker still leads at `epoch`: woken by the high watermark moving, by the role
    /// changing and by the lease running out, never by polling.
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
        let mut deposed = self.replicas.on_deposed(topic, partition);
        loop {
            self.replication_appended(topic, partition, log);
            let still = self
                .replicas
                .with_role(topic, partition, |role| role.leads_at(epoch))
                .unwrap_or(false);
            let lease_left = self
                .cluster
                .as_ref()
                .map_or(Duration::ZERO, |v| v.lease_left());
            if !still || lease_left.is_zero() {
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
                futures_lite::future::or(
                    async {
                        log.wait_for_data(end - 1).await;
                    },
                    async {
                        let _ = (&mut deposed).await;
                    },
                ),
                glommio::timer::sleep(left.min(lease_left)),
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
                if let Some(high_watermark) = leading.appended(log.local_end_offset()) {
                    log.set_replication_high_watermark(Some(high_watermark));
                }
            }
            if let Some(ask) =
                leading.isr_ask((topic, *partition, self.node_id()), now, ISR_ASK_TIMEOUT_MS)
            {
                asks.push(ask);
            }
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
                let refused = match shard.ask::<ClusterAnswer>(0, Job::Cluster(ask)).await {
                    Ok(Err(e)) => {
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
                let resolved = shard.replicas.with_role(&topic, partition, |role| {
                    role.leading()?.ask_refused(partition_epoch)
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
            shard
                .replicas
                .deposed
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
                Role::Leader(_) | Role::Idle => None,
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
