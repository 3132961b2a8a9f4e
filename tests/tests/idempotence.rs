//! Idempotent produce never acknowledges what it did not store: a failed append leaves the
//! sequence retryable, and the retry is stored exactly once.

use keel_client::{Producer, ProducerRecord};
use keel_tests::broker::{server_binary, Broker};
use std::time::Duration;

#[test]
fn a_retry_after_a_failed_append_is_stored_once_and_acknowledged_where_it_is() {
    // Goal: before, the broker recorded a batch's sequence before appending it; when the
    // append failed, the producer's retry was answered as a duplicate of an offset that
    // held nothing: acknowledged, never stored. Appends to `flaky` fail the first three
    // times (an injected I/O error, as a failing disk would give).
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with_env(
        &server_binary(),
        dir.path(),
        &["--shards", "1"],
        &[("KEEL_FAULT_FAIL_APPENDS", "flaky:3")],
    );
    let mut admin = broker.client();
    admin.create_topic("flaky", 1);
    let addr = broker.addr.to_string();
    let acked = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let producer = Producer::builder(addr)
                .idempotence(true)
                .retries(10, Duration::from_millis(20))
                .build()
                .await
                .unwrap();
            let mut acked = Vec::new();
            for value in ["first", "second", "third"] {
                let meta = producer
                    .send(ProducerRecord::new("flaky", value))
                    .await
                    .expect("retried until stored");
                acked.push((meta.offset, value.to_string()));
            }
            producer.close().await;
            acked
        });
    let stored: Vec<(i64, String)> = admin
        .read_partition("flaky", 0)
        .into_iter()
        .map(|(offset, _, value)| (offset, value))
        .collect();
    assert_eq!(
        stored, acked,
        "every acknowledged record stored once, where acknowledged"
    );
    assert_eq!(stored.len(), 3);
}

#[test]
fn a_batch_that_fails_for_good_does_not_poison_the_partition() {
    // Goal: a batch refused for good (retries used up on a failing disk, or too large for
    // the broker) left a gap in the producer's sequence, and every later batch to that
    // partition was refused as out of order. Now the partition starts over in a new epoch,
    // and the failed batch's sequence is never reused (it may have been stored).
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keel.toml");
    std::fs::write(&config, "batch_bytes_max = 65536\n").unwrap();
    let broker = Broker::start_with_env(
        &server_binary(),
        &dir.path().join("data"),
        &["--shards", "1", "--config", config.to_str().unwrap()],
        &[("KEEL_FAULT_FAIL_APPENDS", "stuck:4")],
    );
    let mut admin = broker.client();
    admin.create_topic("stuck", 1);
    admin.create_topic("small", 1);
    let addr = broker.addr.to_string();
    let stored = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let producer = Producer::builder(addr)
                .idempotence(true)
                .retries(2, Duration::from_millis(10))
                .build()
                .await
                .unwrap();
            // Three attempts, three injected failures: this record fails.
            let first = producer.send(ProducerRecord::new("stuck", "lost")).await;
            assert!(first.is_err(), "{first:?}");
            // The fourth failure is retried; then the partition takes writes again.
            let mut offsets = Vec::new();
            for value in ["after-1", "after-2"] {
                let meta = producer
                    .send(ProducerRecord::new("stuck", value))
                    .await
                    .expect("the partition is not poisoned");
                offsets.push(meta.offset);
            }
            // Too large for this broker: refused, and the next record still goes.
            let big = producer
                .send(ProducerRecord::new("small", vec![b'x'; 100_000]))
                .await;
            assert!(big.is_err(), "{big:?}");
            producer
                .send(ProducerRecord::new("small", "fits"))
                .await
                .expect("the partition is not poisoned");
            producer.close().await;
            offsets
        });
    assert_eq!(stored, vec![0, 1]);
    let values: Vec<String> = admin
        .read_partition("stuck", 0)
        .into_iter()
        .map(|r| r.2)
        .collect();
    assert_eq!(values, vec!["after-1", "after-2"]);
    let values: Vec<String> = admin
        .read_partition("small", 0)
        .into_iter()
        .map(|r| r.2)
        .collect();
    assert_eq!(values, vec!["fits"]);
}

