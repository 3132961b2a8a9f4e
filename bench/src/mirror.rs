//! `keel-bench mirror`: how fast a cluster link mirrors, against a plain consume of the same
//! data from the same source in the same run, and the mirror's lag under steady load.
//!
//! A single-broker source and a one-broker destination cluster are started from `--server`.
//! The source is filled with `--bytes` (1 KiB records, `--partitions` partitions). The plain
//! consume reads it all through the source's Kafka listener with the same Fetch a link
//! sends (1 MiB per partition, 16 MiB per request, one connection). The mirror's rate is
//! what the destination's mirror partitions gained between the first moment they held
//! anything and the moment they held everything (link creation and topic creation left
//! out). Then a producer writes `--steady-mb-per-sec` for `--steady-seconds` while the
//! mirror's lag (`keel link describe`'s seconds behind, the worst partition) is sampled
//! every 50 ms.

use crate::load::{run_async, LoadArgs, Mode};
use crate::suite::KeelServer;
use anyhow::Context;
use keel_client::Admin;
use keel_kafka::source::{fetch_request, fetch_response, whole_batches, TopicRef, Wanted};
use keel_protocol::api::LinkAction;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const TOPIC: &str = "mirror-bench";
const LINK: &str = "bench";
const MESSAGE: usize = 1024;

/// Options of `keel-bench mirror`.
#[derive(clap::Args)]
pub struct MirrorArgs {
    /// The keel-server binary.
    #[arg(long, default_value = "target/release/keel-server")]
    server: PathBuf,
    /// Where both clusters keep their data (removed at the end).
    #[arg(long, default_value = "/tmp/keel-bench-mirror")]
    dir: PathBuf,
    /// First of the ports used (about 20 after it).
    #[arg(long, default_value_t = 17400)]
    port: u16,
    /// Bytes to fill the source with, per round.
    #[arg(long, default_value_t = 1 << 30)]
    bytes: u64,
    /// Rounds (a topic and a link each): the figures are their medians.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Partitions of the mirrored topic.
    #[arg(long, default_value_t = 2)]
    partitions: u32,
    /// The destination's fsync policy (`always` or `never`; the source's is `always`).
    #[arg(long, default_value = "always")]
    destination_fsync: String,
    /// Steady load for the lag figures, MB/s.
    #[arg(long, default_value_t = 50)]
    steady_mb_per_sec: u64,
    /// Seconds of steady load.
    #[arg(long, default_value_t = 20)]
    steady_seconds: u64,
    /// Write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Runs the measurement.
///
/// # Errors
/// A server does not start, a request fails, or the mirror never catches up.
pub fn run(args: MirrorArgs) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(&args.dir);
    let port = args.port;
    let source = KeelServer::start(&args.server, &args.dir.join("source"), port, "always", &[])?;
    let voters = format!("1@127.0.0.1:{}", port + 10);
    let cluster = ["--node-id", "1", "--controller-voters", &voters].map(str::to_owned);
    let destination = KeelServer::start(
        &args.server,
        &args.dir.join("destination"),
        port + 4,
        &args.destination_fsync,
        &cluster,
    )?;
    let (source_native, source_kafka) = (
        format!("127.0.0.1:{port}"),
        format!("127.0.0.1:{}", port + 2),
    );
    let dest_native = format!("127.0.0.1:{}", port + 4);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let figures = runtime.block_on(async {
        let admin = Admin::connect(&source_native).await?;
        let dest = Admin::connect(&dest_native).await?;
        let (mut consumes, mut mirrors, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..args.rounds {
            let topic = format!("{TOPIC}-{round}");
            admin.create_topic(&topic, args.partitions, &[]).await?;
            let messages = args.bytes / MESSAGE as u64;
            let fill = load(&source_native, &topic, args.partitions, messages, None);
            run_async(Mode::Produce, &fill).await?;
            let ends = high_watermarks(&source_kafka, &topic, args.partitions)?;
            // Both read the source's segments from the device: Keel writes them with
            // O_DIRECT, but the first reader's reads stay in the page cache.
            let cold = drop_caches();
            let (consume, bytes_per_record) = plain_consume(&source_kafka, &topic, &ends)?;
            drop_caches();
            let link = format!("{LINK}-{round}");
            let definition = format!("source={source_kafka}\ntopics={topic}");
            dest.link(LinkAction::Create, &link, &definition, Vec::new())
                .await?;
            let mirror = mirror_rate(&dest, &link, &ends, bytes_per_record).await?;
            eprintln!("round {round}: consume {consume:.0} MB/s, mirror {mirror:.0} MB/s (cold reads: {cold})");
            consumes.push(consume);
            mirrors.push(mirror);
            ratios.push(mirror / consume);
        }
        let last = args.rounds.saturating_sub(1);
        let lag = steady_lag(&args, (&source_native, &source_kafka), (&dest, last)).await?;
        anyhow::Ok(serde_json::json!({
            "bytes": args.bytes,
            "partitions": args.partitions,
            "rounds": args.rounds,
            "destination_fsync": args.destination_fsync,
            "consume_mb_per_sec": median(consumes),
            "mirror_mb_per_sec": median(mirrors),
            "mirror_over_consume": median(ratios),
            "steady_mb_per_sec": args.steady_mb_per_sec,
            "lag_seconds_p50": lag.0,
            "lag_seconds_p99": lag.1,
            "lag_seconds_max": lag.2,
        }))
    });
    destination.stop()?;
    source.stop()?;
    let _ = std::fs::remove_dir_all(&args.dir);
    let figures = figures?;
    println!("{}", serde_json::to_string_pretty(&figures)?);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&figures)?)?;
    }
    Ok(())
}

