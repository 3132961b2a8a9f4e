//! End-to-end tests of the single-node broker: the real `keel-server` binary on free ports,
//! talked to over TCP with the native protocol.

use bytes::Bytes;
use keel_protocol::api::{
    ConfigEntry, ErrorCode, FetchPartition, ListOffsetsPartition, NewTopic, ProducePartition,
    Request, Response, TopicEntries, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP,
};
use keel_protocol::batch::{BatchBuilder, BatchView, NewRecord};
use keel_tests::broker::{server_binary, Broker, Client};
use std::time::{Duration, Instant};

fn start(dir: &std::path::Path, extra: &[&str]) -> Broker {
    Broker::start(&server_binary(), dir, extra)
}

fn create(client: &mut Client, name: &str, partitions: u32, configs: &[(&str, &str)]) -> ErrorCode {
    let topic = NewTopic {
        name: name.into(),
        partitions,
        replication_factor: 1,
        configs: configs
            .iter()
            .map(|(k, v)| ConfigEntry {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect(),
    };
    match client.call(Request::CreateTopics {
        topics: vec![topic],
    }) {
        Response::CreateTopics { topics } => topics[0].error,
        other => panic!("unexpected {other:?}"),
    }
}

fn batch(values: &[String]) -> Bytes {
    let mut builder = BatchBuilder::new();
    for value in values {
        builder.push(NewRecord::value(
            1_700_000_000_000,
            value.clone().into_bytes(),
        ));
    }
    Bytes::from(builder.build().unwrap())
}

fn produce(
    client: &mut Client,
    topic: &str,
    partition: u32,
    values: &[String],
    acks: i8,
) -> (ErrorCode, i64) {
    let request = Request::Produce {
        acks,
        timeout_ms: 10_000,
        topics: vec![TopicEntries {
            topic: topic.into(),
            partitions: vec![ProducePartition {
                partition,
                records: batch(values),
            }],
        }],
    };
    match client.call(request) {
        Response::Produce { topics } => (
            topics[0].partitions[0].error,
            topics[0].partitions[0].base_offset,
        ),
        other => panic!("unexpected {other:?}"),
    }
}

/// Every record value from `offset` up to the high watermark.
fn fetch_all(
    client: &mut Client,
    topic: &str,
    partition: u32,
    mut offset: i64,
) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    loop {
        let request = Request::Fetch {
            max_wait_ms: 0,
            min_bytes: 1,
            max_bytes: 1 << 20,
            topics: vec![TopicEntries {
                topic: topic.into(),
                partitions: vec![FetchPartition {
                    partition,
                    fetch_offset: offset,
                    partition_max_bytes: 1 << 20,
                }],
            }],
        };
        let Response::Fetch { topics } = client.call(request) else {
            panic!("fetch response")
        };
        let result = &topics[0].partitions[0];
        assert_eq!(
            result.error,
            ErrorCode::None,
            "fetch {topic}-{partition} at {offset}"
        );
        if result.records.is_empty() {
            return out;
        }
        let mut rest = &result.records[..];
        while !rest.is_empty() {
            let view = BatchView::new_verified(rest).expect("whole valid batches");
            for record in view.records().unwrap() {
                if record.offset >= offset {
                    out.push((
                        record.offset,
                        String::from_utf8(record.value.unwrap().to_vec()).unwrap(),
                    ));
                }
            }
            offset = view.next_offset();
            rest = &rest[view.len()..];
        }
    }
}

#[test]
fn produce_and_fetch_across_partitions_and_shards() {
    // Goal: every partition on either shard stores and returns exactly what was produced,
    // with dense offsets, also when requests are pipelined.
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &["--shards", "2"]);
    let mut client = broker.client();
    assert_eq!(create(&mut client, "orders", 8, &[]), ErrorCode::None);
    assert_eq!(
        create(&mut client, "orders", 8, &[]),
        ErrorCode::TopicAlreadyExists
    );
    // Pipelined: 8 partitions x 5 batches sent before reading any response.
    let mut sent = Vec::new();
    for round in 0..5 {
        for partition in 0..8u32 {
            let values: Vec<String> = (0..3)
                .map(|i| format!("p{partition}-r{round}-{i}"))
                .collect();
            let request = Request::Produce {
                acks: -1,
                timeout_ms: 10_000,
                topics: vec![TopicEntries {
                    topic: "orders".into(),
                    partitions: vec![ProducePartition {
                        partition,
                        records: batch(&values),
                    }],
                }],
            };
            sent.push((client.send(&request), partition, values));
        }
    }
    for (correlation, partition, _) in &sent {
        let (got, Response::Produce { topics }) =
            client.receive(keel_protocol::api::ApiKey::Produce)
        else {
            panic!()
        };
        assert_eq!(got, *correlation, "responses in request order");
        assert_eq!(topics[0].partitions[0].partition, *partition);
        assert_eq!(topics[0].partitions[0].error, ErrorCode::None);
    }
    for partition in 0..8u32 {
        let expected: Vec<(i64, String)> = sent
            .iter()
            .filter(|(_, p, _)| *p == partition)
            .flat_map(|(_, _, values)| values.clone())
            .enumerate()
            .map(|(offset, value)| (offset as i64, value))
            .collect();
        assert_eq!(
            fetch_all(&mut client, "orders", partition, 0),
            expected,
            "partition {partition}"
        );
    }
    // A topic named 1,000 times is answered once (each name served once).
    let Response::Metadata { topics, brokers } = client.call(Request::Metadata {
        topics: vec!["orders".into(); 1_000],
    }) else {
        panic!()
    };
    assert_eq!(brokers[0].port, broker.addr.port());
    assert_eq!(topics.len(), 1);
    assert_eq!(topics[0].partitions.len(), 8);
    assert!(topics[0]
        .partitions
        .iter()
        .all(|p| p.log_end_offset == 15 && p.high_watermark == 15));
}

