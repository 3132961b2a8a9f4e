//! The request path's two primitives on a real two-shard broker: a request's partitions go
//! to their owning shards all at once under one deadline (`fan_out`), a long-polled
//! partition costs one mesh round trip (`long_poll`), and Kafka's Metadata sends no
//! per-partition jobs at all. Mesh messages are counted by `keel_shard_calls_total`. The
//! brokers run in the test process (`keel_tests::in_process`), but for the stalled-disk
//! test, whose fault is set through the broker's environment.

use keel_protocol::api::{
    ErrorCode, FetchPartition, ProducePartition, Request, Response, TopicEntries,
};
use keel_protocol::batch::{BatchBuilder, NewRecord};
use keel_tests::broker::{metric, server_binary, Broker, Client};
use keel_tests::in_process::InProcess;
use keel_tests::kafka_wire;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn batch(value: &str) -> bytes::Bytes {
    let mut builder = BatchBuilder::new();
    builder.push(NewRecord::value(0, value.as_bytes().to_vec()));
    builder.build().unwrap().into()
}

fn produce_entry(topic: &str, partition: u32) -> TopicEntries<ProducePartition> {
    TopicEntries {
        topic: topic.into(),
        partitions: vec![ProducePartition {
            partition,
            records: batch("v"),
        }],
    }
}

fn shard_calls(broker: &InProcess, job: &str) -> f64 {
    metric(
        &broker.metrics(),
        "keel_shard_calls_total",
        &format!("job=\"{job}\""),
    )
}

#[test]
fn a_produce_to_two_stalled_topics_is_answered_within_one_timeout() {
    // Goal: produce awaited topic after topic, each partition with its own timeout, so a
    // request to P partitions on a stalled disk took P × its timeout (here 2 s, not 1 s).
    // Appends to `stalled-*` wait 10 s first, as on a stalled disk.
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with_env(
        &server_binary(),
        dir.path(),
        &["--shards", "2"],
        &[("KEEL_FAULT_STALL_APPENDS", "stalled-:10000")],
    );
    let mut client = broker.client();
    for topic in ["stalled-a", "stalled-b", "healthy"] {
        client.create_topic(topic, 1);
    }
    let started = Instant::now();
    let Response::Produce { topics } = client.call(Request::Produce {
        acks: 1,
        timeout_ms: 1_000,
        topics: vec![
            produce_entry("stalled-a", 0),
            produce_entry("stalled-b", 0),
            produce_entry("healthy", 0),
        ],
    }) else {
        panic!("produce response expected")
    };
    let took = started.elapsed();
    let errors: Vec<(String, ErrorCode)> = topics
        .iter()
        .map(|entry| (entry.topic.clone(), entry.partitions[0].error))
        .collect();
    assert_eq!(
        errors,
        [
            ("stalled-a".to_owned(), ErrorCode::RequestTimedOut),
            ("stalled-b".to_owned(), ErrorCode::RequestTimedOut),
            ("healthy".to_owned(), ErrorCode::None),
        ]
    );
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_millis(1_600),
        "one timeout for the whole request, answered in {took:?}"
    );
    assert_eq!(client.read_partition("healthy", 0).len(), 1);
}

/// A fetch on `client` of `partitions` of `p` from `offset`, waiting up to 10 s while
/// another connection produces one record to each, 300 ms in; the partitions that came
/// with data.
fn long_poll_during_produce(client: &mut Client, partitions: &[u32], offset: i64) -> usize {
    let addr = client.addr();
    let produced = partitions.to_vec();
    let producer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut client = Client::connect(addr);
        for partition in produced {
            assert_eq!(
                client.produce("p", partition, 1, batch("x")),
                ErrorCode::None
            );
        }
    });
    let started = Instant::now();
    let fetched = partitions
        .iter()
        .map(|&partition| FetchPartition {
            partition,
            fetch_offset: offset,
            partition_max_bytes: 1 << 20,
        })
        .collect();
    let Response::Fetch { topics, .. } = client.call(Request::Fetch {
        max_wait_ms: 10_000,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: vec![TopicEntries {
            topic: "p".into(),
            partitions: fetched,
        }],
    }) else {
        panic!("fetch response expected")
    };
    producer.join().unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "answered when data came: {took:?}"
    );
    topics[0]
        .partitions
        .iter()
        .filter(|p| !p.records.is_empty())
        .count()
}

