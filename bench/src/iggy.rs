//! Apache Iggy as the peer in `keel-bench suite --iggy DIR`: starts `DIR/iggy-server` on a
//! loopback port with a fresh data directory, drives it with `DIR/iggy-bench`, and reads the
//! figure from iggy-bench's `... Results: Total throughput: X MB/s` line (MB = 10^6 bytes of
//! message payload, as keel-bench counts).

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running iggy-server, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct IggyServer {
    child: Child,
    dir: PathBuf,
    address: String,
    bench: PathBuf,
}

impl IggyServer {
    /// Starts `iggy_dir/iggy-server` with its data in `data_dir` on `127.0.0.1:port`.
    pub fn start(iggy_dir: &Path, data_dir: &Path, port: u16) -> anyhow::Result<IggyServer> {
        let iggy_dir = iggy_dir
            .canonicalize()
            .with_context(|| format!("--iggy {}", iggy_dir.display()))?;
        let server = iggy_dir.join("iggy-server");
        let bench = iggy_dir.join("iggy-bench");
        for binary in [&server, &bench] {
            if !binary.is_file() {
                bail!("--iggy: {} not found", binary.display());
            }
        }
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let address = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(data_dir.join("iggy-server.out"))?;
        let child = Command::new(&server)
            .arg("--with-default-root-credentials")
            .arg("--fresh")
            .env("IGGY_SYSTEM_PATH", data_dir.join("data"))
            .env("IGGY_TCP_ADDRESS", &address)
            .env("IGGY_HTTP_ENABLED", "false")
            .env("IGGY_QUIC_ENABLED", "false")
            .env("IGGY_WEBSOCKET_ENABLED", "false")
            // Its config.toml is looked up relative to the working directory; none is there.
            .current_dir(data_dir)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (it needs libhwloc15 and libudev1: apt-get install -y libhwloc15 libudev1)",
                    server.display()
                )
            })?;
        let mut iggy = IggyServer {
            child,
            dir: data_dir.to_path_buf(),
            address,
            bench,
        };
        crate::suite::wait_for_port(&iggy.address, &mut iggy.child, &iggy.dir)?;
        Ok(iggy)
    }

    /// Runs iggy-bench with `global` options before the subcommand and `command` after it;
    /// returns the total throughput in MB/s.
    pub fn bench(&self, global: &[&str], command: &[&str]) -> anyhow::Result<f64> {
        let started = Instant::now();
        let output = Command::new(&self.bench)
            .args(global)
            .args(command)
            .args(["tcp", "--server-address", self.address.as_str()])
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", self.bench.display()))?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            bail!(
                "iggy-bench {global:?} {command:?} failed ({}):\n{}",
                output.status,
                tail(&text, 20)
            );
        }
        let figure = total_throughput(&text).with_context(|| {
            format!(
                "no 'Total throughput' in iggy-bench output after {:.1} s:\n{}",
                started.elapsed().as_secs_f64(),
                tail(&text, 20)
            )
        })?;
        Ok(figure)
    }

    /// Stops the server (SIGTERM, up to 20 s, then SIGKILL) and removes its data.
    pub fn stop(mut self) -> anyhow::Result<()> {
        crate::suite::terminate(&mut self.child, Duration::from_secs(20))?;
        std::fs::remove_dir_all(&self.dir).ok();
        Ok(())
    }
}

impl Drop for IggyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The MB/s of the last `Results: Total throughput: X MB/s` line.
pub fn total_throughput(output: &str) -> Option<f64> {
    output.lines().rev().find_map(|line| {
        let rest = line.split("Results: Total throughput:").nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_total_throughput_line() {
        let output = "INFO Producer #1 sent ... average throughput: 799.35 MB/s\n\n\
            Producers Results: Total throughput: 799.35 MB/s, 780620 messages/s, average ...\n";
        assert_eq!(total_throughput(output), Some(799.35));
        let consumers = "Consumers Results: Total throughput: 1620.5 MB/s, 1 messages/s";
        assert_eq!(total_throughput(consumers), Some(1620.5));
        assert_eq!(total_throughput("nothing here"), None);
    }
}