#[test]
fn long_poll_fetch_wakes_on_new_data() {
    // Goal: a fetch waiting at the end of the log returns as soon as data arrives.
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &["--shards", "2"]);
    let mut admin = broker.client();
    assert_eq!(create(&mut admin, "events", 2, &[]), ErrorCode::None);
    let addr = broker.addr;
    let (ready, parked) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let mut client = Client::connect(addr);
        let request = Request::Fetch {
            max_wait_ms: 10_000,
            min_bytes: 1,
            max_bytes: 1 << 20,
            topics: vec![TopicEntries {
                topic: "events".into(),
                partitions: vec![
                    FetchPartition {
                        partition: 0,
                        fetch_offset: 0,
                        partition_max_bytes: 1 << 20,
                    },
                    FetchPartition {
                        partition: 1,
                        fetch_offset: 0,
                        partition_max_bytes: 1 << 20,
                    },
                ],
            }],
        };
        ready.send(()).unwrap();
        let Response::Fetch { topics } = client.call(request) else {
            panic!()
        };
        (
            Instant::now(),
            topics[0]
                .partitions
                .iter()
                .map(|p| p.records.len())
                .sum::<usize>(),
        )
    });
    // The fetch is on its way; give it time to park at the end of the empty log.
    parked.recv().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let produced_at = Instant::now();
    assert_eq!(
        produce(&mut admin, "events", 1, &["wake up".into()], -1).0,
        ErrorCode::None
    );
    let (answered_at, bytes) = waiter.join().unwrap();
    assert!(bytes > 0, "the fetch returned the new batch");
    assert!(
        answered_at >= produced_at,
        "it waited for the data instead of answering empty"
    );
    let woke_after = answered_at - produced_at;
    assert!(
        woke_after < Duration::from_secs(5),
        "it woke on data, not on the 10 s timeout ({woke_after:?})"
    );
}

