//! `keel produce TOPIC`: one message per line of standard input; exits 0 only after every
//! line read is acknowledged.

use anyhow::bail;
use keel_client::{Acks, Producer, ProducerRecord};
use tokio::io::AsyncBufReadExt;

#[derive(clap::Args)]
pub struct ProduceArgs {
    /// Topic.
    topic: String,
    /// Split each line into key and value at the first occurrence of this.
    #[arg(long)]
    key_separator: Option<String>,
    /// 0, 1 or all.
    #[arg(long, default_value = "all")]
    acks: String,
    /// Send every line to this partition.
    #[arg(long)]
    partition: Option<u32>,
}

pub async fn run(target: &crate::Target, args: ProduceArgs) -> anyhow::Result<()> {
    let acks = match args.acks.as_str() {
        "0" => Acks::None,
        "1" => Acks::Leader,
        "all" | "-1" => Acks::All,
        other => usage!("--acks must be 0, 1 or all, got {other:?}"),
    };
    let producer = Producer::builder(&target.bootstrap)
        .security(target.security.clone())
        .acks(acks)
        .build()
        .await?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut deliveries = Vec::new();
    let mut outcome = Outcome::default();
    let mut refused = None;
    while let Some(line) = lines.next_line().await? {
        let number = outcome.read + 1;
        let mut record = match &args.key_separator {
            Some(separator) => match line.split_once(separator.as_str()) {
                Some((key, value)) => {
                    ProducerRecord::new(args.topic.as_str(), value.to_owned()).key(key.to_owned())
                }
                None => ProducerRecord::new(args.topic.as_str(), line),
            },
            None => ProducerRecord::new(args.topic.as_str(), line),
        };
        if let Some(partition) = args.partition {
            record = record.partition(partition);
        }
        match producer.enqueue(record).await {
            Ok(delivery) => deliveries.push((number, delivery)),
            Err(keel_client::Error::UnknownTopic(topic)) => {
                bail!("topic {topic} does not exist")
            }
            Err(keel_client::Error::InvalidRecord(why)) => {
                // Nothing after this line is sent; what came before is settled and counted.
                refused = Some(format!("line {number}: {why}"));
                break;
            }
            Err(other) => return Err(other.into()),
        }
        outcome.read = number;
        // Keep memory bounded on long inputs: settle what is already delivered.
        if deliveries.len() >= 10_000 {
            outcome.settle(deliveries.drain(..)).await;
        }
    }
    outcome.settle(deliveries.drain(..)).await;
    producer.close().await;
    let topic = &args.topic;
    match (refused, outcome.failed.first()) {
        (None, None) => {
            eprintln!("produced {} message(s) to {topic}", outcome.stored);
            Ok(())
        }
        (Some(why), _) => bail!(
            "{why}; nothing after it was sent; {} of the {} line(s) before it stored{}",
            outcome.stored,
            outcome.read,
            outcome.failures()
        ),
        (None, Some(_)) => bail!(
            "{} of {} line(s) stored{}",
            outcome.stored,
            outcome.read,
            outcome.failures()
        ),
    }
}

/// What happened to the lines read.
#[derive(Default)]
struct Outcome {
    read: u64,
    stored: u64,
    /// (line number, why) of lines the broker did not store.
    failed: Vec<(u64, String)>,
}

impl Outcome {
    async fn settle(
        &mut self,
        deliveries: impl Iterator<Item = (u64, keel_client::DeliveryFuture)>,
    ) {
        for (number, delivery) in deliveries {
            match delivery.await {
                Ok(_) => self.stored += 1,
                Err(e) => self.failed.push((number, e.to_string())),
            }
        }
    }

    fn failures(&self) -> String {
        if self.failed.is_empty() {
            return String::new();
        }
        let shown: Vec<String> = self
            .failed
            .iter()
            .take(5)
            .map(|(n, why)| format!("line {n}: {why}"))
            .collect();
        let more = self.failed.len().saturating_sub(5);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        format!("; not stored: {}{more}", shown.join("; "))
    }
}
