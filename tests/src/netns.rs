//! A cluster whose nodes each live in their own network namespace, joined by a bridge, so a
//! test can cut one node off from every other (its link down) while it keeps running.
//! Needs root (CAP_NET_ADMIN) and `ip` (iproute2); [`Net::new`] says so when either is
//! missing. Everything made is removed when the [`Net`] is dropped.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running `ip` (install iproute2): {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(())
}

/// Namespaces `{prefix}n{i}` with address `10.{a}.{b}.{i}`, each reachable from the test
/// (the bridge `{prefix}br` holds `10.{a}.{b}.254`).
pub struct Net {
    prefix: String,
    subnet: (u8, u8),
    count: usize,
}

impl Net {
    /// Makes `count` namespaces on one bridge.
    ///
    /// # Panics
    /// Without root or iproute2, naming what is missing.
    pub fn new(count: usize) -> Net {
        let pid = std::process::id();
        let net = Net {
            prefix: format!("k{}", pid % 100_000),
            subnet: (100 + (pid % 100) as u8, ((pid / 100) % 250) as u8),
            count,
        };
        if let Err(e) = net.make() {
            panic!("this test needs network namespaces (run as root with iproute2 installed): {e}");
        }
        net
    }

    fn make(&self) -> Result<(), String> {
        let br = format!("{}br", self.prefix);
        let (a, b) = self.subnet;
        ip(&["link", "add", &br, "type", "bridge"])?;
        ip(&["addr", "add", &format!("10.{a}.{b}.254/24"), "dev", &br])?;
        ip(&["link", "set", &br, "up"])?;
        for i in 1..=self.count {
            let (ns, host, inner) = self.names(i);
            ip(&["netns", "add", &ns])?;
            ip(&["link", "add", &host, "type", "veth", "peer", "name", &inner])?;
            ip(&["link", "set", &inner, "netns", &ns])?;
            ip(&["link", "set", &host, "master", &br])?;
            ip(&["link", "set", &host, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.{a}.{b}.{i}/24"),
                "dev",
                &inner,
            ])?;
            ip(&["-n", &ns, "link", "set", &inner, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    fn names(&self, i: usize) -> (String, String, String) {
        (
            format!("{}n{i}", self.prefix),
            format!("{}v{i}", self.prefix),
            format!("{}e{i}", self.prefix),
        )
    }

    /// Node `i`'s address (1-based).
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet.0, self.subnet.1, i as u8)
    }

    /// Node `i`'s namespace name.
    pub fn namespace(&self, i: usize) -> String {
        self.names(i).0
    }

    /// Cuts node `i` off from every other node and from the test.
    pub fn isolate(&self, i: usize) {
        ip(&["link", "set", &self.names(i).1, "down"]).expect("link down");
    }

    /// Joins node `i` again.
    pub fn heal(&self, i: usize) {
        ip(&["link", "set", &self.names(i).1, "up"]).expect("link up");
    }

    /// Runs `f` on a thread inside node `i`'s namespace (its sockets are that node's).
    pub fn inside<T: Send + 'static>(&self, i: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = PathBuf::from("/var/run/netns").join(self.namespace(i));
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("namespace file");
            use std::os::fd::AsRawFd;
            // SAFETY: setns on this thread only, with a namespace descriptor we opened.
            let done = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(done, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("thread inside the namespace")
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 1..=self.count {
            let _ = ip(&["netns", "del", &self.namespace(i)]);
        }
        let _ = ip(&["link", "del", &format!("{}br", self.prefix)]);
    }
}

/// A `keel-server` in a namespace of a [`Net`], killed (SIGKILL) when dropped.
pub struct NsBroker {
    child: Option<Child>,
    /// Native protocol address.
    pub addr: SocketAddr,
    args: Vec<String>,
    namespace: String,
}

impl NsBroker {
    /// Starts node `id` of `voters` in its namespace with its data in `data_dir`.
    pub fn start(net: &Net, id: usize, voters: &str, data_dir: &Path) -> NsBroker {
        let host = net.addr(id);
        let args = vec![
            "--node-id".to_owned(),
            id.to_string(),
            "--controller-voters".to_owned(),
            voters.to_owned(),
            "--listen".to_owned(),
            format!("{host}:7070"),
            "--metrics-listen".to_owned(),
            format!("{host}:7071"),
            "--data-dir".to_owned(),
            data_dir.display().to_string(),
            "--shards".to_owned(),
            "2".to_owned(),
            // The namespaces' addresses are not loopback ones.
            "--allow-plaintext".to_owned(),
        ];
        let mut broker = NsBroker {
            child: None,
            addr: SocketAddr::new(host.into(), 7070),
            args,
            namespace: net.namespace(id),
        };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.namespace])
            .arg(crate::broker::server_binary())
            .args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("KEEL_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start keel-server in its namespace");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains("listening on") => break,
                Ok(_) => continue,
                Err(_) => {
                    let _ = child.kill();
                    panic!("keel-server in {} did not start", self.namespace);
                }
            }
        }
        self.child = Some(child);
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NsBroker {
    fn drop(&mut self) {
        self.kill();
    }
}
