//! Upgrading a cluster broker whose data directory holds committed offsets from before
//! `__consumer_offsets` was replicated (each broker kept the groups it coordinated in a
//! local one-partition log). At start-up the local log is set aside, out of the registry
//! (the replicated topic of the same name comes from the metadata); once the cluster runs,
//! each of its offsets is committed to the group's coordinator now, unless the group
//! already has a committed offset there for that partition (a newer commit wins). When
//! every group is through, the set-aside directory is deleted.

use crate::handlers::groups::{parse_offset_key, OFFSETS_TOPIC};
use crate::registry::{partition_dir, Registry};
use crate::shard::Shard;
use anyhow::Context;
use keel_protocol::api::{ErrorCode, Request, Response, TopicEntries};
use keel_protocol::batch::BatchView;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

/// Written once the data directory's offsets are the replicated topic's.
const MARKER: &str = "offsets.replicated";
/// Offsets per commit request while importing.
const IMPORT_CHUNK: usize = 500;
/// Largest answer read from a coordinator while importing.
const ANSWER_FRAME_MAX: u32 = 16 << 20;

/// Each group's committed offsets: (topic, partition, offset).
pub type GroupOffsets = BTreeMap<String, Vec<(String, u32, i64)>>;

/// Where the local offsets log is set aside.
pub fn aside_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(format!("{OFFSETS_TOPIC}.local"))
}

/// Cluster mode, at start-up: sets a pre-replication local offsets log aside (once).
///
/// # Errors
/// Renaming the directory or writing the registry or marker failed.
pub fn set_local_offsets_aside(data_dir: &Path, registry: &mut Registry) -> anyhow::Result<()> {
    let marker = data_dir.join(MARKER);
    if marker.exists() {
        return Ok(());
    }
    if registry.get(OFFSETS_TOPIC).is_some() {
        let local = partition_dir(data_dir, OFFSETS_TOPIC, 0);
        let aside = aside_dir(data_dir);
        if local.exists() && !aside.exists() {
            std::fs::rename(&local, &aside)
                .with_context(|| format!("setting {} aside", local.display()))?;
            tracing::warn!(dir = %aside.display(), "local committed offsets set aside; they are imported into the replicated {OFFSETS_TOPIC} once the cluster runs");
        }
        registry.remove(OFFSETS_TOPIC)?;
    }
    crate::registry::write_durably(&marker, b"1\n")
}

/// The latest committed offset of every (group, topic, partition) in a local offsets log.
///
/// # Errors
/// A segment could not be read.
pub fn read_local_offsets(dir: &Path) -> anyhow::Result<GroupOffsets> {
    let mut segments: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let base = keel_engine::segment::parse_log_file_name(path.file_name()?.to_str()?)?;
            Some((base, path))
        })
        .collect();
    segments.sort();
    let mut latest: BTreeMap<(String, String, u32), Option<i64>> = BTreeMap::new();
    for (_, path) in segments {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut rest = &bytes[..];
        // Whole batches until the first that does not check out: preallocated zeros or a
        // torn tail, which were never acknowledged.
        while let Ok(view) = BatchView::new_verified(rest) {
            for record in view.records()? {
                let Some(key) = record.key.as_deref().and_then(parse_offset_key) else {
                    continue;
                };
                let value = record
                    .value
                    .and_then(|v| <[u8; 8]>::try_from(&v[..]).ok())
                    .map(i64::from_be_bytes);
                latest.insert(key, value);
            }
            rest = &rest[view.len()..];
        }
    }
    let mut by_group: BTreeMap<String, Vec<(String, u32, i64)>> = BTreeMap::new();
    for ((group, topic, partition), offset) in latest {
        if let Some(offset) = offset {
            by_group
                .entry(group)
                .or_default()
                .push((topic, partition, offset));
        }
    }
    Ok(by_group)
}

/// Cluster mode, on the coordinator shard: imports a set-aside local offsets log, retrying
/// each second until every group is through, then deletes it.
pub async fn import(shard: Rc<Shard>) {
    let dir = aside_dir(&shard.config.data_dir);
    if !dir.exists() {
        return;
    }
    let mut pending = match read_local_offsets(&dir) {
        Ok(pending) => pending,
        Err(e) => {
            tracing::error!(error = %e, dir = %dir.display(), "cannot read the set-aside offsets; kept, not imported");
            return;
        }
    };
    let groups = pending.len();
    while !pending.is_empty() {
        glommio::timer::sleep(Duration::from_secs(1)).await;
        let names: Vec<String> = pending.keys().cloned().collect();
        for group in names {
            match import_group(&shard, &group, &pending[&group]).await {
                Ok(()) => {
                    pending.remove(&group);
                }
                Err(e) => tracing::debug!(%group, error = %e, "importing offsets; will retry"),
            }
        }
    }
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => tracing::info!(groups, "set-aside committed offsets imported"),
        Err(e) => tracing::warn!(error = %e, dir = %dir.display(), "imported, but not removed"),
    }
}

