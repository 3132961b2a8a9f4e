//! Consumer-group requests. Every group lives on shard 0, whose [`GroupService`] wraps the
//! sans-IO coordinator: connections on other shards hop there. Committed offsets are
//! appended (acks=all) to the internal topic `__consumer_offsets` before they are
//! acknowledged, and replayed from it at start-up.

use crate::group::coordinator::{Coordinator, JoinAnswers, JoinRequest, Limits, Token};
pub(crate) use crate::group::offsets::offset_key;
pub use crate::group::offsets::parse_offset_key;
use crate::group::offsets::{commit_answer, commit_bytes, known_partitions};
use crate::shard::{owner, Job, Reply, Shard};
use bytes::Bytes;
use futures_channel::oneshot;
use keel_protocol::api::{
    BrokerInfo, ErrorCode, GroupDescription, MemberDescription, Request, Response, TopicEntries,
};
use keel_protocol::batch::{BatchBuilder, NewRecord};
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
    waiting: RefCell<HashMap<Token, oneshot::Sender<Response>>>,
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
                let response = match result {
                    Ok(joined) => Response::JoinGroup {
                        error: ErrorCode::None,
                        generation: joined.generation,
                        member_id: joined.member_id,
                        members: joined.members,
                    },
                    Err(error) => Response::JoinGroup {
                        error,
                        generation: -1,
                        member_id: String::new(),
                        members: Vec::new(),
                    },
                };
                let _ = sender.send(response);
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
    match shard.call(owner, job).await {
        Reply::Produced(result) => result.error,
        _ => ErrorCode::Unknown,
    }
}

fn partitions_of(shard: &Shard) -> impl Fn(&str) -> u32 + '_ {
    move |topic| shard.registry.read().get(topic).map_or(0, |t| t.partitions)
}

