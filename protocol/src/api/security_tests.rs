//! Tests of the security APIs' codecs.
use super::*;

fn acl(name: &str) -> Acl {
    Acl {
        resource_type: 2,
        name: name.into(),
        pattern: 4,
        principal: "User:alice".into(),
        host: "*".into(),
        operation: 3,
        permission: 3,
    }
}

fn filter() -> AclFilter {
    AclFilter {
        resource_type: 1,
        name: Some("orders".into()),
        pattern: 2,
        principal: None,
        host: Some("10.0.0.1".into()),
        operation: 1,
        permission: 2,
    }
}

fn quota() -> QuotaEntry {
    QuotaEntry {
        user: QuotaName::Named("alice".into()),
        client_id: QuotaName::Default,
        values: vec![
            ("producer_byte_rate".into(), Some(1024.5)),
            ("consumer_byte_rate".into(), None),
        ],
    }
}

#[test]
fn security_requests_round_trip() {
    // Goal: the broker decodes what keel-client encodes, for every security API.
    let requests = [
        SecurityRequest::SaslHandshake {
            mechanism: "SCRAM-SHA-512".into(),
        },
        SecurityRequest::SaslAuthenticate {
            auth_bytes: Bytes::from_static(b"n,,n=alice,r=abc"),
        },
        SecurityRequest::DescribeUsers {
            users: vec!["alice".into(), "bob".into()],
        },
        SecurityRequest::AlterUsers {
            upsertions: vec![ScramUpsertion {
                user: "alice".into(),
                mechanism: "SCRAM-SHA-256".into(),
                iterations: 8192,
                salt: Bytes::from_static(b"salt"),
                salted_password: Bytes::from_static(&[7; 32]),
            }],
            deletions: vec![("bob".into(), "SCRAM-SHA-512".into())],
        },
        SecurityRequest::DescribeAcls { filter: filter() },
        SecurityRequest::CreateAcls {
            acls: vec![acl("orders-"), acl("payments")],
        },
        SecurityRequest::DeleteAcls {
            filters: vec![filter(), filter()],
        },
        SecurityRequest::DescribeQuotas,
        SecurityRequest::AlterQuotas {
            changes: vec![quota()],
        },
    ];
    for request in requests {
        let request = Request::Security(request);
        let mut body = BytesMut::new();
        request.encode(&mut body).unwrap();
        let decoded = Request::decode(request.api_key() as u16, 0, body.freeze()).unwrap();
        assert_eq!(decoded, request);
    }
}

#[test]
fn security_responses_round_trip() {
    let named = |name: &str, error| TopicResult {
        topic: name.into(),
        error,
        message: String::new(),
    };
    let responses = [
        (
            ApiKey::SaslHandshake,
            SecurityResponse::SaslHandshake {
                error: ErrorCode::UnsupportedSaslMechanism,
                mechanisms: vec!["SCRAM-SHA-512".into(), "PLAIN".into()],
            },
        ),
        (
            ApiKey::SaslAuthenticate,
            SecurityResponse::SaslAuthenticate {
                error: ErrorCode::None,
                message: String::new(),
                auth_bytes: Bytes::from_static(b"v=xyz"),
                session_lifetime_ms: 60_000,
            },
        ),
        (
            ApiKey::DescribeUsers,
            SecurityResponse::DescribeUsers {
                error: ErrorCode::None,
                users: vec![UserDescription {
                    user: "alice".into(),
                    error: ErrorCode::None,
                    credentials: vec![("SCRAM-SHA-512".into(), 4096)],
                }],
            },
        ),
        (
            ApiKey::AlterUsers,
            SecurityResponse::AlterUsers {
                results: vec![named("alice", ErrorCode::UnacceptableCredential)],
            },
        ),
        (
            ApiKey::DescribeAcls,
            SecurityResponse::DescribeAcls {
                error: ErrorCode::None,
                message: String::new(),
                acls: vec![acl("orders-")],
            },
        ),
        (
            ApiKey::CreateAcls,
            SecurityResponse::CreateAcls {
                results: vec![named("User:alice", ErrorCode::None)],
            },
        ),
        (
            ApiKey::DeleteAcls,
            SecurityResponse::DeleteAcls {
                results: vec![DeleteAclsResult {
                    error: ErrorCode::None,
                    message: String::new(),
                    removed: vec![acl("a"), acl("b")],
                }],
            },
        ),
        (
            ApiKey::DescribeQuotas,
            SecurityResponse::DescribeQuotas {
                error: ErrorCode::None,
                quotas: vec![quota()],
            },
        ),
        (
            ApiKey::AlterQuotas,
            SecurityResponse::AlterQuotas {
                results: vec![named("alice/<default>", ErrorCode::InvalidQuota)],
            },
        ),
    ];
    for (api, response) in responses {
        let response = Response::Security(response);
        let mut body = BytesMut::new();
        response.encode(&mut body).unwrap();
        assert_eq!(Response::decode(api, body.freeze()).unwrap(), response);
    }
}

