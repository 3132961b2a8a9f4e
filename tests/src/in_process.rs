//! Brokers in the test process: the same `keel_server::start` the binary runs, its shards'
//! executors on threads of this process, on ports and a data directory of their own. For
//! behaviour that needs no process of its own (no kill -9, no start-up refusal, no
//! resource limit of a process): no binary to build or start, no output to wait for, and a
//! stop that returns once every log is closed.

use crate::broker::{free_port, metrics_page, Client, Serving};
use clap::Parser;
use keel_server::config::{Args, Config};
use std::net::SocketAddr;
use std::path::Path;

/// A broker running in this process; stopped (cleanly) when dropped.
pub struct InProcess {
    broker: Option<keel_server::Broker>,
    args: Vec<String>,
    /// Native protocol address.
    pub addr: SocketAddr,
    /// Kafka protocol address.
    pub kafka_addr: SocketAddr,
    /// Metrics address.
    pub metrics_addr: SocketAddr,
}

impl InProcess {
    /// Starts a broker on `data_dir` with the command-line flags `extra` (beside its own
    /// addresses); returns once it serves.
    pub fn start(data_dir: &Path, extra: &[&str]) -> InProcess {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let kafka_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let metrics_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let data_dir = data_dir.display().to_string();
        let (addr_flag, kafka_flag, metrics_flag) = (
            addr.to_string(),
            kafka_addr.to_string(),
            metrics_addr.to_string(),
        );
        let mut args = vec![
            "keel-server",
            "--data-dir",
            &data_dir,
            "--listen",
            &addr_flag,
            "--kafka-listen",
            &kafka_flag,
            "--metrics-listen",
            &metrics_flag,
        ];
        args.extend_from_slice(extra);
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        let mut broker = InProcess {
            broker: None,
            args,
            addr,
            kafka_addr,
            metrics_addr,
        };
        broker.restart();
        broker
    }

    /// Starts it again (after [`InProcess::stop`]) with the same flags and addresses.
    pub fn restart(&mut self) {
        assert!(self.broker.is_none(), "stop before restarting");
        // The data directory's lock can outlive `stop` for a moment: a child process another
        // test forks in that window inherits the descriptor until its exec closes it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let config =
                Config::load(&Args::parse_from(&self.args)).expect("a valid configuration");
            match keel_server::start(config) {
                Ok(broker) => break self.broker = Some(broker),
                Err(e)
                    if format!("{e:#}").contains("in use by another keel-server")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("the broker starts: {e:#}"),
            }
        }
    }

    /// Starts a broker with `settings` as its `keel.toml` (written in `dir`, data in
    /// `dir/data`) and `extra` flags.
    pub fn with_config(dir: &Path, settings: &str, extra: &[&str]) -> InProcess {
        let config = dir.join("keel.toml");
        std::fs::write(&config, settings).expect("write keel.toml");
        let mut args = extra.to_vec();
        let config = config.to_str().expect("UTF-8 path");
        args.extend(["--config", config]);
        InProcess::start(&dir.join("data"), &args)
    }

    /// The metrics page.
    pub fn metrics(&self) -> String {
        metrics_page(self.metrics_addr)
    }

    /// A native-protocol client connected to it.
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Stops it: pending requests answered, every log flushed and closed.
    pub fn stop(&mut self) {
        if let Some(broker) = self.broker.take() {
            broker.stop().expect("the broker stops cleanly");
        }
    }
}

impl Serving for InProcess {
    fn native_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(broker) = self.broker.take() {
            // Not a second panic while a failed test unwinds.
            if let Err(e) = broker.stop() {
                eprintln!("in-process broker: {e:#}");
            }
        }
    }
}
