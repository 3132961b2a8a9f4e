//! `keel-bench produce|consume|e2e`: load against a broker through `keel-client`, with
//! hdrhistogram latencies, a live progress line, and a JSON report.
//!
//! With `--rate`, sends follow a fixed schedule and latency is measured from each message's
//! intended send time, so a stalled broker shows up in the latency instead of silently
//! slowing the load (no coordinated omission).

use anyhow::{bail, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use keel_client::{Acks, Admin, Consumer, OffsetReset, Producer, ProducerRecord};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which load to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Producers only.
    Produce,
    /// Consumers only (of what is in the topic).
    Consume,
    /// Producers and consumers; latency is produce-to-consume.
    EndToEnd,
}

/// The brief's load-generator flags.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Broker address.
    #[arg(long, default_value = "127.0.0.1:7070")]
    bootstrap: String,
    /// Topic (created when missing).
    #[arg(long, default_value = "keel-bench")]
    topic: String,
    /// Partitions when the topic is created.
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Producer connections.
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Consumers (one group).
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 1024)]
    message_size: usize,
    /// Stop after this many messages (per run, all producers or consumers together).
    #[arg(long)]
    messages: Option<u64>,
    /// Stop after this many seconds (default 10 when --messages is not given).
    #[arg(long)]
    duration: Option<f64>,
    /// 0, 1 or all.
    #[arg(long, default_value = "1")]
    acks: String,
    /// Target messages per second across producers (open loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Producer batch size.
    #[arg(long, default_value_t = 64 * 1024)]
    batch_bytes: usize,
    /// Producer linger.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Write the report here as JSON.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// No progress line (for scripts).
    #[arg(long)]
    quiet: bool,
}

/// What a run measured.
struct Report {
    messages: u64,
    bytes: u64,
    seconds: f64,
    latency: Histogram<u64>,
    timeline: Vec<(u64, u64)>,
}

fn micros_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

fn acks(text: &str) -> anyhow::Result<Acks> {
    Ok(match text {
        "0" => Acks::None,
        "1" => Acks::Leader,
        "all" | "-1" => Acks::All,
        other => bail!("--acks must be 0, 1 or all, got {other:?}"),
    })
}

/// Counts messages per second for the timeline and the progress line.
struct Progress {
    done: AtomicU64,
    bytes: AtomicU64,
    bar: Option<indicatif::ProgressBar>,
}

async fn produce(
    args: &LoadArgs,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
    e2e: bool,
) -> anyhow::Result<Histogram<u64>> {
    let latency = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let mut tasks = Vec::new();
    let per_producer_rate = args.rate.map(|r| r / args.producers as f64);
    let per_producer_limit = args.messages.map(|m| m.div_ceil(args.producers as u64));
    for producer_index in 0..args.producers {
        let producer = Producer::builder(args.bootstrap.as_str())
            .acks(acks(&args.acks)?)
            .batch_bytes(args.batch_bytes)
            .linger(Duration::from_millis(args.linger_ms))
            .build()
            .await
            .with_context(|| format!("producer {producer_index}"))?;
        let (topic, size, stop, progress, latency) = (
            args.topic.clone(),
            args.message_size.max(8),
            stop.clone(),
            progress.clone(),
            latency.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let filler = Bytes::from(vec![b'k'; size]);
            let started = Instant::now();
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed)
                && per_producer_limit.is_none_or(|limit| sent < limit)
            {
                // Open loop: the message's intended time; closed loop: now.
                let intended_us = match per_producer_rate {
                    Some(rate) => {
                        let intended = started + Duration::from_secs_f64(sent as f64 / rate);
                        if let Some(wait) = intended.checked_duration_since(Instant::now()) {
                            tokio::time::sleep(wait).await;
                        }
                        intended.duration_since(epoch).as_micros() as u64
                    }
                    None => micros_since(epoch),
                };
                let mut value = filler.to_vec();
                value[..8].copy_from_slice(&intended_us.to_be_bytes());
                let record = ProducerRecord::new(topic.as_str(), value);
                let (latency, progress) = (latency.clone(), progress.clone());
                producer
                    .send_with_callback(record, move |result| {
                        if result.is_ok() {
                            if !e2e {
                                let us = micros_since(epoch).saturating_sub(intended_us).max(1);
                                let _ = latency.lock().expect("latency lock").record(us);
                            }
                            progress.done.fetch_add(1, Ordering::Relaxed);
                            progress.bytes.fetch_add(size as u64, Ordering::Relaxed);
                        }
                    })
                    .await?;
                sent += 1;
            }
            producer.close().await;
            anyhow::Ok(sent)
        }));
    }
    for task in tasks {
        task.await??;
    }
    let histogram = latency.lock().expect("latency lock").clone();
    Ok(histogram)
}