/// Commits to `group`'s coordinator the offsets it has none for.
async fn import_group(
    shard: &Rc<Shard>,
    group: &str,
    offsets: &[(String, u32, i64)],
) -> anyhow::Result<()> {
    let (node, _) = crate::handlers::cluster_admin::coordinator(shard, group)
        .await
        .map_err(|e| anyhow::anyhow!("no coordinator: {e:?}"))?;
    let mut stream = crate::cluster::call::connect(shard, node)
        .await
        .context("coordinator not reachable")?;
    for (index, chunk) in offsets.chunks(IMPORT_CHUNK).enumerate() {
        let correlation = 2 * index as u32;
        let fetch = Request::OffsetFetch {
            group: group.to_owned(),
            topics: entries(chunk, |(_, partition, _)| *partition),
        };
        let answer =
            crate::cluster::call::exchange(&mut stream, correlation, &fetch, ANSWER_FRAME_MAX);
        let Response::OffsetFetch {
            error: ErrorCode::None,
            topics,
        } = answer.await?
        else {
            anyhow::bail!("offset fetch refused");
        };
        let committed: BTreeMap<(String, u32), i64> = topics
            .into_iter()
            .flat_map(|t| {
                t.partitions
                    .into_iter()
                    .map(move |(p, o)| ((t.topic.clone(), p), o))
            })
            .collect();
        let missing: Vec<(String, u32, i64)> = chunk
            .iter()
            .filter(|(t, p, _)| committed.get(&(t.clone(), *p)).is_none_or(|o| *o < 0))
            .cloned()
            .collect();
        if missing.is_empty() {
            continue;
        }
        let commit = Request::OffsetCommit {
            group: group.to_owned(),
            generation: -1,
            member_id: String::new(),
            topics: entries(&missing, |(_, partition, offset)| (*partition, *offset)),
        };
        let answer =
            crate::cluster::call::exchange(&mut stream, correlation + 1, &commit, ANSWER_FRAME_MAX);
        let Response::OffsetCommit { topics } = answer.await? else {
            anyhow::bail!("offset commit answered with something else");
        };
        // A topic deleted since has nothing to keep an offset for.
        let refused = topics
            .iter()
            .flat_map(|t| &t.partitions)
            .find(|(_, error)| {
                !matches!(error, ErrorCode::None | ErrorCode::UnknownTopicOrPartition)
            });
        if let Some((partition, error)) = refused {
            anyhow::bail!("commit of partition {partition} refused: {error:?}");
        }
    }
    Ok(())
}

fn entries<T>(
    offsets: &[(String, u32, i64)],
    item: impl Fn(&(String, u32, i64)) -> T,
) -> Vec<TopicEntries<T>> {
    let mut by_topic: BTreeMap<String, Vec<T>> = BTreeMap::new();
    for entry in offsets {
        by_topic
            .entry(entry.0.clone())
            .or_default()
            .push(item(entry));
    }
    by_topic
        .into_iter()
        .map(|(topic, partitions)| TopicEntries { topic, partitions })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_offsets_log_is_set_aside_once_and_read_back_latest_per_key() {
        // Goal: upgrading keeps every group's last commit (tombstones drop the key) and
        // takes the local log out of the registry, only once.
        let dir = tempfile::tempdir().unwrap();
        let mut registry = Registry::load(dir.path()).unwrap();
        let entry = crate::registry::TopicEntry {
            partitions: 1,
            configs: BTreeMap::new(),
            id: None,
        };
        registry.put(OFFSETS_TOPIC, entry).unwrap();
        let local = partition_dir(dir.path(), OFFSETS_TOPIC, 0);
        std::fs::create_dir_all(&local).unwrap();
        let mut builder = keel_protocol::batch::BatchBuilder::new();
        let key = |g: &str, p: u32| crate::handlers::groups::offset_key(g, "orders", p);
        for (group, partition, value) in [
            ("a", 0, Some(5i64)),
            ("a", 0, Some(9)),
            ("b", 1, Some(3)),
            ("b", 1, None),
            ("c", 2, Some(7)),
        ] {
            builder.push(keel_protocol::batch::NewRecord {
                timestamp: 0,
                key: Some(bytes::Bytes::from(key(group, partition))),
                value: value.map(|v: i64| bytes::Bytes::copy_from_slice(&v.to_be_bytes())),
                headers: Vec::new(),
            });
        }
        let mut segment = builder.build().unwrap();
        segment.extend_from_slice(&[0u8; 4096]);
        std::fs::write(local.join(keel_engine::segment::log_file_name(0)), segment).unwrap();

        set_local_offsets_aside(dir.path(), &mut registry).unwrap();
        assert!(registry.get(OFFSETS_TOPIC).is_none());
        assert!(!local.exists());
        let read = read_local_offsets(&aside_dir(dir.path())).unwrap();
        assert_eq!(read["a"], vec![("orders".to_owned(), 0, 9)]);
        assert!(!read.contains_key("b"), "a tombstone deletes the offset");
        assert_eq!(read["c"], vec![("orders".to_owned(), 2, 7)]);
        // A second start (the replicated topic's partition 0 now in its place) is left alone.
        std::fs::create_dir_all(&local).unwrap();
        registry
            .put(
                OFFSETS_TOPIC,
                crate::registry::TopicEntry {
                    partitions: 8,
                    configs: BTreeMap::new(),
                    id: None,
                },
            )
            .unwrap();
        set_local_offsets_aside(dir.path(), &mut registry).unwrap();
        assert!(local.exists() && registry.get(OFFSETS_TOPIC).is_some());
    }
}
