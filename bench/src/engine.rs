//! The storage benchmark: every engine figure is printed beside the raw direct-I/O figure
//! measured on the same disk in the same run.

use anyhow::{anyhow, Context};
use bytes::BytesMut;
use glommio::io::OpenOptions;
use hdrhistogram::Histogram;
use keel_engine::{FsyncPolicy, Log, LogConfig};
use keel_protocol::batch::{BatchBuilder, NewRecord};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Options of `keel-bench engine`.
#[derive(clap::Args, Debug, Clone)]
pub struct EngineArgs {
    /// Directory on the disk to measure (created, and emptied afterwards).
    #[arg(long, default_value = "./keel-bench-data")]
    dir: PathBuf,
    /// Bytes written by each raw and `fsync=never` run.
    #[arg(long, default_value_t = 256 << 20)]
    bytes: u64,
    /// Seconds each `fsync=always` run lasts.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Interleaved rounds of every run.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Record value size.
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// Batch size (records per batch = batch_bytes / record_bytes).
    #[arg(long, default_value_t = 16 * 1024)]
    batch_bytes: usize,
    /// Concurrent appenders for the group-commit run.
    #[arg(long, default_value_t = 16)]
    appenders: usize,
    /// Raw write size (the engine's write chunk is the same).
    #[arg(long, default_value_t = 1 << 20)]
    write_bytes: usize,
}

pub(crate) struct Figure {
    name: String,
    mb_per_sec: f64,
    latency: Option<Histogram<u64>>,
    fsyncs: Option<u64>,
    appends: u64,
}

