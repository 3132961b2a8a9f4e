//! Topic administration: create, delete, describe and alter configs.
//!
//! The registry is changed (durably) first, then the partitions' owners open, reopen or
//! remove their logs; see `registry.rs` for why that order never leaves a half-made topic.

use crate::handlers::groups::OFFSETS_TOPIC;
use crate::registry::{Refusal, TopicEntry};
use crate::shard::{on_every_partition, owner, Job, Shard};
use keel_protocol::api::{
    validate_topic_name, ConfigEntry, ErrorCode, NewTopic, Response, TopicResult,
};
use std::collections::BTreeMap;
use std::rc::Rc;

fn result(topic: String, error: ErrorCode, message: impl Into<String>) -> TopicResult {
    TopicResult {
        topic,
        error,
        message: message.into(),
    }
}

pub async fn create(shard: &Rc<Shard>, topics: Vec<NewTopic>) -> Vec<TopicResult> {
    let mut results = Vec::with_capacity(topics.len());
    for topic in topics {
        let name = topic.name.clone();
        if let Err(message) = validate_topic_name(&name) {
            results.push(result(name, ErrorCode::InvalidTopic, message));
            continue;
        }
        if topic.partitions == 0 {
            results.push(result(
                name,
                ErrorCode::InvalidPartitions,
                "a topic needs at least one partition",
            ));
            continue;
        }
        if topic.replication_factor != 1 && shard.cluster.is_none() {
            let message = format!(
                "replication factor {} is not possible on a single broker; use 1",
                topic.replication_factor
            );
            results.push(result(name, ErrorCode::InvalidReplicationFactor, message));
            continue;
        }
        if let Some(message) = link_owned(topic.configs.iter().map(|c| c.key.as_str())) {
            results.push(result(name, ErrorCode::InvalidConfig, message));
            continue;
        }
        let configs: BTreeMap<String, String> = topic
            .configs
            .into_iter()
            .map(|c| (c.key, c.value))
            .collect();
        let log = match shard.config.topic_log_config(&configs) {
            Ok(log) => log,
            Err(message) => {
                results.push(result(name, ErrorCode::InvalidConfig, message));
                continue;
            }
        };
        if shard.cluster.is_some() {
            let (partitions, factor) = (topic.partitions, u32::from(topic.replication_factor));
            results
                .push(super::cluster_admin::create(shard, name, partitions, factor, configs).await);
            continue;
        }
        let partitions_max = u64::from(shard.config.partitions_max);
        let created = shard
            .registry
            .update(|topics| {
                if topics.contains_key(&name) {
                    return Err(Refusal::new(
                        ErrorCode::TopicAlreadyExists,
                        "topic already exists",
                    ));
                }
                let total = topics
                    .values()
                    .map(|t| u64::from(t.partitions))
                    .sum::<u64>()
                    + u64::from(topic.partitions);
                if total > partitions_max {
                    return Err(Refusal::new(
                        ErrorCode::TooManyPartitions,
                        format!(
                            "{total} partitions would exceed the broker's limit of {partitions_max}"
                        ),
                    ));
                }
                topics.insert(
                    name.clone(),
                    TopicEntry {
                        partitions: topic.partitions,
                        configs,
                        id: crate::registry::new_topic_id(),
                    },
                );
                Ok(())
            })
            .await;
        if let Err(refusal) = created {
            results.push(result(name, refusal.code, refusal.message));
            continue;
        }
        let opened = on_every_partition(shard, &name, topic.partitions, |partition| Job::Open {
            topic: name.clone(),
            partition,
            log: log.clone(),
        })
        .await;
        tracing::info!(topic = %name, partitions = topic.partitions, "topic created");
        results.push(match opened {
            Ok(()) => result(name, ErrorCode::None, ""),
            Err(message) => result(name, ErrorCode::StorageError, message),
        });
    }
    results
}

