//! Log compaction for topics with `cleanup.policy=compact` (or `compact,delete`): the topic
//! configs that steer it, and each shard's cleaner task, which cleans the compacted
//! partitions it owns one at a time with the shard's one offset map (its memory bounded by
//! `log_cleaner_dedupe_buffer_bytes`, shared out over the shards). Every replica cleans its
//! own copy; the engine does the work (`keel_engine::log::clean`).

use crate::shard::Shard;
use keel_engine::offset_map::OffsetMap;
use keel_engine::CleanConfig;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The cleaner's share of a shard's CPU when other work waits (the default queue has
/// 1,000).
pub const CPU_SHARES: usize = 50;

pub use crate::config::topic::{effective, policy};

/// Whether records without a key are refused (Kafka: a compacted topic needs keys).
pub fn needs_keys(configs: &BTreeMap<String, String>) -> bool {
    policy(configs).compact
}

/// A shard's cleaner: every `log_cleaner_backoff_ms`, each compacted partition it owns.
pub async fn run(shard: Rc<Shard>, stopping: Rc<Cell<bool>>) {
    let backoff = Duration::from_millis(shard.config.log_cleaner_backoff_ms);
    let map_bytes = shard.config.log_cleaner_dedupe_buffer_bytes / shard.shards().max(1);
    let io_rate = shard.config.log_cleaner_io_bytes_per_second / shard.shards().max(1) as u64;
    // Made when the shard first owns a compacted partition.
    let mut map: Option<OffsetMap> = None;
    while !stopping.get() {
        glommio::timer::sleep(backoff).await;
        for ((topic, partition), log) in shard.owned_logs() {
            let policy = match shard.registry.read().get(&topic) {
                Some(entry) => policy(&entry.configs),
                None => continue,
            };
            if !policy.compact {
                continue;
            }
            let map = map.get_or_insert_with(|| OffsetMap::new(map_bytes));
            let started = Instant::now();
            let clean = CleanConfig {
                io_bytes_per_second: io_rate,
                ..policy.clean
            };
            match log.clean(map, &clean).await {
                Ok(Some(stats)) => {
                    let took = started.elapsed();
                    shard.metrics.cleaner_bytes_read.inc_by(stats.bytes_read);
                    shard
                        .metrics
                        .cleaner_bytes_reclaimed
                        .inc_by(stats.bytes_before.saturating_sub(stats.bytes_after));
                    tracing::info!(
                        %topic,
                        partition,
                        segments = stats.segments_rewritten,
                        bytes_read = stats.bytes_read,
                        bytes_written = stats.bytes_written,
                        bytes_before = stats.bytes_before,
                        bytes_after = stats.bytes_after,
                        records_dropped = stats.records_dropped,
                        took_ms = took.as_millis() as u64,
                        "cleaned"
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(%topic, partition, error = %e, "cleaning failed; tried again later")
                }
            }
        }
    }
}
