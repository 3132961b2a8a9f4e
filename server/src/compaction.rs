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

/// Kafka's topic config naming the policy.
pub const CLEANUP_POLICY: &str = "cleanup.policy";
const DELETE_RETENTION: &str = "delete.retention.ms";
const MIN_LAG: &str = "min.compaction.lag.ms";
const MAX_LAG: &str = "max.compaction.lag.ms";
const DIRTY_RATIO: &str = "min.cleanable.dirty.ratio";

/// `Some` check result when `key` is a compaction config.
pub fn check_config(key: &str, value: &str) -> Option<Result<(), String>> {
    let shown = crate::config::clip(value);
    let millis = |name: &str| {
        value
            .parse::<u64>()
            .map(|_| ())
            .map_err(|_| format!("{name} must be milliseconds, got {shown:?}"))
    };
    match key {
        CLEANUP_POLICY => Some(match policy_words(value) {
            Some(_) => Ok(()),
            None => Err(format!(
                "{CLEANUP_POLICY} must be delete, compact or compact,delete; got {shown:?}"
            )),
        }),
        DELETE_RETENTION | MIN_LAG | MAX_LAG => Some(millis(key)),
        DIRTY_RATIO => Some(match value.parse::<f64>() {
            Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(()),
            _ => Err(format!(
                "{DIRTY_RATIO} must be between 0 and 1, got {shown:?}"
            )),
        }),
        _ => None,
    }
}

/// (compact, delete) for a `cleanup.policy` value.
fn policy_words(value: &str) -> Option<(bool, bool)> {
    let (mut compact, mut delete) = (false, false);
    for word in value.split(',').map(str::trim) {
        match word {
            "compact" => compact = true,
            "delete" => delete = true,
            _ => return None,
        }
    }
    (compact || delete).then_some((compact, delete))
}

/// A topic's cleanup as its configs say.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// The cleaner keeps the latest record per key.
    pub compact: bool,
    /// Retention (by time and size) deletes old segments.
    pub delete: bool,
    /// How the cleaner cleans.
    pub clean: CleanConfig,
}

/// The policy of a topic with these configs (checked already; defaults for the rest).
pub fn policy(configs: &BTreeMap<String, String>) -> Policy {
    let (compact, delete) = configs
        .get(CLEANUP_POLICY)
        .and_then(|v| policy_words(v))
        .unwrap_or((false, true));
    let millis = |key: &str, default: i64| {
        configs
            .get(key)
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(default, |v| i64::try_from(v).unwrap_or(i64::MAX))
    };
    let defaults = CleanConfig::default();
    Policy {
        compact,
        delete,
        clean: CleanConfig {
            delete_retention_ms: millis(DELETE_RETENTION, defaults.delete_retention_ms),
            min_compaction_lag_ms: millis(MIN_LAG, defaults.min_compaction_lag_ms),
            max_compaction_lag_ms: millis(MAX_LAG, defaults.max_compaction_lag_ms),
            min_cleanable_dirty_ratio: configs
                .get(DIRTY_RATIO)
                .and_then(|v| v.parse().ok())
                .unwrap_or(defaults.min_cleanable_dirty_ratio),
            io_bytes_per_second: defaults.io_bytes_per_second,
        },
    }
}

/// The compaction configs of a topic, as set or their defaults (DescribeConfigs).
pub fn effective(configs: &BTreeMap<String, String>) -> Vec<(&'static str, String)> {
    let policy = policy(configs);
    let words = match (policy.compact, policy.delete) {
        (true, true) => "compact,delete",
        (true, false) => "compact",
        _ => "delete",
    };
    let millis = |ms: i64| {
        if ms == i64::MAX {
            "-1".to_owned()
        } else {
            ms.to_string()
        }
    };
    vec![
        (CLEANUP_POLICY, words.to_owned()),
        (DELETE_RETENTION, millis(policy.clean.delete_retention_ms)),
        (MIN_LAG, millis(policy.clean.min_compaction_lag_ms)),
        (MAX_LAG, millis(policy.clean.max_compaction_lag_ms)),
        (
            DIRTY_RATIO,
            policy.clean.min_cleanable_dirty_ratio.to_string(),
        ),
    ]
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn policies_read_as_kafka_writes_them() {
        assert!(!policy(&configs(&[])).compact);
        assert!(policy(&configs(&[])).delete);
        let both = policy(&configs(&[(CLEANUP_POLICY, "compact,delete")]));
        assert!(both.compact && both.delete);
        let compact = policy(&configs(&[
            (CLEANUP_POLICY, "compact"),
            (DELETE_RETENTION, "5"),
            (DIRTY_RATIO, "0.1"),
        ]));
        assert!(compact.compact && !compact.delete);
        assert_eq!(compact.clean.delete_retention_ms, 5);
        assert_eq!(compact.clean.min_cleanable_dirty_ratio, 0.1);
        assert!(check_config(CLEANUP_POLICY, "compact, delete")
            .unwrap()
            .is_ok());
        assert!(check_config(CLEANUP_POLICY, "compacted").unwrap().is_err());
        assert!(check_config(DIRTY_RATIO, "1.5").unwrap().is_err());
        assert!(check_config(MIN_LAG, "-1").unwrap().is_err());
        assert!(check_config("retention.ms", "1").is_none());
    }
}
