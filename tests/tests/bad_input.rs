//! Malformed input over real TCP: every case gets an error answer or a closed connection,
//! and the broker keeps serving other clients (and, where framing allows, the same one).

use bytes::{BufMut, BytesMut};
use keel_protocol::api::{ApiKey, ErrorCode, Request, Response};
use keel_protocol::frame::write_request;
use keel_tests::broker::{metric, server_binary, Broker, Client, Serving};
use keel_tests::in_process::InProcess;

fn healthy(broker: &dyn Serving) {
    let mut client = Client::connect(broker.native_addr());
    let Response::ApiVersions { apis } = client.call(Request::ApiVersions) else {
        panic!("api versions")
    };
    assert!(apis.iter().any(|(key, _, _)| *key == ApiKey::Fetch as u16));
}

fn frame(api_key: u16, version: u16, body: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    write_request(&mut out, api_key, version, 42, body);
    out
}

/// Sends `bytes` on a fresh connection and returns the frame-level error of the answer, or
/// `None` when the broker closed the connection without one.
fn answer(broker: &dyn Serving, bytes: &[u8]) -> Option<ErrorCode> {
    let mut client = Client::connect(broker.native_addr());
    client.send_raw(bytes).expect("send");
    client.receive_raw().map(|r| r.error_code)
}

#[test]
fn malformed_requests_get_errors_and_the_broker_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path(), &["--shards", "2"]);

    // A 4 GiB length prefix: refused before any allocation, then closed.
    assert_eq!(
        answer(&broker, &[0xff, 0xff, 0xff, 0xff, 0, 0]),
        Some(ErrorCode::FrameTooLarge)
    );
    healthy(&broker);
    // A length shorter than the header.
    assert_eq!(
        answer(&broker, &[0, 0, 0, 2, 1, 2]),
        Some(ErrorCode::InvalidRequest)
    );
    healthy(&broker);
    // Unknown API and unsupported version: answered, and the connection stays usable.
    let mut client = broker.client();
    client.send_raw(&frame(999, 0, b"")).unwrap();
    assert_eq!(
        client.receive_raw().unwrap().error_code,
        ErrorCode::UnknownApi
    );
    client
        .send_raw(&frame(ApiKey::Metadata as u16, 9, b""))
        .unwrap();
    assert_eq!(
        client.receive_raw().unwrap().error_code,
        ErrorCode::UnsupportedVersion
    );
    let Response::Metadata { .. } = client.call(Request::Metadata { topics: vec![] }) else {
        panic!()
    };
    // Negative / impossible sizes inside bodies.
    let mut body = BytesMut::new();
    body.put_u32(0x8000_0000); // 2 billion topic names in a 4-byte body
    client
        .send_raw(&frame(ApiKey::Metadata as u16, 0, &body))
        .unwrap();
    assert_eq!(
        client.receive_raw().unwrap().error_code,
        ErrorCode::InvalidRequest
    );
    let mut body = BytesMut::new();
    body.put_i8(-1);
    body.put_u32(1000);
    body.put_u32(1);
    body.put_u16(1);
    body.put_slice(b"t");
    body.put_u32(1);
    body.put_u32(0);
    body.put_u32(u32::MAX); // records "length" of -1
    client
        .send_raw(&frame(ApiKey::Produce as u16, 0, &body))
        .unwrap();
    assert_eq!(
        client.receive_raw().unwrap().error_code,
        ErrorCode::InvalidRequest
    );
    let mut body = BytesMut::new();
    body.put_i8(5); // acks must be -1, 0 or 1
    body.put_u32(1000);
    body.put_u32(0);
    client
        .send_raw(&frame(ApiKey::Produce as u16, 0, &body))
        .unwrap();
    assert_eq!(
        client.receive_raw().unwrap().error_code,
        ErrorCode::InvalidRequiredAcks
    );
    // Trailing garbage after a valid body.
    client
        .send_raw(&frame(ApiKey::ApiVersions as u16, 0, b"junk"))
        .unwrap();
    assert_eq!(
        client.receive_raw().unwrap().error_code,
        ErrorCode::InvalidRequest
    );
    let Response::ApiVersions { .. } = client.call(Request::ApiVersions) else {
        panic!()
    };
    drop(client);

    // A truncated frame, then the client goes away.
    let mut client = broker.client();
    let whole = frame(ApiKey::Metadata as u16, 0, &[0, 0, 0, 0]);
    client.send_raw(&whole[..whole.len() - 3]).unwrap();
    drop(client);
    healthy(&broker);

    // Random bytes, many times, from a fixed seed.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..200 {
        let len = 1 + (round * 37) % 300;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let mut client = broker.client();
        client.send_raw(&bytes).unwrap();
        // Whatever comes back must be well framed; closing is fine too.
        client.shutdown_write();
        while client.receive_raw().is_some() {}
    }
    healthy(&broker);
    // Every refusal above counted, with its error: the broker started from zero.
    let metrics = broker.metrics();
    for (error, code, at_least) in [
        ("FrameTooLarge", 16, 1.0),
        ("UnknownApi", 15, 1.0),
        ("UnsupportedVersion", 11, 1.0),
        ("InvalidRequiredAcks", 19, 1.0),
        ("InvalidRequest", 12, 4.0),
    ] {
        let labels = format!("api=\"invalid\",error=\"{error}\",code=\"{code}\"");
        let counted = metric(&metrics, "keel_request_errors_total", &labels);
        assert!(counted >= at_least, "{error}: {counted}\n{metrics}");
    }
}