#[test]
fn failures_among_batches_in_flight_keep_every_record_once_and_in_order() {
    // Goal: with several batches of a partition in flight, a failed one is retried before
    // the ones after it (which the broker refuses as out of order meanwhile), so the log
    // holds every record once, in the order sent. Appends to `pipelined` fail three times
    // near the start, while later batches are already on their way.
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with_env(
        &server_binary(),
        dir.path(),
        &["--shards", "2"],
        &[("KEEL_FAULT_FAIL_APPENDS", "pipelined:3")],
    );
    let mut admin = broker.client();
    admin.create_topic("pipelined", 1);
    let addr = broker.addr.to_string();
    const RECORDS: usize = 3_000;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let producer = Producer::builder(addr)
                .idempotence(true)
                .batch_bytes(2_048)
                .linger(Duration::from_millis(1))
                .retries(10, Duration::from_millis(5))
                .build()
                .await
                .unwrap();
            let mut deliveries = Vec::new();
            for n in 0..RECORDS {
                let record = ProducerRecord::new("pipelined", format!("{n:06}"));
                deliveries.push(producer.enqueue(record).await.unwrap());
            }
            let mut offsets = Vec::new();
            for delivery in deliveries {
                offsets.push(delivery.await.expect("every record is stored").offset);
            }
            producer.close().await;
            let expected: Vec<i64> = (0..RECORDS as i64).collect();
            assert_eq!(offsets, expected, "acknowledged where they are, in order");
        });
    let values: Vec<String> = admin
        .read_partition("pipelined", 0)
        .into_iter()
        .map(|r| r.2)
        .collect();
    let expected: Vec<String> = (0..RECORDS).map(|n| format!("{n:06}")).collect();
    assert_eq!(values, expected);
}

/// An idempotent batch of one record: producer 4242, epoch 0, `sequence`.
fn idempotent_batch(sequence: i32, value: &str) -> bytes::Bytes {
    use keel_protocol::batch::{BatchBuilder, NewRecord, ProducerFields};
    let mut builder = BatchBuilder::new();
    builder.producer(ProducerFields {
        producer_id: 4242,
        producer_epoch: 0,
        base_sequence: sequence,
    });
    builder.push(NewRecord::value(1_700_000_000_000, value.to_owned()));
    bytes::Bytes::from(builder.build().unwrap())
}

/// Produces one batch with acks=all; (error, base offset).
fn produce_once(
    client: &mut keel_tests::broker::Client,
    records: bytes::Bytes,
) -> (keel_protocol::api::ErrorCode, i64) {
    use keel_protocol::api::{ProducePartition, Request, Response, TopicEntries};
    let Response::Produce { topics } = client.call(Request::Produce {
        acks: -1,
        timeout_ms: 10_000,
        topics: vec![TopicEntries {
            topic: "once".into(),
            partitions: vec![ProducePartition {
                partition: 0,
                records,
            }],
        }],
    }) else {
        panic!("Produce answered with another response")
    };
    let result = &topics[0].partitions[0];
    (result.error, result.base_offset)
}

#[test]
fn a_retry_after_a_crash_is_recognised_from_the_log() {
    // Goal: producer state lived in memory only, so a batch stored just before a SIGKILL
    // whose acknowledgement was lost, retried after the restart, was stored twice (seen
    // as a duplicate record in `cluster_clients`). Opening a partition now rebuilds its
    // producers from the end of its log.
    use keel_protocol::api::ErrorCode;
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&server_binary(), dir.path(), &["--shards", "1"]);
    let mut client = broker.client();
    client.create_topic("once", 1);
    assert_eq!(
        produce_once(&mut client, idempotent_batch(0, "a")),
        (ErrorCode::None, 0)
    );
    assert_eq!(
        produce_once(&mut client, idempotent_batch(1, "b")),
        (ErrorCode::None, 1)
    );
    broker.stop_with(libc::SIGKILL);
    broker.restart();
    let mut client = broker.client();
    assert_eq!(
        produce_once(&mut client, idempotent_batch(1, "b")),
        (ErrorCode::None, 1),
        "the retry is answered where the batch was stored"
    );
    assert_eq!(
        produce_once(&mut client, idempotent_batch(0, "a")),
        (ErrorCode::None, 0)
    );
    assert_eq!(
        produce_once(&mut client, idempotent_batch(3, "d")).0,
        ErrorCode::OutOfOrderSequence,
        "the sequence goes on from the log: 2 is next"
    );
    assert_eq!(
        produce_once(&mut client, idempotent_batch(2, "c")),
        (ErrorCode::None, 2)
    );
    let values: Vec<String> = client
        .read_partition("once", 0)
        .into_iter()
        .map(|r| r.2)
        .collect();
    assert_eq!(values, vec!["a", "b", "c"], "each record stored once");
}
