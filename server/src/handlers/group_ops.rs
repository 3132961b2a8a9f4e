//! The group service's operations, typed: each hops to the coordinator shard (where the
//! groups live), is refused there while this broker does not coordinate the group
//! (NotCoordinator, CoordinatorLoadInProgress), and answers its own type. The native
//! listener serves every group API with them; the Kafka listener's commits and offset
//! reads use [`commit`] and [`fetch_offsets`].

use super::groups::{append, commit_error, now_ms, partitions_of, to_entries, GroupService};
use super::groups::{offset_key, COORDINATOR_SHARD};
use crate::group::coordinator::JoinRequest;
use crate::group::offsets::{commit_answer, commit_bytes, known_partitions};
use crate::shard::Shard;
use bytes::Bytes;
use futures_channel::oneshot;
use keel_protocol::api::{ErrorCode, GroupDescription, JoinGroup, MemberDescription, TopicEntries};
use keel_protocol::batch::{BatchBuilder, NewRecord};
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;

/// A join's outcome once the rebalance completed.
#[derive(Debug, Clone)]
pub struct Joined {
    /// Outcome.
    pub error: ErrorCode,
    /// The new generation (-1 on error).
    pub generation: i32,
    /// This member's id.
    pub member_id: String,
    /// The generation's members (for the leader).
    pub members: Vec<String>,
}

impl Joined {
    /// A join refused with `error`.
    pub fn refused(error: ErrorCode) -> Joined {
        Joined {
            error,
            generation: -1,
            member_id: String::new(),
            members: Vec::new(),
        }
    }
}

/// An offset commit: the member's generation is checked, then the offsets are appended to
/// `__consumer_offsets` (acks=all) before they are acknowledged.
#[derive(Debug, Clone)]
pub struct Commit {
    /// Group id.
    pub group: String,
    /// The member's generation (-1: a commit from outside the group, as an admin's).
    pub generation: i32,
    /// The member's id (empty with generation -1).
    pub member_id: String,
    /// (partition, offset) per topic.
    pub topics: Vec<TopicEntries<(u32, i64)>>,
}

/// Runs `serve` on the coordinator shard with its group service, once this broker
/// coordinates `group` there (`None`: no one group, as ListGroups).
///
/// # Errors
/// NotCoordinator or CoordinatorLoadInProgress from the coordinator shard, or
/// CoordinatorNotAvailable when it is gone.
pub(crate) async fn on_coordinator<T, F, Fut>(
    shard: &Rc<Shard>,
    group: Option<String>,
    serve: F,
) -> Result<T, ErrorCode>
where
    T: Send + 'static,
    F: FnOnce(Rc<Shard>, Rc<GroupService>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    let answer = shard
        .run_on(COORDINATOR_SHARD, "group", move |shard| async move {
            let service = super::groups::service(&shard).ok_or(ErrorCode::NotCoordinator)?;
            if let Some(group) = &group {
                service.serves(group)?;
            }
            Ok(Box::pin(serve(shard, service)).await)
        })
        .await;
    // The coordinator shard gone (the broker stopping): retriable, as Kafka answers.
    answer
        .map_err(|_| ErrorCode::CoordinatorNotAvailable)
        .and_then(|answer| answer)
}

