//! Seed corpora for the fuzz targets, from real traffic: a recording TCP proxy sits between
//! keel-client and a real broker while a workload runs (admin, keyed produce with every
//! codec, consumers, a group with commits), then the recorded streams are cut into frames,
//! request and response bodies and record batches, and the broker's segment and index
//! files are copied. Run by `fuzz/run` (docs/fuzzing.md):
//! `KEEL_FUZZ_SEEDS_DIR=fuzz/corpus cargo test -p keel-tests --test e2e fuzz_seeds::`; without
//! the variable it runs as a plain test into a temporary directory.

use keel_client::{Admin, Compression, Consumer, OffsetReset, Producer, ProducerRecord};
use keel_protocol::api::ApiKey;
use keel_protocol::batch::BatchView;
use keel_protocol::frame::{check_request, check_response};
use keel_tests::in_process::InProcess;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Streams = Arc<Mutex<Vec<(Vec<u8>, Vec<u8>)>>>;

/// Copy threads still running (each ends when its side of the connection closes).
static COPYING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A proxy to `upstream` that records, per connection, what each side sent.
fn recording_proxy(upstream: SocketAddr) -> (SocketAddr, Streams) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let streams: Streams = Arc::default();
    let recorded = streams.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(upstream) else {
                return;
            };
            let slot = {
                let mut streams = recorded.lock().unwrap();
                streams.push((Vec::new(), Vec::new()));
                streams.len() - 1
            };
            for upward in [true, false] {
                let (mut from, mut to) = if upward {
                    (client.try_clone().unwrap(), server.try_clone().unwrap())
                } else {
                    (server.try_clone().unwrap(), client.try_clone().unwrap())
                };
                let recorded = recorded.clone();
                COPYING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut chunk = vec![0u8; 64 * 1024];
                    while let Ok(n) = from.read(&mut chunk) {
                        if n == 0 || to.write_all(&chunk[..n]).is_err() {
                            break;
                        }
                        let mut streams = recorded.lock().unwrap();
                        let side = &mut streams[slot];
                        let buffer = if upward { &mut side.0 } else { &mut side.1 };
                        if buffer.len() < 64 << 20 {
                            buffer.extend_from_slice(&chunk[..n]);
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                    COPYING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        }
    });
    (addr, streams)
}

async fn workload(bootstrap: String) {
    let admin = Admin::connect(&bootstrap).await.unwrap();
    admin
        .create_topic(
            "seeds",
            3,
            &[("retention.ms", "86400000"), ("segment.bytes", "16384")],
        )
        .await
        .unwrap();
    admin.create_topic("other", 1, &[]).await.unwrap();
    let _ = admin.create_topic("bad name", 1, &[]).await;
    let _ = admin.create_topic("seeds", 1, &[]).await;
    let _ = admin.list_topics().await;
    let _ = admin.describe_topic("seeds").await;
    for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
        let producer = Producer::builder(bootstrap.clone())
            .compression(codec)
            .build()
            .await
            .unwrap();
        for n in 0..200 {
            let record = ProducerRecord::new("seeds", format!("value {n} {}", "v".repeat(n % 50)));
            let record = if n % 3 == 0 {
                record.key(format!("key-{n}"))
            } else {
                record
            };
            producer.send(record).await.unwrap();
        }
        producer.close().await;
    }
    let mut consumer = Consumer::builder(bootstrap.clone())
        .group("seed-group")
        .offset_reset(OffsetReset::Earliest)
        .build()
        .await
        .unwrap();
    consumer.subscribe(&["seeds"]).unwrap();
    let mut seen = 0;
    for _ in 0..50 {
        seen += consumer
            .poll(Duration::from_millis(200))
            .await
            .unwrap()
            .len();
        if seen >= 600 {
            break;
        }
    }
    consumer.commit_sync().await.unwrap();
    let _ = admin.list_groups().await;
    let _ = admin.describe_group("seed-group").await;
    consumer.close().await.unwrap();
    let _ = admin.delete_topic("other").await;
}

