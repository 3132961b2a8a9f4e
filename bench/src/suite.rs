//! `keel-bench suite`: the two tables in one command. Measures this machine's limits,
//! then runs each workload against a `keel-server` it starts itself (a fresh broker and data
//! directory per workload, broker defaults unless the row says otherwise) and, given
//! `--iggy DIR`, the same workloads against Apache Iggy in the same run. Repeats the whole
//! round `--repeat` times and reports medians, as a table and as JSON.

use crate::load::{run_async, LoadArgs, Mode, Report};
use crate::suite_table::{figure, medians, rows_json, table, IGGY_ROWS, LIMIT_ROWS, TLS_ROWS};
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Options of `keel-bench suite`.
#[derive(clap::Args, Debug, Clone)]
pub struct SuiteArgs {
    /// The broker binary (default: keel-server next to keel-bench).
    #[arg(long)]
    server: Option<PathBuf>,
    /// Scratch directory on the disk under test (limits, broker and Iggy data; emptied after).
    #[arg(long, default_value = "./keel-suite")]
    pub(crate) dir: PathBuf,
    /// First loopback port; each broker started takes the next two.
    #[arg(long, default_value_t = 17300)]
    port: u16,
    /// Seconds per produce and end-to-end workload.
    #[arg(long, default_value_t = 8.0)]
    duration: f64,
    /// Bytes written before a catch-up read (per run).
    #[arg(long, default_value_t = 2 << 30)]
    catchup_bytes: u64,
    /// Whole rounds; figures are medians over them.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Directory with Apache Iggy's `iggy-server` and `iggy-bench`: adds the Iggy table.
    #[arg(long)]
    iggy: Option<PathBuf>,
    /// Write every run's figures and the medians as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run only these workloads (comma-separated keys, `scram` for the SCRAM handshakes);
    /// rows without their figures show as missing.
    #[arg(long)]
    only: Option<String>,
    /// Produce rows send prepared record sets of this many messages (keel-client's batch
    /// API, as iggy-bench sends batches of 1,000) instead of message by message.
    #[arg(long)]
    record_set: Option<usize>,
}

impl SuiteArgs {
    fn runs(&self, key: &str) -> bool {
        self.only
            .as_deref()
            .is_none_or(|only| only.split(',').any(|k| k.trim() == key))
    }
}

const MESSAGE: usize = 1024;

/// A Keel workload: a broker started with `fsync`, a topic with `partitions`, the load.
struct Workload {
    key: &'static str,
    fsync: &'static str,
    partitions: u32,
    producers: usize,
    consumers: usize,
    mode: Kind,
    /// The native listener under TLS (`--native-security SSL`).
    tls: bool,
}

enum Kind {
    /// Closed-loop produce for `--duration`; MB/s.
    Produce,
    /// Produce `catchup_bytes`, restart the broker (nothing cached), read it all from the
    /// start; MB/s from the first record to the last.
    CatchUp,
    /// Closed-loop produce-to-consume for the maximum, then open loop at half of it;
    /// latency.
    HalfRateEndToEnd,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        key: "produce_1p_1prod_nofsync_tls",
        fsync: "never",
        partitions: 1,
        producers: 1,
        consumers: 1,
        mode: Kind::Produce,
        tls: true,
    },
    Workload {
        key: "catchup_1p_1cons_tls",
        fsync: "always",
        partitions: 1,
        producers: 1,
        consumers: 1,
        mode: Kind::CatchUp,
        tls: true,
    },
    Workload {
        key: "produce_8p_2prod",
        fsync: "always",
        partitions: 8,
        producers: 2,
        consumers: 1,
        mode: Kind::Produce,
        tls: false,
    },
    Workload {
        key: "produce_1p_1prod",
        fsync: "always",
        partitions: 1,
        producers: 1,
        consumers: 1,
        mode: Kind::Produce,
        tls: false,
    },
    Workload {
        key: "produce_2p_2prod",
        fsync: "always",
        partitions: 2,
        producers: 2,
        consumers: 1,
        mode: Kind::Produce,
        tls: false,
    },
    Workload {
        key: "produce_1p_1prod_nofsync",
        fsync: "never",
        partitions: 1,
        producers: 1,
        consumers: 1,
        mode: Kind::Produce,
        tls: false,
    },
    Workload {
        key: "produce_2p_2prod_nofsync",
        fsync: "never",
        partitions: 2,
        producers: 2,
        consumers: 1,
        mode: Kind::Produce,
        tls: false,
    },
    Workload {
        key: "catchup_2p_2cons",
        fsync: "always",
        partitions: 2,
        producers: 2,
        consumers: 2,
        mode: Kind::CatchUp,
        tls: false,
    },
    Workload {
        key: "catchup_1p_1cons",
        fsync: "always",
        partitions: 1,
        producers: 1,
        consumers: 1,
        mode: Kind::CatchUp,
        tls: false,
    },
    Workload {
        key: "e2e_half_rate_1p",
        fsync: "always",
        partitions: 1,
        producers: 1,
        consumers: 1,
        mode: Kind::HalfRateEndToEnd,
        tls: false,
    },
];

