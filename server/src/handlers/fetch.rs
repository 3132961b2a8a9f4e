//! Fetch: reads every requested partition on its owning shard; long-polls until
//! `min_bytes` are available or `max_wait_ms` passes; file data is sent with zero copy.

use super::{Outgoing, Part};
use crate::shard::{owner, Job, Reply, Shard};
use bytes::BytesMut;
use keel_engine::ReadData;
use keel_protocol::api::{
    write_fetch_partition_header, ErrorCode, FetchPartition, FetchPartitionResult, TopicEntries,
};
use keel_protocol::wire::{EncodeError, WriteExt};
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Partitions of one fetch that get a long-poll waiter each.
const WAIT_PARTITIONS_MAX: usize = 256;
/// How often a fetch listing more partitions than that re-reads them while it waits.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Per topic, each partition's result and data, in request order.
pub type Round = Vec<(String, Vec<(FetchPartitionResult, ReadData)>)>;

async fn fetch_round(shard: &Rc<Shard>, topics: &[TopicEntries<FetchPartition>]) -> Round {
    let mut round = Vec::with_capacity(topics.len());
    for entry in topics {
        let mut tasks = Vec::with_capacity(entry.partitions.len());
        for request in &entry.partitions {
            let (shard, topic, request) = (shard.clone(), entry.topic.clone(), *request);
            tasks.push(glommio::spawn_local(async move {
                let owner = owner(&topic, request.partition, shard.shards());
                let job = Job::Fetch {
                    topic,
                    partition: request.partition,
                    offset: request.fetch_offset,
                    max_bytes: request.partition_max_bytes,
                };
                match shard.call(owner, job).await {
                    Reply::Fetched(result, data) => (result, data),
                    _ => (
                        FetchPartitionResult {
                            partition: request.partition,
                            error: ErrorCode::Unknown,
                            high_watermark: -1,
                            log_start_offset: -1,
                            records: Default::default(),
                        },
                        ReadData::Empty,
                    ),
                }
            }));
        }
        let mut partitions = Vec::with_capacity(tasks.len());
        for task in tasks {
            partitions.push(task.await);
        }
        round.push((entry.topic.clone(), partitions));
    }
    round
}

fn round_bytes(round: &Round) -> u64 {
    round
        .iter()
        .flat_map(|(_, p)| p.iter())
        .map(|(_, data)| data.len())
        .sum()
}

fn round_has_error(round: &Round) -> bool {
    round
        .iter()
        .flat_map(|(_, p)| p.iter())
        .any(|(result, _)| result.error != ErrorCode::None)
}

pub async fn handle(
    shard: &Rc<Shard>,
    max_wait_ms: u32,
    min_bytes: u32,
    max_bytes: u32,
    topics: Vec<TopicEntries<FetchPartition>>,
) -> Outgoing {
    let (round, waited) = gather(shard, max_wait_ms, min_bytes, &topics).await;
    // Encode: headers in memory, records from memory or as file ranges. The response-level
    // budget keeps at least the first non-empty partition whole.
    let mut parts = Vec::new();
    let mut head = BytesMut::new();
    // Topic names were checked where they entered (at most 249 bytes), and counts are
    // bounded by the request's, so this encoding cannot fail; if it did, the answer is an
    // error frame, never a panic.
    let mut errors: Vec<ErrorCode> = round
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(result, _)| result.error))
        .filter(|e| *e != ErrorCode::None)
        .collect();
    errors.sort_by_key(|e| *e as u16);
    errors.dedup();
    if let Err(e) = encode_round(shard, round, max_bytes, &mut parts, &mut head) {
        tracing::warn!(error = %e, "fetch response cannot be encoded");
        return Outgoing::error(ErrorCode::InvalidRequest);
    }
    if !head.is_empty() {
        parts.push(Part::Bytes(head.freeze()));
    }
    Outgoing {
        error_code: ErrorCode::None,
        parts,
        errors,
        waited,
    }
}