fn write(dir: &Path, target: &str, name: String, bytes: &[u8]) {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

#[test]
fn record_seed_corpora_from_real_traffic() {
    // Writes the corpora where KEEL_FUZZ_SEEDS_DIR says (fuzz/run), otherwise into a
    // temporary directory: as a plain test it checks that recording and cutting real
    // traffic into seeds works.
    let scratch = tempfile::tempdir().unwrap();
    let out = std::env::var("KEEL_FUZZ_SEEDS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| scratch.path().to_owned());
    let data = tempfile::tempdir().unwrap();
    let broker = InProcess::start(data.path(), &["--shards", "2"]);
    let (proxy, streams) = recording_proxy(broker.addr);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(workload(proxy.to_string()));
    // Every client has closed: wait (with a deadline) until the proxy recorded all of it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while COPYING.load(std::sync::atomic::Ordering::SeqCst) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "proxy connections never closed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let streams = streams.lock().unwrap().clone();
    let (mut requests, mut responses, mut batches) = (0, 0, 0);
    for (connection, (up, down)) in streams.iter().enumerate() {
        let mut apis = HashMap::new();
        let mut rest = &up[..];
        while let Ok(Some(frame)) = check_request(rest, u32::MAX) {
            let bytes = &rest[..frame.frame_len];
            let (key, version) = (frame.header.api_key.get(), frame.header.api_version.get());
            apis.insert(frame.header.correlation_id.get(), key);
            let body = &bytes[frame.body()];
            write(&out, "frame", format!("req-{connection}-{requests}"), bytes);
            let mut seed = key.to_be_bytes().to_vec();
            seed.extend_from_slice(&version.to_be_bytes());
            seed.extend_from_slice(body);
            write(&out, "request", format!("{connection}-{requests}"), &seed);
            if key == ApiKey::Produce as u16 {
                batches += extract_batches(&out, body, batches);
            }
            requests += 1;
            rest = &rest[frame.frame_len..];
        }
        let mut rest = &down[..];
        while let Ok(Some(frame)) = check_response(rest, u32::MAX) {
            let bytes = &rest[..frame.frame_len];
            write(
                &out,
                "frame",
                format!("resp-{connection}-{responses}"),
                bytes,
            );
            if let Some(key) = apis.get(&frame.header.correlation_id.get()) {
                if let Some(selector) = ApiKey::ALL.iter().position(|(k, _, _)| *k as u16 == *key) {
                    let mut seed = vec![selector as u8];
                    seed.extend_from_slice(&bytes[frame.body()]);
                    write(&out, "response", format!("{connection}-{responses}"), &seed);
                    write(
                        &out,
                        "roundtrip",
                        format!("{connection}-{responses}"),
                        &seed,
                    );
                    if *key == ApiKey::Fetch as u16 {
                        batches += extract_batches(&out, &bytes[frame.body()], batches);
                    }
                }
            }
            responses += 1;
            rest = &rest[frame.frame_len..];
        }
    }
    // Segment and index files the broker wrote.
    let mut files = 0;
    for entry in walk(data.path()) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&entry).unwrap();
        let target = if name.ends_with(".log") {
            "recovery"
        } else if name.ends_with("index") {
            "index"
        } else {
            continue;
        };
        let mut seed = 0i64.to_be_bytes().to_vec();
        if target == "recovery" {
            seed.push(1);
        } else {
            seed.extend_from_slice(&(1i64 << 30).to_be_bytes());
            seed.extend_from_slice(&5i64.to_be_bytes());
        }
        seed.extend_from_slice(&bytes);
        write(&out, target, format!("{files}-{name}"), &seed);
        files += 1;
    }
    eprintln!(
        "seeds: {requests} requests, {responses} responses, {batches} batches, {files} files from {} connections",
        streams.len()
    );
    assert!(requests > 20 && responses > 20 && batches > 10 && files > 3);
}

/// Finds whole record batches inside a body (produce request or fetch response) and writes
/// each as a `batch` and `batch_crc_fixed` seed; returns how many.
fn extract_batches(out: &Path, body: &[u8], first: usize) -> usize {
    let mut found = 0;
    let mut at = 0;
    while at + 61 <= body.len() {
        if body[at + 16] == 2 {
            if let Ok(view) = BatchView::new_verified(&body[at..]) {
                let bytes = view.as_bytes();
                write(out, "batch", format!("{}", first + found), bytes);
                write(out, "batch_crc_fixed", format!("{}", first + found), bytes);
                found += 1;
                at += bytes.len();
                continue;
            }
        }
        at += 1;
    }
    found
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
