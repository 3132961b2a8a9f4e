//! Consumer groups end to end: coverage, failover within the session timeout, idle extra
//! members, and committed offsets that survive a broker crash.

use keel_client::{Admin, Consumer, OffsetReset, Producer, ProducerRecord};
use keel_tests::broker::{server_binary, Broker};
use keel_tests::in_process::InProcess;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Assignments = Arc<Mutex<BTreeMap<usize, Vec<u32>>>>;

struct Member {
    stop: Arc<AtomicBool>,
    crash: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

fn spawn_member(addr: String, index: usize, assignments: Assignments) -> Member {
    let stop = Arc::new(AtomicBool::new(false));
    let crash = Arc::new(AtomicBool::new(false));
    let (stop_flag, crash_flag) = (stop.clone(), crash.clone());
    let task = tokio::spawn(async move {
        let mut consumer = Consumer::builder(addr)
            .group("workers")
            .session_timeout(Duration::from_secs(2))
            .rebalance_timeout(Duration::from_secs(3))
            .max_wait(Duration::from_millis(50))
            .offset_reset(OffsetReset::Earliest)
            .build()
            .await
            .unwrap();
        consumer.subscribe(&["work"]).unwrap();
        while !stop_flag.load(Ordering::SeqCst) {
            if crash_flag.load(Ordering::SeqCst) {
                assignments.lock().unwrap().remove(&index);
                return; // dropped without leaving, like a killed process
            }
            consumer.poll(Duration::from_millis(50)).await.unwrap();
            let mine: Vec<u32> = consumer.assignment().into_iter().map(|(_, p)| p).collect();
            assignments.lock().unwrap().insert(index, mine);
        }
        assignments.lock().unwrap().remove(&index);
        consumer.close().await.unwrap();
    });
    Member { stop, crash, task }
}

/// Waits until the live members' assignments are disjoint, cover 0..6, and have `sizes`.
async fn settle(
    assignments: &Assignments,
    members: usize,
    mut sizes: Vec<usize>,
    deadline: Duration,
) -> Duration {
    sizes.sort_unstable();
    let started = Instant::now();
    loop {
        {
            let current = assignments.lock().unwrap();
            let mut all: Vec<u32> = current.values().flatten().copied().collect();
            all.sort_unstable();
            let mut got: Vec<usize> = current.values().map(Vec::len).collect();
            got.sort_unstable();
            if current.len() == members && all == (0..6).collect::<Vec<_>>() && got == sizes {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < deadline,
                "not settled after {deadline:?}: {current:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn members_share_partitions_fail_over_and_wait_idle() {
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path(), &["--shards", "2"]);
    let addr = broker.addr.to_string();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            Admin::connect(&addr)
                .await
                .unwrap()
                .create_topic("work", 6, &[])
                .await
                .unwrap();
            let assignments: Assignments = Arc::default();
            let mut members: Vec<Member> = (0..3)
                .map(|i| spawn_member(addr.clone(), i, assignments.clone()))
                .collect();
            settle(&assignments, 3, vec![2, 2, 2], Duration::from_secs(20)).await;

            // Kill one: its partitions move once its 2 s session has expired.
            members[0].crash.store(true, Ordering::SeqCst);
            let took = settle(&assignments, 2, vec![3, 3], Duration::from_secs(10)).await;
            assert!(took < Duration::from_secs(8), "failover took {took:?}");

            // Seven members on six partitions: one stays idle...
            for i in 3..8 {
                members.push(spawn_member(addr.clone(), i, assignments.clone()));
            }
            settle(
                &assignments,
                7,
                vec![0, 1, 1, 1, 1, 1, 1],
                Duration::from_secs(20),
            )
            .await;
            // ...and takes over when a busy one leaves.
            let busy = {
                let current = assignments.lock().unwrap();
                *current.iter().find(|(_, p)| !p.is_empty()).unwrap().0
            };
            members[busy].stop.store(true, Ordering::SeqCst);
            settle(
                &assignments,
                6,
                vec![1, 1, 1, 1, 1, 1],
                Duration::from_secs(20),
            )
            .await;
            for member in &members {
                member.stop.store(true, Ordering::SeqCst);
            }
            for member in members {
                let _ = member.task.await;
            }
        });
}

#[test]
fn commits_survive_a_broker_crash_and_consumers_resume_there() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&server_binary(), dir.path(), &["--shards", "2"]);
    let addr = broker.addr.to_string();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (first_read, committed) = runtime.block_on({
        let addr = addr.clone();
        async move {
            Admin::connect(&addr)
                .await
                .unwrap()
                .create_topic("ledger", 3, &[])
                .await
                .unwrap();
            let producer = Producer::builder(addr.clone()).build().await.unwrap();
            for i in 0..300 {
                producer
                    .send_and_forget(
                        ProducerRecord::new("ledger", format!("entry-{i}")).key(format!("k{i}")),
                    )
                    .await
                    .unwrap();
            }
            producer.close().await;
            let mut consumer = Consumer::builder(addr.clone())
                .group("auditors")
                .offset_reset(OffsetReset::Earliest)
                .build()
                .await
                .unwrap();
            consumer.subscribe(&["ledger"]).unwrap();
            let mut read = BTreeSet::new();
            while read.len() < 150 {
                for record in consumer.poll(Duration::from_millis(100)).await.unwrap() {
                    read.insert(String::from_utf8(record.value.unwrap().to_vec()).unwrap());
                }
            }
            consumer.commit_sync().await.unwrap();
            let mut committed = BTreeMap::new();
            for partition in 0..3 {
                let tp = ("ledger".to_string(), partition);
                committed.insert(partition, consumer.committed(&tp).await.unwrap());
                assert_eq!(
                    consumer.committed(&tp).await.unwrap(),
                    consumer.position(&tp)
                );
            }
            drop(consumer); // no leave, no further commits
            (read, committed)
        }
    });
    // A crash right after the commit is acknowledged.
    broker.stop_with(libc::SIGKILL);
    broker.restart();
    let addr = broker.addr.to_string();
    runtime.block_on(async move {
        let mut consumer = Consumer::builder(addr)
            .group("auditors")
            .offset_reset(OffsetReset::Earliest)
            .session_timeout(Duration::from_secs(2))
            .build()
            .await
            .unwrap();
        consumer.subscribe(&["ledger"]).unwrap();
        let mut second = BTreeSet::new();
        let mut first_offsets: BTreeMap<u32, i64> = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while first_read.len() + second.len() < 300
            || second.iter().any(|v| first_read.contains(v)) && second.len() < 300
        {
            assert!(
                Instant::now() < deadline,
                "resumed consumer read {} records",
                second.len()
            );
            for record in consumer.poll(Duration::from_millis(100)).await.unwrap() {
                first_offsets
                    .entry(record.partition)
                    .or_insert(record.offset);
                second.insert(String::from_utf8(record.value.unwrap().to_vec()).unwrap());
            }
            if first_read.union(&second).count() == 300 {
                break;
            }
        }
        for (partition, offset) in &first_offsets {
            assert_eq!(
                Some(*offset),
                committed[partition],
                "partition {partition} resumed at its committed offset"
            );
        }
        let all: BTreeSet<String> = first_read.union(&second).cloned().collect();
        assert_eq!(
            all.len(),
            300,
            "at-least-once: nothing lost across the crash"
        );
        assert!(
            second.iter().all(|v| !first_read.contains(v)),
            "nothing before the commit was read again"
        );
        consumer.close().await.unwrap();
    });
}

