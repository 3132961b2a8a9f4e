//! Cold reads (segment data sent from the file) of one consumer do not wait for another
//! consumer that stopped reading its socket.

use keel_protocol::api::{ApiKey, TopicEntries};
use keel_protocol::api::{ErrorCode, FetchPartition, Request, Response};
use keel_protocol::batch::{BatchBuilder, NewRecord};
use keel_tests::broker::Client;
use keel_tests::in_process::InProcess;
use std::time::{Duration, Instant};

fn fill(client: &mut Client, topic: &str, partition: u32, mib: usize) {
    let mut builder = BatchBuilder::new();
    for i in 0..1000 {
        builder.push(NewRecord::value(i, vec![b'c'; 1024]));
    }
    let batch = bytes::Bytes::from(builder.build().unwrap());
    for _ in 0..mib {
        assert_eq!(
            client.produce(topic, partition, 1, batch.clone()),
            ErrorCode::None
        );
    }
}

fn fetch(topic: &str, partition: u32, bytes: u32) -> Request {
    Request::Fetch {
        max_wait_ms: 0,
        min_bytes: 1,
        max_bytes: bytes,
        topics: vec![TopicEntries {
            topic: topic.into(),
            partitions: vec![FetchPartition {
                partition,
                fetch_offset: 0,
                partition_max_bytes: bytes,
            }],
        }],
    }
}

#[test]
fn a_consumer_that_stops_reading_does_not_hold_up_cold_reads_of_others() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = InProcess::start(dir.path(), &["--shards", "2"]);
    let topic = "cold";
    broker.client().create_topic(topic, 4);
    // Partitions 0 and 2 live on the same shard (owner = (hash + partition) % 2).
    let mut client = broker.client();
    fill(&mut client, topic, 0, 48);
    fill(&mut client, topic, 2, 4);
    drop(client);
    // After a restart nothing is cached: reads come from the segment files.
    broker.stop();
    broker.restart();

    // The stuck consumer asks for 48 MiB and never reads: its send blocks once the
    // socket buffers are full.
    let mut body = bytes::BytesMut::new();
    fetch(topic, 0, 48 << 20).encode(&mut body).unwrap();
    let mut frame = bytes::BytesMut::new();
    keel_protocol::frame::write_request(&mut frame, ApiKey::Fetch as u16, 0, 1, &body);
    let mut stuck = std::net::TcpStream::connect(broker.addr).unwrap();
    std::io::Write::write_all(&mut stuck, &frame).unwrap();
    // Its answer has begun (bytes wait in its socket): the send is under way and blocks
    // once the socket buffers are full.
    stuck.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stuck.peek(&mut [0u8; 1]).map_or(true, |n| n == 0) {
        assert!(
            Instant::now() < deadline,
            "the stuck fetch was never answered"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    // Others on the same shard keep getting their cold data.
    for attempt in 0..3 {
        let started = Instant::now();
        let mut other = broker.client();
        other.send(&fetch(topic, 2, 1 << 20));
        let (_, response) = other.receive(ApiKey::Fetch);
        let Response::Fetch { topics } = response else {
            panic!("Fetch answered with another response")
        };
        let part = &topics[0].partitions[0];
        assert_eq!(part.error, ErrorCode::None);
        assert!(part.records.len() >= 1_000_000, "a batch of cold data");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "attempt {attempt}: a cold read waited {:?} behind a consumer that does not read",
            started.elapsed()
        );
    }
    drop(stuck);
}
