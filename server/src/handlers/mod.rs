//! One handler per request kind. Each turns a decoded request into per-partition jobs for
//! the owning shards and merges the replies into a response.

pub(crate) mod admin;
pub(crate) mod cluster_admin;
pub mod coordination;
pub(crate) mod fetch;
pub mod group_ops;
pub mod groups;
pub(crate) mod list_offsets;
pub(crate) mod metadata;
pub(crate) mod produce;
mod records;
mod replica_fetch;

pub use records::{records_answer, Budget};

use crate::shard::Shard;
use bytes::{Bytes, BytesMut};
use keel_engine::ReadData;
use keel_protocol::api::{ApiKey, ErrorCode, Request, Response};
use std::rc::Rc;

/// A piece of a response body, written as it is (records are never copied into one).
pub type Part = Bytes;

/// Appends a partition's records after the headers written so far (`head`, emptied).
pub fn push_records(data: ReadData, head: &mut BytesMut, parts: &mut Vec<Part>) {
    parts.push(head.split().freeze());
    match data {
        ReadData::Memory(chunks) | ReadData::Disk(chunks) => parts.extend(chunks),
        ReadData::Empty => {}
    }
}

/// A fetch response's byte budget (`max_bytes`, the same for consumers, Kafka clients and
/// followers): a partition's records go in while they fit, and the first non-empty
/// partition always goes in whole, so a batch larger than the budget still gets through.
/// The error every entry of a request gets when it names more partitions than
/// `request_partitions_max` (then no shard is asked anything), or `None` when it may be
/// served.
pub fn entries_refused<T>(
    shard: &Shard,
    topics: &[keel_protocol::api::TopicEntries<T>],
) -> Option<ErrorCode> {
    (entry_count(topics) > shard.config.request_partitions_max).then_some(ErrorCode::InvalidRequest)
}

/// The number of partition entries of a request.
fn entry_count<T>(topics: &[keel_protocol::api::TopicEntries<T>]) -> usize {
    topics.iter().map(|entry| entry.partitions.len()).sum()
}

/// The number of a request's entries that become jobs: none when it was refused.
pub fn entries_to_run<T>(
    refused: Option<ErrorCode>,
    topics: &[keel_protocol::api::TopicEntries<T>],
) -> usize {
    if refused.is_some() {
        0
    } else {
        entry_count(topics)
    }
}

/// The replies to a request's entries (one per entry, in request order) grouped by topic
/// again, each made into its answer by `answer`; entries past the last reply (none was
/// asked: a refused request) get `missing`.
pub fn regroup<P, T, R>(
    topics: &[keel_protocol::api::TopicEntries<P>],
    replies: Vec<Result<T, ErrorCode>>,
    missing: ErrorCode,
    mut answer: impl FnMut(&P, Result<T, ErrorCode>) -> R,
) -> Vec<(String, Vec<R>)> {
    let mut replies = replies.into_iter();
    topics
        .iter()
        .map(|entry| {
            let partitions = entry
                .partitions
                .iter()
                .map(|request| answer(request, replies.next().unwrap_or(Err(missing))))
                .collect();
            (entry.topic.clone(), partitions)
        })
        .collect()
}

/// A response ready to send.
pub struct Outgoing {
    /// Frame-level error (0 for a normal response).
    pub error_code: ErrorCode,
    /// The body, in order.
    pub parts: Vec<Part>,
    /// Every distinct error the response reports (frame, topic or partition level), for
    /// the error counter.
    pub errors: Vec<ErrorCode>,
    /// Time spent parked waiting for data (long polling), apart from handling time.
    pub waited: std::time::Duration,
}

impl Outgoing {
    /// The encoded response; a response that cannot be encoded (a value longer than the
    /// wire allows, which entry checks should have refused) becomes an error frame naming
    /// nothing secret, and is logged with the field and limit.
    pub(crate) fn body(response: &Response) -> Outgoing {
        let mut body = BytesMut::new();
        match response.encode(&mut body) {
            Ok(()) => Outgoing {
                error_code: ErrorCode::None,
                parts: vec![body.freeze()],
                errors: response_errors(response),
                waited: std::time::Duration::ZERO,
            },
            Err(e) => {
                tracing::warn!(error = %e, "response cannot be encoded; answering InvalidRequest");
                Outgoing::error(ErrorCode::InvalidRequest)
            }
        }
    }

