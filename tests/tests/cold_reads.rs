//! Cold reads (segment data sent from the file) of one consumer do not wait for another
//! consumer that stopped reading its socket.

use keel_protocol::api::{ApiKey, TopicEntries};
use keel_protocol::api::{ErrorCode, FetchPartition, ProducePartition, Request, Response};
use keel_protocol::batch::{BatchBuilder, NewRecord};
use keel_tests::broker::{server_binary, Broker, Client};
use std::time::{Duration, Instant};

fn fill(client: &mut Client, topic: &str, partition: u32, mib: usize) {
    let mut builder = BatchBuilder::new();
    for i in 0..1000 {
        builder.push(NewRecord::value(i, vec![b'c'; 1024]));
    }
    let batch = bytes::Bytes::from(builder.build().unwrap());
    for _ in 0..mib {
        let Response::Produce { topics } = client.call(Request::Produce {
            acks: 1,
            timeout_ms: 30_000,
            topics: vec![TopicEntries {
                topic: topic.into(),
                partitions: vec![ProducePartition {
                    partition,
                    records: batch.clone(),
                }],
            }],
        }) else {
            panic!("Produce answered with another response")
        };
        assert_eq!(topics[0].partitions[0].error, ErrorCode::None);
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
    let mut broker = Broker::start(&server_binary(), dir.path(), &["--shards", "2"]);
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
    let mut stuck = broker.client();
    stuck.send(&fetch(topic, 0, 48 << 20));
    std::thread::sleep(Duration::from_millis(300));

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
