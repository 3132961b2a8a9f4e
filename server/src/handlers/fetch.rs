//! Fetch: reads every requested partition on its owning shard; long-polls until
//! `min_bytes` are available or `max_wait_ms` passes; file data is sent with zero copy.

use super::Outgoing;
use crate::shard::{long_poll, Enough, Fetched, Read, Shard};
use keel_engine::ReadData;
use keel_protocol::api::{ErrorCode, FetchPartition, FetchPartitionResult, TopicEntries};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Per topic, each partition's result and data, in request order.
pub type Round = super::records::Round<FetchPartitionResult>;

/// Answers a fetch of `topics`; the partitions of `refused` topics (the connection may not
/// read them) are answered `TopicAuthorizationFailed`, nothing read.
pub async fn handle(
    shard: &Rc<Shard>,
    (max_wait_ms, min_bytes, max_bytes): (u32, u32, u32),
    topics: Vec<TopicEntries<FetchPartition>>,
    refused: Vec<TopicEntries<FetchPartition>>,
) -> Outgoing {
    let (mut round, waited) = if topics.is_empty() && !refused.is_empty() {
        (Vec::new(), Duration::ZERO)
    } else {
        gather(shard, max_wait_ms, min_bytes, &topics).await
    };
    round.extend(refused.into_iter().map(|entry| {
        let partitions = entry
            .partitions
            .iter()
            .map(|p| {
                let error = ErrorCode::TopicAuthorizationFailed;
                (failed(p.partition, error), ReadData::Empty)
            })
            .collect();
        (entry.topic, partitions)
    }));
    super::records_answer(
        round,
        max_bytes,
        |topic, partition, bytes| count_out(shard, topic, partition, bytes),
        waited,
    )
}

/// Reads every partition, long-polling until `min_bytes` are there, an error is, or
/// `max_wait_ms` passed; returns what was read, per topic in request order, and the time
/// spent parked.
pub async fn gather(
    shard: &Rc<Shard>,
    max_wait_ms: u32,
    min_bytes: u32,
    topics: &[TopicEntries<FetchPartition>],
) -> (Round, Duration) {
    let max_wait_ms = max_wait_ms.min(shard.config.fetch_wait_ms_max);
    let deadline = Instant::now() + Duration::from_millis(u64::from(max_wait_ms));
    let refused = super::entries_refused(shard, topics);
    let reads = topics
        .iter()
        .filter(|_| refused.is_none())
        .flat_map(|entry| {
            entry.partitions.iter().map(|request| Read::Fetch {
                topic: entry.topic.clone(),
                partition: request.partition,
                offset: request.fetch_offset,
                max_bytes: request.partition_max_bytes,
            })
        });
    let count = super::entries_to_run(refused, topics);
    let enough = Enough::Bytes(u64::from(min_bytes.max(1)));
    let (replies, waited) = long_poll::<Fetched>(shard, count, reads, deadline, enough).await;
    let missing = refused.unwrap_or(ErrorCode::Unknown);
    let round = super::regroup(topics, replies, missing, |request, reply| {
        reply.unwrap_or_else(|error| (failed(request.partition, error), ReadData::Empty))
    });
    (round, waited)
}

fn failed(partition: u32, error: ErrorCode) -> FetchPartitionResult {
    FetchPartitionResult {
        partition,
        error,
        high_watermark: -1,
        log_start_offset: -1,
        records: Default::default(),
    }
}

/// Counts `bytes` of a partition's records out (broker-wide and per partition).
pub fn count_out(shard: &Shard, topic: &str, partition: u32, bytes: u64) {
    shard.metrics.bytes_out.inc_by(bytes);
    shard
        .partition_metrics(topic, partition)
        .bytes_out
        .inc_by(bytes);
}
