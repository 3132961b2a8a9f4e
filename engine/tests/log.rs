//! File-backed tests of the partition log: rolls, reads, retention, indexes, truncation.

mod common;

use common::{batch, batches, read_all, run, small_config};
use keel_engine::{Error, FsyncPolicy, Log, LogConfig};
use keel_protocol::batch::BatchView;
use std::rc::Rc;

#[test]
fn append_and_read_across_many_segment_rolls() {
    // Goal: dense offsets, whole batches from memory and from files, identical bytes after reopen.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let log = Log::open(&path, small_config(FsyncPolicy::Never))
            .await
            .unwrap();
        let mut expected = Vec::new();
        for tag in 0..300u64 {
            let count = 1 + (tag % 5) as usize;
            let info = log
                .append(batch(
                    tag,
                    count,
                    20 + (tag % 200) as usize,
                    1000 + tag as i64,
                ))
                .await
                .unwrap();
            assert_eq!(info.last_offset - info.base_offset + 1, count as i64);
            expected.push((info.base_offset, info.last_offset));
        }
        for pair in expected.windows(2) {
            assert_eq!(pair[1].0, pair[0].1 + 1, "offsets are dense");
        }
        log.flush().await.unwrap();
        let segments = log.segments();
        assert!(
            segments.len() > 5,
            "expected many rolls, got {}",
            segments.len()
        );
        assert!(segments
            .iter()
            .filter(|s| !s.active)
            .all(|s| s.size <= 16 * 1024));
        let stats_before = log.stats();
        let all = read_all(&log, 0, 3000).await;
        assert_eq!(all.iter().map(|b| (b.0, b.1)).collect::<Vec<_>>(), expected);
        let stats = log.stats();
        assert!(
            stats.reads_file > stats_before.reads_file,
            "old data comes from files"
        );
        assert!(
            stats.reads_memory > stats_before.reads_memory,
            "the tail comes from memory"
        );
        // Every single offset is found, including ones in the middle of batches.
        for offset in (0..log.log_end_offset()).step_by(7) {
            let read = log.read(offset, 1).await.unwrap();
            let got = batches(&read.data);
            assert!(got[0].0 <= offset && offset <= got[0].1);
        }
        let end = log.log_end_offset();
        log.close().await.unwrap();

        // Sealed segments hold exactly their bytes (zero padding trimmed) and have indexes.
        for segment in &segments {
            let on_disk = std::fs::metadata(&segment.path).unwrap().len();
            assert_eq!(on_disk, segment.size, "{}", segment.path.display());
            assert!(segment.path.with_extension("index").exists());
        }
        let log = Log::open(&path, small_config(FsyncPolicy::Never))
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), end);
        let again = read_all(&log, 0, 100_000).await;
        assert_eq!(again, all, "same bytes after reopen");
        // Appends continue where the log ended.
        let info = log.append(batch(999, 1, 10, 5000)).await.unwrap();
        assert_eq!(info.base_offset, end);
        log.close().await.unwrap();
    });
}

#[test]
fn always_acks_only_durable_batches_and_group_commits() {
    // Goal: with fsync=always an append completes after a sync, and concurrent appends share syncs.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let log = Log::open(&path, small_config(FsyncPolicy::Always))
            .await
            .unwrap();
        let info = log.append(batch(0, 3, 100, 1)).await.unwrap();
        assert_eq!(log.durable_end_offset(), info.last_offset + 1);
        assert_eq!(log.high_watermark(), info.last_offset + 1);
        let before = log.stats().fsyncs;
        let mut tasks = Vec::new();
        for appender in 0..16u64 {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                for round in 0..10u64 {
                    let info = log
                        .append(batch(appender * 100 + round, 1, 500, 2))
                        .await
                        .unwrap();
                    assert!(
                        log.durable_end_offset() > info.last_offset,
                        "acked before durable"
                    );
                }
            }));
        }
        for task in tasks {
            task.await;
        }
        let syncs = log.stats().fsyncs - before;
        assert!(
            syncs <= 80,
            "160 appends from 16 tasks should share syncs, used {syncs}"
        );
        assert_eq!(log.log_end_offset(), 3 + 160);
        assert_eq!(read_all(&log, 0, 1 << 20).await.len(), 161);
        log.close().await.unwrap();
    });
}

#[test]
fn bad_batches_are_rejected_and_not_stored() {
    // Goal: a CRC mismatch or trailing garbage is an error and the log is unchanged.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let log = Log::open(&path, small_config(FsyncPolicy::Always))
            .await
            .unwrap();
        let mut bad = batch(0, 1, 10, 1);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(log.append(bad).await, Err(Error::InvalidBatch(_))));
        let mut long = batch(0, 1, 10, 1);
        long.extend_from_slice(b"junk");
        assert!(matches!(
            log.append(long).await,
            Err(Error::InvalidAppend(_))
        ));
        assert_eq!(log.log_end_offset(), 0);
        assert!(matches!(
            log.read(1, 100).await,
            Err(Error::OffsetOutOfRange { .. })
        ));
        assert!(log.read(0, 100).await.unwrap().data.is_empty());
        log.close().await.unwrap();
    });
}

