//! Produce and Fetch request decoding: keel-kafka's hand decoders beside kafka-protocol's
//! (the crate they replace on the request path). `cargo bench -p keel-kafka`.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{FetchRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use keel_kafka::read::Reader;
use keel_kafka::requests::{decode, KafkaRequest};

fn produce_body(version: i16) -> Bytes {
    let batch = Bytes::from(vec![7u8; 256 * 1024]);
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("bench")))
            .with_partition_data(
                (0..8)
                    .map(|i| {
                        PartitionProduceData::default()
                            .with_index(i)
                            .with_records(Some(batch.clone()))
                    })
                    .collect(),
            )]);
    let mut out = BytesMut::new();
    request.encode(&mut out, version).unwrap();
    out.freeze()
}

fn fetch_body(version: i16) -> Bytes {
    let request = FetchRequest::default()
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("bench")))
            .with_partitions(
                (0..64)
                    .map(|i| {
                        FetchPartition::default()
                            .with_partition(i)
                            .with_fetch_offset(1_000_000)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            )]);
    let mut out = BytesMut::new();
    request.encode(&mut out, version).unwrap();
    out.freeze()
}

fn bench(c: &mut Criterion) {
    use kafka_protocol::messages::ApiKey;
    let mut group = c.benchmark_group("produce_v9_8x256KiB");
    let body = produce_body(9);
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("keel-kafka", |b| {
        b.iter(|| {
            let mut r = Reader::new(body.clone(), true);
            let KafkaRequest::Produce(p) = decode(ApiKey::Produce, 9, &mut r).unwrap() else {
                unreachable!()
            };
            p
        })
    });
    group.bench_function("kafka-protocol", |b| {
        b.iter(|| ProduceRequest::decode(&mut body.clone(), 9).unwrap())
    });
    group.finish();
    let mut group = c.benchmark_group("fetch_v12_64_partitions");
    let body = fetch_body(12);
    group.bench_function("keel-kafka", |b| {
        b.iter(|| {
            let mut r = Reader::new(body.clone(), true);
            decode(ApiKey::Fetch, 12, &mut r).unwrap()
        })
    });
    group.bench_function("kafka-protocol", |b| {
        b.iter(|| FetchRequest::decode(&mut body.clone(), 12).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
