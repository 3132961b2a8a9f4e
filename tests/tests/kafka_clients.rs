//! Kafka clients against a real `keel-server`'s Kafka listener: confluent-kafka
//! (librdkafka), kafka-python, aiokafka, kafkajs and kcat, each driven through its own
//! public API by a script in `tests/kafka/` (installed into `target/` on first use). Each
//! client: metadata, create/delete topics, keyed idempotent acks=all produce landing on
//! Kafka's murmur2 partition in every codec it offers, consume from earliest, latest and a
//! timestamp, a group of two sharing the partitions, describe configs, and commit then
//! resume after a broker restart. Also: one record over both protocols, and Kafka groups in
//! `keel group`.

use keel_tests::broker::{server_binary, Broker};
use keel_tests::kafka_clients::{clients, kcat, kcat_produce_keyed, kcat_read, run};
use keel_tests::tool::{keel, ok};
use std::path::Path;
use std::time::Duration;

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

fn broker(dir: &Path) -> Broker {
    Broker::start(&server_binary(), dir, &["--shards", "2"])
}

/// A Python script's phases main, commit, then (after a restart) resume.
fn python_client(script: &str, prefix: &str) {
    let clients = clients();
    let dir = tempfile::tempdir().unwrap();
    let mut broker = broker(dir.path());
    let bootstrap = broker.kafka_addr.to_string();
    let path = clients.scripts.join(script);
    let path = path.to_str().unwrap();
    for phase in ["main", "commit"] {
        run(
            &clients.python,
            &[path, &bootstrap, phase, prefix],
            &[],
            SCRIPT_TIMEOUT,
        );
    }
    broker.stop();
    broker.restart();
    run(
        &clients.python,
        &[path, &bootstrap, "resume", prefix],
        &[],
        SCRIPT_TIMEOUT,
    );
}

#[test]
fn confluent_kafka_works_unchanged() {
    python_client("confluent_kafka_test.py", "ck");
}

#[test]
fn kafka_python_works_unchanged() {
    python_client("kafka_python_test.py", "kp");
}

#[test]
fn aiokafka_works_unchanged() {
    python_client("aiokafka_test.py", "ak");
}

#[test]
fn kafkajs_works_unchanged() {
    let clients = clients();
    let dir = tempfile::tempdir().unwrap();
    let mut broker = broker(dir.path());
    let bootstrap = broker.kafka_addr.to_string();
    let script = clients.scripts.join("kafkajs_test.js");
    let script = script.to_str().unwrap();
    let env = [("KEEL_NODE_MODULES", clients.node_modules.to_str().unwrap())];
    let node = Path::new("node");
    for phase in ["main", "commit"] {
        run(
            node,
            &[script, &bootstrap, phase, "kj"],
            &env,
            SCRIPT_TIMEOUT,
        );
    }
    broker.stop();
    broker.restart();
    run(
        node,
        &[script, &bootstrap, "resume", "kj"],
        &env,
        SCRIPT_TIMEOUT,
    );
}

