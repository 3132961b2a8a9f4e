//! `keel-bench produce|consume|e2e|sweep` from the command line: runs a load (`load.rs`),
//! prints the summary line, writes the JSON report and draws the charts.

use crate::load::{run_async, LoadArgs, Mode, Report};
use anyhow::{bail, Context};

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
    if let Some(path) = &args.plot {
        let points = timeline(&report);
        let mode_name = summary.1["mode"].as_str().unwrap_or("").to_owned();
        let charts = [
            crate::svg::Chart {
                title: format!("keel-bench {mode_name}: throughput"),
                x_label: "seconds".into(),
                y_label: "messages/s".into(),
                series: vec![crate::svg::Series {
                    name: "messages/s".into(),
                    color: "#1f77b4",
                    points: points
                        .iter()
                        .map(|(second, messages, _, _)| (*second as f64, *messages as f64))
                        .collect(),
                }],
            },
            crate::svg::Chart {
                title: "latency".into(),
                x_label: "seconds".into(),
                y_label: "milliseconds".into(),
                series: vec![
                    crate::svg::Series {
                        name: "p50".into(),
                        color: "#2ca02c",
                        points: points
                            .iter()
                            .map(|(second, _, p50, _)| (*second as f64, *p50 as f64 / 1000.0))
                            .collect(),
                    },
                    crate::svg::Series {
                        name: "p99".into(),
                        color: "#d62728",
                        points: points
                            .iter()
                            .map(|(second, _, _, p99)| (*second as f64, *p99 as f64 / 1000.0))
                            .collect(),
                    },
                ],
            },
        ];
        std::fs::write(path, crate::svg::render(&charts))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Per second of the run: (second, messages, p50 µs, p99 µs).
fn timeline(report: &Report) -> Vec<(u64, u64, u64, u64)> {
    report
        .timeline
        .iter()
        .map(|(second, messages)| {
            let histogram = report
                .latency
                .seconds
                .get((*second as usize).saturating_sub(1));
            let q = |quantile| {
                histogram
                    .filter(|h| !h.is_empty())
                    .map_or(0, |h| h.value_at_quantile(quantile))
            };
            (*second, *messages, q(0.5), q(0.99))
        })
        .collect()
}

/// Open-loop e2e runs at fractions of the closed-loop maximum: latency against throughput.
pub fn sweep(args: LoadArgs, fractions: &[f64]) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let max = runtime.block_on(run_async(Mode::Produce, &args))?;
    let max_rate = max.messages as f64 / max.seconds;
    println!("maximum (closed loop): {max_rate:.0} msgs/s");
    let mut rows = Vec::new();
    for fraction in fractions {
        let run_args = LoadArgs {
            rate: Some(max_rate * fraction),
            ..args.clone()
        };
        let report = runtime.block_on(run_async(Mode::EndToEnd, &run_args))?;
        let achieved = report.messages as f64 / report.seconds;
        let q = |quantile| {
            if report.latency.total.is_empty() {
                0
            } else {
                report.latency.total.value_at_quantile(quantile)
            }
        };
        println!(
            "{:>3.0}% of max: target {:>9.0} msgs/s, achieved {:>9.0}; e2e latency us p50 {} p99 {} p99.9 {}",
            fraction * 100.0,
            max_rate * fraction,
            achieved,
            q(0.5),
            q(0.99),
            q(0.999)
        );
        rows.push(serde_json::json!({
            "fraction": fraction,
            "target_msgs_per_sec": max_rate * fraction,
            "msgs_per_sec": achieved,
            "latency_us": {"p50": q(0.5), "p99": q(0.99), "p999": q(0.999)},
        }));
    }
    if let Some(path) = &args.json {
        let json = serde_json::json!({"max_msgs_per_sec": max_rate, "runs": rows});
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        let point = |key: &str| -> Vec<(f64, f64)> {
            rows.iter()
                .map(|r| {
                    (
                        r["msgs_per_sec"].as_f64().unwrap_or(0.0),
                        r["latency_us"][key].as_f64().unwrap_or(0.0) / 1000.0,
                    )
                })
                .collect()
        };
        let chart = crate::svg::Chart {
            title: format!(
                "end-to-end latency vs throughput (open loop; max {max_rate:.0} msgs/s)"
            ),
            x_label: "messages/s".into(),
            y_label: "milliseconds".into(),
            series: vec![
                crate::svg::Series {
                    name: "p50".into(),
                    color: "#2ca02c",
                    points: point("p50"),
                },
                crate::svg::Series {
                    name: "p99".into(),
                    color: "#d62728",
                    points: point("p99"),
                },
                crate::svg::Series {
                    name: "p99.9".into(),
                    color: "#9467bd",
                    points: point("p999"),
                },
            ],
        };
        std::fs::write(path, crate::svg::render(&[chart]))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn summary(mode: Mode, args: &LoadArgs, report: &Report) -> (String, serde_json::Value) {
    let name = match mode {
        Mode::Produce => "produce",
        Mode::Consume => "consume",
        Mode::EndToEnd => "e2e",
    };
    let q = |quantile: f64| {
        if report.latency.total.is_empty() {
            0
        } else {
            report.latency.total.value_at_quantile(quantile)
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
        if report.latency.total.is_empty() { 0 } else { report.latency.total.max() }
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
            "max": if report.latency.total.is_empty() { 0 } else { report.latency.total.max() },
        },
        "timeline": timeline(report)
            .iter()
            .map(|(second, messages, p50, p99)| serde_json::json!({"second": second, "messages": messages, "p50_us": p50, "p99_us": p99}))
            .collect::<Vec<_>>(),
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
            "batch_grow_bytes": args.batch_grow_bytes,
            "linger_ms": args.linger_ms,
        },
    });
    (text, json)
}
