//! A broker never deletes its data on the word of metadata that is not its cluster's, nor
//! because its topic list is missing: a wiped or new quorum with the same voter ids is
//! refused (its cluster id differs from the one in the broker's data directory), and a
//! missing `topics.toml` keeps every partition directory, and a metadata log damaged before
//! its last round refuses start instead of being cut.

use keel_protocol::api::{ErrorCode, Request, Response};
use keel_tests::broker::{server_binary, Broker};
use keel_tests::cluster::Cluster;
use keel_tests::tool::ok;
use std::time::{Duration, Instant};

#[test]
fn a_broker_refuses_a_new_quorum_with_the_same_voter_ids_and_keeps_its_data() {
    // Goal: before, a broker pointed at a wiped quorum applied its empty metadata and
    // deleted every partition it held.
    let mut cluster = Cluster::start(1);
    let dir = cluster.dir.path().join("node2");
    let args = [
        "--node-id",
        "2",
        "--controller-voters",
        &cluster.voters,
        "--shards",
        "2",
    ];
    let mut second = Broker::start(&server_binary(), &dir, &args);
    cluster.wait_for(Duration::from_secs(30), "two brokers alive", |c| {
        c.alive_brokers(0).is_some_and(|alive| alive.len() == 2)
    });
    ok(&cluster.keel(
        0,
        &[
            "topic",
            "create",
            "kept",
            "--partitions",
            "2",
            "--replication-factor",
            "2",
        ],
    ));
    let held = [dir.join("kept-0"), dir.join("kept-1")];
    let deadline = Instant::now() + Duration::from_secs(30);
    while !held.iter().all(|d| d.exists()) {
        assert!(
            Instant::now() < deadline,
            "broker 2 holds the topic's partitions"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let cluster_id = std::fs::read_to_string(dir.join("cluster.id")).expect("cluster.id written");
    second.stop();

    // The quorum is wiped and starts again: a new cluster with the same voter ids.
    cluster.nodes[0].stop_with(libc::SIGKILL);
    std::fs::remove_dir_all(cluster.dir.path().join("node1")).unwrap();
    cluster.nodes[0].restart();

    let (code, stderr) = second.run_to_exit(Duration::from_secs(30));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("belongs to cluster {}", cluster_id.trim())),
        "{stderr}"
    );
    assert!(
        held.iter().all(|d| d.exists()),
        "broker 2's partitions are kept"
    );
}

#[test]
fn a_missing_topic_list_keeps_every_partition_directory() {
    // Goal: before, a broker started without `topics.toml` deleted every partition
    // directory as a leftover of a deleted topic.
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&server_binary(), dir.path(), &["--shards", "2"]);
    let mut client = broker.client();
    client.create_topic("kept", 2);
    let batch = keel_tests::crash_batch(7);
    assert_eq!(client.produce("kept", 1, -1, batch.into()), ErrorCode::None);
    let before = client.read_partition("kept", 1);
    assert!(!before.is_empty());
    drop(client);
    broker.stop();
    std::fs::remove_file(dir.path().join("topics.toml")).unwrap();
    broker.restart();
    assert!(dir.path().join("kept-0").exists() && dir.path().join("kept-1").exists());
    let mut client = broker.client();
    let Response::Metadata { topics, .. } = client.call(Request::Metadata {
        topics: vec!["kept".into()],
    }) else {
        panic!("Metadata answered with another response")
    };
    assert_ne!(
        topics[0].error,
        ErrorCode::None,
        "not served while unlisted"
    );
    // Created again with its partition count, the topic serves what it held.
    client.create_topic("kept", 2);
    assert_eq!(client.read_partition("kept", 1), before);
}

#[test]
fn a_metadata_log_damaged_before_its_last_round_refuses_start_naming_the_byte() {
    // Goal: before, a bad record in the middle of the metadata log was taken for a torn
    // tail and cut, with every fsynced vote and entry after it.
    let mut cluster = Cluster::start(1);
    for topic in ["a", "b", "c"] {
        ok(&cluster.keel(0, &["topic", "create", topic]));
    }
    cluster.nodes[0].stop();
    let log = cluster.dir.path().join("node1/controller/metadata.log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[12] ^= 0x40;
    std::fs::write(&log, &bytes).unwrap();
    let (code, stderr) = cluster.nodes[0].run_to_exit(Duration::from_secs(30));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("metadata.log is corrupt at byte 0"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&log).unwrap(), bytes, "nothing was cut");
}