#[test]
fn kcat_works_unchanged() {
    // kcat has no admin API: the topic is made with the keel tool.
    clients();
    let dir = tempfile::tempdir().unwrap();
    let mut broker = broker(dir.path());
    let bootstrap = broker.kafka_addr.to_string();
    ok(&keel(
        Some(&broker),
        &["topic", "create", "cat", "--partitions", "4"],
        None,
    ));
    let metadata: serde_json::Value =
        serde_json::from_str(&kcat(&["-b", &bootstrap, "-L", "-J"], None)).unwrap();
    assert_eq!(metadata["brokers"].as_array().unwrap().len(), 1);
    let topic = metadata["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == "cat")
        .expect("kcat lists the topic");
    assert_eq!(topic["partitions"].as_array().unwrap().len(), 4);

    // Keyed, idempotent, acks=all, every codec librdkafka offers.
    let mut sent = Vec::new();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let lines: String = (0..30)
            .map(|i| format!("{codec}-{i}:value-{codec}-{i}\n"))
            .collect();
        kcat_produce_keyed(&bootstrap, "cat", &lines, &["-z", codec]);
        sent.extend((0..30).map(|i| format!("{codec}-{i}")));
    }
    let read = kcat_read(&bootstrap, "cat", "beginning");
    assert_eq!(
        read.len(),
        sent.len(),
        "every record read from the beginning"
    );
    for (partition, key, value) in &read {
        assert_eq!(value, &format!("value-{key}"));
        let expected = keel_client::partitioner::partition_for_key(key.as_bytes(), 4);
        assert_eq!(*partition, expected, "{key} on its murmur2 partition");
    }
    // By timestamp: nothing is newer than now.
    let future = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 60_000)
        .to_string();
    assert!(kcat_read(&bootstrap, "cat", &format!("s@{future}")).is_empty());
    assert_eq!(kcat_read(&bootstrap, "cat", "s@0").len(), sent.len());
    // From the end: nothing old.
    assert!(kcat_read(&bootstrap, "cat", "end").is_empty());

    // A balanced group of two kcat consumers: each partition read by one of them once.
    let group = |bootstrap: String| {
        std::thread::spawn(move || {
            kcat(
                &[
                    "-b",
                    &bootstrap,
                    "-G",
                    "kcat-pair",
                    "cat",
                    "-e",
                    "-q",
                    "-f",
                    "%p %k\\n",
                    "-X",
                    "auto.offset.reset=earliest",
                    "-X",
                    "session.timeout.ms=10000",
                ],
                None,
            )
        })
    };
    let (a, b) = (group(bootstrap.clone()), group(bootstrap.clone()));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    let keys: std::collections::BTreeSet<&str> = a
        .lines()
        .chain(b.lines())
        .filter_map(|l| l.split(' ').nth(1))
        .collect();
    assert_eq!(
        keys.len(),
        sent.len(),
        "the group read every record: {a}\n---\n{b}"
    );
    assert_eq!(
        a.lines().count() + b.lines().count(),
        sent.len(),
        "and each once"
    );

    // The group committed where it stopped: after a restart it reads only what is new.
    broker.stop();
    broker.restart();
    kcat(
        &["-b", &bootstrap, "-P", "-t", "cat", "-K:", "-p", "0"],
        Some("after:restart\n"),
    );
    let after = kcat(
        &[
            "-b",
            &bootstrap,
            "-G",
            "kcat-pair",
            "cat",
            "-e",
            "-q",
            "-f",
            "%k\\n",
        ],
        None,
    );
    assert_eq!(
        after.trim(),
        "after",
        "the group resumed at its committed offsets"
    );
    let described = ok(&keel(
        Some(&broker),
        &["group", "describe", "kcat-pair"],
        None,
    ));
    assert!(
        described.contains("cat"),
        "keel group describe shows the kcat group: {described}"
    );
}

#[test]
fn one_record_two_protocols() {
    // Goal: decision 12: a record produced over one protocol is consumed over the other.
    clients();
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let bootstrap = broker.kafka_addr.to_string();
    let mut native = broker.client();
    native.create_topic("both", 1);
    kcat(
        &["-b", &bootstrap, "-P", "-t", "both", "-K:", "-z", "snappy"],
        Some("from-kafka:hello\n"),
    );
    let mut builder = keel_protocol::batch::BatchBuilder::new();
    builder.push(keel_protocol::batch::NewRecord::value(0, "from-native"));
    let batch = bytes::Bytes::from(builder.build().unwrap());
    assert_eq!(
        native.produce("both", 0, -1, batch),
        keel_protocol::api::ErrorCode::None
    );
    let records = native.read_partition("both", 0);
    assert_eq!(records[0].1.as_deref(), Some("from-kafka"));
    assert_eq!(
        records[0].2, "hello",
        "a Kafka client's snappy batch read natively"
    );
    let read = kcat_read(&bootstrap, "both", "beginning");
    assert_eq!(read.len(), 2);
    assert_eq!(
        read[1].2, "from-native",
        "a native record read by a Kafka client"
    );
}

#[test]
fn kafka_groups_show_and_reset_in_the_keel_tool() {
    // Goal: a group made by a Kafka client is a group like any other: `keel group
    // describe` shows its committed offsets and `keel group reset-offsets` moves them, and
    // the Kafka client then reads from there.
    clients();
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let bootstrap = broker.kafka_addr.to_string();
    ok(&keel(
        Some(&broker),
        &["topic", "create", "reset", "--partitions", "1"],
        None,
    ));
    let lines: String = (0..10).map(|i| format!("k{i}:v{i}\n")).collect();
    kcat(
        &["-b", &bootstrap, "-P", "-t", "reset", "-K:"],
        Some(&lines),
    );
    let consume = || {
        kcat(
            &[
                "-b",
                &bootstrap,
                "-G",
                "kafka-made",
                "reset",
                "-e",
                "-q",
                "-f",
                "%k\\n",
                "-X",
                "auto.offset.reset=earliest",
            ],
            None,
        )
    };
    assert_eq!(consume().lines().count(), 10);
    let described = ok(&keel(
        Some(&broker),
        &["group", "describe", "kafka-made"],
        None,
    ));
    let row = described
        .lines()
        .find(|l| l.starts_with("reset"))
        .expect("a row for the topic");
    let numbers: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(numbers[2], "10", "committed offset shown: {described}");
    ok(&keel(
        Some(&broker),
        &[
            "group",
            "reset-offsets",
            "kafka-made",
            "--topic",
            "reset",
            "--to-offset",
            "7",
        ],
        None,
    ));
    assert_eq!(
        consume().lines().collect::<Vec<_>>(),
        ["k7", "k8", "k9"],
        "the Kafka client resumes at the reset offset"
    );
}
