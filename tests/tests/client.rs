//! keel-client against a real broker: every send style, keyed partitioning, compression,
//! back-pressure, errors.

use keel_client::{
    partition_for_key, Acks, Compression, Error, Producer, ProducerRecord, WhenFull,
};
use keel_protocol::api::{Request, Response};
use keel_tests::broker::server_binary;
use keel_tests::in_process::InProcess;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn every_send_style_delivers_in_order() {
    // Goal: sync, async, callback and fire-and-forget sends all land, with dense offsets in
    // send order.
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let mut admin = broker.client();
    admin.create_topic("styles", 1);
    let addr = broker.addr.to_string();
    runtime().block_on(async move {
        let producer = Producer::builder(addr)
            .linger(Duration::from_millis(2))
            .build()
            .await
            .unwrap();
        let first = producer
            .send(ProducerRecord::new("styles", "sync-0"))
            .await
            .unwrap();
        assert_eq!((first.partition, first.offset), (0, 0));
        let mut deliveries = Vec::new();
        for i in 0..50 {
            deliveries.push(
                producer
                    .enqueue(ProducerRecord::new("styles", format!("async-{i}")))
                    .await
                    .unwrap(),
            );
        }
        let mut offsets = Vec::new();
        for delivery in deliveries {
            offsets.push(delivery.await.unwrap().offset);
        }
        assert_eq!(offsets, (1..=50).collect::<Vec<i64>>());
        let called = Arc::new(Mutex::new(Vec::new()));
        for i in 0..10 {
            let called = called.clone();
            producer
                .send_with_callback(
                    ProducerRecord::new("styles", format!("callback-{i}")),
                    move |result| {
                        called.lock().unwrap().push(result.unwrap().offset);
                    },
                )
                .await
                .unwrap();
        }
        for i in 0..10 {
            producer
                .send_and_forget(ProducerRecord::new("styles", format!("forget-{i}")))
                .await
                .unwrap();
        }
        producer.flush().await;
        assert_eq!(*called.lock().unwrap(), (51..=60).collect::<Vec<i64>>());
        producer.close().await;
        assert!(matches!(
            producer.send(ProducerRecord::new("styles", "late")).await,
            Err(Error::Closed)
        ));
    });
    let stored = admin.read_partition("styles", 0);
    assert_eq!(stored.len(), 71);
    assert_eq!(stored[0].2, "sync-0");
    assert_eq!(stored[70].2, "forget-9");
    assert!(stored.iter().enumerate().all(|(i, r)| r.0 == i as i64));
}

