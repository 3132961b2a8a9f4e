//! Hostile requests against memory, each on a fresh two-shard broker: the broker's peak RSS
//! grows by at most 20 times the bytes sent (or 16 MiB), each request gets its documented
//! error, and every shard keeps answering. Figures are printed (run with `--nocapture`).

use bytes::{BufMut, BytesMut};
use keel_protocol::api::{ErrorCode, ProducePartition, Request, Response, TopicEntries};
use keel_protocol::batch::{BatchBuilder, NewRecord};
use keel_protocol::frame::write_request;
use keel_tests::broker::Broker;
use keel_tests::kafka_wire;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const FLOOR: u64 = 16 << 20;

fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// A broker with topic `alive` (4 partitions, over both shards) and `wide` (1,000).
fn start(dir: &std::path::Path) -> Broker {
    let broker = Broker::with_config(dir, "connections_max = 12000\n", &["--shards", "2"]);
    let mut client = broker.client();
    client.create_topic("alive", 4);
    client.create_topic("wide", 1_000);
    every_shard_answers(&broker);
    broker
}

/// Every partition of `alive` takes a record and serves it back.
fn every_shard_answers(broker: &Broker) {
    let mut client = broker.client();
    for partition in 0..4 {
        let before = client.read_partition("alive", partition).len();
        let mut builder = BatchBuilder::new();
        builder.push(NewRecord::value(0, b"ok".to_vec()));
        let records = builder.build().unwrap().into();
        assert_eq!(
            client.produce("alive", partition, -1, records),
            ErrorCode::None
        );
        assert_eq!(client.read_partition("alive", partition).len(), before + 1);
    }
}

/// Runs `attack` (which returns the bytes it sent) and checks the broker's peak RSS grew
/// by at most 20 times that (or 16 MiB) and that every shard still answers.
fn bounded(name: &str, attack: impl FnOnce(&Broker) -> u64) {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let before = peak_rss(broker.pid());
    let sent = attack(&broker);
    every_shard_answers(&broker);
    let grown = peak_rss(broker.pid()).saturating_sub(before);
    let limit = (20 * sent).max(FLOOR);
    eprintln!(
        "{name}: {sent} bytes sent, peak RSS +{} KiB (limit {} KiB)",
        grown >> 10,
        limit >> 10
    );
    assert!(
        grown <= limit,
        "{name}: peak RSS grew {grown} bytes for {sent} sent"
    );
}

/// Sends `frame` on a new connection: the response body after the correlation id, or
/// `None` when the broker closed the connection instead.
fn exchange(addr: SocketAddr, frame: &[u8]) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream.write_all(frame).unwrap();
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).ok()?;
    Some(body[4..].to_vec())
}

#[test]
fn metadata_naming_a_thousand_partition_topic_a_thousand_times() {
    bounded("native Metadata, `wide` named 1,000 times", |broker| {
        let request = Request::Metadata {
            topics: vec!["wide".to_owned(); 1_000],
        };
        let mut client = broker.client();
        let Response::Metadata { topics, .. } = client.call(request) else {
            panic!("metadata response expected")
        };
        assert_eq!(topics.len(), 1, "one entry for the topic");
        assert_eq!(topics[0].partitions.len(), 1_000);
        1_000 * 6
    });
    bounded("Kafka Metadata v1, `wide` named 1,000 times", |broker| {
        let mut body = BytesMut::new();
        body.put_i32(1_000);
        for _ in 0..1_000 {
            kafka_wire::string(&mut body, "wide");
        }
        let answer =
            exchange(broker.kafka_addr, &kafka_wire::frame(3, 1, &body)).expect("answered");
        let names = answer.windows(6).filter(|w| w == b"\0\x04wide").count();
        assert_eq!(names, 1, "one entry for the topic");
        body.len() as u64
    });
}

#[test]
fn fetches_claiming_67_million_topics() {
    bounded("Kafka Fetch v4 claiming 67,108,864 topics", |broker| {
        let mut body = BytesMut::new();
        body.put_i32(-1); // replica id
        body.put_i32(500); // max wait
        body.put_i32(1); // min bytes
        body.put_i32(1 << 20); // max bytes
        body.put_i8(0); // isolation level
        body.put_i32(1 << 26); // topics
        body.put_slice(&[0u8; 64]);
        // Refused before anything is read into memory: the connection is closed.
        assert_eq!(
            exchange(broker.kafka_addr, &kafka_wire::frame(1, 4, &body)),
            None
        );
        body.len() as u64
    });
    bounded("native Fetch claiming 67,108,864 topics", |broker| {
        let mut body = BytesMut::new();
        body.put_u32(500);
        body.put_u32(1);
        body.put_u32(1 << 20);
        body.put_u32(1 << 26);
        body.put_slice(&[0u8; 64]);
        let mut frame = BytesMut::new();
        write_request(&mut frame, 11, 0, 1, &body);
        let mut client = broker.client();
        client.send_raw(&frame).unwrap();
        let raw = client.receive_raw().expect("answered");
        assert_eq!(raw.error_code, ErrorCode::InvalidRequest);
        body.len() as u64
    });
}

