//! keel-bench runs end to end on a small workload and reports every figure.

use std::process::Command;

#[test]
fn engine_benchmark_smoke() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_keel-bench"))
        .args([
            "engine",
            "--bytes",
            "8388608",
            "--seconds",
            "0.2",
            "--rounds",
            "1",
            "--appenders",
            "4",
            "--dir",
        ])
        .arg(dir.path().join("data"))
        .output()
        .expect("run keel-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "keel-bench failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    for needle in [
        "raw O_DIRECT",
        "fsync=never",
        "fsync=always, 1 appender",
        "fsync=always, 4 appender",
        "group commit",
        "appends per fsync",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    let leftovers = std::fs::read_dir(dir.path().join("data")).unwrap().count();
    assert_eq!(leftovers, 0, "the benchmark cleans up its files");
}
