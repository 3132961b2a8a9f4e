//! Three real `keel-server` processes forming a cluster on 127.0.0.1: topics through the
//! controller quorum, controller failover after kill -9, brokers that die and rejoin, a
//! whole-cluster restart.

use keel_protocol::api::ErrorCode;
use keel_tests::broker::Broker;
use keel_tests::cluster::{create, create_everywhere, Cluster};
use keel_tests::tool::ok;
use std::collections::BTreeSet;
use std::time::Duration;

fn leaders(topic: &serde_json::Value) -> Vec<i64> {
    topic["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["leader"].as_i64().unwrap())
        .collect()
}

// A topic created on one broker is visible on all three, its leaders spread evenly, and its
// partitions are served only by their leaders.
#[test]
fn topics_created_on_one_broker_are_visible_on_all() {
    let cluster = Cluster::start(3);
    create(&cluster, 0, "spread", 6);
    cluster.wait_for(Duration::from_secs(10), "topic on every broker", |c| {
        (0..3).all(|i| c.topics(i).contains(&"spread".to_owned()))
    });
    let topic = cluster.topic(2, "spread").unwrap();
    let mut leaders = leaders(&topic);
    leaders.sort_unstable();
    assert_eq!(
        leaders,
        vec![1, 1, 2, 2, 3, 3],
        "two partitions led by each broker"
    );
    for p in topic["partitions"].as_array().unwrap() {
        assert_eq!(p["replicas"], serde_json::json!([p["leader"]]));
        assert_eq!(p["leader_epoch"], 0);
    }
    // A produce to a partition reaches only its leader; the others answer NotLeaderOrFollower.
    let partition_of = |leader: i64| {
        topic["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["leader"] == leader)
            .unwrap()["partition"]
            .as_u64()
            .unwrap() as u32
    };
    let p = partition_of(2);
    let batch = keel_tests::crash_batch(1);
    let mut on_leader = cluster.nodes[1].client();
    assert_eq!(
        on_leader.produce("spread", p, -1, batch.clone().into()),
        ErrorCode::None
    );
    let mut elsewhere = cluster.nodes[0].client();
    assert_eq!(
        elsewhere.produce("spread", p, -1, batch.into()),
        ErrorCode::NotLeaderOrFollower
    );
    assert_eq!(on_leader.read_batches("spread", p).len(), 1);
    // More replicas than live brokers is refused; as many as there are is fine.
    let too_many = cluster.keel(0, &["topic", "create", "wide", "--replication-factor", "5"]);
    assert!(String::from_utf8_lossy(&too_many.stderr).contains("larger than the 3 live brokers"));
    assert!(!cluster.topics(0).contains(&"wide".to_owned()));
    ok(&cluster.keel(0, &["topic", "create", "wide", "--replication-factor", "3"]));
    let wide = cluster.topic(0, "wide").unwrap();
    assert_eq!(
        wide["partitions"][0]["replicas"].as_array().unwrap().len(),
        3
    );
    // Deleting goes through the controller too.
    ok(&cluster.keel(1, &["topic", "delete", "spread"]));
    cluster.wait_for(Duration::from_secs(10), "topic gone everywhere", |c| {
        (0..3).all(|i| !c.topics(i).contains(&"spread".to_owned()))
    });
}

// kill -9 of the active controller: another voter takes over and topic creation works again
// within seconds, with no topic lost or duplicated; the killed node rejoins and leads its
// partitions again.
#[test]
fn controller_failover_after_kill_9() {
    let mut cluster = Cluster::start(3);
    create(&cluster, 0, "before", 3);
    let leader = cluster.controller_leader(0).expect("a controller leader") as usize;
    let victim = leader - 1;
    let killed = std::time::Instant::now();
    cluster.nodes[victim].stop_with(libc::SIGKILL);
    let survivor = (0..3).find(|i| *i != victim).unwrap();
    let mut created_after = None;
    while killed.elapsed() < Duration::from_secs(20) {
        let output = cluster.keel(survivor, &["topic", "create", "after", "--partitions", "2"]);
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        if output.status.success() || stderr.contains("already exists") {
            created_after = Some(killed.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = created_after.expect("topic creation works again after the controller died");
    // A few election timeouts (1–2 s each); measured about 1 s (docs/benchmarks.md).
    assert!(took < Duration::from_secs(6), "took {took:?}");
    let new_leader = cluster.controller_leader(survivor).unwrap();
    assert_ne!(new_leader as usize, leader, "another voter leads");
    // Each survivor applies the new controller's records on its own time.
    cluster.wait_for(
        Duration::from_secs(10),
        "both topics listed by every survivor",
        |c| {
            (0..3).filter(|i| *i != victim).all(|i| {
                let topics = c.topics(i);
                topics.contains(&"before".to_owned()) && topics.contains(&"after".to_owned())
            })
        },
    );
    for i in (0..3).filter(|i| *i != victim) {
        let topics = cluster.topics(i);
        let unique: BTreeSet<&String> = topics.iter().collect();
        assert_eq!(unique.len(), topics.len(), "no duplicates: {topics:?}");
    }
    // The killed node comes back (a new incarnation), is alive again everywhere, and leads
    // its partitions with a new epoch.
    cluster.nodes[victim].restart();
    cluster.wait_for(
        Duration::from_secs(20),
        "the restarted node alive everywhere",
        |c| (0..3).all(|i| c.alive_brokers(i).is_some_and(|a| a.len() == 3)),
    );
    cluster.wait_for(
        Duration::from_secs(20),
        "the restarted node leads its partitions",
        |c| {
            let topic = c.topic(victim, "before").unwrap();
            topic["partitions"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["leader"].as_i64() == p["replicas"][0].as_i64())
        },
    );
}

// Cluster timing is a setting: with 100 ms heartbeats, a 1 s lease and 50 ms Raft ticks a
// cluster fails over in under two seconds. The controller leader is killed, so both a new
// controller and new partition leaders are needed: 1.75 s measured, polling included (with
// the defaults — 250 ms, 4 s, 100 ms — 5.0 s, and this test fails).
#[test]
fn with_fast_timing_a_cluster_fails_over_in_under_two_seconds() {
    let timing = [
        ("KEEL_METADATA_HEARTBEAT_MS", "100"),
        ("KEEL_METADATA_LEASE_MS", "1000"),
        ("KEEL_METADATA_TICK_MS", "50"),
    ];
    let mut cluster = Cluster::start_with_env(3, &timing);
    let create = [
        "topic",
        "create",
        "fast",
        "--partitions",
        "3",
        "--replication-factor",
        "3",
    ];
    ok(&cluster.keel(0, &create));
    let partitions = |c: &Cluster, i: usize| {
        c.topic(i, "fast")
            .and_then(|t| t["partitions"].as_array().cloned())
            .unwrap_or_default()
    };
    cluster.wait_for(Duration::from_secs(20), "every replica in sync", |c| {
        (0..3).all(|i| {
            let partitions = partitions(c, i);
            partitions.len() == 3
                && partitions
                    .iter()
                    .all(|p| p["isr"].as_array().is_some_and(|isr| isr.len() == 3))
        })
    });
    let victim_id = cluster.controller_leader(0).expect("a controller leader");
    let victim = victim_id as usize - 1;
    let survivor = (victim + 1) % 3;
    let killed = std::time::Instant::now();
    cluster.nodes[victim].stop_with(libc::SIGKILL);
    cluster.wait_for(
        Duration::from_secs(20),
        "every partition led by a live broker",
        |c| {
            partitions(c, survivor).iter().all(|p| {
                let leader = p["leader"].as_i64().unwrap_or(-1);
                leader > 0 && leader != victim_id as i64
            })
        },
    );
    let took = killed.elapsed();
    eprintln!("failover with fast timing took {took:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_ne!(cluster.controller_leader(survivor), Some(victim_id));
}

// A broker killed and restarted: while it is gone its partitions are offline (replication
// factor 1) with a clear error; back, it leads them again at a higher epoch with its data.
#[test]
fn a_killed_broker_rejoins_and_leads_again() {
    let mut cluster = Cluster::start(3);
    create_everywhere(&cluster, "rejoin", 3);
    let controller = cluster.controller_leader(0).unwrap() as usize - 1;
    let victim = (0..3).find(|i| *i != controller).unwrap();
    let victim_id = victim as i64 + 1;
    let topic = cluster.topic(victim, "rejoin").unwrap();
    let partition = topic["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["leader"] == victim_id)
        .expect("the victim leads one partition")["partition"]
        .as_u64()
        .unwrap() as u32;
    let epoch_before = topic["partitions"][partition as usize]["leader_epoch"]
        .as_i64()
        .unwrap();
    let mut client = cluster.nodes[victim].client();
    assert_eq!(
        client.produce("rejoin", partition, -1, keel_tests::crash_batch(7).into()),
        ErrorCode::None
    );
    cluster.nodes[victim].stop_with(libc::SIGKILL);
    let other = (0..3).find(|i| *i != victim).unwrap();
    cluster.wait_for(
        Duration::from_secs(20),
        "the killed broker fenced, its partition offline",
        |c| {
            let fenced = c.describe(other).is_some_and(|d| {
                d["brokers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|b| b["id"] == victim_id && b["state"] == "fenced")
            });
            let offline = c
                .topic(other, "rejoin")
                .is_some_and(|t| t["partitions"][partition as usize]["leader"] == -1);
            fenced && offline
        },
    );
    // The metrics say so too.
    cluster.wait_for(
        Duration::from_secs(10),
        "fenced and offline in the metrics",
        |c| {
            let page = c.nodes[other].metrics();
            let get = |name: &str| keel_tests::broker::metric(&page, name, "");
            get("keel_cluster_brokers_fenced") == 1.0
                && get("keel_cluster_brokers_alive") == 2.0
                && get("keel_cluster_offline_partitions") == 1.0
                && get("keel_cluster_lease_valid") == 1.0
        },
    );
    cluster.nodes[victim].restart();
    cluster.wait_for(
        Duration::from_secs(20),
        "it leads its partition again",
        |c| {
            c.topic(other, "rejoin")
                .is_some_and(|t| t["partitions"][partition as usize]["leader"] == victim_id)
        },
    );
    let topic = cluster.topic(other, "rejoin").unwrap();
    let epoch_after = topic["partitions"][partition as usize]["leader_epoch"]
        .as_i64()
        .unwrap();
    assert!(
        epoch_after > epoch_before,
        "epoch {epoch_before} -> {epoch_after}"
    );
    let mut client = cluster.nodes[victim].client();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while client.produce("rejoin", partition, -1, keel_tests::crash_batch(8).into())
        != ErrorCode::None
    {
        assert!(std::time::Instant::now() < deadline, "produce works again");
        std::thread::sleep(Duration::from_millis(100));
    }
    let batches = client.read_batches("rejoin", partition);
    assert_eq!(
        batches.len(),
        2,
        "the batch from before the kill is still there"
    );
    // Each batch carries the leader epoch it was appended under.
    let epochs: Vec<i64> = batches
        .iter()
        .map(|b| {
            i64::from(
                keel_protocol::batch::BatchView::new(b)
                    .unwrap()
                    .partition_leader_epoch(),
            )
        })
        .collect();
    assert_eq!(epochs, vec![epoch_before, epoch_after]);
}

// All three stopped and started again: every topic is still there, on every node.
#[test]
fn a_whole_cluster_restart_keeps_every_topic() {
    let mut cluster = Cluster::start(3);
    for (i, name) in ["one", "two", "three"].iter().enumerate() {
        create(&cluster, i, name, 2);
    }
    let expected: BTreeSet<String> = ["one", "three", "two"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for node in &mut cluster.nodes {
        assert!(node.stop().success());
    }
    for node in &mut cluster.nodes {
        node.restart();
    }
    cluster.wait_for(Duration::from_secs(30), "every topic on every node", |c| {
        (0..3).all(|i| {
            let topics: BTreeSet<String> = c
                .topics(i)
                .into_iter()
                .filter(|t| !t.starts_with("__"))
                .collect();
            topics == expected
        })
    });
    // And the cluster still takes changes.
    create(&cluster, 2, "four", 1);
}

fn spawn_bad(cluster: &Cluster, args: &[&str]) -> std::process::Output {
    let dir = cluster
        .dir
        .path()
        .join(format!("bad{}", keel_tests::broker::free_port()));
    let listen = format!("127.0.0.1:{}", keel_tests::broker::free_port());
    let metrics = format!("127.0.0.1:{}", keel_tests::broker::free_port());
    let mut child = std::process::Command::new(keel_tests::broker::server_binary())
        .arg("--data-dir")
        .arg(&dir)
        .args([
            "--listen",
            &listen,
            "--metrics-listen",
            &metrics,
            "--kafka-listen",
            "off",
            "--shards",
            "1",
        ])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "the misconfigured node did not stop: {:?}",
                child.wait_with_output()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// Misconfigured nodes are refused with one line naming the problem, and the cluster keeps
// working: a voter list that disagrees, a broker pointing at the wrong quorum, a duplicate
// broker id, a controller port already in use.
#[test]
fn misconfigured_nodes_are_refused_and_the_cluster_keeps_working() {
    let cluster = Cluster::start(3);
    let stderr =
        |output: &std::process::Output| String::from_utf8_lossy(&output.stderr).to_string();

    // Node 4 believes the quorum has four voters.
    let port = keel_tests::broker::free_port();
    let voters = format!("{},4@127.0.0.1:{port}", cluster.voters);
    let output = spawn_bad(
        &cluster,
        &["--node-id", "4", "--controller-voters", &voters],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("voter list disagrees"),
        "{}",
        stderr(&output)
    );

    // A broker-only node given the right addresses under the wrong ids.
    let wrong: String = cluster
        .voters
        .split(',')
        .enumerate()
        .map(|(i, v)| format!("{}@{}", i + 7, v.split_once('@').unwrap().1))
        .collect::<Vec<_>>()
        .join(",");
    let output = spawn_bad(&cluster, &["--node-id", "5", "--controller-voters", &wrong]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("voter list disagrees"),
        "{}",
        stderr(&output)
    );

    // Two broker-only processes with the same id: the second is refused.
    let dir = cluster.dir.path().join("node6");
    let first = Broker::start(
        &keel_tests::broker::server_binary(),
        &dir,
        &[
            "--node-id",
            "6",
            "--controller-voters",
            &cluster.voters,
            "--shards",
            "1",
        ],
    );
    cluster.wait_for(Duration::from_secs(20), "broker 6 registered", |c| {
        c.alive_brokers(0).is_some_and(|a| a.contains(&6))
    });
    let output = spawn_bad(
        &cluster,
        &["--node-id", "6", "--controller-voters", &cluster.voters],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("already registered by a live broker"),
        "{}",
        stderr(&output)
    );
    drop(first);
    cluster.wait_for(Duration::from_secs(20), "broker 6 fenced once gone", |c| {
        c.alive_brokers(0).is_some_and(|a| !a.contains(&6))
    });

    // A voter whose controller port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let solo = format!("1@{address}");
    let output = spawn_bad(&cluster, &["--node-id", "1", "--controller-voters", &solo]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("for the controller: the address is in use"),
        "{}",
        stderr(&output)
    );

    // Garbage, a huge length and a hello from nowhere on a voter's controller port: each
    // connection is closed or refused; nothing else changes.
    let controller_port = cluster
        .voters
        .split(',')
        .next()
        .unwrap()
        .split_once('@')
        .unwrap()
        .1
        .to_owned();
    for bytes in [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        vec![0, 0, 0, 5, 5, 0, 0, 0, 0],
    ] {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&controller_port).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(&bytes).unwrap();
        let mut buf = [0u8; 64];
        // Closed (0 bytes or a reset), never an answer that acts on it.
        assert!(matches!(stream.read(&mut buf), Ok(0) | Err(_)), "{bytes:?}");
    }

    // The cluster never noticed.
    create(&cluster, 1, "still-fine", 3);
    assert_eq!(cluster.alive_brokers(2).unwrap(), vec![1, 2, 3]);
}

// Snapshots and log compaction: with snapshots every 5 entries and rewrites past 2 KiB,
// a voter that was down while 30 topics were made catches up from the leader's snapshot
// (the entries it missed are gone from the leader's log), every voter's metadata log on
// disk starts with a snapshot, and a restart of all three keeps every topic.
#[test]
fn snapshots_compact_the_metadata_log_and_a_lagging_voter_catches_up() {
    let env = [
        ("KEEL_METADATA_SNAPSHOT_ENTRIES", "5"),
        ("KEEL_METADATA_REWRITE_BYTES", "2048"),
    ];
    let mut cluster = Cluster::start_with_env(3, &env);
    let controller = cluster.controller_leader(0).unwrap() as usize - 1;
    let lagging = (0..3).find(|i| *i != controller).unwrap();
    assert!(cluster.nodes[lagging].stop().success());
    let up = (0..3).find(|i| *i != lagging).unwrap();
    let names: Vec<String> = (0..30).map(|i| format!("snap{i}")).collect();
    for name in &names {
        create(&cluster, up, name, 1);
    }
    cluster.nodes[lagging].restart();
    cluster.wait_for(
        Duration::from_secs(30),
        "the lagging voter has every topic",
        |c| {
            let topics = c.topics(lagging);
            names.iter().all(|n| topics.contains(n))
        },
    );
    for node in &mut cluster.nodes {
        assert!(node.stop().success());
    }
    // The two that saw all 30 changes wrote past 2 KiB and rewrote their files (the lagging
    // one installed the leader's snapshot into a file still under the limit).
    for (_, node) in cluster
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != lagging)
    {
        let log = std::fs::read(node.data_dir.join("controller/metadata.log")).unwrap();
        // A record: u32 length, u32 CRC, kind (4: a snapshot that replaces the log).
        assert_eq!(
            log.get(8),
            Some(&4),
            "{}: the file ({} bytes) starts with a snapshot",
            node.data_dir.display(),
            log.len()
        );
    }
    for node in &mut cluster.nodes {
        node.restart();
    }
    cluster.wait_for(
        Duration::from_secs(30),
        "every topic after the restart",
        |c| {
            (0..3).all(|i| {
                let topics = c.topics(i);
                names.iter().all(|n| topics.contains(n))
            })
        },
    );
}

// `keel cluster metadata`: the tree (brokers, controller, topics and their partition
// states, configs), a subtree by path, and `--watch` printing a change as it is applied.
// A single-node broker describes itself as a quorum of one.
#[test]
fn the_metadata_tree_and_watch() {
    use std::io::BufRead;
    let cluster = Cluster::start(3);
    create(&cluster, 0, "tree", 2);
    let tree = ok(&cluster.keel(1, &["cluster", "metadata"]));
    for path in [
        "/brokers/ids/1 ",
        "/brokers/ids/3 ",
        "/controller ",
        "/topics/tree ",
        "/topics/tree/partitions/1/state ",
        "/config/topics/tree ",
    ] {
        assert!(
            tree.lines().any(|l| l.starts_with(path)),
            "{path} in:\n{tree}"
        );
    }
    let subtree = ok(&cluster.keel(2, &["cluster", "metadata", "/brokers/ids"]));
    assert_eq!(subtree.lines().count(), 3, "{subtree}");
    let mut watch = std::process::Command::new(keel_tests::broker::tool_binary())
        .args([
            "--bootstrap",
            &cluster.nodes[2].addr.to_string(),
            "cluster",
            "metadata",
            "/topics",
            "--watch",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    // The initial tree first, then the change.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
        assert!(line.starts_with("/topics/tree"), "{line}");
    }
    create(&cluster, 0, "watched", 1);
    let seen = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with("/topics/watched ") => break true,
            Ok(_) => continue,
            Err(_) => break false,
        }
    };
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(seen, "--watch printed the new topic");

    let dir = tempfile::tempdir().unwrap();
    let single = Broker::start(&keel_tests::broker::server_binary(), dir.path(), &[]);
    let out = ok(&keel_tests::tool::keel(
        Some(&single),
        &["cluster", "describe", "--format", "json"],
        None,
    ));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["controller"]["leader"], 1);
    assert_eq!(json["controller"]["voters"], serde_json::json!([1]));
    assert_eq!(json["brokers"][0]["state"], "alive");
}
