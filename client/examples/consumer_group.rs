//! Read a topic as a member of a consumer group, committing as it goes. Start several to
//! watch partitions spread over them: `cargo run -p keel-client --example consumer_group`.

use keel_client::{Consumer, OffsetReset, RebalanceListener, TopicPartition};
use std::sync::Arc;
use std::time::Duration;

struct Announce;

impl RebalanceListener for Announce {
    fn on_revoked(&self, partitions: &[TopicPartition]) {
        println!("giving up {partitions:?}");
    }
    fn on_assigned(&self, partitions: &[TopicPartition]) {
        println!("now reading {partitions:?}");
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> keel_client::Result<()> {
    let bootstrap = std::env::var("KEEL_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:7070".into());
    let mut consumer = Consumer::builder(bootstrap)
        .group("order-processors")
        .offset_reset(OffsetReset::Earliest)
        .auto_commit(Duration::from_secs(1))
        .rebalance_listener(Arc::new(Announce))
        .build()
        .await?;
    consumer.subscribe(&["orders"])?;
    let idle_limit = std::env::var("KEEL_IDLE_POLLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(u32::MAX);
    let mut idle = 0;
    while idle < idle_limit {
        let records = consumer.poll(Duration::from_millis(500)).await?;
        idle = if records.is_empty() { idle + 1 } else { 0 };
        for record in records {
            let value = record
                .value
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            println!(
                "{}-{} @{}: {value}",
                record.topic, record.partition, record.offset
            );
        }
    }
    consumer.commit_sync().await?;
    consumer.close().await
}
