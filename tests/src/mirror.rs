//! Cluster links in tests (issue 23): what a Kafka Fetch of a partition returns on each
//! side, what `keel link describe` says, and the confluent-kafka script of the mirror tests.

use crate::cluster::Cluster;
use crate::kafka_wire::exchange;
use crate::tool::ok;
use keel_kafka::source::{fetch_request, fetch_response, whole_batches, TopicRef, Wanted};
use std::net::SocketAddr;
use std::time::Duration;

const OFFSET_OUT_OF_RANGE: i16 = 1;

/// The whole batches of `topic`'s `partition` a broker's Kafka listener serves, from its
/// log start (`None`: it does not lead the partition).
pub fn fetch_all(kafka: SocketAddr, topic: &str, partition: i32) -> Option<(i64, Vec<u8>)> {
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
        // Nothing from 0 (retention, DeleteRecords): from the log start.
        if answer.error == OFFSET_OUT_OF_RANGE && offset == 0 && answer.log_start > 0 {
            offset = answer.log_start;
            continue;
        }
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
pub fn fetch_from_leader(cluster: &Cluster, topic: &str, partition: i32) -> Option<(i64, Vec<u8>)> {
    cluster
        .running()
        .find_map(|i| fetch_all(cluster.nodes[i].kafka_addr, topic, partition))
}

pub fn describe(cluster: &Cluster, link: &str) -> serde_json::Value {
    let node = cluster.running().next().expect("a running node");
    let output = cluster.keel(node, &["link", "describe", link, "--format", "json"]);
    if !output.status.success() {
        return serde_json::Value::Null;
    }
    serde_json::from_str(&ok(&output)).expect("describe json")
}

/// A link's state (`active`, `paused`, `failed: …`), from `keel link describe`.
pub fn link_state(cluster: &Cluster, link: &str) -> String {
    describe(cluster, link)["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Offsets mirrored per partition of `topic`, from `keel link describe`.
pub fn mirrored(cluster: &Cluster, link: &str, topic: &str) -> Vec<(u64, i64, String)> {
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

pub fn mirror_script(args: &[&str]) -> String {
    let clients = crate::kafka_clients::clients();
    let script = clients.scripts.join("mirror_test.py");
    let mut all = vec![script.to_str().unwrap()];
    all.extend_from_slice(args);
    crate::kafka_clients::run(&clients.python, &all, &[], Duration::from_secs(180))
}

/// (partition, next offset) the group committed on `bootstrap` for `topic`.
pub fn group_offsets(bootstrap: &str, group: &str, topic: &str) -> Vec<(u32, i64)> {
    crate::cluster::runtime().block_on(async {
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

/// The broker (index) leading `topic`'s `partition`, as a running node sees it.
pub fn leader(cluster: &Cluster, topic: &str, partition: usize) -> Option<usize> {
    let node = cluster.running().next()?;
    let leader = cluster.topic(node, topic)?["partitions"][partition]["leader"].as_i64()?;
    (leader > 0).then(|| leader as usize - 1)
}

pub fn total_mirrored(cluster: &Cluster, link: &str, topic: &str) -> i64 {
    mirrored(cluster, link, topic)
        .iter()
        .map(|(_, end, _)| end)
        .sum()
}

/// The batches of `topic`'s partition 0 (up to 8 MiB) through a broker's native listener at
/// `addr`: the broker's own bytes, for sources whose Kafka listener is behind TLS.
pub fn native_batches(addr: SocketAddr, topic: &str) -> bytes::Bytes {
    use keel_protocol::api::{FetchPartition, Request, Response, TopicEntries};
    let addr = addr.to_string();
    crate::cluster::runtime().block_on(async {
        let connection = keel_client::connection::Connection::connect(&addr)
            .await
            .expect("the native listener");
        let fetch = Request::Fetch {
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 8 << 20,
            topics: vec![TopicEntries {
                topic: topic.into(),
                partitions: vec![FetchPartition {
                    partition: 0,
                    fetch_offset: 0,
                    partition_max_bytes: 8 << 20,
                }],
            }],
        };
        let Response::Fetch { topics } = connection.call(&fetch).await.expect("a fetch") else {
            panic!("a fetch answer")
        };
        topics[0].partitions[0].records.clone()
    })
}
