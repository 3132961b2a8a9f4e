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

/// Measures and prints the limits.
pub fn run(args: LimitsArgs) -> anyhow::Result<()> {
    let dir = args
        .dir
        .join(format!("keel-bench-limits-{}", std::process::id()));
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
        let plain = crate::engine::raw_write(&probe_dir, args.bytes, 1 << 20, false).await?;
        let synced = crate::engine::raw_write(&probe_dir, args.bytes / 4, 1 << 20, true).await?;
        anyhow::Ok((plain, synced))
    })?;
    std::fs::remove_dir_all(&dir).ok();
    let loopback = crate::broker::loopback_mb_per_sec(args.seconds)?;
    let disk = plain.mb_per_sec();
    let disk_synced = synced.mb_per_sec();
    let p99 = synced.fsync_p99_us();
    println!("raw O_DIRECT sequential writes (1 MiB): {disk:.0} MB/s");
    println!(
        "raw O_DIRECT + fdatasync per MiB:      {disk_synced:.0} MB/s (fdatasync p99 {p99} us)"
    );
    println!("raw loopback TCP (1 connection):        {loopback:.0} MB/s");
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "disk_mb_per_sec": disk,
            "disk_fdatasync_mb_per_sec": disk_synced,
            "fdatasync_p99_us": p99,
            "loopback_mb_per_sec": loopback,
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
