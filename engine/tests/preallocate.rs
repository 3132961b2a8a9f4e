//! The active segment file is extended ahead of its writes (fallocate) so direct-I/O writes
//! do not grow it; the reserved space is trimmed when a segment is sealed, and a crash image
//! holding it (zeros after the data) recovers every batch.

mod common;

use common::{batch, batches, run};
use keel_engine::{FsyncPolicy, Log, LogConfig};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn config(preallocate_bytes_max: u64) -> LogConfig {
    LogConfig {
        segment_bytes: 4 << 20,
        fsync: FsyncPolicy::Always,
        retention_ms: None,
        preallocate_bytes_max,
        ..LogConfig::default()
    }
}

/// Copies every file of `from` into `to`: what a crash would leave of synced data.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Appends batches of ~8 KiB; returns (active file size, its reserved bytes, data size,
/// sealed segments as (file size, data size)).
fn write_and_copy(dir: &Path, image: &Path, preallocate: u64, count: u64) -> (u64, u64, u64) {
    let (dir, image) = (dir.to_owned(), image.to_owned());
    run(move || async move {
        let log = Log::open(&dir, config(preallocate)).await.unwrap();
        for tag in 0..count {
            log.append(batch(tag, 8, 1000, tag as i64)).await.unwrap();
        }
        let active = log.segments().into_iter().find(|s| s.active).unwrap();
        let meta = std::fs::metadata(&active.path).unwrap();
        copy_dir(&dir, &image);
        log.close().await.unwrap();
        (meta.len(), meta.blocks() * 512, active.size)
    })
}

#[test]
fn the_active_file_is_reserved_ahead_and_a_crash_image_recovers_every_batch() {
    let temp = tempfile::tempdir().unwrap();
    let (dir, image) = (temp.path().join("log"), temp.path().join("image"));
    let (file_len, reserved, data) = write_and_copy(&dir, &image, 16 << 20, 100);
    assert!(data > 700_000, "100 batches of 8 KiB: {data}");
    assert!(
        file_len > data,
        "the file is extended past its data: {file_len} <= {data}"
    );
    assert!(
        reserved >= file_len - 4096,
        "the space is allocated, not a hole: {reserved} bytes of blocks for {file_len}"
    );

    // The crash image: zeros after the data. Every batch comes back, nothing is lost or
    // invented, and the file is cut back to its data.
    let (end, count, len_after) = run(move || async move {
        let log = Log::open(&image, config(16 << 20)).await.unwrap();
        let end = log.log_end_offset();
        let mut next = 0;
        let mut count = 0;
        while next < end {
            let read = log.read(next, 1 << 20).await.unwrap();
            for (base, last, _) in batches(&read.data) {
                assert_eq!(base, next, "batches follow each other");
                next = last + 1;
                count += 1;
            }
        }
        let active = log.segments().into_iter().find(|s| s.active).unwrap();
        let len = std::fs::metadata(&active.path).unwrap().len();
        log.close().await.unwrap();
        (end, count, len)
    });
    assert_eq!((end, count), (800, 100));
    assert_eq!(len_after, data, "recovery trims the reserved space");
}

#[test]
fn sealed_segments_are_trimmed_to_their_data() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("log");
    // ~9 MiB through 4 MiB segments: two rolls.
    let (_, _, _) = write_and_copy(&dir, &temp.path().join("image"), 16 << 20, 1100);
    let sizes = run(move || async move {
        let log = Log::open(&dir, config(16 << 20)).await.unwrap();
        let sizes: Vec<(u64, u64, bool)> = log
            .segments()
            .iter()
            .map(|s| (std::fs::metadata(&s.path).unwrap().len(), s.size, s.active))
            .collect();
        log.close().await.unwrap();
        sizes
    });
    assert!(sizes.len() >= 3, "rolled twice: {sizes:?}");
    for (file_len, size, active) in sizes {
        assert_eq!(file_len, size, "file length is the data (active: {active})");
    }
}

#[test]
fn without_preallocation_the_file_is_its_data_rounded_to_a_page() {
    let temp = tempfile::tempdir().unwrap();
    let (file_len, _, data) =
        write_and_copy(&temp.path().join("log"), &temp.path().join("image"), 0, 100);
    assert!(
        file_len <= data.div_ceil(4096) * 4096,
        "{file_len} vs {data}"
    );
}
