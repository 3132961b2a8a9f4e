//! `keel consume TOPIC`: prints one message per line; exits after `--max-messages` or
//! `--timeout-ms` of silence.

use anyhow::bail;
use keel_client::{Consumer, ConsumerRecord, OffsetReset};
use std::io::Write;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct ConsumeArgs {
    /// Topic.
    topic: String,
    /// Read as a member of this consumer group (commits what it prints).
    #[arg(long)]
    group: Option<String>,
    /// Start at the beginning instead of the end (when nothing is committed).
    #[arg(long)]
    from_beginning: bool,
    /// Read only this partition.
    #[arg(long)]
    partition: Option<u32>,
    /// Start at this offset (with --partition).
    #[arg(long, requires = "partition", allow_negative_numbers = true)]
    offset: Option<i64>,
    /// Stop after this many messages.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Stop after this long without a message.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Print the key before the value (tab-separated).
    #[arg(long)]
    print_key: bool,
    /// text or json (one object per line).
    #[arg(long, default_value = "text")]
    format: String,
}

fn text(bytes: &Option<bytes::Bytes>) -> String {
    bytes
        .as_deref()
        .map(String::from_utf8_lossy)
        .map(|s| s.into_owned())
        .unwrap_or_default()
}

fn print(out: &mut impl Write, record: &ConsumerRecord, args: &ConsumeArgs) -> std::io::Result<()> {
    if args.format == "json" {
        let value = serde_json::json!({
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "timestamp": record.timestamp,
            "key": record.key.as_ref().map(|_| text(&record.key)),
            "value": record.value.as_ref().map(|_| text(&record.value)),
        });
        writeln!(out, "{value}")
    } else if args.print_key {
        writeln!(out, "{}\t{}", text(&record.key), text(&record.value))
    } else {
        writeln!(out, "{}", text(&record.value))
    }
}

/// Moves each partition back to its first record in `unprinted`, so those are not consumed.
fn unconsume(consumer: &mut Consumer, unprinted: &[ConsumerRecord]) {
    let mut first = std::collections::BTreeMap::new();
    for record in unprinted {
        first
            .entry((record.topic.clone(), record.partition))
            .or_insert(record.offset);
    }
    for (tp, offset) in first {
        consumer.seek(&tp, offset);
    }
}

pub async fn run(target: &crate::Target, args: ConsumeArgs) -> anyhow::Result<()> {
    if !matches!(args.format.as_str(), "text" | "json") {
        usage!("--format must be text or json, got {:?}", args.format);
    }
    let admin =
        keel_client::Admin::connect_with(&target.bootstrap, target.security.clone()).await?;
    let description = admin
        .describe_topic(&args.topic)
        .await
        .map_err(|e| match e {
            keel_client::Error::UnknownTopic(topic) => {
                anyhow::anyhow!("topic {topic} does not exist")
            }
            other => other.into(),
        })?;
    let reset = if args.from_beginning {
        OffsetReset::Earliest
    } else {
        OffsetReset::Latest
    };
    let mut builder = Consumer::builder(&target.bootstrap)
        .security(target.security.clone())
        .offset_reset(reset)
        .max_wait(Duration::from_millis(200));
    if let Some(group) = &args.group {
        builder = builder.group(group.clone());
    }
    let mut consumer = builder.build().await?;
    match (&args.group, args.partition) {
        (Some(_), None) => consumer.subscribe(&[args.topic.as_str()])?,
        (_, Some(partition)) => {
            if partition as usize >= description.partitions.len() {
                bail!(
                    "partition {partition} of {} does not exist ({} partitions)",
                    args.topic,
                    description.partitions.len()
                );
            }
            let tp = (args.topic.clone(), partition);
            if let Some(offset) = args.offset {
                let info = &description.partitions[partition as usize];
                if offset < 0 {
                    usage!("--offset must be 0 or more, got {offset}");
                }
                if offset < info.log_start_offset || offset > info.high_watermark {
                    bail!(
                        "offset {offset} is outside partition {partition} of {}: readable offsets are {}..{} (log start to high watermark)",
                        args.topic,
                        info.log_start_offset,
                        info.high_watermark
                    );
                }
            }
            consumer.assign([tp.clone()]);
            if let Some(offset) = args.offset {
                consumer.seek(&tp, offset);
            }
        }
        (None, None) => consumer.assign(
            description
                .partitions
                .iter()
                .map(|p| (args.topic.clone(), p.partition)),
        ),
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    let mut closed = false;
    let mut last = Instant::now();
    let timeout = Duration::from_millis(args.timeout_ms);
    'reading: while last.elapsed() < timeout {
        let records = consumer.poll(Duration::from_millis(200)).await?;
        if !records.is_empty() {
            last = Instant::now();
        }
        for (index, record) in records.iter().enumerate() {
            if let Err(e) = print(&mut out, record, &args) {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    crate::exit_on_write_error(&e);
                }
                // `| head` closed the pipe: stop quietly; a group commits what was printed.
                closed = true;
                unconsume(&mut consumer, &records[index..]);
                break 'reading;
            }
            printed += 1;
            if args.max_messages.is_some_and(|max| printed >= max) {
                // Stop exactly here: records of this poll not printed are not consumed (a
                // group commits only what was printed).
                unconsume(&mut consumer, &records[index + 1..]);
                break 'reading;
            }
        }
        if args.group.is_some() && !records.is_empty() {
            // Each poll's records are committed once printed, so a failover re-reads at
            // most the last poll.
            commit(&mut consumer).await?;
        }
    }
    if let Err(e) = out.flush() {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            crate::exit_on_write_error(&e);
        }
        closed = true;
    }
    drop(out);
    if args.group.is_some() {
        commit(&mut consumer).await?;
        if let Err(e) = consumer.close().await {
            if !e.is_retriable() {
                return Err(e.into());
            }
            // The coordinator is gone: the group notices the member left by its session.
        }
    }
    if !closed {
        eprintln!("consumed {printed} message(s)");
    }
    Ok(())
}

/// Commits what was printed; a coordinator that moved or went down is warned about (the
/// next consumer of the group may read the last poll's records again), not fatal.
async fn commit(consumer: &mut keel_client::Consumer) -> anyhow::Result<()> {
    match consumer.commit_sync().await {
        Ok(()) => Ok(()),
        Err(e) if e.is_retriable() || e.is_rebalance() => {
            eprintln!("warning: commit failed ({e}); these records may be read again");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
