//! Long-poll waiters are bounded: readers that give up do not pile up on an idle log.

mod common;

use common::{batch, run};
use keel_engine::{FsyncPolicy, Log, LogConfig};
use std::time::Duration;

#[test]
fn abandoned_waits_on_an_idle_log_are_pruned() {
    // Goal: every timed-out long poll once left its waiter behind until data arrived;
    // a consumer polling an idle partition grew the list without bound.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run(move || async move {
        let config = LogConfig {
            fsync: FsyncPolicy::Always,
            ..LogConfig::default()
        };
        let log = Log::open(&path, config).await.unwrap();
        for _ in 0..10_000 {
            // A long poll that times out at once: the wait is dropped unfinished.
            let wait = log.wait_for_data(0);
            let timed_out = glommio::timer::timeout(Duration::from_micros(1), async {
                wait.await;
                Ok(())
            })
            .await;
            assert!(timed_out.is_err(), "nothing to wake for");
        }
        let parked = log.stats().data_waiters;
        assert!(parked <= 128, "{parked} abandoned waiters kept");
        // A live waiter among them is still woken.
        let waiting = {
            let log = log.clone();
            glommio::spawn_local(async move { log.wait_for_data(0).await })
        };
        // Wait (with a deadline) until the reader is parked, then wake it with data.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while log.stats().data_waiters == parked {
            assert!(
                std::time::Instant::now() < deadline,
                "the reader never parked"
            );
            glommio::executor().yield_task_queue_now().await;
        }
        log.append(batch(1, 1, 10, 0)).await.unwrap();
        waiting.await;
        assert_eq!(log.stats().data_waiters, 0);
        log.close().await.unwrap();
    });
}