pub async fn delete(shard: &Rc<Shard>, topics: Vec<String>) -> Vec<TopicResult> {
    let mut results = Vec::with_capacity(topics.len());
    for name in topics {
        if name == OFFSETS_TOPIC {
            results.push(result(
                name,
                ErrorCode::InvalidTopic,
                "internal topic: it holds the consumer groups' committed offsets",
            ));
            continue;
        }
        if shard.cluster.is_some() {
            results.push(super::cluster_admin::delete(shard, name).await);
            continue;
        }
        let removed = shard
            .registry
            .update(|topics| {
                topics.remove(&name).ok_or_else(|| {
                    Refusal::new(ErrorCode::UnknownTopicOrPartition, "topic does not exist")
                })
            })
            .await;
        let entry = match removed {
            Ok(entry) => entry,
            Err(refusal) => {
                results.push(result(name, refusal.code, refusal.message));
                continue;
            }
        };
        let removed = on_every_partition(shard, &name, entry.partitions, |partition| Job::Remove {
            topic: name.clone(),
            partition,
        })
        .await;
        tracing::info!(topic = %name, "topic deleted");
        results.push(match removed {
            Ok(()) => result(name, ErrorCode::None, ""),
            Err(message) => result(name, ErrorCode::StorageError, message),
        });
    }
    results
}

/// Every effective config of a topic: broker defaults, then the topic's overrides.
pub(crate) fn effective_configs(shard: &Shard, entry: &TopicEntry) -> Vec<ConfigEntry> {
    let log = shard
        .config
        .topic_log_config(&entry.configs)
        .unwrap_or_else(|_| shard.config.log_defaults.clone());
    let optional = |value: Option<u64>| value.map_or("-1".to_owned(), |v| v.to_string());
    vec![
        ConfigEntry {
            key: "partitions".into(),
            value: entry.partitions.to_string(),
        },
        ConfigEntry {
            key: "retention.ms".into(),
            value: optional(log.retention_ms),
        },
        ConfigEntry {
            key: "retention.bytes".into(),
            value: optional(log.retention_bytes),
        },
        ConfigEntry {
            key: "segment.bytes".into(),
            value: log.segment_bytes.to_string(),
        },
        ConfigEntry {
            key: "segment.ms".into(),
            value: optional(log.segment_ms),
        },
        ConfigEntry {
            key: "fsync".into(),
            value: log.fsync.to_string(),
        },
    ]
    .into_iter()
    .chain(replication_configs(entry))
    .chain(
        crate::compaction::effective(&entry.configs)
            .into_iter()
            .map(|(key, value)| ConfigEntry {
                key: key.into(),
                value,
            }),
    )
    // A mirror's: which link, which source topic, its state (only on mirror topics).
    .chain(
        entry
            .configs
            .iter()
            .filter(|(key, _)| key.starts_with("mirror."))
            .map(|(key, value)| ConfigEntry {
                key: key.clone(),
                value: value.clone(),
            }),
    )
    .collect()
}

/// The replication settings, as set or their defaults.
fn replication_configs(entry: &TopicEntry) -> Vec<ConfigEntry> {
    use crate::replication::{
        LAG_TIME_MAX, LAG_TIME_MAX_DEFAULT_MS, MIN_INSYNC, REASSIGNMENT_THROTTLE,
    };
    let unclean = keel_controller::leadership::UNCLEAN_ELECTION;
    [
        (MIN_INSYNC, "1".to_owned()),
        (LAG_TIME_MAX, LAG_TIME_MAX_DEFAULT_MS.to_string()),
        (unclean, "false".to_owned()),
        (REASSIGNMENT_THROTTLE, "0".to_owned()),
    ]
    .into_iter()
    .map(|(key, default)| ConfigEntry {
        key: key.into(),
        value: entry.configs.get(key).cloned().unwrap_or(default),
    })
    .collect()
}

pub fn describe_configs(shard: &Rc<Shard>, topics: Vec<String>) -> Response {
    let registry = shard.registry.read();
    let topics = topics
        .into_iter()
        .map(|name| match registry.get(&name) {
            Some(entry) => {
                let configs = effective_configs(shard, entry);
                (name, ErrorCode::None, configs)
            }
            None => (name, ErrorCode::UnknownTopicOrPartition, Vec::new()),
        })
        .collect();
    Response::DescribeConfigs { topics }
}