/// Drops the page cache (root only); whether it could.
fn drop_caches() -> bool {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "1\n").is_ok()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// A producer's load: `messages` records, or for `seconds` at `rate` bytes per second.
fn load(
    bootstrap: &str,
    topic: &str,
    partitions: u32,
    messages: u64,
    rate: Option<(f64, u64)>,
) -> LoadArgs {
    LoadArgs {
        bootstrap: bootstrap.to_owned(),
        topic: topic.into(),
        partitions,
        producers: 1,
        consumers: 0,
        message_size: MESSAGE,
        messages: rate.is_none().then_some(messages),
        duration: rate.map(|(seconds, _)| seconds),
        acks: "all".into(),
        rate: rate.map(|(_, bytes)| bytes as f64 / MESSAGE as f64),
        batch_bytes: 64 * 1024,
        batch_grow_bytes: 1 << 20,
        linger_ms: 5,
        json: None,
        quiet: true,
        plot: None,
        group: None,
        keys: None,
        record_set: None,
        command_config: None,
    }
}

/// One Kafka exchange on `stream`: the answer's body.
fn exchange(stream: &mut std::net::TcpStream, frame: &[u8]) -> anyhow::Result<bytes::Bytes> {
    stream.write_all(frame)?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let mut body = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
    stream.read_exact(&mut body)?;
    Ok(body.into())
}

fn fetch(
    stream: &mut std::net::TcpStream,
    topic: &str,
    positions: &[i64],
) -> anyhow::Result<Vec<keel_kafka::source::SourcePartition>> {
    let wanted = positions
        .iter()
        .enumerate()
        .map(|(p, offset)| Wanted {
            partition: p as i32,
            offset: *offset,
            max_bytes: 1 << 20,
        })
        .collect();
    let frame = fetch_request(
        1,
        "keel-bench",
        (0, 1, 16 << 20),
        &[(TopicRef::Name(topic.into()), wanted)],
    );
    let (_, _, topics) = fetch_response(12, exchange(stream, &frame)?)
        .map_err(|e| anyhow::anyhow!("fetch answer: {e}"))?;
    Ok(topics.into_iter().flat_map(|t| t.partitions).collect())
}

fn high_watermarks(kafka: &str, topic: &str, partitions: u32) -> anyhow::Result<Vec<i64>> {
    let mut stream = std::net::TcpStream::connect(kafka)?;
    let answer = fetch(&mut stream, topic, &vec![0; partitions as usize])?;
    Ok(answer.iter().map(|p| p.high_watermark).collect())
}

