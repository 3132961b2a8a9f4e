//! Micro-benchmarks of the hot pure structures: batch codec and index lookup.
//! Run: `cargo bench -p keel-bench --bench codec`.

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

criterion_group!(benches, codec, index);
criterion_main!(benches);