#[test]
fn cold_fetches_are_served_from_files_and_tail_fetches_from_memory() {
    // Goal: old data is read from the segment files, recent data from the tail cache; both correct.
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path(), &["--shards", "2", "--segment-bytes", "65536"]);
    let mut client: Client = broker.client();
    let topic = keel_protocol::api::NewTopic {
        name: "cold".into(),
        partitions: 1,
        replication_factor: 1,
        configs: vec![],
    };
    let Response::CreateTopics { topics } = client.call(Request::CreateTopics {
        topics: vec![topic],
    }) else {
        panic!()
    };
    assert_eq!(topics[0].error, ErrorCode::None);
    let mut expected = Vec::new();
    for round in 0..100 {
        let mut builder = keel_protocol::batch::BatchBuilder::new();
        for i in 0..4 {
            let value = format!("{round}-{i}-{}", "z".repeat(1000));
            expected.push(value.clone());
            builder.push(keel_protocol::batch::NewRecord::value(
                1,
                value.into_bytes(),
            ));
        }
        let request = Request::Produce {
            acks: -1,
            timeout_ms: 5000,
            topics: vec![keel_protocol::api::TopicEntries {
                topic: "cold".into(),
                partitions: vec![keel_protocol::api::ProducePartition {
                    partition: 0,
                    records: builder.build().unwrap().into(),
                }],
            }],
        };
        client.call(request);
    }
    let mut got = Vec::new();
    let mut offset = 0i64;
    while (got.len()) < expected.len() {
        let request = Request::Fetch {
            max_wait_ms: 0,
            min_bytes: 1,
            max_bytes: 1 << 20,
            topics: vec![keel_protocol::api::TopicEntries {
                topic: "cold".into(),
                partitions: vec![keel_protocol::api::FetchPartition {
                    partition: 0,
                    fetch_offset: offset,
                    partition_max_bytes: 100_000,
                }],
            }],
        };
        let Response::Fetch { topics } = client.call(request) else {
            panic!()
        };
        let records = &topics[0].partitions[0].records;
        assert!(!records.is_empty(), "data at {offset}");
        let mut rest = &records[..];
        while !rest.is_empty() {
            let view = keel_protocol::batch::BatchView::new_verified(rest).unwrap();
            for record in view.records().unwrap() {
                got.push(String::from_utf8(record.value.unwrap().to_vec()).unwrap());
            }
            offset = view.next_offset();
            rest = &rest[view.len()..];
        }
    }
    assert_eq!(got, expected);
    let metrics = broker.metrics();
    assert!(
        metrics.contains("keel_fetch_reads_total{path=\"file\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("keel_fetch_reads_total{path=\"memory\"}"),
        "{metrics}"
    );
}

fn commit(
    client: &mut Client,
    group: &str,
    topics: Vec<(&str, Vec<u32>)>,
) -> Vec<(String, u32, ErrorCode)> {
    let Response::OffsetCommit { topics } = client.call(Request::OffsetCommit {
        group: group.into(),
        generation: -1,
        member_id: String::new(),
        topics: topics
            .into_iter()
            .map(|(topic, partitions)| keel_protocol::api::TopicEntries {
                topic: topic.into(),
                partitions: partitions.into_iter().map(|p| (p, 7)).collect(),
            })
            .collect(),
    }) else {
        panic!("offset commit response expected")
    };
    topics
        .into_iter()
        .flat_map(|entry| {
            let topic = entry.topic;
            entry
                .partitions
                .into_iter()
                .map(move |(p, error)| (topic.clone(), p, error))
        })
        .collect()
}

fn committed(client: &mut Client, group: &str) -> Vec<(String, u32, i64)> {
    let Response::OffsetFetch { topics, .. } = client.call(Request::OffsetFetch {
        group: group.into(),
        topics: Vec::new(),
    }) else {
        panic!("offset fetch response expected")
    };
    topics
        .into_iter()
        .flat_map(|entry| {
            let topic = entry.topic;
            entry
                .partitions
                .into_iter()
                .map(move |(p, offset)| (topic.clone(), p, offset))
        })
        .collect()
}

