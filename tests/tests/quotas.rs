//! Client quotas on both listeners. On the Kafka listener: set and described with Kafka's
//! AlterClientQuotas and DescribeClientQuotas (written by hand: the Python clients have no
//! API for them), kept across a restart, and enforced: a confluent-kafka producer over its
//! byte rate is held to within 10% of it over 30 s while one without a quota on the same
//! broker is not. On the native listener: set with `keel quota`, a keel-client producer
//! held to its byte rate and a client over its request percentage slowed to a trickle.

use bytes::{Buf, BufMut, BytesMut};
use keel_tests::in_process::InProcess;
use keel_tests::kafka_clients::{clients, run};
use keel_tests::kafka_wire::{frame, string};
use std::time::Duration;

const RATE: f64 = 1_048_576.0;

/// The answer's body after its correlation id.
fn exchange(addr: std::net::SocketAddr, frame: &[u8]) -> bytes::Bytes {
    keel_tests::kafka_wire::exchange(addr, frame).slice(4..)
}

fn get_string(b: &mut bytes::Bytes) -> Option<String> {
    let len = b.get_i16();
    (len >= 0).then(|| String::from_utf8(b.split_to(len as usize).to_vec()).unwrap())
}

/// AlterClientQuotas v0: `client-id` `slow` gets `producer_byte_rate` RATE.
fn alter_slow(addr: std::net::SocketAddr) {
    let mut body = BytesMut::new();
    body.put_i32(1);
    body.put_i32(1);
    string(&mut body, "client-id");
    string(&mut body, "slow");
    body.put_i32(1);
    string(&mut body, "producer_byte_rate");
    body.put_f64(RATE);
    body.put_u8(0);
    body.put_u8(0);
    let mut answer = exchange(addr, &frame(49, 0, &body));
    assert_eq!(answer.get_i32(), 0, "throttle");
    assert_eq!(answer.get_i32(), 1, "one entry");
    assert_eq!(
        answer.get_i16(),
        0,
        "no error: {:?}",
        get_string(&mut answer)
    );
}

/// DescribeClientQuotas v0 of client id `slow`: its (key, value) pairs.
fn describe_slow(addr: std::net::SocketAddr) -> Vec<(String, f64)> {
    let mut body = BytesMut::new();
    body.put_i32(1);
    string(&mut body, "client-id");
    body.put_i8(0);
    string(&mut body, "slow");
    body.put_u8(0);
    let mut answer = exchange(addr, &frame(48, 0, &body));
    answer.get_i32();
    assert_eq!(answer.get_i16(), 0);
    get_string(&mut answer);
    let mut values = Vec::new();
    for _ in 0..answer.get_i32().max(0) {
        for _ in 0..answer.get_i32() {
            get_string(&mut answer);
            get_string(&mut answer);
        }
        for _ in 0..answer.get_i32() {
            let key = get_string(&mut answer).unwrap();
            values.push((key, answer.get_f64()));
        }
    }
    values
}

#[test]
fn a_producer_over_its_quota_is_held_to_it_and_others_are_not() {
    let clients = clients();
    let dir = tempfile::tempdir().unwrap();
    let mut broker = InProcess::start(dir.path(), &["--shards", "2", "--fsync", "never"]);
    assert!(describe_slow(broker.kafka_addr).is_empty());
    alter_slow(broker.kafka_addr);
    broker.stop();
    broker.restart();
    assert_eq!(
        describe_slow(broker.kafka_addr),
        [("producer_byte_rate".to_owned(), RATE)]
    );
    keel_tests::tool::ok(&keel_tests::tool::keel(
        Some(&broker),
        &["topic", "create", "quota-topic", "--partitions", "2"],
        None,
    ));
    let script = clients.scripts.join("quota_test.py");
    let said = run(
        &clients.python,
        &[
            script.to_str().unwrap(),
            &broker.kafka_addr.to_string(),
            "quota-topic",
            &RATE.to_string(),
        ],
        &[],
        Duration::from_secs(120),
    );
    eprintln!("{said}");
}

