//! Replica fetch (API 40): a follower fetching the partitions it follows from this broker,
//! their leader. Each partition is served on its owning shard (`replication::replica_read`)
//! through the same long poll as consumers' fetches: when none has anything new the request
//! waits, up to its `max_wait_ms`, for any of their logs to grow. File data goes out with
//! zero copy.

use super::Outgoing;
use crate::shard::{long_poll, Enough, Read, ReplicaFetched, Shard};
use keel_engine::ReadData;
use keel_protocol::api::{ErrorCode, ReplicaFetch, ReplicaFetchResult};
use std::rc::Rc;
use std::time::{Duration, Instant};

type Round = super::records::Round<ReplicaFetchResult>;

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
        });
    let count = super::entries_to_run(refused, &fetch.topics);
    let (replies, waited) =
        long_poll::<ReplicaFetched>(shard, count, reads, deadline, Enough::Anything).await;
    let missing = refused.unwrap_or(ErrorCode::Unknown);
    let answer: Round = super::regroup(&fetch.topics, replies, missing, |request, reply| {
        reply.unwrap_or_else(|error| (failed(request.partition, error), ReadData::Empty))
    });
    super::records_answer(answer, fetch.max_bytes, |_, _, _| {}, waited)
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
