//! `keel-bench produce|consume|e2e`: load against a broker through `keel-client`, with
//! hdrhistogram latencies, a live progress line, and a JSON report.
//!
//! With `--rate`, sends follow a fixed schedule and latency is measured from each message's
//! intended send time, so a stalled broker shows up in the latency instead of silently
//! slowing the load (no coordinated omission).

use anyhow::{bail, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use keel_client::{Acks, Admin, Consumer, OffsetReset, Producer, ProducerRecord, RecordSet};
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
    pub(crate) bootstrap: String,
    /// Topic (created when missing).
    #[arg(long, default_value = "keel-bench")]
    pub(crate) topic: String,
    /// Partitions when the topic is created.
    #[arg(long, default_value_t = 1)]
    pub(crate) partitions: u32,
    /// Producer connections.
    #[arg(long, default_value_t = 1)]
    pub(crate) producers: usize,
    /// Consumers (one group).
    #[arg(long, default_value_t = 1)]
    pub(crate) consumers: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub(crate) message_size: usize,
    /// Stop after this many messages (per run, all producers or consumers together).
    #[arg(long)]
    pub(crate) messages: Option<u64>,
    /// Stop after this many seconds (default 10 when --messages is not given).
    #[arg(long)]
    pub(crate) duration: Option<f64>,
    /// 0, 1 or all.
    #[arg(long, default_value = "1")]
    pub(crate) acks: String,
    /// Target messages per second across producers (open loop).
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Producer batch size.
    #[arg(long, default_value_t = 64 * 1024)]
    pub(crate) batch_bytes: usize,
    /// While a partition's in-flight slots are all taken, its batch grows up to this.
    #[arg(long, default_value_t = 1 << 20)]
    pub(crate) batch_grow_bytes: usize,
    /// Producer linger.
    #[arg(long, default_value_t = 5)]
    pub(crate) linger_ms: u64,
    /// Write the report here as JSON.
    #[arg(long)]
    pub(crate) json: Option<std::path::PathBuf>,
    /// No progress line (for scripts).
    #[arg(long)]
    pub(crate) quiet: bool,
    /// Draw throughput and latency over time (sweep: latency against throughput) as SVG.
    #[arg(long)]
    pub(crate) plot: Option<std::path::PathBuf>,
    /// Consumer group (default: keel-bench-PID).
    #[arg(long)]
    pub(crate) group: Option<String>,
    /// Key each message with one of this many keys, in turn (a compacted topic needs keys).
    #[arg(long)]
    pub(crate) keys: Option<u64>,
    /// Send prepared record sets of this many messages (keel-client's batch API), each to
    /// the next partition in turn, instead of message by message (closed loop, no keys).
    #[arg(long)]
    pub(crate) record_set: Option<usize>,
    /// Client security settings, a Kafka properties file (`security.protocol=SSL`,
    /// `ssl.ca.location`, ...), as the `keel` tool's.
    #[arg(long)]
    pub(crate) command_config: Option<std::path::PathBuf>,
}

impl LoadArgs {
    /// How the clients connect.
    fn security(&self) -> anyhow::Result<keel_client::ClientSecurity> {
        match &self.command_config {
            Some(path) => keel_client::ClientSecurity::from_properties_file(path)
                .map_err(|e| anyhow::anyhow!("--command-config: {e}")),
            None => Ok(keel_client::ClientSecurity::default()),
        }
    }
}

/// Latencies overall and per second of the run.
pub struct LatencyLog {
    pub(crate) total: Histogram<u64>,
    pub(crate) seconds: Vec<Histogram<u64>>,
}

impl LatencyLog {
    fn new() -> LatencyLog {
        LatencyLog {
            total: Histogram::new(3).expect("3 significant digits"),
            seconds: Vec::new(),
        }
    }

    fn record(&mut self, latency_us: u64, at_us: u64) {
        let second = (at_us / 1_000_000) as usize;
        while self.seconds.len() <= second {
            self.seconds
                .push(Histogram::new(3).expect("3 significant digits"));
        }
        let _ = self.total.record(latency_us);
        let _ = self.seconds[second].record(latency_us);
    }
}

