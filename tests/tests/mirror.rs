//! Cluster links (issue 23) between real clusters on one machine: a single-broker source
//! and a three-broker destination. The destination's mirror topics hold the source's
//! batches at the same offsets, byte for byte (compared through a Kafka Fetch on each
//! side); they refuse writes until promoted; a promoted topic continues from the last
//! mirrored offset.

use keel_tests::broker::{server_binary, Broker};
use keel_tests::cluster::Cluster;
use keel_tests::kafka_clients::{kcat, kcat_produce_keyed};
use keel_tests::mirror::{
    fetch_all, fetch_from_leader, group_offsets, leader, mirror_script, mirrored, total_mirrored,
};
use keel_tests::tool::{keel, ok};
use std::time::Duration;

fn lines(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|i| format!("key-{}:value-{i}\n", i % 17))
        .collect()
}

#[test]
fn a_link_mirrors_byte_for_byte_refuses_writes_and_promotes() {
    let dir = tempfile::tempdir().unwrap();
    let source = Broker::start(&server_binary(), &dir.path().join("source"), &[]);
    ok(&keel(
        Some(&source),
        &["topic", "create", "orders", "--partitions", "2"],
        None,
    ));
    ok(&keel(Some(&source), &["topic", "create", "skipped"], None));
    let bootstrap = source.kafka_addr.to_string();
    kcat_produce_keyed(&bootstrap, "orders", &lines(0, 500), &["-z", "snappy"]);
    let destination = Cluster::start(3);
    ok(&destination.keel(
        0,
        &[
            "link", "create", "east", "--source", &bootstrap, "--topics", "ord*",
        ],
    ));
    // Records produced while the link runs are mirrored too.
    kcat_produce_keyed(&bootstrap, "orders", &lines(500, 500), &["-z", "gzip"]);
    let source_end = |partition| fetch_all(source.kafka_addr, "orders", partition).unwrap().0;
    let ends = [source_end(0), source_end(1)];
    assert_eq!(ends[0] + ends[1], 1000);
    destination.wait_for(Duration::from_secs(60), "orders mirrored", |c| {
        let now = mirrored(c, "east", "orders");
        now.len() == 2 && now.iter().all(|(p, end, _)| *end == ends[*p as usize])
    });
    for partition in 0..2 {
        let theirs = fetch_all(source.kafka_addr, "orders", partition).unwrap();
        let ours = fetch_from_leader(&destination, "orders", partition).unwrap();
        assert_eq!(ours.0, theirs.0, "high watermark of partition {partition}");
        assert!(
            ours.1 == theirs.1,
            "partition {partition}: the same batches, byte for byte"
        );
    }
    assert!(
        !destination.topics(0).contains(&"skipped".to_owned()),
        "a topic the link does not select is not mirrored"
    );
    let topic = destination.topic(0, "orders").unwrap();
    assert_eq!(topic["configs"]["mirror.link"], "east");
    // Read-only: a client's write and a client's mirror.* config change are refused.
    let refused = keel(
        Some(&destination.nodes[0]),
        &["produce", "orders"],
        Some("x\n"),
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("read-only"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // Promote: writable, continuing at the mirrored end.
    ok(&destination.keel(0, &["link", "promote", "east"]));
    destination.wait_for(Duration::from_secs(30), "promoted", |c| {
        mirrored(c, "east", "orders")
            .iter()
            .all(|(_, _, state)| state == "promoted")
    });
    kcat_produce_keyed(&bootstrap, "orders", &lines(1000, 100), &[]);
    ok(&keel(
        Some(&destination.nodes[0]),
        &["produce", "orders", "--partition", "0"],
        Some("after\n"),
    ));
    let after = fetch_from_leader(&destination, "orders", 0).unwrap();
    assert_eq!(
        after.0,
        ends[0] + 1,
        "the first write after promotion follows the mirror"
    );
    std::thread::sleep(Duration::from_secs(2));
    let after = fetch_from_leader(&destination, "orders", 1).unwrap();
    assert_eq!(after.0, ends[1], "nothing mirrored after promotion");
}

#[test]
fn a_synced_group_reads_on_after_promotion_from_exactly_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let source = Broker::start(&server_binary(), &dir.path().join("source"), &[]);
    ok(&keel(
        Some(&source),
        &["topic", "create", "orders", "--partitions", "3"],
        None,
    ));
    let bootstrap = source.kafka_addr.to_string();
    mirror_script(&["produce", &bootstrap, "orders", "3000", "0"]);
    let printed = mirror_script(&["consume", &bootstrap, "orders", "billing", "1000"]);
    let mut committed: Vec<(u32, i64)> = printed
        .lines()
        .filter_map(|l| l.strip_prefix("committed "))
        .map(|l| {
            let (p, o) = l.split_once(' ').unwrap();
            (p.parse().unwrap(), o.parse().unwrap())
        })
        .filter(|(_, o): &(u32, i64)| *o >= 0)
        .collect();
    committed.sort();
    assert_eq!(
        committed.iter().map(|(_, o)| o).sum::<i64>(),
        1000,
        "{printed}"
    );
    assert!(
        committed.len() >= 2,
        "offsets in several partitions: {printed}"
    );
    let destination = Cluster::start(3);
    ok(&destination.keel(
        1,
        &[
            "link",
            "create",
            "east",
            "--source",
            &bootstrap,
            "--topics",
            "orders",
            "--groups",
            "bill*",
            "--group-sync-interval-ms",
            "500",
        ],
    ));
    // Three codecs, keys, headers and timestamps, produced while the link runs.
    mirror_script(&["produce", &bootstrap, "orders", "3000", "3000"]);
    let ends: Vec<i64> = (0..3)
        .map(|p| fetch_all(source.kafka_addr, "orders", p).unwrap().0)
        .collect();
    assert_eq!(ends.iter().sum::<i64>(), 6000);
    destination.wait_for(Duration::from_secs(60), "orders mirrored", |c| {
        let now = mirrored(c, "east", "orders");
        now.len() == 3 && now.iter().all(|(p, end, _)| *end == ends[*p as usize])
    });
    for partition in 0..3 {
        let theirs = fetch_all(source.kafka_addr, "orders", partition).unwrap();
        let ours = fetch_from_leader(&destination, "orders", partition).unwrap();
        assert!(ours.1 == theirs.1, "partition {partition}: byte for byte");
    }
    let dest_bootstrap = destination.nodes[0].addr.to_string();
    destination.wait_for(Duration::from_secs(30), "billing's offsets synced", |_| {
        group_offsets(&dest_bootstrap, "billing", "orders") == committed
    });
    ok(&destination.keel(1, &["link", "promote", "east"]));
    let kafka = destination.nodes[0].kafka_addr.to_string();
    let printed = mirror_script(&["resume", &kafka, "orders", "billing", "5000"]);
    let mut seen = std::collections::BTreeSet::new();
    for line in printed.lines().filter_map(|l| l.strip_prefix("record ")) {
        let mut parts = line.split(' ');
        let partition: u32 = parts.next().unwrap().parse().unwrap();
        let offset: i64 = parts.next().unwrap().parse().unwrap();
        let from = committed
            .iter()
            .find(|(p, _)| *p == partition)
            .map_or(0, |(_, o)| *o);
        assert!(
            offset >= from,
            "partition {partition}: offset {offset} was read before"
        );
        assert!(
            seen.insert((partition, offset)),
            "read twice: {partition}/{offset}"
        );
    }
    assert_eq!(seen.len(), 5000, "nothing missed");
}

#[test]
fn three_to_three_mirrors_200k_records_through_sigkills_of_both_sides() {
    mirror_200k_through_sigkills(3);
}

#[test]
fn one_to_three_mirrors_200k_records_through_sigkills_of_both_sides() {
    mirror_200k_through_sigkills(1);
}

/// A source of `source_brokers` (the topic with as many copies) and a three-broker
/// destination: 200,000 records produced while the link runs, the destination's mirror
/// leader and a source leader killed mid-run.
fn mirror_200k_through_sigkills(source_brokers: usize) {
    let source = Cluster::start(source_brokers);
    let copies = source_brokers.to_string();
    ok(&source.keel(
        0,
        &[
            "topic",
            "create",
            "events",
            "--partitions",
            "3",
            "--replication-factor",
            &copies,
        ],
    ));
    let source_kafka = source.kafka_bootstrap();
    let destination = Cluster::start(3);
    ok(&destination.keel(
        0,
        &[
            "link",
            "create",
            "west",
            "--source",
            &source_kafka,
            "--topics",
            "events",
        ],
    ));
    let producing = {
        let bootstrap = source_kafka.clone();
        std::thread::spawn(move || {
            mirror_script(&["produce", &bootstrap, "events", "200000", "0"]);
        })
    };
    let mut destination = destination;
    let mut source = source;
    destination.wait_for(Duration::from_secs(60), "mirroring under way", |c| {
        total_mirrored(c, "west", "events") > 20_000
    });
    // The destination's mirror-partition leader dies mid-run.
    let victim = leader(&destination, "events", 0).expect("a leader");
    destination.nodes[victim].stop_with(libc::SIGKILL);
    std::thread::sleep(Duration::from_secs(3));
    destination.nodes[victim].restart();
    let before = total_mirrored(&destination, "west", "events");
    // It goes on (unless the producer is done and everything is mirrored already: the
    // final comparison checks that).
    destination.wait_for(Duration::from_secs(60), "mirroring goes on", |c| {
        total_mirrored(c, "west", "events") > before || producing.is_finished()
    });
    // A source broker (a partition's leader; the only one of a one-broker source) dies
    // mid-run; the producer waits for it.
    let victim = leader(&source, "events", 1).expect("a source leader");
    source.nodes[victim].stop_with(libc::SIGKILL);
    std::thread::sleep(Duration::from_secs(3));
    source.nodes[victim].restart();
    producing.join().expect("the producer delivered everything");
    source.wait_for(Duration::from_secs(30), "every source partition led", |c| {
        (0..3).all(|p| fetch_from_leader(c, "events", p).is_some())
    });
    let ends: Vec<i64> = (0..3)
        .map(|p| fetch_from_leader(&source, "events", p).unwrap().0)
        .collect();
    assert_eq!(
        ends.iter().sum::<i64>(),
        200_000,
        "the source holds each record once"
    );
    destination.wait_for(Duration::from_secs(120), "everything mirrored", |c| {
        let now = mirrored(c, "west", "events");
        now.len() == 3 && now.iter().all(|(p, end, _)| *end == ends[*p as usize])
    });
    for partition in 0..3 {
        let theirs = fetch_from_leader(&source, "events", partition).unwrap();
        let ours = fetch_from_leader(&destination, "events", partition).unwrap();
        assert_eq!(ours.0, theirs.0);
        assert!(ours.1 == theirs.1, "partition {partition}: byte for byte");
    }
    // Promoted, the mirror takes writes under an epoch above every mirrored one.
    ok(&destination.keel(0, &["link", "promote", "west"]));
    kcat_produce_keyed(
        &destination.kafka_bootstrap(),
        "events",
        &lines(0, 300),
        &[],
    );
    let after: i64 = (0..3)
        .map(|p| fetch_from_leader(&destination, "events", p).unwrap().0)
        .sum();
    assert_eq!(after, 200_300);
}

#[test]
fn promote_then_failback_through_a_reverse_link_leaves_the_old_source_identical() {
    let east = Cluster::start(1);
    ok(&east.keel(0, &["topic", "create", "orders", "--partitions", "2"]));
    let east_kafka = east.nodes[0].kafka_addr.to_string();
    kcat_produce_keyed(&east_kafka, "orders", &lines(0, 400), &["-z", "lz4"]);
    let west = Cluster::start(3);
    let west_kafka = west.kafka_bootstrap();
    ok(&west.keel(
        0,
        &[
            "link",
            "create",
            "ew",
            "--source",
            &east_kafka,
            "--topics",
            "orders",
        ],
    ));
    let ends: Vec<i64> = (0..2)
        .map(|p| fetch_all(east.nodes[0].kafka_addr, "orders", p).unwrap().0)
        .collect();
    west.wait_for(Duration::from_secs(60), "orders mirrored west", |c| {
        let now = mirrored(c, "ew", "orders");
        now.len() == 2 && now.iter().all(|(p, end, _)| *end == ends[*p as usize])
    });
    // East goes on alone for a while (records west never gets), then west is promoted
    // and takes writes of its own.
    ok(&west.keel(0, &["link", "pause", "ew"]));
    kcat_produce_keyed(&east_kafka, "orders", &lines(400, 60), &[]);
    ok(&west.keel(0, &["link", "promote", "ew"]));
    kcat_produce_keyed(&west_kafka, "orders", &lines(1000, 300), &["-z", "zstd"]);
    ok(&west.keel(0, &["link", "delete", "ew"]));
    let west_ends: Vec<i64> = (0..2)
        .map(|p| fetch_from_leader(&west, "orders", p).unwrap().0)
        .collect();
    assert_eq!(west_ends.iter().sum::<i64>(), 700);
    // Failback: east mirrors west, dropping what it wrote after the promotion point.
    ok(&east.keel(
        0,
        &[
            "link",
            "create",
            "we",
            "--source",
            &west_kafka,
            "--topics",
            "orders",
            "--failback",
        ],
    ));
    east.wait_for(Duration::from_secs(60), "east caught up with west", |c| {
        let now = mirrored(c, "we", "orders");
        now.len() == 2 && now.iter().all(|(p, end, _)| *end == west_ends[*p as usize])
    });
    for partition in 0..2 {
        let theirs = fetch_from_leader(&west, "orders", partition).unwrap();
        let ours = fetch_all(east.nodes[0].kafka_addr, "orders", partition).unwrap();
        assert_eq!(ours.0, theirs.0);
        assert!(
            ours.1 == theirs.1,
            "partition {partition}: east is west, byte for byte"
        );
    }
    // East is promoted back and takes writes again.
    ok(&east.keel(0, &["link", "promote", "we"]));
    kcat_produce_keyed(&east_kafka, "orders", &lines(2000, 10), &[]);
    let total: i64 = (0..2)
        .map(|p| fetch_all(east.nodes[0].kafka_addr, "orders", p).unwrap().0)
        .sum();
    assert_eq!(total, 710);
}

#[test]
fn a_throttled_link_mirrors_at_its_byte_rate() {
    let dir = tempfile::tempdir().unwrap();
    let source = Broker::start(&server_binary(), &dir.path().join("source"), &[]);
    ok(&keel(Some(&source), &["topic", "create", "slow"], None));
    let values: String = (0..4_000)
        .map(|i| format!("{i:08}{}\n", "t".repeat(992)))
        .collect();
    ok(&keel(Some(&source), &["produce", "slow"], Some(&values)));
    let end = fetch_all(source.kafka_addr, "slow", 0).unwrap().0;
    let destination = Cluster::start(1);
    let bootstrap = source.kafka_addr.to_string();
    let started = std::time::Instant::now();
    ok(&destination.keel(
        0,
        &[
            "link",
            "create",
            "slow",
            "--source",
            &bootstrap,
            "--topics",
            "slow",
            "--throttle-bytes-per-second",
            "1000000",
        ],
    ));
    destination.wait_for(Duration::from_secs(60), "slow mirrored", |c| {
        mirrored(c, "slow", "slow").first().map(|m| m.1) == Some(end)
    });
    // About 4 MB at 1 MB/s: the first second's fetch comes at once, the rest as paid for.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2_500),
        "4 MB mirrored in {took:?} at 1 MB/s"
    );
}