#[test]
fn keyed_records_land_where_kafka_would_put_them() {
    // Goal: the partition of a key is murmur2(key) % partitions, checked on the broker.
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let mut admin = broker.client();
    admin.create_topic("keyed", 6);
    let addr = broker.addr.to_string();
    let keys: Vec<String> = (0..60).map(|i| format!("customer-{i}")).collect();
    let sent = keys.clone();
    runtime().block_on(async move {
        let producer = Producer::builder(addr)
            .acks(Acks::Leader)
            .build()
            .await
            .unwrap();
        for key in &sent {
            let stored = producer
                .send(ProducerRecord::new("keyed", format!("value of {key}")).key(key.clone()))
                .await
                .unwrap();
            assert_eq!(stored.partition, partition_for_key(key.as_bytes(), 6));
        }
        producer.close().await;
    });
    // acks=1 answers before the fsync that makes records visible under `fsync = always`;
    // they become readable a moment later.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut total = 0;
    while total < keys.len() && Instant::now() < deadline {
        total = (0..6).map(|p| admin.read_partition("keyed", p).len()).sum();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(total, keys.len());
    for partition in 0..6 {
        for (_, key, value) in admin.read_partition("keyed", partition) {
            let key = key.unwrap();
            assert_eq!(partition_for_key(key.as_bytes(), 6), partition);
            assert_eq!(value, format!("value of {key}"));
        }
    }
}

#[test]
fn compressed_batches_round_trip() {
    // Goal: lz4 and zstd batches are stored as sent and decode to the same records.
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let mut admin = broker.client();
    admin.create_topic("packed", 1);
    let addr = broker.addr.to_string();
    runtime().block_on(async move {
        for codec in [Compression::Lz4, Compression::Zstd] {
            let producer = Producer::builder(addr.clone())
                .compression(codec)
                .build()
                .await
                .unwrap();
            let mut deliveries = Vec::new();
            for i in 0..100 {
                deliveries.push(
                    producer
                        .enqueue(ProducerRecord::new(
                            "packed",
                            format!("{}-{i}-{}", codec.name(), "x".repeat(200)),
                        ))
                        .await
                        .unwrap(),
                );
            }
            for delivery in deliveries {
                delivery.await.unwrap();
            }
            producer.close().await;
        }
    });
    let stored = admin.read_partition("packed", 0);
    assert_eq!(stored.len(), 200);
    assert!(stored[0].2.starts_with("lz4-0-"));
    assert!(stored[199].2.starts_with("zstd-99-"));
}

#[test]
fn full_buffer_waits_or_fails_as_configured() {
    // Goal: bounded memory: with `Error` a full buffer is refused, with `Wait` the send
    // waits until deliveries free space.
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let mut admin = broker.client();
    admin.create_topic("tight", 1);
    let addr = broker.addr.to_string();
    runtime().block_on(async move {
        let strict = Producer::builder(addr.clone())
            .buffer_bytes(8 * 1024)
            .linger(Duration::from_millis(300))
            .batch_bytes(1 << 20)
            .when_full(WhenFull::Error)
            .build()
            .await
            .unwrap();
        let mut refused = false;
        for _ in 0..20 {
            match strict
                .send_and_forget(ProducerRecord::new("tight", vec![b'a'; 1000]))
                .await
            {
                Ok(()) => {}
                Err(Error::BufferFull(_)) => refused = true,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(
            refused,
            "an 8 KiB buffer cannot take 20 KB before the linger expires"
        );
        strict.close().await;

        let patient = Producer::builder(addr)
            .buffer_bytes(8 * 1024)
            .linger(Duration::from_millis(100))
            .batch_bytes(1 << 20)
            .build()
            .await
            .unwrap();
        let started = Instant::now();
        for _ in 0..20 {
            patient
                .send_and_forget(ProducerRecord::new("tight", vec![b'b'; 1000]))
                .await
                .unwrap();
        }
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "sends waited for space ({:?})",
            started.elapsed()
        );
        patient.close().await;
    });
    let stored = admin.read_partition("tight", 0);
    assert_eq!(
        stored.iter().filter(|r| r.2.starts_with('b')).count(),
        20,
        "every waiting send was delivered"
    );
}

#[test]
fn unknown_topics_and_unreachable_brokers_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let addr = broker.addr.to_string();
    runtime().block_on(async move {
        let producer = Producer::builder(addr).build().await.unwrap();
        match producer.send(ProducerRecord::new("nope", "x")).await {
            Err(Error::UnknownTopic(topic)) => assert_eq!(topic, "nope"),
            other => panic!("{other:?}"),
        }
        let unreachable = Producer::builder("127.0.0.1:1").build().await;
        let Err(error) = unreachable else {
            panic!("connected to port 1?")
        };
        assert!(
            error.to_string().contains("not reachable at 127.0.0.1:1"),
            "{error}"
        );
    });
}

fn start(dir: &std::path::Path) -> InProcess {
    InProcess::start(dir, &["--shards", "2"])
}

#[test]
fn consumer_reads_seeks_and_streams() {
    // Goal: assign + poll reads everything in order; seeks by offset and time move the
    // position; the stream yields the same records; lag is what is left.
    use keel_client::{Admin, Consumer, OffsetReset};
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let addr = broker.addr.to_string();
    runtime().block_on(async move {
        let admin = Admin::connect(&addr).await.unwrap();
        admin
            .create_topic("reads", 2, &[("retention.ms", "3600000")])
            .await
            .unwrap();
        assert!(admin
            .list_topics()
            .await
            .unwrap()
            .contains(&"reads".to_string()));
        let producer = Producer::builder(addr.clone()).build().await.unwrap();
        for i in 0..200i64 {
            producer
                .send_and_forget(
                    ProducerRecord::new("reads", format!("v{i}"))
                        .partition((i % 2) as u32)
                        .timestamp(1_000 + i),
                )
                .await
                .unwrap();
        }
        producer.close().await;
        let description = admin.describe_topic("reads").await.unwrap();
        assert_eq!(description.partitions.len(), 2);
        assert!(description
            .partitions
            .iter()
            .all(|p| p.high_watermark == 100));
        assert_eq!(
            description.configs.get("retention.ms").map(String::as_str),
            Some("3600000")
        );

        let mut consumer = Consumer::builder(addr.clone())
            .offset_reset(OffsetReset::Earliest)
            .max_wait(Duration::from_millis(100))
            .build()
            .await
            .unwrap();
        consumer.assign([("reads".to_string(), 0), ("reads".to_string(), 1)]);
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.len() < 200 {
            assert!(Instant::now() < deadline, "read {} of 200", seen.len());
            for record in consumer.poll(Duration::from_millis(100)).await.unwrap() {
                seen.push((
                    record.partition,
                    record.offset,
                    String::from_utf8(record.value.unwrap().to_vec()).unwrap(),
                ));
            }
        }
        for partition in 0..2u32 {
            let offsets: Vec<i64> = seen
                .iter()
                .filter(|r| r.0 == partition)
                .map(|r| r.1)
                .collect();
            assert_eq!(
                offsets,
                (0..100).collect::<Vec<_>>(),
                "partition {partition} in order, once"
            );
        }
        assert_eq!(consumer.lag(&("reads".to_string(), 0)), Some(0));
        let tp = ("reads".to_string(), 1);
        consumer.seek(&tp, 90);
        consumer.assign([tp.clone()]);
        let records = consumer.poll(Duration::from_millis(200)).await.unwrap();
        assert_eq!(records.first().map(|r| r.offset), Some(90));
        // v{i} with odd i went to partition 1 at offset i / 2 with timestamp 1000 + i.
        consumer.seek_to_timestamp(&tp, 1_000 + 41).await.unwrap();
        assert_eq!(consumer.position(&tp), Some(20));
        consumer.seek_to_beginning(&tp).await.unwrap();
        assert_eq!(consumer.position(&tp), Some(0));

        let mut stream = consumer.into_stream();
        let mut streamed = Vec::new();
        while streamed.len() < 100 {
            let record =
                std::future::poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_next_item(cx))
                    .await
                    .unwrap()
                    .unwrap();
            streamed.push(record.offset);
        }
        assert_eq!(streamed, (0..100).collect::<Vec<_>>());
        admin
            .alter_configs("reads", &[("retention.ms", "60000")])
            .await
            .unwrap();
        admin.delete_topic("reads").await.unwrap();
        assert!(matches!(
            admin.describe_topic("reads").await,
            Err(keel_client::Error::UnknownTopic(_))
        ));
    });
}

