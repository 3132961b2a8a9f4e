//! The broker-wide request budget: many connections pipelining large produce requests are
//! read only as fast as the budget frees, so the broker's memory stays bounded (backpressure
//! instead of allocation), and every request is still answered correctly.

use bytes::BytesMut;
use keel_protocol::api::{ErrorCode, ProducePartition, Request, Response, TopicEntries};
use keel_protocol::batch::{BatchBuilder, NewRecord};
use keel_protocol::frame::write_request;
use keel_tests::broker::{metric, server_binary, Broker};

const CONNECTIONS: usize = 12;
const REQUESTS: usize = 16;

fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Runs the burst against a broker with `requests_bytes_max`; returns (peak RSS, waits).
fn burst(requests_bytes_max: usize) -> (u64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keel.toml");
    std::fs::write(
        &config,
        format!(
            "frame_bytes_max = 2200000\nbatch_bytes_max = 2100000\nrequests_bytes_max = {requests_bytes_max}\n"
        ),
    )
    .unwrap();
    let broker = Broker::start(
        &server_binary(),
        &dir.path().join("data"),
        &[
            "--shards",
            "1",
            "--fsync",
            "never",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let mut admin = broker.client();
    admin.create_topic("b", 1);
    let mut builder = BatchBuilder::new();
    for n in 0..2 {
        builder.push(NewRecord::value(n, vec![b'x'; 1_000_000]));
    }
    let batch = builder.build().unwrap();
    let request = Request::Produce {
        acks: 1,
        timeout_ms: 30_000,
        topics: vec![TopicEntries {
            topic: "b".into(),
            partitions: vec![ProducePartition {
                partition: 0,
                records: batch.into(),
            }],
        }],
    };
    let mut body = BytesMut::new();
    request.encode(&mut body).unwrap();
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (mut client, body) = (broker.client(), body.clone());
            std::thread::spawn(move || {
                // Everything is written before any answer is read.
                for correlation in 0..REQUESTS {
                    let mut frame = BytesMut::new();
                    write_request(&mut frame, 10, 0, correlation as u32 + 1, &body);
                    client.send_raw(&frame).unwrap();
                }
                (0..REQUESTS)
                    .map(
                        |_| match client.receive(keel_protocol::api::ApiKey::Produce).1 {
                            Response::Produce { topics } => topics[0].partitions[0].error,
                            other => panic!("{other:?}"),
                        },
                    )
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for thread in threads {
        let errors = thread.join().unwrap();
        assert!(errors.iter().all(|e| *e == ErrorCode::None), "{errors:?}");
    }
    let records = admin.read_partition("b", 0).len();
    assert_eq!(records, CONNECTIONS * REQUESTS * 2, "every request stored");
    let waits = metric(&broker.metrics(), "keel_request_budget_waits_total", "");
    (peak_rss_bytes(broker.pid()), waits)
}

#[test]
fn many_pipelined_large_requests_are_read_as_the_budget_allows() {
    // About 400 MB of requests arrive at once; with an 8 MiB budget the broker reads a few
    // at a time.
    // Measured 2026-12-01: 110 MiB peak RSS with the budget, 655 MiB with it set to 4 GB.
    let (peak, waits) = burst(8 << 20);
    eprintln!("budget 8 MiB: peak RSS {} MiB, {waits} waits", peak >> 20);
    assert!(waits > 0.0, "the budget held connections back");
    assert!(peak < 200 << 20, "peak RSS {} MiB", peak >> 20);
}

#[test]
fn the_tail_caches_of_a_shard_stay_within_its_budget() {
    // Goal: each partition kept up to `tail_cache_bytes` (256 KiB) of recent batches in
    // memory with no cap over all of them (100,000 partitions could hold 25 GB). Now a
    // shard's logs share `tail_cache_budget_bytes`: two partitions holding 256 KiB each
    // are trimmed to their share (16 KiB) within a second of 62 more being created, and
    // what left the cache is read back from the files.
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::with_config(
        dir.path(),
        "tail_cache_budget_bytes = 1048576\n",
        &["--shards", "1"],
    );
    let mut client = broker.client();
    client.create_topic("hot", 2);
    for partition in 0..2 {
        for n in 0..40 {
            let mut builder = BatchBuilder::new();
            builder.push(NewRecord::value(n, vec![b'h'; 10_000]));
            let records = builder.build().unwrap().into();
            assert_eq!(
                client.produce("hot", partition, -1, records),
                ErrorCode::None
            );
        }
    }
    let cached =
        |broker: &Broker| metric(&broker.metrics(), "keel_tail_cache_bytes", "shard=\"0\"");
    let wait_for = |what: &str, ok: &dyn Fn(f64) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let bytes = cached(&broker);
            if ok(bytes) {
                return bytes;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {bytes}");
            // Poll interval: the gauge is refreshed each second.
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let before = wait_for("both caches full", &|b| b > 400_000.0);
    assert!(before <= 2.0 * 262_144.0, "{before}");
    client.create_topic("cold", 62);
    let after = wait_for("trimmed to 16 KiB a partition", &|b| b <= 2.0 * 16_384.0);
    eprintln!("tail caches: {before} bytes, then {after} with 64 partitions");
    for partition in 0..2 {
        assert_eq!(client.read_partition("hot", partition).len(), 40);
    }
}

/// Sends `connections` × 4 pipelined fetches, each naming 10,000 partition entries of an
/// empty partition and waiting 300 ms, to a broker with `partition_jobs_max`; returns its
/// peak RSS growth and how long the burst took.
fn wide_fetches(partition_jobs_max: usize, connections: usize) -> (u64, std::time::Duration) {
    use keel_protocol::api::FetchPartition;
    let dir = tempfile::tempdir().unwrap();
    let settings = format!("partition_jobs_max = {partition_jobs_max}\n");
    let broker = Broker::with_config(dir.path(), &settings, &["--shards", "2"]);
    let mut admin = broker.client();
    admin.create_topic("wide", 2);
    let idle = peak_rss_bytes(broker.pid());
    let request = Request::Fetch {
        max_wait_ms: 300,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: vec![TopicEntries {
            topic: "wide".into(),
            partitions: (0..10_000u32)
                .map(|i| FetchPartition {
                    partition: i % 2,
                    fetch_offset: 0,
                    partition_max_bytes: 1 << 10,
                })
                .collect(),
        }],
    };
    let mut body = BytesMut::new();
    request.encode(&mut body).unwrap();
    let started = std::time::Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let (mut client, body) = (broker.client(), body.clone());
            std::thread::spawn(move || {
                for correlation in 0..4u32 {
                    let mut frame = BytesMut::new();
                    write_request(&mut frame, 11, 0, correlation + 1, &body);
                    client.send_raw(&frame).unwrap();
                }
                for _ in 0..4 {
                    let Response::Fetch { topics, .. } =
                        client.receive(keel_protocol::api::ApiKey::Fetch).1
                    else {
                        panic!("fetch response expected")
                    };
                    let entries = &topics[0].partitions;
                    assert_eq!(entries.len(), 10_000);
                    assert!(entries.iter().all(|p| p.error == ErrorCode::None));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let took = started.elapsed();
    (peak_rss_bytes(broker.pid()) - idle, took)
}

#[test]
fn partition_jobs_in_flight_bound_the_memory_of_wide_requests() {
    // Goal: each partition entry of a request is a job, a task and (while it long-polls)
    // a waiter on its owner shard, so many wide requests at once grew memory without
    // bound. `partition_jobs_max` makes requests wait for room instead, before their jobs
    // are made: 1.2 million entries in flight at once cost a fraction of what they cost
    // unbounded (CI once saw +157 MiB against +304 when jobs were made before the wait).
    let (bounded, took) = wide_fetches(100_000, 30);
    let (unbounded, _) = wide_fetches(100_000_000, 30);
    eprintln!(
        "1.2 M long-polled entries: peak RSS +{} MiB with 100,000 jobs in flight at most ({took:?}), +{} MiB unbounded",
        bounded >> 20,
        unbounded >> 20
    );
    assert!(bounded < 192 << 20, "peak RSS grew {} MiB", bounded >> 20);
    assert!(
        bounded * 2 < unbounded,
        "the bound is what holds memory down"
    );
}
