//! Offsets a replicated partition keeps across failures: DeleteRecords moves every
//! replica's log start (deleted records never come back after a failover), and every
//! replica checkpoints its high watermark (a restarted replica starts from what the
//! replicas had agreed on, not from its log start until it fetches again).

use crate::replicated;

use keel_protocol::api::ErrorCode;
use keel_tests::cluster::Cluster;
use keel_tests::kafka_clients::delete_records;
use keel_tests::tool::ok;
use replicated::{create_replicated, isr, leader};
use std::time::Duration;

/// Partition 0's `field` as node `i` describes it.
fn partition_field(cluster: &Cluster, i: usize, topic: &str, field: &str) -> Option<i64> {
    cluster.topic(i, topic)?["partitions"][0][field].as_i64()
}

/// Produces `count` one-record batches to partition 0 through its leader (acks=all).
fn produce(cluster: &Cluster, topic: &str, count: u64) {
    let at = leader(cluster, 0, topic, 0).expect("a leader");
    let mut client = cluster.nodes[at].client();
    for tag in 0..count {
        let batch = keel_tests::crash_batch(tag * 8);
        assert_eq!(client.produce(topic, 0, -1, batch.into()), ErrorCode::None);
    }
}

#[test]
fn deleted_records_stay_deleted_on_every_replica_and_after_a_failover() {
    // Goal: before, DeleteRecords trimmed only the leader; after a failover the new leader
    // served the deleted records again.
    let mut cluster = Cluster::start(3);
    create_replicated(&cluster, "trimmed", 1, &["segment.bytes=1024"]);
    produce(&cluster, "trimmed", 200);
    let old = leader(&cluster, 0, "trimmed", 0).expect("a leader");
    let kafka = cluster.nodes[old].kafka_addr.to_string();
    let low = delete_records(&kafka, "trimmed", 150);
    let start = partition_field(&cluster, old, "trimmed", "log_start_offset").unwrap();
    assert_eq!(low, start);
    assert!(
        start > 100 && start <= 150,
        "whole segments below 150 deleted: {start}"
    );
    cluster.wait_for(
        Duration::from_secs(20),
        "every replica's log starts there",
        |c| (0..3).all(|i| keel_tests::cluster::first_segment(c, i, "trimmed") == Some(start)),
    );
    cluster.nodes[old].stop_with(libc::SIGKILL);
    let other = (old + 1) % 3;
    cluster.wait_for(Duration::from_secs(30), "a new leader", |c| {
        leader(c, other, "trimmed", 0).is_some_and(|l| l != old)
    });
    assert_eq!(
        partition_field(&cluster, other, "trimmed", "log_start_offset"),
        Some(start)
    );
}

#[test]
fn a_follower_back_after_the_leader_deleted_past_its_end_starts_again_at_the_log_start() {
    // Goal: before, a follower whose next offset the leader had deleted while it was down
    // asked for that offset for ever and never rejoined the ISR. Like Kafka's, it now
    // empties its log and starts again at the leader's log start.
    let mut cluster = Cluster::start(3);
    create_replicated(&cluster, "passed", 1, &["segment.bytes=1024"]);
    produce(&cluster, "passed", 20);
    let lead = leader(&cluster, 0, "passed", 0).expect("a leader");
    let away = (lead + 1) % 3;
    cluster.wait_for(Duration::from_secs(20), "all three in sync", |c| {
        isr(c, lead, "passed", 0).is_some_and(|isr| isr.len() == 3)
    });
    cluster.nodes[away].stop_with(libc::SIGKILL);
    cluster.wait_for(Duration::from_secs(20), "the ISR shrinks to two", |c| {
        isr(c, lead, "passed", 0).is_some_and(|isr| isr.len() == 2)
    });
    produce(&cluster, "passed", 200);
    let kafka = cluster.nodes[lead].kafka_addr.to_string();
    let start = delete_records(&kafka, "passed", 180);
    assert!(start > 20, "deleted past the follower's end: {start}");
    cluster.nodes[away].restart();
    cluster.wait_for(
        Duration::from_secs(30),
        "the follower starts at the log start and rejoins",
        |c| {
            keel_tests::cluster::first_segment(c, away, "passed") == Some(start)
                && isr(c, lead, "passed", 0).is_some_and(|isr| isr.len() == 3)
        },
    );
    // It holds what the leader holds: it can lead.
    cluster.nodes[lead].stop_with(libc::SIGKILL);
    cluster.wait_for(Duration::from_secs(30), "a new leader", |c| {
        leader(c, away, "passed", 0).is_some_and(|l| l != lead)
    });
    let expected = usize::try_from(220 - start).unwrap();
    let read = replicated::read_all(
        cluster.bootstrap(),
        "passed",
        expected,
        Duration::from_secs(20),
    );
    assert_eq!(read.len(), expected, "every record from the log start");
}

#[test]
fn every_replica_checkpoints_its_high_watermark() {
    // Goal: before, the high watermark was not checkpointed: a replica restarted knew
    // nothing agreed beyond its log start until it fetched again. Every replica (leader and
    // followers) now writes what the replicas agreed on, and drops partitions it no longer
    // holds.
    let cluster = Cluster::start(3);
    create_replicated(&cluster, "marked", 1, &[]);
    create_replicated(&cluster, "dropped", 1, &[]);
    produce(&cluster, "marked", 10);
    produce(&cluster, "dropped", 3);
    let checkpoint = |c: &Cluster, i: usize| -> String {
        (0..2)
            .filter_map(|shard| {
                std::fs::read_to_string(c.nodes[i].data_dir.join(format!("hw-checkpoint.{shard}")))
                    .ok()
            })
            .collect()
    };
    // Written every 5 s when a mark moved.
    cluster.wait_for(Duration::from_secs(20), "checkpoints of 10 and 3", |c| {
        (0..3).all(|i| {
            let text = checkpoint(c, i);
            text.contains("marked 0 10\n") && text.contains("dropped 0 3\n")
        })
    });
    ok(&cluster.keel(0, &["topic", "delete", "dropped"]));
    cluster.wait_for(
        Duration::from_secs(20),
        "the deleted topic's marks gone",
        |c| {
            (0..3).all(|i| {
                let text = checkpoint(c, i);
                text.contains("marked 0 10\n") && !text.contains("dropped")
            })
        },
    );
}
