//! Trimming a log: retention by bytes and time, truncation, rolls by age and size.

mod common;

use common::{batch, batches, read_all, run, small_config};
use keel_engine::{Error, FsyncPolicy, Log, LogConfig, ManualClock, ReadData};
use std::rc::Rc;

#[test]
fn retention_by_bytes_and_time_deletes_old_segments_and_open_ranges_survive() {
    // Goal: whole old segments go, log start advances, files vanish, reads already made keep their bytes.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let clock = ManualClock::new(1_000_000);
        let config = LogConfig {
            retention_bytes: Some(40 * 1024),
            ..small_config(FsyncPolicy::Never)
        };
        let log = Log::open_with_clock(&path, config, Rc::new(clock.clone()))
            .await
            .unwrap();
        for tag in 0..200u64 {
            log.append(batch(tag, 2, 400, 1_000_000 + tag as i64))
                .await
                .unwrap();
        }
        log.flush().await.unwrap();
        let before = log.segments();
        let held = log.read(0, 1 << 20).await.unwrap();
        let ReadData::Disk(_) = &held.data else {
            panic!("offset 0 must come from a file")
        };
        let held_bytes = held.data.to_vec().unwrap();
        let deleted = log.enforce_retention().await.unwrap();
        assert!(!deleted.is_empty());
        assert_eq!(deleted[0], 0);
        assert!(
            log.size_bytes() <= 40 * 1024 + 16 * 1024,
            "size {} above the limit",
            log.size_bytes()
        );
        assert!(
            log.size_bytes() >= 40 * 1024 - 16 * 1024,
            "deleted too much: {}",
            log.size_bytes()
        );
        assert_eq!(log.log_start_offset(), log.segments()[0].base_offset);
        for base in &deleted {
            let gone = before.iter().find(|s| s.base_offset == *base).unwrap();
            assert!(!gone.path.exists(), "{} still on disk", gone.path.display());
        }
        assert_eq!(
            held.data.to_vec().unwrap(),
            held_bytes,
            "a read's bytes stay"
        );
        assert!(matches!(
            log.read(0, 100).await,
            Err(Error::OffsetOutOfRange { .. })
        ));
        let start = log.log_start_offset();
        assert_eq!(
            batches(&log.read(start, 100).await.unwrap().data)[0].0,
            start
        );

        // Time: everything but the active segment is older than 1 s once the clock moves on.
        log.close().await.unwrap();
        let config = LogConfig {
            retention_ms: Some(1000),
            ..small_config(FsyncPolicy::Never)
        };
        let log = Log::open_with_clock(&path, config, Rc::new(clock.clone()))
            .await
            .unwrap();
        assert!(
            log.enforce_retention().await.unwrap().is_empty(),
            "nothing is a second old yet"
        );
        clock.advance(10_000);
        log.enforce_retention().await.unwrap();
        assert_eq!(log.segments().len(), 1, "only the active segment is kept");
        log.close().await.unwrap();
    });
}

#[test]
fn truncate_drops_the_suffix_and_appends_continue() {
    // Goal: truncation inside a batch, at a segment boundary, survives reopen.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let log = Log::open(&path, small_config(FsyncPolicy::Always))
            .await
            .unwrap();
        for tag in 0..100u64 {
            log.append(batch(tag, 2, 300, tag as i64)).await.unwrap();
        }
        // Offset 101 is the second record of batch 50 (offsets 100, 101): the batch goes.
        log.truncate_to(101).await.unwrap();
        assert_eq!(log.log_end_offset(), 100);
        assert_eq!(log.high_watermark(), 100);
        let info = log.append(batch(500, 2, 300, 1)).await.unwrap();
        assert_eq!(info.base_offset, 100);
        let boundary = log.segments()[2].base_offset;
        log.truncate_to(boundary).await.unwrap();
        assert_eq!(log.log_end_offset(), boundary);
        assert_eq!(
            log.segments().len(),
            3,
            "the truncated segment stays as the empty active one"
        );
        log.close().await.unwrap();
        let log = Log::open(&path, small_config(FsyncPolicy::Always))
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), boundary);
        let all = read_all(&log, 0, 1 << 20).await;
        assert_eq!(all.last().unwrap().1, boundary - 1);
        log.append(batch(600, 1, 10, 1)).await.unwrap();
        assert_eq!(log.log_end_offset(), boundary + 1);
        log.close().await.unwrap();
    });
}

#[test]
fn roll_by_age() {
    // Goal: segment_ms rolls a non-empty segment once it is old enough.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let clock = ManualClock::new(0);
        let config = LogConfig {
            segment_ms: Some(1000),
            ..small_config(FsyncPolicy::Never)
        };
        let log = Log::open_with_clock(&path, config, Rc::new(clock.clone()))
            .await
            .unwrap();
        log.append(batch(0, 1, 10, 0)).await.unwrap();
        clock.advance(500);
        log.append(batch(1, 1, 10, 0)).await.unwrap();
        assert_eq!(log.segments().len(), 1);
        clock.advance(600);
        log.append(batch(2, 1, 10, 0)).await.unwrap();
        assert_eq!(log.segments().len(), 2);
        assert_eq!(log.segments()[1].base_offset, 2);
        log.close().await.unwrap();
    });
}

#[test]
fn roll_and_delete_before_drop_whole_old_segments() {
    // Goal: compaction's building blocks: seal on demand, delete segments below an offset.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let log = Log::open(&path, small_config(FsyncPolicy::Always))
            .await
            .unwrap();
        for tag in 0..10u64 {
            log.append(batch(tag, 1, 10, 0)).await.unwrap();
        }
        log.roll().await.unwrap();
        log.roll().await.unwrap(); // an empty active segment is not rolled again
        assert_eq!(log.segments().len(), 2);
        for tag in 10..15u64 {
            log.append(batch(tag, 1, 10, 0)).await.unwrap();
        }
        assert!(
            log.delete_before(5).await.unwrap().is_empty(),
            "offsets 5..10 still live in the first segment"
        );
        assert_eq!(log.delete_before(10).await.unwrap(), vec![0]);
        assert_eq!(log.log_start_offset(), 10);
        assert!(matches!(
            log.read(3, 100).await,
            Err(Error::OffsetOutOfRange { .. })
        ));
        assert_eq!(batches(&log.read(10, 1 << 20).await.unwrap().data)[0].0, 10);
        assert!(
            log.delete_before(100).await.unwrap().is_empty(),
            "the active segment stays"
        );
        log.close().await.unwrap();
        let log = Log::open(&path, small_config(FsyncPolicy::Always))
            .await
            .unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (10, 15));
        log.close().await.unwrap();
    });
}
