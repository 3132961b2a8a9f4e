//! Consumer groups for Kafka clients: the classic protocol's membership requests run on the
//! coordinator shard's classic state machine (`group/classic.rs`); commits and offset reads
//! go through the native group handler, so both protocols share `__consumer_offsets`.

use super::{code, encode, text, Answer};
use crate::group::classic::{self, GroupView, Joined};
use crate::handlers::groups::{now_ms, GroupService, COORDINATOR_SHARD, OFFSETS_TOPIC};
use crate::shard::{owner, Job, Reply, Shard};
use bytes::Bytes;
use futures_channel::oneshot;
use keel_kafka::errors;
use keel_kafka::frame::Header;
use keel_kafka::kafka_protocol::messages::{
    delete_groups_response::DeletableGroupResult,
    describe_groups_response::{DescribedGroup, DescribedGroupMember},
    join_group_response::JoinGroupResponseMember,
    leave_group_response::MemberResponse,
    list_groups_response::ListedGroup,
    DeleteGroupsResponse, DescribeGroupsResponse, GroupId, HeartbeatResponse, JoinGroupResponse,
    LeaveGroupResponse, ListGroupsResponse, SyncGroupResponse,
};
use keel_kafka::requests::{self, KafkaRequest};
use keel_protocol::api::{ErrorCode, Request, Response};
use keel_protocol::batch::{BatchBuilder, NewRecord};
use std::rc::Rc;

/// A classic-group request for the coordinator shard.
#[derive(Debug)]
pub enum GroupJob {
    /// JoinGroup.
    Join(classic::Join),
    /// SyncGroup.
    Sync(requests::SyncGroup),
    /// Heartbeat.
    Heartbeat(requests::Heartbeat),
    /// LeaveGroup.
    Leave(requests::LeaveGroup),
    /// DescribeGroups: classic groups as they are, native ones as the coordinator shows.
    Describe(Vec<String>),
    /// ListGroups: (group, state, protocol type).
    List,
    /// DeleteGroups.
    Delete(Vec<String>),
}

impl GroupJob {
    /// The one group a membership request is about.
    fn group(&self) -> Option<&str> {
        match self {
            GroupJob::Join(join) => Some(&join.group),
            GroupJob::Sync(sync) => Some(&sync.group),
            GroupJob::Heartbeat(heartbeat) => Some(&heartbeat.group),
            GroupJob::Leave(leave) => Some(&leave.group),
            GroupJob::Describe(_) | GroupJob::List | GroupJob::Delete(_) => None,
        }
    }
}

/// The coordinator shard's answer.
#[derive(Debug)]
pub enum GroupReply {
    /// JoinGroup.
    Joined(Joined),
    /// SyncGroup: error, assignment.
    Synced(i16, Bytes),
    /// Heartbeat, or one error for a whole request.
    Error(i16),
    /// LeaveGroup: per member.
    Left(Vec<i16>),
    /// DescribeGroups.
    Described(Vec<(String, Option<GroupView>)>),
    /// ListGroups.
    Listed(Vec<(String, String, String)>),
    /// DeleteGroups: per group.
    Deleted(Vec<(String, i16)>),
}

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