async fn consume(
    args: &LoadArgs,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
    e2e: bool,
    group: String,
) -> anyhow::Result<Histogram<u64>> {
    let latency = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let mut tasks = Vec::new();
    for _ in 0..args.consumers {
        let mut consumer = Consumer::builder(args.bootstrap.as_str())
            .group(group.clone())
            .offset_reset(if e2e {
                OffsetReset::Latest
            } else {
                OffsetReset::Earliest
            })
            .max_wait(Duration::from_millis(100))
            .session_timeout(Duration::from_secs(6))
            .build()
            .await?;
        consumer.subscribe(&[args.topic.as_str()])?;
        let (stop, progress, latency, limit) = (
            stop.clone(),
            progress.clone(),
            latency.clone(),
            args.messages,
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let records = consumer.poll(Duration::from_millis(100)).await?;
                let now = micros_since(epoch);
                for record in &records {
                    let value = record.value.as_deref().unwrap_or_default();
                    if e2e && value.len() >= 8 {
                        let sent = u64::from_be_bytes(value[..8].try_into().expect("8 bytes"));
                        let _ = latency
                            .lock()
                            .expect("latency lock")
                            .record(now.saturating_sub(sent).max(1));
                    }
                    progress
                        .bytes
                        .fetch_add(value.len() as u64, Ordering::Relaxed);
                }
                let total = progress
                    .done
                    .fetch_add(records.len() as u64, Ordering::Relaxed)
                    + records.len() as u64;
                if limit.is_some_and(|l| total >= l) {
                    stop.store(true, Ordering::Relaxed);
                }
            }
            consumer.close().await?;
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let histogram = latency.lock().expect("latency lock").clone();
    Ok(histogram)
}

/// Runs one load and prints (and writes) the report.
pub fn run(mode: Mode, args: LoadArgs) -> anyhow::Result<()> {
    if args.producers == 0 || args.consumers == 0 {
        bail!("--producers and --consumers must be at least 1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = runtime.block_on(run_async(mode, &args))?;
    let summary = summary(mode, &args, &report);
    println!("{}", summary.0);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&summary.1)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

async fn run_async(mode: Mode, args: &LoadArgs) -> anyhow::Result<Report> {
    let admin = Admin::connect(&args.bootstrap)
        .await
        .with_context(|| format!("broker not reachable at {}", args.bootstrap))?;
    if !admin.list_topics().await?.contains(&args.topic) {
        admin
            .create_topic(&args.topic, args.partitions, &[])
            .await?;
    }
    let duration = match (args.messages, args.duration) {
        (_, Some(seconds)) => Some(Duration::from_secs_f64(seconds)),
        (Some(_), None) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let bar = (!args.quiet).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .expect("valid template"),
        );
        bar
    });
    let progress = Arc::new(Progress {
        done: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        bar,
    });
    let epoch = Instant::now();
    // The timeline: messages per second, sampled by a ticker that also drives the bar.
    let timeline = Arc::new(Mutex::new(Vec::new()));
    let ticker = {
        let (progress, timeline, stop) = (progress.clone(), timeline.clone(), stop.clone());
        tokio::spawn(async move {
            let mut last = 0u64;
            let mut second = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                second += 1;
                let done = progress.done.load(Ordering::Relaxed);
                timeline
                    .lock()
                    .expect("timeline lock")
                    .push((second, done - last));
                if let Some(bar) = &progress.bar {
                    bar.set_message(format!("{done} messages, {} msgs/s now", done - last));
                    bar.tick();
                }
                last = done;
            }
        })
    };
    if let Some(duration) = duration {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            stop.store(true, Ordering::Relaxed);
        });
    }
    let group = format!("keel-bench-{}", std::process::id());
    let latency = match mode {
        Mode::Produce => produce(args, epoch, stop.clone(), progress.clone(), false).await?,
        Mode::Consume => consume(args, epoch, stop.clone(), progress.clone(), false, group).await?,
        Mode::EndToEnd => {
            let consumers = {
                let (args, stop, progress) = (
                    args.clone(),
                    stop.clone(),
                    Arc::new(Progress {
                        done: AtomicU64::new(0),
                        bytes: AtomicU64::new(0),
                        bar: None,
                    }),
                );
                tokio::spawn(
                    async move { consume(&args, epoch, stop, progress, true, group).await },
                )
            };
            // Let the consumers join before the first message is sent.
            tokio::time::sleep(Duration::from_millis(500)).await;
            produce(args, epoch, stop.clone(), progress.clone(), true).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            stop.store(true, Ordering::Relaxed);
            consumers.await??
        }
    };
    stop.store(true, Ordering::Relaxed);
    let seconds = epoch.elapsed().as_secs_f64();
    let _ = ticker.await;
    if let Some(bar) = &progress.bar {
        bar.finish_and_clear();
    }
    let timeline = timeline.lock().expect("timeline lock").clone();
    Ok(Report {
        messages: progress.done.load(Ordering::Relaxed),
        bytes: progress.bytes.load(Ordering::Relaxed),
        seconds,
        latency,
        timeline,
    })
}