#[test]
fn restart_keeps_topics_configs_and_data_and_delete_removes_them() {
    // Goal: topics, configs and data survive a clean restart; delete removes files.
    let dir = tempfile::tempdir().unwrap();
    let mut broker = start(dir.path(), &["--shards", "2"]);
    let mut client = broker.client();
    assert_eq!(
        create(
            &mut client,
            "keep",
            3,
            &[("retention.ms", "86400000"), ("fsync", "never")]
        ),
        ErrorCode::None
    );
    assert_eq!(create(&mut client, "drop-me", 2, &[]), ErrorCode::None);
    for partition in 0..3 {
        let values: Vec<String> = (0..10).map(|i| format!("v{partition}-{i}")).collect();
        assert_eq!(
            produce(&mut client, "keep", partition, &values, 1).0,
            ErrorCode::None
        );
    }
    produce(&mut client, "drop-me", 0, &["x".into()], -1);
    drop(client);
    assert!(broker.stop().success(), "SIGTERM exits 0");
    broker.restart();
    let mut client = broker.client();
    for partition in 0..3 {
        let got = fetch_all(&mut client, "keep", partition, 0);
        assert_eq!(got.len(), 10, "partition {partition} after restart");
        assert_eq!(got[9], (9, format!("v{partition}-9")));
    }
    let Response::DescribeConfigs { topics } = client.call(Request::DescribeConfigs {
        topics: vec!["keep".into()],
    }) else {
        panic!()
    };
    let configs = &topics[0].2;
    assert!(
        configs.contains(&ConfigEntry {
            key: "fsync".into(),
            value: "never".into()
        }),
        "{configs:?}"
    );
    assert!(configs.contains(&ConfigEntry {
        key: "partitions".into(),
        value: "3".into()
    }));

    assert!(dir.path().join("drop-me-0").exists());
    let Response::DeleteTopics { topics } = client.call(Request::DeleteTopics {
        topics: vec!["drop-me".into()],
    }) else {
        panic!()
    };
    assert_eq!(topics[0].error, ErrorCode::None);
    assert!(
        !dir.path().join("drop-me-0").exists(),
        "partition directory removed"
    );
    assert!(!dir.path().join("drop-me-1").exists());
    let (error, _) = produce(&mut client, "drop-me", 0, &["x".into()], -1);
    assert_eq!(error, ErrorCode::UnknownTopicOrPartition);
    drop(client);
    assert!(broker.stop().success());
    broker.restart();
    let mut client = broker.client();
    let Response::Metadata { topics, .. } = client.call(Request::Metadata { topics: vec![] })
    else {
        panic!()
    };
    assert_eq!(
        topics
            .iter()
            .map(|t| t.topic.as_str())
            .filter(|t| !t.starts_with("__"))
            .collect::<Vec<_>>(),
        vec!["keep"]
    );
}

#[test]
fn kill_9_keeps_every_acknowledged_produce() {
    // Goal: with fsync=always, everything acknowledged before SIGKILL is fetchable after.
    let dir = tempfile::tempdir().unwrap();
    let mut broker = start(dir.path(), &["--shards", "2", "--fsync", "always"]);
    let mut client = broker.client();
    assert_eq!(create(&mut client, "durable", 4, &[]), ErrorCode::None);
    let addr = broker.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut producers = Vec::new();
    for partition in 0..4u32 {
        let stop = stop.clone();
        producers.push(std::thread::spawn(move || {
            let mut client = Client::connect(addr);
            let mut acked = Vec::new();
            for i in 0.. {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let value = format!("p{partition}-{i}");
                let request = Request::Produce {
                    acks: -1,
                    timeout_ms: 10_000,
                    topics: vec![TopicEntries {
                        topic: "durable".into(),
                        partitions: vec![ProducePartition {
                            partition,
                            records: batch(std::slice::from_ref(&value)),
                        }],
                    }],
                };
                client.send(&request);
                // A response cut by the kill is simply not an acknowledgement.
                let Some(raw) = client.receive_raw() else {
                    break;
                };
                let Ok(Response::Produce { topics }) =
                    Response::decode(keel_protocol::api::ApiKey::Produce, raw.body)
                else {
                    break;
                };
                let result = topics[0].partitions[0];
                if result.error == ErrorCode::None {
                    acked.push((result.base_offset, value));
                }
            }
            (partition, acked)
        }));
    }
    std::thread::sleep(Duration::from_millis(700));
    broker.stop_with(libc::SIGKILL);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let acked: Vec<(u32, Vec<(i64, String)>)> =
        producers.into_iter().map(|p| p.join().unwrap()).collect();
    broker.restart();
    let mut client = broker.client();
    let mut compared = 0;
    for (partition, acks) in acked {
        let stored = fetch_all(&mut client, "durable", partition, 0);
        for (offset, value) in acks {
            assert_eq!(
                stored.get(offset as usize),
                Some(&(offset, value.clone())),
                "acked {value} lost"
            );
            compared += 1;
        }
    }
    assert!(
        compared > 20,
        "the producers must have been acknowledged ({compared})"
    );
}

