//! Topic configs beyond the log's own (those are read in `Config::topic_log_config`): their
//! keys, how each is checked when set, and how the compaction and replication settings are
//! read from them (used by `compaction.rs` and `replication/`).

use keel_engine::CleanConfig;
use std::collections::BTreeMap;

/// Kafka's topic config naming the policy.
pub const CLEANUP_POLICY: &str = "cleanup.policy";
const DELETE_RETENTION: &str = "delete.retention.ms";
const MIN_LAG: &str = "min.compaction.lag.ms";
const MAX_LAG: &str = "max.compaction.lag.ms";
const DIRTY_RATIO: &str = "min.cleanable.dirty.ratio";

/// `Some` check result when `key` is a compaction config.
pub fn check_compaction(key: &str, value: &str) -> Option<Result<(), String>> {
    let shown = super::clip(value);
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

/// `mirror.link`: the cluster link whose mirror this topic is (set by the link only).
pub const MIRROR_LINK: &str = "mirror.link";
/// `mirror.source.topic`: the source topic it mirrors.
pub const MIRROR_SOURCE_TOPIC: &str = "mirror.source.topic";
/// `mirror.source.topic.id`: the source topic's id (hex) when the mirror was made: another
/// id at the source means the topic was deleted and created again.
pub const MIRROR_SOURCE_TOPIC_ID: &str = "mirror.source.topic.id";
/// `mirror.state`: `mirroring` (read-only) or `promoted` (an ordinary topic now).
pub const MIRROR_STATE: &str = "mirror.state";
/// The `mirror.state` of a promoted topic.
pub const MIRROR_PROMOTED: &str = "promoted";

/// Whether a topic with `configs` is a mirror clients may not write to.
pub fn read_only_mirror(configs: &BTreeMap<String, String>) -> bool {
    configs.contains_key(MIRROR_LINK)
        && configs.get(MIRROR_STATE).map(String::as_str) != Some(MIRROR_PROMOTED)
}

/// Checks the mirror configs of a topic (`Err`: a sentence); `None` for other keys.
pub fn check_mirror(key: &str, value: &str) -> Option<Result<(), String>> {
    let shown = super::clip(value);
    match key {
        MIRROR_LINK | MIRROR_SOURCE_TOPIC => Some(if value.is_empty() || value.len() > 249 {
            Err(format!("{key} must name a link or topic, got {shown:?}"))
        } else {
            Ok(())
        }),
        MIRROR_SOURCE_TOPIC_ID => Some(
            match value.len() == 32 && value.chars().all(|c| c.is_ascii_hexdigit()) {
                true => Ok(()),
                false => Err(format!("{key} must be 32 hex digits, got {shown:?}")),
            },
        ),
        MIRROR_STATE => Some(match value {
            "mirroring" | MIRROR_PROMOTED => Ok(()),
            _ => Err(format!(
                "{key} must be mirroring or promoted, got {shown:?}"
            )),
        }),
        _ => None,
    }
}

/// `min.insync.replicas` topic config.
pub const MIN_INSYNC: &str = "min.insync.replicas";
/// `replica.lag.time.max.ms` topic config.
pub const LAG_TIME_MAX: &str = "replica.lag.time.max.ms";
/// `reassignment.throttle.bytes.per.sec`: what a leader sends per second to each replica a
/// reassignment is adding (0 or absent: unthrottled).
pub const REASSIGNMENT_THROTTLE: &str = "reassignment.throttle.bytes.per.sec";
/// Default `replica.lag.time.max.ms` (Kafka's).
pub const LAG_TIME_MAX_DEFAULT_MS: u64 = 30_000;
/// Checks the replication configs of a topic (`Err`: a sentence).
pub fn check_replication(key: &str, value: &str) -> Option<Result<(), String>> {
    let shown = super::clip(value);
    match key {
        MIN_INSYNC => Some(match value.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(()),
            _ => Err(format!("{MIN_INSYNC} must be at least 1, got {shown:?}")),
        }),
        REASSIGNMENT_THROTTLE => Some(value.parse::<u64>().map(|_| ()).map_err(|_| {
            format!("{REASSIGNMENT_THROTTLE} must be bytes per second, got {shown:?}")
        })),
        LAG_TIME_MAX => Some(
            value
                .parse::<u64>()
                .map(|_| ())
                .map_err(|_| format!("{LAG_TIME_MAX} must be milliseconds, got {shown:?}")),
        ),
        keel_controller::leadership::UNCLEAN_ELECTION => Some(match value {
            "true" | "false" => Ok(()),
            _ => Err(format!(
                "{} must be true or false, got {shown:?}",
                keel_controller::leadership::UNCLEAN_ELECTION
            )),
        }),
        _ => None,
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
        assert!(check_compaction(CLEANUP_POLICY, "compact, delete")
            .unwrap()
            .is_ok());
        assert!(check_compaction(CLEANUP_POLICY, "compacted")
            .unwrap()
            .is_err());
        assert!(check_compaction(DIRTY_RATIO, "1.5").unwrap().is_err());
        assert!(check_compaction(MIN_LAG, "-1").unwrap().is_err());
        assert!(check_compaction("retention.ms", "1").is_none());
    }
}
