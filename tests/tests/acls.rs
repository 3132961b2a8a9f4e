//! ACLs on the Kafka listener (`--authorizer on`), driven by confluent-kafka
//! (`tests/kafka/acl_test.py`): a super user sets ACLs; a user allowed to read topics by
//! prefix and one group reads them and gets Kafka's authorization errors for everything
//! else; DENY beats ALLOW until it is removed; users are made and deleted with Kafka's
//! AlterUserScramCredentials; the ACLs survive a restart.

use bytes::{BufMut, BytesMut};
use keel_tests::in_process::InProcess;
use keel_tests::kafka_clients::{clients, run};
use keel_tests::kafka_wire::{frame, request, scram_login, string};
use std::time::Duration;

#[test]
fn a_user_reads_what_acls_allow_and_gets_kafkas_errors_for_the_rest() {
    let clients = clients();
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--shards",
        "2",
        "--kafka-security",
        "SASL_PLAINTEXT",
        "--authorizer",
        "on",
        "--super-users",
        "User:admin",
        "--add-scram",
        "SCRAM-SHA-512:admin:admin-secret",
        "--add-scram",
        "SCRAM-SHA-512:alice:alice-secret",
    ];
    let mut broker = InProcess::start(dir.path(), &flags);
    let script = clients.scripts.join("acl_test.py");
    let phase = |broker: &InProcess, phase: &str| {
        let bootstrap = broker.kafka_addr.to_string();
        run(
            &clients.python,
            &[script.to_str().unwrap(), &bootstrap, phase],
            &[],
            Duration::from_secs(240),
        )
    };
    phase(&broker, "setup");
    phase(&broker, "alice");
    refused_by_hand(broker.kafka_addr);
    phase(&broker, "lift");
    phase(&broker, "users");
    broker.stop();
    broker.restart();
    phase(&broker, "kept");
    let acls = std::fs::read_to_string(dir.path().join("acls.toml")).unwrap();
    assert!(acls.contains("orders.") && !acls.contains("DENY"), "{acls}");
}

/// The APIs confluent-kafka does not send as alice would (it reads the cluster through
/// Metadata, has no client-quota or leader-epoch admin calls, looks a topic up before
/// ListOffsets, and aborts on a refused DescribeUserScramCredentials), written by hand on
/// one SCRAM connection as alice: each answers Kafka's authorization error.
fn refused_by_hand(addr: std::net::SocketAddr) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        scram_login(&mut stream, "alice", "alice-secret"),
        Some((0, 0))
    );
    let code = |at: &[u8], from: usize| i16::from_be_bytes([at[from], at[from + 1]]);

    // DescribeCluster v0 (flexible: the header's and the body's tagged fields are empty):
    // tagged fields, throttle, then the error.
    let answer = request(&mut stream, &frame(60, 0, &[0, 0, 0])).unwrap();
    assert_eq!(
        code(&answer, 5),
        31,
        "DescribeCluster: CLUSTER_AUTHORIZATION_FAILED"
    );

    // DescribeUserScramCredentials v0 (flexible), every user: tagged fields, throttle,
    // then the error (librdkafka aborts on this refusal, so it is sent by hand).
    let answer = request(&mut stream, &frame(50, 0, &[0, 0, 0])).unwrap();
    assert_eq!(code(&answer, 5), 31, "DescribeUserScramCredentials");

    // DescribeClientQuotas v0 (no components, not strict): throttle, then the error.
    let answer = request(&mut stream, &frame(48, 0, &[0, 0, 0, 0, 0])).unwrap();
    assert_eq!(code(&answer, 4), 31, "DescribeClientQuotas");

    // AlterClientQuotas v0, user alice's producer_byte_rate: throttle, one entry, its error.
    let mut body = BytesMut::new();
    body.put_i32(1);
    body.put_i32(1);
    string(&mut body, "user");
    string(&mut body, "alice");
    body.put_i32(1);
    string(&mut body, "producer_byte_rate");
    body.put_f64(1.0);
    body.put_u8(0);
    body.put_u8(0);
    let answer = request(&mut stream, &frame(49, 0, &body)).unwrap();
    assert_eq!(code(&answer, 8), 31, "AlterClientQuotas");

    // ListOffsets v1 of payments (not describable): the topic's name, one partition, its
    // error.
    let mut body = BytesMut::new();
    body.put_i32(-1);
    body.put_i32(1);
    string(&mut body, "payments");
    body.put_i32(1);
    body.put_i32(0);
    body.put_i64(-1);
    let answer = request(&mut stream, &frame(2, 1, &body)).unwrap();
    let at = 4 + 2 + "payments".len() + 4 + 4;
    assert_eq!(
        code(&answer, at),
        29,
        "ListOffsets: TOPIC_AUTHORIZATION_FAILED"
    );

    // OffsetForLeaderEpoch v2 of payments: throttle, the topic, its partition's error.
    let mut body = BytesMut::new();
    body.put_i32(1);
    string(&mut body, "payments");
    body.put_i32(1);
    body.put_i32(0);
    body.put_i32(-1);
    body.put_i32(0);
    let answer = request(&mut stream, &frame(23, 2, &body)).unwrap();
    let at = 4 + 4 + 2 + "payments".len() + 4;
    assert_eq!(code(&answer, at), 29, "OffsetForLeaderEpoch");
}
