//! OffsetForLeaderEpoch (KIP-101, KIP-320): where a leader epoch ends in a partition's log.
//! Clients ask it to check their position after a leader change; a cluster link asks it to
//! find where a returning cluster's history parts from this one's (failback). Answered on
//! the partition's leader, with Kafka's fencing of the current leader epoch.

use super::{code, encode, text, Answer};
use crate::security::gate::Gate;
use crate::shard::{owner, Shard};
use keel_auth::acl::Operation;
use keel_kafka::frame::Header;
use keel_kafka::kafka_protocol::messages::{
    offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult},
    OffsetForLeaderEpochResponse, TopicName,
};
use keel_kafka::requests::OffsetForLeaderEpoch;
use keel_protocol::api::ErrorCode;
use std::rc::Rc;

pub async fn offset_for_leader_epoch(
    shard: &Rc<Shard>,
    header: &Header,
    gate: &Gate<'_>,
    request: OffsetForLeaderEpoch,
) -> Answer {
    let mut topics = Vec::with_capacity(request.topics.len());
    for (topic, partitions) in request.topics {
        let describable = gate.topic(Operation::Describe, &topic);
        let mut results = Vec::with_capacity(partitions.len());
        for (partition, current, epoch) in partitions {
            let outcome = match u32::try_from(partition) {
                _ if !describable => Err(ErrorCode::TopicAuthorizationFailed),
                Ok(p) => end_of_epoch(shard, &topic, p, (current, epoch)).await,
                Err(_) => Err(ErrorCode::UnknownTopicOrPartition),
            };
            let ((leader_epoch, end_offset), error) = match outcome {
                Ok(found) => (found, 0),
                Err(error) => ((-1, -1), code(error)),
            };
            results.push(
                EpochEndOffset::default()
                    .with_partition(partition)
                    .with_error_code(error)
                    .with_leader_epoch(leader_epoch)
                    .with_end_offset(end_offset),
            );
        }
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(TopicName(text(topic)))
                .with_partitions(results),
        );
    }
    encode(
        header,
        &OffsetForLeaderEpochResponse::default().with_topics(topics),
    )
}

/// The largest epoch at most `epoch` in the partition's log and where it ends; (-1, -1)
/// when the log holds nothing at or before it.
async fn end_of_epoch(
    shard: &Rc<Shard>,
    topic: &str,
    partition: u32,
    (current, epoch): (i32, i32),
) -> Result<(i32, i64), ErrorCode> {
    let known = shard
        .registry
        .read()
        .get(topic)
        .is_some_and(|t| partition < t.partitions);
    if !known {
        return Err(ErrorCode::UnknownTopicOrPartition);
    }
    let owner = owner(topic, partition, shard.config.shards);
    let topic = topic.to_owned();
    let answer = shard
        .run_on(owner, "offset_for_leader_epoch", move |shard| async move {
            if let Some(view) = &shard.cluster {
                let leader_epoch = view.leads(&topic, partition)? as i64;
                let current = i64::from(current);
                if current >= 0 && current < leader_epoch {
                    return Err(ErrorCode::FencedLeaderEpoch);
                }
                if current > leader_epoch {
                    return Err(ErrorCode::UnknownLeaderEpoch);
                }
            }
            let log = shard
                .log_handle(&topic, partition)
                .ok_or(ErrorCode::UnknownTopicOrPartition)?;
            Ok(log.epoch_end_offset(epoch).unwrap_or((-1, -1)))
        })
        .await;
    answer.map_err(|(error, _)| error)?
}
