//! Hostile requests for every API over real TCP: strings at the wire's 65,535-byte limit,
//! counts and timeouts at their extremes, forged batches. Each gets an answer with an
//! error (never a dead shard or a dropped connection), every shard keeps serving, and the
//! error counters, which start at zero, count exactly what this test sent.

use keel_protocol::api::{
    ConfigEntry, ErrorCode, FetchPartition, JoinGroup, ListOffsetsPartition, NewTopic,
    ProducePartition, Request, Response, TopicEntries,
};
use keel_protocol::batch::{BatchBuilder, NewRecord};
use keel_protocol::Compression;
use keel_tests::broker::{metric, Client};
use keel_tests::in_process::InProcess;
use std::time::{Duration, Instant};

const MAX: usize = 65_535;

fn long(c: char) -> String {
    std::iter::repeat_n(c, MAX).collect()
}

/// Overwrites header bytes at `at` and recomputes the CRC, as a hostile producer can.
fn forged(mut batch: Vec<u8>, at: usize, bytes: &[u8]) -> Vec<u8> {
    batch[at..at + bytes.len()].copy_from_slice(bytes);
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

fn produce(client: &mut Client, topic: &str, partition: u32, records: Vec<u8>) -> ErrorCode {
    let Response::Produce { topics } = client.call(Request::Produce {
        acks: -1,
        timeout_ms: u32::MAX,
        topics: vec![TopicEntries {
            topic: topic.into(),
            partitions: vec![ProducePartition {
                partition,
                records: records.into(),
            }],
        }],
    }) else {
        panic!("produce response expected")
    };
    topics[0].partitions[0].error
}

fn join(
    client: &mut Client,
    group: &str,
    member: &str,
    session: u32,
    rebalance: u32,
    assignor: &str,
) -> ErrorCode {
    let Response::JoinGroup { error, .. } = client.call(Request::JoinGroup(JoinGroup {
        group: group.into(),
        member_id: member.into(),
        session_timeout_ms: session,
        rebalance_timeout_ms: rebalance,
        assignor: assignor.into(),
        topics: vec!["t".into()],
    })) else {
        panic!("join response expected")
    };
    error
}

/// Every partition of `t` (spread over both shards) takes a produce and serves it back,
/// and a group can still be joined (shard 0 coordinates groups).
fn every_shard_serves(broker: &InProcess, round: u64) {
    let mut client = broker.client();
    for partition in 0..8 {
        let mut builder = BatchBuilder::new();
        builder.push(NewRecord::value(1, format!("health {round} {partition}")));
        assert_eq!(
            produce(&mut client, "t", partition, builder.build().unwrap()),
            ErrorCode::None,
            "partition {partition} takes writes"
        );
        let values: Vec<String> = client
            .read_partition("t", partition)
            .into_iter()
            .map(|r| r.2)
            .collect();
        assert!(values.contains(&format!("health {round} {partition}")));
    }
    let Response::JoinGroup { error, .. } = client.call(Request::JoinGroup(JoinGroup {
        group: format!("healthy-{round}"),
        member_id: String::new(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 1_000,
        assignor: "range".into(),
        topics: vec!["t".into()],
    })) else {
        panic!("join response expected")
    };
    assert_eq!(error, ErrorCode::None);
}

#[test]
fn hostile_requests_to_every_api_get_errors_and_every_shard_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keel.toml");
    std::fs::write(&config, "fetch_wait_ms_max = 300\n").unwrap();
    let broker = InProcess::start(
        &dir.path().join("data"),
        &["--shards", "2", "--config", config.to_str().unwrap()],
    );
    let mut client = broker.client();
    client.create_topic("t", 8);
    every_shard_serves(&broker, 0);
    let name = long('n');

    // Metadata, DescribeConfigs, DeleteTopics, ListOffsets for a name at the string limit.
    let Response::Metadata { topics, .. } = client.call(Request::Metadata {
        topics: vec![name.clone(); 3],
    }) else {
        panic!()
    };
    assert!(topics
        .iter()
        .all(|t| t.error == ErrorCode::UnknownTopicOrPartition));
    let Response::DescribeConfigs { topics } = client.call(Request::DescribeConfigs {
        topics: vec![name.clone()],
    }) else {
        panic!()
    };
    assert_eq!(topics[0].1, ErrorCode::UnknownTopicOrPartition);
    let Response::DeleteTopics { topics } = client.call(Request::DeleteTopics {
        topics: vec![name.clone()],
    }) else {
        panic!()
    };
    assert_eq!(topics[0].error, ErrorCode::UnknownTopicOrPartition);
    let Response::ListOffsets { topics } = client.call(Request::ListOffsets {
        topics: vec![TopicEntries {
            topic: name.clone(),
            partitions: vec![ListOffsetsPartition {
                partition: u32::MAX,
                timestamp: i64::MIN,
            }],
        }],
    }) else {
        panic!()
    };
    assert_eq!(
        topics[0].partitions[0].error,
        ErrorCode::UnknownTopicOrPartition
    );

    // CreateTopics and AlterConfigs: a long name, keys and values at the limit, absurd counts.
    let create = |name: &str, partitions: u32, replication: u16, key: &str, value: &str| {
        Request::CreateTopics {
            topics: vec![NewTopic {
                name: name.into(),
                partitions,
                replication_factor: replication,
                configs: vec![ConfigEntry {
                    key: key.into(),
                    value: value.into(),
                }],
            }],
        }
    };
    for (request, expected) in [
        (
            create(&name, 1, 1, "retention.ms", "1"),
            ErrorCode::InvalidTopic,
        ),
        (
            create("c1", u32::MAX, 1, "retention.ms", "1"),
            ErrorCode::TooManyPartitions,
        ),
        (
            create("c2", 1, u16::MAX, "retention.ms", "1"),
            ErrorCode::InvalidReplicationFactor,
        ),
        (
            create("c3", 1, 1, &long('k'), "1"),
            ErrorCode::InvalidConfig,
        ),
        (
            create("c4", 1, 1, "retention.ms", &long('9')),
            ErrorCode::InvalidConfig,
        ),
    ] {
        let Response::CreateTopics { topics } = client.call(request) else {
            panic!()
        };
        assert_eq!(topics[0].error, expected, "{}", topics[0].message);
        assert!(topics[0].message.len() < 1024, "echoed values are clipped");
    }
    let Response::AlterConfigs { topics } = client.call(Request::AlterConfigs {
        topics: vec![(
            "t".into(),
            vec![ConfigEntry {
                key: long('k'),
                value: long('v'),
            }],
        )],
    }) else {
        panic!()
    };
    assert_eq!(topics[0].error, ErrorCode::InvalidConfig);

    // Produce: a long topic name, forged batches whose CRC is right but whose counts lie.
    let mut builder = BatchBuilder::new();
    builder.push(NewRecord::value(1, "x"));
    let honest = builder.build().unwrap();
    assert_eq!(
        produce(&mut client, &name, 0, honest.clone()),
        ErrorCode::UnknownTopicOrPartition
    );
    let lying = forged(honest.clone(), 23, &i32::MAX.to_be_bytes());
    assert_eq!(
        produce(&mut client, "t", 0, lying),
        ErrorCode::CorruptMessage
    );
    let mut builder = BatchBuilder::new();
    builder.compression(Compression::Zstd);
    builder.push(NewRecord::value(1, vec![0u8; 64 << 20]));
    let bomb = forged(builder.build().unwrap(), 57, &i32::MAX.to_be_bytes());
    assert!(bomb.len() < 1 << 20);
    assert_eq!(
        produce(&mut client, "t", 1, bomb),
        ErrorCode::CorruptMessage
    );
    let future = forged(honest.clone(), 35, &i64::MAX.to_be_bytes());
    assert_eq!(
        produce(&mut client, "t", 2, future),
        ErrorCode::CorruptMessage
    );

    // Fetch: the longest wait a peer can ask for is cut to the broker's limit.
    let started = Instant::now();
    let Response::Fetch { topics } = client.call(Request::Fetch {
        max_wait_ms: u32::MAX,
        min_bytes: u32::MAX,
        max_bytes: u32::MAX,
        topics: vec![TopicEntries {
            topic: "t".into(),
            partitions: (0..8)
                .map(|partition| FetchPartition {
                    partition,
                    fetch_offset: i64::MAX,
                    partition_max_bytes: u32::MAX,
                })
                .collect(),
        }],
    }) else {
        panic!()
    };
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(topics[0]
        .partitions
        .iter()
        .all(|p| p.error == ErrorCode::OffsetOutOfRange));

    // Groups: the id that once killed a shard, timeouts and names at their limits.
    let group = long('g');
    let joins = [
        (
            group.as_str(),
            "",
            10_000,
            10_000,
            "range",
            ErrorCode::InvalidGroupId,
        ),
        (
            "g",
            "",
            u32::MAX,
            10_000,
            "range",
            ErrorCode::InvalidSessionTimeout,
        ),
        (
            "g",
            "",
            10_000,
            u32::MAX,
            "range",
            ErrorCode::InvalidRebalanceTimeout,
        ),
        (
            "g",
            "",
            10_000,
            10_000,
            &long('a'),
            ErrorCode::UnknownAssignor,
        ),
        (
            "g",
            &long('m'),
            10_000,
            10_000,
            "range",
            ErrorCode::UnknownMemberId,
        ),
    ];
    for (group, member, session, rebalance, assignor, expected) in joins {
        assert_eq!(
            join(&mut client, group, member, session, rebalance, assignor),
            expected
        );
    }
    for request in [
        Request::SyncGroup {
            group: group.clone(),
            generation: i32::MAX,
            member_id: long('m'),
        },
        Request::Heartbeat {
            group: group.clone(),
            generation: i32::MIN,
            member_id: long('m'),
        },
        Request::LeaveGroup {
            group: group.clone(),
            member_id: long('m'),
        },
    ] {
        match client.call(request) {
            Response::SyncGroup { error, .. }
            | Response::Heartbeat { error }
            | Response::LeaveGroup { error } => assert_eq!(error, ErrorCode::UnknownMemberId),
            other => panic!("{other:?}"),
        }
    }
    let Response::OffsetCommit { topics } = client.call(Request::OffsetCommit {
        group: group.clone(),
        generation: -1,
        member_id: String::new(),
        topics: vec![TopicEntries {
            topic: "t".into(),
            partitions: vec![(0, i64::MAX)],
        }],
    }) else {
        panic!()
    };
    assert_eq!(topics[0].partitions[0].1, ErrorCode::InvalidGroupId);
    let Response::OffsetFetch { topics, .. } = client.call(Request::OffsetFetch {
        group: group.clone(),
        topics: vec![],
    }) else {
        panic!()
    };
    assert!(topics.is_empty());
    let Response::DescribeGroups { groups } = client.call(Request::DescribeGroups {
        groups: vec![group.clone(), long('h')],
    }) else {
        panic!()
    };
    assert_eq!(groups.len(), 2);
    let Response::FindCoordinator { .. } = client.call(Request::FindCoordinator { group }) else {
        panic!()
    };
    let Response::ListGroups { .. } = client.call(Request::ListGroups) else {
        panic!()
    };
    let Response::InitProducerId { error, .. } = client.call(Request::InitProducerId) else {
        panic!()
    };
    assert_eq!(error, ErrorCode::None);

    // The same connection still works, and so does every shard.
    let Response::ApiVersions { .. } = client.call(Request::ApiVersions) else {
        panic!()
    };
    every_shard_serves(&broker, 1);

    // The counters started at zero on this broker: they hold exactly what was sent.
    let page = broker.metrics();
    let counted = |api: &str, error: &str, code: u16| {
        metric(
            &page,
            "keel_request_errors_total",
            &format!("api=\"{api}\",error=\"{error}\",code=\"{code}\""),
        )
    };
    for (api, error, code, sent) in [
        ("metadata", "UnknownTopicOrPartition", 3, 1.0),
        ("describe_configs", "UnknownTopicOrPartition", 3, 1.0),
        ("delete_topics", "UnknownTopicOrPartition", 3, 1.0),
        ("list_offsets", "UnknownTopicOrPartition", 3, 1.0),
        ("create_topics", "InvalidTopic", 4, 1.0),
        ("create_topics", "TooManyPartitions", 18, 1.0),
        ("create_topics", "InvalidReplicationFactor", 7, 1.0),
        ("create_topics", "InvalidConfig", 8, 2.0),
        ("alter_configs", "InvalidConfig", 8, 1.0),
        ("produce", "UnknownTopicOrPartition", 3, 1.0),
        ("produce", "CorruptMessage", 2, 3.0),
        ("fetch", "OffsetOutOfRange", 10, 1.0),
        ("join_group", "InvalidGroupId", 24, 1.0),
        ("join_group", "InvalidSessionTimeout", 25, 1.0),
        ("join_group", "InvalidRebalanceTimeout", 29, 1.0),
        ("join_group", "UnknownAssignor", 26, 1.0),
        ("join_group", "UnknownMemberId", 21, 1.0),
        ("sync_group", "UnknownMemberId", 21, 1.0),
        ("heartbeat", "UnknownMemberId", 21, 1.0),
        ("leave_group", "UnknownMemberId", 21, 1.0),
        ("offset_commit", "InvalidGroupId", 24, 1.0),
    ] {
        assert_eq!(counted(api, error, code), sent, "{api} {error}\n{page}");
    }
    assert!(metric(&page, "keel_requests_total", "api=\"join_group\"") >= 7.0);
}
