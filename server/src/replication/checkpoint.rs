//! High-watermark checkpoints (Kafka's `replication-offset-checkpoint`): every few seconds
//! each shard writes the high watermark of the replicated partitions it owns to
//! `hw-checkpoint.<shard>` in the data directory, so that after a restart a leader (or a
//! follower) starts from what the replicas had agreed on, instead of from its log start
//! until its followers fetch again ("latest" answered with the log start meanwhile).
//!
//! A checkpoint is never more than the replicas agreed (it is a past high watermark), so
//! starting from it never shows a consumer a record that is not committed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::shard::Shard;
use keel_engine::Log;

/// How often a shard writes its checkpoint when something moved.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);

const PREFIX: &str = "hw-checkpoint.";

/// Checkpointed high watermarks by partition.
pub type Marks = HashMap<(String, u32), i64>;

/// What a shard loaded at start and last wrote.
#[derive(Default)]
pub struct Checkpoints {
    loaded: Marks,
    written: Marks,
    last_write: Option<Instant>,
}

impl Checkpoints {
    /// Every shard's checkpoint in `data_dir`, read when the shard is made (before any
    /// shard writes its own).
    pub fn load(data_dir: &Path) -> Checkpoints {
        Checkpoints {
            loaded: load(data_dir),
            ..Checkpoints::default()
        }
    }

    /// The checkpointed high watermark of a partition, once: its log's own mark takes
    /// over from then on (a topic deleted and made again later never meets the old one).
    /// Every shard's file is read: a partition may have belonged to another shard under
    /// another `--shards`.
    pub fn take(&mut self, topic: &str, partition: u32) -> Option<i64> {
        self.loaded.remove(&(topic.to_owned(), partition))
    }
}

/// What the replicas agreed on so far: the log's cap, or for a log not capped since it
/// opened its last checkpoint (within the log), or nothing beyond its start.
pub fn agreed(replicas: &super::Replicas, topic: &str, partition: u32, log: &Log) -> i64 {
    log.replication_high_watermark()
        .or_else(|| replicas.checkpoints.borrow_mut().take(topic, partition))
        .map_or_else(
            || log.log_start_offset(),
            |mark| mark.clamp(log.log_start_offset(), log.local_end_offset()),
        )
}

fn file(data_dir: &Path, shard: usize) -> PathBuf {
    data_dir.join(format!("{PREFIX}{shard}"))
}

/// Every shard's checkpoint, the highest mark per partition. Unreadable lines are skipped
/// (a checkpoint only saves waiting for followers).
pub fn load(data_dir: &Path) -> Marks {
    let mut marks = Marks::new();
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return marks;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(PREFIX) || name.ends_with(".tmp") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for (topic, partition, mark) in text.lines().filter_map(parse_line) {
            let slot = marks.entry((topic, partition)).or_insert(mark);
            *slot = (*slot).max(mark);
        }
    }
    marks
}

fn parse_line(line: &str) -> Option<(String, u32, i64)> {
    let mut fields = line.split_whitespace();
    let topic = fields.next()?.to_owned();
    let partition = fields.next()?.parse().ok()?;
    let mark = fields.next()?.parse().ok().filter(|m: &i64| *m >= 0)?;
    fields.next().is_none().then_some((topic, partition, mark))
}

/// Writes this shard's checkpoint when the interval passed and a mark moved, on glommio's
/// blocking pool (its fsyncs never stall the shard).
pub async fn maybe_write(shard: &Shard) {
    let due = {
        let checkpoints = shard.replicas.checkpoints.borrow();
        checkpoints
            .last_write
            .is_none_or(|at| at.elapsed() >= CHECKPOINT_INTERVAL)
    };
    if !due {
        return;
    }
    let marks: Marks = shard
        .owned_logs()
        .into_iter()
        .filter_map(|(key, log)| Some((key, log.replication_high_watermark()?)))
        .collect();
    let first = {
        let mut checkpoints = shard.replicas.checkpoints.borrow_mut();
        let first = checkpoints.last_write.is_none();
        checkpoints.last_write = Some(Instant::now());
        if marks == checkpoints.written {
            return;
        }
        first
    };
    let mut lines: Vec<String> = marks
        .iter()
        .map(|((topic, partition), mark)| format!("{topic} {partition} {mark}\n"))
        .collect();
    lines.sort();
    let (data_dir, id, shards) = (shard.config.data_dir.clone(), shard.id, shard.config.shards);
    let written = glommio::executor()
        .spawn_blocking(move || {
            if first && id == 0 {
                // Files of shards this start does not have (a smaller `--shards`) were read
                // when the shards were made; they would only grow stale.
                for stale in shards..shards + 256 {
                    let _ = std::fs::remove_file(file(&data_dir, stale));
                }
            }
            crate::registry::write_durably(&file(&data_dir, id), lines.concat().as_bytes())
        })
        .await;
    match written {
        Ok(()) => shard.replicas.checkpoints.borrow_mut().written = marks,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "high-watermark checkpoint not written")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the highest mark of a partition across shard files wins; damaged lines are
    // skipped, never trusted.
    #[test]
    fn checkpoints_load_the_highest_mark_and_skip_damage() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(file(dir.path(), 0), "t 0 10\nt 1 4\nbad line\nt 2 -3\n").unwrap();
        std::fs::write(file(dir.path(), 1), "t 0 12\nu 0 7 extra\n").unwrap();
        let marks = load(dir.path());
        assert_eq!(marks.get(&("t".into(), 0)), Some(&12));
        assert_eq!(marks.get(&("t".into(), 1)), Some(&4));
        assert_eq!(marks.len(), 2, "{marks:?}");
        let mut checkpoints = Checkpoints::load(dir.path());
        assert_eq!(checkpoints.take("t", 0), Some(12));
        assert_eq!(checkpoints.take("t", 0), None, "used once");
        assert_eq!(checkpoints.take("t", 9), None);
    }
}
