//! The client never waits forever and timeouts leave nothing behind.

use keel_client::connection::Connection;
use keel_client::Error;
use keel_protocol::api::{FetchPartition, Request, Response, TopicEntries};
use keel_tests::in_process::InProcess;
use std::time::Duration;

#[test]
fn timed_out_requests_are_forgotten_and_the_connection_goes_on() {
    // Goal: each timed-out request once stayed in the pending map until an answer came,
    // which for a long poll on an idle partition could be never.
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path(), &[]);
    broker.client().create_topic("idle", 1);
    let addr = broker.addr.to_string();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let connection = Connection::connect(&addr).await.unwrap();
            let poll = Request::Fetch {
                max_wait_ms: 2_000,
                min_bytes: 1,
                max_bytes: 1 << 20,
                topics: vec![TopicEntries {
                    topic: "idle".into(),
                    partitions: vec![FetchPartition {
                        partition: 0,
                        fetch_offset: 0,
                        partition_max_bytes: 1 << 20,
                    }],
                }],
            };
            for _ in 0..100 {
                let answer = connection
                    .call_timeout(&poll, Duration::from_millis(5))
                    .await;
                assert!(matches!(answer, Err(Error::Timeout(_))), "{answer:?}");
            }
            assert_eq!(connection.pending(), 0, "timed-out requests are forgotten");
            // Late answers are dropped; the connection still answers in order.
            let answer = connection.call(&Request::Metadata { topics: vec![] }).await;
            assert!(
                matches!(answer, Ok(Response::Metadata { .. })),
                "{answer:?}"
            );
        });
}

#[test]
fn connecting_to_something_that_is_not_a_broker_fails_fast() {
    // A listener that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming() {
            held.push(stream);
        }
    });
    let started = std::time::Instant::now();
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(Connection::connect(&addr));
    let Err(Error::Connect { message, .. }) = outcome else {
        panic!("expected a connect error");
    };
    assert!(message.contains("no Keel broker answered"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(15));
}
