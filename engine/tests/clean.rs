//! Log compaction: the cleaner keeps the latest record of every key at its offset, drops
//! tombstones once `delete_retention_ms` has passed, never touches the active segment or
//! records younger than the minimum lag, and a crash at any step of a pass (simulated disk)
//! leaves a log that opens, reads back whole batches, and still holds the latest record of
//! every key at its offset.

mod common;

use bytes::{Bytes, BytesMut};
use common::run;
use keel_engine::offset_map::OffsetMap;
use keel_engine::simdisk::{self, SimConfig};
use keel_engine::{CleanConfig, FsyncPolicy, Log, LogConfig, ManualClock};
use keel_protocol::batch::{BatchBuilder, BatchView, NewRecord};
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

const KEYS: u64 = 20;
const START_MS: i64 = 1_700_000_000_000;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 8 * 1024,
        index_interval_bytes: 512,
        fsync: FsyncPolicy::Always,
        retention_ms: None,
        segment_ms: None,
        // Large enough to hold cleaned segments too: their cached copies must go.
        tail_cache_bytes: 64 * 1024,
        ..LogConfig::default()
    }
}

/// What was appended: offset → (key, value; `None` a tombstone).
type Written = BTreeMap<i64, (String, Option<String>)>;

/// Appends `batches` batches of 5 keyed records over `KEYS` keys (every 7th a tombstone).
async fn fill(log: &Log, batches: u64, written: &mut Written, now: i64) {
    fill_keys(log, batches, written, now, |n| format!("key-{}", n % KEYS)).await;
}

/// As [`fill`], record `n` with the key `key(n)`.
async fn fill_keys(
    log: &Log,
    batches: u64,
    written: &mut Written,
    now: i64,
    key: impl Fn(u64) -> String,
) {
    for b in 0..batches {
        let mut builder = BatchBuilder::new();
        let mut records = Vec::new();
        for r in 0..5 {
            let n = b * 5 + r;
            let key = key(n);
            let value = (n % 7 != 3).then(|| format!("value-{n}-{}", "x".repeat(40)));
            builder.push(NewRecord {
                timestamp: now,
                key: Some(Bytes::from(key.clone())),
                value: value.clone().map(Bytes::from),
                headers: Vec::new(),
            });
            records.push((key, value));
        }
        let info = log
            .append(BytesMut::from(builder.build().unwrap().as_slice()))
            .await
            .unwrap();
        for (i, record) in records.into_iter().enumerate() {
            written.insert(info.base_offset + i as i64, record);
        }
    }
}

/// Every record in the log from its start: offset → (key, value).
async fn read_all(log: &Log) -> Written {
    let mut out = Written::new();
    let mut offset = log.log_start_offset();
    while offset < log.high_watermark() {
        let read = log.read(offset, 1 << 20).await.unwrap();
        let bytes = read.data.to_vec().unwrap();
        assert!(
            !bytes.is_empty(),
            "a read below the high watermark returns data ({offset})"
        );
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let view = BatchView::new_verified(rest).expect("whole, valid batches");
            for record in view.records().unwrap() {
                if record.offset < offset {
                    continue;
                }
                let text = |b: Bytes| String::from_utf8(b.to_vec()).unwrap();
                let previous = out.insert(
                    record.offset,
                    (text(record.key.unwrap()), record.value.map(text)),
                );
                assert!(previous.is_none(), "offset {} read twice", record.offset);
            }
            offset = view.next_offset();
            rest = &rest[view.len()..];
        }
    }
    out
}

/// The offset of each key's latest record.
fn latest(written: &Written) -> BTreeMap<String, i64> {
    written.iter().map(|(o, (k, _))| (k.clone(), *o)).collect()
}

/// `read` holds only records that were written, each at its own offset, and the latest
/// record of every key (tombstones too unless `tombstones_gone`).
fn check(read: &Written, written: &Written, tombstones_gone: bool) {
    for (offset, record) in read {
        assert_eq!(
            written.get(offset),
            Some(record),
            "offset {offset} keeps its record"
        );
    }
    for (key, offset) in latest(written) {
        let tombstone = written[&offset].1.is_none();
        if tombstone && tombstones_gone {
            assert!(
                read.values().all(|(k, _)| *k != key),
                "{key}: deleted, every record gone"
            );
        } else {
            assert!(
                read.contains_key(&offset),
                "{key}: its latest record at {offset} is kept"
            );
        }
    }
}

