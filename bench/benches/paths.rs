//! Micro-benchmarks of the functions the data path runs per batch or per byte, so a
//! regression shows without a broker: the producer's batch building, produce request
//! encode/decode, CRC-32C, the broker's stamping of offsets, and fetch responses.
//! Run: `cargo bench -p keel-bench --bench paths`.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use keel_protocol::api::{
    write_fetch_partition_header, ApiKey, FetchPartitionResult, ProducePartition, Request,
    Response, TopicEntries,
};
use keel_protocol::batch::{set_base_offset, set_partition_leader_epoch, BatchBuilder, NewRecord};

const RECORDS: usize = 64;
const VALUE: usize = 1024;

/// What the producer does per batch: 64 records of 1 KiB pushed into a builder sized for
/// them, then finished.
fn client_batch(values: &[Bytes]) -> Vec<u8> {
    let mut builder = BatchBuilder::with_capacity(RECORDS * (VALUE + 16));
    for (index, value) in values.iter().enumerate() {
        builder.push(NewRecord::value(
            1_700_000_000_000 + index as i64,
            value.clone(),
        ));
    }
    builder.finish().unwrap()
}

fn values() -> Vec<Bytes> {
    (0..RECORDS)
        .map(|r| Bytes::from((0..VALUE).map(|i| (i * 7 + r) as u8).collect::<Vec<u8>>()))
        .collect()
}

fn produce_request(batch: &Bytes) -> Request {
    Request::Produce {
        acks: -1,
        timeout_ms: 30_000,
        topics: vec![TopicEntries {
            topic: "bench".into(),
            partitions: vec![ProducePartition {
                partition: 0,
                records: batch.clone(),
            }],
        }],
    }
}

fn batches(c: &mut Criterion) {
    let values = values();
    let batch = Bytes::from(client_batch(&values));
    let mut group = c.benchmark_group("batch_64x1KiB");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("producer_push_finish", |b| {
        b.iter(|| client_batch(black_box(&values)).len())
    });
    group.bench_function("crc32c", |b| {
        b.iter(|| crc32c::crc32c(black_box(&batch[21..])))
    });
    // The broker's only rewrite of a stored batch: offsets and leader epoch, outside the CRC.
    let mut stamped = BytesMut::from(&batch[..]);
    group.bench_function("stamp_offset_and_epoch", |b| {
        b.iter(|| {
            set_base_offset(black_box(&mut stamped), 1_234_567);
            set_partition_leader_epoch(black_box(&mut stamped), 7);
        })
    });
    group.finish();
}

fn requests(c: &mut Criterion) {
    let batch = Bytes::from(client_batch(&values()));
    let request = produce_request(&batch);
    let mut encoded = BytesMut::new();
    request.encode(&mut encoded).unwrap();
    let encoded = encoded.freeze();
    let mut group = c.benchmark_group("produce_request_64KiB");
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("encode", |b| {
        b.iter(|| {
            let mut out = BytesMut::with_capacity(encoded.len());
            black_box(&request).encode(&mut out).unwrap();
            out.len()
        })
    });
    group.bench_function("decode", |b| {
        b.iter(|| Request::decode(ApiKey::Produce as u16, 0, black_box(encoded.clone())).unwrap())
    });
    group.finish();
}

fn fetch_responses(c: &mut Criterion) {
    let batch = Bytes::from(client_batch(&values()));
    let records: Bytes = std::iter::repeat_n(&batch[..], 16)
        .flatten()
        .copied()
        .collect();
    let response = Response::Fetch {
        topics: vec![TopicEntries {
            topic: "bench".into(),
            partitions: (0..2)
                .map(|partition| FetchPartitionResult {
                    partition,
                    error: keel_protocol::api::ErrorCode::None,
                    high_watermark: 1 << 20,
                    log_start_offset: 0,
                    records: records.clone(),
                })
                .collect(),
        }],
    };
    let mut encoded = BytesMut::new();
    response.encode(&mut encoded).unwrap();
    let encoded = encoded.freeze();
    let mut group = c.benchmark_group("fetch_response_2x1MiB");
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("encode", |b| {
        b.iter(|| {
            let mut out = BytesMut::with_capacity(encoded.len());
            black_box(&response).encode(&mut out).unwrap();
            out.len()
        })
    });
    group.bench_function("decode", |b| {
        b.iter(|| Response::decode(ApiKey::Fetch, black_box(encoded.clone())).unwrap())
    });
    // The broker's way: a header per partition in memory, the records sent from where they
    // are (tail cache or file), never copied into the response.
    let Response::Fetch { topics } = &response else {
        unreachable!("built above")
    };
    group.bench_function("broker_partition_headers", |b| {
        b.iter(|| {
            let mut out = BytesMut::with_capacity(128);
            for result in &topics[0].partitions {
                write_fetch_partition_header(&mut out, black_box(result), result.records.len())
                    .unwrap();
            }
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, batches, requests, fetch_responses);
criterion_main!(benches);
