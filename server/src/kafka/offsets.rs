//! Where a group's coordinator is, and committed offsets for Kafka clients: commits and
//! reads go through the native group handler, so both protocols share
//! `__consumer_offsets`.

use super::groups::not_here;
use super::{code, encode, text, Answer};
use crate::handlers::group_ops::{self, Commit};
use crate::security::gate::Gate;
use crate::shard::Shard;
use keel_auth::acl::Operation;
use keel_kafka::errors;
use keel_kafka::frame::Header;
use keel_kafka::kafka_protocol::messages::{
    find_coordinator_response::Coordinator,
    offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic},
    offset_fetch_response::{
        OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
        OffsetFetchResponseTopic, OffsetFetchResponseTopics,
    },
    BrokerId, FindCoordinatorResponse, GroupId, OffsetCommitResponse, OffsetFetchResponse,
    TopicName,
};
use keel_kafka::requests;
use keel_protocol::api::TopicEntries;
use std::rc::Rc;

pub async fn find_coordinator(
    shard: &Rc<Shard>,
    header: &Header,
    gate: &Gate<'_>,
    find: requests::FindCoordinator,
) -> Answer {
    let (brokers, _) = super::data::brokers(shard, gate.session().listener);
    let mut coordinators = Vec::with_capacity(find.keys.len());
    for key in find.keys {
        let found: Result<(u32, String, u16), i16> = if find.key_type != 0 {
            Err(errors::TRANSACTIONS_UNSUPPORTED)
        } else if !gate.group(Operation::Describe, &key) {
            Err(errors::GROUP_AUTHORIZATION_FAILED)
        } else if shard.cluster.is_some() {
            match crate::handlers::cluster_admin::coordinator(shard, &key).await {
                Ok((node, _)) => brokers
                    .iter()
                    .find(|(id, ..)| *id == node)
                    .cloned()
                    .ok_or(errors::COORDINATOR_NOT_AVAILABLE),
                Err(error) => Err(code(error)),
            }
        } else {
            brokers
                .first()
                .cloned()
                .ok_or(errors::COORDINATOR_NOT_AVAILABLE)
        };
        let coordinator = Coordinator::default().with_key(text(key));
        coordinators.push(match found {
            Ok((node, host, port)) => coordinator
                .with_node_id(BrokerId(node as i32))
                .with_host(text(host))
                .with_port(i32::from(port)),
            Err(error) => coordinator
                .with_error_code(error)
                .with_node_id(BrokerId(-1))
                .with_port(-1),
        });
    }
    let response = if header.api_version >= 4 {
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        let first = coordinators.into_iter().next().unwrap_or_default();
        FindCoordinatorResponse::default()
            .with_error_code(first.error_code)
            .with_node_id(first.node_id)
            .with_host(first.host)
            .with_port(first.port)
    };
    encode(header, &response)
}

pub async fn offset_commit(
    shard: &Rc<Shard>,
    header: &Header,
    gate: &Gate<'_>,
    commit: requests::OffsetCommit,
) -> Answer {
    let refused_all = |error: i16, topics: &[(String, Vec<(i32, i64)>)]| {
        topics
            .iter()
            .map(|(topic, partitions)| {
                OffsetCommitResponseTopic::default()
                    .with_name(TopicName(text(topic.clone())))
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|(p, _)| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(*p)
                                    .with_error_code(error)
                            })
                            .collect(),
                    )
            })
            .collect::<Vec<_>>()
    };
    if let Some(error) = not_here(shard, gate, Operation::Read, &commit.group).await {
        return encode(
            header,
            &OffsetCommitResponse::default().with_topics(refused_all(error, &commit.topics)),
        );
    }
    // Offsets of topics this connection may not read are not committed (their entries
    // answer TOPIC_AUTHORIZATION_FAILED below).
    let readable = |topic: &str| gate.topic(Operation::Read, topic);
    let topics = commit
        .topics
        .iter()
        .filter(|(topic, _)| readable(topic))
        .map(|(topic, partitions)| TopicEntries {
            topic: topic.clone(),
            partitions: partitions
                .iter()
                .filter_map(|(p, offset)| Some((u32::try_from(*p).ok()?, *offset)))
                .collect(),
        })
        .collect();
    let request = Commit {
        group: commit.group,
        generation: commit.generation,
        member_id: commit.member_id,
        topics,
    };
    let topics = match group_ops::commit(shard, request).await {
        Ok(topics) => topics,
        Err(error) => {
            return encode(
                header,
                &OffsetCommitResponse::default()
                    .with_topics(refused_all(code(error), &commit.topics)),
            );
        }
    };
    let (allowed, denied): (Vec<_>, Vec<_>) = commit
        .topics
        .into_iter()
        .partition(|(topic, _)| readable(topic));
    let mut response = refused_all(errors::UNKNOWN_TOPIC_OR_PARTITION, &allowed);
    for (answer, entry) in response.iter_mut().zip(&topics) {
        for partition in answer.partitions.iter_mut() {
            if let Some((_, error)) = entry
                .partitions
                .iter()
                .find(|(p, _)| i64::from(*p) == i64::from(partition.partition_index))
            {
                partition.error_code = code(*error);
            }
        }
    }
    response.extend(refused_all(errors::TOPIC_AUTHORIZATION_FAILED, &denied));
    encode(
        header,
        &OffsetCommitResponse::default().with_topics(response),
    )
}

