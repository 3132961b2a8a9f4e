//! Metrics tell the truth: every figure below starts at zero on a fresh broker and is moved
//! by this test alone, so the expected values are exact.

use keel_protocol::api::{
    ErrorCode, FetchPartition, ProducePartition, Request, Response, TopicEntries,
};
use keel_protocol::batch::{BatchBuilder, NewRecord};
use keel_tests::broker::metric;
use keel_tests::in_process::InProcess;
use std::time::{Duration, Instant};

#[test]
fn counters_gauges_and_durations_match_what_the_test_did() {
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path(), &["--shards", "2"]);
    let mut client = broker.client();
    client.create_topic("m", 2);
    let mut produced = 0u64;
    for n in 0..10 {
        let mut builder = BatchBuilder::new();
        builder.push(NewRecord::value(n, vec![b'v'; 100]));
        let records = builder.build().unwrap();
        produced += records.len() as u64;
        let Response::Produce { topics } = client.call(Request::Produce {
            acks: -1,
            timeout_ms: 5_000,
            topics: vec![TopicEntries {
                topic: "m".into(),
                partitions: vec![ProducePartition {
                    partition: 0,
                    records: records.into(),
                }],
            }],
        }) else {
            panic!()
        };
        assert_eq!(topics[0].partitions[0].error, ErrorCode::None);
    }
    let fetched: u64 = client.read_partition("m", 0).len().try_into().unwrap();
    assert_eq!(fetched, 10);
    // A long poll on the empty partition waits 300 ms: counted as waiting, not handling.
    let started = Instant::now();
    let Response::Fetch { .. } = client.call(Request::Fetch {
        max_wait_ms: 300,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: vec![TopicEntries {
            topic: "m".into(),
            partitions: vec![FetchPartition {
                partition: 1,
                fetch_offset: 0,
                partition_max_bytes: 1 << 20,
            }],
        }],
    }) else {
        panic!()
    };
    assert!(started.elapsed() >= Duration::from_millis(290));
    // A committed offset for a group with no members: 4 of the 10 records are behind it.
    let Response::OffsetCommit { topics } = client.call(Request::OffsetCommit {
        group: "watchers".into(),
        generation: -1,
        member_id: String::new(),
        topics: vec![TopicEntries {
            topic: "m".into(),
            partitions: vec![(0, 6)],
        }],
    }) else {
        panic!()
    };
    assert_eq!(topics[0].partitions[0].1, ErrorCode::None);
    // Gauges are refreshed every second: wait (with a deadline) until they show the commit.
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let page = broker.metrics();
        let lag = "keel_group_lag{group=\"watchers\",topic=\"m\",partition=\"0\"}";
        let hw = "keel_high_watermark{topic=\"m\",partition=\"0\"} 10";
        if page.contains(lag) && page.contains(hw) {
            break page;
        }
        assert!(Instant::now() < deadline, "gauges never refreshed:\n{page}");
        // Poll interval, not a wait for the condition.
        std::thread::sleep(Duration::from_millis(50));
    };
    let partition =
        |name: &str, p: u32| metric(&page, name, &format!("topic=\"m\",partition=\"{p}\""));
    assert_eq!(
        partition("keel_partition_bytes_in_total", 0),
        produced as f64
    );
    assert!(partition("keel_partition_bytes_out_total", 0) >= produced as f64);
    assert_eq!(partition("keel_partition_bytes_in_total", 1), 0.0);
    assert_eq!(partition("keel_log_start_offset", 0), 0.0);
    assert_eq!(partition("keel_log_end_offset", 0), 10.0);
    assert_eq!(partition("keel_high_watermark", 0), 10.0);
    let group = "group=\"watchers\",topic=\"m\",partition=\"0\"";
    assert_eq!(metric(&page, "keel_group_committed_offset", group), 6.0);
    assert_eq!(metric(&page, "keel_group_lag", group), 4.0);
    // fsync=always: ten acks=all produces and the commit each needed an fdatasync.
    assert!(metric(&page, "keel_fsyncs_total", "") >= 11.0, "{page}");
    assert!(metric(&page, "keel_fsync_seconds_total", "") > 0.0);
    assert_eq!(
        metric(&page, "keel_fetch_wait_seconds_count", ""),
        1.0,
        "{page}"
    );
    assert!(metric(&page, "keel_fetch_wait_seconds_sum", "") >= 0.29);
    assert_eq!(
        metric(&page, "keel_requests_total", "api=\"produce\""),
        10.0
    );
    assert_eq!(
        metric(
            &page,
            "keel_build_info",
            &format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))
        ),
        1.0
    );
    assert!(metric(&page, "process_resident_memory_bytes", "") > 1e6);
    assert!(metric(&page, "process_open_fds", "") > 5.0);
    assert!(metric(&page, "process_cpu_seconds_total", "") > 0.0);
    assert!(page.trim_end().ends_with("# EOF"));
    // No counter without `_total`, no microseconds.
    for line in page.lines().filter(|l| l.starts_with("# TYPE ")) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(!fields[2].contains("microseconds"), "{line}");
    }
}
