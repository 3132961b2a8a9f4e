//! Consumer groups for Kafka clients, encoded: the classic protocol's membership requests
//! are served by `classic_groups.rs` on the coordinator shard's classic state machine;
//! commits and offset reads by the group service's typed operations
//! (`handlers/group_ops.rs`, in `offsets.rs`), so both protocols share
//! `__consumer_offsets`.

use super::classic_groups;
use super::{code, encode, text, Answer};
use crate::group::classic::{self, Joined};
use crate::security::gate::Gate;
use crate::shard::Shard;
use bytes::Bytes;
use keel_auth::acl::Operation;
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
use keel_kafka::requests;
use std::rc::Rc;

/// The error for a group request this connection may not make (`operation` on the
/// group), or, in cluster mode, for a group another broker coordinates (or none is known
/// for).
pub(super) async fn not_here(
    shard: &Rc<Shard>,
    gate: &Gate<'_>,
    operation: Operation,
    group: &str,
) -> Option<i16> {
    if !gate.group(operation, group) {
        return Some(errors::GROUP_AUTHORIZATION_FAILED);
    }
    shard.cluster.as_ref()?;
    match crate::handlers::cluster_admin::coordinator(shard, group).await {
        Ok((node, _)) if node == shard.config.node_id => None,
        Ok(_) => Some(errors::NOT_COORDINATOR),
        Err(error) => Some(code(error)),
    }
}

/// JoinGroup.
pub async fn join_group(
    shard: &Rc<Shard>,
    header: &Header,
    gate: &Gate<'_>,
    peer: &str,
    join: requests::JoinGroup,
) -> Answer {
    if let Some(error) = not_here(shard, gate, Operation::Read, &join.group).await {
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
    let joined = classic_groups::join(shard, job)
        .await
        .unwrap_or_else(|error| Joined {
            error: code(error),
            generation: -1,
            protocol: None,
            leader: String::new(),
            member_id: String::new(),
            members: Vec::new(),
        });
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

/// SyncGroup.
pub async fn sync_group(
    shard: &Rc<Shard>,
    header: &Header,
    gate: &Gate<'_>,
    sync: requests::SyncGroup,
) -> Answer {
    if let Some(error) = not_here(shard, gate, Operation::Read, &sync.group).await {
        return encode(header, &SyncGroupResponse::default().with_error_code(error));
    }
    let (error, assignment) = classic_groups::sync(shard, sync)
        .await
        .unwrap_or_else(|error| (code(error), Bytes::new()));
    let response = SyncGroupResponse::default()
        .with_error_code(error)
        .with_protocol_type(Some(text("consumer")))
        .with_assignment(assignment);
    encode(header, &response)
}

/// Heartbeat.
pub async fn heartbeat(
    shard: &Rc<Shard>,
    header: &Header,
    gate: &Gate<'_>,
    heartbeat: requests::Heartbeat,
) -> Answer {
    let error = match not_here(shard, gate, Operation::Read, &heartbeat.group).await {
        Some(error) => error,
        None => classic_groups::heartbeat(shard, heartbeat)
            .await
            .unwrap_or_else(code),
    };
    encode(header, &HeartbeatResponse::default().with_error_code(error))
}

/// LeaveGroup.
pub async fn leave_group(
    shard: &Rc<Shard>,
    header: &Header,
    gate: &Gate<'_>,
    leave: requests::LeaveGroup,
) -> Answer {
    let members = leave.members.clone();
    let results = match not_here(shard, gate, Operation::Read, &leave.group).await {
        Some(error) => vec![error; members.len()],
        None => classic_groups::leave(shard, leave)
            .await
            .unwrap_or_else(|error| vec![code(error); members.len()]),
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

/// DescribeGroups.
pub async fn describe_groups(
    shard: &Rc<Shard>,
    header: &Header,
    gate: &Gate<'_>,
    groups: Vec<String>,
) -> Answer {
    let (groups, denied): (Vec<String>, Vec<String>) = groups
        .into_iter()
        .partition(|g| gate.group(Operation::Describe, g));
    let denied = denied.into_iter().map(|group| {
        DescribedGroup::default()
            .with_group_id(GroupId(text(group)))
            .with_error_code(errors::GROUP_AUTHORIZATION_FAILED)
    });
    let described = match classic_groups::describe(shard, groups.clone()).await {
        Ok(described) => described,
        // Every group answers the coordinator's error.
        Err(error) => {
            let refused = groups
                .into_iter()
                .map(|group| {
                    DescribedGroup::default()
                        .with_group_id(GroupId(text(group)))
                        .with_error_code(code(error))
                })
                .chain(denied)
                .collect();
            return encode(
                header,
                &DescribeGroupsResponse::default().with_groups(refused),
            );
        }
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
        .chain(denied)
        .collect();
    encode(
        header,
        &DescribeGroupsResponse::default().with_groups(groups),
    )
}

/// ListGroups, filtered by state when the request names states.
/// Groups this connection may not describe are left out (all are listed with DESCRIBE on
/// the cluster), as Kafka.
pub async fn list_groups(
    shard: &Rc<Shard>,
    header: &Header,
    gate: &Gate<'_>,
    states: Vec<String>,
) -> Answer {
    let every_group = gate.cluster(Operation::Describe);
    let listed = match classic_groups::list(shard).await {
        Ok(listed) => listed,
        Err(error) => {
            return encode(
                header,
                &ListGroupsResponse::default().with_error_code(code(error)),
            )
        }
    };
    let groups = listed
        .into_iter()
        .filter(|(_, state, _)| {
            states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(state))
        })
        .filter(|(group, ..)| every_group || gate.group(Operation::Describe, group))
        .map(|(group, state, protocol_type)| {
            ListedGroup::default()
                .with_group_id(GroupId(text(group)))
                .with_protocol_type(text(protocol_type))
                .with_group_state(text(state))
        })
        .collect();
    encode(header, &ListGroupsResponse::default().with_groups(groups))
}

/// DeleteGroups.
pub async fn delete_groups(
    shard: &Rc<Shard>,
    header: &Header,
    gate: &Gate<'_>,
    groups: Vec<String>,
) -> Answer {
    let (groups, denied): (Vec<String>, Vec<String>) = groups
        .into_iter()
        .partition(|g| gate.group(Operation::Delete, g));
    let mut deleted = match classic_groups::delete(shard, groups.clone()).await {
        Ok(deleted) => deleted,
        Err(error) => groups
            .into_iter()
            .map(|group| (group, code(error)))
            .collect(),
    };
    deleted.extend(
        denied
            .into_iter()
            .map(|g| (g, errors::GROUP_AUTHORIZATION_FAILED)),
    );
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
