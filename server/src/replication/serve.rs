//! The leader's side of a follower's fetch, for one partition on its owning shard: checks
//! the follower's epoch and divergence, counts its progress, and reads from its offset up
//! to the log end (memory or a zero-copy file range, as for consumers).

use super::Role;
use crate::shard::Shard;
use keel_controller::replica::{check_fetch, FetchDecision, FetchRefusal};
use keel_engine::{Log, ReadData};
use keel_protocol::api::{ErrorCode, ReplicaFetchPartition, ReplicaFetchResult};

fn answer(partition: u32, error: ErrorCode, log: Option<&Log>) -> ReplicaFetchResult {
    ReplicaFetchResult {
        partition,
        error,
        high_watermark: log.map_or(-1, Log::high_watermark),
        log_start_offset: log.map_or(-1, Log::log_start_offset),
        log_end_offset: log.map_or(-1, Log::log_end_offset),
        diverging_epoch: -1,
        diverging_end_offset: -1,
        records: Default::default(),
    }
}

/// What the checks decided: send (with a throttle's allowance in bytes, `None` for no
/// throttle), or tell the follower where its log diverged.
enum Checked {
    Serve(Option<u64>),
    Diverging(i32, i64),
}

/// Serves one partition of a replica fetch from `replica`.
pub async fn replica_read(
    shard: &Shard,
    topic: &str,
    replica: u32,
    request: ReplicaFetchPartition,
) -> (ReplicaFetchResult, ReadData) {
    let partition = request.partition;
    let Some(log) = shard.log_handle(topic, partition) else {
        return (
            answer(partition, ErrorCode::UnknownTopicOrPartition, None),
            ReadData::Empty,
        );
    };
    shard.refresh_role(topic, partition, &log);
    let lease = shard.cluster.as_ref().is_some_and(|v| v.lease_valid());
    let checked = shard
        .replicas
        .with_role(topic, partition, |role| {
            let Role::Leader(leading) = role else {
                return Err(ErrorCode::NotLeaderOrFollower);
            };
            if !lease {
                return Err(ErrorCode::NotLeaderOrFollower);
            }
            // Only the partition's followers read past the high watermark.
            if !leading.progress.is_follower(replica) {
                return Err(ErrorCode::InvalidRequest);
            }
            let decision = check_fetch(
                leading.epoch,
                (
                    request.leader_epoch,
                    request.last_fetched_epoch,
                    request.fetch_offset,
                ),
                |epoch| log.epoch_end_offset(epoch),
                (log.log_start_offset(), log.log_end_offset()),
            )
            .map_err(|refusal| match refusal {
                FetchRefusal::FencedLeaderEpoch => ErrorCode::FencedLeaderEpoch,
                FetchRefusal::UnknownLeaderEpoch => ErrorCode::UnknownLeaderEpoch,
                FetchRefusal::OffsetOutOfRange => ErrorCode::OffsetOutOfRange,
            })?;
            if let FetchDecision::Diverging { epoch, end_offset } = decision {
                return Ok(Checked::Diverging(epoch, end_offset));
            }
            let now = shard.cluster.as_ref().map_or(0, |v| v.now_ms());
            let local_end = log.local_end_offset();
            if local_end > leading.progress.log_end_offset() {
                leading.progress.appended(local_end);
            }
            leading.progress.fetched(replica, request.fetch_offset, now);
            log.set_replication_high_watermark(Some(leading.progress.high_watermark()));
            Ok(Checked::Serve(leading.throttle.allowance(replica, now)))
        })
        .unwrap_or(Err(ErrorCode::NotLeaderOrFollower));
    match checked {
        Err(error) => (answer(partition, error, Some(&log)), ReadData::Empty),
        Ok(Checked::Diverging(epoch, end)) => {
            let mut result = answer(partition, ErrorCode::None, Some(&log));
            result.diverging_epoch = epoch;
            result.diverging_end_offset = end;
            (result, ReadData::Empty)
        }
        // A replica a reassignment adds, throttled, with nothing allowed yet: nothing now;
        // the fetch waits and asks again.
        Ok(Checked::Serve(Some(0))) => (
            answer(partition, ErrorCode::None, Some(&log)),
            ReadData::Empty,
        ),
        Ok(Checked::Serve(allowed)) => {
            let max_bytes = allowed.map_or(u64::from(request.partition_max_bytes), |a| {
                a.min(u64::from(request.partition_max_bytes))
            });
            match log.read_replica(request.fetch_offset, max_bytes).await {
                Ok(read) => {
                    let mut result = answer(partition, ErrorCode::None, Some(&log));
                    result.high_watermark = read.high_watermark;
                    let len = read.data.len();
                    shard.metrics.replication_bytes_out.inc_by(len);
                    if allowed.is_some() {
                        shard.replicas.with_role(topic, partition, |role| {
                            if let Role::Leader(leading) = role {
                                leading.throttle.spent(replica, len);
                            }
                        });
                    }
                    (result, read.data)
                }
                Err(e) => (
                    answer(partition, crate::shard::storage_error(&e).0, Some(&log)),
                    ReadData::Empty,
                ),
            }
        }
    }
}

/// How long `replica` must wait before the leader may send it more of this partition (the
/// reassignment throttle); `None` when it is not throttled now.
pub fn throttle_wait(
    shard: &Shard,
    topic: &str,
    partition: u32,
    replica: u32,
) -> Option<std::time::Duration> {
    let now = shard.cluster.as_ref().map_or(0, |v| v.now_ms());
    let wait = shard
        .replicas
        .with_role(topic, partition, |role| match role {
            Role::Leader(leading) => leading.throttle.wait_ms(replica, now),
            _ => None,
        })??;
    Some(std::time::Duration::from_millis(wait))
}