/// Refuses `mirror.*` configs from clients: cluster links set them (a mirror made
/// writable by a config change would skip `keel link promote`).
fn link_owned<'a>(mut keys: impl Iterator<Item = &'a str>) -> Option<String> {
    keys.find(|key| key.starts_with("mirror."))
        .map(|key| format!("{key} is set by cluster links only (keel link create|promote)"))
}

pub async fn alter_configs(
    shard: &Rc<Shard>,
    topics: Vec<(String, Vec<ConfigEntry>)>,
) -> Vec<TopicResult> {
    let mut results = Vec::with_capacity(topics.len());
    for (name, changes) in topics {
        if let Some(message) = link_owned(changes.iter().map(|c| c.key.as_str())) {
            results.push(result(name, ErrorCode::InvalidConfig, message));
            continue;
        }
        if shard.cluster.is_some() && name != OFFSETS_TOPIC {
            results.push(alter_in_cluster(shard, name, changes).await);
            continue;
        }
        let config = shard.config.clone();
        let updated = shard
            .registry
            .update(|topics| {
                let Some(entry) = topics.get_mut(&name) else {
                    return Err(Refusal::new(
                        ErrorCode::UnknownTopicOrPartition,
                        "topic does not exist",
                    ));
                };
                if name == OFFSETS_TOPIC && changes.iter().any(|c| c.key.starts_with("retention."))
                {
                    return Err(Refusal::new(
                        ErrorCode::InvalidConfig,
                        "the offsets topic is never trimmed by retention: it compacts itself",
                    ));
                }
                if changes.iter().any(|c| c.key == "partitions") {
                    return Err(Refusal::new(
                        ErrorCode::InvalidConfig,
                        "the partition count cannot be changed by AlterConfigs",
                    ));
                }
                let mut configs = entry.configs.clone();
                for change in &changes {
                    configs.insert(change.key.clone(), change.value.clone());
                }
                let log = config
                    .topic_log_config(&configs)
                    .map_err(|message| Refusal::new(ErrorCode::InvalidConfig, message))?;
                entry.configs = configs;
                Ok((entry.partitions, log))
            })
            .await;
        let updated = match updated {
            Ok(updated) => updated,
            Err(refusal) => {
                results.push(result(name, refusal.code, refusal.message));
                continue;
            }
        };
        let (partitions, log) = updated;
        let reopened = on_every_partition(shard, &name, partitions, |partition| Job::Reconfigure {
            topic: name.clone(),
            partition,
            log: log.clone(),
        })
        .await;
        results.push(match reopened {
            Ok(()) => result(name, ErrorCode::None, ""),
            Err(message) => result(name, ErrorCode::StorageError, message),
        });
    }
    results
}

async fn alter_in_cluster(
    shard: &Rc<Shard>,
    name: String,
    changes: Vec<ConfigEntry>,
) -> TopicResult {
    let current = shard.registry.read().get(&name).map(|e| e.configs.clone());
    let Some(mut configs) = current else {
        return result(
            name,
            ErrorCode::UnknownTopicOrPartition,
            "topic does not exist",
        );
    };
    if changes.iter().any(|c| c.key == "partitions") {
        return result(
            name,
            ErrorCode::InvalidConfig,
            "the partition count cannot be changed by AlterConfigs",
        );
    }
    for change in &changes {
        configs.insert(change.key.clone(), change.value.clone());
    }
    if let Err(message) = shard.config.topic_log_config(&configs) {
        return result(name, ErrorCode::InvalidConfig, message);
    }
    let changed = changes.into_iter().map(|c| (c.key, c.value)).collect();
    super::cluster_admin::alter(shard, name, changed).await
}

