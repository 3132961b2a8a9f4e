//! Every port bounds what idle or silent peers can hold: client connections that send
//! nothing are closed after `connections_max_idle_ms`, the metrics port serves at most 64
//! connections for at most 5 s each, the controller port at most 1,024, each given 5 s to
//! say hello.

use keel_protocol::api::{Request, Response};
use keel_tests::broker::{server_binary, Broker, Client};
use keel_tests::cluster::Cluster;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Whether the broker closes `stream` within `within` (a read sees the end).
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0)) || matches!(stream.read(&mut byte), Ok(0))
}

fn silent(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect()
}

#[test]
fn idle_client_connections_are_closed_and_busy_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::with_config(
        dir.path(),
        "connections_max_idle_ms = 600\n",
        &["--shards", "2"],
    );
    let mut native = TcpStream::connect(broker.addr).unwrap();
    let mut kafka = TcpStream::connect(broker.kafka_addr).unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut native, Duration::from_secs(5)));
    assert!(closed_within(&mut kafka, Duration::from_secs(5)));
    assert!(started.elapsed() >= Duration::from_millis(550));
    // A connection asking something every 200 ms is kept well past the idle limit.
    let mut busy = broker.client();
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(200));
        let Response::Metadata { .. } = busy.call(Request::Metadata { topics: vec![] }) else {
            panic!("metadata response expected")
        };
    }
}

#[test]
fn the_metrics_port_serves_a_bounded_number_of_connections_for_a_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&server_binary(), dir.path(), &["--shards", "1"]);
    let started = Instant::now();
    let mut held = silent(broker.metrics_addr, 64);
    // Every slot is held: one more is closed at once.
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(broker.metrics_addr).unwrap();
    assert!(closed_within(&mut extra, Duration::from_secs(2)));
    // Silent connections are closed after 5 s, and the port serves again.
    for stream in &mut held {
        assert!(closed_within(stream, Duration::from_secs(8)));
    }
    assert!(started.elapsed() >= Duration::from_secs(4));
    let mut scrape = TcpStream::connect(broker.metrics_addr).unwrap();
    scrape
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    scrape.read_to_string(&mut page).unwrap();
    assert!(page.contains("keel_build_info"), "{page}");
}

#[test]
fn the_controller_port_bounds_its_connections_and_waits_5_s_for_a_hello() {
    let cluster = Cluster::start(1);
    let port: u16 = cluster.voters.rsplit(':').next().unwrap().parse().unwrap();
    let controller = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    let mut held = silent(controller, 1_024);
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = TcpStream::connect(controller).unwrap();
    assert!(
        closed_within(&mut extra, Duration::from_secs(2)),
        "the 1,025th connection is closed at once"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    for stream in held.iter_mut().take(8) {
        assert!(closed_within(stream, Duration::from_secs(8)));
    }
    assert!(started.elapsed() >= Duration::from_secs(4));
    drop(held);
    // The node still serves: its broker is alive and answers.
    let mut client = Client::connect(cluster.nodes[0].addr);
    let Response::Metadata { brokers, .. } = client.call(Request::Metadata { topics: vec![] })
    else {
        panic!("metadata response expected")
    };
    assert_eq!(brokers.len(), 1);
}

#[test]
fn clients_carry_on_after_the_broker_closed_their_idle_connections() {
    // Kafka's clients reconnect after `connections.max.idle.ms`; so do Keel's.
    use keel_client::{Admin, Consumer, OffsetReset, Producer, ProducerRecord};
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::with_config(
        dir.path(),
        "connections_max_idle_ms = 300\n",
        &["--shards", "2"],
    );
    let addr = broker.addr.to_string();
    keel_tests::cluster::runtime().block_on(async move {
        let idle = || tokio::time::sleep(Duration::from_millis(800));
        let admin = Admin::connect(&addr).await.unwrap();
        admin.create_topic("idle", 1, &[]).await.unwrap();
        let producer = Producer::builder(addr.clone()).build().await.unwrap();
        let mut consumer = Consumer::builder(addr.clone())
            .offset_reset(OffsetReset::Earliest)
            .max_wait(Duration::from_millis(100))
            .build()
            .await
            .unwrap();
        consumer.assign([("idle".to_string(), 0)]);
        let mut seen = Vec::new();
        for round in 0..2 {
            idle().await;
            assert!(admin.list_topics().await.unwrap().contains(&"idle".into()));
            producer
                .send(ProducerRecord::new("idle", format!("r{round}")))
                .await
                .unwrap();
            idle().await;
            let deadline = Instant::now() + Duration::from_secs(10);
            while seen.len() <= round {
                assert!(Instant::now() < deadline, "round {round}: read {seen:?}");
                for record in consumer.poll(Duration::from_millis(100)).await.unwrap() {
                    seen.push(String::from_utf8(record.value.unwrap().to_vec()).unwrap());
                }
            }
        }
        assert_eq!(seen, ["r0", "r1"]);
        producer.close().await;
    });
}
