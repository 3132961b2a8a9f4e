//! Fetch: reads every requested partition on its owning shard; long-polls until
//! `min_bytes` are available or `max_wait_ms` passes; file data is sent with zero copy.

use super::{Budget, Outgoing, Part};
use crate::shard::{long_poll, Read, Reply, Shard};
use bytes::BytesMut;
use keel_engine::ReadData;
use keel_protocol::api::{
    write_fetch_partition_header, ErrorCode, FetchPartition, FetchPartitionResult, TopicEntries,
};
use keel_protocol::wire::{EncodeError, WriteExt};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Per topic, each partition's result and data, in request order.
pub type Round = Vec<(String, Vec<(FetchPartitionResult, ReadData)>)>;

pub async fn handle(
    shard: &Rc<Shard>,
    max_wait_ms: u32,
    min_bytes: u32,
    max_bytes: u32,
    topics: Vec<TopicEntries<FetchPartition>>,
) -> Outgoing {
    let (round, waited) = gather(shard, max_wait_ms, min_bytes, &topics).await;
    super::records_answer(
        round,
        |result| result.error,
        |round, parts, head| encode_round(shard, round, max_bytes, parts, head),
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
        })
        .collect();
    let min_bytes = u64::from(min_bytes.max(1));
    let (replies, waited) = long_poll(shard, reads, deadline, |replies| {
        let mut bytes = 0;
        for reply in replies {
            match reply {
                Reply::Fetched(result, _) if result.error != ErrorCode::None => return true,
                Reply::Fetched(_, data) => bytes += data.len(),
                _ => return true,
            }
        }
        bytes >= min_bytes
    })
    .await;
    let missing = refused.unwrap_or(ErrorCode::Unknown);
    let round = super::regroup(topics, replies, missing, |request, reply| match reply {
        Ok(Reply::Fetched(result, data)) => (result, data),
        other => (
            failed(request.partition, super::reply_error(other)),
            ReadData::Empty,
        ),
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

/// Counts a partition's records out and appends them to `parts` after the headers written
/// so far (`head`, emptied).
pub fn push_records(
    shard: &Shard,
    topic: &str,
    partition: u32,
    data: ReadData,
    head: &mut BytesMut,
    parts: &mut Vec<Part>,
) {
    let len = data.len();
    shard.metrics.bytes_out.inc_by(len);
    shard
        .partition_metrics(topic, partition)
        .bytes_out
        .inc_by(len);
    Part::push_records(data, head, parts);
}

fn encode_round(
    shard: &Shard,
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
            let send_len = if keep { data.len() as usize } else { 0 };
            write_fetch_partition_header(head, &result, send_len)?;
            if keep {
                push_records(shard, &topic, result.partition, data, head, parts);
            }
        }
    }
    Ok(())
}