/// Grows a topic to `count` partitions (Kafka's CreatePartitions); nothing is made when
/// `validate_only`. New partitions open empty; keys hash over the new count from then on.
/// In cluster mode the controller places them (with the topic's replication factor) and
/// every broker opens them as it applies the metadata.
///
/// # Errors
/// The refusal: unknown topic, a count not above the current one, the broker's limit.
pub async fn add_partitions(
    shard: &Rc<Shard>,
    name: &str,
    count: i32,
    validate_only: bool,
) -> Result<(), (ErrorCode, String)> {
    if name == OFFSETS_TOPIC {
        return Err((ErrorCode::InvalidTopic, "internal topic".into()));
    }
    if shard.cluster.is_some() && !validate_only {
        {
            let registry = shard.registry.read();
            check_growth(registry.topics(), name, count, shard.config.partitions_max)
                .map_err(|r| (r.code, r.message))?;
        }
        let result = super::cluster_admin::add_partitions(shard, name, count as u32).await;
        return match result.error {
            ErrorCode::None => Ok(()),
            error => Err((error, result.message)),
        };
    }
    let partitions_max = shard.config.partitions_max;
    let check = |topics: &BTreeMap<String, TopicEntry>| -> Result<u32, Refusal> {
        check_growth(topics, name, count, partitions_max)
    };
    if validate_only {
        let registry = shard.registry.read();
        return check(registry.topics())
            .map(|_| ())
            .map_err(|r| (r.code, r.message));
    }
    let grown = shard
        .registry
        .update(|topics| {
            let before = check(topics)?;
            let entry = topics.get_mut(name).expect("checked");
            entry.partitions = count as u32;
            Ok((before, entry.clone()))
        })
        .await;
    let (before, entry) = grown.map_err(|r| (r.code, r.message))?;
    let log = shard
        .config
        .topic_log_config(&entry.configs)
        .map_err(|message| (ErrorCode::InvalidConfig, message))?;
    let opened = on_every_partition(shard, name, entry.partitions, |partition| {
        if partition < before {
            // Already open: a describe is a no-op job on the owner.
            Job::Describe {
                topic: name.to_owned(),
                partition,
            }
        } else {
            Job::Open {
                topic: name.to_owned(),
                partition,
                log: log.clone(),
            }
        }
    })
    .await;
    tracing::info!(topic = %name, from = before, to = entry.partitions, "partitions added");
    opened.map_err(|message| (ErrorCode::StorageError, message))
}

/// Whether `name` may grow to `count` partitions within the broker's `partitions_max`: its
/// partition count before.
fn check_growth(
    topics: &BTreeMap<String, TopicEntry>,
    name: &str,
    count: i32,
    partitions_max: u32,
) -> Result<u32, Refusal> {
    let partitions_max = u64::from(partitions_max);
    let Some(entry) = topics.get(name) else {
        return Err(Refusal::new(
            ErrorCode::UnknownTopicOrPartition,
            "topic does not exist",
        ));
    };
    let count = u32::try_from(count).unwrap_or(0);
    if count <= entry.partitions {
        return Err(Refusal::new(
            ErrorCode::InvalidPartitions,
            format!(
                "the topic has {} partitions; the new count must be larger",
                entry.partitions
            ),
        ));
    }
    let total = topics
        .values()
        .map(|t| u64::from(t.partitions))
        .sum::<u64>()
        + u64::from(count - entry.partitions);
    if total > partitions_max {
        return Err(Refusal::new(
            ErrorCode::TooManyPartitions,
            format!("{total} partitions would exceed the broker's limit of {partitions_max}"),
        ));
    }
    Ok(entry.partitions)
}

/// Kafka's DeleteRecords on one partition: the new log start.
///
/// # Errors
/// The partition's error.
pub async fn delete_records(
    shard: &Rc<Shard>,
    topic: &str,
    partition: u32,
    offset: i64,
) -> Result<i64, ErrorCode> {
    let owner = owner(topic, partition, shard.shards());
    let job = Job::DeleteRecords {
        topic: topic.to_owned(),
        partition,
        offset,
    };
    let result: keel_protocol::api::ListOffsetsPartitionResult = shard.ask(owner, job).await?;
    match result.error {
        ErrorCode::None => Ok(result.offset),
        error => Err(error),
    }
}