/// CPU time this thread has used (user + system).
fn thread_cpu() -> Duration {
    // SAFETY: getrusage writes into the struct we pass and reads nothing else.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// A fresh name for every run's files.
fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Lets the file system finish earlier work (journal commits, and on a disk mounted with
/// `discard`, the discards of deleted files) before the next run is timed.
fn settle() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

impl Figure {
    /// Throughput.
    pub(crate) fn mb_per_sec(&self) -> f64 {
        self.mb_per_sec
    }
    /// p99 of the recorded latency (fdatasync for raw runs), µs.
    pub(crate) fn fsync_p99_us(&self) -> u64 {
        self.latency
            .as_ref()
            .map_or(0, |h| h.value_at_quantile(0.99))
    }
}

fn mb(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs the benchmark on one pinned glommio executor and prints the table.
///
/// The disk of a shared machine changes speed from second to second, so the runs are
/// interleaved in rounds (raw, engine, raw, engine, ...) and each ratio is the median of
/// per-round ratios, each taken between runs seconds apart.
pub fn run(args: EngineArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(0))
        .name("keel-bench")
        .make()
        .map_err(|e| anyhow!("cannot start the io_uring executor: {e} (check `ulimit -l` and that io_uring is enabled)"))?;
    let appenders = args.appenders;
    let rounds = args.rounds.max(1);
    let dir = args.dir.clone();
    let all: Vec<Vec<Figure>> = executor.run(async move {
        // Opening a log first makes glommio decide, with a real read, whether this device
        // supports polled I/O; otherwise the raw run's empty file would make it guess yes
        // and both runs would use the poll ring, unlike the broker.
        if std::env::var_os("KEEL_BENCH_NO_PROBE").is_none() {
            let probe_dir = args.dir.join("probe");
            Log::open(&probe_dir, LogConfig::default())
                .await?
                .close()
                .await?;
        }
        let mut all = Vec::new();
        for _ in 0..rounds {
            all.push(vec![
                raw_write(&args.dir, args.bytes, args.write_bytes, false).await?,
                engine_never(&args).await?,
                raw_write(&args.dir, args.bytes / 4, args.write_bytes, true).await?,
                engine_always(&args, 1).await?,
                engine_always(&args, args.appenders).await?,
            ]);
        }
        anyhow::Ok(all)
    })?;
    // Files are deleted only now: on a disk mounted with `discard`, deleting a run's files
    // issues discards that would slow whichever run came next.
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    let ratio = |a: usize, b: usize| {
        median(
            all.iter()
                .map(|r| r[a].mb_per_sec / r[b].mb_per_sec)
                .collect(),
        )
    };
    println!(
        "{rounds} interleaved rounds; MB/s is the median over rounds, latency over all rounds"
    );
    println!(
        "{:<48} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "run", "MB/s", "min", "max", "p50 us", "p99 us"
    );
    for index in 0..all[0].len() {
        let values: Vec<f64> = all.iter().map(|r| r[index].mb_per_sec).collect();
        let (min, max) = values
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        let mut latency: Option<Histogram<u64>> = None;
        for round in &all {
            if let Some(h) = &round[index].latency {
                match &mut latency {
                    Some(total) => total.add(h)?,
                    None => latency = Some(h.clone()),
                }
            }
        }
        let (p50, p99) = match &latency {
            Some(h) => (
                h.value_at_quantile(0.5).to_string(),
                h.value_at_quantile(0.99).to_string(),
            ),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{:<48} {:>9.1} {:>9.1} {:>9.1} {:>9} {:>9}",
            all[0][index].name,
            median(values),
            min,
            max,
            p50,
            p99
        );
    }
    let fsyncs: u64 = all.iter().map(|r| r[4].fsyncs.unwrap_or(0)).sum();
    let appends: u64 = all.iter().map(|r| r[4].appends).sum();
    println!(
        "engine fsync=never / raw O_DIRECT:                 {:.1}%",
        100.0 * ratio(1, 0)
    );
    println!(
        "engine fsync=always x{appenders} / raw with fdatasync per write: {:.1}%",
        100.0 * ratio(4, 2)
    );
    println!(
        "group commit, {appenders} appenders / 1 appender (fsync=always): {:.1}x",
        ratio(4, 3)
    );
    println!(
        "appends per fsync with {appenders} appenders: {:.1}",
        appends as f64 / fsyncs.max(1) as f64
    );
    Ok(())
}

/// Incompressible bytes, so neither run profits from a storage layer that compresses or
/// deduplicates (virtual disks often do).
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

pub(crate) async fn raw_write(
    dir: &Path,
    total: u64,
    write_bytes: usize,
    sync_each: bool,
) -> anyhow::Result<Figure> {
    let path = dir.join(format!("raw-direct-{}.bin", unique()));
    let pattern = noise(write_bytes + 4096, 7);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(&path)
        .await
        .map_err(std::io::Error::from)?;
    let mut latency = Histogram::<u64>::new(3)?;
    settle();
    let started = Instant::now();
    let mut position = 0u64;
    while position < total {
        let mut buffer = file.alloc_dma_buffer(write_bytes);
        let shift = (position / write_bytes as u64 % 4096) as usize;
        buffer
            .as_bytes_mut()
            .copy_from_slice(&pattern[shift..shift + write_bytes]);
        file.write_at(buffer, position)
            .await
            .map_err(std::io::Error::from)?;
        position += write_bytes as u64;
        if sync_each {
            let sync_started = Instant::now();
            file.fdatasync().await.map_err(std::io::Error::from)?;
            latency.record(sync_started.elapsed().as_micros() as u64)?;
        }
    }
    file.fdatasync().await.map_err(std::io::Error::from)?;
    let elapsed = started.elapsed();
    file.close().await.map_err(std::io::Error::from)?;
    let name = if sync_each {
        format!(
            "raw O_DIRECT {} KiB writes + fdatasync each",
            write_bytes >> 10
        )
    } else {
        format!("raw O_DIRECT {} KiB writes", write_bytes >> 10)
    };
    Ok(Figure {
        name,
        mb_per_sec: mb(position, elapsed),
        latency: sync_each.then_some(latency),
        fsyncs: None,
        appends: 0,
    })
}

fn sample_batch(args: &EngineArgs) -> anyhow::Result<Vec<u8>> {
    let mut builder = BatchBuilder::new();
    let count = (args.batch_bytes / args.record_bytes).max(1);
    for index in 0..count {
        let value = noise(args.record_bytes, index as u64 + 1);
        builder.push(NewRecord::value(1_700_000_000_000, value));
    }
    Ok(builder.build()?)
}

fn log_config(args: &EngineArgs, fsync: FsyncPolicy) -> LogConfig {
    LogConfig {
        fsync,
        write_chunk_bytes: args.write_bytes as u64,
        retention_ms: None,
        tail_cache_bytes: 4 << 20,
        ..LogConfig::default()
    }
}

async fn engine_never(args: &EngineArgs) -> anyhow::Result<Figure> {
    let dir = args.dir.join(format!("engine-never-{}", unique()));
    let batch = sample_batch(args)?;
    let log = Log::open(&dir, log_config(args, FsyncPolicy::Never)).await?;
    // The batches arrive ready, as a network layer would hand them over: building them is
    // not part of the measurement.
    let count = args.bytes.div_ceil(batch.len() as u64);
    let mut ready: Vec<BytesMut> = (0..count)
        .map(|_| BytesMut::from(batch.as_slice()))
        .collect();
    settle();
    let started = Instant::now();
    let cpu_started = thread_cpu();
    let mut appended = 0u64;
    for bytes in ready.drain(..) {
        log.append(bytes).await?;
        appended += batch.len() as u64;
    }
    log.flush().await?;
    let elapsed = started.elapsed();
    let cpu = thread_cpu() - cpu_started;
    if std::env::var_os("KEEL_BENCH_DEBUG").is_some() {
        let stats = log.stats();
        eprintln!(
            "never: {elapsed:?}, shard cpu {cpu:?} ({:.0}%), {} writes in flight {} us total",
            100.0 * cpu.as_secs_f64() / elapsed.as_secs_f64(),
            stats.writes,
            stats.write_us_total
        );
    }
    let stats = log.stats();
    log.close().await?;
    Ok(Figure {
        name: "engine append, fsync=never".into(),
        mb_per_sec: mb(appended, elapsed),
        latency: None,
        fsyncs: Some(stats.fsyncs),
        appends: stats.appends,
    })
}

async fn engine_always(args: &EngineArgs, appenders: usize) -> anyhow::Result<Figure> {
    let dir = args
        .dir
        .join(format!("engine-always-{appenders}-{}", unique()));
    let batch = Rc::new(sample_batch(args)?);
    let log = Log::open(&dir, log_config(args, FsyncPolicy::Always)).await?;
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let latency = Rc::new(RefCell::new(Histogram::<u64>::new(3)?));
    settle();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..appenders {
        let (log, batch, latency) = (log.clone(), batch.clone(), latency.clone());
        tasks.push(glommio::spawn_local(async move {
            let mut bytes = 0u64;
            while Instant::now() < deadline {
                let append_started = Instant::now();
                log.append(BytesMut::from(batch.as_slice())).await?;
                latency
                    .borrow_mut()
                    .record(append_started.elapsed().as_micros() as u64)?;
                bytes += batch.len() as u64;
            }
            anyhow::Ok(bytes)
        }));
    }
    let mut appended = 0;
    for task in tasks {
        appended += task.await?;
    }
    let elapsed = started.elapsed();
    let stats = log.stats();
    log.close().await?;
    let latency = Rc::try_unwrap(latency)
        .map_err(|_| anyhow!("tasks done"))?
        .into_inner();
    Ok(Figure {
        name: format!("engine append, fsync=always, {appenders} appender(s)"),
        mb_per_sec: mb(appended, elapsed),
        latency: Some(latency),
        fsyncs: Some(stats.fsyncs),
        appends: stats.appends,
    })
}
