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

pub async fn run(bootstrap: &str, args: ProduceArgs) -> anyhow::Result<()> {
    let acks = match args.acks.as_str() {
        "0" => Acks::None,
        "1" => Acks::Leader,
        "all" | "-1" => Acks::All,
        other => bail!("--acks must be 0, 1 or all, got {other:?}"),
    };
    let producer = Producer::builder(bootstrap).acks(acks).build().await?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut deliveries = Vec::new();
    let mut count = 0u64;
    while let Some(line) = lines.next_line().await? {
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
        deliveries.push(producer.enqueue(record).await.map_err(|e| match e {
            keel_client::Error::UnknownTopic(topic) => {
                anyhow::anyhow!("topic {topic} does not exist")
            }
            other => other.into(),
        })?);
        count += 1;
        // Keep memory bounded on long inputs: settle what is already delivered.
        if deliveries.len() >= 10_000 {
            for delivery in deliveries.drain(..) {
                delivery.await?;
            }
        }
    }
    for delivery in deliveries {
        delivery.await?;
    }
    producer.close().await;
    eprintln!("produced {count} message(s) to {}", args.topic);
    Ok(())
}
