//! `keel-bench metadata`: how long a topic creation takes on a cluster, and how long until
//! every broker serves it (metadata propagation).
//!
//! Each round creates a topic through the first bootstrap broker (timed until its answer,
//! which comes once the controller committed the change and that broker applied it), then
//! polls every other broker's Metadata until the topic is there (timed from the answer).

use anyhow::Context;
use keel_client::connection::Connection;
use keel_client::Admin;
use keel_protocol::api::{ErrorCode, Request, Response};
use std::time::{Duration, Instant};

/// Options of `keel-bench metadata`.
#[derive(clap::Args)]
pub struct MetadataArgs {
    /// Every broker of the cluster, comma-separated; topics are created through the first.
    #[arg(long)]
    bootstrap: String,
    /// Topics to create.
    #[arg(long, default_value_t = 50)]
    topics: u32,
    /// Partitions per topic.
    #[arg(long, default_value_t = 3)]
    partitions: u32,
    /// Name prefix (a run number keeps reruns apart).
    #[arg(long, default_value = "meta-bench")]
    prefix: String,
    /// Write the figures as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index].as_secs_f64() * 1e3
}

/// Runs the measurement.
///
/// # Errors
/// A broker is not reachable or a creation fails.
pub fn run(args: MetadataArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let addresses: Vec<&str> = args.bootstrap.split(',').collect();
        let admin = Admin::connect(addresses[0]).await?;
        let mut others = Vec::new();
        for address in &addresses[1..] {
            others.push(Connection::connect(address).await.with_context(|| format!("connecting {address}"))?);
        }
        let (mut create, mut propagate) = (Vec::new(), Vec::new());
        for round in 0..args.topics {
            let name = format!("{}-{round}", args.prefix);
            let started = Instant::now();
            admin.create_topic(&name, args.partitions, &[]).await?;
            let answered = Instant::now();
            create.push(answered - started);
            for other in &others {
                loop {
                    let request = Request::Metadata { topics: vec![name.clone()] };
                    let found = matches!(
                        other.call(&request).await?,
                        Response::Metadata { topics, .. }
                            if topics.first().is_some_and(|t| t.error == ErrorCode::None)
                    );
                    if found {
                        break;
                    }
                    anyhow::ensure!(answered.elapsed() < Duration::from_secs(30), "{name} never appeared");
                    tokio::time::sleep(Duration::from_micros(500)).await;
                }
            }
            propagate.push(answered.elapsed());
        }
        create.sort();
        propagate.sort();
        let report = serde_json::json!({
            "topics": args.topics,
            "partitions": args.partitions,
            "brokers": addresses.len(),
            "create_ms": {"p50": percentile(&create, 0.5), "p99": percentile(&create, 0.99), "max": percentile(&create, 1.0)},
            "propagation_ms": {"p50": percentile(&propagate, 0.5), "p99": percentile(&propagate, 0.99), "max": percentile(&propagate, 1.0)},
        });
        println!(
            "{} topics x {} partitions on {} brokers: create p50 {:.1} ms p99 {:.1} ms; visible on every broker after the answer p50 {:.1} ms p99 {:.1} ms",
            args.topics,
            args.partitions,
            addresses.len(),
            percentile(&create, 0.5),
            percentile(&create, 0.99),
            percentile(&propagate, 0.5),
            percentile(&propagate, 0.99)
        );
        if let Some(path) = args.json {
            std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
        }
        Ok(())
    })
}
