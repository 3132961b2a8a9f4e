//! The mirror's view of a source cluster (issue 23): keel-kafka's `source`
//! Fetch request and bounded response decoder against a real broker's Kafka listener, by
//! topic name (v12) and by topic id (v13). The batches a mirror would append are the
//! broker's own bytes: the same, byte for byte, as a native Fetch returns.

use keel_client::{Producer, ProducerRecord};
use keel_kafka::source::{
    fetch_request, fetch_response, metadata_request, metadata_response, whole_batches, TopicRef,
    Wanted,
};
use keel_protocol::api::{FetchPartition, Request, Response, TopicEntries};
use keel_tests::in_process::InProcess;
use keel_tests::kafka_wire::exchange;

#[test]
fn a_source_fetch_returns_the_brokers_batches_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path(), &[]);
    let addr = broker.addr.to_string();
    let native = keel_tests::cluster::runtime().block_on(async {
        let admin = keel_client::Admin::connect(&addr).await.unwrap();
        admin.create_topic("mirrored", 1, &[]).await.unwrap();
        let producer = Producer::builder(addr.clone()).build().await.unwrap();
        for i in 0..30 {
            let record =
                ProducerRecord::new("mirrored", format!("value-{i}")).key(format!("k{}", i % 3));
            producer.send(record).await.unwrap();
        }
        producer.close().await;
        let connection = keel_client::connection::Connection::connect(&addr)
            .await
            .unwrap();
        let fetch = Request::Fetch {
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 8 << 20,
            topics: vec![TopicEntries {
                topic: "mirrored".into(),
                partitions: vec![FetchPartition {
                    partition: 0,
                    fetch_offset: 0,
                    partition_max_bytes: 8 << 20,
                }],
            }],
        };
        let Response::Fetch { topics } = connection.call(&fetch).await.unwrap() else {
            panic!("a fetch answer")
        };
        topics[0].partitions[0].records.clone()
    });
    assert!(!native.is_empty());
    // The id this creation of the topic has (not one derived from its name).
    let (_, _, listed) = metadata_response(exchange(
        broker.kafka_addr,
        &metadata_request(8, "keel-mirror", None),
    ))
    .unwrap();
    let id = listed.iter().find(|t| t.name == "mirrored").unwrap().id;
    assert_ne!(id, keel_kafka::fetch::topic_id("mirrored"));
    for (version, topic) in [
        (12, TopicRef::Name("mirrored".into())),
        (13, TopicRef::Id(id)),
    ] {
        let wanted = Wanted {
            partition: 0,
            offset: 0,
            max_bytes: 8 << 20,
        };
        let frame = fetch_request(
            9,
            "keel-mirror",
            (0, 0, 8 << 20),
            &[(topic.clone(), vec![wanted])],
        );
        let (correlation, error, topics) =
            fetch_response(version, exchange(broker.kafka_addr, &frame)).unwrap();
        assert_eq!((correlation, error), (9, 0));
        assert_eq!(topics[0].topic, topic);
        let partition = &topics[0].partitions[0];
        assert_eq!((partition.error, partition.high_watermark), (0, 30));
        let spans = whole_batches(&partition.records).unwrap();
        assert_eq!(spans.first().map(|s| s.base), Some(0));
        assert_eq!(spans.last().map(|s| s.last), Some(29));
        let end = spans.last().map(|s| s.at + s.len).unwrap();
        assert_eq!(
            partition.records.slice(..end),
            native,
            "v{version}: byte for byte"
        );
        // From the middle of the log: a batch boundary, as a mirror resumes at its own end.
        let resume = spans[spans.len() / 2].base;
        let wanted = Wanted {
            partition: 0,
            offset: resume,
            max_bytes: 8 << 20,
        };
        let frame = fetch_request(10, "keel-mirror", (0, 0, 8 << 20), &[(topic, vec![wanted])]);
        let (_, _, topics) = fetch_response(version, exchange(broker.kafka_addr, &frame)).unwrap();
        let tail = whole_batches(&topics[0].partitions[0].records).unwrap();
        assert_eq!(tail[0].base, resume);
    }
    // Metadata: the brokers, the topic's id (the one the v13 fetch used) and its leaders;
    // every topic, or one by name.
    let (correlation, brokers, topics) = metadata_response(exchange(
        broker.kafka_addr,
        &metadata_request(11, "keel-mirror", None),
    ))
    .unwrap();
    assert_eq!(correlation, 11);
    assert_eq!(brokers[0].port, i32::from(broker.kafka_addr.port()));
    let mirrored = topics.iter().find(|t| t.name == "mirrored").unwrap();
    assert_eq!(
        (mirrored.error, mirrored.id, mirrored.internal),
        (0, id, false)
    );
    assert_eq!(
        mirrored.partitions,
        [(0, brokers[0].node_id, mirrored.partitions[0].2, 0)]
    );
    assert!(topics
        .iter()
        .any(|t| t.name == "__consumer_offsets" && t.internal));
    let one = metadata_request(12, "keel-mirror", Some(&["absent".to_owned()]));
    let (_, _, topics) = metadata_response(exchange(broker.kafka_addr, &one)).unwrap();
    assert_eq!(
        (topics.len(), topics[0].error),
        (1, 3),
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
}