#[test]
fn admin_lists_describes_and_resets_groups() {
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path(), &["--shards", "2"]);
    let addr = broker.addr.to_string();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let admin = Admin::connect(&addr).await.unwrap();
            admin.create_topic("audit", 1, &[]).await.unwrap();
            let producer = Producer::builder(addr.clone()).build().await.unwrap();
            for i in 0..10 {
                producer
                    .send(ProducerRecord::new("audit", format!("a{i}")))
                    .await
                    .unwrap();
            }
            let mut consumer = Consumer::builder(addr.clone())
                .group("g")
                .offset_reset(OffsetReset::Earliest)
                .build()
                .await
                .unwrap();
            consumer.subscribe(&["audit"]).unwrap();
            let mut read = 0;
            while read < 10 {
                read += consumer
                    .poll(Duration::from_millis(100))
                    .await
                    .unwrap()
                    .len();
            }
            consumer.seek(&("audit".to_string(), 0), 4);
            consumer.commit_sync().await.unwrap();
            let described = admin.describe_group("g").await.unwrap();
            assert_eq!(described.state, "Stable");
            assert_eq!(described.members.len(), 1);
            assert_eq!(described.members[0].assignment[0].partitions, vec![0]);
            let refused = admin
                .reset_offsets("g", "audit", keel_client::ResetTo::Earliest)
                .await;
            assert!(
                matches!(
                    refused,
                    Err(keel_client::Error::Broker {
                        code: keel_protocol::api::ErrorCode::RebalanceInProgress,
                        ..
                    })
                ),
                "{refused:?}"
            );
            consumer.close().await.unwrap();

            assert!(admin
                .list_groups()
                .await
                .unwrap()
                .contains(&("g".to_string(), "Empty".to_string())));
            let offsets = admin.group_offsets("g", "audit").await.unwrap();
            assert_eq!(
                (
                    offsets[0].committed,
                    offsets[0].high_watermark,
                    offsets[0].lag()
                ),
                (4, 10, 6)
            );
            admin
                .reset_offsets("g", "audit", keel_client::ResetTo::Earliest)
                .await
                .unwrap();
            assert_eq!(
                admin.group_offsets("g", "audit").await.unwrap()[0].lag(),
                10
            );
            admin
                .reset_offsets("g", "audit", keel_client::ResetTo::Offset(7))
                .await
                .unwrap();
            let mut resumed = Consumer::builder(addr).group("g").build().await.unwrap();
            resumed.subscribe(&["audit"]).unwrap();
            let mut first = None;
            while first.is_none() {
                first = resumed
                    .poll(Duration::from_millis(100))
                    .await
                    .unwrap()
                    .first()
                    .map(|r| r.offset);
            }
            assert_eq!(first, Some(7), "a reset group resumes at the new offset");
            resumed.close().await.unwrap();
            producer.close().await;
        });
}

