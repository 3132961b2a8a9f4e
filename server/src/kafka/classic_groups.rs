//! The classic group protocol's operations (Kafka clients' JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, DescribeGroups, ListGroups, DeleteGroups), typed: each runs on
//! the coordinator shard's classic state machine (`group/classic/`) through
//! [`group_ops::on_coordinator`], refused there while this broker does not coordinate the
//! group, and answers its own type; `kafka/groups.rs` encodes them.

use super::code;
use crate::group::classic::{self, GroupView, Joined};
use crate::handlers::group_ops::on_coordinator;
use crate::handlers::groups::{now_ms, GroupService, OFFSETS_TOPIC};
use crate::shard::{owner, Job, Shard};
use bytes::Bytes;
use futures_channel::oneshot;
use keel_kafka::errors;
use keel_kafka::requests;
use keel_protocol::api::ErrorCode;
use keel_protocol::batch::{BatchBuilder, NewRecord};
use std::rc::Rc;

impl GroupService {
    /// Sends classic answers to the requests parked for them.
    pub(crate) fn answer_classic(&self, answers: Vec<classic::Answer>) {
        for answer in answers {
            let token = match &answer {
                classic::Answer::Join(token, _) | classic::Answer::Sync(token, ..) => *token,
            };
            if let Some(sender) = self.classic_waiting.borrow_mut().remove(&token) {
                let _ = sender.send(answer);
            }
        }
    }

    fn park(&self) -> (u64, oneshot::Receiver<classic::Answer>) {
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        let (sender, receiver) = oneshot::channel();
        self.classic_waiting.borrow_mut().insert(token, sender);
        (token, receiver)
    }
}

/// JoinGroup: answered when the rebalance it takes part in completes.
///
/// # Errors
/// As [`on_coordinator`]; CoordinatorNotAvailable when the coordinator went away meanwhile.
pub async fn join(shard: &Rc<Shard>, join: classic::Join) -> Result<Joined, ErrorCode> {
    let group = join.group.clone();
    let joined = on_coordinator(
        shard,
        Some(group.clone()),
        move |shard, service| async move {
            let (token, receiver) = service.park();
            let answers = {
                let mut coordinator = service.coordinator.borrow_mut();
                let limits = *coordinator.limits();
                coordinator.classic.join(now_ms(), &limits, join, token)
            };
            service.answer_classic(answers);
            service.save(&shard, Some(&group));
            match receiver.await {
                Ok(classic::Answer::Join(_, joined)) => Ok(joined),
                _ => Err(ErrorCode::CoordinatorNotAvailable),
            }
        },
    );
    joined.await.and_then(|joined| joined)
}

/// SyncGroup: the error and the member's assignment.
///
/// # Errors
/// As [`join`].
pub async fn sync(shard: &Rc<Shard>, sync: requests::SyncGroup) -> Result<(i16, Bytes), ErrorCode> {
    let group = sync.group.clone();
    let synced = on_coordinator(
        shard,
        Some(group.clone()),
        move |shard, service| async move {
            let (token, receiver) = service.park();
            let answers = service
                .coordinator
                .borrow_mut()
                .classic
                .sync(now_ms(), sync, token);
            service.answer_classic(answers);
            service.save(&shard, Some(&group));
            match receiver.await {
                Ok(classic::Answer::Sync(_, error, assignment)) => Ok((error, assignment)),
                _ => Err(ErrorCode::CoordinatorNotAvailable),
            }
        },
    );
    synced.await.and_then(|synced| synced)
}

/// Heartbeat: its error code (0, or REBALANCE_IN_PROGRESS: rejoin, …).
///
/// # Errors
/// As [`on_coordinator`].
pub async fn heartbeat(shard: &Rc<Shard>, beat: requests::Heartbeat) -> Result<i16, ErrorCode> {
    on_coordinator(
        shard,
        Some(beat.group.clone()),
        move |_, service| async move {
            service.coordinator.borrow_mut().classic.heartbeat(
                now_ms(),
                &beat.group,
                beat.generation,
                &beat.member_id,
                beat.group_instance_id.as_deref(),
            )
        },
    )
    .await
}

/// LeaveGroup: per member, its error code.
///
/// # Errors
/// As [`on_coordinator`].
pub async fn leave(shard: &Rc<Shard>, leave: requests::LeaveGroup) -> Result<Vec<i16>, ErrorCode> {
    on_coordinator(
        shard,
        Some(leave.group.clone()),
        move |shard, service| async move {
            let (results, answers) = service.coordinator.borrow_mut().classic.leave(
                now_ms(),
                &leave.group,
                &leave.members,
            );
            service.answer_classic(answers);
            service.save(&shard, Some(&leave.group));
            results
        },
    )
    .await
}

