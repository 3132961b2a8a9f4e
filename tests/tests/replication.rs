//! Replicated partitions with three real `keel-server` processes: replication factor 3,
//! `min.insync.replicas=2`, acks=all, `fsync=always`. Kill -9 of the leader under load loses
//! no acknowledged record; a killed follower shrinks the ISR and rejoins; acks=all is
//! refused while the ISR is too small.
//!
//! `KEEL_REPLICATION_ROUNDS=N` runs N leader kills in the first test (CI: 2).

use crate::replicated;

use keel_client::{Acks, Producer, ProducerRecord};
use keel_tests::cluster::Cluster;
use replicated::*;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// Kill -9 the leader under steady acks=all load, several rounds: a new leader serves within
// seconds, the killed broker restarts, truncates/catches up and rejoins the ISR, and every
// acknowledged record is read back once, in order.
#[test]
fn acknowledged_writes_survive_killing_the_leader() {
    let rounds: usize = std::env::var("KEEL_REPLICATION_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let mut cluster = Cluster::start(3);
    create_replicated(&cluster, "kept", 1, &["min.insync.replicas=2"]);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let ack_times = Arc::new(Mutex::new(Vec::new()));
    let producing = produce_until(
        cluster.bootstrap(),
        "kept",
        stop.clone(),
        acked.clone(),
        ack_times.clone(),
    );
    let mut failovers = Vec::new();
    for round in 0..rounds {
        let before = acked.lock().unwrap().len();
        cluster.wait_for(Duration::from_secs(20), "records acknowledged", |_| {
            acked.lock().unwrap().len() >= before + 200
        });
        let victim = leader(&cluster, 0, "kept", 0)
            .or_else(|| leader(&cluster, 1, "kept", 0))
            .expect("a leader");
        let killed_at = Instant::now();
        cluster.nodes[victim].stop_with(libc::SIGKILL);
        let other = (0..3).find(|i| *i != victim).unwrap();
        cluster.wait_for(Duration::from_secs(20), "a new leader", |c| {
            leader(c, other, "kept", 0).is_some_and(|l| l != victim)
        });
        let acked_at_move = acked.lock().unwrap().len();
        cluster.wait_for(
            Duration::from_secs(20),
            "writes acknowledged by the new leader",
            |_| acked.lock().unwrap().len() > acked_at_move + 60,
        );
        // A record sent after the kill can only be acknowledged by the new leader.
        let first = ack_times
            .lock()
            .unwrap()
            .iter()
            .filter(|(sent, _)| *sent > killed_at)
            .map(|(_, at)| *at)
            .min()
            .expect("acknowledged after the kill");
        failovers.push(first - killed_at);
        eprintln!(
            "round {round}: leader {} killed, {} acknowledged",
            victim + 1,
            acked.lock().unwrap().len()
        );
        cluster.nodes[victim].restart();
        cluster.wait_for(
            Duration::from_secs(30),
            "the restarted broker back in the ISR",
            |c| isr(c, other, "kept", 0).is_some_and(|isr| isr.contains(&(victim as u64 + 1))),
        );
    }
    stop.store(true, Ordering::SeqCst);
    let failed = runtime_handle().block_on(producing).unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(
        failed.is_empty(),
        "{} records failed for good, first {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    check_read_back(cluster.bootstrap(), "kept", &acked);
    failovers.sort();
    eprintln!(
        "failover (kill -9 of the leader to the first acknowledged write), {} rounds: median {:?}, max {:?}; {} records acknowledged",
        failovers.len(),
        failovers[failovers.len() / 2],
        failovers[failovers.len() - 1],
        acked.len()
    );
}

// A killed follower: writes go on with the ISR shrunk to the two others, and it rejoins
// once restarted and caught up. With min.insync.replicas=3, acks=all is refused
// (NotEnoughReplicas) while it is out, and accepted again once it is back.
#[test]
fn a_follower_leaves_and_rejoins_the_isr() {
    let mut cluster = Cluster::start(3);
    create_replicated(&cluster, "strict", 1, &["min.insync.replicas=3"]);
    create_replicated(&cluster, "relaxed", 1, &["min.insync.replicas=2"]);
    let lead = leader(&cluster, 0, "relaxed", 0).unwrap();
    // Both partitions need a follower that leads neither.
    let strict_leader = leader(&cluster, 0, "strict", 0).unwrap();
    let Some(follower) = (0..3).find(|i| *i != lead && *i != strict_leader) else {
        panic!("placement put both leaders on every broker?");
    };
    let producer_addr = cluster.bootstrap();
    let send = |topic: &'static str, value: &str, retries: u32| {
        let (bootstrap, value) = (producer_addr.clone(), value.to_owned());
        runtime_handle().block_on(async move {
            let producer = Producer::builder(bootstrap)
                .acks(Acks::All)
                .retries(retries, Duration::from_millis(100))
                .build()
                .await
                .unwrap();
            let result = producer
                .send(ProducerRecord::new(topic, value).partition(0))
                .await;
            producer.close().await;
            result
        })
    };
    send("strict", "before", 0).expect("all three in sync");
    cluster.nodes[follower].stop_with(libc::SIGKILL);
    cluster.wait_for(Duration::from_secs(20), "the ISR shrinks to two", |c| {
        isr(c, lead, "relaxed", 0).is_some_and(|isr| isr.len() == 2)
            && isr(c, lead, "strict", 0).is_some_and(|isr| isr.len() == 2)
    });
    for i in 0..20 {
        send("relaxed", &format!("while-{i}"), 5).expect("two in sync are enough");
    }
    let refused = send("strict", "refused", 0).expect_err("min.insync.replicas=3");
    assert!(
        refused.to_string().contains("in-sync replicas"),
        "NotEnoughReplicas: {refused}"
    );
    cluster.nodes[follower].restart();
    cluster.wait_for(Duration::from_secs(30), "the follower rejoins", |c| {
        isr(c, lead, "relaxed", 0).is_some_and(|isr| isr.len() == 3)
            && isr(c, lead, "strict", 0).is_some_and(|isr| isr.len() == 3)
    });
    send("strict", "after", 5).expect("in sync again");
    let read = read_all(cluster.bootstrap(), "relaxed", 20, Duration::from_secs(20));
    assert_eq!(read.len(), 20, "every acknowledged record");
    let metrics = cluster.nodes[follower].metrics();
    assert!(
        keel_tests::broker::metric(&metrics, "keel_replication_bytes_in_total", "") > 0.0,
        "the follower replicated bytes"
    );
}

// Replica fetches from what is not a follower of the partition, or with impossible
// epochs and offsets, are answered with errors; nothing past the high watermark leaks and
// the partition keeps replicating.
#[test]
fn hostile_replica_fetches_get_errors() {
    use keel_protocol::api::{
        ErrorCode, ReplicaFetch, ReplicaFetchPartition, Request, Response, TopicEntries,
    };
    let cluster = Cluster::start(3);
    create_replicated(&cluster, "guarded", 1, &["min.insync.replicas=2"]);
    let lead = leader(&cluster, 0, "guarded", 0).unwrap();
    let follower = (0..3).find(|i| *i != lead).unwrap() as u32 + 1;
    let epoch = cluster.topic(0, "guarded").unwrap()["partitions"][0]["leader_epoch"]
        .as_i64()
        .unwrap() as i32;
    let mut client = cluster.nodes[lead].client();
    let mut ask = |replica_id: u32, p: ReplicaFetchPartition| {
        let Response::ReplicaFetch { topics } = client.call(Request::ReplicaFetch(ReplicaFetch {
            replica_id,
            max_wait_ms: 50,
            max_bytes: u32::MAX,
            topics: vec![TopicEntries {
                topic: "guarded".into(),
                partitions: vec![p],
            }],
        })) else {
            panic!("a replica fetch answer")
        };
        topics[0].partitions[0].clone()
    };
    let partition = |leader_epoch, fetch_offset, last_fetched_epoch| ReplicaFetchPartition {
        partition: 0,
        leader_epoch,
        fetch_offset,
        last_fetched_epoch,
        partition_max_bytes: u32::MAX,
    };
    let not_a_replica = ask(77, partition(epoch, 0, -1));
    assert_eq!(not_a_replica.error, ErrorCode::InvalidRequest);
    assert!(not_a_replica.records.is_empty());
    assert_eq!(
        ask(follower, partition(epoch - 1, 0, -1)).error,
        ErrorCode::FencedLeaderEpoch
    );
    assert_eq!(
        ask(follower, partition(i32::MAX, 0, -1)).error,
        ErrorCode::UnknownLeaderEpoch
    );
    assert_eq!(
        ask(follower, partition(epoch, i64::MAX, -1)).error,
        ErrorCode::OffsetOutOfRange
    );
    assert_ne!(
        ask(follower, partition(epoch, i64::MIN, -1)).error,
        ErrorCode::None
    );
    let diverged = ask(follower, partition(epoch, 5, i32::MAX));
    assert_eq!(diverged.error, ErrorCode::None);
    assert!(diverged.records.is_empty());
    let unknown = {
        let Response::ReplicaFetch { topics } = client.call(Request::ReplicaFetch(ReplicaFetch {
            replica_id: follower,
            max_wait_ms: 0,
            max_bytes: 0,
            topics: vec![TopicEntries {
                topic: "nope".into(),
                partitions: vec![partition(0, 0, -1)],
            }],
        })) else {
            panic!("a replica fetch answer")
        };
        topics[0].partitions[0].error
    };
    assert_eq!(unknown, ErrorCode::UnknownTopicOrPartition);
    // The partition still replicates and acknowledges.
    let bootstrap = cluster.bootstrap();
    runtime_handle().block_on(async move {
        let producer = Producer::builder(bootstrap)
            .acks(Acks::All)
            .build()
            .await
            .unwrap();
        producer
            .send(ProducerRecord::new("guarded", "after").partition(0))
            .await
            .expect("acknowledged by the ISR");
        producer.close().await;
    });
}
