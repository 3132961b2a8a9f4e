//! Cluster links (issue 23) between real clusters on one machine: a single-broker source
//! and a three-broker destination. The destination's mirror topics hold the source's
//! batches at the same offsets, byte for byte (compared through a Kafka Fetch on each
//! side); they refuse writes until promoted; a promoted topic continues from the last
//! mirrored offset.

use keel_kafka::source::{fetch_request, fetch_response, whole_batches, TopicRef, Wanted};
use keel_tests::broker::{server_binary, Broker};
use keel_tests::cluster::Cluster;
use keel_tests::kafka_clients::kcat_produce_keyed;
use keel_tests::kafka_wire::exchange;
use keel_tests::tool::{keel, ok};
use std::net::SocketAddr;
use std::time::Duration;

/// The whole batches of `topic`'s `partition` a broker's Kafka listener serves, from
/// offset 0 (`None`: it does not lead the partition).
fn fetch_all(kafka: SocketAddr, topic: &str, partition: i32) -> Option<(i64, Vec<u8>)> {
    let mut bytes = Vec::new();
    let mut offset = 0;
    let mut high_watermark;
    loop {
        let wanted = Wanted {
            partition,
            offset,
            max_bytes: 1 << 20,
        };
        let topics = [(TopicRef::Name(topic.to_owned()), vec![wanted])];
        let frame = fetch_request(1, "mirror-test", (0, 0, 1 << 20), &topics);
        let (_, error, answer) = fetch_response(12, exchange(kafka, &frame)).ok()?;
        let answer = answer.into_iter().next()?.partitions.into_iter().next()?;
        if error != 0 || answer.error != 0 {
            return None;
        }
        high_watermark = answer.high_watermark;
        let spans = whole_batches(&answer.records).expect("whole batches");
        let Some(last) = spans.last() else { break };
        bytes.extend_from_slice(&answer.records[..last.at + last.len]);
        offset = last.last + 1;
        if offset >= high_watermark {
            break;
        }
    }
    Some((high_watermark, bytes))
}

/// The batches of `topic`'s `partition` from whichever destination broker leads it.
fn fetch_from_leader(cluster: &Cluster, topic: &str, partition: i32) -> Option<(i64, Vec<u8>)> {
    cluster
        .running()
        .find_map(|i| fetch_all(cluster.nodes[i].kafka_addr, topic, partition))
}

fn describe(cluster: &Cluster, link: &str) -> serde_json::Value {
    let node = cluster.running().next().expect("a running node");
    let output = cluster.keel(node, &["link", "describe", link, "--format", "json"]);
    if !output.status.success() {
        return serde_json::Value::Null;
    }
    serde_json::from_str(&ok(&output)).expect("describe json")
}

/// Offsets mirrored per partition of `topic`, from `keel link describe`.
fn mirrored(cluster: &Cluster, link: &str, topic: &str) -> Vec<(u64, i64, String)> {
    let describe = describe(cluster, link);
    let Some(topics) = describe["topics"].as_array() else {
        return Vec::new();
    };
    topics
        .iter()
        .filter(|t| t["topic"] == topic)
        .flat_map(|t| t["partitions"].as_array().cloned().unwrap_or_default())
        .map(|p| {
            (
                p["partition"].as_u64().unwrap(),
                p["mirrored_offset"].as_i64().unwrap(),
                p["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

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

fn mirror_script(args: &[&str]) -> String {
    let clients = keel_tests::kafka_clients::clients();
    let script = clients.scripts.join("mirror_test.py");
    let mut all = vec![script.to_str().unwrap()];
    all.extend_from_slice(args);
    keel_tests::kafka_clients::run(&clients.python, &all, &[], Duration::from_secs(180))
}

/// (partition, next offset) the group committed on `bootstrap` for `topic`.
fn group_offsets(bootstrap: &str, group: &str, topic: &str) -> Vec<(u32, i64)> {
    keel_tests::cluster::runtime().block_on(async {
        let Ok(admin) = keel_client::Admin::connect(bootstrap).await else {
            return Vec::new();
        };
        let Ok(offsets) = admin.group_offsets(group, topic).await else {
            return Vec::new();
        };
        offsets
            .iter()
            .filter(|p| p.committed >= 0)
            .map(|p| (p.partition, p.committed))
            .collect()
    })
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

/// The broker (index) leading `topic`'s `partition`, as a running node sees it.
fn leader(cluster: &Cluster, topic: &str, partition: usize) -> Option<usize> {
    let node = cluster.running().next()?;
    let leader = cluster.topic(node, topic)?["partitions"][partition]["leader"].as_i64()?;
    (leader > 0).then(|| leader as usize - 1)
}

fn total_mirrored(cluster: &Cluster, link: &str, topic: &str) -> i64 {
    mirrored(cluster, link, topic)
        .iter()
        .map(|(_, end, _)| end)
        .sum()
}

#[test]
fn three_to_three_mirrors_200k_records_through_sigkills_of_both_sides() {
    let source = Cluster::start(3);
    ok(&source.keel(
        0,
        &[
            "topic",
            "create",
            "events",
            "--partitions",
            "3",
            "--replication-factor",
            "3",
        ],
    ));
    let source_kafka: Vec<String> = source
        .nodes
        .iter()
        .map(|n| n.kafka_addr.to_string())
        .collect();
    let source_kafka = source_kafka.join(",");
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
    destination.wait_for(Duration::from_secs(60), "mirroring goes on", |c| {
        total_mirrored(c, "west", "events") > before + 20_000
    });
    // A source broker (a partition's leader) dies mid-run.
    let victim = leader(&source, "events", 1).expect("a source leader");
    source.nodes[victim].stop_with(libc::SIGKILL);
    std::thread::sleep(Duration::from_secs(3));
    source.nodes[victim].restart();
    producing.join().expect("the producer delivered everything");
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
    let kafka: Vec<String> = destination
        .nodes
        .iter()
        .map(|n| n.kafka_addr.to_string())
        .collect();
    kcat_produce_keyed(&kafka.join(","), "events", &lines(0, 300), &[]);
    let after: i64 = (0..3)
        .map(|p| fetch_from_leader(&destination, "events", p).unwrap().0)
        .sum();
    assert_eq!(after, 200_300);
}