/// How many `request`s a native connection gets answered in `within`.
async fn answered_in(addr: &str, request: keel_protocol::api::Request, within: Duration) -> u32 {
    let connection = keel_client::connection::Connection::connect(addr)
        .await
        .unwrap();
    answered_on(&connection, request, within).await
}

/// How many `request`s `connection` gets answered in `within`.
async fn answered_on(
    connection: &keel_client::connection::Connection,
    request: keel_protocol::api::Request,
    within: Duration,
) -> u32 {
    let started = std::time::Instant::now();
    let mut answered = 0;
    while started.elapsed() < within {
        let left = within.saturating_sub(started.elapsed());
        // Any answer counts (a replica fetch to a single node is refused, but answered).
        match connection.call_timeout(&request, left).await {
            Err(keel_client::Error::Timeout(_)) => break,
            Err(keel_client::Error::Broker { .. }) | Ok(_) => answered += 1,
            Err(e) => panic!("{e}"),
        }
    }
    answered
}

/// How many ListGroups a native connection gets answered in `within`.
async fn requests_answered(addr: &str, within: Duration) -> u32 {
    answered_in(addr, keel_protocol::api::Request::ListGroups, within).await
}

// Goal: the native listener enforces the same quotas (`keel quota set`): a producer over
// its user's byte rate is held to it, and a client over its request percentage (time the
// broker spends on its requests) is slowed to a trickle; the default user's entries apply
// to a plaintext connection (User:ANONYMOUS).
#[test]
fn native_clients_are_held_to_byte_rates_and_request_percentages() {
    use keel_tests::tool::{keel, ok};
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path(), &["--shards", "1"]);
    let addr = broker.addr.to_string();
    let quota = |args: &[&str]| {
        let mut all = vec![
            "--bootstrap",
            addr.as_str(),
            "quota",
            "set",
            "--user",
            "default",
        ];
        all.extend_from_slice(args);
        ok(&keel(None, &all, None));
    };
    keel_tests::cluster::runtime().block_on(async {
        let admin = keel_client::Admin::connect(&addr).await.unwrap();
        admin.create_topic("held", 1, &[]).await.unwrap();
        let unlimited = requests_answered(&addr, Duration::from_secs(1)).await;
        // The follower's connection, made before any quota: its handshake is not held by
        // the throttle its user earns below (what is measured is the exempt fetches).
        let follower = keel_client::connection::Connection::connect(&addr)
            .await
            .unwrap();

        // 3 MiB sent one request after another at 512 KiB/s: about 5 s (the throttle holds
        // the connection's next read, as Kafka mutes its channel).
        quota(&["--producer-byte-rate", "524288"]);
        let producer = keel_client::Producer::builder(addr.clone())
            .build()
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let value = vec![7u8; 64 * 1024];
        for _ in 0..48 {
            let record = keel_client::ProducerRecord::new("held", value.clone());
            producer.send(record).await.unwrap();
        }
        let took = started.elapsed();
        producer.close().await;
        assert!(took >= Duration::from_millis(3500), "3 MiB took {took:?}");

        // 0.1 % of a thread: a millisecond of handling a second.
        quota(&["--request-percentage", "0.1"]);
        let listed = ok(&keel(None, &["--bootstrap", &addr, "quota", "list"], None));
        let both = "user=<default>\tproducer_byte_rate=524288\trequest_percentage=0.1";
        assert!(listed.contains(both), "{listed}");
        let limited = requests_answered(&addr, Duration::from_secs(3)).await;
        assert!(
            limited * 10 < unlimited,
            "{limited} answered in 3 s over quota, {unlimited} in 1 s without"
        );
        // A follower's fetches are never throttled (Kafka exempts replication), though the
        // same user is far over its percentage.
        let replica_fetch =
            keel_protocol::api::Request::ReplicaFetch(keel_protocol::api::ReplicaFetch {
                replica_id: 2,
                max_wait_ms: 0,
                max_bytes: 1024,
                topics: Vec::new(),
            });
        let replicated = answered_on(&follower, replica_fetch, Duration::from_secs(1)).await;
        assert!(
            replicated * 4 > unlimited,
            "{replicated} replica fetches in 1 s, {unlimited} requests without a quota"
        );
    });
}