#[test]
fn a_scram_upsertion_never_prints_its_keys() {
    let upsertion = ScramUpsertion {
        user: "alice".into(),
        mechanism: "SCRAM-SHA-256".into(),
        iterations: 4096,
        salt: Bytes::from_static(b"salt-bytes"),
        salted_password: Bytes::from_static(b"secret-bytes"),
    };
    let shown = format!("{upsertion:?}");
    assert!(shown.contains("alice") && !shown.contains("secret") && !shown.contains("salt-bytes"));
}

// Found by the response fuzzer: a negative session lifetime decoded as a huge one and
// encoded back as another number. Negative means none; NaN and infinite quotas are refused
// (a NaN never equals itself, and no quota is one).
#[test]
fn odd_lifetimes_and_quota_values_decode_to_what_encodes_again() {
    let body = [0u8, 0, 0, 0, 0, 0, 0, 0, 246, 15, 0, 0, 0, 0, 0, 0];
    let response =
        Response::decode(ApiKey::SaslAuthenticate, Bytes::copy_from_slice(&body)).unwrap();
    let Response::Security(SecurityResponse::SaslAuthenticate {
        session_lifetime_ms,
        ..
    }) = &response
    else {
        panic!("{response:?}")
    };
    assert_eq!(*session_lifetime_ms, 0);
    let mut again = BytesMut::new();
    response.encode(&mut again).unwrap();
    assert_eq!(
        Response::decode(ApiKey::SaslAuthenticate, again.freeze()).unwrap(),
        response
    );
    for bad in [f64::NAN, f64::INFINITY] {
        let mut entry = quota();
        entry.values = vec![("producer_byte_rate".into(), Some(bad))];
        let mut body = BytesMut::new();
        SecurityRequest::AlterQuotas {
            changes: vec![entry],
        }
        .encode(&mut body)
        .unwrap();
        assert!(Request::decode(ApiKey::AlterQuotas as u16, 0, body.freeze()).is_err());
    }
}

#[test]
fn link_requests_and_responses_round_trip() {
    // Goal: the broker decodes what the tool encodes for every link action, and back.
    for action in [
        LinkAction::Create,
        LinkAction::Delete,
        LinkAction::Describe,
        LinkAction::Pause,
        LinkAction::Resume,
        LinkAction::Promote,
    ] {
        let request = Request::Link(LinkRequest {
            action,
            name: "east".into(),
            definition: "source=a:9092\ntopics=orders.*".into(),
            topics: vec!["orders.eu".into()],
        });
        let mut body = BytesMut::new();
        request.encode(&mut body).unwrap();
        let decoded = Request::decode(ApiKey::Link as u16, 0, body.freeze()).unwrap();
        assert_eq!(decoded, request);
    }
    let response = Response::Link(LinkResponse {
        error: ErrorCode::None,
        message: String::new(),
        links: vec![LinkStatus {
            name: "east".into(),
            definition: "source=a:9092".into(),
            state: "active".into(),
            partitions: vec![MirrorPartitionStatus {
                topic: "orders.eu".into(),
                partition: 3,
                state: "mirroring".into(),
                source_high_watermark: 120,
                mirrored_offset: 100,
                lag_records: 20,
                lag_ms: 1_500,
            }],
        }],
    });
    let mut body = BytesMut::new();
    response.encode(&mut body).unwrap();
    let decoded = Response::decode(ApiKey::Link, body.freeze()).unwrap();
    assert_eq!(decoded, response);
    let mut bad = BytesMut::new();
    bad.put_i8(9);
    assert!(Request::decode(ApiKey::Link as u16, 0, bad.freeze()).is_err());
}