/// Reads every partition to `ends` through the Kafka listener: MB/s, and the bytes a
/// record takes in its batch (what the mirror's record counts are turned into bytes with).
fn plain_consume(kafka: &str, topic: &str, ends: &[i64]) -> anyhow::Result<(f64, f64)> {
    let mut stream = std::net::TcpStream::connect(kafka)?;
    stream.set_nodelay(true)?;
    let mut positions = vec![0i64; ends.len()];
    let (started, mut bytes) = (Instant::now(), 0u64);
    while positions.iter().zip(ends).any(|(at, end)| at < end) {
        for answer in fetch(&mut stream, topic, &positions)? {
            let spans = whole_batches(&answer.records).map_err(|e| anyhow::anyhow!(e))?;
            if let Some(last) = spans.last() {
                bytes += (last.at + last.len) as u64;
                positions[answer.partition as usize] = last.last + 1;
            }
        }
    }
    let records: i64 = ends.iter().sum();
    let rate = bytes as f64 / 1e6 / started.elapsed().as_secs_f64();
    Ok((rate, bytes as f64 / records.max(1) as f64))
}

/// Mirrored offsets per partition and the worst lag in seconds, from `keel link describe`.
async fn mirrored(dest: &Admin, link: &str) -> anyhow::Result<(Vec<(u32, i64)>, f64)> {
    let links = dest.describe_links(link).await?;
    let link = links.first().context("the link")?;
    let ends = link
        .partitions
        .iter()
        .map(|p| (p.partition, p.mirrored_offset))
        .collect();
    let lag = link.partitions.iter().map(|p| p.lag_ms).max().unwrap_or(0) as f64 / 1e3;
    Ok((ends, lag))
}

/// The mirror's MB/s from its first mirrored byte to its last.
async fn mirror_rate(
    dest: &Admin,
    link: &str,
    ends: &[i64],
    bytes_per_record: f64,
) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first: Option<(Instant, i64)> = None;
    loop {
        let (now, _) = mirrored(dest, link).await?;
        let total: i64 = now.iter().map(|(_, end)| end).sum();
        if first.is_none() && total > 0 {
            first = Some((Instant::now(), total));
        }
        if now.len() == ends.len() && now.iter().all(|(p, end)| *end >= ends[*p as usize]) {
            let (at, from) = first.context("mirrored")?;
            let bytes = (total - from) as f64 * bytes_per_record;
            return Ok(bytes / 1e6 / at.elapsed().as_secs_f64());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the mirror did not catch up in 600 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// (p50, p99, max) of the mirror's lag in seconds while the source takes a steady load:
/// every 10 ms the source's high watermarks are noted, and each note's lag is the time
/// until the destination held everything up to it.
async fn steady_lag(
    args: &MirrorArgs,
    (source, source_kafka): (&str, &str),
    (dest, round): (&Admin, u32),
) -> anyhow::Result<(f64, f64, f64)> {
    let (topic, link) = (format!("{TOPIC}-{round}"), format!("{LINK}-{round}"));
    let rate = (
        args.steady_seconds as f64,
        args.steady_mb_per_sec * 1_000_000,
    );
    let steady = load(source, &topic, args.partitions, 0, Some(rate));
    let sampling = async {
        let mut pending = std::collections::VecDeque::new();
        let mut lags = Vec::new();
        let until = Instant::now() + Duration::from_secs(args.steady_seconds);
        while Instant::now() < until || !pending.is_empty() {
            let noted = Instant::now();
            let source_total: i64 = high_watermarks(source_kafka, &topic, args.partitions)?
                .iter()
                .sum();
            if noted < until {
                pending.push_back((noted, source_total));
            }
            let (mirrored_now, _) = mirrored(dest, &link).await?;
            let mirrored_total: i64 = mirrored_now.iter().map(|(_, end)| end).sum();
            while pending
                .front()
                .is_some_and(|(_, total)| mirrored_total >= *total)
            {
                let (at, _) = pending.pop_front().expect("front");
                lags.push(at.elapsed().as_secs_f64());
            }
            anyhow::ensure!(
                noted < until + Duration::from_secs(60),
                "the mirror did not catch up within 60 s of the load's end"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::Ok(lags)
    };
    let (produced, samples) = tokio::join!(run_async(Mode::Produce, &steady), sampling);
    produced?;
    let mut samples = samples?;
    anyhow::ensure!(!samples.is_empty(), "no lag sample");
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.99), at(1.0)))
}
