//! What replication asks of a log: verbatim appends, reads to the log end, the high
//! watermark cap, and leader epochs that survive reopening and truncation.

mod common;

use bytes::BytesMut;
use common::{batch, batches, run};
use keel_engine::{Error, FsyncPolicy, Log, LogConfig};

fn config() -> LogConfig {
    LogConfig {
        fsync: FsyncPolicy::Always,
        retention_ms: None,
        ..LogConfig::default()
    }
}

// A follower stores the leader's batches byte for byte; it refuses one that does not start
// at its end and one whose epoch goes back.
#[test]
fn follower_appends_leader_batches_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let leader = Log::open(path.join("leader"), config()).await.unwrap();
        let follower = Log::open(path.join("follower"), config()).await.unwrap();
        leader.set_leader_epoch(3);
        for tag in 0..5 {
            leader.append(batch(tag, 3, 50, 1_000)).await.unwrap();
        }
        leader.set_leader_epoch(7);
        leader.append(batch(9, 2, 50, 1_000)).await.unwrap();
        // Followers read past the high watermark when it is capped.
        leader.set_replication_high_watermark(Some(6));
        assert_eq!(leader.high_watermark(), 6);
        assert_eq!(
            batches(&leader.read(0, 1 << 20).await.unwrap().data).len(),
            2
        );
        let sent = leader.read_replica(0, 1 << 20).await.unwrap();
        let sent = batches(&sent.data);
        assert_eq!(sent.len(), 6, "every batch up to the log end");
        for (_, _, bytes) in &sent {
            follower
                .append_replica(BytesMut::from(&bytes[..]))
                .await
                .unwrap();
        }
        let stored = batches(&follower.read(0, 1 << 20).await.unwrap().data);
        assert_eq!(stored, sent, "same offsets, epochs and CRCs");
        assert_eq!(follower.epoch_end_offset(3), Some((3, 15)));
        assert_eq!(follower.epoch_end_offset(5), Some((3, 15)));
        assert_eq!(follower.epoch_end_offset(7), Some((7, 17)));
        assert_eq!(follower.epoch_before(15), Some(3));
        assert_eq!(follower.epoch_before(16), Some(7));
        // Out of place: the leader's first batch again.
        let again = BytesMut::from(&sent[0].2[..]);
        assert!(matches!(
            follower.append_replica(again).await,
            Err(Error::InvalidAppend(_))
        ));
        // An older epoch after a newer one.
        let mut old = batch(1, 1, 10, 1_000);
        keel_protocol::batch::set_base_offset(&mut old, 17);
        keel_protocol::batch::set_partition_leader_epoch(&mut old, 2);
        assert!(matches!(
            follower.append_replica(old).await,
            Err(Error::InvalidAppend(_))
        ));
        assert_eq!(follower.log_end_offset(), 17, "nothing refused was stored");
        leader.close().await.unwrap();
        follower.close().await.unwrap();
    });
}

// Epochs are on disk before their batches; truncation drops the epochs it cuts off and a
// reopened log knows the rest (and rebuilds them from batch headers without the file).
#[test]
fn epochs_survive_reopen_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let log = Log::open(&path, config()).await.unwrap();
        for (epoch, tag) in [(0, 0), (0, 1), (2, 2), (4, 3), (4, 4)] {
            log.set_leader_epoch(epoch);
            log.append(batch(tag, 2, 20, 1_000)).await.unwrap();
        }
        assert_eq!(log.epoch_end_offset(3), Some((2, 6)));
        log.truncate_to(6).await.unwrap();
        assert_eq!(
            log.latest_epoch(),
            Some(2),
            "epoch 4 began at 6 and is gone"
        );
        log.close().await.unwrap();

        let log = Log::open(&path, config()).await.unwrap();
        assert_eq!(log.latest_epoch(), Some(2));
        assert_eq!(log.epoch_end_offset(1), Some((0, 4)));
        log.close().await.unwrap();

        std::fs::remove_file(path.join("leader-epoch-checkpoint")).unwrap();
        let log = Log::open(&path, config()).await.unwrap();
        assert_eq!(
            log.epoch_end_offset(0),
            Some((0, 4)),
            "rebuilt from headers"
        );
        assert_eq!(log.latest_epoch(), Some(2));
        assert!(path.join("leader-epoch-checkpoint").exists());
        log.close().await.unwrap();
    });
}