#[test]
fn list_offsets_alter_configs_and_errors() {
    // Goal: offsets by position and time, config changes, and clear errors for bad input.
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), &[]);
    let mut client = broker.client();
    assert_eq!(
        create(&mut client, "bad name", 1, &[]),
        ErrorCode::InvalidTopic
    );
    assert_eq!(
        create(&mut client, "zero", 0, &[]),
        ErrorCode::InvalidPartitions
    );
    assert_eq!(
        create(&mut client, "cfg", 1, &[("nonsense", "1")]),
        ErrorCode::InvalidConfig
    );
    assert_eq!(create(&mut client, "t", 1, &[]), ErrorCode::None);
    let mut builder = BatchBuilder::new();
    for ts in [1000, 2000, 3000] {
        builder.push(NewRecord::value(ts, "x"));
    }
    let request = Request::Produce {
        acks: -1,
        timeout_ms: 1000,
        topics: vec![TopicEntries {
            topic: "t".into(),
            partitions: vec![ProducePartition {
                partition: 0,
                records: Bytes::from(builder.build().unwrap()),
            }],
        }],
    };
    let Response::Produce { topics } = client.call(request) else {
        panic!()
    };
    assert_eq!(topics[0].partitions[0].base_offset, 0);
    let lookup = |client: &mut Client, timestamp| {
        let Response::ListOffsets { topics } = client.call(Request::ListOffsets {
            topics: vec![TopicEntries {
                topic: "t".into(),
                partitions: vec![ListOffsetsPartition {
                    partition: 0,
                    timestamp,
                }],
            }],
        }) else {
            panic!()
        };
        topics[0].partitions[0].offset
    };
    assert_eq!(lookup(&mut client, EARLIEST_TIMESTAMP), 0);
    assert_eq!(lookup(&mut client, LATEST_TIMESTAMP), 3);
    assert_eq!(lookup(&mut client, 1500), 1);
    assert_eq!(lookup(&mut client, 9999), -1);

    // A batch with a wrong CRC is refused and not stored.
    let mut corrupt = batch(&["bad".into()]).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    let request = Request::Produce {
        acks: -1,
        timeout_ms: 1000,
        topics: vec![TopicEntries {
            topic: "t".into(),
            partitions: vec![ProducePartition {
                partition: 0,
                records: Bytes::from(corrupt),
            }],
        }],
    };
    let Response::Produce { topics } = client.call(request) else {
        panic!()
    };
    assert_eq!(topics[0].partitions[0].error, ErrorCode::CorruptMessage);
    assert_eq!(lookup(&mut client, LATEST_TIMESTAMP), 3, "nothing stored");
    assert_eq!(
        produce(&mut client, "t", 7, &["x".into()], -1).0,
        ErrorCode::UnknownTopicOrPartition
    );
    assert_eq!(
        produce(&mut client, "missing", 0, &["x".into()], -1).0,
        ErrorCode::UnknownTopicOrPartition
    );
    // Oversized batch (default limit 8 MiB).
    let big = vec!["y".repeat(9 << 20)];
    assert_eq!(
        produce(&mut client, "t", 0, &big, -1).0,
        ErrorCode::MessageTooLarge
    );

    let alter = Request::AlterConfigs {
        topics: vec![(
            "t".into(),
            vec![ConfigEntry {
                key: "retention.ms".into(),
                value: "60000".into(),
            }],
        )],
    };
    let Response::AlterConfigs { topics } = client.call(alter) else {
        panic!()
    };
    assert_eq!(topics[0].error, ErrorCode::None, "{}", topics[0].message);
    let Response::DescribeConfigs { topics } = client.call(Request::DescribeConfigs {
        topics: vec!["t".into()],
    }) else {
        panic!()
    };
    assert!(topics[0].2.contains(&ConfigEntry {
        key: "retention.ms".into(),
        value: "60000".into()
    }));
    assert_eq!(
        produce(&mut client, "t", 0, &["after alter".into()], -1),
        (ErrorCode::None, 3),
        "the log reopened"
    );
    let metrics = broker.metrics();
    assert!(
        metrics.contains("keel_requests_total{api=\"produce\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("keel_connections"), "{metrics}");
}