#[test]
fn consumer_offsets_are_compacted_and_the_latest_value_survives() {
    // Goal: the log cleaner compacts __consumer_offsets (cleanup.policy=compact: the latest
    // value per key kept) and a crash after cleaning loses no commit.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keel.toml");
    std::fs::write(
        &config,
        "offsets_segment_bytes = 4096\nlog_cleaner_backoff_ms = 100\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut broker = Broker::start(
        &server_binary(),
        &data,
        &["--config", config.to_str().unwrap(), "--shards", "2"],
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let addr = broker.addr.to_string();
    runtime.block_on(async move {
        let admin = Admin::connect(&addr).await.unwrap();
        admin.create_topic("ticks", 2, &[]).await.unwrap();
        for round in 0..100 {
            admin
                .reset_offsets("ticker", "ticks", keel_client::ResetTo::Offset(round))
                .await
                .unwrap();
        }
        admin
            .reset_offsets("other", "ticks", keel_client::ResetTo::Offset(7))
            .await
            .unwrap();
        // 202 commits of about 100 bytes each; once cleaned, the sealed 4 KiB segments
        // hold a few records each.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let offsets = admin
                .describe_topic("__consumer_offsets")
                .await
                .unwrap()
                .partitions[0]
                .clone();
            if offsets.size_bytes < 8 * 1024 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "old commits were not cleaned away: {offsets:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    broker.stop_with(libc::SIGKILL);
    broker.restart();
    let addr = broker.addr.to_string();
    runtime.block_on(async move {
        let admin = Admin::connect(&addr).await.unwrap();
        let ticker = admin.group_offsets("ticker", "ticks").await.unwrap();
        assert!(ticker.iter().all(|p| p.committed == 99), "{ticker:?}");
        let other = admin.group_offsets("other", "ticks").await.unwrap();
        assert!(other.iter().all(|p| p.committed == 7), "{other:?}");
    });
}
