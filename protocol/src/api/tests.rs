//! Tests of the requests, responses and error codes.
use super::*;
use proptest::prelude::*;

fn round_trip(request: Request) {
    let mut body = BytesMut::new();
    request.encode(&mut body).unwrap();
    let decoded = Request::decode(request.api_key() as u16, 0, body.freeze()).unwrap();
    assert_eq!(decoded, request);
}

#[test]
fn a_value_too_long_for_the_wire_is_an_encode_error_naming_the_field() {
    // Goal: a member id built past 64 KiB cannot panic the encoder (it once took a
    // shard down); the error names the field and the limit.
    let response = Response::JoinGroup {
        error: ErrorCode::None,
        generation: 1,
        member_id: "m".repeat(70_000),
        members: vec![],
    };
    let error = response.encode(&mut BytesMut::new()).unwrap_err();
    assert_eq!(
        error,
        EncodeError {
            field: "member_id",
            len: 70_000,
            limit: 65_535
        }
    );
    let request = Request::CreateTopics {
        topics: vec![NewTopic {
            name: "t".into(),
            partitions: 1,
            replication_factor: 1,
            configs: vec![ConfigEntry {
                key: "k".repeat(70_000),
                value: "1".into(),
            }],
        }],
    };
    let error = request.encode(&mut BytesMut::new()).unwrap_err();
    assert_eq!(error.field, "config.key");
    assert!(error.to_string().contains("65535"), "{error}");
}

#[test]
fn every_request_round_trips() {
    // Goal: encode and decode agree for every API.
    round_trip(Request::ApiVersions);
    round_trip(Request::Metadata {
        topics: vec!["a".into(), "b".into()],
    });
    round_trip(Request::CreateTopics {
        topics: vec![NewTopic {
            name: "orders".into(),
            partitions: 6,
            replication_factor: 1,
            configs: vec![ConfigEntry {
                key: "retention.ms".into(),
                value: "1000".into(),
            }],
        }],
    });
    round_trip(Request::DeleteTopics {
        topics: vec!["orders".into()],
    });
    round_trip(Request::DescribeConfigs {
        topics: vec!["orders".into()],
    });
    round_trip(Request::AlterConfigs {
        topics: vec![(
            "orders".into(),
            vec![ConfigEntry {
                key: "fsync".into(),
                value: "never".into(),
            }],
        )],
    });
    round_trip(Request::Produce {
        acks: -1,
        timeout_ms: 30_000,
        topics: vec![TopicEntries {
            topic: "orders".into(),
            partitions: vec![ProducePartition {
                partition: 3,
                records: Bytes::from_static(b"batch bytes"),
            }],
        }],
    });
    round_trip(Request::Fetch {
        max_wait_ms: 500,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: vec![TopicEntries {
            topic: "orders".into(),
            partitions: vec![FetchPartition {
                partition: 1,
                fetch_offset: 42,
                partition_max_bytes: 65536,
            }],
        }],
    });
    round_trip(Request::JoinGroup(JoinGroup {
        group: "g".into(),
        member_id: String::new(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        assignor: "range".into(),
        topics: vec!["a".into()],
    }));
    round_trip(Request::SyncGroup {
        group: "g".into(),
        generation: 3,
        member_id: "m".into(),
    });
    round_trip(Request::Heartbeat {
        group: "g".into(),
        generation: 3,
        member_id: "m".into(),
    });
    round_trip(Request::LeaveGroup {
        group: "g".into(),
        member_id: "m".into(),
    });
    round_trip(Request::OffsetCommit {
        group: "g".into(),
        generation: 3,
        member_id: "m".into(),
        topics: vec![TopicEntries {
            topic: "a".into(),
            partitions: vec![(0, 42), (1, 7)],
        }],
    });
    round_trip(Request::OffsetFetch {
        group: "g".into(),
        topics: vec![TopicEntries {
            topic: "a".into(),
            partitions: vec![0, 1],
        }],
    });
    round_trip(Request::ListGroups);
    round_trip(Request::DescribeGroups {
        groups: vec!["g".into()],
    });
    round_trip(Request::FindCoordinator { group: "g".into() });
    round_trip(Request::ElectLeaders {
        topic: "t".into(),
        partition: -1,
    });
    round_trip(Request::ReassignPartition {
        topic: "t".into(),
        partition: 2,
        replicas: vec![3, 1],
    });
    round_trip(Request::DecommissionBroker { broker: 4 });
    round_trip(Request::ReplicaFetch(ReplicaFetch {
        replica_id: 2,
        max_wait_ms: 500,
        max_bytes: 1 << 20,
        topics: vec![TopicEntries {
            topic: "t".into(),
            partitions: vec![ReplicaFetchPartition {
                partition: 1,
                leader_epoch: 4,
                fetch_offset: 17,
                last_fetched_epoch: 3,
                partition_max_bytes: 1 << 16,
            }],
        }],
    }));
    round_trip(Request::ListOffsets {
        topics: vec![TopicEntries {
            topic: "t".into(),
            partitions: vec![ListOffsetsPartition {
                partition: 0,
                timestamp: EARLIEST_TIMESTAMP,
            }],
        }],
    });
}

#[test]
fn responses_round_trip() {
    // Goal: the client decodes what the server encodes.
    let responses = [
        (
            ApiKey::ApiVersions,
            Response::ApiVersions {
                apis: vec![(0, 0, 0), (10, 0, 0)],
            },
        ),
        (
            ApiKey::Metadata,
            Response::Metadata {
                brokers: vec![BrokerInfo {
                    node_id: 1,
                    host: "127.0.0.1".into(),
                    port: 7070,
                }],
                topics: vec![TopicMetadata {
                    topic: "t".into(),
                    error: ErrorCode::None,
                    partitions: vec![PartitionMetadata {
                        partition: 0,
                        error: ErrorCode::None,
                        leader: 1,
                        log_start_offset: 0,
                        high_watermark: 5,
                        log_end_offset: 5,
                        size_bytes: 1234,
                        leader_epoch: 3,
                        replicas: vec![1, 2],
                        isr: vec![1],
                    }],
                }],
            },
        ),
        (
            ApiKey::Fetch,
            Response::Fetch {
                topics: vec![TopicEntries {
                    topic: "t".into(),
                    partitions: vec![FetchPartitionResult {
                        partition: 0,
                        error: ErrorCode::OffsetOutOfRange,
                        high_watermark: 9,
                        log_start_offset: 2,
                        records: Bytes::from_static(b"xyz"),
                    }],
                }],
            },
        ),
        (
            ApiKey::ReplicaFetch,
            Response::ReplicaFetch {
                topics: vec![TopicEntries {
                    topic: "t".into(),
                    partitions: vec![ReplicaFetchResult {
                        partition: 0,
                        error: ErrorCode::None,
                        high_watermark: 9,
                        log_start_offset: 2,
                        log_end_offset: 12,
                        diverging_epoch: 3,
                        diverging_end_offset: 8,
                        records: Bytes::from_static(b"xyz"),
                    }],
                }],
            },
        ),
        (
            ApiKey::Produce,
            Response::Produce {
                topics: vec![TopicEntries {
                    topic: "t".into(),
                    partitions: vec![ProducePartitionResult {
                        partition: 0,
                        error: ErrorCode::None,
                        base_offset: 7,
                        log_start_offset: 0,
                    }],
                }],
            },
        ),
    ];
    for (api, response) in responses {
        let mut body = BytesMut::new();
        response.encode(&mut body).unwrap();
        assert_eq!(Response::decode(api, body.freeze()).unwrap(), response);
    }
}

#[test]
fn bad_requests_are_typed_errors() {
    // Goal: unknown APIs, versions, acks and hostile counts are refused by name.
    assert_eq!(
        Request::decode(999, 0, Bytes::new()),
        Err(DecodeError::UnknownApi(999))
    );
    assert_eq!(
        Request::decode(1, 7, Bytes::new()),
        Err(DecodeError::UnsupportedVersion {
            api_key: 1,
            version: 7
        })
    );
    let mut body = BytesMut::new();
    Request::Produce {
        acks: 1,
        timeout_ms: 1,
        topics: vec![],
    }
    .encode(&mut body)
    .unwrap();
    body[0] = 5;
    assert!(matches!(
        Request::decode(10, 0, body.freeze()),
        Err(DecodeError::BadValue { field: "acks", .. })
    ));
    // A count of 4 billion topics in a 4-byte body.
    let hostile = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]);
    assert!(matches!(
        Request::decode(1, 0, hostile),
        Err(DecodeError::BadLength { .. })
    ));
    assert!(matches!(
        Request::decode(0, 0, Bytes::from_static(b"x")),
        Err(DecodeError::Trailing(1))
    ));
}

