//! What each native request needs from the ACLs when the authorizer is on: Kafka's
//! operations on the topics, groups or cluster it names (the Kafka listener asks the same
//! [`Gate`] per resource). A native request is served whole or refused whole, with the
//! authorization error of the first resource refused — except Produce, Fetch, ListOffsets,
//! OffsetCommit and what is listed (Metadata, ListGroups, a group's offsets), answered per
//! topic or filtered as Kafka's ([`serve`]).

use crate::handlers::{self, Outgoing};
use crate::security::gate::Gate;
use crate::security::Session;
use crate::shard::Shard;
use keel_auth::acl::Operation;
use keel_protocol::api::{
    ErrorCode, FetchPartition, LinkAction, ListOffsetsPartition, ListOffsetsPartitionResult,
    ProducePartition, ProducePartitionResult, Request, Response, SecurityRequest, TopicEntries,
    TopicMetadata,
};
use std::rc::Rc;

/// `None` when `request` may be served; otherwise the error to answer.
pub fn refusal(gate: &Gate<'_>, request: &Request) -> Option<ErrorCode> {
    let topics = |operation: Operation, names: &mut dyn Iterator<Item = &String>| {
        for name in names {
            if !gate.topic(operation, name) {
                return Some(ErrorCode::TopicAuthorizationFailed);
            }
        }
        None
    };
    let group = |operation: Operation, name: &str| {
        (!gate.group(operation, name)).then_some(ErrorCode::GroupAuthorizationFailed)
    };
    let cluster = |operation: Operation| {
        (!gate.cluster(operation)).then_some(ErrorCode::ClusterAuthorizationFailed)
    };
    use Operation::*;
    match request {
        Request::ApiVersions => None,
        // Per topic, in `metadata`.
        Request::Metadata { .. } => None,
        Request::CreateTopics { topics: new } => new
            .iter()
            .any(|t| !gate.topic(Create, &t.name) && !gate.cluster(Create))
            .then_some(ErrorCode::TopicAuthorizationFailed),
        Request::DeleteTopics { topics: names } => topics(Delete, &mut names.iter()),
        Request::DescribeConfigs { topics: names } => topics(DescribeConfigs, &mut names.iter()),
        Request::AlterConfigs { topics: changes } => {
            topics(AlterConfigs, &mut changes.iter().map(|(name, _)| name))
        }
        // Per topic, in `produce` and `fetch`.
        Request::Produce { .. } | Request::Fetch { .. } => None,
        // Per topic, in `list_offsets`.
        Request::ListOffsets { .. } => None,
        Request::FindCoordinator { group: name } => group(Describe, name),
        Request::JoinGroup(join) => group(Read, &join.group),
        Request::SyncGroup { group: name, .. }
        | Request::Heartbeat { group: name, .. }
        | Request::LeaveGroup { group: name, .. } => group(Read, name),
        // The group here; its topics in `offset_commit`.
        Request::OffsetCommit { group: name, .. } => group(Read, name),
        Request::OffsetFetch {
            group: name,
            topics: entries,
        } => group(Describe, name)
            .or_else(|| topics(Describe, &mut entries.iter().map(|e| &e.topic))),
        Request::ListGroups => (!gate.cluster(Describe) && !gate.any_group(Describe))
            .then_some(ErrorCode::ClusterAuthorizationFailed),
        Request::DescribeGroups { groups } => groups.iter().find_map(|name| group(Describe, name)),
        Request::InitProducerId => (!gate.cluster(IdempotentWrite) && !gate.any_topic(Write))
            .then_some(ErrorCode::ClusterAuthorizationFailed),
        Request::DescribeCluster => cluster(Describe),
        // A follower's fetch: a broker's (its certificate proves it when brokers
        // authenticate each other; conn.rs checks the follower named is that broker).
        Request::ReplicaFetch(_) => cluster(ClusterAction),
        Request::ElectLeaders { .. }
        | Request::ReassignPartition { .. }
        | Request::DecommissionBroker { .. } => cluster(Alter),
        // Links, as Kafka's admin of the cluster: describing needs DESCRIBE, changing ALTER.
        Request::Link(link) if link.action == LinkAction::Describe => cluster(Describe),
        Request::Link(_) => cluster(Alter),
        Request::Security(request) => match request {
            // The exchange itself is served before anything is known of the client.
            SecurityRequest::SaslHandshake { .. } | SecurityRequest::SaslAuthenticate { .. } => {
                None
            }
            // As Kafka's admin APIs for users, ACLs and client quotas.
            SecurityRequest::DescribeUsers { .. } | SecurityRequest::DescribeAcls { .. } => {
                cluster(Describe)
            }
            SecurityRequest::AlterUsers { .. }
            | SecurityRequest::CreateAcls { .. }
            | SecurityRequest::DeleteAcls { .. } => cluster(Alter),
            SecurityRequest::DescribeQuotas => cluster(DescribeConfigs),
            SecurityRequest::AlterQuotas { .. } => cluster(AlterConfigs),
        },
    }
}