trait PollNextItem {
    fn poll_next_item(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<keel_client::Result<keel_client::ConsumerRecord>>>;
}

impl PollNextItem for keel_client::RecordStream {
    fn poll_next_item(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<keel_client::Result<keel_client::ConsumerRecord>>> {
        futures_core::Stream::poll_next(self, cx)
    }
}

/// A TCP proxy that forwards everything, except that it swallows the response to the first
/// Produce request and cuts that connection: the producer sees a lost response and retries.
fn lossy_proxy(upstream: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dropped = Arc::new(AtomicBool::new(false));
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let server = std::net::TcpStream::connect(upstream).unwrap();
            let produce_seen = Arc::new(AtomicBool::new(false));
            let (mut from_client, mut to_server) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let seen = produce_seen.clone();
            std::thread::spawn(move || {
                let mut buffer = bytes::BytesMut::new();
                let mut chunk = [0u8; 65536];
                loop {
                    let read = match from_client.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(read) => read,
                    };
                    buffer.extend_from_slice(&chunk[..read]);
                    while let Ok(Some(frame)) =
                        keel_protocol::frame::check_request(&buffer, 1 << 30)
                    {
                        if frame.header.api_key.get() == keel_protocol::api::ApiKey::Produce as u16
                        {
                            seen.store(true, Ordering::SeqCst);
                        }
                        let _ = buffer.split_to(frame.frame_len);
                    }
                    if to_server.write_all(&chunk[..read]).is_err() {
                        return;
                    }
                }
            });
            let (mut from_server, mut to_client) = (server, client);
            let dropped = dropped.clone();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 65536];
                loop {
                    let read = match from_server.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(read) => read,
                    };
                    if produce_seen.load(Ordering::SeqCst) && !dropped.swap(true, Ordering::SeqCst)
                    {
                        let _ = to_client.shutdown(std::net::Shutdown::Both);
                        let _ = from_server.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    if to_client.write_all(&chunk[..read]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn a_lost_produce_response_is_retried_without_a_duplicate() {
    // Goal: idempotence: the retry of a batch whose response was lost is recognised by the
    // broker and stored once; without idempotence the same loss duplicates the record.
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let mut admin = broker.client();
    admin.create_topic("once", 1);
    admin.create_topic("twice", 1);
    for (topic, idempotent) in [("once", true), ("twice", false)] {
        let proxy = lossy_proxy(broker.addr);
        runtime().block_on(async move {
            let producer = Producer::builder(proxy.to_string())
                .idempotence(idempotent)
                .retries(5, Duration::from_millis(50))
                .build()
                .await
                .unwrap();
            let first = producer
                .send(ProducerRecord::new(topic, "first"))
                .await
                .unwrap();
            // Idempotent: the retry reports the original offset. Without: the retry is
            // stored again, after the first copy.
            assert_eq!(first.offset, if idempotent { 0 } else { 1 }, "{topic}");
            let second = producer
                .send(ProducerRecord::new(topic, "second"))
                .await
                .unwrap();
            producer.close().await;
            if idempotent {
                assert_eq!(second.offset, 1);
            }
        });
        let stored: Vec<String> = admin
            .read_partition(topic, 0)
            .into_iter()
            .map(|r| r.2)
            .collect();
        if idempotent {
            assert_eq!(stored, vec!["first", "second"], "exactly once");
        } else {
            assert_eq!(
                stored,
                vec!["first", "first", "second"],
                "the control shows the loss duplicates without idempotence"
            );
        }
    }
}

#[test]
fn the_readme_examples_run_against_a_broker() {
    // Goal: client/examples (what README shows) work as written.
    keel_tests::broker::build_workspace();
    let examples = server_binary().parent().unwrap().join("examples");
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let run = |name: &str| {
        std::process::Command::new(examples.join(name))
            .env("KEEL_BOOTSTRAP", broker.addr.to_string())
            .env("KEEL_IDLE_POLLS", "4")
            .output()
            .unwrap()
    };
    let produced = run("producer");
    let stdout = String::from_utf8_lossy(&produced.stdout);
    assert!(
        produced.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&produced.stderr)
    );
    assert!(stdout.contains("102 orders produced"), "{stdout}");
    let consumed = run("consumer_group");
    let stdout = String::from_utf8_lossy(&consumed.stdout);
    assert!(
        consumed.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&consumed.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.contains(": order #")).count(),
        102,
        "{stdout}"
    );
    assert!(stdout.contains("now reading"), "{stdout}");
}

#[test]
fn a_fast_producer_to_one_partition_keeps_batches_small_and_loses_nothing() {
    // Goal: while a partition's batch is in flight, new records fill further batches of
    // `batch_bytes` instead of one batch that outgrows the broker's limit.
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let mut admin = broker.client();
    admin.create_topic("firehose", 1);
    let addr = broker.addr.to_string();
    runtime().block_on(async move {
        let producer = Producer::builder(addr)
            .batch_bytes(16 * 1024)
            .buffer_bytes(64 << 20)
            .build()
            .await
            .unwrap();
        let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
        for i in 0..20_000u32 {
            let failures = failures.clone();
            producer
                .send_with_callback(
                    ProducerRecord::new("firehose", vec![(i % 251) as u8; 1024]),
                    move |result| {
                        if let Err(e) = result {
                            eprintln!("{e}");
                            failures.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    },
                )
                .await
                .unwrap();
        }
        producer.close().await;
        assert_eq!(failures.load(std::sync::atomic::Ordering::SeqCst), 0);
    });
    let Response::Metadata { topics, .. } = admin.call(Request::Metadata {
        topics: vec!["firehose".into()],
    }) else {
        panic!()
    };
    assert_eq!(topics[0].partitions[0].log_end_offset, 20_000);
}
