//! docs/security.md's walk-through, run as written: its `bash` blocks one after another in
//! an empty directory, with the workspace's `keel-server` and `keel`, openssl, kcat and the
//! test clients' Python (confluent-kafka) on the PATH. Three brokers with SASL_SSL, mTLS
//! between them and the authorizer on: the admin writes through one broker, alice reads
//! through another, and her write is refused.

use keel_tests::broker::server_binary;
use keel_tests::kafka_clients::{clients, run};
use std::time::Duration;

/// The `bash` blocks of the walk-through section.
fn walkthrough() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/security.md"))
        .expect("docs/security.md");
    let section = doc
        .split("\n## ")
        .find(|s| s.starts_with("Walk-through"))
        .expect("the walk-through section");
    let mut script = String::new();
    let mut inside = false;
    for line in section.lines() {
        match (inside, line) {
            (false, "```bash") => inside = true,
            (true, "```") => inside = false,
            (true, line) => script += &format!("{line}\n"),
            _ => {}
        }
    }
    script
}

/// Kills what the walk-through started, however the test ends.
struct Started(std::path::PathBuf);

impl Drop for Started {
    fn drop(&mut self) {
        let pids = std::fs::read_to_string(self.0.join("pids")).unwrap_or_default();
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: kill(2) of the processes the walk-through started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[test]
fn the_security_walkthrough_works_as_written() {
    let clients = clients();
    let dir = tempfile::tempdir().unwrap();
    let _started = Started(dir.path().to_owned());
    let script = format!(
        "cd {}\n{}\necho PASSED\n",
        dir.path().display(),
        walkthrough()
    );
    let bin = server_binary().parent().unwrap().to_owned();
    let venv = clients.python.parent().unwrap().to_owned();
    let path = format!(
        "{}:{}:{}",
        bin.display(),
        venv.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = run(
        std::path::Path::new("bash"),
        &["-euo", "pipefail", "-c", &script],
        &[("PATH", &path), ("RUST_LOG", "warn")],
        Duration::from_secs(240),
    );
    assert_eq!(
        out.matches(" alive").count(),
        3,
        "three brokers alive:\n{out}"
    );
    assert!(out.contains("ACLs created"), "{out}");
    assert!(
        out.contains("k1=v1\nk2=v2\n"),
        "alice reads what admin wrote:\n{out}"
    );
    assert!(
        out.contains("Topic authorization failed"),
        "alice may not write:\n{out}"
    );
    assert!(
        out.contains("bob\tSCRAM-SHA-512\titerations=4096"),
        "keel user create and list:\n{out}"
    );
    assert!(
        out.contains("ALLOW User:bob WRITE TOPIC:orders. PREFIXED from *"),
        "keel acl add and list:\n{out}"
    );
    assert!(
        out.contains("k1=v1\nk2=v2\nk3=from-bob\n"),
        "bob writes once his ACL is applied:\n{out}"
    );
}