/// Runs a [`GroupJob`] on the coordinator shard.
pub async fn serve_job(shard: &Rc<Shard>, job: GroupJob) -> GroupReply {
    let Some(service) = crate::handlers::groups::service(shard) else {
        return GroupReply::Error(errors::NOT_COORDINATOR);
    };
    let now = now_ms();
    if let Some(Err(error)) = job.group().map(|group| service.serves(group)) {
        return GroupReply::Error(code(error));
    }
    match job {
        GroupJob::Join(join) => {
            let (token, receiver) = service.park();
            let answers = {
                let mut coordinator = service.coordinator.borrow_mut();
                let limits = *coordinator.limits();
                let group = join.group.clone();
                (coordinator.classic.join(now, &limits, join, token), group)
            };
            let (answers, group) = answers;
            service.answer_classic(answers);
            service.save(shard, Some(&group));
            match receiver.await {
                Ok(classic::Answer::Join(_, joined)) => GroupReply::Joined(joined),
                _ => GroupReply::Error(errors::COORDINATOR_NOT_AVAILABLE),
            }
        }
        GroupJob::Sync(sync) => {
            let (token, receiver) = service.park();
            let group = sync.group.clone();
            let answers = service
                .coordinator
                .borrow_mut()
                .classic
                .sync(now, sync, token);
            service.answer_classic(answers);
            service.save(shard, Some(&group));
            match receiver.await {
                Ok(classic::Answer::Sync(_, error, assignment)) => {
                    GroupReply::Synced(error, assignment)
                }
                _ => GroupReply::Error(errors::COORDINATOR_NOT_AVAILABLE),
            }
        }
        GroupJob::Heartbeat(h) => {
            GroupReply::Error(service.coordinator.borrow_mut().classic.heartbeat(
                now,
                &h.group,
                h.generation,
                &h.member_id,
                h.group_instance_id.as_deref(),
            ))
        }
        GroupJob::Leave(leave) => {
            let (results, answers) =
                service
                    .coordinator
                    .borrow_mut()
                    .classic
                    .leave(now, &leave.group, &leave.members);
            service.answer_classic(answers);
            service.save(shard, Some(&leave.group));
            GroupReply::Left(results)
        }
        GroupJob::Describe(groups) => {
            let coordinator = service.coordinator.borrow();
            GroupReply::Described(
                groups
                    .into_iter()
                    .map(|group| {
                        let view = coordinator.classic.describe(&group).or_else(|| {
                            // A native group (or one known by its offsets only).
                            let (state, generation, assignor, members) =
                                coordinator.describe(&group)?;
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
                    .collect(),
            )
        }
        GroupJob::List => {
            let coordinator = service.coordinator.borrow();
            let classic = coordinator.classic.list();
            GroupReply::Listed(
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
                    .collect(),
            )
        }
        GroupJob::Delete(groups) => {
            GroupReply::Deleted(delete_groups(shard, &service, groups).await)
        }
    }
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
        match shard
            .call(owner(OFFSETS_TOPIC, partition, shard.shards()), job)
            .await
        {
            Reply::Produced(result) if result.error == ErrorCode::None => {
                let mut coordinator = service.coordinator.borrow_mut();
                for ((topic, partition), _) in &offsets {
                    coordinator.remove_offset(&group, topic, *partition);
                }
                results.push((group, 0));
            }
            Reply::Produced(result) => {
                let error = crate::handlers::groups::commit_error(result.error);
                results.push((group, code(error)));
            }
            _ => results.push((group, errors::UNKNOWN_SERVER_ERROR)),
        }
    }
    results
}

async fn call(shard: &Rc<Shard>, job: GroupJob) -> GroupReply {
    shard
        .run_on(COORDINATOR_SHARD, "group", move |shard| async move {
            Box::pin(serve_job(&shard, job)).await
        })
        .await
        .unwrap_or(GroupReply::Error(errors::COORDINATOR_NOT_AVAILABLE))
}

/// Cluster mode: the error for a group another broker coordinates (or none is known for).
pub(super) async fn not_here(shard: &Rc<Shard>, group: &str) -> Option<i16> {
    shard.cluster.as_ref()?;
    match crate::handlers::cluster_admin::coordinator(shard, group).await {
        Ok((node, _)) if node == shard.config.node_id => None,
        Ok(_) => Some(errors::NOT_COORDINATOR),
        Err(error) => Some(code(error)),
    }
}

/// A group request served by the native coordinator, or the error its shard answered
/// (NOT_COORDINATOR while the group's partition is led elsewhere or still loading).
pub(super) async fn native(shard: &Rc<Shard>, request: Request) -> Result<Response, i16> {
    crate::handlers::groups::on_coordinator(shard, request)
        .await
        .map_err(code)
}

pub async fn handle(
    shard: &Rc<Shard>,
    header: &Header,
    peer: &str,
    request: KafkaRequest,
) -> Answer {
    match request {
        KafkaRequest::FindCoordinator(find) => {
            super::offsets::find_coordinator(shard, header, find).await
        }
        KafkaRequest::JoinGroup(join) => {
            if let Some(error) = not_here(shard, &join.group).await {
                return encode(
                    header,
                    &JoinGroupResponse::default()
                        .with_error_code(error)
                        .with_generation_id(-1),
                );
            }
            let job = classic::Join {
                group: join.group,
                member_id: join.member_id,
                instance_id: join.group_instance_id,
                client_id: header.client_id.clone().unwrap_or_default(),
                client_host: format!("/{}", peer.rsplit_once(':').map_or(peer, |(host, _)| host)),
                session_timeout_ms: join.session_timeout_ms,
                rebalance_timeout_ms: join.rebalance_timeout_ms,
                protocol_type: join.protocol_type,
                protocols: join.protocols,
                require_known_member_id: header.api_version >= 4,
            };
            let joined = match call(shard, GroupJob::Join(job)).await {
                GroupReply::Joined(joined) => joined,
                GroupReply::Error(error) => Joined {
                    error,
                    generation: -1,
                    protocol: None,
                    leader: String::new(),
                    member_id: String::new(),
                    members: Vec::new(),
                },
                _ => return Answer::Close,
            };
            let response = JoinGroupResponse::default()
                .with_error_code(joined.error)
                .with_generation_id(joined.generation)
                .with_protocol_type(Some(text("consumer")))
                .with_protocol_name(joined.protocol.map(text))
                .with_leader(text(joined.leader))
                .with_member_id(text(joined.member_id))
                .with_members(
                    joined
                        .members
                        .into_iter()
                        .map(|(id, instance, metadata)| {
                            JoinGroupResponseMember::default()
                                .with_member_id(text(id))
                                .with_group_instance_id(instance.map(text))
                                .with_metadata(metadata)
                        })
                        .collect(),
                );
            encode(header, &response)
        }
        KafkaRequest::SyncGroup(sync) => {
            if let Some(error) = not_here(shard, &sync.group).await {
                return encode(header, &SyncGroupResponse::default().with_error_code(error));
            }
            let (error, assignment) = match call(shard, GroupJob::Sync(sync)).await {
                GroupReply::Synced(error, assignment) => (error, assignment),
                GroupReply::Error(error) => (error, Bytes::new()),
                _ => return Answer::Close,
            };
            let response = SyncGroupResponse::default()
                .with_error_code(error)
                .with_protocol_type(Some(text("consumer")))
                .with_assignment(assignment);
            encode(header, &response)
        }
        KafkaRequest::Heartbeat(heartbeat) => {
            let error = match not_here(shard, &heartbeat.group).await {
                Some(error) => error,
                None => match call(shard, GroupJob::Heartbeat(heartbeat)).await {
                    GroupReply::Error(error) => error,
                    _ => errors::UNKNOWN_SERVER_ERROR,
                },
            };
            encode(header, &HeartbeatResponse::default().with_error_code(error))
        }
        KafkaRequest::LeaveGroup(leave) => {
            let members = leave.members.clone();
            let results = match not_here(shard, &leave.group).await {
                Some(error) => vec![error; members.len()],
                None => match call(shard, GroupJob::Leave(leave)).await {
                    GroupReply::Left(results) => results,
                    _ => vec![errors::UNKNOWN_SERVER_ERROR; members.len()],
                },
            };
            // Before v3 one member leaves and its error is the response's.
            if header.api_version < 3 {
                let error = results.first().copied().unwrap_or(0);
                return encode(
                    header,
                    &LeaveGroupResponse::default().with_error_code(error),
                );
            }
            let response = LeaveGroupResponse::default().with_members(
                members
                    .into_iter()
                    .zip(results)
                    .map(|((member, instance), error)| {
                        MemberResponse::default()
                            .with_member_id(text(member))
                            .with_group_instance_id(instance.map(text))
                            .with_error_code(error)
                    })
                    .collect(),
            );
            encode(header, &response)
        }
        KafkaRequest::OffsetCommit(commit) => {
            super::offsets::offset_commit(shard, header, commit).await
        }
        KafkaRequest::OffsetFetch(fetch) => {
            super::offsets::offset_fetch(shard, header, fetch).await
        }
        KafkaRequest::DescribeGroups(groups) => {
            let Some(described) = (match call(shard, GroupJob::Describe(groups)).await {
                GroupReply::Described(described) => Some(described),
                _ => None,
            }) else {
                return Answer::Close;
            };
            let groups = described
                .into_iter()
                .map(|(group, view)| {
                    let described = DescribedGroup::default().with_group_id(GroupId(text(group)));
                    match view {
                        None => described.with_group_state(text("Dead")),
                        Some(view) => described
                            .with_group_state(text(view.state.name()))
                            .with_protocol_type(text(view.protocol_type))
                            .with_protocol_data(text(view.protocol))
                            .with_members(
                                view.members
                                    .into_iter()
                                    .map(|m| {
                                        DescribedGroupMember::default()
                                            .with_member_id(text(m.member_id))
                                            .with_group_instance_id(m.instance_id.map(text))
                                            .with_client_id(text(m.client_id))
                                            .with_client_host(text(m.client_host))
                                            .with_member_metadata(m.metadata)
                                            .with_member_assignment(m.assignment)
                                    })
                                    .collect(),
                            ),
                    }
                })
                .collect();
            encode(
                header,
                &DescribeGroupsResponse::default().with_groups(groups),
            )
        }
        KafkaRequest::ListGroups(states) => {
            let GroupReply::Listed(listed) = call(shard, GroupJob::List).await else {
                return Answer::Close;
            };
            let groups = listed
                .into_iter()
                .filter(|(_, state, _)| {
                    states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(state))
                })
                .map(|(group, state, protocol_type)| {
                    ListedGroup::default()
                        .with_group_id(GroupId(text(group)))
                        .with_protocol_type(text(protocol_type))
                        .with_group_state(text(state))
                })
                .collect();
            encode(header, &ListGroupsResponse::default().with_groups(groups))
        }
        KafkaRequest::DeleteGroups(groups) => {
            let GroupReply::Deleted(deleted) = call(shard, GroupJob::Delete(groups)).await else {
                return Answer::Close;
            };
            let results = deleted
                .into_iter()
                .map(|(group, error)| {
                    DeletableGroupResult::default()
                        .with_group_id(GroupId(text(group)))
                        .with_error_code(error)
                })
                .collect();
            encode(
                header,
                &DeleteGroupsResponse::default().with_results(results),
            )
        }
        _ => Answer::Close,
    }
}