/// One topic of an OffsetFetch answer: its name, the error of each partition, and each
/// partition's committed offset.
type Fetched = (String, i16, Vec<(u32, i64)>);

pub async fn offset_fetch(
    shard: &Rc<Shard>,
    header: &Header,
    gate: &Gate<'_>,
    fetch: requests::OffsetFetch,
) -> Answer {
    let mut groups = Vec::with_capacity(fetch.groups.len());
    for group in fetch.groups {
        let answer = match not_here(shard, gate, Operation::Describe, &group.group).await {
            Some(error) => Err(error),
            None => fetched(shard, gate, &group.group, group.topics.clone()).await,
        };
        groups.push((group.group, answer));
    }
    let response = if header.api_version >= 8 {
        OffsetFetchResponse::default().with_groups(
            groups
                .into_iter()
                .map(|(group, answer)| {
                    let out =
                        OffsetFetchResponseGroup::default().with_group_id(GroupId(text(group)));
                    match answer {
                        Err(error) => out.with_error_code(error),
                        Ok(topics) => out.with_topics(
                            topics
                                .into_iter()
                                .map(|(topic, error, partitions)| {
                                    OffsetFetchResponseTopics::default()
                                        .with_name(TopicName(text(topic)))
                                        .with_partitions(
                                            partitions
                                                .into_iter()
                                                .map(|(p, offset)| {
                                                    OffsetFetchResponsePartitions::default()
                                                        .with_partition_index(p as i32)
                                                        .with_committed_offset(offset)
                                                        .with_committed_leader_epoch(-1)
                                                        .with_metadata(Some(text("")))
                                                        .with_error_code(error)
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        ),
                    }
                })
                .collect(),
        )
    } else {
        let (_, answer) = groups
            .into_iter()
            .next()
            .unwrap_or((String::new(), Ok(Vec::new())));
        match answer {
            // Version 1 has no response-level error: it answers with no offsets.
            Err(_) if header.api_version < 2 => OffsetFetchResponse::default(),
            Err(error) => OffsetFetchResponse::default().with_error_code(error),
            Ok(topics) => OffsetFetchResponse::default().with_topics(
                topics
                    .into_iter()
                    .map(|(topic, error, partitions)| {
                        OffsetFetchResponseTopic::default()
                            .with_name(TopicName(text(topic)))
                            .with_partitions(
                                partitions
                                    .into_iter()
                                    .map(|(p, offset)| {
                                        OffsetFetchResponsePartition::default()
                                            .with_partition_index(p as i32)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(-1)
                                            .with_metadata(Some(text("")))
                                            .with_error_code(error)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        }
    };
    encode(header, &response)
}

/// The committed offsets of `group` this connection may see, Kafka's rule: of named topics
/// (`Some`), those it may not describe answer TOPIC_AUTHORIZATION_FAILED per partition
/// (nothing of them is looked up); asked for every topic (`None`), they are left out.
async fn fetched(
    shard: &Rc<Shard>,
    gate: &Gate<'_>,
    group: &str,
    named: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Vec<Fetched>, i16> {
    let describable = |topic: &str| gate.topic(Operation::Describe, topic);
    let asked = named
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(topic, partitions)| {
            let partitions = partitions
                .into_iter()
                .filter_map(|p| u32::try_from(p).ok())
                .collect();
            TopicEntries { topic, partitions }
        });
    let (asked, denied): (Vec<TopicEntries<u32>>, Vec<TopicEntries<u32>>) =
        asked.partition(|t| describable(&t.topic));
    // An empty list asks for every topic: with only denied topics named, nothing is.
    let mut out: Vec<Fetched> = if named.is_some() && asked.is_empty() {
        Vec::new()
    } else {
        group_ops::fetch_offsets(shard, (group.to_owned(), asked))
            .await
            .map_err(code)?
            .into_iter()
            .filter(|t| describable(&t.topic))
            .map(|t| (t.topic, errors::NONE, t.partitions))
            .collect()
    };
    out.extend(denied.into_iter().map(|t| {
        let partitions = t.partitions.into_iter().map(|p| (p, -1)).collect();
        (t.topic, errors::TOPIC_AUTHORIZATION_FAILED, partitions)
    }));
    Ok(out)
}