#[test]
fn missing_or_garbage_index_is_rebuilt() {
    // Goal: recovery rebuilds a sealed segment's index byte for byte.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let log = Log::open(&path, small_config(FsyncPolicy::Never))
            .await
            .unwrap();
        for tag in 0..100u64 {
            log.append(batch(tag, 3, 300, tag as i64)).await.unwrap();
        }
        log.close().await.unwrap();
        let segments = log.segments();
        let first = segments[0].path.with_extension("index");
        let second = segments[1].path.with_extension("index");
        let original_first = std::fs::read(&first).unwrap();
        let original_second = std::fs::read(&second).unwrap();
        assert!(!original_first.is_empty());
        std::fs::remove_file(&first).unwrap();
        std::fs::write(&second, vec![0u8; original_second.len()]).unwrap();
        let log = Log::open(&path, small_config(FsyncPolicy::Never))
            .await
            .unwrap();
        assert_eq!(std::fs::read(&first).unwrap(), original_first);
        assert_eq!(std::fs::read(&second).unwrap(), original_second);
        assert_eq!(read_all(&log, 0, 5000).await.len(), 100);
        log.close().await.unwrap();
    });
}

#[test]
fn timestamp_lookup_finds_the_first_record_at_or_after() {
    // Goal: ListOffsets-by-time semantics across segments, files and the tail cache.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let log = Log::open(&path, small_config(FsyncPolicy::Never))
            .await
            .unwrap();
        // Batch t has records with timestamps 10_000 + 10 t .. + 3.
        for tag in 0..200u64 {
            log.append(batch(tag, 4, 100, 10_000 + 10 * tag as i64))
                .await
                .unwrap();
        }
        assert_eq!(
            log.offset_for_timestamp(0).await.unwrap(),
            Some((0, 10_000))
        );
        assert_eq!(
            log.offset_for_timestamp(10_002).await.unwrap(),
            Some((2, 10_002))
        );
        assert_eq!(
            log.offset_for_timestamp(10_005).await.unwrap(),
            Some((4, 10_010))
        );
        let late = 10_000 + 10 * 150 + 3;
        assert_eq!(
            log.offset_for_timestamp(late).await.unwrap(),
            Some((150 * 4 + 3, late))
        );
        let last = 10_000 + 10 * 199 + 1;
        assert_eq!(
            log.offset_for_timestamp(last).await.unwrap(),
            Some((199 * 4 + 1, last))
        );
        assert_eq!(log.offset_for_timestamp(1 << 50).await.unwrap(), None);
        log.close().await.unwrap();
    });
}

#[test]
fn interval_policy_syncs_in_the_background() {
    // Goal: fsync=interval:MS makes data durable without further appends.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let config = small_config(FsyncPolicy::Interval(std::time::Duration::from_millis(20)));
        let log = Log::open(&path, config).await.unwrap();
        log.append(batch(0, 5, 10, 0)).await.unwrap();
        assert_eq!(log.high_watermark(), 5, "visible at once");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while log.durable_end_offset() < 5 {
            assert!(
                std::time::Instant::now() < deadline,
                "interval sync never happened"
            );
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(log.stats().fsyncs >= 1);
        log.close().await.unwrap();
    });
}

#[test]
fn reads_respect_max_bytes_and_segment_boundaries() {
    // Goal: at least one batch, never more than max_bytes otherwise, never two segments.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let log = Log::open(&path, small_config(FsyncPolicy::Never))
            .await
            .unwrap();
        for tag in 0..100u64 {
            log.append(batch(tag, 1, 900, 0)).await.unwrap();
        }
        log.flush().await.unwrap();
        let one = log.read(0, 10).await.unwrap();
        assert_eq!(
            batches(&one.data).len(),
            1,
            "one batch even when it exceeds max_bytes"
        );
        let some = log.read(0, 5000).await.unwrap();
        assert!(some.data.len() <= 5000);
        let segment_end = log.segments()[0].next_offset;
        let all = log.read(0, 1 << 30).await.unwrap();
        assert_eq!(
            batches(&all.data).last().unwrap().1,
            segment_end - 1,
            "stops at the segment end"
        );
        let view_len = BatchView::new(&batches(&one.data)[0].2).unwrap().len();
        assert!(view_len > 10);
        log.close().await.unwrap();
    });
}