/// Runs the suite and prints the tables.
pub fn run(args: SuiteArgs) -> anyhow::Result<()> {
    let server = match &args.server {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("keel-bench has no directory")?
            .join("keel-server"),
    };
    if !server.is_file() {
        bail!(
            "{} not found: build it (cargo build --release -p keel-server) or pass --server",
            server.display()
        );
    }
    if args.repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut port = args.port;
    let mut rounds: Vec<BTreeMap<String, f64>> = Vec::new();
    for round in 0..args.repeat {
        eprintln!("round {}/{}: limits", round + 1, args.repeat);
        let mut figures = BTreeMap::new();
        let limits = crate::limits::measure(&args.dir, 256 << 20, 2.0)?;
        figures.insert("disk".to_owned(), limits.disk_mb_per_sec);
        figures.insert(
            "disk_fdatasync".to_owned(),
            limits.disk_fdatasync_mb_per_sec,
        );
        figures.insert(
            "fdatasync_p99_ms".to_owned(),
            limits.fdatasync_p99_us as f64 / 1e3,
        );
        figures.insert("loopback".to_owned(), limits.loopback_mb_per_sec);
        for workload in WORKLOADS.iter().filter(|w| args.runs(w.key)) {
            eprintln!("round {}/{}: keel {}", round + 1, args.repeat, workload.key);
            keel_workload(&runtime, &args, &server, &mut port, workload, &mut figures)
                .with_context(|| format!("keel workload {}", workload.key))?;
        }
        if args.runs("scram") {
            eprintln!("round {}/{}: SCRAM handshakes", round + 1, args.repeat);
            let handshakes = crate::suite_security::scram_handshakes(&args, &server, &mut port)?;
            figures.insert("scram_handshakes_per_sec".to_owned(), handshakes);
        }
        if let Some(iggy_dir) = &args.iggy {
            eprintln!("round {}/{}: iggy", round + 1, args.repeat);
            iggy_workloads(&args, iggy_dir, &mut port, &mut figures)?;
        }
        rounds.push(figures);
    }
    let medians = medians(&rounds);
    let mut text = String::new();
    text += &format!(
        "keel-bench suite: {} round(s), medians; 1 KiB messages, broker defaults (fsync=always) unless noted\n\n",
        args.repeat
    );
    text += &format!(
        "limits: raw O_DIRECT {:.0} MB/s, + fdatasync per MiB {:.0} MB/s (fdatasync p99 {:.2} ms), loopback TCP {:.0} MB/s\n\n",
        medians["disk"], medians["disk_fdatasync"], medians["fdatasync_p99_ms"], medians["loopback"]
    );
    text += &format!(
        "end-to-end (1 partition, 1 producer, 1 consumer, acks=all): maximum {:.0} MB/s closed loop; latency measured open loop at {:.0} MB/s\n\n",
        figure(&medians, "e2e_half_rate_1p.max_mb_per_sec"),
        figure(&medians, "e2e_half_rate_1p.mb_per_sec"),
    );
    text += &table(LIMIT_ROWS, &medians, "limit");
    text += "\n";
    text += &table(TLS_ROWS, &medians, "plaintext");
    text += &format!(
        "\nSCRAM-SHA-512 authentications on new connections (2 clients): {:.0} per second\n",
        figure(&medians, "scram_handshakes_per_sec")
    );
    if args.iggy.is_some() {
        text += "\n";
        text += &table(IGGY_ROWS, &medians, "Iggy");
    }
    println!("{text}");
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "rounds": rounds,
            "medians": medians,
            "rows": rows_json(LIMIT_ROWS, &medians)
                .into_iter()
                .chain(rows_json(TLS_ROWS, &medians))
                .chain(if args.iggy.is_some() { rows_json(IGGY_ROWS, &medians) } else { Vec::new() })
                .collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn keel_workload(
    runtime: &tokio::runtime::Runtime,
    args: &SuiteArgs,
    server: &Path,
    port: &mut u16,
    workload: &Workload,
    figures: &mut BTreeMap<String, f64>,
) -> anyhow::Result<()> {
    let data = args.dir.join(format!("keel-{}", workload.key));
    std::fs::remove_dir_all(&data).ok();
    let (flags, command_config) = if workload.tls {
        crate::suite_security::tls_files(&args.dir)?
    } else {
        (Vec::new(), None)
    };
    let start = |port: u16| KeelServer::start(server, &data, port, workload.fsync, &flags);
    let mut broker = start(next_port(port))?;
    let mut load = load_args(&broker.address, workload);
    load.command_config = command_config;
    match workload.mode {
        Kind::Produce => {
            load.duration = Some(args.duration);
            load.record_set = args.record_set;
            let report = runtime.block_on(run_async(Mode::Produce, &load))?;
            figures.insert(workload.key.to_owned(), mb_per_sec(&report));
        }
        Kind::CatchUp => {
            let messages = args.catchup_bytes / MESSAGE as u64;
            load.messages = Some(messages);
            load.acks = "1".into();
            runtime.block_on(run_async(Mode::Produce, &load))?;
            broker.stop()?;
            broker = start(next_port(port))?;
            load.bootstrap = broker.address.clone();
            let report = runtime.block_on(run_async(Mode::Consume, &load))?;
            if report.messages < messages {
                bail!("catch-up read {} of {messages} messages", report.messages);
            }
            figures.insert(workload.key.to_owned(), mb_per_sec(&report));
        }
        Kind::HalfRateEndToEnd => {
            // The maximum is this workload's own: producers and consumers together, closed
            // loop; then open loop at half of it.
            load.duration = Some(args.duration / 2.0);
            let max = runtime.block_on(run_async(Mode::EndToEnd, &load))?;
            // What the consumers kept up with while the producers ran.
            let max_mb = max.consumed_bytes as f64 / 1e6 / max.seconds;
            figures.insert(format!("{}.max_mb_per_sec", workload.key), max_mb);
            load.topic = format!("{}-half", load.topic);
            load.duration = Some(args.duration);
            load.rate = Some(max_mb * 1e6 / MESSAGE as f64 / 2.0);
            let report = runtime.block_on(run_async(Mode::EndToEnd, &load))?;
            let q = |quantile| {
                if report.latency.total.is_empty() {
                    f64::NAN
                } else {
                    report.latency.total.value_at_quantile(quantile) as f64 / 1e3
                }
            };
            figures.insert(format!("{}.mb_per_sec", workload.key), mb_per_sec(&report));
            figures.insert(format!("{}.p50_ms", workload.key), q(0.5));
            figures.insert(format!("{}.p99_ms", workload.key), q(0.99));
            figures.insert(format!("{}.p999_ms", workload.key), q(0.999));
            figures.insert(format!("{}.p9999_ms", workload.key), q(0.9999));
        }
    }
    broker.stop()?;
    std::fs::remove_dir_all(&data).ok();
    Ok(())
}

fn iggy_workloads(
    args: &SuiteArgs,
    iggy_dir: &Path,
    port: &mut u16,
    figures: &mut BTreeMap<String, f64>,
) -> anyhow::Result<()> {
    let data = args.dir.join("iggy");
    let iggy = crate::iggy::IggyServer::start(iggy_dir, &data, next_port(port))?;
    let total = format!("{}B", args.catchup_bytes);
    let global = ["-m", "1024", "-P", "1000", "-T", total.as_str()];
    let fsync: Vec<&str> = global.iter().copied().chain(["--enforce-fsync"]).collect();
    let producers = |n: &'static str| ["pinned-producer", "--producers", n];
    figures.insert(
        "iggy_1prod_fsync".into(),
        iggy.bench(&fsync, &producers("1"))?,
    );
    figures.insert(
        "iggy_2prod_fsync".into(),
        iggy.bench(&fsync, &producers("2"))?,
    );
    figures.insert("iggy_2prod".into(), iggy.bench(&global, &producers("2"))?);
    // The last write before the read: the consumer reads what this producer wrote.
    figures.insert("iggy_1prod".into(), iggy.bench(&global, &producers("1"))?);
    figures.insert(
        "iggy_1cons".into(),
        iggy.bench(&global, &["pinned-consumer", "--consumers", "1"])?,
    );
    iggy.stop()
}

fn load_args(address: &str, workload: &Workload) -> LoadArgs {
    LoadArgs {
        bootstrap: address.to_owned(),
        topic: format!("suite-{}", workload.key),
        partitions: workload.partitions,
        producers: workload.producers,
        consumers: workload.consumers,
        message_size: MESSAGE,
        messages: None,
        duration: None,
        acks: "all".into(),
        rate: None,
        batch_bytes: 64 * 1024,
        batch_grow_bytes: 1 << 20,
        linger_ms: 5,
        json: None,
        quiet: true,
        plot: None,
        group: Some(format!("suite-{}", workload.key)),
        keys: None,
        record_set: None,
        command_config: None,
    }
}

fn mb_per_sec(report: &Report) -> f64 {
    report.bytes as f64 / 1e6 / report.seconds
}

pub(crate) fn next_port(port: &mut u16) -> u16 {
    let this = *port;
    *port = port.wrapping_add(2);
    this
}

/// A running keel-server, stopped (SIGTERM, then SIGKILL) when dropped.
pub(crate) struct KeelServer {
    child: Child,
    address: String,
}

impl KeelServer {
    pub(crate) fn start(
        server: &Path,
        data: &Path,
        port: u16,
        fsync: &str,
        extra: &[String],
    ) -> anyhow::Result<KeelServer> {
        std::fs::create_dir_all(data)?;
        let address = format!("127.0.0.1:{port}");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.join("keel-server.out"))?;
        let mut child = Command::new(server)
            .arg("--data-dir")
            .arg(data)
            .args(["--listen", address.as_str()])
            .args(["--metrics-listen", &format!("127.0.0.1:{}", port + 1)])
            .args(["--kafka-listen", &format!("127.0.0.1:{}", port + 2)])
            .args(["--fsync", fsync])
            .args(extra)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", server.display()))?;
        wait_for_port(&address, &mut child, data)?;
        Ok(KeelServer { child, address })
    }

    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
        terminate(&mut self.child, Duration::from_secs(20))
    }
}

impl Drop for KeelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits up to 20 s for `address` to accept connections; fails early if `child` exits.
pub(crate) fn wait_for_port(address: &str, child: &mut Child, dir: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if std::net::TcpStream::connect(address).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the server exited ({status}) before listening; see {}",
                dir.display()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the server did not listen on {address} within 20 s; see {}",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, then SIGKILL after `grace`.
pub(crate) fn terminate(child: &mut Child, grace: Duration) -> anyhow::Result<()> {
    let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
    // SAFETY: kill(2) with a child's pid that we have not reaped yet.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill()?;
    child.wait()?;
    Ok(())
}
