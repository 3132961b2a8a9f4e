//! Micro-benchmarks of the hot paths: batch codec, index lookup, partitioner, and the
//! engine's append and read. Run: `cargo bench -p keel-bench --bench codec`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use keel_engine::index::OffsetIndex;
use keel_protocol::batch::{BatchBuilder, BatchView, NewRecord};
use keel_protocol::Compression;

fn batch(compression: Compression) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    builder.compression(compression);
    for index in 0..16 {
        let value: Vec<u8> = (0..1024)
            .map(|i| ((i * 7 + index) % 64) as u8 + b' ')
            .collect();
        builder.push(NewRecord::value(1_700_000_000_000 + index as i64, value));
    }
    builder.build().unwrap()
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_16x1KiB");
    group.throughput(Throughput::Bytes(16 * 1024));
    for compression in [Compression::None, Compression::Lz4, Compression::Zstd] {
        let bytes = batch(compression);
        group.bench_function(format!("build/{}", compression.name()), |b| {
            b.iter(|| batch(black_box(compression)))
        });
        group.bench_function(format!("verify_crc/{}", compression.name()), |b| {
            b.iter(|| {
                BatchView::new_verified(black_box(&bytes))
                    .unwrap()
                    .records_count()
            })
        });
        // What the broker now checks on every produced batch beyond the CRC.
        group.bench_function(format!("validate_records/{}", compression.name()), |b| {
            b.iter(|| {
                BatchView::new(black_box(&bytes))
                    .unwrap()
                    .validate_records(32 << 20)
                    .unwrap()
                    .count
            })
        });
        group.bench_function(format!("decode/{}", compression.name()), |b| {
            b.iter(|| {
                BatchView::new(black_box(&bytes))
                    .unwrap()
                    .records()
                    .unwrap()
                    .len()
            })
        });
    }
    group.finish();
}

fn index(c: &mut Criterion) {
    let mut index = OffsetIndex::new(0);
    for entry in 0..65_536i64 {
        index.append(entry * 16 + 15, entry as u64 * 16_445);
    }
    c.bench_function("offset_index_lookup/65536_entries", |b| {
        let mut offset = 0i64;
        b.iter(|| {
            offset = (offset + 7_919) % (65_536 * 16);
            index.lookup(black_box(offset))
        })
    });
}

fn partitioner(c: &mut Criterion) {
    let keys: Vec<String> = (0..1024).map(|i| format!("customer-{i}")).collect();
    c.bench_function("murmur2_partition/12_byte_keys", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % keys.len();
            keel_client::partition_for_key(black_box(keys[i].as_bytes()), 12)
        })
    });
}

fn engine(c: &mut Criterion) {
    // The engine's append (bookkeeping + CRC check; writes go to a temporary directory with
    // fsync=never) and a tail read served from memory, on one glommio executor.
    let dir = tempfile::tempdir().unwrap();
    let executor = glommio::LocalExecutorBuilder::default().make().unwrap();
    let log = executor
        .run(keel_engine::Log::open(
            dir.path().join("p-0"),
            keel_engine::LogConfig {
                fsync: keel_engine::FsyncPolicy::Never,
                ..Default::default()
            },
        ))
        .unwrap();
    let bytes = batch(Compression::None);
    let mut group = c.benchmark_group("engine_16x1KiB");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("append_fsync_never", |b| {
        b.iter_custom(|iters| {
            executor.run(async {
                let started = std::time::Instant::now();
                for _ in 0..iters {
                    log.append(bytes::BytesMut::from(bytes.as_slice()))
                        .await
                        .unwrap();
                }
                started.elapsed()
            })
        })
    });
    // A produce handler's check and the append: the CRC checked by both (as before issue
    // 24) or once, into an `engine::Batch` the log takes as checked.
    group.bench_function("check_then_append_crc_twice", |b| {
        b.iter_custom(|iters| {
            executor.run(async {
                let started = std::time::Instant::now();
                for _ in 0..iters {
                    black_box(BatchView::new_verified(&bytes).unwrap());
                    log.append(bytes::BytesMut::from(bytes.as_slice()))
                        .await
                        .unwrap();
                }
                started.elapsed()
            })
        })
    });
    group.bench_function("check_then_append_crc_once", |b| {
        b.iter_custom(|iters| {
            executor.run(async {
                let started = std::time::Instant::now();
                for _ in 0..iters {
                    let batch = keel_engine::Batch::checked(bytes.as_slice().into()).unwrap();
                    log.append(batch).await.unwrap();
                }
                started.elapsed()
            })
        })
    });
    group.bench_function("read_tail", |b| {
        b.iter_custom(|iters| {
            executor.run(async {
                let end = log.high_watermark();
                let started = std::time::Instant::now();
                for _ in 0..iters {
                    black_box(log.read(end - 16, 1 << 20).await.unwrap());
                }
                started.elapsed()
            })
        })
    });
    group.finish();
    executor.run(async { log.close().await.unwrap() });
}

fn cold_reads(c: &mut Criterion) {
    // Reading 64 MiB from the start of a log whose tail cache holds none of it, 1 MiB per
    // read as a consumer's fetch does: direct I/O chunks with read-ahead (`log/cold.rs`).
    let dir = tempfile::tempdir().unwrap();
    let executor = glommio::LocalExecutorBuilder::default().make().unwrap();
    let config = keel_engine::LogConfig {
        fsync: keel_engine::FsyncPolicy::Never,
        tail_cache_bytes: 64 << 10,
        ..Default::default()
    };
    let log = executor
        .run(keel_engine::Log::open(dir.path().join("p-0"), config))
        .unwrap();
    let bytes = batch(Compression::None);
    let total = 64u64 << 20;
    executor.run(async {
        for _ in 0..total / bytes.len() as u64 {
            log.append(bytes::BytesMut::from(bytes.as_slice()))
                .await
                .unwrap();
        }
        log.flush().await.unwrap();
    });
    let mut group = c.benchmark_group("cold_read_64MiB");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(total));
    group.bench_function("sequential_1MiB_reads", |b| {
        b.iter_custom(|iters| {
            executor.run(async {
                let started = std::time::Instant::now();
                for _ in 0..iters {
                    let mut next = 0;
                    while next < log.high_watermark() {
                        let read = log.read(next, 1 << 20).await.unwrap();
                        let data = read.data.to_vec().unwrap();
                        let mut rest = data.as_slice();
                        while !rest.is_empty() {
                            let view = BatchView::new(rest).unwrap();
                            next = view.last_offset() + 1;
                            rest = &rest[view.len()..];
                        }
                    }
                }
                started.elapsed()
            })
        })
    });
    group.finish();
    executor.run(async { log.close().await.unwrap() });
}

criterion_group!(benches, codec, index, partitioner, engine, cold_reads);
criterion_main!(benches);
