//! Consumer-group requests. Every group lives on shard 0, whose [`GroupService`] wraps the
//! sans-IO coordinator: connections on other shards hop there. Committed offsets are
//! appended (acks=all) to the internal topic `__consumer_offsets` before they are
//! acknowledged, and replayed from it at start-up.

use super::group_ops::Joined;
use crate::group::coordinator::{Coordinator, JoinAnswers, Limits, Token};
pub(crate) use crate::group::offsets::offset_key;
pub use crate::group::offsets::parse_offset_key;
use crate::shard::{owner, Job, Shard};
use bytes::Bytes;
use futures_channel::oneshot;
use keel_protocol::api::{ErrorCode, TopicEntries};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

/// The internal topic holding committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The shard that coordinates every group.
pub const COORDINATOR_SHARD: usize = 0;

/// Shard 0's group state and the joins waiting for a rebalance to complete.
pub struct GroupService {
    pub(crate) coordinator: RefCell<Coordinator>,
    pub(crate) waiting: RefCell<HashMap<Token, oneshot::Sender<Joined>>>,
    /// Kafka clients' joins and syncs waiting (classic protocol).
    pub(crate) classic_waiting:
        RefCell<HashMap<Token, oneshot::Sender<crate::group::classic::Answer>>>,
    pub(crate) next_token: Cell<Token>,
    /// Commits to `__consumer_offsets` take turns, so a group's commits are stored in the
    /// order they were checked.
    pub(crate) offsets_writer: glommio::sync::Semaphore,
    ticks: Cell<u64>,
    /// Which groups this broker coordinates now (`coordination.rs`).
    pub(crate) ownership: RefCell<crate::group::ownership::Ownership>,
    /// Membership records waiting to be written, the latest per group (a tombstone:
    /// `None`), and whether the writer task runs (`coordination.rs`).
    pub(crate) outbox: RefCell<BTreeMap<String, Option<Bytes>>>,
    pub(crate) writing: Cell<bool>,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl GroupService {
    /// An empty service with these limits, coordinating the groups `ownership` names.
    /// Member ids made here carry `incarnation`.
    pub fn new(
        limits: Limits,
        ownership: crate::group::ownership::Ownership,
        incarnation: &str,
    ) -> GroupService {
        let mut coordinator = Coordinator::new(limits);
        coordinator.set_incarnation(incarnation);
        GroupService {
            coordinator: RefCell::new(coordinator),
            waiting: RefCell::default(),
            classic_waiting: RefCell::default(),
            next_token: Cell::new(1),
            offsets_writer: glommio::sync::Semaphore::new(1),
            ticks: Cell::new(0),
            ownership: RefCell::new(ownership),
            outbox: RefCell::default(),
            writing: Cell::new(false),
        }
    }

    pub(crate) fn answer(&self, answers: JoinAnswers) {
        for (token, result) in answers {
            if let Some(sender) = self.waiting.borrow_mut().remove(&token) {
                let answer = match result {
                    Ok(joined) => Joined {
                        error: ErrorCode::None,
                        generation: joined.generation,
                        member_id: joined.member_id,
                        members: joined.members,
                    },
                    Err(error) => Joined::refused(error),
                };
                let _ = sender.send(answer);
            }
        }
    }

    /// Session expiry and rebalance deadlines; called periodically on shard 0.
    pub fn tick(&self, shard: &Rc<Shard>) {
        let partitions_of = partitions_of(shard);
        let answers = self.coordinator.borrow_mut().tick(now_ms(), &partitions_of);
        self.answer(answers);
        let classic = self.coordinator.borrow_mut().classic.tick(now_ms());
        self.answer_classic(classic);
        self.save(shard, None);
        let ticks = self.ticks.get() + 1;
        self.ticks.set(ticks);
        if ticks.is_multiple_of(10) {
            self.export_metrics(shard);
        }
    }

    /// Committed offset and lag (high watermark minus committed) per group and partition,
    /// for at most [`GROUP_SERIES_MAX`] series.
    fn export_metrics(&self, shard: &Shard) {
        use crate::metrics::{GroupPartitionLabel, PartitionLabel, GROUP_SERIES_MAX};
        let metrics = &shard.metrics;
        metrics.group_committed_offset.clear();
        metrics.group_lag.clear();
        for (group, topic, partition, offset) in self
            .coordinator
            .borrow()
            .all_offsets()
            .into_iter()
            .take(GROUP_SERIES_MAX)
        {
            let high_watermark = metrics
                .high_watermark
                .get_or_create(&PartitionLabel {
                    topic: topic.clone(),
                    partition,
                })
                .get();
            let label = GroupPartitionLabel {
                group,
                topic,
                partition,
            };
            metrics
                .group_committed_offset
                .get_or_create(&label)
                .set(offset);
            metrics
                .group_lag
                .get_or_create(&label)
                .set(high_watermark.saturating_sub(offset).max(0));
        }
    }
}

/// The error a commit answers when its append failed: a lost leadership sends the client
/// to the new coordinator, too few replicas make it retry (Kafka's mapping).
pub(crate) fn commit_error(append: ErrorCode) -> ErrorCode {
    match append {
        ErrorCode::NotLeaderOrFollower
        | ErrorCode::LeaderNotAvailable
        | ErrorCode::FencedLeaderEpoch
        | ErrorCode::UnknownLeaderEpoch
        | ErrorCode::UnknownTopicOrPartition
        | ErrorCode::StorageError => ErrorCode::NotCoordinator,
        ErrorCode::NotEnoughReplicas | ErrorCode::NotEnoughReplicasAfterAppend => {
            ErrorCode::CoordinatorNotAvailable
        }
        other => other,
    }
}

/// Appends a batch to a partition of `__consumer_offsets`, acknowledged by the ISR; the
/// append's error.
pub(crate) async fn append(shard: &Rc<Shard>, partition: u32, records: Bytes) -> ErrorCode {
    let owner = owner(OFFSETS_TOPIC, partition, shard.shards());
    let job = Job::Produce {
        topic: OFFSETS_TOPIC.into(),
        partition,
        records,
        acks: -1,
        timeout_ms: 30_000,
    };
    shard
        .ask::<keel_protocol::api::ProducePartitionResult>(owner, job)
        .await
        .map_or_else(|error| error, |result| result.error)
}

pub(crate) fn partitions_of(shard: &Shard) -> impl Fn(&str) -> u32 + '_ {
    move |topic| shard.registry.read().get(topic).map_or(0, |t| t.partitions)
}

pub(crate) fn to_entries(map: BTreeMap<String, Vec<u32>>) -> Vec<TopicEntries<u32>> {
    map.into_iter()
        .map(|(topic, partitions)| TopicEntries { topic, partitions })
        .collect()
}

/// Makes the group service on the coordinator shard (at start-up, before requests).
pub fn start_service(shard: &Shard) {
    if shard.id != COORDINATOR_SHARD {
        return;
    }
    use crate::group::ownership::{Ownership, OFFSETS_PARTITIONS};
    let ownership = match shard.cluster {
        Some(_) => Ownership::cluster(OFFSETS_PARTITIONS),
        None => Ownership::single(),
    };
    let incarnation = format!("{}.{:x}", shard.config.node_id, now_ms());
    let limits = shard.config.group_limits;
    shard.add_service(Rc::new(GroupService::new(limits, ownership, &incarnation)));
}

/// The group service, on the coordinator shard only.
pub fn service(shard: &Shard) -> Option<Rc<GroupService>> {
    shard.service::<GroupService>()
}
