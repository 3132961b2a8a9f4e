//! README's three-broker recipe, run as written (its ports mapped to free ones, its data
//! directories into a temporary one): kcat and confluent-kafka each produce 10,000 keyed
//! records to a 6-partition topic with three copies and read them back. The recipe once gave
//! no Kafka ports, so all three brokers shared 127.0.0.1:9092 and advertised it, and kcat
//! could not deliver 2,999 of 3,000 records.

use keel_client::partitioner::partition_for_key;
use keel_tests::kafka_clients::{clients, kcat_produce_keyed, kcat_read, run};
use keel_tests::recipe::{lines, mapped, start_server, Processes};
use keel_tests::tool::{keel, ok};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The `keel-server` command lines of README's cluster recipe.
fn recipe() -> Vec<Vec<String>> {
    let lines = lines("README.md", "target/release/keel-server ");
    assert_eq!(lines.len(), 3, "README's recipe starts three brokers");
    lines
}

#[test]
fn the_readme_cluster_recipe_works_with_kcat_and_confluent_kafka() {
    let clients = clients();
    let dir = tempfile::tempdir().unwrap();
    let mut ports = HashMap::new();
    let mut processes = Processes(Vec::new());
    for line in recipe() {
        processes
            .0
            .push(start_server(&mapped(&line, dir.path(), &mut ports)));
    }
    let at = |port: u16| format!("127.0.0.1:{}", ports[&port.to_string()]);
    let native = at(7070);
    let kafka = [at(9092), at(9192), at(9292)].join(",");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = keel(
            None,
            &[
                "--bootstrap",
                &native,
                "cluster",
                "describe",
                "--format",
                "json",
            ],
            None,
        );
        let alive = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| {
                v["brokers"]
                    .as_array()
                    .map(|b| b.iter().filter(|b| b["state"] == "alive").count())
            });
        if alive == Some(3) {
            break;
        }
        assert!(Instant::now() < deadline, "three brokers alive");
        std::thread::sleep(Duration::from_millis(200));
    }

    let script = clients.scripts.join("confluent_kafka_test.py");
    run(
        &clients.python,
        &[script.to_str().unwrap(), &kafka, "recipe", "readme"],
        &[],
        Duration::from_secs(240),
    );

    // kcat has no admin API: the topic is made as the README says, with the keel tool.
    ok(&keel(
        None,
        &[
            "--bootstrap",
            &native,
            "topic",
            "create",
            "kcat-recipe",
            "--partitions",
            "6",
            "--replication-factor",
            "3",
        ],
        None,
    ));
    let lines: String = (0..10_000)
        .map(|i| format!("key-{i}:value-{i}\n"))
        .collect();
    kcat_produce_keyed(&kafka, "kcat-recipe", &lines, &[]);
    let mut read = kcat_read(&kafka, "kcat-recipe", "beginning");
    assert_eq!(read.len(), 10_000, "every record read back once");
    read.sort_by_key(|(_, key, _)| key[4..].parse::<u32>().unwrap());
    for (i, (partition, key, value)) in read.iter().enumerate() {
        assert_eq!(
            (key.as_str(), value.as_str()),
            (&*format!("key-{i}"), &*format!("value-{i}"))
        );
        assert_eq!(
            *partition,
            partition_for_key(key.as_bytes(), 6),
            "{key} on murmur2's partition"
        );
    }
}
