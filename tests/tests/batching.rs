//! The producer's batch sizes against a real broker: under light load batches stay at
//! most `batch_bytes`; while a partition's in-flight slots are all taken its batch grows up
//! to `batch_grow_bytes`, and order and idempotence hold either way.

use keel_client::{Producer, ProducerRecord};
use keel_protocol::batch::BatchView;
use keel_tests::broker::Client;
use keel_tests::in_process::InProcess;
use std::time::Duration;

const BATCH: usize = 16 * 1024;
const GROW: usize = 256 * 1024;
const VALUE: usize = 1000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// (base offset, bytes, the values' first 12 bytes) of every stored batch of partition 0.
fn stored_batches(client: &mut Client, topic: &str) -> Vec<(i64, usize, Vec<String>)> {
    client
        .read_batches(topic, 0)
        .iter()
        .map(|batch| {
            let view = BatchView::new(batch).expect("checked batch");
            let values = view
                .records()
                .unwrap()
                .into_iter()
                .map(|r| String::from_utf8_lossy(&r.value.unwrap()[..12]).into_owned())
                .collect();
            (view.base_offset(), view.len(), values)
        })
        .collect()
}

fn value(index: usize) -> Vec<u8> {
    let mut value = format!("{index:012}").into_bytes();
    value.resize(VALUE, b'v');
    value
}

/// Every record is there once, in send order, at dense offsets.
fn assert_in_order(batches: &[(i64, usize, Vec<String>)], count: usize) {
    let values: Vec<String> = batches.iter().flat_map(|b| b.2.clone()).collect();
    let expected: Vec<String> = (0..count).map(|i| format!("{i:012}")).collect();
    assert_eq!(values.len(), count, "every record stored once");
    assert!(values == expected, "records in send order");
    let mut next = 0;
    for (base, _, values) in batches {
        assert_eq!(*base, next, "dense offsets");
        next += values.len() as i64;
    }
}

#[test]
fn batches_grow_while_the_in_flight_slots_are_taken() {
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path(), &["--shards", "2"]);
    let mut client = broker.client();
    client.create_topic("busy", 1);
    let addr = broker.addr.to_string();
    let count = 30_000;
    runtime().block_on(async move {
        let producer = Producer::builder(addr)
            .batch_bytes(BATCH)
            .batch_grow_bytes(GROW)
            .buffer_bytes(64 << 20)
            .build()
            .await
            .unwrap();
        let mut deliveries = Vec::new();
        for index in 0..count {
            let record = ProducerRecord::new("busy", value(index)).partition(0);
            deliveries.push(producer.enqueue(record).await.unwrap());
        }
        for (index, delivery) in deliveries.into_iter().enumerate() {
            assert_eq!(delivery.await.unwrap().offset, index as i64);
        }
        producer.close().await;
    });
    let batches = stored_batches(&mut client, "busy");
    assert_in_order(&batches, count);
    let largest = batches.iter().map(|b| b.1).max().unwrap();
    assert!(
        largest > BATCH + 2 * VALUE,
        "a backed-up partition sends bigger batches: largest {largest} bytes"
    );
    assert!(
        largest <= GROW + 2 * VALUE,
        "no batch grows past batch_grow_bytes: {largest} bytes"
    );
}

#[test]
fn light_load_keeps_batches_at_batch_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // No fsync: answers come back at once even on a loaded machine, so the in-flight slots
    // are not all taken (with fsync a slow disk made batches grow here, as they should).
    let broker = InProcess::start(dir.path(), &["--shards", "2", "--fsync", "never"]);
    let mut client = broker.client();
    client.create_topic("light", 1);
    let addr = broker.addr.to_string();
    let count = 400;
    runtime().block_on(async move {
        let producer = Producer::builder(addr)
            .batch_bytes(BATCH)
            .batch_grow_bytes(GROW)
            .linger(Duration::from_millis(1))
            .build()
            .await
            .unwrap();
        let mut deliveries = Vec::new();
        for index in 0..count {
            let record = ProducerRecord::new("light", value(index)).partition(0);
            deliveries.push(producer.enqueue(record).await.unwrap());
            if index % 8 == 7 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        for delivery in deliveries {
            delivery.await.unwrap();
        }
        producer.close().await;
    });
    let batches = stored_batches(&mut client, "light");
    assert_in_order(&batches, count);
    let largest = batches.iter().map(|b| b.1).max().unwrap();
    assert!(
        largest <= BATCH + 2 * VALUE,
        "light load: batches stay at batch_bytes, largest {largest}"
    );
}
