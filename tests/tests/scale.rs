//! Scale and memory: 10,000 partitions start, serve, restart; idle memory with 1,000.
//! Figures are printed (run with `--nocapture`) and recorded in docs/benchmarks.md.

use bytes::Bytes;
use keel_protocol::api::{
    ErrorCode, FetchPartition, NewTopic, ProducePartition, Request, Response, TopicEntries,
};
use keel_protocol::batch::{BatchBuilder, NewRecord};
use keel_tests::broker::{server_binary, Broker, Client};
use std::time::Instant;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn create_topics(client: &mut Client, topics: usize, partitions: u32) {
    let request = Request::CreateTopics {
        topics: (0..topics)
            .map(|t| NewTopic {
                name: format!("scale-{t}"),
                partitions,
                replication_factor: 1,
                configs: vec![],
            })
            .collect(),
    };
    let Response::CreateTopics { topics } = client.call(request) else {
        panic!()
    };
    assert!(
        topics.iter().all(|t| t.error == ErrorCode::None),
        "{:?}",
        topics.iter().find(|t| t.error != ErrorCode::None)
    );
}

#[test]
fn ten_thousand_partitions_start_serve_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(
        &server_binary(),
        dir.path(),
        &["--shards", "2", "--fsync", "never"],
    );
    let mut client = broker.client();
    // Every partition keeps a descriptor open: stay within this host's hard limit.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let topics = (100usize)
        .min((limit.rlim_max as usize).saturating_sub(2_000) / 100)
        .max(10);
    let partitions = 100u32;
    if topics < 100 {
        eprintln!(
            "open-files hard limit {} allows {} partitions, not 10,000",
            limit.rlim_max,
            topics * 100
        );
    }
    let started = Instant::now();
    create_topics(&mut client, topics, partitions);
    eprintln!(
        "created {} partitions in {:?}",
        topics * partitions as usize,
        started.elapsed()
    );

    // One produce request per topic carries a batch for each of its partitions.
    let mut builder = BatchBuilder::new();
    builder.push(NewRecord::value(1, "hello"));
    let records = Bytes::from(builder.build().unwrap());
    let started = Instant::now();
    for t in 0..topics {
        let request = Request::Produce {
            acks: 1,
            timeout_ms: 30_000,
            topics: vec![TopicEntries {
                topic: format!("scale-{t}"),
                partitions: (0..partitions)
                    .map(|partition| ProducePartition {
                        partition,
                        records: records.clone(),
                    })
                    .collect(),
            }],
        };
        let Response::Produce { topics } = client.call(request) else {
            panic!()
        };
        assert!(topics[0]
            .partitions
            .iter()
            .all(|p| p.error == ErrorCode::None && p.base_offset == 0));
    }
    eprintln!("produced to every partition in {:?}", started.elapsed());
    let fetch_all = |client: &mut Client| {
        for t in 0..topics {
            let request = Request::Fetch {
                max_wait_ms: 0,
                min_bytes: 1,
                max_bytes: 64 << 20,
                topics: vec![TopicEntries {
                    topic: format!("scale-{t}"),
                    partitions: (0..partitions)
                        .map(|partition| FetchPartition {
                            partition,
                            fetch_offset: 0,
                            partition_max_bytes: 4096,
                        })
                        .collect(),
                }],
            };
            let Response::Fetch { topics } = client.call(request) else {
                panic!()
            };
            for p in &topics[0].partitions {
                assert!(
                    p.error == ErrorCode::None && p.records.len() == records.len(),
                    "topic {t} partition {}: {:?}, {} bytes, hw {}",
                    p.partition,
                    p.error,
                    p.records.len(),
                    p.high_watermark
                );
            }
        }
    };
    let started = Instant::now();
    fetch_all(&mut client);
    eprintln!("fetched from every partition in {:?}", started.elapsed());
    eprintln!(
        "resident memory with 10,000 partitions: {} MiB",
        rss_kib(broker.pid()) / 1024
    );
    drop(client);

    assert!(broker.stop().success());
    let started = Instant::now();
    broker.restart();
    eprintln!(
        "restart with 10,000 partitions ready in {:?}",
        started.elapsed()
    );
    let mut client = broker.client();
    // While other partitions are served, a small request answers promptly.
    let started = Instant::now();
    let Response::ApiVersions { .. } = client.call(Request::ApiVersions) else {
        panic!()
    };
    assert!(
        started.elapsed().as_secs() < 2,
        "shards responsive after restart"
    );
    fetch_all(&mut client);
}

#[test]
fn idle_memory_with_a_thousand_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&server_binary(), dir.path(), &["--shards", "2"]);
    let mut client = broker.client();
    create_topics(&mut client, 10, 100);
    let mut builder = BatchBuilder::new();
    builder.push(NewRecord::value(1, vec![b'x'; 1024]));
    let records = Bytes::from(builder.build().unwrap());
    for t in 0..10 {
        let request = Request::Produce {
            acks: -1,
            timeout_ms: 30_000,
            topics: vec![TopicEntries {
                topic: format!("scale-{t}"),
                partitions: (0..100)
                    .map(|partition| ProducePartition {
                        partition,
                        records: records.clone(),
                    })
                    .collect(),
            }],
        };
        client.call(request);
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    let rss = rss_kib(broker.pid()) / 1024;
    eprintln!("resident memory at idle with 1,000 partitions: {rss} MiB");
    assert!(rss < 200, "idle RSS {rss} MiB must stay under 200 MiB");
}
