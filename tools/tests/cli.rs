//! The command-line contract of `keel` (the product brief's commands), read from its help.
//! (Being an integration test of this package also makes `cargo test` build the `keel`
//! binary before any test runs, so the end-to-end tests find it built.)

use std::process::Command;

fn help(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .arg("--help")
        .output()
        .expect("run keel --help");
    assert!(output.status.success(), "keel {args:?} --help failed");
    String::from_utf8(output.stdout).expect("UTF-8 help")
}

#[test]
fn help_names_every_command_of_the_contract() {
    let top = help(&[]);
    for command in [
        "topic",
        "partition",
        "cluster",
        "produce",
        "consume",
        "group",
    ] {
        assert!(top.contains(command), "keel --help lacks {command}:\n{top}");
    }
    let topic = help(&["topic"]);
    for command in ["create", "list", "describe", "delete"] {
        assert!(
            topic.contains(command),
            "keel topic --help lacks {command}:\n{topic}"
        );
    }
    let group = help(&["group"]);
    for command in ["list", "describe", "reset-offsets"] {
        assert!(
            group.contains(command),
            "keel group --help lacks {command}:\n{group}"
        );
    }
    let consume = help(&["consume"]);
    for flag in [
        "--group",
        "--from-beginning",
        "--max-messages",
        "--timeout-ms",
        "--format",
    ] {
        assert!(
            consume.contains(flag),
            "keel consume --help lacks {flag}:\n{consume}"
        );
    }
}