#[test]
fn offset_commits_too_large_or_for_missing_partitions_are_refused_not_fatal() {
    // Goal: a small request whose offset records would be huge (a long group id repeated in
    // every key) gets MessageTooLarge, and the broker neither panics nor builds the batch;
    // partitions that do not exist get UnknownTopicOrPartition while the rest commit.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keel.toml");
    std::fs::write(&config, "batch_bytes_max = 262144\n").unwrap();
    let data = dir.path().join("data");
    let broker = InProcess::start(
        &data,
        &["--shards", "2", "--config", config.to_str().unwrap()],
    );
    let mut client = broker.client();
    client.create_topic("t", 400);

    // A group id over its 1 KiB limit is refused by name (member ids built from such ids
    // once overflowed the wire's string length and killed a shard).
    let too_long = "g".repeat(30_000);
    let answer = commit(&mut client, &too_long, vec![("t", vec![0])]);
    assert_eq!(answer, vec![("t".into(), 0, ErrorCode::InvalidGroupId)]);
    // 400 records with a 1,000-byte group id in each key: 420 KB, over the 256 KiB batch
    // limit set above.
    let long_group = "g".repeat(1_000);
    let answer = commit(&mut client, &long_group, vec![("t", (0..400).collect())]);
    assert_eq!(answer.len(), 400);
    assert!(answer
        .iter()
        .all(|(_, _, error)| *error == ErrorCode::MessageTooLarge));
    healthy(&broker);
    assert!(committed(&mut client, &long_group).is_empty());

    let answer = commit(
        &mut client,
        "small",
        vec![("t", vec![0, 400]), ("missing", vec![0])],
    );
    assert_eq!(
        answer,
        vec![
            ("t".into(), 0, ErrorCode::None),
            ("t".into(), 400, ErrorCode::UnknownTopicOrPartition),
            ("missing".into(), 0, ErrorCode::UnknownTopicOrPartition),
        ]
    );
    assert_eq!(committed(&mut client, "small"), vec![("t".into(), 0, 7)]);
}

#[test]
fn the_offsets_topic_cannot_be_deleted_or_written_by_clients() {
    // Goal: committed offsets are only written by the coordinator and survive a stray
    // `topic delete __consumer_offsets`.
    let dir = tempfile::tempdir().unwrap();
    // Broker-wide retention must not reach the offsets topic either.
    let broker = Broker::start(
        &server_binary(),
        dir.path(),
        &[
            "--shards",
            "2",
            "--retention-bytes",
            "1",
            "--retention-ms",
            "1",
        ],
    );
    let mut client = broker.client();
    client.create_topic("t", 1);
    assert_eq!(
        commit(&mut client, "g", vec![("t", vec![0])]),
        vec![("t".into(), 0, ErrorCode::None)]
    );

    let Response::DeleteTopics { topics } = client.call(Request::DeleteTopics {
        topics: vec!["__consumer_offsets".into()],
    }) else {
        panic!("delete topics response expected")
    };
    assert_eq!(topics[0].error, ErrorCode::InvalidTopic);

    let mut builder = keel_protocol::batch::BatchBuilder::new();
    builder.push(keel_protocol::batch::NewRecord::value(
        1,
        b"forged".to_vec(),
    ));
    let Response::Produce { topics } = client.call(Request::Produce {
        acks: -1,
        timeout_ms: 5_000,
        topics: vec![keel_protocol::api::TopicEntries {
            topic: "__consumer_offsets".into(),
            partitions: vec![keel_protocol::api::ProducePartition {
                partition: 0,
                records: builder.build().unwrap().into(),
            }],
        }],
    }) else {
        panic!("produce response expected")
    };
    assert_eq!(topics[0].partitions[0].error, ErrorCode::InvalidTopic);

    let Response::AlterConfigs { topics } = client.call(Request::AlterConfigs {
        topics: vec![(
            "__consumer_offsets".into(),
            vec![keel_protocol::api::ConfigEntry {
                key: "retention.ms".into(),
                value: "1".into(),
            }],
        )],
    }) else {
        panic!("alter configs response expected")
    };
    assert_eq!(topics[0].error, ErrorCode::InvalidConfig);
    let Response::DescribeConfigs { topics } = client.call(Request::DescribeConfigs {
        topics: vec!["__consumer_offsets".into()],
    }) else {
        panic!("describe configs response expected")
    };
    let retention: Vec<(String, String)> = topics[0]
        .2
        .iter()
        .filter(|e| e.key.starts_with("retention."))
        .map(|e| (e.key.clone(), e.value.clone()))
        .collect();
    assert_eq!(
        retention,
        vec![
            ("retention.ms".into(), "-1".into()),
            ("retention.bytes".into(), "-1".into())
        ]
    );

    // The offsets topic and the commit in it are intact, also after a restart.
    assert!(dir.path().join("__consumer_offsets-0").exists());
    drop(client);
    let mut broker = broker;
    assert!(broker.stop().success());
    broker.restart();
    let mut client = broker.client();
    assert_eq!(committed(&mut client, "g"), vec![("t".into(), 0, 7)]);
}
