//! The leader's side of a follower's fetch, for one partition on its owning shard: checks
//! the follower's epoch and divergence, counts its progress, and reads from its offset up
//! to the log end (memory or a zero-copy file range, as for consumers).

use crate::shard::Shard;
use keel_controller::replica::{FetchRefusal, FollowerFetch, LeaderLog, Served};
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
    let fetch = FollowerFetch {
        replica,
        leader_epoch: request.leader_epoch,
        last_fetched_epoch: request.last_fetched_epoch,
        fetch_offset: request.fetch_offset,
    };
    let leader_log = LeaderLog {
        start: log.log_start_offset(),
        end: log.log_end_offset(),
        local_end: log.local_end_offset(),
    };
    let now = shard.cluster.as_ref().map_or(0, |v| v.now_ms());
    let checked = shard
        .replicas
        .with_role(topic, partition, |role| {
            let leading = role
                .leading()
                .filter(|_| lease)
                .ok_or(ErrorCode::NotLeaderOrFollower)?;
            let served = leading
                .serve_fetch(fetch, |epoch| log.epoch_end_offset(epoch), leader_log, now)
                .map_err(|refusal| match refusal {
                    FetchRefusal::FencedLeaderEpoch => ErrorCode::FencedLeaderEpoch,
                    FetchRefusal::UnknownLeaderEpoch => ErrorCode::UnknownLeaderEpoch,
                    FetchRefusal::OffsetOutOfRange => ErrorCode::OffsetOutOfRange,
                    // Only the partition's followers read past the high watermark.
                    FetchRefusal::NotAFollower => ErrorCode::InvalidRequest,
                })?;
            if let Served::Records { high_watermark, .. } = served {
                log.set_replication_high_watermark(Some(high_watermark));
            }
            Ok(served)
        })
        .unwrap_or(Err(ErrorCode::NotLeaderOrFollower));
    match checked {
        Err(error) => (answer(partition, error, Some(&log)), ReadData::Empty),
        Ok(Served::Diverging {
            epoch,
            end_offset: end,
        }) => {
            let mut result = answer(partition, ErrorCode::None, Some(&log));
            result.diverging_epoch = epoch;
            result.diverging_end_offset = end;
            (result, ReadData::Empty)
        }
        // A replica a reassignment adds, throttled, with nothing allowed yet: nothing now;
        // the fetch waits and asks again.
        Ok(Served::Records {
            allowance: Some(0), ..
        }) => (
            answer(partition, ErrorCode::None, Some(&log)),
            ReadData::Empty,
        ),
        Ok(Served::Records {
            allowance: allowed, ..
        }) => {
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
                            if let Some(leading) = role.leading() {
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
    let wait = shard.replicas.with_role(topic, partition, |role| {
        role.leading()?.throttle.wait_ms(replica, now)
    })??;
    Some(std::time::Duration::from_millis(wait))
}