    /// A frame-level error with an empty body.
    pub fn error(error_code: ErrorCode) -> Outgoing {
        Outgoing {
            error_code,
            parts: Vec::new(),
            errors: vec![error_code],
            waited: std::time::Duration::ZERO,
        }
    }
}

/// Handles one request; `None` when no response is due (produce with acks=0).
pub async fn handle(shard: &Rc<Shard>, request: Request) -> Option<Outgoing> {
    match request {
        Request::ApiVersions => Some(Outgoing::body(&Response::ApiVersions {
            apis: ApiKey::ALL
                .iter()
                .map(|(key, min, max)| (*key as u16, *min, *max))
                .collect(),
        })),
        Request::Metadata { topics } => {
            let (brokers, topics) =
                metadata::handle(shard, topics, metadata::Offsets::Included).await;
            Some(Outgoing::body(&Response::Metadata { brokers, topics }))
        }
        Request::CreateTopics { topics } => {
            let topics = admin::create(shard, topics).await;
            Some(Outgoing::body(&Response::CreateTopics { topics }))
        }
        Request::DeleteTopics { topics } => {
            let topics = admin::delete(shard, topics).await;
            Some(Outgoing::body(&Response::DeleteTopics { topics }))
        }
        Request::DescribeConfigs { topics } => {
            Some(Outgoing::body(&admin::describe_configs(shard, topics)))
        }
        Request::AlterConfigs { topics } => {
            let topics = admin::alter_configs(shard, topics).await;
            Some(Outgoing::body(&Response::AlterConfigs { topics }))
        }
        Request::Produce {
            acks,
            timeout_ms,
            topics,
        } => {
            let topics = produce::handle(shard, acks, timeout_ms, topics).await;
            (acks != 0).then(|| Outgoing::body(&Response::Produce { topics }))
        }
        Request::Fetch {
            max_wait_ms,
            min_bytes,
            max_bytes,
            topics,
        } => {
            let limits = (max_wait_ms, min_bytes, max_bytes);
            Some(fetch::handle(shard, limits, topics, Vec::new()).await)
        }
        Request::ListOffsets { topics } => {
            let topics = list_offsets::handle(shard, topics).await;
            Some(Outgoing::body(&Response::ListOffsets { topics }))
        }
        Request::DescribeCluster => Some(Outgoing::body(&describe_cluster(shard))),
        Request::ReplicaFetch(fetch) => Some(replica_fetch::handle(shard, fetch).await),
        // Served by the connection (they need its session): native_security.rs.
        Request::Security(_) => Some(Outgoing::error(ErrorCode::InvalidRequest)),
        Request::Link(request) => Some(Outgoing::body(&Response::Link(
            crate::mirror::admin::handle(shard, request).await,
        ))),
        Request::ElectLeaders { topic, partition } => {
            let result = cluster_admin::elect_leaders(shard, topic, partition).await;
            Some(Outgoing::body(&Response::ElectLeaders {
                topics: vec![result],
            }))
        }
        Request::ReassignPartition {
            topic,
            partition,
            replicas,
        } => {
            let result = cluster_admin::reassign(shard, (topic, partition), replicas).await;
            Some(Outgoing::body(&Response::ReassignPartition {
                topics: vec![result],
            }))
        }
        Request::DecommissionBroker { broker } => {
            let result = cluster_admin::decommission(shard, broker).await;
            Some(Outgoing::body(&Response::DecommissionBroker {
                topics: vec![result],
            }))
        }
        Request::InitProducerId => {
            let (error, producer_id) = match crate::producer_ids::next(shard).await {
                Ok(id) => (ErrorCode::None, id),
                Err(error) => (error, -1),
            };
            Some(Outgoing::body(&Response::InitProducerId {
                error,
                producer_id,
                producer_epoch: 0,
            }))
        }
        Request::FindCoordinator { group } => Some(find_coordinator(shard, &group).await),
        Request::JoinGroup(join) => {
            let group = join.group.clone();
            let joined = group_ops::join(shard, join);
            group_answer(shard, &group, joined, |joined| Response::JoinGroup {
                error: joined.error,
                generation: joined.generation,
                member_id: joined.member_id,
                members: joined.members,
            })
            .await
        }
        Request::SyncGroup {
            group,
            generation,
            member_id,
        } => {
            let synced = group_ops::sync(shard, (group.clone(), generation, member_id));
            group_answer(shard, &group, synced, |synced| match synced {
                Ok(assignment) => Response::SyncGroup {
                    error: ErrorCode::None,
                    assignment,
                },
                Err(error) => Response::SyncGroup {
                    error,
                    assignment: Vec::new(),
                },
            })
            .await
        }
        Request::Heartbeat {
            group,
            generation,
            member_id,
        } => {
            let beat = group_ops::heartbeat(shard, (group.clone(), generation, member_id));
            group_answer(shard, &group, beat, |error| Response::Heartbeat { error }).await
        }
        Request::LeaveGroup { group, member_id } => {
            let left = group_ops::leave(shard, (group.clone(), member_id));
            group_answer(shard, &group, left, |error| Response::LeaveGroup { error }).await
        }
        Request::OffsetCommit {
            group,
            generation,
            member_id,
            topics,
        } => {
            let commit = group_ops::Commit {
                group: group.clone(),
                generation,
                member_id,
                topics,
            };
            let committed = group_ops::commit(shard, commit);
            group_answer(shard, &group, committed, |topics| Response::OffsetCommit {
                topics,
            })
            .await
        }
        Request::OffsetFetch { group, topics } => {
            let fetched = group_ops::fetch_offsets(shard, (group.clone(), topics));
            group_answer(shard, &group, fetched, |topics| Response::OffsetFetch {
                error: ErrorCode::None,
                topics,
            })
            .await
        }
        Request::ListGroups => Some(answer_or_error(group_ops::list(shard).await, |groups| {
            Response::ListGroups { groups }
        })),
        Request::DescribeGroups { groups } => Some(answer_or_error(
            group_ops::describe(shard, groups).await,
            |groups| Response::DescribeGroups { groups },
        )),
    }
}

