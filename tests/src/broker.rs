//! Starting a real `keel-server` and talking to it: a minimal blocking client built on
//! `keel-protocol`, for end-to-end tests.

use bytes::{Bytes, BytesMut};
use keel_protocol::api::{ApiKey, ErrorCode, Request, Response};
use keel_protocol::frame::{check_response, write_request};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The value of the series `name{labels}` in a Prometheus text page (labels as written,
/// e.g. `api="produce",error="MessageTooLarge",code="9"`), 0 when absent.
pub fn metric(page: &str, name: &str, labels: &str) -> f64 {
    let series = if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{labels}}}")
    };
    page.lines()
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == series).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// A running broker process, stopped (SIGKILL) when dropped unless stopped before.
pub struct Broker {
    child: Option<Child>,
    /// Native protocol address.
    pub addr: SocketAddr,
    /// Metrics address.
    pub metrics_addr: SocketAddr,
    /// Kafka wire protocol address (unless `--kafka-listen` is among the extra flags).
    pub kafka_addr: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    binary: PathBuf,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

/// Builds the workspace's binaries and examples once per test process, with the cargo
/// running the tests: `cargo test --workspace --no-run` builds them as the README's command
/// did just before (each binary's package has a test naming it), so under that command
/// this finds them built (0.3 s); `cargo build` would build them again as other units, and
/// `-p` with other features.
pub fn build_workspace() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let output = Command::new(cargo)
            .args(["test", "--workspace", "--no-run", "--quiet"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap_or_else(|e| panic!("run cargo test --workspace --no-run: {e}"));
        assert!(
            output.status.success(),
            "building the workspace failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    });
}

/// A workspace binary, built (next to the test executable's profile directory).
fn built(binary: &str) -> PathBuf {
    build_workspace();
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<binary>
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory")
        .join(binary);
    assert!(path.exists(), "{} missing after build", path.display());
    path
}

/// The `keel-server` binary of this workspace.
pub fn server_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| built("keel-server")).clone()
}

/// The `keel-bench` binary of this workspace.
pub fn bench_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| built("keel-bench")).clone()
}

/// The `keel` tool binary of this workspace.
pub fn tool_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| built("keel")).clone()
}

/// A port free on 127.0.0.1 now, never handed out before by this process, and below the
/// kernel's ephemeral range (32768+): a broker stopped by a test gets its ports back on
/// restart, because no outgoing connection (which takes ephemeral ports) and no other
/// broker of the test process (which takes its ports from here) can hold them meanwhile.
/// (Port 0 was used before: a port freed by a killed node could be handed to another test's
/// broker, or be an outgoing connection's local port, before the node came back.)
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    // Processes started one after another (cargo runs test binaries in turn) start apart.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let _ = NEXT.compare_exchange(
        0,
        1 + (std::process::id() % 60) * 200,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 127.0.0.1:{FIRST}..{}", FIRST + SPAN)
}

impl Broker {
    /// Starts `binary` on free ports with `data_dir`, waiting for its ready line.
    pub fn start(binary: &Path, data_dir: &Path, extra: &[&str]) -> Broker {
        Broker::start_with_env(binary, data_dir, extra, &[])
    }

    /// Starts the workspace's `keel-server` with `settings` as its `keel.toml` (written in
    /// `dir`, data in `dir/data`) and `extra` flags.
    pub fn with_config(dir: &Path, settings: &str, extra: &[&str]) -> Broker {
        let config = dir.join("keel.toml");
        std::fs::write(&config, settings).expect("write keel.toml");
        let mut args = extra.to_vec();
        let config = config.to_str().expect("UTF-8 path");
        args.extend(["--config", config]);
        Broker::start(&server_binary(), &dir.join("data"), &args)
    }