#[test]
fn small_write_chunks_split_batches_across_whole_page_writes() {
    // Goal: with writes smaller than batches, batches straddle writes and still read back
    // byte for byte, before and after reopen, under every fsync policy.
    for fsync in [FsyncPolicy::Never, FsyncPolicy::Always] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        run(move || async move {
            let config = LogConfig {
                write_chunk_bytes: 8192,
                unwritten_bytes_max: 64 * 1024,
                segment_bytes: 256 * 1024,
                tail_cache_bytes: 0,
                ..small_config(fsync)
            };
            let log = Log::open(&path, config.clone()).await.unwrap();
            let mut tasks = Vec::new();
            for appender in 0..4u64 {
                let log = log.clone();
                tasks.push(glommio::spawn_local(async move {
                    let mut sent = Vec::new();
                    for round in 0..60u64 {
                        let tag = appender * 1000 + round;
                        let bytes = batch(
                            tag,
                            1 + (round % 3) as usize,
                            700 + (tag as usize * 131) % 5000,
                            tag as i64,
                        );
                        let info = log.append(bytes.clone()).await.unwrap();
                        sent.push((info.base_offset, bytes));
                    }
                    sent
                }));
            }
            let mut sent = Vec::new();
            for task in tasks {
                sent.extend(task.await);
            }
            log.flush().await.unwrap();
            assert!(log.stats().writes > 20, "many small writes");
            let check = |all: Vec<(i64, i64, Vec<u8>)>| {
                assert_eq!(all.len(), sent.len());
                for (base, original) in &sent {
                    let (_, _, stored) = all.iter().find(|b| b.0 == *base).unwrap();
                    // Offsets and epoch differ; the CRC-covered part is identical.
                    assert_eq!(&stored[21..], &original[21..], "batch at {base}");
                }
            };
            check(read_all(&log, 0, 50_000).await);
            log.close().await.unwrap();
            let log = Log::open(&path, config).await.unwrap();
            check(read_all(&log, 0, 50_000).await);
            log.close().await.unwrap();
        });
    }
}

#[test]
fn accepted_appends_become_durable_and_wake_waiting_readers() {
    // Goal: acks=1-style appends return at once yet are synced under `always`, and a reader
    // waiting at the end wakes when data becomes visible.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let log = Log::open(&path, small_config(FsyncPolicy::Always))
            .await
            .unwrap();
        let waiting = {
            let log = log.clone();
            glommio::spawn_local(async move {
                log.wait_for_data(0).await;
                log.high_watermark()
            })
        };
        let info = log.append_accepted(batch(1, 3, 10, 0)).await.unwrap();
        assert_eq!((info.base_offset, info.last_offset), (0, 2));
        assert_eq!(
            waiting.await,
            3,
            "the reader woke once the batch was visible"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while log.durable_end_offset() < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "accepted batch never synced"
            );
            glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
        }
        // A reader already past the end keeps waiting until the next append.
        let waiting = {
            let log = log.clone();
            glommio::spawn_local(async move { log.wait_for_data(3).await })
        };
        glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
        log.append(batch(2, 1, 10, 0)).await.unwrap();
        waiting.await;
        assert_eq!(log.high_watermark(), 4);
        log.close().await.unwrap();
    });
}

#[test]
fn a_shared_tail_cache_budget_bounds_every_log_that_shares_it() {
    // Goal: each log's tail cache was bounded only by its own `tail_cache_bytes`, so many
    // partitions on one shard could hold their sum. Logs given a share of a budget keep
    // at most that share of durable batches, from their next write on, and down to a
    // smaller share as soon as they are trimmed.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let config = LogConfig {
            tail_cache_bytes: 256 * 1024,
            ..small_config(FsyncPolicy::Always)
        };
        let share: keel_engine::TailShare = Rc::new(std::cell::Cell::new(32 * 1024));
        let mut logs = Vec::new();
        for i in 0..4 {
            let log = Log::open(path.join(format!("p-{i}")), config.clone())
                .await
                .unwrap();
            log.share_tail_cache(share.clone());
            for tag in 0..40u64 {
                log.append(batch(tag, 1, 4_000, tag as i64)).await.unwrap();
            }
            logs.push(log);
        }
        for log in &logs {
            let cached = log.trim_tail_cache();
            assert!(cached <= 32 * 1024, "{cached} bytes cached past the share");
            assert!(cached >= 16 * 1024, "the share is used: {cached}");
        }
        share.set(8 * 1024);
        for log in &logs {
            assert!(log.trim_tail_cache() <= 8 * 1024);
            // Reads past the cache come from the files, whole.
            assert_eq!(read_all(log, 0, 1 << 20).await.len(), 40);
        }
        // Without a share, only the log's own limit applies.
        let alone = Log::open(path.join("alone"), config.clone()).await.unwrap();
        for tag in 0..40u64 {
            alone
                .append(batch(tag, 1, 4_000, tag as i64))
                .await
                .unwrap();
        }
        assert!(alone.trim_tail_cache() > 100 * 1024);
    });
}
