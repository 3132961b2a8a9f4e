//! A follower's fetcher: one task per (shard, leader broker), fetching every partition this
//! shard follows from that leader in one long-polled request, appending the leader's
//! batches verbatim (one group commit per partition and response), truncating a divergent
//! suffix when the leader says so, and learning the high watermark. It ends when this shard
//! follows nothing from that leader any more.

use super::Role;
use crate::shard::Shard;
use bytes::BytesMut;
use keel_controller::replica::diverged_truncation;
use keel_engine::Log;
use keel_protocol::api::{
    ErrorCode, ReplicaFetch, ReplicaFetchPartition, ReplicaFetchResult, Request, Response,
    TopicEntries,
};
use keel_protocol::batch::{peek_batch_len, BatchView};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// How long the leader may hold a fetch when it has nothing new.
const MAX_WAIT_MS: u32 = 500;
/// Most bytes per partition and per response.
const PARTITION_MAX_BYTES: u32 = 1 << 20;
const RESPONSE_MAX_BYTES: u32 = 8 << 20;
/// Largest response frame accepted from a leader.
const RESPONSE_FRAME_MAX: u32 = RESPONSE_MAX_BYTES + (4 << 20);
/// Pause after a failed connection or an answer that needs new metadata.
const BACKOFF: Duration = Duration::from_millis(100);

/// Runs until this shard follows nothing from `leader`.
pub async fn run(shard: Rc<Shard>, leader: u32) {
    let mut connection: Option<crate::security::peer::PeerStream> = None;
    let mut correlation = 0u32;
    loop {
        let following = shard.replicas.following(leader);
        if following.is_empty() {
            break;
        }
        let Some(request) = build_request(&shard, &following) else {
            glommio::timer::sleep(BACKOFF).await;
            continue;
        };
        if connection.is_none() {
            connection = crate::cluster::call::connect(&shard, leader).await;
            if connection.is_none() {
                glommio::timer::sleep(BACKOFF).await;
                continue;
            }
        }
        let stream = connection.as_mut().expect("connected above");
        correlation = correlation.wrapping_add(1);
        let answer =
            crate::cluster::call::exchange(stream, correlation, &request, RESPONSE_FRAME_MAX)
                .await
                .and_then(|response| match response {
                    Response::ReplicaFetch { topics } => Ok(topics),
                    _ => Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "not a replica fetch response",
                    )),
                });
        let topics = match answer {
            Ok(topics) => topics,
            Err(e) => {
                tracing::debug!(leader, error = %e, "replica fetch failed; reconnecting");
                connection = None;
                glommio::timer::sleep(BACKOFF).await;
                continue;
            }
        };
        let epochs: BTreeMap<(String, u32), u32> = following
            .iter()
            .map(|(t, p, e)| ((t.clone(), *p), *e))
            .collect();
        let mut tasks = Vec::new();
        let mut backoff = false;
        for entry in topics {
            for result in entry.partitions {
                let Some(epoch) = epochs.get(&(entry.topic.clone(), result.partition)) else {
                    continue;
                };
                if result.error == ErrorCode::OffsetOutOfRange {
                    let (shard, topic, epoch) = (shard.clone(), entry.topic.clone(), *epoch);
                    tasks.push(glommio::spawn_local(async move {
                        restart_behind(&shard, &topic, (leader, epoch), &result).await;
                    }));
                    continue;
                }
                if result.error != ErrorCode::None {
                    backoff = true;
                    tracing::debug!(topic = %entry.topic, partition = result.partition, error = ?result.error, "leader refused a replica fetch");
                    continue;
                }
                let (shard, topic, epoch) = (shard.clone(), entry.topic.clone(), *epoch);
                tasks.push(glommio::spawn_local(async move {
                    apply(&shard, &topic, (leader, epoch), result).await;
                }));
            }
        }
        for task in tasks {
            task.await;
        }
        if backoff {
            glommio::timer::sleep(BACKOFF).await;
        }
    }
    shard.replicas.fetchers.borrow_mut().remove(&leader);
}

fn build_request(shard: &Shard, following: &[(String, u32, u32)]) -> Option<Request> {
    let mut topics: BTreeMap<String, Vec<ReplicaFetchPartition>> = BTreeMap::new();
    for (topic, partition, epoch) in following {
        let Some(log) = shard.log_handle(topic, *partition) else {
            continue;
        };
        // A replica whose log is offline (a full disk) does not fetch: it could not store
        // the answer, and its fetch offset would make the leader count it in sync.
        if log.is_offline() {
            continue;
        }
        let fetch_offset = log.local_end_offset();
        topics
            .entry(topic.clone())
            .or_default()
            .push(ReplicaFetchPartition {
                partition: *partition,
                leader_epoch: *epoch as i32,
                fetch_offset,
                last_fetched_epoch: log.epoch_before(fetch_offset).unwrap_or(-1),
                partition_max_bytes: PARTITION_MAX_BYTES,
            });
    }
    if topics.is_empty() {
        return None;
    }
    Some(Request::ReplicaFetch(ReplicaFetch {
        replica_id: shard.config.node_id,
        max_wait_ms: MAX_WAIT_MS,
        max_bytes: RESPONSE_MAX_BYTES,
        topics: topics
            .into_iter()
            .map(|(topic, partitions)| TopicEntries { topic, partitions })
            .collect(),
    }))
}