// Consumers wait for the replicated high watermark; replica fetches wait for the log end.
#[test]
fn waiters_follow_the_cap_and_the_log_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let log = Log::open(&path, config()).await.unwrap();
        log.set_replication_high_watermark(Some(0));
        let end = glommio::spawn_local({
            let log = log.clone();
            async move { log.wait_for_end(0).await }
        });
        let data = glommio::spawn_local({
            let log = log.clone();
            async move { log.wait_for_data(0).await }
        });
        log.append(batch(0, 1, 10, 1_000)).await.unwrap();
        end.await;
        assert_eq!(log.high_watermark(), 0, "held at the cap");
        assert_eq!(log.local_end_offset(), 1);
        log.set_replication_high_watermark(Some(1));
        data.await;
        assert_eq!(log.high_watermark(), 1);
        log.close().await.unwrap();
    });
}

// A follower whose next offset the leader's retention deleted starts again, empty, at the
// leader's log start and goes on from there; reopened, it starts there still.
#[test]
fn a_follower_behind_the_leaders_log_start_restarts_there() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let small = LogConfig {
            segment_bytes: 4 * 1024,
            ..config()
        };
        let leader = Log::open(path.join("leader"), small.clone()).await.unwrap();
        let follower = Log::open(path.join("follower"), small.clone())
            .await
            .unwrap();
        leader.set_leader_epoch(2);
        for tag in 0..40 {
            leader.append(batch(tag, 2, 200, 1_000)).await.unwrap();
        }
        let first = batches(&leader.read_replica(0, 1 << 20).await.unwrap().data);
        follower
            .append_replica(BytesMut::from(&first[0].2[..]))
            .await
            .unwrap();
        leader.roll().await.unwrap();
        leader.delete_before(60).await.unwrap();
        let start = leader.log_start_offset();
        assert!(
            start > follower.log_end_offset(),
            "the leader deleted past it"
        );
        assert!(matches!(
            follower.restart_at(1).await,
            Err(Error::InvalidAppend(_))
        ));
        follower.restart_at(start).await.unwrap();
        assert_eq!(follower.log_start_offset(), start);
        assert_eq!(follower.log_end_offset(), start);
        assert_eq!(follower.high_watermark(), start);
        assert_eq!(follower.latest_epoch(), None, "no batch, no epoch");
        let mut rest = Vec::new();
        while follower.log_end_offset() < leader.log_end_offset() {
            let read = leader.read_replica(follower.log_end_offset(), 1 << 20);
            for (base, last, bytes) in batches(&read.await.unwrap().data) {
                follower
                    .append_replica(BytesMut::from(&bytes[..]))
                    .await
                    .unwrap();
                rest.push((base, last, bytes));
            }
        }
        let mut stored = Vec::new();
        while stored.last().map_or(start, |(_, last, _)| last + 1) < follower.log_end_offset() {
            let from = stored.last().map_or(start, |(_, last, _)| last + 1);
            stored.extend(batches(&follower.read(from, 1 << 20).await.unwrap().data));
        }
        assert_eq!(stored, rest, "the leader's batches from its start");
        follower.close().await.unwrap();
        drop(follower);
        let follower = Log::open(path.join("follower"), small).await.unwrap();
        assert_eq!(follower.log_start_offset(), start);
        assert_eq!(follower.log_end_offset(), leader.log_end_offset());
        assert_eq!(follower.epoch_end_offset(2), Some((2, 80)));
        // Empty, it restarts again (no segment is left behind).
        follower.restart_at(200).await.unwrap();
        follower.close().await.unwrap();
        drop(follower);
        let follower = Log::open(path.join("follower"), config()).await.unwrap();
        assert_eq!(
            (follower.log_start_offset(), follower.log_end_offset()),
            (200, 200)
        );
        let files = std::fs::read_dir(path.join("follower"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".log")
            })
            .count();
        assert_eq!(files, 1, "one segment file");
    })
}
