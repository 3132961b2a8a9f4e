//! Cluster links facing bad input (issue 23): a source that is not a Kafka broker, wrong
//! source credentials, a source topic deleted, the destination's disk full — each a clear
//! link or topic state in `keel link describe`; pause, resume and delete do what they say;
//! nothing mirrored is lost or changed.

use keel_tests::broker::{server_binary, Broker};
use keel_tests::cluster::Cluster;
use keel_tests::kafka_clients::kcat_produce_keyed;
use keel_tests::mirror::{describe, fetch_all, fetch_from_leader, link_state as state, mirrored};
use keel_tests::tool::{keel, ok};
use std::time::Duration;

const SASL: [&str; 8] = [
    "-X",
    "security.protocol=SASL_PLAINTEXT",
    "-X",
    "sasl.mechanisms=SCRAM-SHA-512",
    "-X",
    "sasl.username=mirror",
    "-X",
    "sasl.password=mirror-secret",
];

fn lines(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|i| format!("k{}:v{i}\n", i % 5))
        .collect()
}

fn link(cluster: &Cluster, name: &str, source: &str, topics: &str, config: Option<&str>) {
    let mut args = vec![
        "link", "create", name, "--source", source, "--topics", topics,
    ];
    if let Some(config) = config {
        args.extend(["--source-config", config]);
    }
    ok(&cluster.keel(0, &args));
}