/// Still following `leader` at `epoch`? Checked before every change to the log, with no
/// await in between, so a partition that became this broker's to lead is never written
/// by a stale answer.
fn still_following(
    shard: &Shard,
    topic: &str,
    partition: u32,
    (leader, epoch): (u32, u32),
) -> bool {
    shard
        .replicas
        .with_role(topic, partition, |role| {
            matches!(role, Role::Follower { leader: l, epoch: e } if *l == leader && *e == epoch)
        })
        .unwrap_or(false)
}

async fn apply(shard: &Shard, topic: &str, following: (u32, u32), result: ReplicaFetchResult) {
    let partition = result.partition;
    let Some(log) = shard.log_handle(topic, partition) else {
        return;
    };
    if !still_following(shard, topic, partition, following) {
        return;
    }
    if result.diverging_epoch >= 0 || result.diverging_end_offset >= 0 {
        // Keep what both logs hold: up to where the leader's epoch ends, and no further
        // than where ours does.
        let own = (result.diverging_epoch >= 0)
            .then(|| log.epoch_end_offset(result.diverging_epoch))
            .flatten();
        let to = diverged_truncation(
            (result.diverging_epoch, result.diverging_end_offset),
            own,
            log.log_start_offset(),
        );
        tracing::info!(
            topic,
            partition,
            to,
            log_end = log.log_end_offset(),
            "truncating a suffix the leader does not have"
        );
        match log.truncate_to(to).await {
            Ok(()) => shard.truncate_producers(topic, partition, to),
            Err(e) => tracing::error!(topic, partition, error = %e, "truncation failed"),
        }
        return;
    }
    let mut batches = Vec::new();
    let mut producers = Vec::new();
    let mut rest = &result.records[..];
    while !rest.is_empty() {
        let total = match peek_batch_len(rest) {
            Ok(Some(total)) if total <= rest.len() => total,
            // A response's last batch may be cut by the leader's byte budget.
            _ => break,
        };
        let Ok(view) = BatchView::new_verified(&rest[..total]) else {
            tracing::warn!(
                topic,
                partition,
                "leader sent a batch failing its CRC; fetching again"
            );
            break;
        };
        producers.extend(crate::producers::stored_batch(&view));
        batches.push(BytesMut::from(&rest[..total]));
        rest = &rest[total..];
    }
    let bytes: u64 = batches.iter().map(|b| b.len() as u64).sum();
    if !batches.is_empty() {
        if !still_following(shard, topic, partition, following) {
            return;
        }
        if let Err(e) = log.append_replica_batches(batches).await {
            tracing::warn!(topic, partition, error = %e, "replicated append failed");
            return;
        }
        shard.metrics.replication_bytes_in.inc_by(bytes);
        shard.learn_producers(topic, partition, &producers);
    }
    if still_following(shard, topic, partition, following) {
        let agreed = result.high_watermark.min(log.local_end_offset());
        if log
            .replication_high_watermark()
            .is_none_or(|hw| agreed > hw)
        {
            log.set_replication_high_watermark(Some(agreed));
        }
        if result.log_start_offset > log.log_start_offset() {
            follow_log_start(topic, partition, &log, result.log_start_offset).await;
        }
    }
}

/// The leader answered that this follower's next offset is out of its range: when its log
/// starts past this one's end (retention deleted what this follower still needs, while it
/// was away), this log starts again there, empty, as Kafka's followers do.
async fn restart_behind(
    shard: &Shard,
    topic: &str,
    following: (u32, u32),
    result: &ReplicaFetchResult,
) {
    let partition = result.partition;
    let Some(log) = shard.log_handle(topic, partition) else {
        return;
    };
    let leader_start = result.log_start_offset;
    if leader_start <= log.local_end_offset()
        || !still_following(shard, topic, partition, following)
    {
        glommio::timer::sleep(BACKOFF).await;
        return;
    }
    tracing::warn!(
        topic,
        partition,
        log_end = log.log_end_offset(),
        leader_start,
        "the leader's log starts past this follower's end: starting again there"
    );
    match log.restart_at(leader_start).await {
        Ok(()) => shard.truncate_producers(topic, partition, i64::MIN),
        Err(e) => tracing::error!(topic, partition, error = %e, "restarting the log failed"),
    }
}

/// The leader's log start moved (DeleteRecords, retention): the follower deletes its own
/// segments below it too, as the leader did (whole segments; rolling first when all it
/// holds goes), so deleted records do not come back when it leads after a failover.
async fn follow_log_start(topic: &str, partition: u32, log: &Log, leader_start: i64) {
    let before = log.log_start_offset();
    let deleted = async {
        if leader_start >= log.log_end_offset() && log.high_watermark() == log.log_end_offset() {
            log.roll().await?;
        }
        log.delete_before(leader_start).await
    }
    .await;
    match deleted {
        Ok(segments) if !segments.is_empty() => tracing::info!(
            topic,
            partition,
            from = before,
            to = log.log_start_offset(),
            "log start follows the leader's"
        ),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(topic, partition, error = %e, "deleting below the leader's log start failed")
        }
    }
}