/// Serves, with the authorizer on, the requests whose answer the ACLs shape per resource:
/// Produce, Fetch, ListOffsets and OffsetCommit per topic, and what is listed (Metadata,
/// ListGroups, a group's offsets of every topic) filtered; any other request (or with the
/// authorizer off) comes back to be served whole.
pub async fn serve(
    shard: &Rc<Shard>,
    session: &Session,
    request: Request,
) -> Result<Option<Outgoing>, Request> {
    if !shard.security.acls.enabled() || over_entries(shard, &request) {
        // Over the entry limit the handler refuses every entry, with no work done.
        return Err(request);
    }
    let gate = Gate::new(shard, session);
    let gate = &gate;
    Ok(match request {
        Request::Produce {
            acks,
            timeout_ms,
            topics,
        } => produce(shard, gate, (acks, timeout_ms), topics).await,
        Request::Fetch {
            max_wait_ms,
            min_bytes,
            max_bytes,
            topics,
        } => Some(fetch(shard, gate, (max_wait_ms, min_bytes, max_bytes), topics).await),
        Request::ListOffsets { topics } => Some(list_offsets(shard, gate, topics).await),
        Request::OffsetCommit {
            group,
            generation,
            member_id,
            topics,
        } => {
            let commit = handlers::group_ops::Commit {
                group,
                generation,
                member_id,
                topics,
            };
            offset_commit(shard, gate, commit).await
        }
        Request::Metadata { topics } => Some(metadata(shard, gate, topics).await),
        Request::ListGroups => Some(list_groups(shard, gate).await),
        Request::OffsetFetch { group, topics } if topics.is_empty() => {
            offset_fetch_all(shard, gate, group).await
        }
        other => return Err(other),
    })
}

/// Whether `request` names more partition entries than a request may
/// (`request_partitions_max`).
fn over_entries(shard: &Shard, request: &Request) -> bool {
    let refused = match request {
        Request::Produce { topics, .. } => handlers::entries_refused(shard, topics),
        Request::Fetch { topics, .. } => handlers::entries_refused(shard, topics),
        Request::ListOffsets { topics } => handlers::entries_refused(shard, topics),
        Request::OffsetCommit { topics, .. } => handlers::entries_refused(shard, topics),
        _ => None,
    };
    refused.is_some()
}

/// Metadata as the connection may see it, Kafka's rule: a named topic it may not describe
/// is answered TOPIC_AUTHORIZATION_FAILED (nothing of it is looked up); when every topic is
/// asked for, those are left out.
pub async fn metadata(shard: &Rc<Shard>, gate: &Gate<'_>, names: Vec<String>) -> Outgoing {
    use handlers::metadata::Offsets;
    let describable = |topic: &str| gate.topic(Operation::Describe, topic);
    let every = names.is_empty();
    let (names, denied): (Vec<String>, Vec<String>) =
        names.into_iter().partition(|t| describable(t));
    // An empty list asks for every topic; with only denied topics named, those are looked
    // up (for the brokers) and left out like every undescribable one. Offsets are read only
    // for what stays.
    let asked = if !every && names.is_empty() {
        denied.clone()
    } else {
        names
    };
    let (brokers, mut topics) = handlers::metadata::handle(shard, asked, Offsets::Left).await;
    topics.retain(|t| describable(&t.topic));
    handlers::metadata::describe(shard, &mut topics).await;
    topics.extend(denied.into_iter().map(|topic| TopicMetadata {
        topic,
        error: ErrorCode::TopicAuthorizationFailed,
        partitions: Vec::new(),
    }));
    Outgoing::body(&Response::Metadata { brokers, topics })
}

/// Produce with Kafka's rule: the topics the connection may not write are answered
/// TOPIC_AUTHORIZATION_FAILED per partition, the others are written.
pub async fn produce(
    shard: &Rc<Shard>,
    gate: &Gate<'_>,
    (acks, timeout_ms): (i8, u32),
    topics: Vec<TopicEntries<ProducePartition>>,
) -> Option<Outgoing> {
    let (topics, denied) = split(gate, Operation::Write, topics);
    let mut results = if topics.is_empty() {
        Vec::new()
    } else {
        handlers::produce::handle(shard, acks, timeout_ms, topics).await
    };
    results.extend(refused(denied, |p| ProducePartitionResult {
        partition: p.partition,
        error: ErrorCode::TopicAuthorizationFailed,
        base_offset: -1,
        log_start_offset: -1,
    }));
    (acks != 0).then(|| Outgoing::body(&Response::Produce { topics: results }))
}

/// Fetch with Kafka's rule: the topics the connection may not read are answered
/// TOPIC_AUTHORIZATION_FAILED per partition, the others are read.
pub async fn fetch(
    shard: &Rc<Shard>,
    gate: &Gate<'_>,
    limits: (u32, u32, u32),
    topics: Vec<TopicEntries<FetchPartition>>,
) -> Outgoing {
    let (topics, denied) = split(gate, Operation::Read, topics);
    handlers::fetch::handle(shard, limits, topics, denied).await
}