#[test]
fn produces_with_a_million_partition_entries() {
    bounded("native Produce with 1,000,000 entries", |broker| {
        let partitions: Vec<ProducePartition> = (0..1_000_000u32)
            .map(|i| ProducePartition {
                partition: i % 4,
                records: bytes::Bytes::new(),
            })
            .collect();
        let request = Request::Produce {
            acks: 1,
            timeout_ms: 30_000,
            topics: vec![TopicEntries {
                topic: "alive".into(),
                partitions,
            }],
        };
        let mut body = BytesMut::new();
        request.encode(&mut body).unwrap();
        let mut client = broker.client();
        let Response::Produce { topics } = client.call(request) else {
            panic!("produce response expected")
        };
        assert_eq!(topics[0].partitions.len(), 1_000_000);
        assert!(topics[0]
            .partitions
            .iter()
            .all(|p| p.error == ErrorCode::InvalidRequest));
        body.len() as u64
    });
    bounded("Kafka Produce v3 with 1,000,000 entries", |broker| {
        let mut body = BytesMut::new();
        body.put_i16(-1); // transactional id
        body.put_i16(1); // acks
        body.put_i32(30_000);
        body.put_i32(1);
        kafka_wire::string(&mut body, "alive");
        body.put_i32(1_000_000);
        for i in 0..1_000_000 {
            body.put_i32(i % 4);
            body.put_i32(0); // empty records
        }
        // Past `request_partitions_max` a Kafka connection is closed, as for any invalid
        // request (an answer per entry would cost more than the request).
        assert_eq!(
            exchange(broker.kafka_addr, &kafka_wire::frame(0, 3, &body)),
            None
        );
        body.len() as u64
    });
}

/// How many of `streams` the broker has closed (a read sees the end at once).
fn closed(streams: &[TcpStream]) -> usize {
    streams
        .iter()
        .filter(|stream| {
            stream.set_nonblocking(true).unwrap();
            // `Read` is implemented for `&TcpStream`.
            matches!((&mut &**stream).read(&mut [0u8; 1]), Ok(0))
        })
        .count()
}

/// Held by the tests that open thousands of connections: 15,000 and 5,000 descriptors at
/// once in this test process ran past its 20,000 open files (EMFILE) when they ran together.
static MANY_CONNECTIONS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn many_connections() -> std::sync::MutexGuard<'static, ()> {
    MANY_CONNECTIONS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn five_thousand_idle_connections_on_the_native_and_kafka_ports() {
    let _alone = many_connections();
    // The broker lowers `connections_max` to what its open-files limit holds (two
    // descriptors a connection; here 20,000 files: 7,500 connections), so the native port
    // takes its 5,000 and the Kafka port the rest; connections past the limit, and past
    // the metrics port's 64, are closed. A connection opened before keeps being served.
    // The metrics port gets 500 (its limit is 64): this process's own open-files limit is
    // the broker's, and other tests of the binary hold descriptors too.
    bounded(
        "5,000 idle connections on the native and Kafka ports, 500 on the metrics port",
        |broker| {
            let mut client = broker.client();
            let mut held: Vec<Vec<TcpStream>> = Vec::new();
            for (addr, count) in [
                (broker.addr, 5_000),
                (broker.kafka_addr, 5_000),
                (broker.metrics_addr, 500),
            ] {
                held.push(
                    (0..count)
                        .map(|_| TcpStream::connect(addr).unwrap())
                        .collect(),
                );
            }
            // Give the broker time to accept (and close) them all.
            std::thread::sleep(Duration::from_secs(2));
            let open_files: u64 = std::fs::read_to_string("/proc/self/limits")
                .unwrap()
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
                .unwrap();
            let fit = (open_files / 4 * 3 / 2).min(12_000) as usize;
            let closed: Vec<usize> = held.iter().map(|streams| closed(streams)).collect();
            eprintln!(
                "closed of 5,000, 5,000 and 500 (native, Kafka, metrics): {closed:?}; {fit} connections fit"
            );
            assert_eq!(closed[0], 5_000usize.saturating_sub(fit - 1));
            assert_eq!(
                closed[1],
                10_000usize.saturating_sub(fit - 1).min(5_000) - closed[0]
            );
            assert_eq!(closed[2], 500 - 64);
            for partition in 0..4 {
                let mut builder = BatchBuilder::new();
                builder.push(NewRecord::value(0, b"held".to_vec()));
                let records = builder.build().unwrap().into();
                assert_eq!(
                    client.produce("alive", partition, -1, records),
                    ErrorCode::None
                );
            }
            drop(held);
            0
        },
    );
}

#[test]
fn five_thousand_idle_connections_on_the_controller_port() {
    let _alone = many_connections();
    // Controller connections past 1,024 are closed at once; the rest are given 5 s to say
    // hello. The node's broker keeps serving meanwhile.
    let cluster = keel_tests::cluster::Cluster::start(1);
    let node = &cluster.nodes[0];
    let port: u16 = cluster.voters.rsplit(':').next().unwrap().parse().unwrap();
    let controller = SocketAddr::from(([127, 0, 0, 1], port));
    let before = peak_rss(node.pid());
    let held: Vec<TcpStream> = (0..5_000)
        .map(|_| TcpStream::connect(controller).unwrap())
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let refused = closed(&held);
    let mut client = node.client();
    let Response::Metadata { brokers, .. } = client.call(Request::Metadata { topics: vec![] })
    else {
        panic!("metadata response expected")
    };
    assert_eq!(brokers.len(), 1);
    let grown = peak_rss(node.pid()).saturating_sub(before);
    eprintln!(
        "5,000 idle controller connections: {refused} closed at once, peak RSS +{} KiB",
        grown >> 10
    );
    assert!(refused >= 5_000 - 1_024, "{refused} closed");
    assert!(grown <= FLOOR, "peak RSS grew {grown} bytes");
}
