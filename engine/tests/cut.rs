//! A cut of the log (a follower's truncation, a resume) that fails half-way through is
//! done again by the next try, and never leaves a segment past the log's end.

mod common;

use common::{batch, batches, run};
use keel_engine::simdisk::{self, SimConfig};
use keel_engine::{FsyncPolicy, Log, LogConfig};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 16 * 1024,
        index_interval_bytes: 1024,
        fsync: FsyncPolicy::Always,
        retention_ms: None,
        segment_ms: None,
        ..LogConfig::default()
    }
}

/// Every offset from the log start to its end, read back: dense, whole batches.
async fn check_dense(log: &Log, what: &str) {
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let read = log.read(next, 1 << 20).await.expect("read");
        let got = batches(&read.data);
        assert!(!got.is_empty(), "{what}: empty read at {next}");
        for (base, last, _) in got {
            assert_eq!(base, next, "{what}: offsets are dense");
            next = last + 1;
        }
    }
}

#[test]
fn a_truncation_whose_segment_removal_failed_is_done_again_and_recovers_dense() {
    // Goal: a cut forgot the segments after the cut point before removing their files.
    // When a removal failed (EIO), the log went offline; `resume` then cut at the written
    // end within what it still knew, so the log claimed offsets only the forgotten
    // segment held ("empty read"), and that file came back at the next open.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        simdisk::install(SimConfig {
            seed: 1,
            crash_after_ops: None,
            fail_op: None,
            full_from_op: None,
            short_write_op: None,
        });
        let log = Log::open(&path, config()).await.unwrap();
        for tag in 0..120u64 {
            log.append(batch(tag, 2, 400, 1_000)).await.unwrap();
        }
        log.flush().await.unwrap();
        let segments = log.segments();
        assert!(segments.len() >= 3, "{} segments", segments.len());
        let end = log.log_end_offset();
        let cut = segments[0].next_offset - 4;
        // The cut's first operation, removing the second segment's file, fails.
        simdisk::fail_in(1);
        let failed = log.truncate_to(cut).await;
        assert!(failed.is_err(), "the removal failed");
        assert!(log.is_offline());
        log.resume().await.unwrap();
        assert_eq!(log.log_end_offset(), end, "nothing was cut");
        check_dense(&log, "after resume").await;
        log.truncate_to(cut).await.unwrap();
        assert_eq!(log.log_end_offset(), cut);
        check_dense(&log, "after the cut").await;
        log.close().await.unwrap();
        drop(log);
        simdisk::uninstall();

        let log = Log::open(&path, config()).await.unwrap();
        assert_eq!(
            log.log_end_offset(),
            cut,
            "no segment past the cut came back"
        );
        assert_eq!(log.segments().len(), 1);
        check_dense(&log, "reopened").await;
        log.close().await.unwrap();
    });
}