/// The response a typed service's answer makes, or its error as a frame-level error.
pub(crate) fn answer_or_error<T>(
    answer: Result<T, ErrorCode>,
    respond: impl FnOnce(T) -> Response,
) -> Outgoing {
    match answer {
        Ok(answer) => Outgoing::body(&respond(answer)),
        Err(error) => Outgoing::error(error),
    }
}

/// A request about one group: in a cluster refused with NotCoordinator when another broker
/// coordinates it, else served by `call` and answered with `respond`.
pub(crate) async fn group_answer<T>(
    shard: &Rc<Shard>,
    group: &str,
    call: impl std::future::Future<Output = Result<T, ErrorCode>>,
    respond: impl FnOnce(T) -> Response,
) -> Option<Outgoing> {
    if shard.cluster.is_some() {
        match cluster_admin::coordinator(shard, group).await {
            Ok((node_id, _)) if node_id == shard.config.node_id => {}
            Ok(_) => return Some(Outgoing::error(ErrorCode::NotCoordinator)),
            Err(error) => return Some(Outgoing::error(error)),
        }
    }
    Some(answer_or_error(call.await, respond))
}

/// FindCoordinator: in a cluster the broker leading the group's offsets partition, on a
/// single node this broker.
async fn find_coordinator(shard: &Rc<Shard>, group: &str) -> Outgoing {
    let found = match &shard.cluster {
        None => Ok((shard.config.node_id, shard.config.listen)),
        Some(_) => cluster_admin::coordinator(shard, group)
            .await
            .and_then(|(node_id, address)| {
                let address = address
                    .parse()
                    .map_err(|_| ErrorCode::CoordinatorNotAvailable)?;
                Ok((node_id, address))
            }),
    };
    let (error, broker) = match found {
        Ok((node_id, address)) => (
            ErrorCode::None,
            keel_protocol::api::BrokerInfo {
                node_id,
                host: address.ip().to_string(),
                port: address.port(),
            },
        ),
        Err(error) => (
            error,
            keel_protocol::api::BrokerInfo {
                node_id: 0,
                host: String::new(),
                port: 0,
            },
        ),
    };
    Outgoing::body(&Response::FindCoordinator { error, broker })
}

