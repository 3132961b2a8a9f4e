//! Running the `keel` tool in tests.

use crate::broker::{tool_binary, Serving};
use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs `keel` (against `broker` when given) with `stdin`, waiting for it to exit.
pub fn keel(broker: Option<&dyn Serving>, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(tool_binary());
    if let Some(broker) = broker {
        command
            .arg("--bootstrap")
            .arg(broker.native_addr().to_string());
    }
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run keel");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

/// The standard output of a successful run; panics with both outputs otherwise.
pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "keel failed ({:?}): {}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}
