//! A Kafka client against a three-broker cluster: confluent-kafka keeps producing
//! (idempotent, acks=all) and consuming while the leader of its partitions is killed, comes
//! back, and is moved back with `keel partition elect-leaders`; every acknowledged record is
//! consumed. Metadata lists every broker's Kafka address; NOT_LEADER_OR_FOLLOWER makes the
//! client move, as with Kafka.

use crate::replicated;

use keel_tests::cluster::Cluster;
use keel_tests::kafka_clients::{clients, run};
use keel_tests::tool::ok;
use replicated::{isr, leader, replicas};
use std::time::Duration;

const TOPIC: &str = "km-moving";

/// Partition 0's high watermark as node `i` describes it.
fn high_watermark(cluster: &Cluster, i: usize) -> Option<i64> {
    cluster.topic(i, TOPIC)?["partitions"][0]["high_watermark"].as_i64()
}

/// Waits (bounded) until the client's records move partition 0's high watermark past
/// `from` by a few hundred, as node `i` sees it.
fn grows(cluster: &Cluster, i: usize, from: i64) {
    cluster.wait_for(
        Duration::from_secs(30),
        "the client's records arriving",
        |c| high_watermark(c, i).is_some_and(|hw| hw > from + 200),
    );
}

#[test]
fn a_kafka_client_keeps_going_while_leaders_move() {
    let clients = clients();
    let mut cluster = Cluster::start(3);
    let bootstrap = cluster.kafka_bootstrap();
    let stop = tempfile::tempdir().unwrap();
    let stop_file = stop.path().join("stop");
    let script = clients.scripts.join("confluent_kafka_test.py");
    let (python, script_path, stop_path) = (
        clients.python.clone(),
        script.to_str().unwrap().to_owned(),
        stop_file.to_str().unwrap().to_owned(),
    );
    let client = std::thread::spawn(move || {
        run(
            &python,
            &[&script_path, &bootstrap, "leader-move", "km"],
            &[("KEEL_STOP_FILE", &stop_path)],
            Duration::from_secs(240),
        )
    });
    // The script creates the topic (replication factor 3) and starts.
    cluster.wait_for(
        Duration::from_secs(60),
        "the topic's ISR is every replica",
        |c| {
            c.running()
                .all(|i| isr(c, i, TOPIC, 0).is_some_and(|isr| isr.len() == 3))
        },
    );
    // The client is producing before anything moves.
    grows(&cluster, 0, 0);
    let first = leader(&cluster, 0, TOPIC, 0).expect("a leader");
    cluster.nodes[first].stop_with(libc::SIGKILL);
    let other = (first + 1) % 3;
    cluster.wait_for(Duration::from_secs(30), "a new leader", |c| {
        leader(c, other, TOPIC, 0).is_some_and(|l| l != first)
    });
    // ... and goes on producing to the new leader while the old one is down.
    let before = high_watermark(&cluster, other).unwrap_or(0);
    grows(&cluster, other, before);
    cluster.nodes[first].restart();
    cluster.wait_for(
        Duration::from_secs(60),
        "the old leader back in the ISR",
        |c| isr(c, other, TOPIC, 0).is_some_and(|isr| isr.len() == 3),
    );
    // Second move: leadership back to the preferred replicas.
    ok(&cluster.keel(other, &["partition", "elect-leaders", TOPIC]));
    let preferred = replicas(&cluster, other, TOPIC, 0).expect("replicas")[0] as usize - 1;
    cluster.wait_for(
        Duration::from_secs(30),
        "the preferred replica leads",
        |c| leader(c, other, TOPIC, 0) == Some(preferred),
    );
    let before = high_watermark(&cluster, other).unwrap_or(0);
    grows(&cluster, other, before);
    std::fs::write(&stop_file, b"").unwrap();
    let output = client.join().expect("the client thread");
    println!("{output}");
    assert!(output.contains("MOVED"), "{output}");
    let progress: Vec<&str> = output
        .lines()
        .filter(|l| l.starts_with("PROGRESS"))
        .collect();
    assert!(progress.len() >= 5, "the client kept going: {progress:?}");
}

// Goal: CreatePartitions on a cluster was refused; now the controller places the new
// partitions (with the topic's replication factor) and every broker opens them.
#[test]
fn create_partitions_grows_a_replicated_topic_on_every_broker() {
    let cluster = Cluster::start(3);
    replicated::create_replicated(&cluster, "grown", 2, &[]);
    let bootstrap = cluster.kafka_bootstrap();
    let python = |code: &str| keel_tests::kafka_clients::python(code, &[&bootstrap]);
    python(
        "import sys\n\
        from confluent_kafka.admin import AdminClient, NewPartitions\n\
        a = AdminClient({'bootstrap.servers': sys.argv[1]})\n\
        try:\n\
        \x20   a.create_partitions([NewPartitions('grown', 1)])['grown'].result(30)\n\
        \x20   raise SystemExit('shrinking was accepted')\n\
        except Exception as e:\n\
        \x20   assert 'INVALID_PARTITIONS' in str(e), e\n\
        a.create_partitions([NewPartitions('grown', 5)], validate_only=True)['grown'].result(30)\n\
        a.create_partitions([NewPartitions('grown', 4)])['grown'].result(30)\n\
        print('PASSED')\n",
    );
    // Every broker has the new partitions' logs, each with three replicas.
    cluster.wait_for(Duration::from_secs(20), "every broker holds 4", |c| {
        (0..3).all(|i| {
            c.topic(i, "grown").is_some_and(|t| {
                let partitions = t["partitions"].as_array().cloned().unwrap_or_default();
                partitions.len() == 4
                    && partitions
                        .iter()
                        .all(|p| p["replicas"].as_array().is_some_and(|r| r.len() == 3))
            }) && c.nodes[i].data_dir.join("grown-3").is_dir()
        })
    });
    python(
        "import sys, time\n\
        from confluent_kafka import Producer, Consumer, TopicPartition\n\
        p = Producer({'bootstrap.servers': sys.argv[1], 'acks': 'all'})\n\
        errors = []\n\
        def report(err, m):\n\
        \x20   if err is not None: errors.append((m.partition(), str(err)))\n\
        for i in range(4):\n\
        \x20   p.produce('grown', value=b'v%d' % i, partition=i, on_delivery=report)\n\
        assert p.flush(30) == 0\n\
        assert not errors, errors\n\
        c = Consumer({'bootstrap.servers': sys.argv[1], 'group.id': 'g', 'auto.offset.reset': 'earliest'})\n\
        c.assign([TopicPartition('grown', i, 0) for i in range(4)])\n\
        seen = set()\n\
        deadline = time.time() + 30\n\
        while len(seen) < 4 and time.time() < deadline:\n\
        \x20   m = c.poll(1)\n\
        \x20   if m is not None and not m.error():\n\
        \x20       seen.add((m.partition(), m.value()))\n\
        assert seen == {(i, b'v%d' % i) for i in range(4)}, seen\n\
        print('PASSED')\n",
    );
}