fn summary(mode: Mode, args: &LoadArgs, report: &Report) -> (String, serde_json::Value) {
    let name = match mode {
        Mode::Produce => "produce",
        Mode::Consume => "consume",
        Mode::EndToEnd => "e2e",
    };
    let q = |quantile: f64| {
        if report.latency.is_empty() {
            0
        } else {
            report.latency.value_at_quantile(quantile)
        }
    };
    let msgs_per_sec = report.messages as f64 / report.seconds;
    let mb_per_sec = report.bytes as f64 / 1e6 / report.seconds;
    let text = format!(
        "{name}: {} messages, {:.1} MB in {:.2} s: {:.0} msgs/s, {:.1} MB/s; latency us p50 {} p90 {} p99 {} p99.9 {} max {}",
        report.messages,
        report.bytes as f64 / 1e6,
        report.seconds,
        msgs_per_sec,
        mb_per_sec,
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        if report.latency.is_empty() { 0 } else { report.latency.max() }
    );
    let json = serde_json::json!({
        "mode": name,
        "messages": report.messages,
        "bytes": report.bytes,
        "seconds": report.seconds,
        "msgs_per_sec": msgs_per_sec,
        "mb_per_sec": mb_per_sec,
        "latency_us": {
            "p50": q(0.5),
            "p90": q(0.9),
            "p99": q(0.99),
            "p999": q(0.999),
            "max": if report.latency.is_empty() { 0 } else { report.latency.max() },
        },
        "timeline": report.timeline.iter().map(|(second, messages)| serde_json::json!({"second": second, "messages": messages})).collect::<Vec<_>>(),
        "settings": {
            "bootstrap": args.bootstrap,
            "topic": args.topic,
            "partitions": args.partitions,
            "producers": args.producers,
            "consumers": args.consumers,
            "message_size": args.message_size,
            "messages": args.messages,
            "duration": args.duration,
            "acks": args.acks,
            "rate": args.rate,
            "batch_bytes": args.batch_bytes,
            "linger_ms": args.linger_ms,
        },
    });
    (text, json)
}