#[test]
fn a_long_polled_partition_costs_one_mesh_round_trip() {
    // Goal: a long poll read the partition on its owner, sent a wait job, then read again:
    // three mesh round trips per remote partition. Now the owner reads, waits and reads
    // in one. Partitions 0 and 1 of `p` have different owners, so exactly one of them is
    // remote to the shard serving the connection, whichever that is.
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path(), &["--shards", "2"]);
    let mut client = broker.client();
    client.create_topic("p", 2);
    let reads = |broker: &InProcess| shard_calls(broker, "fetch") + shard_calls(broker, "poll");
    for partition in 0..2 {
        assert_eq!(long_poll_during_produce(&mut client, &[partition], 0), 1);
    }
    assert_eq!(
        reads(&broker),
        1.0,
        "one mesh message for the remote partition"
    );
    // Both partitions in one fetch: the remote owner reads at once (so that the answer has
    // every partition's state), then waits and reads: two messages.
    assert!(long_poll_during_produce(&mut client, &[0, 1], 1) >= 1);
    assert_eq!(reads(&broker), 3.0);
}

#[test]
fn metadata_describes_partitions_once_per_shard_and_not_at_all_for_kafka() {
    // Goal: every Kafka Metadata request sent one mesh job per partition for offsets it
    // then threw away, and native Metadata one per partition, topic after topic.
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path(), &["--shards", "2"]);
    let mut client = broker.client();
    client.create_topic("a", 8);
    client.create_topic("b", 8);
    // Kafka Metadata v1 for every topic (a null array), asked ten times.
    let mut stream = TcpStream::connect(broker.kafka_addr).unwrap();
    for _ in 0..10 {
        stream
            .write_all(&kafka_wire::frame(3, 1, &(-1i32).to_be_bytes()))
            .unwrap();
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        stream.read_exact(&mut body).unwrap();
        for name in [b"\0\x01a", b"\0\x01b"] {
            assert!(body.windows(3).any(|w| w == name), "both topics listed");
        }
    }
    assert_eq!(shard_calls(&broker, "describe"), 0.0);
    // Native Metadata includes offsets: one message to the other shard for all 16
    // partitions of both topics.
    let Response::Metadata { topics, .. } = client.call(Request::Metadata { topics: vec![] })
    else {
        panic!("metadata response expected")
    };
    let partitions: usize = topics
        .iter()
        .filter(|t| t.topic == "a" || t.topic == "b")
        .map(|t| t.partitions.len())
        .sum();
    assert_eq!(partitions, 16);
    assert!(shard_calls(&broker, "describe") <= 1.0);
}

