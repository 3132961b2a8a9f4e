//! A group's membership moves with its coordinator: the broker taking over the group's
//! offsets partition restores the group (generation, members, assignment) from the records
//! in `__consumer_offsets`, the members find it and keep heartbeating, and nothing
//! rebalances. Three brokers; the group's coordinator is killed with SIGKILL while two
//! members poll; afterwards, past the members' session timeout, the group has the same
//! generation and the same member ids. Once with keel-client, once with confluent-kafka.

use crate::replicated;

use keel_client::{Admin, Consumer, OffsetReset};
use keel_tests::cluster::{runtime, Cluster};
use keel_tests::kafka_clients::{clients, run};
use replicated::{create_replicated, down, leader, offsets_partition};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const OFFSETS: &str = "__consumer_offsets";
/// The members' session timeout: the test waits past it after the move.
const SESSION: Duration = Duration::from_secs(6);
/// A dead broker is fenced after 2 s.
const LEASE: (&str, &str) = ("KEEL_METADATA_LEASE_MS", "2000");

/// The group's state, generation and member ids, as its coordinator describes it.
fn membership(cluster: &Cluster, group: &str) -> Option<(String, i32, Vec<String>)> {
    let bootstrap = cluster.bootstrap();
    let group = group.to_owned();
    runtime().block_on(async move {
        let admin = Admin::connect(&bootstrap).await.ok()?;
        let described = tokio::time::timeout(SESSION, admin.describe_group(&group));
        let described = match described.await {
            Ok(Ok(described)) => described,
            other => {
                eprintln!("describing {group}: {other:?}");
                return None;
            }
        };
        let mut members: Vec<String> = described.members.into_iter().map(|m| m.member_id).collect();
        members.sort();
        Some((described.state, described.generation, members))
    })
}

/// Waits for the group to be Stable with two members; returns what it is.
fn stable(cluster: &Cluster, group: &str, within: Duration) -> (String, i32, Vec<String>) {
    let deadline = Instant::now() + within;
    loop {
        let now = membership(cluster, group);
        let two = |(state, _, m): &(String, i32, Vec<String>)| state == "Stable" && m.len() == 2;
        if let Some(found) = now.clone().filter(two) {
            return found;
        }
        let waited = Instant::now() < deadline;
        assert!(waited, "group {group} not Stable with two members: {now:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Kills the group's coordinator and checks, past the session timeout, that the new one
/// has the same generation and members; restarts the killed broker.
fn kill_coordinator_and_check(cluster: &mut Cluster, group: &str) {
    // Settled: a record of the last generation written (a join seen in between would
    // show as a changed generation below).
    let before = stable(cluster, group, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(stable(cluster, group, Duration::from_secs(10)), before);
    let partition = offsets_partition(group);
    let coordinator = leader(cluster, 0, OFFSETS, partition).expect("the group's coordinator");
    cluster.nodes[coordinator].stop_with(libc::SIGKILL);
    down(cluster, coordinator);
    let moved = stable(cluster, group, Duration::from_secs(30));
    assert_eq!(moved, before, "the new coordinator restored the group");
    // Long enough for a member that did not follow to expire and the group to rebalance.
    std::thread::sleep(SESSION + Duration::from_secs(2));
    let after = stable(cluster, group, Duration::from_secs(10));
    assert_eq!(after, before, "no rebalance after the coordinator moved");
    cluster.nodes[coordinator].restart();
}

#[test]
fn a_native_group_keeps_its_generation_when_its_coordinator_dies() {
    let mut cluster = Cluster::start_with_env(3, &[LEASE]);
    let (topic, group) = ("gm-native", "gm-native-group");
    create_replicated(&cluster, topic, 4, &[]);
    let done = Arc::new(AtomicBool::new(false));
    let rt = runtime();
    let members: Vec<_> = (0..2)
        .map(|_| {
            let (bootstrap, done) = (cluster.bootstrap(), done.clone());
            rt.spawn(async move {
                let mut consumer = Consumer::builder(bootstrap)
                    .group(group)
                    .offset_reset(OffsetReset::Earliest)
                    .session_timeout(SESSION)
                    .build()
                    .await
                    .unwrap();
                consumer.subscribe(&[topic]).unwrap();
                while !done.load(Ordering::SeqCst) {
                    // Errors while the coordinator moves are retried by the next poll.
                    if let Err(e) = consumer.poll(Duration::from_millis(100)).await {
                        eprintln!("poll: {e}");
                    }
                }
                consumer.close().await
            })
        })
        .collect();
    kill_coordinator_and_check(&mut cluster, group);
    done.store(true, Ordering::SeqCst);
    for member in members {
        let closed = rt.block_on(async { tokio::time::timeout(SESSION, member).await });
        closed.expect("members stop").unwrap().ok();
    }
}

#[test]
fn a_confluent_kafka_group_keeps_its_generation_when_its_coordinator_dies() {
    let clients = clients();
    let mut cluster = Cluster::start_with_env(3, &[LEASE]);
    let (topic, group) = ("gm-kafka", "gm-kafka-group");
    create_replicated(&cluster, topic, 4, &[]);
    let dir = tempfile::tempdir().unwrap();
    let stop_file = dir.path().join("stop");
    std::fs::write(&stop_file, b"").unwrap();
    let bootstrap: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| n.kafka_addr.to_string())
        .collect();
    let script = clients.scripts.join("confluent_kafka_test.py");
    let (python, script, stop, bootstrap) = (
        clients.python.clone(),
        script.to_str().unwrap().to_owned(),
        stop_file.to_str().unwrap().to_owned(),
        bootstrap.join(","),
    );
    let client = std::thread::spawn(move || {
        let args = [script.as_str(), &bootstrap, "group-stays", topic];
        let env = [("KEEL_STOP_FILE", stop.as_str())];
        run(&python, &args, &env, Duration::from_secs(200))
    });
    kill_coordinator_and_check(&mut cluster, group);
    std::fs::remove_file(&stop_file).unwrap();
    client.join().unwrap();
}