async fn sealed_and_synced(log: &Log) {
    // Sealed segments are finalized (written, synced, indexed) by the flusher.
    for _ in 0..200 {
        if log.durable_end_offset() == log.log_end_offset() {
            break;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
    }
    glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
}

#[test]
fn cleaning_keeps_the_latest_record_of_every_key_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let clock = ManualClock::new(START_MS);
        let log = Log::open_with_clock(&path, config(), Rc::new(clock.clone()))
            .await
            .unwrap();
        let mut written = Written::new();
        fill(&log, 120, &mut written, START_MS).await;
        sealed_and_synced(&log).await;
        let segments_before = log.segments().len();
        assert!(
            segments_before > 3,
            "several sealed segments ({segments_before})"
        );
        let mut map = OffsetMap::new(1 << 20);
        let clean = CleanConfig {
            min_cleanable_dirty_ratio: 0.0,
            ..CleanConfig::default()
        };
        let stats = log
            .clean(&mut map, &clean)
            .await
            .unwrap()
            .expect("a pass is due");
        assert!(
            stats.segments_rewritten > 0 && stats.bytes_after < stats.bytes_before,
            "{stats:?}"
        );
        let read = read_all(&log).await;
        check(&read, &written, false);
        // Cleaned up to the checkpoint: there, each record with a later one of its key
        // (below the checkpoint too) is gone, and nothing else.
        let cleaned: Written = written
            .range(..stats.checkpoint)
            .map(|(o, r)| (*o, r.clone()))
            .collect();
        let superseded = cleaned.len() - latest(&cleaned).len();
        assert!(stats.checkpoint > 0 && superseded > 0);
        assert_eq!(
            written.len() - read.len(),
            superseded,
            "every superseded record below the checkpoint is gone, nothing else"
        );
        assert_eq!(stats.records_dropped as usize, superseded);
        // Nothing new: the next pass has nothing dirty.
        assert!(log.clean(&mut map, &clean).await.unwrap().is_none());
        // Appending goes on at the same offsets, and a reopened log reads the same.
        fill(&log, 4, &mut written, START_MS).await;
        let read = read_all(&log).await;
        log.close().await.unwrap();
        let log = Log::open_with_clock(&path, config(), Rc::new(clock.clone()))
            .await
            .unwrap();
        assert_eq!(
            read_all(&log).await,
            read,
            "the cleaned log reads the same after a reopen"
        );
        // Once the tombstones are older than delete.retention.ms, they go too.
        clock.advance(clean.delete_retention_ms + 1);
        fill(
            &log,
            60,
            &mut written,
            START_MS + clean.delete_retention_ms + 1,
        )
        .await;
        sealed_and_synced(&log).await;
        log.clean(&mut map, &clean)
            .await
            .unwrap()
            .expect("due again");
        let read = read_all(&log).await;
        let active = log.segments().last().unwrap().base_offset;
        let old: Written = written
            .range(..active)
            .map(|(o, r)| (*o, r.clone()))
            .collect();
        check(
            &read.range(..active).map(|(o, r)| (*o, r.clone())).collect(),
            &old,
            false,
        );
        assert!(
            read.iter()
                .all(|(o, (_, v))| v.is_some() || *o >= log.segments()[0].next_offset),
            "tombstones of the oldest segment, older than the retention, are dropped"
        );
        log.close().await.unwrap();
    });
}

#[test]
fn batches_before_the_first_that_loses_a_record_are_copied_whole() {
    // Goal: a segment whose first batches keep every record (keys written once) and later
    // ones lose some: the copy starts with those first batches, byte for byte.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let clock = ManualClock::new(START_MS);
        let log = Log::open_with_clock(&path, config(), Rc::new(clock))
            .await
            .unwrap();
        let mut written = Written::new();
        fill_keys(&log, 10, &mut written, START_MS, |n| format!("once-{n}")).await;
        fill(&log, 120, &mut written, START_MS).await;
        sealed_and_synced(&log).await;
        let mut map = OffsetMap::new(1 << 20);
        let clean = CleanConfig {
            min_cleanable_dirty_ratio: 0.0,
            ..CleanConfig::default()
        };
        let stats = log.clean(&mut map, &clean).await.unwrap().expect("due");
        assert!(stats.segments_rewritten > 0, "{stats:?}");
        let read = read_all(&log).await;
        check(&read, &written, false);
        let once = written.values().filter(|(k, _)| k.starts_with("once-"));
        let kept = read.values().filter(|(k, _)| k.starts_with("once-"));
        assert_eq!(
            kept.count(),
            once.count(),
            "every record written once is kept"
        );
        let cleaned: Written = written
            .range(..stats.checkpoint)
            .map(|(o, r)| (*o, r.clone()))
            .collect();
        let superseded = cleaned.len() - latest(&cleaned).len();
        assert_eq!(written.len() - read.len(), superseded);
        log.close().await.unwrap();
    });
}