#[test]
fn a_request_naming_more_partitions_than_the_limit_is_refused_before_any_job() {
    // Goal: the partition entries of one request were unbounded, each a task and a mesh
    // job. Past `request_partitions_max` every entry is answered InvalidRequest and no
    // shard is asked anything; at the limit the request is served.
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::with_config(
        dir.path(),
        "request_partitions_max = 100\n",
        &["--shards", "2"],
    );
    let mut client = broker.client();
    client.create_topic("wide", 4);
    let entries = |count: u32| -> Vec<ProducePartition> {
        (0..count)
            .map(|i| ProducePartition {
                partition: i % 4,
                records: batch("w"),
            })
            .collect()
    };
    let produce = |client: &mut Client, count: u32| -> Vec<ErrorCode> {
        let Response::Produce { topics } = client.call(Request::Produce {
            // Answered once durable: a read right after sees every record (acks=1 was
            // answered once written, and a loaded run read before the sync made it visible).
            acks: -1,
            timeout_ms: 5_000,
            topics: vec![TopicEntries {
                topic: "wide".into(),
                partitions: entries(count),
            }],
        }) else {
            panic!("produce response expected")
        };
        topics[0].partitions.iter().map(|p| p.error).collect()
    };
    let refused = produce(&mut client, 101);
    assert_eq!(refused.len(), 101);
    assert!(refused.iter().all(|e| *e == ErrorCode::InvalidRequest));
    let stored: usize = (0..4).map(|p| client.read_partition("wide", p).len()).sum();
    assert_eq!(stored, 0, "nothing of a refused request stored");
    let served = produce(&mut client, 100);
    assert!(served.iter().all(|e| *e == ErrorCode::None), "{served:?}");
    let stored: usize = (0..4).map(|p| client.read_partition("wide", p).len()).sum();
    assert_eq!(stored, 100);
    let fetch = |client: &mut Client, count: u32| -> Vec<ErrorCode> {
        let Response::Fetch { topics, .. } = client.call(Request::Fetch {
            max_wait_ms: 0,
            min_bytes: 1,
            max_bytes: 1 << 20,
            topics: vec![TopicEntries {
                topic: "wide".into(),
                partitions: (0..count)
                    .map(|i| FetchPartition {
                        partition: i % 4,
                        fetch_offset: 0,
                        partition_max_bytes: 1 << 10,
                    })
                    .collect(),
            }],
        }) else {
            panic!("fetch response expected")
        };
        topics[0].partitions.iter().map(|p| p.error).collect()
    };
    let refused = fetch(&mut client, 101);
    assert!(refused.iter().all(|e| *e == ErrorCode::InvalidRequest));
    assert!(fetch(&mut client, 100)
        .iter()
        .all(|e| *e == ErrorCode::None));
}

#[test]
fn a_fetch_of_data_already_there_on_both_shards_is_answered_at_once() {
    // Goal: a long poll over partitions of two owners first reads each at once; when
    // every partition has data the answer goes then, not at the fetch's deadline.
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::with_config(dir.path(), "fsync = \"never\"\n", &["--shards", "2"]);
    let mut client = broker.client();
    client.create_topic("ready", 64);
    for _ in 0..3 {
        for partition in 0..64 {
            assert_eq!(
                client.produce("ready", partition, 1, batch("x")),
                ErrorCode::None
            );
        }
    }
    for round in 0..20 {
        let started = Instant::now();
        let Response::Fetch { topics, .. } = client.call(Request::Fetch {
            max_wait_ms: 2_000,
            min_bytes: 1,
            max_bytes: 1 << 20,
            topics: vec![TopicEntries {
                topic: "ready".into(),
                partitions: (0..64)
                    .map(|partition| FetchPartition {
                        partition,
                        fetch_offset: 2,
                        partition_max_bytes: 256,
                    })
                    .collect(),
            }],
        }) else {
            panic!("fetch response expected")
        };
        let took = started.elapsed();
        let with_data = topics[0]
            .partitions
            .iter()
            .filter(|p| !p.records.is_empty())
            .count();
        assert_eq!(with_data, 64, "round {round}");
        assert!(took < Duration::from_millis(500), "round {round}: {took:?}");
    }
}

#[test]
fn a_fetch_whose_partitions_all_answer_errors_on_both_shards_is_answered_at_once() {
    // Goal: errors are answers; a long poll over two owners whose every partition answers
    // one (an offset out of range) goes back at once, not at the fetch's deadline.
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::with_config(dir.path(), "fsync = \"never\"\n", &["--shards", "2"]);
    let mut client = broker.client();
    client.create_topic("errors", 64);
    for round in 0..5 {
        let started = Instant::now();
        let Response::Fetch { topics, .. } = client.call(Request::Fetch {
            max_wait_ms: 2_000,
            min_bytes: 1,
            max_bytes: 1 << 20,
            topics: vec![TopicEntries {
                topic: "errors".into(),
                partitions: (0..8)
                    .map(|partition| FetchPartition {
                        partition,
                        fetch_offset: -1,
                        partition_max_bytes: 256,
                    })
                    .collect(),
            }],
        }) else {
            panic!("fetch response expected")
        };
        let took = started.elapsed();
        let errors: Vec<ErrorCode> = topics[0].partitions.iter().map(|p| p.error).collect();
        assert_eq!(
            errors,
            vec![ErrorCode::OffsetOutOfRange; 8],
            "round {round}"
        );
        assert!(took < Duration::from_millis(500), "round {round}: {took:?}");
    }
}