#[test]
fn bad_sources_and_deleted_topics_show_as_states_and_pause_resume_delete_work() {
    let dir = tempfile::tempdir().unwrap();
    let source = Broker::start(
        &server_binary(),
        &dir.path().join("source"),
        &[
            "--kafka-security",
            "SASL_PLAINTEXT",
            "--add-scram",
            "SCRAM-SHA-512:mirror:mirror-secret",
        ],
    );
    for topic in ["doomed", "kept"] {
        ok(&keel(Some(&source), &["topic", "create", topic], None));
    }
    let kafka = source.kafka_addr.to_string();
    kcat_produce_keyed(&kafka, "doomed", &lines(0, 100), &SASL);
    kcat_produce_keyed(&kafka, "kept", &lines(0, 100), &SASL);
    let destination = Cluster::start(1);
    let config = |password: &str| {
        let path = dir.path().join(format!("source-{password}.properties"));
        let text = format!(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n\
             sasl.username=mirror\nsasl.password={password}\n"
        );
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    // Not a Kafka broker: the source's metrics (HTTP) port.
    let http = source.metrics_addr.to_string();
    link(&destination, "http", &http, "*", None);
    let wrong = config("wrong");
    link(&destination, "badpass", &kafka, "*", Some(&wrong));
    let right = config("mirror-secret");
    link(&destination, "good", &kafka, "doomed,kept", Some(&right));
    destination.wait_for(Duration::from_secs(30), "failed links", |c| {
        state(c, "http").contains("not a Kafka broker")
            && state(c, "badpass").contains("refused the credentials")
    });
    let listed = ok(&destination.keel(0, &["link", "list"]));
    assert!(listed.contains("good\tactive"), "{listed}");
    assert!(listed.contains("http\tfailed"), "{listed}");
    let described = ok(&destination.keel(0, &["link", "describe", "badpass"]));
    assert!(
        described.contains("source.sasl.password=[hidden]"),
        "{described}"
    );
    assert!(
        !described.contains("wrong"),
        "the password is never shown: {described}"
    );
    destination.wait_for(Duration::from_secs(30), "both topics mirrored", |c| {
        ["doomed", "kept"]
            .iter()
            .all(|t| mirrored(c, "good", t).iter().any(|(_, end, _)| *end == 100))
    });
    // Paused: nothing is fetched; resumed: it catches up.
    ok(&destination.keel(0, &["link", "pause", "good"]));
    kcat_produce_keyed(&kafka, "kept", &lines(100, 50), &SASL);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(state(&destination, "good"), "paused");
    assert_eq!(mirrored(&destination, "good", "kept")[0].1, 100);
    ok(&destination.keel(0, &["link", "resume", "good"]));
    destination.wait_for(Duration::from_secs(30), "caught up after resume", |c| {
        mirrored(c, "good", "kept").first().map(|m| m.1) == Some(150)
    });
    // The source topic deleted: its mirror stops with a state saying so; what it holds
    // stays.
    ok(&keel(Some(&source), &["topic", "delete", "doomed"], None));
    destination.wait_for(Duration::from_secs(60), "doomed's mirror failed", |c| {
        mirrored(c, "good", "doomed")
            .first()
            .is_some_and(|m| m.2.contains("source topic was deleted"))
    });
    let kept = fetch_from_leader(&destination, "doomed", 0).unwrap();
    assert_eq!(kept.0, 100, "the mirror keeps what it had");
    let topic = describe(&destination, "good")["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == "doomed")
        .unwrap()["state"]
        .clone();
    assert_eq!(topic, "failed");
    // Deleted: the link is gone; its mirror topics stay, still read-only.
    ok(&destination.keel(0, &["link", "delete", "good"]));
    let gone = destination.keel(0, &["link", "describe", "good"]);
    assert!(!gone.status.success());
    let refused = keel(
        Some(&destination.nodes[0]),
        &["produce", "kept"],
        Some("x\n"),
    );
    assert!(!refused.status.success(), "still read-only");
    assert_eq!(
        fetch_all(destination.nodes[0].kafka_addr, "kept", 0)
            .unwrap()
            .0,
        150
    );
}

fn records(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|i| format!("{i:08}{}\n", "m".repeat(992)))
        .collect()
}

#[test]
fn a_full_destination_disk_shows_as_a_state_and_the_mirror_resumes_intact() {
    use crate::full_disk::{fill_up, SmallDisk};
    // Made first, unmounted last (after the destination on it is gone).
    let disk = SmallDisk::new(96);
    let dir = tempfile::tempdir().unwrap();
    let source = Broker::start(&server_binary(), &dir.path().join("source"), &[]);
    ok(&keel(Some(&source), &["topic", "create", "big"], None));
    ok(&keel(
        Some(&source),
        &["produce", "big"],
        Some(&records(0, 4_000)),
    ));
    let voter = format!("1@127.0.0.1:{}", keel_tests::broker::free_port());
    let destination = Broker::start(
        &server_binary(),
        &disk.mount.join("data"),
        &["--controller-voters", &voter],
    );
    let tool = |args: &[&str]| keel(Some(&destination), args, None);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let kafka = source.kafka_addr.to_string();
    let create = [
        "link", "create", "full", "--source", &kafka, "--topics", "big",
    ];
    while !tool(&create).status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "the link is never made"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mirrored_up_to = || {
        let output = tool(&["link", "describe", "full", "--format", "json"]);
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        let partition = json["topics"][0]["partitions"][0].clone();
        (
            partition["mirrored_offset"].as_i64().unwrap_or(-1),
            partition["state"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let wait = |what: &str, done: &dyn Fn((i64, String)) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let now = mirrored_up_to();
            if done(now.clone()) {
                return now;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {now:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait("the first records mirrored", &|(end, _)| end == 4_000);
    // The destination's disk fills while the source takes 40 MB more.
    let filler = fill_up(&disk.mount);
    ok(&keel(
        Some(&source),
        &["produce", "big"],
        Some(&records(4_000, 40_000)),
    ));
    let (_, state) = wait("a storage state", &|(_, state)| state.contains("storage"));
    assert!(
        state.starts_with("failed: this cluster's storage"),
        "{state}"
    );
    // Room again: the mirror resumes where its log ends and catches up, intact.
    std::fs::remove_file(filler).unwrap();
    wait("everything mirrored", &|(end, _)| end == 44_000);
    let theirs = fetch_all(source.kafka_addr, "big", 0).unwrap();
    let ours = fetch_all(destination.kafka_addr, "big", 0).unwrap();
    assert_eq!(ours.0, 44_000);
    assert!(ours.1 == theirs.1, "byte for byte after the full disk");
    drop(destination);
}

#[test]
fn a_mirror_whose_next_offset_the_source_deleted_starts_again_at_the_source_log_start() {
    // Goal: before, a mirror the source's retention (or DeleteRecords) had passed while it
    // was paused stopped as failed for good. Like a follower behind its leader's log start,
    // it now starts again, empty, at the source's log start, on every destination replica.
    let dir = tempfile::tempdir().unwrap();
    let source = Broker::start(&server_binary(), &dir.path().join("source"), &[]);
    ok(&keel(
        Some(&source),
        &["topic", "create", "aging", "--config", "segment.bytes=1024"],
        None,
    ));
    let kafka = source.kafka_addr.to_string();
    kcat_produce_keyed(&kafka, "aging", &lines(0, 100), &[]);
    let destination = Cluster::start(3);
    link(&destination, "aged", &kafka, "aging", None);
    destination.wait_for(Duration::from_secs(30), "the first 100 mirrored", |c| {
        mirrored(c, "aged", "aging").first().map(|m| m.1) == Some(100)
    });
    ok(&destination.keel(0, &["link", "pause", "aged"]));
    // Small batches, so that whole segments lie below 450.
    let small = ["-X", "batch.num.messages=5"];
    kcat_produce_keyed(&kafka, "aging", &lines(100, 400), &small);
    let start = keel_tests::kafka_clients::delete_records(&kafka, "aging", 450);
    assert!(
        start > 100,
        "the source deleted past the mirror's end: {start}"
    );
    ok(&destination.keel(0, &["link", "resume", "aged"]));
    destination.wait_for(
        Duration::from_secs(60),
        "mirrored from the source's start",
        |c| {
            mirrored(c, "aged", "aging")
                .first()
                .is_some_and(|m| m.1 == 500 && m.2 == "mirroring")
        },
    );
    let theirs = fetch_all(source.kafka_addr, "aging", 0).unwrap();
    let ours = fetch_from_leader(&destination, "aging", 0).unwrap();
    assert_eq!(ours.0, 500);
    assert!(
        ours.1 == theirs.1,
        "byte for byte from the source's log start"
    );
    destination.wait_for(
        Duration::from_secs(30),
        "every destination replica starts there",
        |c| (0..3).all(|i| keel_tests::cluster::first_segment(c, i, "aging") == Some(start)),
    );
}

#[test]
fn active_active_links_never_mirror_a_mirror_back() {
    // Goal: two clusters linked both ways with a prefix each (MirrorMaker 2's active/active
    // naming) and patterns selecting everything: each takes the other's own topics once,
    // and never a mirror topic back (`b.a.orders`, `a.b.a.orders`, … for ever before).
    let a = Cluster::start(1);
    let b = Cluster::start(1);
    ok(&a.keel(0, &["topic", "create", "orders"]));
    ok(&b.keel(0, &["topic", "create", "local"]));
    let into = |cluster: &Cluster, name: &str, from: &Cluster, prefix: &str| {
        let source = from.nodes[0].kafka_addr.to_string();
        ok(&cluster.keel(
            0,
            &[
                "link",
                "create",
                name,
                "--source",
                &source,
                "--topics",
                "*",
                "--topic-prefix",
                prefix,
            ],
        ));
    };
    into(&b, "from-a", &a, "a.");
    into(&a, "from-b", &b, "b.");
    let has = |c: &Cluster, topic: &str| c.topics(0).iter().any(|t| t == topic);
    b.wait_for(Duration::from_secs(30), "a's topic on b", |c| {
        has(c, "a.orders")
    });
    a.wait_for(Duration::from_secs(30), "b's topic on a", |c| {
        has(c, "b.local")
    });
    // Topics made on each side after the mirrors exist, twice: once the other side has the
    // second one's mirror, its link has finished a discovery round that saw the mirror
    // topics too (a round makes every selected topic it lacks).
    for round in 0..2 {
        let (on_a, on_b) = (format!("later-a{round}"), format!("later-b{round}"));
        ok(&a.keel(0, &["topic", "create", &on_a]));
        ok(&b.keel(0, &["topic", "create", &on_b]));
        let (mirror_on_b, mirror_on_a) = (format!("a.{on_a}"), format!("b.{on_b}"));
        b.wait_for(Duration::from_secs(30), "a's later topic on b", |c| {
            has(c, &mirror_on_b)
        });
        a.wait_for(Duration::from_secs(30), "b's later topic on a", |c| {
            has(c, &mirror_on_a)
        });
    }
    let on_a = a.topics(0);
    let on_b = b.topics(0);
    assert!(!on_a.iter().any(|t| t.starts_with("b.a.")), "{on_a:?}");
    assert!(!on_b.iter().any(|t| t.starts_with("a.b.")), "{on_b:?}");
}

#[test]
fn a_source_topic_deleted_and_created_again_at_once_stops_its_mirror_by_id() {
    // Goal: Keel's topic ids were derived from the name, so a topic deleted and created
    // again at once had the same id and the link could mix two histories in one mirror
    // (it only noticed a topic missing for 15 s). Each creation has its own id now.
    let dir = tempfile::tempdir().unwrap();
    let source = Broker::start(&server_binary(), &dir.path().join("source"), &[]);
    let tool = |args: &[&str], input: Option<&str>| ok(&keel(Some(&source), args, input));
    tool(&["topic", "create", "phoenix"], None);
    let kafka = source.kafka_addr.to_string();
    kcat_produce_keyed(&kafka, "phoenix", &lines(0, 100), &[]);
    let destination = Cluster::start(1);
    link(&destination, "reborn", &kafka, "phoenix", None);
    destination.wait_for(Duration::from_secs(30), "the first history mirrored", |c| {
        mirrored(c, "reborn", "phoenix").first().map(|m| m.1) == Some(100)
    });
    let first = fetch_all(source.kafka_addr, "phoenix", 0).unwrap();
    tool(&["topic", "delete", "phoenix"], None);
    tool(&["topic", "create", "phoenix"], None);
    kcat_produce_keyed(&kafka, "phoenix", &lines(0, 300), &[]);
    destination.wait_for(Duration::from_secs(30), "the mirror stopped", |c| {
        mirrored(c, "reborn", "phoenix")
            .first()
            .is_some_and(|m| m.2.contains("created again"))
    });
    let kept = fetch_from_leader(&destination, "phoenix", 0).unwrap();
    assert_eq!(kept.0, 100, "nothing of the second history");
    assert!(kept.1 == first.1, "the first history, byte for byte");
}
