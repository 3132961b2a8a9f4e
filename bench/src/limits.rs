//! `keel-bench limits`: this machine's limits, measured now, so every report can say how
//! close Keel came to the hardware: raw O_DIRECT sequential writes in the data directory
//! (with and without an fdatasync per write) and raw loopback TCP.

use anyhow::{anyhow, Context};
use std::path::PathBuf;

/// Options of `keel-bench limits`.
#[derive(clap::Args, Debug, Clone)]
pub struct LimitsArgs {
    /// Directory on the disk the broker uses (files are removed afterwards).
    #[arg(long, default_value = "./keel-data")]
    dir: PathBuf,
    /// Bytes written by each disk run.
    #[arg(long, default_value_t = 256 << 20)]
    bytes: u64,
    /// Seconds of loopback streaming.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Also write the figures as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The limits of this machine, measured now.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Raw O_DIRECT sequential 1 MiB writes.
    pub disk_mb_per_sec: f64,
    /// The same with an fdatasync after every MiB.
    pub disk_fdatasync_mb_per_sec: f64,
    /// fdatasync latency, 99th percentile.
    pub fdatasync_p99_us: u64,
    /// One loopback TCP connection.
    pub loopback_mb_per_sec: f64,
}

impl Limits {
    /// As JSON for reports.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "disk_mb_per_sec": self.disk_mb_per_sec,
            "disk_fdatasync_mb_per_sec": self.disk_fdatasync_mb_per_sec,
            "fdatasync_p99_us": self.fdatasync_p99_us,
            "loopback_mb_per_sec": self.loopback_mb_per_sec,
        })
    }
}

/// Measures the limits: `bytes` written raw in `dir` (removed afterwards), `seconds` of
/// loopback streaming.
pub fn measure(dir: &std::path::Path, bytes: u64, seconds: f64) -> anyhow::Result<Limits> {
    let dir = dir.join(format!("keel-bench-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("keel-bench-limits")
        .make()
        .map_err(|e| anyhow!("cannot start the io_uring executor: {e} (check `ulimit -l` and that io_uring is enabled)"))?;
    let probe_dir = dir.clone();
    let (plain, synced) = executor.run(async move {
        // A real read first, so glommio picks the I/O path the broker will use.
        keel_engine::Log::open(probe_dir.join("probe"), keel_engine::LogConfig::default())
            .await?
            .close()
            .await?;
        let plain = crate::engine::raw_write(&probe_dir, bytes, 1 << 20, false).await?;
        let synced = crate::engine::raw_write(&probe_dir, bytes / 4, 1 << 20, true).await?;
        anyhow::Ok((plain, synced))
    })?;
    std::fs::remove_dir_all(&dir).ok();
    Ok(Limits {
        disk_mb_per_sec: plain.mb_per_sec(),
        disk_fdatasync_mb_per_sec: synced.mb_per_sec(),
        fdatasync_p99_us: synced.fsync_p99_us(),
        loopback_mb_per_sec: crate::broker::loopback_mb_per_sec(seconds)?,
    })
}

/// Measures and prints the limits.
pub fn run(args: LimitsArgs) -> anyhow::Result<()> {
    let limits = measure(&args.dir, args.bytes, args.seconds)?;
    println!(
        "raw O_DIRECT sequential writes (1 MiB): {:.0} MB/s",
        limits.disk_mb_per_sec
    );
    println!(
        "raw O_DIRECT + fdatasync per MiB:      {:.0} MB/s (fdatasync p99 {} us)",
        limits.disk_fdatasync_mb_per_sec, limits.fdatasync_p99_us
    );
    println!(
        "raw loopback TCP (1 connection):        {:.0} MB/s",
        limits.loopback_mb_per_sec
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&limits.json())?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