#[test]
fn young_records_and_the_active_segment_are_not_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let clock = ManualClock::new(START_MS);
        let log = Log::open_with_clock(&path, config(), Rc::new(clock.clone()))
            .await
            .unwrap();
        let mut written = Written::new();
        fill(&log, 80, &mut written, START_MS).await;
        sealed_and_synced(&log).await;
        let mut map = OffsetMap::new(1 << 20);
        let lagging = CleanConfig {
            min_compaction_lag_ms: 60_000,
            min_cleanable_dirty_ratio: 0.0,
            ..CleanConfig::default()
        };
        assert!(
            log.clean(&mut map, &lagging).await.unwrap().is_none(),
            "too young"
        );
        let ratio = CleanConfig {
            min_cleanable_dirty_ratio: 1.01,
            ..CleanConfig::default()
        };
        assert!(
            log.clean(&mut map, &ratio).await.unwrap().is_none(),
            "ratio not reached"
        );
        let forced = CleanConfig {
            max_compaction_lag_ms: 1,
            ..ratio
        };
        clock.advance(10);
        assert!(
            log.clean(&mut map, &forced).await.unwrap().is_some(),
            "max lag forces it"
        );
        log.close().await.unwrap();
    });
}

#[test]
fn a_small_map_cleans_in_several_passes() {
    // Goal: memory is the map's; a map smaller than the keys of the dirty part cleans up to
    // where it filled, and the next pass goes on from there.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let log = Log::open(&path, config()).await.unwrap();
        let mut written = Written::new();
        fill(&log, 120, &mut written, START_MS).await;
        sealed_and_synced(&log).await;
        let mut map = OffsetMap::new(10 * keel_engine::offset_map::ENTRY_BYTES);
        let clean = CleanConfig {
            min_cleanable_dirty_ratio: 0.0,
            ..CleanConfig::default()
        };
        let mut checkpoints = Vec::new();
        while let Some(stats) = log.clean(&mut map, &clean).await.unwrap() {
            checkpoints.push(stats.checkpoint);
            assert!(checkpoints.len() < 100);
        }
        assert!(checkpoints.len() > 1, "{checkpoints:?}");
        assert!(
            checkpoints.windows(2).all(|w| w[0] < w[1]),
            "{checkpoints:?}"
        );
        check(&read_all(&log).await, &written, false);
        log.close().await.unwrap();
    });
}

/// One crash point: build a log, crash `ops` operations into a cleaning pass, recover the
/// image and check it. Returns whether the pass finished before the crash point.
async fn crash_during_cleaning(ops: u64, root: &Path) -> bool {
    let live = root.join(format!("live-{ops}"));
    let recovered = root.join(format!("recovered-{ops}"));
    simdisk::install(SimConfig {
        seed: ops,
        ..SimConfig::default()
    });
    // The records' time: their tombstones are not yet past delete.retention.ms.
    let clock = || Rc::new(ManualClock::new(START_MS));
    let log = Log::open_with_clock(&live, config(), clock())
        .await
        .unwrap();
    let mut written = Written::new();
    // Batches that keep every record first: the copy of the first segment begins with them.
    fill_keys(&log, 4, &mut written, START_MS, |n| format!("once-{n}")).await;
    fill(&log, 60, &mut written, START_MS).await;
    sealed_and_synced(&log).await;
    let mut map = OffsetMap::new(1 << 20);
    let clean = CleanConfig {
        min_cleanable_dirty_ratio: 0.0,
        ..CleanConfig::default()
    };
    simdisk::crash_in(ops);
    let finished = log.clean(&mut map, &clean).await.is_ok() && !simdisk::report().crashed;
    let image = simdisk::crash_image();
    let _ = log.close().await;
    simdisk::uninstall();
    simdisk::write_image(&image, &live, &recovered).unwrap();
    let log = Log::open_with_clock(&recovered, config(), clock())
        .await
        .expect("the crash image opens");
    check(&read_all(&log).await, &written, false);
    log.close().await.unwrap();
    finished
}

#[test]
fn a_crash_at_every_step_of_a_pass_leaves_a_correct_log() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let points = run(move || async move {
        let mut ops = 1;
        while !crash_during_cleaning(ops, &root).await {
            ops += 1;
            assert!(ops < 2_000, "a pass finishes within 2,000 operations");
        }
        ops
    });
    assert!(points > 10, "a pass takes several operations ({points})");
}
