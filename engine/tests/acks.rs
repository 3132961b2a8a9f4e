//! What an acknowledgement promises: `append_written` (a producer's acks=1) completes only
//! once the batch's bytes are in the segment file, even with `fsync=never`, so a killed
//! broker or a later failed write cannot take back an acknowledged batch.

mod common;

use common::{batch, run};
use keel_engine::{FsyncPolicy, Log, LogConfig};
use keel_protocol::batch::BatchView;

#[test]
fn a_written_append_is_in_the_file_when_it_completes() {
    // Goal: acks=1 was answered when the batch was accepted, before any write: 16 records
    // acknowledged that way were never written when the disk filled.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let config = LogConfig {
            fsync: FsyncPolicy::Never,
            ..LogConfig::default()
        };
        let log = Log::open(&path, config).await.unwrap();
        for tag in 0..20u64 {
            let info = log.append_written(batch(tag, 3, 100, 0)).await.unwrap();
            let file = std::fs::read(path.join("00000000000000000000.log")).unwrap();
            // Every batch up to this one reads back from the file, whole and valid.
            let mut rest = file.as_slice();
            let mut last = -1;
            while last < info.last_offset {
                let view = BatchView::new_verified(rest).expect("a written batch in the file");
                last = view.last_offset();
                rest = &rest[view.len()..];
            }
            assert_eq!(last, info.last_offset, "batch {tag}");
        }
        assert_eq!(
            log.durable_end_offset(),
            0,
            "nothing synced: written is not durable"
        );
        log.close().await.unwrap();
    });
}
