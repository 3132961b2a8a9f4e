//! The command-line contract of `keel-server` (the product brief's flags), read from its
//! `--help`. (Being an integration test of this package also makes `cargo test` build the
//! `keel-server` binary before any test runs, so the end-to-end tests find it built.)

use std::process::Command;

#[test]
fn help_names_every_flag_of_the_contract() {
    let output = Command::new(env!("CARGO_BIN_EXE_keel-server"))
        .arg("--help")
        .output()
        .expect("run keel-server --help");
    assert!(output.status.success(), "keel-server --help failed");
    let help = String::from_utf8(output.stdout).expect("UTF-8 help");
    for flag in [
        "--config",
        "--data-dir",
        "--listen",
        "--metrics-listen",
        "--shards",
        "--node-id",
        "--fsync",
        "--retention-ms",
        "--retention-bytes",
        "--segment-bytes",
        "--controller-listen",
        "--controller-voters",
        "--kafka-listen",
        "--advertised-listen",
        "--advertised-kafka-listen",
    ] {
        assert!(
            help.contains(flag),
            "keel-server --help lacks {flag}:\n{help}"
        );
    }
}

#[test]
fn an_unknown_flag_is_refused_with_usage() {
    let output = Command::new(env!("CARGO_BIN_EXE_keel-server"))
        .arg("--no-such-flag")
        .output()
        .expect("run keel-server");
    assert_eq!(output.status.code(), Some(2), "clap's usage error status");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--no-such-flag") && stderr.contains("Usage"),
        "{stderr}"
    );
}
