//! A batch's CRC is checked once: `Batch::checked` refuses what `append` would, and the log
//! takes a checked batch without checking it again.

mod common;

use common::{batch, batches, run};
use keel_engine::{Error, FsyncPolicy, Log, LogConfig};

#[test]
fn a_batch_is_crc_checked_once_before_the_log_takes_it() {
    // Goal: `Batch::checked` refuses what `append` would; a checked batch appends as is.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let log = Log::open(
            &path,
            LogConfig {
                fsync: FsyncPolicy::Never,
                ..LogConfig::default()
            },
        )
        .await
        .unwrap();
        let good = batch(1, 3, 10, 1_000);
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(matches!(
            keel_engine::Batch::checked(bad.clone()),
            Err(Error::InvalidBatch(_))
        ));
        assert!(matches!(log.append(bad).await, Err(Error::InvalidBatch(_))));
        let checked = keel_engine::Batch::checked(good).unwrap();
        assert_eq!(checked.view().unwrap().records_count(), 3);
        let info = log.append(checked).await.unwrap();
        assert_eq!((info.base_offset, info.last_offset), (0, 2));
        assert_eq!(batches(&log.read(0, 1 << 20).await.unwrap().data).len(), 1);
    });
}