#[test]
fn topic_configs_and_partition_counts_follow_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let source = Broker::start(&server_binary(), &dir.path().join("source"), &[]);
    let create = [
        "topic",
        "create",
        "configured",
        "--config",
        "retention.ms=3600000",
        "--config",
        "retention.bytes=5000000",
        "--config",
        "segment.bytes=1048576",
    ];
    ok(&keel(Some(&source), &create, None));
    let bootstrap = source.kafka_addr.to_string();
    let destination = Cluster::start(1);
    ok(&destination.keel(
        0,
        &[
            "link",
            "create",
            "configs",
            "--source",
            &bootstrap,
            "--topics",
            "configured",
            "--config-sync-exclude",
            "segment.*",
        ],
    ));
    let config = |c: &Cluster, key: &str| {
        c.topic(0, "configured")
            .and_then(|t| t["configs"][key].as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    destination.wait_for(Duration::from_secs(30), "the source's configs", |c| {
        config(c, "retention.ms") == "3600000" && config(c, "retention.bytes") == "5000000"
    });
    assert_ne!(
        config(&destination, "segment.bytes"),
        "1048576",
        "excluded: this cluster's own"
    );
    // Changed on the source: one set anew, one removed (back to the default).
    let code = "import sys\n\
        from confluent_kafka.admin import AdminClient, ConfigResource, ConfigEntry, AlterConfigOpType\n\
        a = AdminClient({'bootstrap.servers': sys.argv[1]})\n\
        r = ConfigResource('topic', 'configured', incremental_configs=[\n\
        \x20   ConfigEntry('retention.ms', '7200000', incremental_operation=AlterConfigOpType.SET),\n\
        \x20   ConfigEntry('retention.bytes', None, incremental_operation=AlterConfigOpType.DELETE)])\n\
        for f in a.incremental_alter_configs([r]).values():\n\
        \x20   f.result(30)\n\
        print('PASSED')\n";
    keel_tests::kafka_clients::python(code, &[&bootstrap]);
    destination.wait_for(Duration::from_secs(30), "the source's changes", |c| {
        config(c, "retention.ms") == "7200000" && config(c, "retention.bytes") == "-1"
    });
    // The source topic grows: so does its mirror, and its new partitions are mirrored.
    let code = "import sys\n\
        from confluent_kafka.admin import AdminClient, NewPartitions\n\
        a = AdminClient({'bootstrap.servers': sys.argv[1]})\n\
        a.create_partitions([NewPartitions('configured', 3)])['configured'].result(30)\n\
        print('PASSED')\n";
    keel_tests::kafka_clients::python(code, &[&bootstrap]);
    kcat(
        &["-b", &bootstrap, "-P", "-t", "configured", "-p", "2"],
        Some(&lines(0, 50)),
    );
    destination.wait_for(Duration::from_secs(30), "the new partition mirrored", |c| {
        mirrored(c, "configs", "configured")
            .iter()
            .any(|(partition, end, _)| *partition == 2 && *end == 50)
    });
    let theirs = fetch_all(source.kafka_addr, "configured", 2).unwrap();
    let ours = fetch_from_leader(&destination, "configured", 2).unwrap();
    assert!(ours.1 == theirs.1, "byte for byte on the added partition");
    // The exclusions are the link's, shown with it.
    let described = destination.keel(0, &["link", "describe", "configs"]);
    assert!(ok(&described).contains("config.sync.exclude=segment.*"));
}