#[test]
fn topic_names_follow_kafka() {
    // Goal: the same names Kafka accepts and refuses.
    for ok in ["a", "orders.v1", "A-b_c", &"x".repeat(249)] {
        assert!(validate_topic_name(ok).is_ok(), "{ok}");
    }
    for bad in ["", ".", "..", "with space", "slash/", "ü", &"x".repeat(250)] {
        assert!(validate_topic_name(bad).is_err(), "{bad}");
    }
}

proptest! {
    #[test]
    fn random_bodies_never_panic(api in 0u16..80, body in proptest::collection::vec(any::<u8>(), 0..200)) {
        // Goal: every decoder answers garbage with an error or a value, never a panic.
        let _ = Request::decode(api, 0, Bytes::from(body.clone()));
        if let Some(key) = ApiKey::from_u16(api) {
            let _ = Response::decode(key, Bytes::from(body));
        }
    }
}

#[test]
fn encoding_as_parts_gives_the_same_bytes_without_copying_records() {
    let records = |n: u8| Bytes::from(vec![n; 5000 + n as usize]);
    let produce = Request::Produce {
        acks: -1,
        timeout_ms: 1234,
        topics: vec![
            TopicEntries {
                topic: "a".into(),
                partitions: vec![
                    ProducePartition {
                        partition: 0,
                        records: records(1),
                    },
                    ProducePartition {
                        partition: 3,
                        records: records(2),
                    },
                ],
            },
            TopicEntries {
                topic: "bb".into(),
                partitions: vec![ProducePartition {
                    partition: 7,
                    records: records(3),
                }],
            },
        ],
    };
    let fetch = Request::Fetch {
        max_wait_ms: 10,
        min_bytes: 1,
        max_bytes: 100,
        topics: vec![],
    };
    for request in [produce, fetch, Request::ApiVersions] {
        let mut whole = BytesMut::new();
        request.encode(&mut whole).unwrap();
        let (mut scratch, mut parts) = (BytesMut::new(), Vec::new());
        request.encode_parts(&mut scratch, &mut parts).unwrap();
        assert_eq!(parts.concat(), whole.to_vec(), "{request:?}");
        if let Request::Produce { topics, .. } = &request {
            // Each record set is a part that points at the caller's bytes.
            let sets: Vec<&Bytes> = topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| &p.records))
                .collect();
            for set in sets {
                assert!(
                    parts.iter().any(|part| part.as_ptr() == set.as_ptr()),
                    "records sent from where they are"
                );
            }
        }
    }
}
