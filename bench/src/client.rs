//! `keel-bench client`: how fast one `keel-client` producer sends, and what it costs in CPU,
//! for small and 1 KiB records with acks=1 and acks=all.

use anyhow::Context;
use keel_client::{Acks, Admin, Producer, ProducerRecord};
use std::time::{Duration, Instant};

/// Options of `keel-bench client`.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// Broker address.
    #[arg(long, default_value = "127.0.0.1:7070")]
    bootstrap: String,
    /// Topic (created when missing).
    #[arg(long, default_value = "keel-bench-client")]
    topic: String,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Seconds per run.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Producer batch size.
    #[arg(long, default_value_t = 64 * 1024)]
    batch_bytes: usize,
    /// Producer linger.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
}

/// CPU time of this whole process (all threads), user + system.
fn process_cpu() -> Duration {
    // SAFETY: getrusage writes into the struct we pass.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

async fn run_one(
    args: &ClientArgs,
    size: usize,
    acks: Acks,
) -> anyhow::Result<(u64, f64, Duration)> {
    let producer = Producer::builder(args.bootstrap.as_str())
        .acks(acks)
        .batch_bytes(args.batch_bytes)
        .linger(Duration::from_millis(args.linger_ms))
        .build()
        .await?;
    let value: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
    let value = bytes::Bytes::from(value);
    let cpu_started = process_cpu();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.seconds);
    let mut sent = 0u64;
    let delivered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let failed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    while Instant::now() < deadline {
        for _ in 0..256 {
            let (delivered, failed) = (delivered.clone(), failed.clone());
            producer
                .send_with_callback(
                    ProducerRecord::new(args.topic.as_str(), value.clone()),
                    move |result| {
                        let counter = if result.is_ok() { delivered } else { failed };
                        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    },
                )
                .await?;
        }
    }
    producer.close().await;
    // Only acknowledged records count.
    let failures = failed.load(std::sync::atomic::Ordering::Relaxed);
    if failures > 0 {
        anyhow::bail!("{failures} records failed");
    }
    sent += delivered.load(std::sync::atomic::Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    Ok((sent, elapsed, process_cpu() - cpu_started))
}

/// Runs every combination and prints the table.
pub fn run(args: ClientArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let admin = Admin::connect(&args.bootstrap)
            .await
            .with_context(|| format!("broker at {}", args.bootstrap))?;
        if !admin.list_topics().await?.contains(&args.topic) {
            admin
                .create_topic(&args.topic, args.partitions, &[])
                .await?;
        }
        println!(
            "one producer, {} KiB batches, {} ms linger, {} partitions",
            args.batch_bytes >> 10,
            args.linger_ms,
            args.partitions
        );
        println!(
            "{:<24} {:>12} {:>10} {:>16}",
            "run", "msgs/s", "MB/s", "client CPU s/GB"
        );
        for size in [100usize, 1024] {
            for (acks, name) in [(Acks::Leader, "1"), (Acks::All, "all")] {
                let (sent, elapsed, cpu) = run_one(&args, size, acks).await?;
                let mb = (sent * size as u64) as f64 / 1e6;
                println!(
                    "{:<24} {:>12.0} {:>10.1} {:>16.2}",
                    format!("{size} B, acks={name}"),
                    sent as f64 / elapsed,
                    mb / elapsed,
                    cpu.as_secs_f64() / (mb / 1000.0)
                );
            }
        }
        anyhow::Ok(())
    })
}
