//! Moving replicas and leadership with three (and four) real brokers: `keel partition
//! reassign` and `keel broker decommission` under acks=all load, a broker joining and taking
//! a partition, the reassignment throttle, `keel partition elect-leaders`.

use crate::replicated;

use keel_client::{Acks, Producer, ProducerRecord};
use keel_tests::broker::metric;
use keel_tests::cluster::{segment_data, Cluster};
use keel_tests::tool::ok;
use replicated::*;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    check_read_back(cluster.bootstrap(), "moved", &acked);
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
    // While throttled, the leader waits out the follower's allowance instead of reading
    // the partition over and over until the fetch's deadline: about two reads (one held
    // back, one sent) per replica fetch, where the spinning leader read dozens.
    let page = cluster.nodes[lead as usize - 1].metrics();
    let reads = metric(&page, "keel_partition_reads_total", "job=\"replica_fetch\"");
    let fetches = metric(&page, "keel_requests_total", "api=\"replica_fetch\"");
    eprintln!("leader: {reads} partition reads for {fetches} replica fetches");
    assert!(fetches >= 3.0, "{fetches} replica fetches");
    assert!(
        reads <= 3.0 * fetches,
        "{reads} reads for {fetches} fetches"
    );
    let described = cluster.topic(0, "slow").unwrap();
    assert_eq!(
        described["configs"]["reassignment.throttle.bytes.per.sec"],
        "400000"
    );
}
