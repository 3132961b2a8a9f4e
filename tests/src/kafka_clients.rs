//! The Kafka clients the conformance tests drive (`tests/kafka/`): installed into
//! `target/` on first use by `tests/kafka/install.sh`, then run as child processes against a
//! broker's Kafka listener.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where the clients are.
pub struct Clients {
    /// The venv's Python (confluent-kafka, kafka-python, aiokafka).
    pub python: PathBuf,
    /// kafkajs and its codecs.
    pub node_modules: PathBuf,
    /// The conformance scripts.
    pub scripts: PathBuf,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// Installs the clients once per test process (the script itself skips what is there).
pub fn clients() -> &'static Clients {
    static INSTALLED: std::sync::OnceLock<Clients> = std::sync::OnceLock::new();
    INSTALLED.get_or_init(|| {
        let root = workspace();
        let status = Command::new("bash")
            .arg(root.join("tests/kafka/install.sh"))
            .status()
            .expect("run tests/kafka/install.sh");
        assert!(
            status.success(),
            "installing the Kafka clients failed (tests/kafka/install.sh; needs python3 with venv, npm, and kcat or root to install it)"
        );
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| root.join("target"), PathBuf::from);
        Clients {
            python: target.join("kafka-venv/bin/python"),
            node_modules: target.join("kafka-node/node_modules"),
            scripts: root.join("tests/kafka"),
        }
    })
}

/// Runs `program args` with a deadline, returning its output; panics with the output when
/// it fails, times out, or does not print `PASSED`.
pub fn run(program: &Path, args: &[&str], env: &[(&str, &str)], timeout: Duration) -> String {
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .env("KAFKAJS_NO_PARTITIONER_WARNING", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
    // Both pipes are drained while the child runs: a client logging more than a pipe holds
    // (librdkafka retrying a refused connection every 50 ms) would otherwise block on its
    // next write and never finish.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut out);
            }
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + timeout;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.wait().expect("wait");
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(
        status.success() && stdout.contains("PASSED"),
        "{} {args:?} failed ({status:?}):\n{stdout}\n{stderr}",
        program.display(),
    );
    stdout
}

/// Runs `tests/kafka/sasl_test.py CLIENT BOOTSTRAP PHASE PREFIX` with the security settings
/// in `env` (KEEL_SECURITY_PROTOCOL, KEEL_SASL_*, KEEL_SSL_*: see the script).
pub fn security_python(
    bootstrap: &str,
    client: &str,
    phase: &str,
    prefix: &str,
    env: &[(&str, &str)],
) {
    let clients = clients();
    let script = clients.scripts.join("sasl_test.py");
    run(
        &clients.python,
        &[script.to_str().unwrap(), client, bootstrap, phase, prefix],
        env,
        Duration::from_secs(180),
    );
}

/// Runs `tests/kafka/kafkajs_sasl_test.js BOOTSTRAP PHASE PREFIX` with the security
/// settings in `env`.
pub fn security_kafkajs(bootstrap: &str, phase: &str, prefix: &str, env: &[(&str, &str)]) {
    let clients = clients();
    let script = clients.scripts.join("kafkajs_sasl_test.js");
    let mut env = env.to_vec();
    env.push(("KEEL_NODE_MODULES", clients.node_modules.to_str().unwrap()));
    run(
        Path::new("node"),
        &[script.to_str().unwrap(), bootstrap, phase, prefix],
        &env,
        Duration::from_secs(180),
    );
}

/// Runs kcat with `args` (and `stdin`), returning its output; panics when it fails.
pub fn kcat(args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("kcat")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kcat (tests/kafka/install.sh installs it)");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "kcat {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `partition key` lines of a whole topic, read with kcat from `offset`.
pub fn kcat_read(bootstrap: &str, topic: &str, offset: &str) -> Vec<(u32, String, String)> {
    let out = kcat(
        &[
            "-b",
            bootstrap,
            "-C",
            "-t",
            topic,
            "-o",
            offset,
            "-e",
            "-q",
            "-f",
            "%p %k %s\\n",
        ],
        None,
    );
    out.lines()
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            let partition = parts.next().unwrap().parse().unwrap();
            (
                partition,
                parts.next().unwrap().to_owned(),
                parts.next().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Produces `lines` (`key:value` each) to `topic` with kcat: acks=all, idempotent, Kafka's
/// murmur2 partitioner, and `extra` flags.
pub fn kcat_produce_keyed(bootstrap: &str, topic: &str, lines: &str, extra: &[&str]) {
    let mut args = vec!["-b", bootstrap, "-P", "-t", topic, "-K:"];
    args.extend_from_slice(extra);
    args.extend([
        "-X",
        "partitioner=murmur2_random",
        "-X",
        "acks=all",
        "-X",
        "enable.idempotence=true",
    ]);
    kcat(&args, Some(lines));
}

/// DeleteRecords of partition 0 of `topic` before `offset` (confluent-kafka's admin client,
/// through `kafka`); the new low watermark.
pub fn delete_records(kafka: &str, topic: &str, offset: i64) -> i64 {
    let code = "import sys\n\
        from confluent_kafka import TopicPartition\n\
        from confluent_kafka.admin import AdminClient\n\
        a = AdminClient({'bootstrap.servers': sys.argv[1]})\n\
        tp = TopicPartition(sys.argv[2], 0, int(sys.argv[3]))\n\
        for tp, f in a.delete_records([tp]).items():\n\
        \x20   print('LOW', f.result(30).low_watermark)\n\
        print('PASSED')\n";
    let out = python(code, &[kafka, topic, &offset.to_string()]);
    out.lines()
        .find_map(|l| l.strip_prefix("LOW ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no low watermark: {out}"))
}

/// Runs a Python snippet (`python -c CODE ARGS…`) with the Kafka clients installed; it must
/// print `PASSED`. Its output.
pub fn python(code: &str, args: &[&str]) -> String {
    let mut all = vec!["-c", code];
    all.extend(args);
    run(&clients().python, &all, &[], Duration::from_secs(120))
}
