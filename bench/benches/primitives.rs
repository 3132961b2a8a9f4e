//! Benchmarks of the broker's two request primitives, `fan_out` (server/src/shard/fan_out.rs)
//! and `long_poll` (server/src/shard/poll.rs), through a real `keel-server` with two shards
//! (built in release and started by this bench, `fsync=never` so the disk is not measured):
//! one request per iteration, over 1, 8 and 64 partitions spread over both shards.
//! Run: `cargo bench -p keel-bench --bench primitives`; `KEEL_BENCH_SERVER=PATH` measures
//! another `keel-server` build instead (an A/B against an earlier commit).
//!
//! - `fan_out/produce/P`: a Produce (acks=1) of one 100-byte record to each of P
//!   partitions; one mesh message per owner shard.
//! - `long_poll/fetch_ready/P`: a Fetch of the last batch of each of P partitions (each
//!   owner reads from its tail cache and answers at once).
//! - `long_poll/fetch_woken_1`: a Fetch at the log end of one partition (max wait 1 s),
//!   answered when a Produce to that partition, sent next on another connection, lands.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use keel_client::connection::Connection;
use keel_client::{Admin, BatchBuilder, NewRecord};
use keel_protocol::api::{FetchPartition, ProducePartition, Request, Response, TopicEntries};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOPIC: &str = "primitives";
const PARTITIONS: u32 = 64;
const WIDTHS: [u32; 3] = [1, 8, 64];
/// A fetch's budget per partition: one small batch, so the figures are the primitive's
/// cost per partition, not bytes copied.
const PARTITION_BYTES: u32 = 256;

/// `KEEL_BENCH_SERVER` (another build, for an A/B in one run), or the release
/// `keel-server` of this workspace, built first.
fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("KEEL_BENCH_SERVER") {
        return PathBuf::from(path);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--release", "-p", "keel-server"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build -p keel-server");
    assert!(status.success(), "building keel-server failed");
    // target/release/deps/<bench> -> target/release/keel-server
    let exe = std::env::current_exe().expect("bench executable path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("keel-server");
    assert!(path.exists(), "{} missing after build", path.display());
    path
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

/// A broker for the bench, killed when dropped.
struct Server {
    child: Child,
    address: String,
    _data: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let data = tempfile::tempdir().expect("temporary data directory");
        let address = format!("127.0.0.1:{}", free_port());
        let port = |_| format!("127.0.0.1:{}", free_port());
        let child = Command::new(server_binary())
            .arg("--data-dir")
            .arg(data.path())
            .args(["--listen", &address, "--shards", "2", "--fsync", "never"])
            .args(["--metrics-listen", &port(())])
            .args(["--kafka-listen", &port(())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start keel-server");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(Instant::now() < deadline, "keel-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server {
            child,
            address,
            _data: data,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn record() -> Bytes {
    let mut builder = BatchBuilder::new();
    builder.push(NewRecord::value(1_700_000_000_000, vec![7u8; 100]));
    Bytes::from(builder.finish().expect("a one-record batch"))
}

fn produce(partitions: std::ops::Range<u32>, batch: &Bytes) -> Request {
    Request::Produce {
        acks: 1,
        timeout_ms: 10_000,
        topics: vec![TopicEntries {
            topic: TOPIC.into(),
            partitions: partitions
                .map(|partition| ProducePartition {
                    partition,
                    records: batch.clone(),
                })
                .collect(),
        }],
    }
}

fn fetch(partitions: std::ops::Range<u32>, offset: i64, max_wait_ms: u32) -> Request {
    let offsets: Vec<(u32, i64)> = partitions.map(|p| (p, offset)).collect();
    fetch_at(&offsets, max_wait_ms)
}

fn fetch_at(offsets: &[(u32, i64)], max_wait_ms: u32) -> Request {
    Request::Fetch {
        max_wait_ms,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: vec![TopicEntries {
            topic: TOPIC.into(),
            partitions: offsets
                .iter()
                .map(|&(partition, fetch_offset)| FetchPartition {
                    partition,
                    fetch_offset,
                    partition_max_bytes: PARTITION_BYTES,
                })
                .collect(),
        }],
    }
}

/// Each partition's high watermark, from a fetch at offset 0.
async fn high_watermarks(connection: &Connection, partitions: u32) -> Vec<i64> {
    match connection
        .call(&fetch(0..partitions, 0, 0))
        .await
        .expect("fetch")
    {
        Response::Fetch { topics } => topics[0]
            .partitions
            .iter()
            .map(|p| p.high_watermark)
            .collect(),
        other => panic!("unexpected answer {other:?}"),
    }
}

fn primitives(c: &mut Criterion) {
    let server = Server::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let connection = runtime.block_on(async {
        let admin = Admin::connect(&server.address).await.expect("admin");
        admin
            .create_topic(TOPIC, PARTITIONS, &[])
            .await
            .expect("create topic");
        Connection::connect(&server.address).await.expect("connect")
    });
    let batch = record();
    // Every partition holds a batch before any group runs, so that `long_poll` measured
    // alone (`-- long_poll`) reads data, not an empty log's error.
    runtime
        .block_on(connection.call(&produce(0..PARTITIONS, &batch)))
        .expect("produce");
    let mut group = c.benchmark_group("fan_out");
    for width in WIDTHS {
        let request = produce(0..width, &batch);
        group.bench_with_input(BenchmarkId::new("produce", width), &request, |b, r| {
            b.iter(|| runtime.block_on(connection.call(r)).expect("produce"));
        });
    }
    group.finish();
    let mut group = c.benchmark_group("long_poll");
    // The last batch of each partition (in the tail cache, as a consumer that keeps up
    // reads it): the primitive's cost, not the disk's.
    let ends = runtime.block_on(high_watermarks(&connection, PARTITIONS));
    for width in WIDTHS {
        let last: Vec<(u32, i64)> = (0..width).map(|p| (p, ends[p as usize] - 1)).collect();
        let request = fetch_at(&last, 500);
        group.bench_with_input(BenchmarkId::new("fetch_ready", width), &request, |b, r| {
            b.iter(|| runtime.block_on(connection.call(r)).expect("fetch"));
        });
    }
    // The produce that wakes the fetch goes on its own connection (a connection's requests
    // are answered in order).
    let (producer, mut end) = runtime.block_on(async {
        let producer = Connection::connect(&server.address).await.expect("connect");
        (producer, high_watermarks(&connection, 1).await[0])
    });
    let one = produce(0..1, &batch);
    group.bench_function("fetch_woken_1", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let waiting = connection
                    .begin(&fetch(0..1, end, 1_000), Duration::from_secs(5))
                    .await
                    .expect("send fetch");
                producer.call(&one).await.expect("produce");
                match waiting.await.expect("fetch") {
                    Response::Fetch { topics } => {
                        let woken = &topics[0].partitions[0];
                        assert!(!woken.records.is_empty(), "woken with nothing");
                    }
                    other => panic!("unexpected answer {other:?}"),
                }
            });
            end += 1;
        });
    });
    group.finish();
    drop(server);
}

criterion_group!(benches, primitives);
criterion_main!(benches);
