//! Replica fetch (API 40): a follower fetching the partitions it follows from this broker,
//! their leader. Each partition is served on its owning shard (`replication::replica_read`);
//! when none has anything new the request waits, up to its `max_wait_ms`, for any of their
//! logs to grow. File data goes out with zero copy.

use super::{Outgoing, Part};
use crate::shard::{owner, Job, Reply, Shard};
use bytes::BytesMut;
use keel_engine::ReadData;
use keel_protocol::api::{
    write_replica_fetch_result_header, ErrorCode, ReplicaFetch, ReplicaFetchResult,
};
use keel_protocol::wire::{EncodeError, WriteExt};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Partitions of one replica fetch that get a long-poll waiter each; beyond, it re-reads.
const WAIT_PARTITIONS_MAX: usize = 256;
const POLL_INTERVAL: Duration = Duration::from_millis(10);

type Round = Vec<(String, Vec<(ReplicaFetchResult, ReadData)>)>;

async fn round(shard: &Rc<Shard>, fetch: &ReplicaFetch) -> Round {
    let mut round = Vec::with_capacity(fetch.topics.len());
    for entry in &fetch.topics {
        let mut tasks = Vec::with_capacity(entry.partitions.len());
        for request in &entry.partitions {
            let (shard, topic, request) = (shard.clone(), entry.topic.clone(), *request);
            let replica = fetch.replica_id;
            tasks.push(glommio::spawn_local(async move {
                let owner = owner(&topic, request.partition, shard.shards());
                let job = Job::ReplicaFetch {
                    topic,
                    replica,
                    request,
                };
                match shard.call(owner, job).await {
                    Reply::ReplicaFetched(result, data) => (result, data),
                    _ => (
                        ReplicaFetchResult {
                            partition: request.partition,
                            error: ErrorCode::Unknown,
                            high_watermark: -1,
                            log_start_offset: -1,
                            log_end_offset: -1,
                            diverging_epoch: -1,
                            diverging_end_offset: -1,
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

/// Something to answer at once: data, an error or a divergence.
fn worth_answering(round: &Round) -> bool {
    round.iter().flat_map(|(_, p)| p.iter()).any(|(r, data)| {
        !data.is_empty() || r.error != ErrorCode::None || r.diverging_end_offset >= 0
    })
}

pub async fn handle(shard: &Rc<Shard>, fetch: ReplicaFetch) -> Outgoing {
    if shard.cluster.is_none() {
        return Outgoing::error(ErrorCode::NotLeaderOrFollower);
    }
    let wait = fetch.max_wait_ms.min(shard.config.fetch_wait_ms_max);
    let deadline = Instant::now() + Duration::from_millis(u64::from(wait));
    let mut answer = round(shard, &fetch).await;
    let listed: usize = fetch.topics.iter().map(|t| t.partitions.len()).sum();
    let mut waited = Duration::ZERO;
    while !worth_answering(&answer) && Instant::now() < deadline {
        let (notify, mut woken) = futures_channel::mpsc::channel::<()>(1);
        let left = deadline.saturating_duration_since(Instant::now());
        let mut waiters = Vec::new();
        let partitions = fetch
            .topics
            .iter()
            .flat_map(|entry| entry.partitions.iter().map(move |p| (&entry.topic, *p)));
        for (topic, request) in partitions.take(WAIT_PARTITIONS_MAX) {
            let (shard, topic, mut notify) = (shard.clone(), topic.clone(), notify.clone());
            waiters.push(glommio::spawn_local(async move {
                let owner = owner(&topic, request.partition, shard.shards());
                shard
                    .call(
                        owner,
                        Job::WaitForEnd {
                            topic,
                            partition: request.partition,
                            offset: request.fetch_offset,
                            wait: left,
                        },
                    )
                    .await;
                let _ = notify.try_send(());
            }));
        }
        let pause = if listed > WAIT_PARTITIONS_MAX {
            left.min(POLL_INTERVAL)
        } else {
            left
        };
        let parked = Instant::now();
        futures_lite::future::or(
            async {
                use futures_lite::StreamExt;
                let _ = woken.next().await;
            },
            glommio::timer::sleep(pause),
        )
        .await;
        waited += parked.elapsed();
        // The waiters still parked end at their own deadline; nothing waits for them.
        for waiter in waiters {
            waiter.detach();
        }
        answer = round(shard, &fetch).await;
    }
    let mut parts = Vec::new();
    let mut head = BytesMut::new();
    let mut errors: Vec<ErrorCode> = answer
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(r, _)| r.error))
        .filter(|e| *e != ErrorCode::None)
        .collect();
    errors.sort_by_key(|e| *e as u16);
    errors.dedup();
    if let Err(e) = encode(answer, fetch.max_bytes, &mut parts, &mut head) {
        tracing::warn!(error = %e, "replica fetch response cannot be encoded");
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

fn encode(
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
            write_replica_fetch_result_header(head, &result, if keep { len as usize } else { 0 })?;
            if keep {
                first = false;
                budget = budget.saturating_sub(len);
                parts.push(Part::Bytes(head.split().freeze()));
                match data {
                    ReadData::Memory(chunks) => parts.extend(chunks.into_iter().map(Part::Bytes)),
                    ReadData::File(range) => parts.push(Part::File(range)),
                    ReadData::Empty => {}
                }
            }
        }
    }
    Ok(())
}