fn to_entries(map: BTreeMap<String, Vec<u32>>) -> Vec<TopicEntries<u32>> {
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

/// Serves a group request on the coordinator shard (where the groups live), or the error
/// it was refused with there (NotCoordinator while its offsets partition is led elsewhere
/// or loading; ShuttingDown when the shard is gone).
pub async fn on_coordinator(shard: &Rc<Shard>, request: Request) -> Result<Response, ErrorCode> {
    let answer = shard
        .run_on(COORDINATOR_SHARD, "group", move |shard| async move {
            match super::coordination::refused(&shard, &request) {
                Some(error) => Err(error),
                None => Ok(Box::pin(handle(&shard, request)).await),
            }
        })
        .await;
    answer.map_err(|(error, _)| error).and_then(|answer| answer)
}

/// Handles a group request; called on [`COORDINATOR_SHARD`].
pub async fn handle(shard: &Rc<Shard>, request: Request) -> Response {
    let service = service(shard).expect("groups live on the coordinator shard");
    match request {
        Request::FindCoordinator { .. } => Response::FindCoordinator {
            error: ErrorCode::None,
            broker: BrokerInfo {
                node_id: shard.config.node_id,
                host: shard.config.listen.ip().to_string(),
                port: shard.config.listen.port(),
            },
        },
        Request::JoinGroup(join) => {
            let token = service.next_token.get();
            service.next_token.set(token + 1);
            let (sender, receiver) = oneshot::channel();
            service.waiting.borrow_mut().insert(token, sender);
            let answers = {
                let partitions_of = partitions_of(shard);
                let request = JoinRequest {
                    group: &join.group,
                    member_id: &join.member_id,
                    session_timeout_ms: join.session_timeout_ms,
                    rebalance_timeout_ms: join.rebalance_timeout_ms,
                    assignor: &join.assignor,
                    topics: &join.topics,
                };
                service
                    .coordinator
                    .borrow_mut()
                    .join(now_ms(), request, token, &partitions_of)
            };
            service.answer(answers);
            service.save(shard, Some(&join.group));
            receiver.await.unwrap_or(Response::JoinGroup {
                error: ErrorCode::ShuttingDown,
                generation: -1,
                member_id: String::new(),
                members: Vec::new(),
            })
        }
        Request::SyncGroup {
            group,
            generation,
            member_id,
        } => match service
            .coordinator
            .borrow_mut()
            .sync(&group, generation, &member_id)
        {
            Ok(assignment) => Response::SyncGroup {
                error: ErrorCode::None,
                assignment: to_entries(assignment),
            },
            Err(error) => Response::SyncGroup {
                error,
                assignment: Vec::new(),
            },
        },
        Request::Heartbeat {
            group,
            generation,
            member_id,
        } => {
            let error = service
                .coordinator
                .borrow_mut()
                .heartbeat(now_ms(), &group, generation, &member_id)
                .err()
                .unwrap_or(ErrorCode::None);
            Response::Heartbeat { error }
        }
        Request::LeaveGroup { group, member_id } => {
            let left = {
                let partitions_of = partitions_of(shard);
                service
                    .coordinator
                    .borrow_mut()
                    .leave(now_ms(), &group, &member_id, &partitions_of)
            };
            service.save(shard, Some(&group));
            match left {
                Ok(answers) => {
                    service.answer(answers);
                    Response::LeaveGroup {
                        error: ErrorCode::None,
                    }
                }
                Err(error) => Response::LeaveGroup { error },
            }
        }
        Request::OffsetCommit {
            group,
            generation,
            member_id,
            topics,
        } => {
            // Like Kafka, offsets are kept only for partitions that exist; the others answer
            // UnknownTopicOrPartition and the rest of the commit goes ahead.
            let asked = topics;
            let counts: Vec<u32> = {
                let partitions_of = partitions_of(shard);
                asked
                    .iter()
                    .map(|entry| partitions_of(&entry.topic))
                    .collect()
            };
            let topics = known_partitions(&asked, &counts);
            let checked = service
                .coordinator
                .borrow()
                .check_commit(&group, generation, &member_id);
            let error = match checked {
                Err(error) => error,
                // The group id repeats in every record: a small request can ask for a batch
                // far larger than it is. Refuse before building it.
                Ok(()) if commit_bytes(&group, &topics) > shard.config.batch_bytes_max as usize => {
                    tracing::warn!(
                        group_bytes = group.len(),
                        "offset commit would not fit one batch; refused"
                    );
                    ErrorCode::MessageTooLarge
                }
                Ok(()) => {
                    let mut builder = BatchBuilder::new();
                    for entry in &topics {
                        for (partition, offset) in &entry.partitions {
                            builder.push(NewRecord {
                                timestamp: now_ms(),
                                key: Some(Bytes::from(offset_key(
                                    &group,
                                    &entry.topic,
                                    *partition,
                                ))),
                                value: Some(Bytes::copy_from_slice(&offset.to_be_bytes())),
                                headers: Vec::new(),
                            });
                        }
                    }
                    let records_count = builder.records_count() as u64;
                    let _turn = service.offsets_writer.acquire_permit(1).await;
                    // A rebalance may have completed while this commit waited its turn:
                    // check again, so a member fenced meanwhile cannot store offsets.
                    let rechecked = service
                        .coordinator
                        .borrow()
                        .check_commit(&group, generation, &member_id);
                    if let Err(error) = rechecked {
                        return Response::OffsetCommit {
                            topics: commit_answer(asked, &counts, error),
                        };
                    }
                    if records_count == 0 {
                        ErrorCode::None
                    } else {
                        let records = match builder.build() {
                            Ok(records) => Bytes::from(records),
                            Err(e) => {
                                tracing::warn!(error = %e, "offset commit batch refused");
                                return Response::OffsetCommit {
                                    topics: commit_answer(
                                        asked,
                                        &counts,
                                        ErrorCode::MessageTooLarge,
                                    ),
                                };
                            }
                        };
                        let offsets_partition = service.offsets_partition(&group);
                        match append(shard, offsets_partition, records).await {
                            ErrorCode::None => {
                                for entry in &topics {
                                    for (partition, offset) in &entry.partitions {
                                        service.coordinator.borrow_mut().store_offset(
                                            &group,
                                            &entry.topic,
                                            *partition,
                                            *offset,
                                        );
                                    }
                                }
                                ErrorCode::None
                            }
                            error => commit_error(error),
                        }
                    }
                }
            };
            Response::OffsetCommit {
                topics: commit_answer(asked, &counts, error),
            }
        }
        Request::OffsetFetch { group, topics } => {
            let coordinator = service.coordinator.borrow();
            let topics = if topics.is_empty() {
                let mut by_topic: BTreeMap<String, Vec<(u32, i64)>> = BTreeMap::new();
                for ((topic, partition), offset) in coordinator.committed_all(&group) {
                    by_topic.entry(topic).or_default().push((partition, offset));
                }
                by_topic
                    .into_iter()
                    .map(|(topic, partitions)| TopicEntries { topic, partitions })
                    .collect()
            } else {
                topics
                    .into_iter()
                    .map(|entry| {
                        let partitions = entry
                            .partitions
                            .iter()
                            .map(|p| {
                                (
                                    *p,
                                    coordinator
                                        .committed(&group, &entry.topic, *p)
                                        .unwrap_or(-1),
                                )
                            })
                            .collect();
                        TopicEntries {
                            topic: entry.topic,
                            partitions,
                        }
                    })
                    .collect()
            };
            Response::OffsetFetch {
                error: ErrorCode::None,
                topics,
            }
        }
        Request::ListGroups => Response::ListGroups {
            groups: service
                .coordinator
                .borrow()
                .list()
                .into_iter()
                .map(|(group, state)| (group, state.name().to_owned()))
                .collect(),
        },
        Request::DescribeGroups { groups } => {
            let coordinator = service.coordinator.borrow();
            let groups = groups
                .into_iter()
                .map(|group| match coordinator.describe(&group) {
                    Some((state, generation, assignor, members)) => GroupDescription {
                        group,
                        error: ErrorCode::None,
                        state: state.name().to_owned(),
                        generation,
                        assignor,
                        members: members
                            .into_iter()
                            .map(|(member_id, topics, assignment)| MemberDescription {
                                member_id,
                                topics,
                                assignment: to_entries(assignment),
                            })
                            .collect(),
                    },
                    None => GroupDescription {
                        group,
                        error: ErrorCode::InvalidGroupId,
                        state: "Dead".into(),
                        generation: -1,
                        assignor: String::new(),
                        members: Vec::new(),
                    },
                })
                .collect();
            Response::DescribeGroups { groups }
        }
        other => unreachable!("not a group request: {:?}", other.api_key()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_bytes_bounds_the_batch_a_commit_builds() {
        // Goal: the size check before building never lets through a batch larger than it said.
        for (group_len, topic_len, partitions) in [(1, 1, 1), (30_000, 249, 50), (7, 20, 5_000)] {
            let group = "g".repeat(group_len);
            let topics = vec![TopicEntries {
                topic: "t".repeat(topic_len),
                partitions: (0..partitions).map(|p| (u32::MAX - p, i64::MAX)).collect(),
            }];
            let mut builder = BatchBuilder::new();
            for (partition, offset) in &topics[0].partitions {
                builder.push(NewRecord {
                    timestamp: i64::MAX,
                    key: Some(Bytes::from(offset_key(
                        &group,
                        &topics[0].topic,
                        *partition,
                    ))),
                    value: Some(Bytes::copy_from_slice(&offset.to_be_bytes())),
                    headers: Vec::new(),
                });
            }
            let built = builder.build().unwrap().len();
            let bound = commit_bytes(&group, &topics);
            assert!(built <= bound, "{built} > {bound}");
        }
    }
}