/// JoinGroup: answered when the rebalance it takes part in completes.
///
/// # Errors
/// As [`on_coordinator`].
pub async fn join(shard: &Rc<Shard>, join: JoinGroup) -> Result<Joined, ErrorCode> {
    on_coordinator(
        shard,
        Some(join.group.clone()),
        move |shard, service| async move {
            let token = service.next_token.get();
            service.next_token.set(token + 1);
            let (sender, receiver) = oneshot::channel();
            service.waiting.borrow_mut().insert(token, sender);
            let answers = {
                let partitions_of = partitions_of(&shard);
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
            service.save(&shard, Some(&join.group));
            receiver
                .await
                .unwrap_or_else(|_| Joined::refused(ErrorCode::ShuttingDown))
        },
    )
    .await
}

/// SyncGroup: the member's assignment, or the error.
///
/// # Errors
/// As [`on_coordinator`].
pub async fn sync(
    shard: &Rc<Shard>,
    (group, generation, member_id): (String, i32, String),
) -> Result<Result<Vec<TopicEntries<u32>>, ErrorCode>, ErrorCode> {
    on_coordinator(shard, Some(group.clone()), move |_, service| async move {
        let synced = service
            .coordinator
            .borrow_mut()
            .sync(&group, generation, &member_id);
        synced.map(to_entries)
    })
    .await
}

/// Heartbeat: `None`, or `RebalanceInProgress` (rejoin) and the other refusals.
///
/// # Errors
/// As [`on_coordinator`].
pub async fn heartbeat(
    shard: &Rc<Shard>,
    (group, generation, member_id): (String, i32, String),
) -> Result<ErrorCode, ErrorCode> {
    on_coordinator(shard, Some(group.clone()), move |_, service| async move {
        let beat =
            service
                .coordinator
                .borrow_mut()
                .heartbeat(now_ms(), &group, generation, &member_id);
        beat.err().unwrap_or(ErrorCode::None)
    })
    .await
}

/// LeaveGroup: the member leaves and the group rebalances.
///
/// # Errors
/// As [`on_coordinator`].
pub async fn leave(
    shard: &Rc<Shard>,
    (group, member_id): (String, String),
) -> Result<ErrorCode, ErrorCode> {
    on_coordinator(
        shard,
        Some(group.clone()),
        move |shard, service| async move {
            let left = {
                let partitions_of = partitions_of(&shard);
                service
                    .coordinator
                    .borrow_mut()
                    .leave(now_ms(), &group, &member_id, &partitions_of)
            };
            service.save(&shard, Some(&group));
            match left {
                Ok(answers) => {
                    service.answer(answers);
                    ErrorCode::None
                }
                Err(error) => error,
            }
        },
    )
    .await
}

/// OffsetCommit: per partition, stored or why not. Like Kafka, offsets are kept only for
/// partitions that exist; the others answer UnknownTopicOrPartition and the rest of the
/// commit goes ahead.
///
/// # Errors
/// As [`on_coordinator`].
pub async fn commit(
    shard: &Rc<Shard>,
    commit: Commit,
) -> Result<Vec<TopicEntries<(u32, ErrorCode)>>, ErrorCode> {
    on_coordinator(
        shard,
        Some(commit.group.clone()),
        move |shard, service| async move {
            let counts: Vec<u32> = {
                let partitions_of = partitions_of(&shard);
                commit
                    .topics
                    .iter()
                    .map(|entry| partitions_of(&entry.topic))
                    .collect()
            };
            let error = store(&shard, &service, &commit, &counts).await;
            commit_answer(commit.topics, &counts, error)
        },
    )
    .await
}

/// Checks a commit against the group and appends its known partitions' offsets; the error
/// every partition answers.
async fn store(
    shard: &Rc<Shard>,
    service: &GroupService,
    commit: &Commit,
    counts: &[u32],
) -> ErrorCode {
    let Commit {
        group,
        generation,
        member_id,
        ..
    } = commit;
    let topics = known_partitions(&commit.topics, counts);
    let checked = service
        .coordinator
        .borrow()
        .check_commit(group, *generation, member_id);
    if let Err(error) = checked {
        return error;
    }
    // The group id repeats in every record: a small request can ask for a batch far
    // larger than it is. Refuse before building it.
    if commit_bytes(group, &topics) > shard.config.batch_bytes_max as usize {
        tracing::warn!(
            group_bytes = group.len(),
            "offset commit would not fit one batch; refused"
        );
        return ErrorCode::MessageTooLarge;
    }
    let mut builder = BatchBuilder::new();
    for entry in &topics {
        for (partition, offset) in &entry.partitions {
            builder.push(NewRecord {
                timestamp: now_ms(),
                key: Some(Bytes::from(offset_key(group, &entry.topic, *partition))),
                value: Some(Bytes::copy_from_slice(&offset.to_be_bytes())),
                headers: Vec::new(),
            });
        }
    }
    let records_count = builder.records_count();
    let _turn = service.offsets_writer.acquire_permit(1).await;
    // A rebalance may have completed while this commit waited its turn: check again, so a
    // member fenced meanwhile cannot store offsets.
    let rechecked = service
        .coordinator
        .borrow()
        .check_commit(group, *generation, member_id);
    if let Err(error) = rechecked {
        return error;
    }
    if records_count == 0 {
        return ErrorCode::None;
    }
    let records = match builder.build() {
        Ok(records) => Bytes::from(records),
        Err(e) => {
            tracing::warn!(error = %e, "offset commit batch refused");
            return ErrorCode::MessageTooLarge;
        }
    };
    match append(shard, service.offsets_partition(group), records).await {
        ErrorCode::None => {
            let mut coordinator = service.coordinator.borrow_mut();
            for entry in &topics {
                for (partition, offset) in &entry.partitions {
                    coordinator.store_offset(group, &entry.topic, *partition, *offset);
                }
            }
            ErrorCode::None
        }
        error => commit_error(error),
    }
}

/// OffsetFetch: the committed offsets (-1: none) of the partitions asked, or of every
/// partition the group committed for when `topics` is empty.
///
/// # Errors
/// As [`on_coordinator`].
pub async fn fetch_offsets(
    shard: &Rc<Shard>,
    (group, topics): (String, Vec<TopicEntries<u32>>),
) -> Result<Vec<TopicEntries<(u32, i64)>>, ErrorCode> {
    on_coordinator(shard, Some(group.clone()), move |_, service| async move {
        let coordinator = service.coordinator.borrow();
        if topics.is_empty() {
            let mut by_topic: BTreeMap<String, Vec<(u32, i64)>> = BTreeMap::new();
            for ((topic, partition), offset) in coordinator.committed_all(&group) {
                by_topic.entry(topic).or_default().push((partition, offset));
            }
            return by_topic
                .into_iter()
                .map(|(topic, partitions)| TopicEntries { topic, partitions })
                .collect();
        }
        topics
            .into_iter()
            .map(|entry| TopicEntries {
                partitions: entry
                    .partitions
                    .iter()
                    .map(|p| {
                        let committed = coordinator.committed(&group, &entry.topic, *p);
                        (*p, committed.unwrap_or(-1))
                    })
                    .collect(),
                topic: entry.topic,
            })
            .collect()
    })
    .await
}

/// ListGroups: (group, state) of every group this broker coordinates.
///
/// # Errors
/// As [`on_coordinator`].
pub async fn list(shard: &Rc<Shard>) -> Result<Vec<(String, String)>, ErrorCode> {
    on_coordinator(shard, None, move |_, service| async move {
        let coordinator = service.coordinator.borrow();
        coordinator
            .list()
            .into_iter()
            .map(|(group, state)| (group, state.name().to_owned()))
            .collect()
    })
    .await
}

/// DescribeGroups: each group's state, generation and members (`InvalidGroupId`, state
/// Dead, for a group not known).
///
/// # Errors
/// As [`on_coordinator`].
pub async fn describe(
    shard: &Rc<Shard>,
    groups: Vec<String>,
) -> Result<Vec<GroupDescription>, ErrorCode> {
    on_coordinator(shard, None, move |_, service| async move {
        let coordinator = service.coordinator.borrow();
        groups
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
            .collect()
    })
    .await
}
