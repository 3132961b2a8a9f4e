//! Corruption handling on open: torn tails are cut, corruption elsewhere is an error
//! naming the file and position unless the caller asks to truncate.

mod common;

use common::{batch, batches, run};
use keel_engine::{Error, FsyncPolicy, Log, LogConfig, OnCorruption, Verify};
use std::path::{Path, PathBuf};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 * 1024,
        index_interval_bytes: 2048,
        fsync: FsyncPolicy::Always,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// Writes `count` batches of 4 records and returns (base offset, byte position, length,
/// segment path) of each.
fn write_log(dir: &Path, count: u64) -> Vec<(i64, u64, u64, PathBuf)> {
    let dir = dir.to_owned();
    run(move || async move {
        let log = Log::open(&dir, config()).await.unwrap();
        for tag in 0..count {
            log.append(batch(tag, 4, 200, tag as i64)).await.unwrap();
        }
        log.close().await.unwrap();
        let mut out = Vec::new();
        for segment in log.segments() {
            let bytes = std::fs::read(&segment.path).unwrap();
            let mut position = 0usize;
            while position < bytes.len() {
                let view =
                    keel_protocol::batch::BatchView::new_verified(&bytes[position..]).unwrap();
                out.push((
                    view.base_offset(),
                    position as u64,
                    view.len() as u64,
                    segment.path.clone(),
                ));
                position += view.len();
            }
        }
        out
    })
}

fn flip(path: &Path, position: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[position as usize] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

fn open(dir: &Path, config: LogConfig) -> Result<(i64, usize), Error> {
    let dir = dir.to_owned();
    run(move || async move {
        let log = Log::open(&dir, config).await?;
        let end = log.log_end_offset();
        let mut next = 0;
        let mut count = 0;
        while next < end {
            let read = log.read(next, 1 << 20).await?;
            for (_, last, _) in batches(&read.data) {
                next = last + 1;
                count += 1;
            }
        }
        log.close().await?;
        Ok((end, count))
    })
}

#[test]
fn flipped_byte_in_the_last_batch_is_a_torn_tail() {
    // Goal: damage at the very end loses only the damaged batch, and the file is cut there.
    let dir = tempfile::tempdir().unwrap();
    let batches = write_log(dir.path(), 20);
    let (base, position, len, path) = batches.last().unwrap().clone();
    flip(&path, position + len - 3);
    let (end, count) = open(dir.path(), config()).unwrap();
    assert_eq!(end, base);
    assert_eq!(count, 19);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        position,
        "torn bytes removed from the file"
    );
}

#[test]
fn half_written_last_batch_is_cut() {
    // Goal: a batch cut short by a crash disappears; everything before it stays.
    let dir = tempfile::tempdir().unwrap();
    let batches = write_log(dir.path(), 20);
    let (base, position, len, path) = batches.last().unwrap().clone();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(position + len / 2).unwrap();
    let (end, count) = open(dir.path(), config()).unwrap();
    assert_eq!((end, count), (base, 19));
}

#[test]
fn corruption_in_the_middle_of_the_last_segment_stops_the_open() {
    // Goal: a bad batch followed by good ones is corruption, reported with file and position.
    let dir = tempfile::tempdir().unwrap();
    let batches = write_log(dir.path(), 20);
    let (_, position, _, path) = batches[5].clone();
    flip(&path, position + 70);
    match open(dir.path(), config()) {
        Err(Error::Corrupt {
            path: bad,
            position: at,
            ..
        }) => {
            assert_eq!(bad, path);
            assert_eq!(at, position);
            let message = Error::Corrupt {
                path: bad,
                position: at,
                reason: "x".into(),
            }
            .to_string();
            assert!(
                message.contains("00000000000000000000.log")
                    && message.contains(&position.to_string()),
                "{message}"
            );
        }
        other => panic!("expected corruption error, got {other:?}"),
    }
    // Nothing was changed by the refused open.
    assert!(open(dir.path(), config()).is_err());
    let truncate = LogConfig {
        on_corruption: OnCorruption::Truncate,
        ..config()
    };
    let (end, count) = open(dir.path(), truncate).unwrap();
    assert_eq!((end, count), (batches[5].0, 5));
}

#[test]
fn corruption_in_an_older_segment() {
    // Goal: a damaged sealed segment is found by a full verify, named, and truncation drops
    // it and everything after.
    let dir = tempfile::tempdir().unwrap();
    let batches = write_log(dir.path(), 400);
    let first_path = batches[0].3.clone();
    let in_first: Vec<_> = batches
        .iter()
        .filter(|b| b.3 == first_path)
        .cloned()
        .collect();
    assert!(
        batches.iter().any(|b| b.3 != first_path),
        "need more than one segment"
    );
    let (base, position, _, _) = in_first[in_first.len() / 2].clone();
    flip(&first_path, position + 100);

    let full = LogConfig {
        verify: Verify::All,
        ..config()
    };
    match open(dir.path(), full.clone()) {
        Err(Error::Corrupt {
            path,
            position: at,
            reason,
        }) => {
            assert_eq!(path, first_path);
            assert_eq!(at, position);
            assert!(reason.contains("CRC"), "{reason}");
        }
        other => panic!("expected corruption error, got {other:?}"),
    }
    let truncate = LogConfig {
        on_corruption: OnCorruption::Truncate,
        ..full
    };
    let (end, _) = open(dir.path(), truncate).unwrap();
    assert_eq!(end, base);
    let logs = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count();
    assert_eq!(logs, 1, "later segments were removed");
}

#[test]
fn garbage_length_in_an_older_segment_tail_stops_the_default_open() {
    // Goal: the default open checks each sealed segment from its last index entry on.
    let dir = tempfile::tempdir().unwrap();
    let batches = write_log(dir.path(), 400);
    let first_path = batches[0].3.clone();
    let last_in_first = batches.iter().rfind(|b| b.3 == first_path).unwrap().clone();
    // The batch length field of the segment's last batch.
    flip(&first_path, last_in_first.1 + 9);
    match open(dir.path(), config()) {
        Err(Error::Corrupt { path, .. }) => assert_eq!(path, first_path),
        other => panic!("expected corruption error, got {other:?}"),
    }
}