/// DescribeGroups: classic groups as they are, native ones (or groups known by their
/// offsets only) as the coordinator shows them; `None` for a group not known.
///
/// # Errors
/// As [`on_coordinator`].
pub async fn describe(
    shard: &Rc<Shard>,
    groups: Vec<String>,
) -> Result<Vec<(String, Option<GroupView>)>, ErrorCode> {
    on_coordinator(shard, None, move |_, service| async move {
        let coordinator = service.coordinator.borrow();
        groups
            .into_iter()
            .map(|group| {
                let view = coordinator.classic.describe(&group).or_else(|| {
                    let (state, generation, assignor, members) = coordinator.describe(&group)?;
                    Some(GroupView {
                        state,
                        generation,
                        protocol_type: "consumer".into(),
                        protocol: assignor,
                        members: members
                            .into_iter()
                            .map(|(member_id, ..)| classic::MemberView {
                                member_id,
                                instance_id: None,
                                client_id: String::new(),
                                client_host: String::new(),
                                metadata: Bytes::new(),
                                assignment: Bytes::new(),
                            })
                            .collect(),
                    })
                });
                (group, view)
            })
            .collect()
    })
    .await
}

/// ListGroups: (group, state, protocol type) of every group this broker coordinates.
///
/// # Errors
/// As [`on_coordinator`].
pub async fn list(shard: &Rc<Shard>) -> Result<Vec<(String, String, String)>, ErrorCode> {
    on_coordinator(shard, None, |_, service| async move {
        let coordinator = service.coordinator.borrow();
        let classic = coordinator.classic.list();
        coordinator
            .list()
            .into_iter()
            .map(
                |(group, state)| match classic.iter().find(|(name, ..)| *name == group) {
                    Some((_, state, protocol_type)) => {
                        (group, state.name().to_owned(), protocol_type.clone())
                    }
                    None => (group, state.name().to_owned(), "consumer".to_owned()),
                },
            )
            .collect()
    })
    .await
}

/// DeleteGroups: per group, its error code.
///
/// # Errors
/// As [`on_coordinator`].
pub async fn delete(
    shard: &Rc<Shard>,
    groups: Vec<String>,
) -> Result<Vec<(String, i16)>, ErrorCode> {
    on_coordinator(shard, None, |shard, service| async move {
        delete_groups(&shard, &service, groups).await
    })
    .await
}

/// Deletes groups without members: their committed offsets get tombstones in
/// `__consumer_offsets` (durably, before they are forgotten).
async fn delete_groups(
    shard: &Rc<Shard>,
    service: &GroupService,
    groups: Vec<String>,
) -> Vec<(String, i16)> {
    let mut results = Vec::with_capacity(groups.len());
    for group in groups {
        if let Err(error) = service.serves(&group) {
            results.push((group, code(error)));
            continue;
        }
        let _turn = service.offsets_writer.acquire_permit(1).await;
        let (members, offsets) = {
            let coordinator = service.coordinator.borrow();
            (
                coordinator.has_members(&group),
                coordinator.committed_all(&group),
            )
        };
        if members {
            results.push((group, errors::NON_EMPTY_GROUP));
            continue;
        }
        if offsets.is_empty() {
            results.push((group, errors::GROUP_ID_NOT_FOUND));
            continue;
        }
        let mut builder = BatchBuilder::new();
        for ((topic, partition), _) in &offsets {
            builder.push(NewRecord {
                timestamp: now_ms(),
                key: Some(Bytes::from(crate::handlers::groups::offset_key(
                    &group, topic, *partition,
                ))),
                value: None,
                headers: Vec::new(),
            });
        }
        let Ok(records) = builder.build() else {
            results.push((group, errors::UNKNOWN_SERVER_ERROR));
            continue;
        };
        let partition = service.offsets_partition(&group);
        let job = Job::Produce {
            topic: OFFSETS_TOPIC.into(),
            partition,
            records: Bytes::from(records),
            acks: -1,
            timeout_ms: 30_000,
        };
        let owner = owner(OFFSETS_TOPIC, partition, shard.shards());
        match shard
            .ask::<keel_protocol::api::ProducePartitionResult>(owner, job)
            .await
        {
            Ok(result) if result.error == ErrorCode::None => {
                let mut coordinator = service.coordinator.borrow_mut();
                for ((topic, partition), _) in &offsets {
                    coordinator.remove_offset(&group, topic, *partition);
                }
                results.push((group, 0));
            }
            Ok(result) => {
                let error = crate::handlers::groups::commit_error(result.error);
                results.push((group, code(error)));
            }
            Err(_) => results.push((group, errors::UNKNOWN_SERVER_ERROR)),
        }
    }
    results
}
