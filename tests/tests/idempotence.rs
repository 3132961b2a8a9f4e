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