/// ListOffsets with Kafka's rule: the topics the connection may not describe are answered
/// TOPIC_AUTHORIZATION_FAILED per partition, the others are looked up.
pub async fn list_offsets(
    shard: &Rc<Shard>,
    gate: &Gate<'_>,
    topics: Vec<TopicEntries<ListOffsetsPartition>>,
) -> Outgoing {
    let (topics, denied) = split(gate, Operation::Describe, topics);
    let mut results = if topics.is_empty() {
        Vec::new()
    } else {
        handlers::list_offsets::handle(shard, topics).await
    };
    results.extend(refused(denied, |p| ListOffsetsPartitionResult {
        partition: p.partition,
        error: ErrorCode::TopicAuthorizationFailed,
        offset: -1,
        timestamp: -1,
    }));
    Outgoing::body(&Response::ListOffsets { topics: results })
}

/// OffsetCommit with Kafka's rule (READ on the group was checked): the offsets of topics
/// the connection may not read are answered TOPIC_AUTHORIZATION_FAILED, the others are
/// committed.
pub async fn offset_commit(
    shard: &Rc<Shard>,
    gate: &Gate<'_>,
    mut commit: handlers::group_ops::Commit,
) -> Option<Outgoing> {
    let (topics, denied) = split(gate, Operation::Read, std::mem::take(&mut commit.topics));
    commit.topics = topics;
    let group = commit.group.clone();
    let committed = async {
        let mut results = if commit.topics.is_empty() {
            Vec::new()
        } else {
            handlers::group_ops::commit(shard, commit).await?
        };
        results.extend(refused(denied, |(p, _)| {
            (*p, ErrorCode::TopicAuthorizationFailed)
        }));
        Ok(results)
    };
    handlers::group_answer(shard, &group, committed, |topics| Response::OffsetCommit {
        topics,
    })
    .await
}

/// `topics` split by whether the connection may do `operation` on each: (allowed, denied).
type Split<P> = (Vec<TopicEntries<P>>, Vec<TopicEntries<P>>);
fn split<P>(gate: &Gate<'_>, operation: Operation, topics: Vec<TopicEntries<P>>) -> Split<P> {
    topics
        .into_iter()
        .partition(|t| gate.topic(operation, &t.topic))
}

/// The answer of each partition of `denied` topics: `answer(partition)`.
fn refused<P, R>(
    denied: Vec<TopicEntries<P>>,
    answer: impl Fn(&P) -> R,
) -> impl Iterator<Item = TopicEntries<R>> {
    denied.into_iter().map(move |entry| TopicEntries {
        partitions: entry.partitions.iter().map(&answer).collect(),
        topic: entry.topic,
    })
}

/// ListGroups as the connection may see it: every group with DESCRIBE on the cluster,
/// otherwise only the groups it may describe (Kafka's rule).
pub async fn list_groups(shard: &Rc<Shard>, gate: &Gate<'_>) -> Outgoing {
    let every = gate.cluster(Operation::Describe);
    let listed = handlers::group_ops::list(shard).await.map(|mut groups| {
        if !every {
            groups.retain(|(name, _)| gate.group(Operation::Describe, name));
        }
        groups
    });
    handlers::answer_or_error(listed, |groups| Response::ListGroups { groups })
}

/// OffsetFetch of every topic of `group` (DESCRIBE on the group was checked): the topics
/// the connection may not describe are left out, as Kafka's.
pub async fn offset_fetch_all(
    shard: &Rc<Shard>,
    gate: &Gate<'_>,
    group: String,
) -> Option<Outgoing> {
    let fetched = async {
        let mut topics =
            handlers::group_ops::fetch_offsets(shard, (group.clone(), Vec::new())).await?;
        topics.retain(|t| gate.topic(Operation::Describe, &t.topic));
        Ok(topics)
    };
    handlers::group_answer(shard, &group, fetched, |topics| Response::OffsetFetch {
        error: ErrorCode::None,
        topics,
    })
    .await
}

/// Whether `request` is an admin change (audited whether or not an authorizer is on).
pub fn is_admin(request: &Request) -> bool {
    match request {
        Request::CreateTopics { .. }
        | Request::DeleteTopics { .. }
        | Request::AlterConfigs { .. }
        | Request::ElectLeaders { .. }
        | Request::ReassignPartition { .. }
        | Request::DecommissionBroker { .. } => true,
        Request::Link(link) => link.action != LinkAction::Describe,
        Request::Security(request) => matches!(
            request,
            SecurityRequest::AlterUsers { .. }
                | SecurityRequest::CreateAcls { .. }
                | SecurityRequest::DeleteAcls { .. }
                | SecurityRequest::AlterQuotas { .. }
        ),
        _ => false,
    }
}
