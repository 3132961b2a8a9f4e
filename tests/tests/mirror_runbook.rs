//! docs/mirroring.md's runbooks run as written (issue 23): README's three brokers as the
//! destination, the doc's one-broker source, then every `keel` command of the doc in its
//! order — set-up, failover, failback — each succeeding, with records produced where a user
//! would (before the link, after the promotion). At the end the old source is, byte for
//! byte, what the promoted cluster holds.

use keel_tests::kafka_clients::kcat_produce_keyed;
use keel_tests::mirror::fetch_all;
use keel_tests::recipe::{lines, mapped, start_server, Processes};
use keel_tests::tool::{keel, ok};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn records(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|i| format!("k{}:v{i}\n", i % 7))
        .collect()
}

/// Runs `keel ARGS` until it succeeds (a cluster just started may not have its leader
/// yet), at most 30 s; its output.
fn keel_ok(args: &[String]) -> String {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = keel(None, &args, None);
        if output.status.success() || Instant::now() > deadline {
            return ok(&output);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Waits until `keel link describe LINK` (through `native`) shows every partition of
/// `topic` mirrored up to what `kafka` serves.
fn wait_mirrored(native: &str, link: &str, source_kafka: SocketAddr, topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let ends: Vec<i64> = (0..3)
        .map(|p| fetch_all(source_kafka, topic, p).map_or(0, |f| f.0))
        .collect();
    loop {
        let args = [
            "--bootstrap",
            native,
            "link",
            "describe",
            link,
            "--format",
            "json",
        ];
        let output = keel(None, &args, None);
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        let done = json["topics"][0]["partitions"]
            .as_array()
            .is_some_and(|ps| {
                ps.len() == 3
                    && ps.iter().all(|p| {
                        let partition = p["partition"].as_u64().unwrap_or(9) as usize;
                        p["mirrored_offset"].as_i64() == ends.get(partition).copied()
                    })
            });
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "{link} never caught up: {json}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_mirroring_runbooks_work_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut ports = HashMap::new();
    let mut processes = Processes(Vec::new());
    let servers = [
        lines("README.md", "target/release/keel-server "),
        lines("docs/mirroring.md", "target/release/keel-server "),
    ]
    .concat();
    assert_eq!(servers.len(), 4, "three destination brokers and a source");
    for line in servers {
        processes
            .0
            .push(start_server(&mapped(&line, dir.path(), &mut ports)));
    }
    let at = |ports: &HashMap<String, u16>, port: u16| -> SocketAddr {
        format!("127.0.0.1:{}", ports[&port.to_string()])
            .parse()
            .unwrap()
    };
    let destination = at(&ports, 7070).to_string();
    let source_kafka = at(&ports, 8092);
    let destination_kafka = [9092, 9192, 9292]
        .map(|p| at(&ports, p).to_string())
        .join(",");
    let commands = lines("docs/mirroring.md", "target/release/keel ");
    assert!(
        commands.len() >= 7,
        "the runbooks' keel commands: {commands:?}"
    );
    for command in commands {
        let args = mapped(&command, dir.path(), &mut ports);
        let verb = (args[2].as_str(), args.get(3).map_or("", String::as_str));
        let link = args.get(4).cloned().unwrap_or_default();
        match verb {
            // Before the failover the source has records and the link has them all.
            ("link", "promote") => wait_mirrored(&destination, &link, source_kafka, "orders"),
            // The planned failback: the promoted side stops taking writes first.
            ("link", "delete") => {
                kcat_produce_keyed(&destination_kafka, "orders", &records(1_000, 300), &[])
            }
            _ => {}
        }
        let printed = keel_ok(&args);
        match verb {
            ("topic", "create") => {
                kcat_produce_keyed(&source_kafka.to_string(), "orders", &records(0, 600), &[])
            }
            ("link", "describe") => assert!(printed.contains("orders"), "{printed}"),
            _ => {}
        }
    }
    // After the failback link caught up, the old source holds what the promoted cluster
    // holds, byte for byte.
    let promoted = at(&ports, 9092);
    let link = "west";
    let deadline = Instant::now() + Duration::from_secs(60);
    for partition in 0..3 {
        loop {
            let theirs = (0..3)
                .map(|i| at(&ports, [9092, 9192, 9292][i]))
                .find_map(|addr| fetch_all(addr, "orders", partition));
            let ours = fetch_all(source_kafka, "orders", partition);
            if theirs.is_some() && theirs == ours {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "partition {partition}: the old source is not the promoted cluster ({promoted}, {link})"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let total: i64 = (0..3)
        .map(|p| fetch_all(source_kafka, "orders", p).unwrap().0)
        .sum();
    assert_eq!(total, 900);
    drop(processes);
}
