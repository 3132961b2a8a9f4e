//! Replica fetch (API 40): a follower fetching the partitions it follows from this broker,
//! their leader. Each partition is served on its owning shard (`replication::replica_read`)
//! through the same long poll as consumers' fetches: when none has anything new the request
//! waits, up to its `max_wait_ms`, for any of their logs to grow. File data goes out with
//! zero copy.

use super::{Budget, Outgoing, Part};
use crate::shard::{long_poll, worth_sending, Read, Reply, Shard};
use bytes::BytesMut;
use keel_engine::ReadData;
use keel_protocol::api::{
    write_replica_fetch_result_header, ErrorCode, ReplicaFetch, ReplicaFetchResult,
};
use keel_protocol::wire::{EncodeError, WriteExt};
use std::rc::Rc;
use std::time::{Duration, Instant};

type Round = Vec<(String, Vec<(ReplicaFetchResult, ReadData)>)>;

pub async fn handle(shard: &Rc<Shard>, fetch: ReplicaFetch) -> Outgoing {
    if shard.cluster.is_none() {
        return Outgoing::error(ErrorCode::NotLeaderOrFollower);
    }
    let wait = fetch.max_wait_ms.min(shard.config.fetch_wait_ms_max);
    let deadline = Instant::now() + Duration::from_millis(u64::from(wait));
    let refused = super::entries_refused(shard, &fetch.topics);
    let reads = fetch
        .topics
        .iter()
        .filter(|_| refused.is_none())
        .flat_map(|entry| {
            entry.partitions.iter().map(|request| Read::Replica {
                topic: entry.topic.clone(),
                replica: fetch.replica_id,
                request: *request,
            })
        })
        .collect();
    let (replies, waited) = long_poll(shard, reads, deadline, |replies| {
        replies.iter().any(worth_sending)
    })
    .await;
    let missing = refused.unwrap_or(ErrorCode::Unknown);
    let answer: Round = super::regroup(
        &fetch.topics,
        replies,
        missing,
        |request, reply| match reply {
            Ok(Reply::ReplicaFetched(result, data)) => (result, data),
            other => (
                failed(request.partition, super::reply_error(other)),
                ReadData::Empty,
            ),
        },
    );
    super::records_answer(
        answer,
        |result| result.error,
        |round, parts, head| encode(round, fetch.max_bytes, parts, head),
        waited,
    )
}

fn failed(partition: u32, error: ErrorCode) -> ReplicaFetchResult {
    ReplicaFetchResult {
        partition,
        error,
        high_watermark: -1,
        log_start_offset: -1,
        log_end_offset: -1,
        diverging_epoch: -1,
        diverging_end_offset: -1,
        records: Default::default(),
    }
}

fn encode(
    round: Round,
    max_bytes: u32,
    parts: &mut Vec<Part>,
    head: &mut BytesMut,
) -> Result<(), EncodeError> {
    let mut budget = Budget::new(max_bytes);
    head.put_count("topics", round.len())?;
    for (topic, partitions) in round {
        head.put_string("topic", &topic)?;
        head.put_count("partitions", partitions.len())?;
        for (result, data) in partitions {
            let keep = budget.take(data.len());
            write_replica_fetch_result_header(
                head,
                &result,
                if keep { data.len() as usize } else { 0 },
            )?;
            if keep {
                Part::push_records(data, head, parts);
            }
        }
    }
    Ok(())
}
