//! Running documented command lines as written: `keel-server` and `keel` lines taken from a
//! Markdown file, their `127.0.0.1` ports mapped to free ones and their data directories
//! into a temporary one.

use crate::broker::{free_port, server_binary};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Processes a recipe started, killed when the test ends however it ends.
pub struct Processes(pub Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The lines of `file` (relative to the workspace) starting with `prefix`, split into
/// arguments after the program (single quotes, as a shell reads them, removed).
pub fn lines(file: &str, prefix: &str) -> Vec<Vec<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .map(|a| a.trim_matches('\'').to_owned())
                .collect()
        })
        .collect()
}

/// Each `127.0.0.1:PORT` in `arg` with its port mapped to a free one (the same port to the
/// same free one).
pub fn map_ports(arg: &str, ports: &mut HashMap<String, u16>) -> String {
    arg.split(',')
        .map(|part| match part.rsplit_once("127.0.0.1:") {
            Some((head, port)) if port.parse::<u16>().is_ok() => {
                let free = *ports.entry(port.to_owned()).or_insert_with(free_port);
                format!("{head}127.0.0.1:{free}")
            }
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A command line's arguments with ports mapped and the value of `--data-dir` put in `dir`.
pub fn mapped(args: &[String], dir: &Path, ports: &mut HashMap<String, u16>) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    for (i, arg) in args.iter().enumerate() {
        let data_dir = i > 0 && args[i - 1] == "--data-dir";
        out.push(if data_dir {
            dir.join(arg).display().to_string()
        } else {
            map_ports(arg, ports)
        });
    }
    out
}

/// Starts `keel-server args` and waits for its ready line.
pub fn start_server(args: &[String]) -> Child {
    let mut child = Command::new(server_binary())
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start keel-server");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap_or(0) > 0 && Instant::now() < deadline,
            "{args:?} did not print its ready line"
        );
    }
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    child
}
