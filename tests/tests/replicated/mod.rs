//! Helpers shared by the replicated-partition tests (replication.rs, reassignment.rs).
#![allow(dead_code)]

use keel_client::{Acks, Consumer, OffsetReset, Producer, ProducerRecord};
use keel_tests::cluster::{runtime, Cluster};
use keel_tests::tool::ok;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn create_replicated(cluster: &Cluster, topic: &str, partitions: u32, configs: &[&str]) {
    let partitions = partitions.to_string();
    let mut args = vec![
        "topic",
        "create",
        topic,
        "--partitions",
        &partitions,
        "--replication-factor",
        "3",
    ];
    for config in configs {
        args.extend(["--config", config]);
    }
    ok(&cluster.keel(0, &args));
    cluster.wait_for(Duration::from_secs(20), "the ISR is every replica", |c| {
        c.running()
            .all(|i| isr(c, i, topic, 0).is_some_and(|isr| isr.len() == 3))
    });
}

/// Partition `p`'s (leader, ISR) as node `i` describes it.
pub fn state(cluster: &Cluster, i: usize, topic: &str, p: usize) -> Option<(i64, Vec<u64>)> {
    let described = cluster.topic(i, topic)?;
    let partition = &described["partitions"][p];
    let isr = partition["isr"]
        .as_array()?
        .iter()
        .filter_map(|v| v.as_u64())
        .collect();
    Some((partition["leader"].as_i64()?, isr))
}

pub fn isr(cluster: &Cluster, i: usize, topic: &str, p: usize) -> Option<Vec<u64>> {
    state(cluster, i, topic, p).map(|(_, isr)| isr)
}

pub fn leader(cluster: &Cluster, i: usize, topic: &str, p: usize) -> Option<usize> {
    state(cluster, i, topic, p)
        .and_then(|(leader, _)| usize::try_from(leader).ok())
        .filter(|l| *l > 0)
        .map(|l| l - 1)
}

/// Reads partition 0 of `topic` from the start until `count` records or `timeout`.
pub fn read_all(bootstrap: String, topic: &str, at_least: usize, timeout: Duration) -> Vec<String> {
    let topic = topic.to_owned();
    runtime().block_on(async move {
        let mut consumer = Consumer::builder(bootstrap)
            .offset_reset(OffsetReset::Earliest)
            .build()
            .await
            .unwrap();
        consumer.assign([(topic, 0)]);
        let mut seen = Vec::new();
        let deadline = Instant::now() + timeout;
        while seen.len() < at_least && Instant::now() < deadline {
            let Ok(records) = consumer.poll(Duration::from_millis(300)).await else {
                continue;
            };
            for record in records {
                let value = std::str::from_utf8(record.value.as_ref().unwrap()).unwrap();
                seen.push(value.to_owned());
            }
        }
        seen
    })
}

/// A producer sending increasing numbers to partition 0 until `stop`, one at a time
/// through the pipeline; returns the numbers acknowledged and the failures.
/// (sent, acknowledged) times of each acknowledged record, as they happened.
pub type AckTimes = Arc<Mutex<Vec<(Instant, Instant)>>>;

pub fn produce_until(
    bootstrap: String,
    topic: &'static str,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeSet<u64>>>,
    ack_times: AckTimes,
) -> tokio::task::JoinHandle<Vec<String>> {
    runtime_handle().spawn(async move {
        let producer = Producer::builder(bootstrap)
            .acks(Acks::All)
            .retries(1_000, Duration::from_millis(20))
            .build()
            .await
            .unwrap();
        // Each delivery is awaited by its own task, so its time is when it was answered.
        let mut waiting = Vec::new();
        let mut next = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let record = ProducerRecord::new(topic, next.to_string()).partition(0);
            let sent = Instant::now();
            let delivery = producer.enqueue(record).await.unwrap();
            let (acked, ack_times, value) = (acked.clone(), ack_times.clone(), next);
            waiting.push(tokio::spawn(async move {
                match delivery.await {
                    Ok(_) => {
                        acked.lock().unwrap().insert(value);
                        ack_times.lock().unwrap().push((sent, Instant::now()));
                        None
                    }
                    Err(e) => Some(format!("{value}: {e}")),
                }
            }));
            next += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut failed = Vec::new();
        for task in waiting {
            if let Some(failure) = task.await.unwrap() {
                failed.push(failure);
            }
        }
        producer.close().await;
        failed
    })
}

pub fn runtime_handle() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(runtime)
}

/// Every acknowledged number read back once, in order; nothing read twice.
pub fn check_history(read: &[u64], acked: &BTreeSet<u64>) {
    let mut seen = BTreeSet::new();
    for pair in read.windows(2) {
        assert!(
            pair[0] < pair[1],
            "read in order, once: {} then {}",
            pair[0],
            pair[1]
        );
    }
    seen.extend(read.iter().copied());
    let lost: Vec<&u64> = acked.iter().filter(|v| !seen.contains(v)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged records lost, first {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}

pub fn replicas(cluster: &Cluster, i: usize, topic: &str, p: usize) -> Option<Vec<u64>> {
    let described = cluster.topic(i, topic)?;
    Some(
        described["partitions"][p]["replicas"]
            .as_array()?
            .iter()
            .filter_map(|v| v.as_u64())
            .collect(),
    )
}

/// Reads `topic` partition 0 back and checks every acknowledged number is there once, in
/// order ([`check_history`]).
pub fn check_read_back(bootstrap: String, topic: &str, acked: &BTreeSet<u64>) {
    let read: Vec<u64> = read_all(bootstrap, topic, acked.len(), Duration::from_secs(60))
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    check_history(&read, acked);
}

/// The broker's hash of a group id onto the 8 offsets partitions (FNV-1a).
pub fn offsets_partition(group: &str) -> usize {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in group.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash % 8) as usize
}

/// Waits until the others see broker `victim` (an index) down: its lease ended, its
/// partitions led elsewhere.
pub fn down(cluster: &Cluster, victim: usize) {
    let id = victim as u64 + 1;
    cluster.wait_for(Duration::from_secs(30), "the killed broker fenced", |c| {
        c.running()
            .all(|i| c.alive_brokers(i).is_some_and(|alive| !alive.contains(&id)))
    });
}
