//! The `keel` tool never hangs or panics on bad input: usage errors exit 2 with a message,
//! failures exit 1 saying what was and was not done, and a closed pipe ends quietly.

use keel_tests::broker::tool_binary;
use keel_tests::in_process::InProcess;
use keel_tests::tool::{keel, ok};
use std::process::Command;
use std::time::{Duration, Instant};

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_tool_pointed_at_the_metrics_port_fails_fast() {
    // Goal: `keel --bootstrap <metrics port> topic list` once waited forever.
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path(), &[]);
    let started = Instant::now();
    let output = Command::new(tool_binary())
        .args([
            "--bootstrap",
            &broker.metrics_addr.to_string(),
            "topic",
            "list",
        ])
        .output()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("not a Keel broker"),
        "{}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains("panicked"));
}

#[test]
fn usage_errors_exit_2_with_a_message_and_no_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path(), &[]);
    ok(&keel(Some(&broker), &["topic", "create", "t"], None));
    ok(&keel(Some(&broker), &["produce", "t"], Some("a\nb\n")));
    let huge_key = format!("{}=1", "k".repeat(70_000));
    for (args, says) in [
        (
            vec!["topic", "create", "y", "--config", huge_key.as_str()],
            "limit is 65535",
        ),
        (
            vec!["topic", "create", "y", "--config", "novalue"],
            "key=value",
        ),
        (vec!["produce", "t", "--acks", "2"], "--acks"),
        (vec!["consume", "t", "--format", "xml"], "--format"),
        (
            vec!["consume", "t", "--partition", "0", "--offset", "-1"],
            "0 or more",
        ),
        (
            vec!["group", "reset-offsets", "g", "--topic", "t"],
            "say where to",
        ),
        (vec!["no-such-command"], "unrecognized subcommand"),
    ] {
        let output = keel(Some(&broker), &args, Some(""));
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(says),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(!stderr(&output).contains("panicked"), "{args:?}");
    }
    // An offset past the high watermark is an error naming the readable range.
    let output = keel(
        Some(&broker),
        &[
            "consume",
            "t",
            "--partition",
            "0",
            "--offset",
            "99",
            "--timeout-ms",
            "100",
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("readable offsets are 0..2"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_line_over_the_limit_stops_produce_saying_which_and_what_was_stored() {
    // Goal: the tool names the line, its size and the limit; nothing after it is stored
    // and everything before it is.
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path(), &[]);
    ok(&keel(Some(&broker), &["topic", "create", "big"], None));
    let input = format!("first\nsecond\n{}\nafter\n", "x".repeat(9 << 20));
    let output = keel(Some(&broker), &["produce", "big"], Some(&input));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("line 3:"), "{message}");
    assert!(
        message.contains(&format!("{} bytes", (9 << 20) + 32)),
        "{message}"
    );
    assert!(message.contains("over the limit of"), "{message}");
    assert!(
        message.contains("2 of the 2 line(s) before it stored"),
        "{message}"
    );
    let consumed = ok(&keel(
        Some(&broker),
        &["consume", "big", "--from-beginning", "--timeout-ms", "500"],
        None,
    ));
    assert_eq!(consumed, "first\nsecond\n");
}

#[test]
fn a_closed_pipe_ends_the_tool_quietly_with_status_0() {
    // Goal: `keel consume ... | head` and `keel topic list | head` end without an error.
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path(), &[]);
    ok(&keel(Some(&broker), &["topic", "create", "many"], None));
    let input: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    ok(&keel(Some(&broker), &["produce", "many"], Some(&input)));
    for _ in 0..50 {
        ok(&keel(
            Some(&broker),
            &["topic", "create", &format!("t{}", rand_suffix())],
            None,
        ));
    }
    let tool = tool_binary();
    for command in [
        format!(
            "{} --bootstrap {} consume many --from-beginning --timeout-ms 2000 | head -n 3",
            tool.display(),
            broker.addr
        ),
        format!(
            "{} --bootstrap {} topic list | head -n 1",
            tool.display(),
            broker.addr
        ),
    ] {
        let output = Command::new("bash")
            .arg("-c")
            .arg(format!("set -o pipefail; {command}"))
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{command}: {}",
            stderr(&output)
        );
        assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
        assert!(
            !stderr(&output).contains("Broken pipe"),
            "{}",
            stderr(&output)
        );
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
