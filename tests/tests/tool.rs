//! The `keel` tool end to end against a real broker, and offline on its data directory.

use keel_tests::broker::{server_binary, Broker};
use keel_tests::in_process::InProcess;
use keel_tests::tool::{keel, ok};

#[test]
fn ten_thousand_lines_through_produce_and_consume() {
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path(), &["--shards", "2"]);
    ok(&keel(
        Some(&broker),
        &[
            "topic",
            "create",
            "lines",
            "--partitions",
            "3",
            "--config",
            "retention.ms=86400000",
        ],
        None,
    ));
    let input: String = (0..10_000).map(|i| format!("line number {i}\n")).collect();
    let produced = keel(Some(&broker), &["produce", "lines"], Some(&input));
    ok(&produced);
    assert!(String::from_utf8_lossy(&produced.stderr).contains("produced 10000"));
    let consumed = ok(&keel(
        Some(&broker),
        &[
            "consume",
            "lines",
            "--from-beginning",
            "--max-messages",
            "10000",
            "--timeout-ms",
            "5000",
        ],
        None,
    ));
    let mut got: Vec<&str> = consumed.lines().collect();
    let mut want: Vec<&str> = input.lines().collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "every line exactly once");

    let described = ok(&keel(Some(&broker), &["topic", "describe", "lines"], None));
    assert!(
        described.contains("topic lines (3 partitions)"),
        "{described}"
    );
    assert!(described.contains("retention.ms=86400000"), "{described}");
    assert!(ok(&keel(Some(&broker), &["topic", "list"], None))
        .lines()
        .any(|l| l == "lines"));

    // Keys, a fixed partition, JSON.
    ok(&keel(
        Some(&broker),
        &[
            "produce",
            "lines",
            "--key-separator",
            ":",
            "--partition",
            "2",
            "--acks",
            "1",
        ],
        Some("alice:hello\nbob:world\n"),
    ));
    let keyed = ok(&keel(
        Some(&broker),
        &[
            "consume",
            "lines",
            "--partition",
            "2",
            "--offset",
            "0",
            "--print-key",
            "--timeout-ms",
            "1000",
        ],
        None,
    ));
    assert!(keyed.lines().any(|l| l == "alice\thello"), "{keyed}");
    let json = ok(&keel(
        Some(&broker),
        &[
            "consume",
            "lines",
            "--partition",
            "2",
            "--offset",
            "0",
            "--format",
            "json",
            "--timeout-ms",
            "1000",
        ],
        None,
    ));
    let last: serde_json::Value = serde_json::from_str(json.lines().last().unwrap()).unwrap();
    assert_eq!(last["key"], "bob");
    assert_eq!(last["value"], "world");
    assert_eq!(last["partition"], 2);
}

#[test]
fn groups_show_lag_and_reset() {
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path(), &[]);
    ok(&keel(
        Some(&broker),
        &["topic", "create", "jobs", "--partitions", "2"],
        None,
    ));
    let input: String = (0..1000).map(|i| format!("job {i}\n")).collect();
    ok(&keel(Some(&broker), &["produce", "jobs"], Some(&input)));
    let read = ok(&keel(
        Some(&broker),
        &[
            "consume",
            "jobs",
            "--group",
            "workers",
            "--from-beginning",
            "--max-messages",
            "400",
            "--timeout-ms",
            "5000",
        ],
        None,
    ));
    assert_eq!(read.lines().count(), 400);
    let described = ok(&keel(
        Some(&broker),
        &["group", "describe", "workers"],
        None,
    ));
    let lag: i64 = described
        .lines()
        .filter(|l| l.starts_with("jobs "))
        .map(|l| l.split_whitespace().last().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(lag, 600, "{described}");
    assert!(ok(&keel(Some(&broker), &["group", "list"], None)).contains("workers\tEmpty"));
    ok(&keel(
        Some(&broker),
        &[
            "group",
            "reset-offsets",
            "workers",
            "--topic",
            "jobs",
            "--to-earliest",
        ],
        None,
    ));
    let described = ok(&keel(
        Some(&broker),
        &["group", "describe", "workers"],
        None,
    ));
    let lag: i64 = described
        .lines()
        .filter(|l| l.starts_with("jobs "))
        .map(|l| l.split_whitespace().last().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(lag, 1000, "{described}");
    // The group resumes where it committed: the next 600 after a fresh read of 400.
    let again = ok(&keel(
        Some(&broker),
        &[
            "consume",
            "jobs",
            "--group",
            "workers",
            "--max-messages",
            "1000",
            "--timeout-ms",
            "3000",
        ],
        None,
    ));
    assert_eq!(
        again.lines().count(),
        1000,
        "after the reset everything is read again"
    );
}

#[test]
fn log_dump_and_verify_on_real_and_corrupted_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&server_binary(), dir.path(), &["--shards", "2"]);
    ok(&keel(
        Some(&broker),
        &["topic", "create", "disk", "--partitions", "1"],
        None,
    ));
    let input: String = (0..500).map(|i| format!("record {i}\n")).collect();
    ok(&keel(Some(&broker), &["produce", "disk"], Some(&input)));
    assert!(broker.stop().success());
    let segment = dir.path().join("disk-0").join("00000000000000000000.log");
    let dump = ok(&keel(
        None,
        &["log", "dump", segment.to_str().unwrap()],
        None,
    ));
    assert!(dump.contains("baseOffset: 0"), "{dump}");
    assert!(dump.contains("isValid: true"));
    assert!(
        dump.contains("value: \"record 499\""),
        "{}",
        &dump[dump.len().saturating_sub(500)..]
    );
    let verified = ok(&keel(
        None,
        &["log", "verify", dir.path().to_str().unwrap()],
        None,
    ));
    assert!(verified.starts_with("ok: "), "{verified}");

    // Flip a byte in the middle of the segment.
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&segment, bytes).unwrap();
    let failed = keel(None, &["log", "verify", dir.path().to_str().unwrap()], None);
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("00000000000000000000.log") && stderr.contains("bad batch at byte"),
        "{stderr}"
    );
}

#[test]
fn errors_say_what_to_do_with_the_right_exit_code() {
    let unreachable = keel(None, &["--bootstrap", "127.0.0.1:1", "topic", "list"], None);
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("not reachable at 127.0.0.1:1"));
    let usage = keel(None, &["topic", "frobnicate"], None);
    assert_eq!(usage.status.code(), Some(2));
    let completions = ok(&keel(None, &["completions", "bash"], None));
    assert!(completions.contains("keel"));
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path(), &[]);
    let missing = keel(
        Some(&broker),
        &["consume", "nothing-here", "--timeout-ms", "100"],
        None,
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("topic nothing-here does not exist"));
    let missing = keel(Some(&broker), &["produce", "nothing-here"], Some("x\n"));
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("does not exist"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}
