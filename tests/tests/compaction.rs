//! Log compaction against real brokers: kafka-python produces several values per key to a
//! topic with `cleanup.policy=compact` and reads back the latest value of every key after
//! the cleaner ran (fewer records than it wrote, none without a key accepted); and a
//! compacted topic replicated on three brokers, where every replica cleans its own copy and
//! all of them hold the same latest value for every key.

use crate::replicated;

use keel_client::{Producer, ProducerRecord};
use keel_protocol::batch::BatchView;
use keel_tests::broker::{server_binary, Broker};
use keel_tests::cluster::{runtime, segment_data, Cluster};
use keel_tests::kafka_clients::{clients, run};
use replicated::create_replicated;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const CLEANER: (&str, &str) = ("KEEL_LOG_CLEANER_BACKOFF_MS", "200");

#[test]
fn kafka_python_reads_the_latest_value_of_every_key_after_cleaning() {
    let clients = clients();
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with_env(&server_binary(), dir.path(), &[], &[CLEANER]);
    let script = clients.scripts.join("kafka_python_test.py");
    run(
        &clients.python,
        &[
            script.to_str().unwrap(),
            &broker.kafka_addr.to_string(),
            "compacted",
            "kc",
        ],
        &[],
        Duration::from_secs(180),
    );
}

/// key → (offset, value) of the latest record of each key in a partition directory's
/// segment files, and how many records they hold.
fn replica_contents(dir: &Path) -> (BTreeMap<String, (i64, String)>, usize) {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "log"));
    files.sort();
    let (mut latest, mut records) = (BTreeMap::new(), 0);
    for file in files {
        let data = segment_data(&file);
        let mut rest = &data[..];
        while let Ok(view) = BatchView::new_verified(rest) {
            for record in view.records().unwrap() {
                records += 1;
                let text = |b: bytes::Bytes| String::from_utf8(b.to_vec()).unwrap();
                latest.insert(
                    text(record.key.unwrap()),
                    (record.offset, record.value.map(text).unwrap_or_default()),
                );
            }
            rest = &rest[view.len()..];
        }
    }
    (latest, records)
}

#[test]
fn every_replica_of_a_compacted_topic_keeps_the_same_latest_value_per_key() {
    let cluster = Cluster::start_with_env(3, &[CLEANER]);
    let topic = "compacted-rf3";
    create_replicated(
        &cluster,
        topic,
        1,
        &[
            "cleanup.policy=compact",
            "segment.bytes=16384",
            "min.cleanable.dirty.ratio=0.01",
        ],
    );
    let (keys, count) = (25u32, 3_000u32);
    let bootstrap = cluster.bootstrap();
    runtime().block_on(async move {
        // Rounds of 100 records, each delivered before the next: batches of at most
        // 100 records, so the 16 KiB segments roll every round or two.
        let producer = Producer::builder(bootstrap).build().await.unwrap();
        for round in 0..count / 100 {
            let mut deliveries = Vec::new();
            for i in round * 100..(round + 1) * 100 {
                let value = format!("value-{i}-{}", "v".repeat(60));
                let record = ProducerRecord::new(topic, value)
                    .key(format!("key-{}", i % keys))
                    .partition(0);
                deliveries.push(producer.enqueue(record).await.unwrap());
            }
            for delivery in deliveries {
                delivery.await.unwrap();
            }
        }
        producer.close().await;
    });
    let expected: BTreeMap<String, String> = (count - keys..count)
        .map(|i| {
            (
                format!("key-{}", i % keys),
                format!("value-{i}-{}", "v".repeat(60)),
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let replicas: Vec<_> = cluster
            .nodes
            .iter()
            .map(|n| replica_contents(&n.data_dir.join(format!("{topic}-0"))))
            .collect();
        // Cleaned: each replica holds far fewer records than were written (the active
        // segment is never cleaned), and every one reads the same latest value per key.
        let cleaned = replicas
            .iter()
            .all(|(_, records)| *records < count as usize / 2);
        let same = replicas.iter().all(|(latest, _)| {
            latest
                .iter()
                .map(|(k, (_, v))| (k.clone(), v.clone()))
                .collect::<BTreeMap<_, _>>()
                == expected
        });
        if cleaned && same {
            let offsets: Vec<_> = replicas.iter().map(|(latest, _)| latest.clone()).collect();
            assert!(
                offsets.windows(2).all(|w| w[0] == w[1]),
                "same offsets on every replica"
            );
            break;
        }
        if Instant::now() >= deadline {
            let dir = cluster.nodes[0].data_dir.join(format!("{topic}-0"));
            let files: Vec<(String, u64)> = std::fs::read_dir(dir)
                .unwrap()
                .filter_map(|e| {
                    let e = e.ok()?;
                    let len = e.metadata().ok()?.len();
                    Some((e.file_name().to_string_lossy().into_owned(), len))
                })
                .collect();
            panic!(
                "replicas not cleaned alike within 60 s: {:?}; node 1 holds {files:?}",
                replicas
                    .iter()
                    .map(|(l, r)| (l.len(), *r))
                    .collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
