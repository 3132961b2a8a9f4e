//! Appends to a partition log with `fsync=always` from several tasks until killed, printing
//! `ack TAG BASE_OFFSET` after each append completes (that is, once it is durable).
//!
//! Usage: keel-crash-writer DIR FIRST_TAG

use anyhow::Context;
use keel_engine::{FsyncPolicy, Log, LogConfig};
use keel_tests::crash_batch;
use std::io::Write;

const APPENDERS: u64 = 8;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .context("usage: keel-crash-writer DIR FIRST_TAG")?;
    let first_tag: u64 = args.next().context("missing FIRST_TAG")?.parse()?;
    let executor = glommio::LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .make()
        .map_err(|e| anyhow::anyhow!("cannot start glommio: {e}"))?;
    executor.run(async move {
        let config = LogConfig {
            segment_bytes: 256 * 1024,
            index_interval_bytes: 4096,
            fsync: FsyncPolicy::Always,
            retention_ms: None,
            ..LogConfig::default()
        };
        let log = Log::open(&dir, config).await?;
        println!("ready {}", log.log_end_offset());
        std::io::stdout().flush()?;
        let mut tasks = Vec::new();
        for appender in 0..APPENDERS {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                let mut tag = first_tag + appender;
                loop {
                    let info = log
                        .append(bytes::BytesMut::from(crash_batch(tag).as_slice()))
                        .await?;
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {tag} {}", info.base_offset)?;
                    out.flush()?;
                    tag += APPENDERS;
                }
                #[allow(unreachable_code)]
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await?;
        }
        anyhow::Ok(())
    })
}