    /// As [`Broker::start`], with extra environment variables (fault injection).
    pub fn start_with_env(
        binary: &Path,
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Broker {
        let mut broker = Broker {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            kafka_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            data_dir: data_dir.to_owned(),
            binary: binary.to_owned(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        broker.spawn();
        broker
    }

    /// Starts the same broker again, expecting it to refuse to start (or stop by itself)
    /// within `timeout`: its exit code and standard error.
    pub fn run_to_exit(&mut self, timeout: Duration) -> (Option<i32>, String) {
        assert!(self.child.is_none(), "stop before restarting");
        let mut child = self
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start keel-server");
        let deadline = Instant::now() + timeout;
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("keel-server did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = child.wait_with_output().expect("output");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), stderr)
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--metrics-listen")
            .arg(self.metrics_addr.to_string())
            .args(
                (!self.extra.iter().any(|a| a == "--kafka-listen"))
                    .then(|| ["--kafka-listen".to_owned(), self.kafka_addr.to_string()])
                    .into_iter()
                    .flatten(),
            )
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            // glibc's fatal messages (heap corruption) go to stderr, into the test log.
            .env("LIBC_FATAL_STDERR_", "1")
            .env(
                "RUST_LOG",
                std::env::var("KEEL_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        command
    }

    fn spawn(&mut self) {
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start keel-server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("listening on") => break,
                Ok(_) => continue,
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "keel-server did not print its ready line within 60 s (exit: {:?})",
                        child.try_wait()
                    );
                }
            }
        }
        self.child = Some(child);
    }

    /// True while the process was started and not stopped by the test.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `signal` and waits for the process to exit; returns its exit status.
    pub fn stop_with(&mut self, signal: i32) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        child.wait().expect("wait")
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.stop_with(libc::SIGTERM)
    }

    /// Starts the same broker again (same ports and data).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop before restarting");
        self.spawn();
    }

    /// A connected client.
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// The metrics page.
    pub fn metrics(&self) -> String {
        metrics_page(self.metrics_addr)
    }
}

/// A broker a test talks to, in a process of its own or in the test process.
pub trait Serving {
    /// Its native protocol address.
    fn native_addr(&self) -> SocketAddr;
}