/// What a run measured.
pub struct Report {
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
    pub(crate) seconds: f64,
    pub(crate) latency: LatencyLog,
    pub(crate) timeline: Vec<(u64, u64)>,
    /// End to end: bytes the consumers received (`bytes` counts what was produced).
    pub(crate) consumed_bytes: u64,
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
    /// When the first record arrived (consumers): a catch-up read is timed from here, so
    /// group joins and rebalances do not count as reading time.
    first: std::sync::OnceLock<Instant>,
    /// When a consumer saw the last of `--messages`.
    finished: std::sync::OnceLock<Instant>,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(bar: Option<indicatif::ProgressBar>) -> Arc<Progress> {
        Arc::new(Progress {
            done: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            first: std::sync::OnceLock::new(),
            finished: std::sync::OnceLock::new(),
            bar,
        })
    }
}

async fn produce(
    args: &LoadArgs,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
    e2e: bool,
) -> anyhow::Result<LatencyLog> {
    let latency = Arc::new(Mutex::new(LatencyLog::new()));
    let mut tasks = Vec::new();
    let per_producer_rate = args.rate.map(|r| r / args.producers as f64);
    let per_producer_limit = args.messages.map(|m| m.div_ceil(args.producers as u64));
    for producer_index in 0..args.producers {
        let producer = Producer::builder(args.bootstrap.as_str())
            .security(args.security()?)
            .acks(acks(&args.acks)?)
            .batch_bytes(args.batch_bytes)
            .batch_grow_bytes(args.batch_grow_bytes)
            .linger(Duration::from_millis(args.linger_ms))
            .build()
            .await
            .with_context(|| format!("producer {producer_index}"))?;
        let keys = args.keys.filter(|k| *k > 0);
        let (topic, size, stop, progress, latency) = (
            args.topic.clone(),
            args.message_size.max(8),
            stop.clone(),
            progress.clone(),
            latency.clone(),
        );
        if let Some(records) = args.record_set.filter(|n| *n > 0) {
            if e2e || keys.is_some() || args.rate.is_some() {
                bail!("--record-set is for closed-loop produce without keys");
            }
            let load = SetLoad {
                producer,
                topic,
                size,
                records,
                partitions: args.partitions.max(1),
                first: producer_index as u32,
                limit: per_producer_limit,
            };
            tasks.push(tokio::spawn(produce_sets(
                load, epoch, stop, progress, latency,
            )));
            continue;
        }
        tasks.push(tokio::spawn(async move {
            let filler = Bytes::from(vec![b'k'; size]);
            let started = Instant::now();
            let mut sent = 0u64;
            let mut woke = started;
            while !stop.load(Ordering::Relaxed)
                && per_producer_limit.is_none_or(|limit| sent < limit)
            {
                // Open loop: latency counts from the message's intended time, so a stalled
                // broker shows (no coordinated omission), but not from before the generator
                // last woke: tokio's timer wakes on 1 ms ticks, and the messages due inside
                // a tick could not exist earlier, so that lateness is the generator's own.
                // A generator held back by the producer (buffer full) does not sleep, so
                // the intended time rules again. Closed loop: now.
                let intended_us = match per_producer_rate {
                    Some(rate) => {
                        let intended = started + Duration::from_secs_f64(sent as f64 / rate);
                        if let Some(wait) = intended.checked_duration_since(Instant::now()) {
                            tokio::time::sleep(wait).await;
                            woke = Instant::now();
                        }
                        intended.max(woke).duration_since(epoch).as_micros() as u64
                    }
                    None => micros_since(epoch),
                };
                // End to end, the consumer reads the send time from the value; otherwise the
                // filler is shared, so the load generator does not copy every message.
                let value = if e2e {
                    let mut value = filler.to_vec();
                    value[..8].copy_from_slice(&intended_us.to_be_bytes());
                    Bytes::from(value)
                } else {
                    filler.clone()
                };
                let mut record = ProducerRecord::new(topic.as_str(), value);
                if let Some(keys) = keys {
                    let key = (producer_index as u64 * 1_000_003 + sent) % keys;
                    record = record.key(format!("key-{key}"));
                }
                let (latency, progress) = (latency.clone(), progress.clone());
                producer
                    .send_with_callback(record, move |result| {
                        if result.is_ok() {
                            if !e2e {
                                let now = micros_since(epoch);
                                let us = now.saturating_sub(intended_us).max(1);
                                latency.lock().expect("latency lock").record(us, now);
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
    let log = std::mem::replace(
        &mut *latency.lock().expect("latency lock"),
        LatencyLog::new(),
    );
    Ok(log)
}

/// One producer sending prepared record sets.
struct SetLoad {
    producer: Producer,
    topic: String,
    size: usize,
    records: usize,
    partitions: u32,
    first: u32,
    limit: Option<u64>,
}

/// Closed loop with the batch API: sets of `records` messages, each to the next partition.
async fn produce_sets(
    load: SetLoad,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
    latency: Arc<Mutex<LatencyLog>>,
) -> anyhow::Result<u64> {
    let filler = Bytes::from(vec![b'k'; load.size]);
    let (mut sent, mut partition) = (0u64, load.first % load.partitions);
    while !stop.load(Ordering::Relaxed) && load.limit.is_none_or(|limit| sent < limit) {
        let count = load.limit.map_or(load.records, |limit| {
            (limit - sent).min(load.records as u64) as usize
        });
        let mut set = RecordSet::with_capacity(count * (load.size + 16));
        for _ in 0..count {
            set.push(None, filler.clone());
        }
        let (latency, progress, size) = (latency.clone(), progress.clone(), load.size);
        let accepted_us = micros_since(epoch);
        load.producer
            .send_records_with_callback(&load.topic, partition, set, move |result| {
                if result.is_ok() {
                    let now = micros_since(epoch);
                    let us = now.saturating_sub(accepted_us).max(1);
                    latency.lock().expect("latency lock").record(us, now);
                    progress.done.fetch_add(count as u64, Ordering::Relaxed);
                    progress
                        .bytes
                        .fetch_add((count * size) as u64, Ordering::Relaxed);
                }
            })
            .await?;
        sent += count as u64;
        partition = (partition + 1) % load.partitions;
    }
    load.producer.close().await;
    Ok(sent)
}

async fn consume(
    args: &LoadArgs,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
    e2e: bool,
    group: String,
) -> anyhow::Result<LatencyLog> {
    let latency = Arc::new(Mutex::new(LatencyLog::new()));
    let mut tasks = Vec::new();
    for _ in 0..args.consumers {
        let mut consumer = Consumer::builder(args.bootstrap.as_str())
            .security(args.security()?)
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
                if !records.is_empty() {
                    progress.first.get_or_init(Instant::now);
                }
                let now = micros_since(epoch);
                for record in &records {
                    let value = record.value.as_deref().unwrap_or_default();
                    if e2e && value.len() >= 8 {
                        let sent = u64::from_be_bytes(value[..8].try_into().expect("8 bytes"));
                        latency
                            .lock()
                            .expect("latency lock")
                            .record(now.saturating_sub(sent).max(1), now);
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
                    progress.finished.get_or_init(Instant::now);
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
    let log = std::mem::replace(
        &mut *latency.lock().expect("latency lock"),
        LatencyLog::new(),
    );
    Ok(log)
}

pub(crate) async fn run_async(mode: Mode, args: &LoadArgs) -> anyhow::Result<Report> {
    let admin = Admin::connect_with(&args.bootstrap, args.security()?)
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
    let progress = Progress::new(bar);
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
    let group = args
        .group
        .clone()
        .unwrap_or_else(|| format!("keel-bench-{}", std::process::id()));
    let mut active_seconds = None;
    let mut consumed_at_end = 0;
    let latency = match mode {
        Mode::Produce => produce(args, epoch, stop.clone(), progress.clone(), false).await?,
        Mode::Consume => {
            let latency =
                consume(args, epoch, stop.clone(), progress.clone(), false, group).await?;
            let end = progress
                .finished
                .get()
                .copied()
                .unwrap_or_else(Instant::now);
            active_seconds = progress
                .first
                .get()
                .map(|first| end.duration_since(*first).as_secs_f64());
            latency
        }
        Mode::EndToEnd => {
            let consumed = Progress::new(None);
            let consumers = {
                let (args, stop, progress) = (args.clone(), stop.clone(), consumed.clone());
                tokio::spawn(
                    async move { consume(&args, epoch, stop, progress, true, group).await },
                )
            };
            // Let the consumers join before the first message is sent; throughput counts
            // the producing phase only.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let producing = Instant::now();
            produce(args, epoch, stop.clone(), progress.clone(), true).await?;
            active_seconds = Some(producing.elapsed().as_secs_f64());
            consumed_at_end = consumed.bytes.load(Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(500)).await;
            stop.store(true, Ordering::Relaxed);
            consumers.await??
        }
    };
    stop.store(true, Ordering::Relaxed);
    let seconds = active_seconds.unwrap_or_else(|| epoch.elapsed().as_secs_f64());
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
        consumed_bytes: consumed_at_end,
    })
}
