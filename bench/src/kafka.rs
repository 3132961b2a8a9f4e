//! Produce and consume through a broker's Kafka listener with librdkafka (the rdkafka
//! crate), for the Kafka-against-native comparison in docs/benchmarks.md
//! (`bench/scripts/kafka.sh`). Built with `--features kafka`; needs librdkafka 1.9 or later
//! (Debian's `librdkafka-dev`).

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `keel-bench kafka`.
#[derive(clap::Args, Debug)]
pub struct KafkaArgs {
    /// The broker's Kafka listener.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Topic (must exist).
    #[arg(long, default_value = "keel-bench-kafka")]
    topic: String,
    /// The topic's partitions (records go round-robin over them; consumers read them all).
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// `produce` or `consume`.
    #[arg(long, default_value = "produce")]
    mode: String,
    /// Message size in bytes.
    #[arg(long, default_value_t = 1024)]
    message_size: usize,
    /// Messages to produce or consume.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// 0, 1 or all (all also turns idempotence on, as keel-bench's producer).
    #[arg(long, default_value = "all")]
    acks: String,
    /// librdkafka's linger.ms.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// librdkafka's batch.size.
    #[arg(long, default_value_t = 1 << 20)]
    batch_bytes: usize,
}

#[derive(Default)]
struct Counts {
    delivered: AtomicU64,
    failed: AtomicU64,
}

struct Delivery(Arc<Counts>);

impl ClientContext for Delivery {}

impl ProducerContext for Delivery {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.0.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.0.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Runs the load and prints one JSON line.
pub fn run(args: KafkaArgs) -> anyhow::Result<()> {
    let (seconds, bytes) = match args.mode.as_str() {
        "produce" => produce(&args)?,
        "consume" => consume(&args)?,
        other => anyhow::bail!("--mode must be produce or consume, got {other:?}"),
    };
    let report = serde_json::json!({
        "client": "librdkafka",
        "mode": args.mode,
        "messages": args.messages,
        "message_size": args.message_size,
        "seconds": seconds,
        "mb_per_s": bytes as f64 / seconds / 1e6,
        "msgs_per_s": args.messages as f64 / seconds,
    });
    println!("{report}");
    Ok(())
}

fn produce(args: &KafkaArgs) -> anyhow::Result<(f64, u64)> {
    let counts = Arc::new(Counts::default());
    let producer: BaseProducer<Delivery> = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("acks", &args.acks)
        .set("enable.idempotence", (args.acks == "all").to_string())
        .set("linger.ms", args.linger_ms.to_string())
        .set("batch.size", args.batch_bytes.to_string())
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "1000000")
        .set("compression.type", "none")
        .create_with_context(Delivery(counts.clone()))?;
    let payload = vec![b'x'; args.message_size];
    let started = Instant::now();
    for i in 0..args.messages {
        let partition = (i % args.partitions as u64) as i32;
        loop {
            let record = BaseRecord::<(), [u8]>::to(&args.topic)
                .payload(&payload)
                .partition(partition);
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(120))?;
    let seconds = started.elapsed().as_secs_f64();
    let failed = counts.failed.load(Ordering::Relaxed);
    anyhow::ensure!(failed == 0, "{failed} records failed");
    let delivered = counts.delivered.load(Ordering::Relaxed);
    anyhow::ensure!(
        delivered == args.messages,
        "{delivered} of {} delivered",
        args.messages
    );
    Ok((seconds, delivered * args.message_size as u64))
}

fn consume(args: &KafkaArgs) -> anyhow::Result<(f64, u64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set(
            "group.id",
            format!("keel-bench-kafka-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "8388608")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..args.partitions {
        assignment.add_partition_offset(&args.topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut started = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    while count < args.messages {
        anyhow::ensure!(Instant::now() < deadline, "only {count} messages in 300 s");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                started.get_or_insert_with(Instant::now);
                count += 1;
                bytes += message.payload().map_or(0, |p| p.len() as u64);
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    let seconds = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    Ok((seconds, bytes))
}
