//! `Log::read_tail`: the last bytes of a log as whole batches, from memory and files alike.

mod common;

use bytes::Bytes;
use common::{batch, batches, run};
use keel_engine::{FsyncPolicy, Log, LogConfig, ReadData};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 16 * 1024,
        index_interval_bytes: 1024,
        tail_cache_bytes: 4 * 1024,
        fsync: FsyncPolicy::Never,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// (base, last) of each batch `read_tail(max_bytes)` returns, checking that they are whole,
/// valid, dense and end at the log end, and that they hold at least `max_bytes` (or the
/// whole log) and at most one index interval and one batch more.
async fn tail(log: &Log, max_bytes: u64) -> Vec<(i64, i64)> {
    let bytes = log.read_tail(max_bytes).await.unwrap();
    let len = bytes.len() as u64;
    let got = batches(&ReadData::Memory(vec![Bytes::from(bytes)]));
    let ranges: Vec<(i64, i64)> = got.iter().map(|b| (b.0, b.1)).collect();
    for pair in ranges.windows(2) {
        assert_eq!(pair[1].0, pair[0].1 + 1, "dense batches");
    }
    assert_eq!(ranges.last().unwrap().1 + 1, log.log_end_offset());
    let whole_log = ranges[0].0 == 0;
    assert!(len >= max_bytes || whole_log, "{len} bytes for {max_bytes}");
    let largest = got.iter().map(|b| b.2.len() as u64).max().unwrap();
    assert!(
        len <= max_bytes + 1024 + largest,
        "{len} bytes for {max_bytes}"
    );
    ranges
}

#[test]
fn the_tail_of_a_log_is_read_as_whole_batches_before_and_after_reopen() {
    // Goal: a reopened partition rebuilds its producers from the end of its log; the bytes
    // it gets are whole batches up to the log end, across segments, memory and files.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let log = Log::open(&path, config()).await.unwrap();
        let mut appended = Vec::new();
        for tag in 0..300u64 {
            let count = 1 + (tag % 5) as usize;
            let info = log
                .append(batch(tag, count, 20 + (tag % 200) as usize, 1000))
                .await
                .unwrap();
            appended.push((info.base_offset, info.last_offset));
        }
        log.flush().await.unwrap();
        let mut before = Vec::new();
        for max_bytes in [1, 3_000, 20_000, 40_000] {
            before.push(tail(&log, max_bytes).await);
        }
        assert_eq!(before[0].len(), 1, "one byte asks for the last batch");
        assert!(before[2].len() < before[3].len());
        assert_eq!(tail(&log, 1 << 30).await, appended, "the whole log");
        log.close().await.unwrap();

        let log = Log::open(&path, config()).await.unwrap();
        assert_eq!(
            tail(&log, 1 << 30).await,
            appended,
            "the whole log, from files"
        );
        for max_bytes in [1, 20_000] {
            let after = tail(&log, max_bytes).await;
            assert!(appended.ends_with(&after));
        }
        log.close().await.unwrap();
    });
}