impl Serving for Broker {
    fn native_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// The metrics page served at `addr`.
pub fn metrics_page(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).expect("metrics connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A blocking client speaking the native protocol.
pub struct Client {
    stream: TcpStream,
    buffer: BytesMut,
    next_correlation: u32,
}

/// A response frame as received.
#[derive(Debug)]
pub struct RawResponse {
    /// Echoed correlation id.
    pub correlation_id: u32,
    /// Frame-level error.
    pub error_code: ErrorCode,
    /// Body.
    pub body: Bytes,
}

impl Client {
    /// Connects, retrying briefly.
    pub fn connect(addr: SocketAddr) -> Client {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match TcpStream::connect(addr) {
                Ok(stream) => {
                    stream
                        .set_read_timeout(Some(Duration::from_secs(30)))
                        .unwrap();
                    stream.set_nodelay(true).unwrap();
                    return Client {
                        stream,
                        buffer: BytesMut::new(),
                        next_correlation: 1,
                    };
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("connect {addr}: {e}"),
            }
        }
    }

    /// Closes the sending half (the broker sees end of input).
    /// The broker address this client is connected to.
    pub fn addr(&self) -> SocketAddr {
        self.stream.peer_addr().expect("connected")
    }

    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    /// Writes raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends a request without waiting; returns its correlation id.
    pub fn send(&mut self, request: &Request) -> u32 {
        let correlation = self.next_correlation;
        self.next_correlation += 1;
        let mut body = BytesMut::new();
        request
            .encode(&mut body)
            .expect("test requests fit the wire");
        let mut frame = BytesMut::new();
        write_request(&mut frame, request.api_key() as u16, 0, correlation, &body);
        self.stream.write_all(&frame).expect("send request");
        correlation
    }

    /// Reads the next response frame; `None` when the connection closed.
    pub fn receive_raw(&mut self) -> Option<RawResponse> {
        loop {
            match check_response(&self.buffer, 256 << 20) {
                Ok(Some(frame)) => {
                    let bytes = self.buffer.split_to(frame.frame_len).freeze();
                    return Some(RawResponse {
                        correlation_id: frame.header.correlation_id.get(),
                        error_code: ErrorCode::from_u16(frame.header.error_code.get()),
                        body: bytes.slice(frame.body()),
                    });
                }
                Ok(None) => {}
                Err(e) => panic!("bad response frame: {e}"),
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(read) => self.buffer.extend_from_slice(&chunk[..read]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                    ) =>
                {
                    return None
                }
                Err(e) => panic!("read response: {e}"),
            }
        }
    }

    /// Sends a request and decodes its response.
    pub fn call(&mut self, request: Request) -> Response {
        let api = request.api_key();
        let correlation = self.send(&request);
        let raw = self
            .receive_raw()
            .expect("connection closed before the response");
        assert_eq!(
            raw.correlation_id, correlation,
            "responses come back in order"
        );
        assert_eq!(
            raw.error_code,
            ErrorCode::None,
            "frame-level error for {api:?}"
        );
        Response::decode(api, raw.body).expect("decodable response")
    }

    /// Decodes a response for `api` received later (pipelining).
    pub fn receive(&mut self, api: ApiKey) -> (u32, Response) {
        let raw = self
            .receive_raw()
            .expect("connection closed before the response");
        assert_eq!(raw.error_code, ErrorCode::None);
        (
            raw.correlation_id,
            Response::decode(api, raw.body).expect("decodable response"),
        )
    }

    /// Creates a topic with `partitions` partitions and no configs; panics unless created.
    pub fn create_topic(&mut self, name: &str, partitions: u32) {
        let Response::CreateTopics { topics } = self.call(Request::CreateTopics {
            topics: vec![keel_protocol::api::NewTopic {
                name: name.into(),
                partitions,
                replication_factor: 1,
                configs: vec![],
            }],
        }) else {
            panic!("CreateTopics answered with another response")
        };
        assert_eq!(topics[0].error, ErrorCode::None, "creating {name}");
    }

    /// (offset, key, value) of every record of a partition up to its high watermark,
    /// checking every batch's CRC.
    pub fn read_partition(
        &mut self,
        topic: &str,
        partition: u32,
    ) -> Vec<(i64, Option<String>, String)> {
        let text = |b: Option<Bytes>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
        let mut out = Vec::new();
        for batch in self.read_batches(topic, partition) {
            let view = keel_protocol::batch::BatchView::new(&batch).expect("checked batch");
            for record in view.records().expect("valid records") {
                out.push((
                    record.offset,
                    text(record.key),
                    text(record.value).unwrap_or_default(),
                ));
            }
        }
        out
    }

    /// Every batch of a partition up to its high watermark, whole and CRC-checked.
    pub fn read_batches(&mut self, topic: &str, partition: u32) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let Response::Fetch { topics } = self.call(Request::Fetch {
                max_wait_ms: 0,
                min_bytes: 1,
                max_bytes: 1 << 20,
                topics: vec![keel_protocol::api::TopicEntries {
                    topic: topic.into(),
                    partitions: vec![keel_protocol::api::FetchPartition {
                        partition,
                        fetch_offset: offset,
                        partition_max_bytes: 1 << 20,
                    }],
                }],
            }) else {
                panic!("Fetch answered with another response")
            };
            let records = topics[0].partitions[0].records.clone();
            if records.is_empty() {
                return out;
            }
            let mut at = 0;
            while at < records.len() {
                let view = keel_protocol::batch::BatchView::new_verified(&records[at..])
                    .expect("valid batch");
                offset = view.next_offset();
                let len = view.len();
                out.push(records.slice(at..at + len));
                at += len;
            }
        }
    }

    /// Produces `records` (whole batches) to a partition; the partition's error code.
    pub fn produce(&mut self, topic: &str, partition: u32, acks: i8, records: Bytes) -> ErrorCode {
        let Response::Produce { topics } = self.call(Request::Produce {
            acks,
            timeout_ms: 30_000,
            topics: vec![keel_protocol::api::TopicEntries {
                topic: topic.into(),
                partitions: vec![keel_protocol::api::ProducePartition { partition, records }],
            }],
        }) else {
            panic!("Produce answered with another response")
        };
        topics[0].partitions[0].error
    }
}
