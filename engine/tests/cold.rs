//! Cold reads: batches older than the tail cache come from the segment file through the
//! read-ahead, byte for byte, whatever the read sizes; a truncated log never serves bytes
//! read ahead before the truncation.

mod common;

use common::{batch, batches, run};
use keel_engine::{FsyncPolicy, Log, LogConfig, ReadData};
use std::hash::{DefaultHasher, Hash, Hasher};

/// A batch as (base offset, length, hash of its CRC and the bytes it covers; the log
/// stamps the leader epoch): failures print these, not bytes.
fn id(base: i64, bytes: &[u8]) -> (i64, usize, u64) {
    let mut hasher = DefaultHasher::new();
    bytes[17..].hash(&mut hasher);
    (base, bytes.len(), hasher.finish())
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes: 4096,
        tail_cache_bytes: 4 * 1024,
        fsync: FsyncPolicy::Never,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// Appends batches of uneven sizes (a few hundred bytes to ~70 KiB, so batches straddle
/// the read-ahead's 256 KiB chunks); returns each batch's (base offset, bytes).
async fn fill(log: &Log, tags: std::ops::Range<u64>) -> Vec<(i64, Vec<u8>)> {
    let mut appended = Vec::new();
    for tag in tags {
        let records = 1 + (tag as usize * 7) % 60;
        let bytes = batch(
            tag,
            records,
            40 + (tag as usize * 131) % 1100,
            1_000 + tag as i64,
        );
        let info = log.append(bytes.clone()).await.unwrap();
        let mut stamped = bytes.to_vec();
        stamped[..8].copy_from_slice(&info.base_offset.to_be_bytes());
        appended.push((info.base_offset, stamped));
    }
    log.flush().await.unwrap();
    appended
}

/// Reads from `from` to the high watermark with reads of `max_bytes`, counting the reads
/// served from disk.
async fn read_through(log: &Log, from: i64, max_bytes: u64) -> (Vec<(i64, i64, Vec<u8>)>, u64) {
    let (mut out, mut from_disk, mut next) = (Vec::new(), 0, from);
    while next < log.high_watermark() {
        let read = log.read(next, max_bytes).await.unwrap();
        from_disk += u64::from(matches!(read.data, ReadData::Disk(_)));
        let got = batches(&read.data);
        assert!(
            got[0].0 <= next && next <= got[0].1,
            "the batch asked for comes first"
        );
        next = got.last().unwrap().1 + 1;
        out.extend(got);
    }
    (out, from_disk)
}

#[test]
fn cold_reads_of_any_size_return_every_batch_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let log = Log::open(&path, config()).await.unwrap();
        let appended = fill(&log, 0..400).await;
        assert!(log.segments().len() > 2, "reads cross segments");
        for max_bytes in [1, 5_000, 100_000, 300_000, 1 << 20, 8 << 20] {
            let (read, from_disk) = read_through(&log, 0, max_bytes).await;
            assert_eq!(read.len(), appended.len(), "max_bytes {max_bytes}");
            for ((base, _, bytes), (want_base, want)) in read.iter().zip(&appended) {
                assert_eq!(
                    id(*base, bytes),
                    id(*want_base, want),
                    "max_bytes {max_bytes}"
                );
            }
            assert!(from_disk > 0, "old batches come from disk");
        }
        // A read from the middle of a batch, after reads elsewhere moved the read-ahead.
        let (middle, _) = (appended[123].0 + 1, ());
        let read = log.read(middle, 1).await.unwrap();
        let got = batches(&read.data);
        assert_eq!(
            id(got[0].0, &got[0].2),
            id(appended[123].0, &appended[123].1)
        );
        // Reopened: nothing read ahead survives, the bytes are the same.
        drop(log);
        let log = Log::open(&path, config()).await.unwrap();
        let (read, _) = read_through(&log, 0, 1 << 20).await;
        assert_eq!(read.len(), appended.len());
        for ((base, _, bytes), (want_base, want)) in read.iter().zip(&appended) {
            assert_eq!(id(*base, bytes), id(*want_base, want), "after reopening");
        }
    });
}

#[test]
fn a_truncated_log_never_serves_bytes_read_ahead_before_the_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let log = Log::open(&path, config()).await.unwrap();
        let first = fill(&log, 0..60).await;
        let cut = first[20].0;
        // Read the first batches: the read-ahead now holds the bytes after them.
        let read = log.read(0, 4096).await.unwrap();
        assert!(matches!(read.data, ReadData::Disk(_)));
        let resumed = batches(&read.data).last().unwrap().1 + 1;
        assert!(resumed <= cut);
        // As a follower would: cut at `cut` and take other batches there.
        log.truncate_to(cut).await.unwrap();
        let second = fill(&log, 1_000..1_040).await;
        assert_eq!(second[0].0, cut);
        let (read, _) = read_through(&log, resumed, 1 << 20).await;
        let want: Vec<_> = first[..20]
            .iter()
            .chain(&second)
            .filter(|(base, _)| *base >= resumed)
            .map(|(base, bytes)| id(*base, bytes))
            .collect();
        let got: Vec<_> = read
            .iter()
            .map(|(base, _, bytes)| id(*base, bytes))
            .collect();
        assert_eq!(
            got, want,
            "batches written after the cut, not the ones read ahead"
        );
    });
}