/// Reads every partition, long-polling until `min_bytes` are there, an error is, or
/// `max_wait_ms` passed; returns the last round read and the time spent parked.
pub async fn gather(
    shard: &Rc<Shard>,
    max_wait_ms: u32,
    min_bytes: u32,
    topics: &[TopicEntries<FetchPartition>],
) -> (Round, Duration) {
    let started = Instant::now();
    let max_wait_ms = max_wait_ms.min(shard.config.fetch_wait_ms_max);
    let deadline = started + Duration::from_millis(u64::from(max_wait_ms));
    let mut round = fetch_round(shard, topics).await;
    // Long poll: one waiter per partition (at most WAIT_PARTITIONS_MAX of them; the rest
    // are re-read every POLL_INTERVAL), each living until its partition has data past the
    // offset asked for or the deadline passes. A waiter that fires is replaced only after
    // it finished, so a fetch never holds more than one waiter per partition.
    let (notify, mut woken) = futures_channel::mpsc::channel::<()>(1);
    let listed: usize = topics.iter().map(|t| t.partitions.len()).sum();
    // Made on the first wait only: a fetch answered at once allocates nothing for it.
    let mut waiting: Vec<Rc<Cell<bool>>> = Vec::new();
    let mut waited = Duration::ZERO;
    while round_bytes(&round) < u64::from(min_bytes.max(1))
        && !round_has_error(&round)
        && Instant::now() < deadline
    {
        if waiting.is_empty() {
            waiting = (0..listed.min(WAIT_PARTITIONS_MAX))
                .map(|_| Rc::default())
                .collect();
        }
        let partitions = topics
            .iter()
            .flat_map(|entry| entry.partitions.iter().map(move |p| (&entry.topic, *p)));
        for ((topic, request), active) in partitions.zip(&waiting) {
            if active.get() {
                continue;
            }
            active.set(true);
            let (shard, topic, mut notify, active) =
                (shard.clone(), topic.clone(), notify.clone(), active.clone());
            let wait = deadline.saturating_duration_since(Instant::now());
            glommio::spawn_local(async move {
                let owner = owner(&topic, request.partition, shard.shards());
                shard
                    .call(
                        owner,
                        Job::WaitForData {
                            topic,
                            partition: request.partition,
                            offset: request.fetch_offset,
                            wait,
                        },
                    )
                    .await;
                active.set(false);
                let _ = notify.try_send(());
            })
            .detach();
        }
        let mut remaining = deadline.saturating_duration_since(Instant::now());
        if listed > WAIT_PARTITIONS_MAX {
            remaining = remaining.min(POLL_INTERVAL);
        }
        let parked = Instant::now();
        futures_lite::future::or(
            async {
                use futures_lite::StreamExt;
                let _ = woken.next().await;
            },
            glommio::timer::sleep(remaining),
        )
        .await;
        waited += parked.elapsed();
        round = fetch_round(shard, topics).await;
        if Instant::now() >= deadline {
            break;
        }
    }

    (round, waited)
}

/// Counts a partition's records out and appends them to `parts` after the headers written
/// so far (`head`, emptied): the bytes in memory, or the file range sent with zero copy.
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
    parts.push(Part::Bytes(head.split().freeze()));
    match data {
        ReadData::Memory(chunks) => parts.extend(chunks.into_iter().map(Part::Bytes)),
        ReadData::File(range) => parts.push(Part::File(range)),
        ReadData::Empty => {}
    }
}

fn encode_round(
    shard: &Shard,
    round: Round,
    max_bytes: u32,
    parts: &mut Vec<Part>,
    head: &mut BytesMut,
) -> Result<(), EncodeError> {
    let mut budget = u64::from(max_bytes);
    let mut first = true;
    head.put_count("topics", round.len())?;
    for (topic, partitions) in round {
        head.put_string("topic", &topic)?;
        head.put_count("partitions", partitions.len())?;
        for (result, data) in partitions {
            let len = data.len();
            let keep = len > 0 && (first || len <= budget);
            let send_len = if keep { len as usize } else { 0 };
            write_fetch_partition_header(head, &result, send_len)?;
            if keep {
                first = false;
                budget = budget.saturating_sub(len);
                push_records(shard, &topic, result.partition, data, head, parts);
            }
        }
    }
    Ok(())
}
