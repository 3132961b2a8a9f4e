//! Replicated partitions with three real `keel-server` processes: replication factor 3,
//! `min.insync.replicas=2`, acks=all, `fsync=always`. Kill -9 of the leader under load loses
//! no acknowledged record; a killed follower shrinks the ISR and rejoins; acks=all is
//! refused while the ISR is too small.
//!
//! `KEEL_REPLICATION_ROUNDS=N` runs N leader kills in the first test (CI: 2).

use keel_client::{Acks, Consumer, OffsetReset, Producer, ProducerRecord};
use keel_tests::cluster::{runtime, segment_data, Cluster};
use keel_tests::tool::ok;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn create_replicated(cluster: &Cluster, topic: &str, partitions: u32, configs: &[&str]) {
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
fn state(cluster: &Cluster, i: usize, topic: &str, p: usize) -> Option<(i64, Vec<u64>)> {
    let described = cluster.topic(i, topic)?;
    let partition = &described["partitions"][p];
    let isr = partition["isr"]
        .as_array()?
        .iter()
        .filter_map(|v| v.as_u64())
        .collect();
    Some((partition["leader"].as_i64()?, isr))
}

fn isr(cluster: &Cluster, i: usize, topic: &str, p: usize) -> Option<Vec<u64>> {
    state(cluster, i, topic, p).map(|(_, isr)| isr)
}

fn leader(cluster: &Cluster, i: usize, topic: &str, p: usize) -> Option<usize> {
    state(cluster, i, topic, p)
        .and_then(|(leader, _)| usize::try_from(leader).ok())
        .filter(|l| *l > 0)
        .map(|l| l - 1)
}

/// Reads partition 0 of `topic` from the start until `count` records or `timeout`.
fn read_all(bootstrap: String, topic: &str, at_least: usize, timeout: Duration) -> Vec<String> {
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
type AckTimes = Arc<Mutex<Vec<(Instant, Instant)>>>;

fn produce_until(
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

fn runtime_handle() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(runtime)
}

/// Every acknowledged number read back once, in order; nothing read twice.
fn check_history(read: &[u64], acked: &BTreeSet<u64>) {
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
    let read: Vec<u64> = read_all(
        cluster.bootstrap(),
        "kept",
        acked.len(),
        Duration::from_secs(60),
    )
    .iter()
    .map(|v| v.parse().unwrap())
    .collect();
    check_history(&read, &acked);
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

// `keel partition elect-leaders`: after its preferred replica (the first) was killed and
// came back in sync, leadership moves back to it, at a new leader epoch.
#[test]
fn elect_leaders_moves_leadership_back_to_the_preferred_replica() {
    let mut cluster = Cluster::start(3);
    create_replicated(&cluster, "pref", 1, &["min.insync.replicas=2"]);
    let described = cluster.topic(0, "pref").unwrap();
    let preferred = described["partitions"][0]["replicas"][0].as_u64().unwrap() as usize - 1;
    assert_eq!(
        leader(&cluster, 0, "pref", 0),
        Some(preferred),
        "placed leading"
    );
    cluster.nodes[preferred].stop_with(libc::SIGKILL);
    let other = (0..3).find(|i| *i != preferred).unwrap();
    cluster.wait_for(Duration::from_secs(20), "another leader", |c| {
        leader(c, other, "pref", 0).is_some_and(|l| l != preferred)
    });
    cluster.nodes[preferred].restart();
    cluster.wait_for(Duration::from_secs(30), "back in the ISR", |c| {
        isr(c, other, "pref", 0).is_some_and(|isr| isr.contains(&(preferred as u64 + 1)))
    });
    let epoch =
        |c: &Cluster| c.topic(other, "pref").unwrap()["partitions"][0]["leader_epoch"].as_u64();
    let before = epoch(&cluster);
    ok(&cluster.keel(
        other,
        &["partition", "elect-leaders", "pref", "--partition", "0"],
    ));
    cluster.wait_for(
        Duration::from_secs(10),
        "the preferred replica leads",
        |c| leader(c, other, "pref", 0) == Some(preferred),
    );
    assert!(epoch(&cluster) > before, "a new leader epoch");
    // Unknown partitions are refused by name.
    let refused = cluster.keel(
        other,
        &["partition", "elect-leaders", "pref", "--partition", "7"],
    );
    assert!(!refused.status.success());
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

fn replicas(cluster: &Cluster, i: usize, topic: &str, p: usize) -> Option<Vec<u64>> {
    let described = cluster.topic(i, topic)?;
    Some(
        described["partitions"][p]["replicas"]
            .as_array()?
            .iter()
            .filter_map(|v| v.as_u64())
            .collect(),
    )
}

// `keel partition reassign` under acks=all load: the new replica catches up, joins the ISR
// and the old one leaves; nothing acknowledged is lost and the new replica holds the
// leader's bytes. `keel broker decommission` then moves every replica off a broker.
#[test]
fn reassign_and_decommission_move_replicas_under_load() {
    let cluster = Cluster::start(3);
    ok(&cluster.keel(
        0,
        &[
            "topic",
            "create",
            "moved",
            "--partitions",
            "1",
            "--replication-factor",
            "2",
        ],
    ));
    cluster.wait_for(Duration::from_secs(20), "two replicas in sync", |c| {
        isr(c, 0, "moved", 0).is_some_and(|isr| isr.len() == 2)
    });
    let before = replicas(&cluster, 0, "moved", 0).unwrap();
    let lead = leader(&cluster, 0, "moved", 0).unwrap() as u64 + 1;
    let outside = (1..=3).find(|b| !before.contains(b)).unwrap();
    let leaving = *before.iter().find(|r| **r != lead).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let producing = produce_until(
        cluster.bootstrap(),
        "moved",
        stop.clone(),
        acked.clone(),
        Arc::new(Mutex::new(Vec::new())),
    );
    cluster.wait_for(Duration::from_secs(20), "records acknowledged", |_| {
        acked.lock().unwrap().len() >= 300
    });
    let target = format!("{lead},{outside}");
    ok(&cluster.keel(
        1,
        &[
            "partition",
            "reassign",
            "moved",
            "--partition",
            "0",
            "--replicas",
            &target,
        ],
    ));
    cluster.wait_for(Duration::from_secs(30), "the move completes", |c| {
        replicas(c, 0, "moved", 0) == Some(vec![lead, outside])
            && isr(c, 0, "moved", 0).is_some_and(|isr| isr.len() == 2 && !isr.contains(&leaving))
    });
    let at_move = acked.lock().unwrap().len();
    cluster.wait_for(Duration::from_secs(20), "writes go on", |_| {
        acked.lock().unwrap().len() >= at_move + 200
    });

    // Decommission the leader's broker while the producer goes on: every replica it held
    // (of "moved" and of "spread2") moves to another broker, leadership of "moved" with it.
    ok(&cluster.keel(
        0,
        &[
            "topic",
            "create",
            "spread2",
            "--partitions",
            "3",
            "--replication-factor",
            "2",
        ],
    ));
    cluster.wait_for(Duration::from_secs(20), "spread2 in sync", |c| {
        (0..3).all(|p| isr(c, 0, "spread2", p).is_some_and(|isr| isr.len() == 2))
    });
    let other = (0..3).find(|i| *i as u64 + 1 != lead).unwrap();
    ok(&cluster.keel(other, &["broker", "decommission", &lead.to_string()]));
    cluster.wait_for(Duration::from_secs(30), "nothing left on the broker", |c| {
        let clear = |topic: &str, p: usize| {
            replicas(c, other, topic, p).is_some_and(|r| r.len() == 2 && !r.contains(&lead))
                && isr(c, other, topic, p).is_some_and(|isr| isr.len() == 2)
        };
        clear("moved", 0) && (0..3).all(|p| clear("spread2", p))
    });
    assert_ne!(leader(&cluster, other, "moved", 0), Some(lead as usize - 1));
    let at_decommission = acked.lock().unwrap().len();
    cluster.wait_for(Duration::from_secs(20), "writes go on after", |_| {
        acked.lock().unwrap().len() >= at_decommission + 200
    });
    stop.store(true, Ordering::SeqCst);
    let failed = runtime_handle().block_on(producing).unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    let acked = acked.lock().unwrap().clone();
    let read: Vec<u64> = read_all(
        cluster.bootstrap(),
        "moved",
        acked.len(),
        Duration::from_secs(60),
    )
    .iter()
    .map(|v| v.parse().unwrap())
    .collect();
    check_history(&read, &acked);
    let segment = |node: u64| {
        cluster
            .dir
            .path()
            .join(format!("node{node}/moved-0/00000000000000000000.log"))
    };
    cluster.wait_for(
        Duration::from_secs(20),
        "the new replicas hold the same bytes",
        |_| {
            let on_outside = segment_data(&segment(outside));
            !on_outside.is_empty() && segment_data(&segment(leaving)) == on_outside
        },
    );
}

// A broker joining a running cluster (a fourth node, broker only) registers and takes a
// partition through reassignment: it catches up and ends with the leader's bytes.
#[test]
fn a_new_broker_takes_partitions_through_reassignment() {
    let cluster = Cluster::start(3);
    create_replicated(&cluster, "grow", 1, &["min.insync.replicas=2"]);
    let bootstrap = cluster.bootstrap();
    runtime_handle().block_on(async move {
        let producer = Producer::builder(bootstrap)
            .acks(Acks::All)
            .build()
            .await
            .unwrap();
        for i in 0..500u32 {
            producer
                .enqueue(ProducerRecord::new("grow", i.to_string()).partition(0))
                .await
                .unwrap();
        }
        producer.flush().await;
        producer.close().await;
    });
    let dir = cluster.dir.path().join("node4");
    let _fourth = keel_tests::broker::Broker::start(
        &keel_tests::broker::server_binary(),
        &dir,
        &[
            "--node-id",
            "4",
            "--controller-voters",
            &cluster.voters,
            "--shards",
            "2",
        ],
    );
    cluster.wait_for(Duration::from_secs(20), "four brokers alive", |c| {
        c.alive_brokers(0).is_some_and(|alive| alive.len() == 4)
    });
    let lead = leader(&cluster, 0, "grow", 0).unwrap() as u64 + 1;
    let keep = replicas(&cluster, 0, "grow", 0)
        .unwrap()
        .into_iter()
        .find(|r| *r != lead)
        .unwrap();
    let target = format!("{lead},{keep},4");
    let dropped = (1..=3).find(|b| *b != lead && *b != keep).unwrap();
    ok(&cluster.keel(
        0,
        &[
            "partition",
            "reassign",
            "grow",
            "--partition",
            "0",
            "--replicas",
            &target,
        ],
    ));
    cluster.wait_for(
        Duration::from_secs(30),
        "the new broker holds the partition",
        |c| {
            replicas(c, 0, "grow", 0) == Some(vec![lead, keep, 4])
                && isr(c, 0, "grow", 0)
                    .is_some_and(|isr| isr.contains(&4) && !isr.contains(&dropped))
        },
    );
    let segment = |d: &std::path::Path| d.join("grow-0/00000000000000000000.log");
    let on_leader = cluster.dir.path().join(format!("node{lead}"));
    cluster.wait_for(Duration::from_secs(20), "the same bytes", |_| {
        let expected = segment_data(&segment(&on_leader));
        !expected.is_empty() && segment_data(&segment(&dir)) == expected
    });
}

// `--throttle`: a replica a reassignment adds is sent at most that many bytes per second
// while it catches up, so moving 2 MB at 400 KB/s takes seconds, not milliseconds.
#[test]
fn reassignment_throttle_paces_catching_up() {
    let cluster = Cluster::start(3);
    ok(&cluster.keel(
        0,
        &[
            "topic",
            "create",
            "slow",
            "--partitions",
            "1",
            "--replication-factor",
            "1",
        ],
    ));
    cluster.wait_for(Duration::from_secs(20), "a leader", |c| {
        leader(c, 0, "slow", 0).is_some()
    });
    let lead = leader(&cluster, 0, "slow", 0).unwrap() as u64 + 1;
    let other = (1..=3).find(|b| *b != lead).unwrap();
    let bootstrap = cluster.bootstrap();
    runtime_handle().block_on(async move {
        let producer = Producer::builder(bootstrap).build().await.unwrap();
        for i in 0..2_000u32 {
            let value = format!("{i:01024}");
            producer
                .enqueue(ProducerRecord::new("slow", value).partition(0))
                .await
                .unwrap();
        }
        producer.flush().await;
        producer.close().await;
    });
    let target = format!("{lead},{other}");
    let started = Instant::now();
    ok(&cluster.keel(
        1,
        &[
            "partition",
            "reassign",
            "slow",
            "--partition",
            "0",
            "--replicas",
            &target,
            "--throttle",
            "400000",
        ],
    ));
    cluster.wait_for(
        Duration::from_secs(40),
        "the throttled move completes",
        |c| {
            replicas(c, 0, "slow", 0) == Some(vec![lead, other])
                && isr(c, 0, "slow", 0).is_some_and(|isr| isr.len() == 2)
        },
    );
    let took = started.elapsed();
    let bytes = segment_data(
        &cluster
            .dir
            .path()
            .join(format!("node{lead}/slow-0/00000000000000000000.log")),
    )
    .len();
    eprintln!("{bytes} bytes moved at a 400 KB/s throttle in {took:?}");
    // A second of burst, then paced: well above what the bytes take unthrottled (~0.1 s).
    assert!(
        took >= Duration::from_millis(1_500),
        "{bytes} bytes at 400 KB/s took only {took:?}"
    );
    let described = cluster.topic(0, "slow").unwrap();
    assert_eq!(
        described["configs"]["reassignment.throttle.bytes.per.sec"],
        "400000"
    );
}