/// The cluster as this broker knows it; a single-node broker is its own quorum of one.
fn describe_cluster(shard: &Rc<Shard>) -> Response {
    use keel_protocol::api::ClusterBroker;
    let Some(view) = &shard.cluster else {
        let node_id = shard.config.node_id;
        return Response::DescribeCluster {
            error: ErrorCode::None,
            controller_leader: i64::from(node_id),
            controller_term: 0,
            voters: vec![node_id],
            metadata_offset: 0,
            brokers: vec![ClusterBroker {
                node_id,
                address: shard.config.listen.to_string(),
                incarnation: 0,
                fenced: false,
            }],
        };
    };
    let image = view.image();
    let status = view.controller();
    let voters = shard
        .config
        .cluster
        .as_ref()
        .map(|c| c.voters.iter().map(|(id, _)| *id as u32).collect())
        .unwrap_or_default();
    Response::DescribeCluster {
        error: ErrorCode::None,
        controller_leader: status.leader.map_or(-1, |l| l as i64),
        controller_term: status.term,
        voters,
        metadata_offset: image.offset(),
        brokers: image
            .brokers()
            .iter()
            .map(|(id, b)| ClusterBroker {
                node_id: *id,
                address: crate::cluster::native_address(&b.address).to_owned(),
                incarnation: b.incarnation,
                fenced: b.fenced,
            })
            .collect(),
    }
}

/// Every distinct error a response reports, at any level.
fn response_errors(response: &Response) -> Vec<ErrorCode> {
    // Nothing is allocated for a response without errors (the common case).
    let mut errors = Vec::new();
    let mut note = |error: ErrorCode| {
        if error != ErrorCode::None && !errors.contains(&error) {
            errors.push(error);
        }
    };
    match response {
        Response::ApiVersions { .. } | Response::ListGroups { .. } => {}
        Response::Metadata { topics, .. } => topics.iter().for_each(|t| {
            note(t.error);
            t.partitions.iter().for_each(|p| note(p.error));
        }),
        Response::CreateTopics { topics }
        | Response::DeleteTopics { topics }
        | Response::AlterConfigs { topics }
        | Response::ElectLeaders { topics }
        | Response::ReassignPartition { topics }
        | Response::DecommissionBroker { topics } => topics.iter().for_each(|t| note(t.error)),
        Response::DescribeConfigs { topics } => topics.iter().for_each(|t| note(t.1)),
        Response::Produce { topics } => topics
            .iter()
            .for_each(|t| t.partitions.iter().for_each(|p| note(p.error))),
        Response::Fetch { topics } => topics
            .iter()
            .for_each(|t| t.partitions.iter().for_each(|p| note(p.error))),
        Response::ReplicaFetch { topics } => topics
            .iter()
            .for_each(|t| t.partitions.iter().for_each(|p| note(p.error))),
        Response::ListOffsets { topics } => topics
            .iter()
            .for_each(|t| t.partitions.iter().for_each(|p| note(p.error))),
        Response::OffsetCommit { topics } => topics
            .iter()
            .for_each(|t| t.partitions.iter().for_each(|p| note(p.1))),
        Response::DescribeGroups { groups } => groups.iter().for_each(|g| note(g.error)),
        Response::FindCoordinator { error, .. }
        | Response::JoinGroup { error, .. }
        | Response::SyncGroup { error, .. }
        | Response::Heartbeat { error }
        | Response::LeaveGroup { error }
        | Response::OffsetFetch { error, .. }
        | Response::InitProducerId { error, .. }
        | Response::DescribeCluster { error, .. } => note(*error),
        Response::Security(response) => response.errors().into_iter().for_each(note),
        Response::Link(response) => note(response.error),
    }
    errors
}
