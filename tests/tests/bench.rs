//! keel-bench smoke test: every load mode runs against a real broker and writes a JSON
//! report with the fields the brief promises.

use keel_tests::broker::bench_binary;
use keel_tests::in_process::InProcess;
use std::process::Command;

#[test]
fn produce_consume_and_e2e_reports_parse_and_have_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path(), &["--shards", "2"]);
    for (mode, extra) in [
        ("produce", vec!["--acks", "all"]),
        ("consume", vec![]),
        ("e2e", vec!["--rate", "2000"]),
    ] {
        let json = dir.path().join(format!("{mode}.json"));
        let mut args = vec![
            mode,
            "--topic",
            "smoke",
            "--partitions",
            "2",
            "--messages",
            "2000",
            "--message-size",
            "256",
            "--quiet",
            "--json",
        ];
        args.push(json.to_str().unwrap());
        args.extend(extra);
        let bootstrap = broker.addr.to_string();
        args.extend(["--bootstrap", bootstrap.as_str()]);
        let output = Command::new(bench_binary()).args(&args).output().unwrap();
        assert!(
            output.status.success(),
            "{mode}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        for field in [
            "messages",
            "bytes",
            "seconds",
            "msgs_per_sec",
            "mb_per_sec",
            "latency_us",
            "settings",
        ] {
            assert!(
                !report[field].is_null(),
                "{mode}: missing {field} in {report}"
            );
        }
        for quantile in ["p50", "p99", "p999", "max"] {
            assert!(
                report["latency_us"][quantile].is_u64(),
                "{mode}: latency {quantile}"
            );
        }
        assert!(
            report["messages"].as_u64().unwrap() >= 2000,
            "{mode}: {report}"
        );
        if mode != "consume" {
            assert!(
                report["latency_us"]["p50"].as_u64().unwrap() > 0,
                "{mode}: latency measured"
            );
        }
    }
}
