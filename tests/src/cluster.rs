//! Several `keel-server` processes on 127.0.0.1 forming one cluster: distinct ports and
//! data directories, the same `--controller-voters`.

use crate::broker::{free_port, server_binary, Broker};
use crate::tool::{keel, ok};
use std::time::{Duration, Instant};

/// A cluster whose nodes are all voters and brokers.
pub struct Cluster {
    /// The nodes, node id `i + 1` at index `i`; `None` while stopped by a test.
    pub nodes: Vec<Broker>,
    /// The `--controller-voters` value.
    pub voters: String,
    /// Where each node's data directory lives.
    pub dir: tempfile::TempDir,
    /// The `keel` tool's `--command-config` (TLS settings), when the nodes need one.
    pub command_config: Option<std::path::PathBuf>,
}

impl Cluster {
    /// Starts `count` nodes and waits until every one sees every broker alive.
    pub fn start(count: usize) -> Cluster {
        Cluster::start_with_env(count, &[])
    }

    /// As [`Cluster::start`], with environment variables for every node (test knobs).
    pub fn start_with_env(count: usize, env: &[(&str, &str)]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        Cluster::start_in(dir, count, env, |_| Vec::new(), None)
    }

    /// As [`Cluster::start`] in `dir`, node `i` (0-based) given the flags `extra(i)`, the
    /// `keel` tool given `command_config`.
    pub fn start_in(
        dir: tempfile::TempDir,
        count: usize,
        env: &[(&str, &str)],
        extra: impl Fn(usize) -> Vec<String>,
        command_config: Option<std::path::PathBuf>,
    ) -> Cluster {
        let ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
        let voters = ports
            .iter()
            .enumerate()
            .map(|(i, port)| format!("{}@127.0.0.1:{port}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = (0..count)
            .map(|i| {
                let id = (i + 1).to_string();
                let mut args = vec![
                    "--node-id".to_owned(),
                    id.clone(),
                    "--controller-voters".to_owned(),
                    voters.clone(),
                    "--shards".to_owned(),
                    "2".to_owned(),
                ];
                args.extend(extra(i));
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Broker::start_with_env(
                    &server_binary(),
                    &dir.path().join(format!("node{id}")),
                    &args,
                    env,
                )
            })
            .collect();
        let cluster = Cluster {
            nodes,
            voters,
            dir,
            command_config,
        };
        cluster.wait_for(
            Duration::from_secs(30),
            "every broker alive on every node",
            |c| {
                c.running()
                    .all(|i| c.alive_brokers(i).is_some_and(|alive| alive.len() == count))
            },
        );
        cluster
    }

    /// Indexes of nodes whose process runs.
    pub fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].is_running())
    }

    /// `keel --bootstrap <node i> args...`, its output whatever the status.
    pub fn keel(&self, i: usize, args: &[&str]) -> std::process::Output {
        let mut all = Vec::new();
        if let Some(config) = &self.command_config {
            all.extend(["--command-config", config.to_str().expect("UTF-8 path")]);
        }
        all.extend_from_slice(args);
        keel(Some(&self.nodes[i]), &all, None)
    }

    /// `keel cluster describe --format json` on node `i`, if it answers.
    pub fn describe(&self, i: usize) -> Option<serde_json::Value> {
        let output = self.keel(i, &["cluster", "describe", "--format", "json"]);
        if !output.status.success() {
            return None;
        }
        serde_json::from_slice(&output.stdout).ok()
    }

    /// The brokers node `i` sees alive.
    pub fn alive_brokers(&self, i: usize) -> Option<Vec<u64>> {
        let describe = self.describe(i)?;
        Some(
            describe["brokers"]
                .as_array()?
                .iter()
                .filter(|b| b["state"] == "alive")
                .filter_map(|b| b["id"].as_u64())
                .collect(),
        )
    }

    /// The controller leader node `i` knows of.
    pub fn controller_leader(&self, i: usize) -> Option<u64> {
        self.describe(i)?["controller"]["leader"]
            .as_i64()
            .filter(|l| *l > 0)
            .map(|l| l as u64)
    }

    /// `keel topic describe T --format json` on node `i`.
    pub fn topic(&self, i: usize, topic: &str) -> Option<serde_json::Value> {
        let output = self.keel(i, &["topic", "describe", topic, "--format", "json"]);
        if !output.status.success() {
            return None;
        }
        serde_json::from_slice(&output.stdout).ok()
    }

    /// The topics node `i` lists.
    pub fn topics(&self, i: usize) -> Vec<String> {
        let output = self.keel(i, &["topic", "list"]);
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits until `condition` holds, polling; panics naming `what` after `timeout`.
    pub fn wait_for(&self, timeout: Duration, what: &str, condition: impl Fn(&Cluster) -> bool) {
        let deadline = Instant::now() + timeout;
        while !condition(self) {
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for: {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A comma-separated list of every node's Kafka listener (what Kafka clients
    /// bootstrap from).
    pub fn kafka_bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.kafka_addr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A comma-separated bootstrap list of the running nodes.
    pub fn bootstrap(&self) -> String {
        self.running()
            .map(|i| self.nodes[i].addr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `keel topic create` through node `i`, which must succeed.
pub fn create(cluster: &Cluster, i: usize, topic: &str, partitions: u32) {
    let partitions = partitions.to_string();
    ok(&cluster.keel(i, &["topic", "create", topic, "--partitions", &partitions]));
}

/// [`create`] through node 0, then waits until every node lists the topic.
pub fn create_everywhere(cluster: &Cluster, topic: &str, partitions: u32) {
    create(cluster, 0, topic, partitions);
    cluster.wait_for(Duration::from_secs(10), "topic everywhere", |c| {
        (0..c.nodes.len()).all(|i| c.topics(i).contains(&topic.to_owned()))
    });
}

/// A two-worker tokio runtime for keel-client in tests.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A segment file's bytes up to where its batches end (the zero padding of the last
/// direct-I/O page begins); empty when the file is missing.
pub fn segment_data(path: &std::path::Path) -> Vec<u8> {
    let log = std::fs::read(path).unwrap_or_default();
    let mut at = 0usize;
    while at + 12 <= log.len() {
        let len = u32::from_be_bytes(log[at + 8..at + 12].try_into().expect("4 bytes")) as usize;
        if len == 0 || at + 12 + len > log.len() {
            break;
        }
        at += 12 + len;
    }
    log[..at].to_vec()
}

/// The base offset of the first segment file of `topic`'s partition 0 on node `i` (where
/// its log starts on disk).
pub fn first_segment(cluster: &Cluster, i: usize, topic: &str) -> Option<i64> {
    let dir = cluster.nodes[i].data_dir.join(format!("{topic}-0"));
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".log")?.parse::<i64>().ok()
        })
        .min()
}
