//! `keel topic ...`

use keel_client::Admin;

#[derive(clap::Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Partitions.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Replicas per partition (1 on a single broker; the cluster checks it).
        #[arg(long, default_value_t = 1)]
        replication_factor: u16,
        /// Config override, `key=value` (repeatable).
        #[arg(long = "config")]
        configs: Vec<String>,
    },
    /// List topics.
    List,
    /// Partitions with leader, offsets and size, and configs.
    Describe {
        /// Topic name.
        name: String,
        /// text or json.
        #[arg(long, default_value = "text")]
        format: String,
    },
    /// Delete a topic and its data.
    Delete {
        /// Topic name.
        name: String,
    },
}

pub async fn run(target: &crate::Target, command: TopicCommand) -> anyhow::Result<()> {
    let admin = Admin::connect_with(&target.bootstrap, target.security.clone()).await?;
    match command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            let mut pairs = Vec::new();
            for config in &configs {
                let Some((key, value)) = config.split_once('=') else {
                    usage!("--config {config:?} must be key=value");
                };
                for (what, text) in [("key", key), ("value", value)] {
                    if text.len() > keel_protocol::wire::STRING_MAX {
                        usage!(
                            "--config {what} is {} bytes; the limit is {} bytes",
                            text.len(),
                            keel_protocol::wire::STRING_MAX
                        );
                    }
                }
                pairs.push((key, value));
            }
            admin
                .create_topic_replicated(&name, partitions, replication_factor, &pairs)
                .await?;
            out!("created topic {name} with {partitions} partition(s)");
        }
        TopicCommand::List => {
            for topic in admin.list_topics().await? {
                out!("{topic}");
            }
        }
        TopicCommand::Describe { name, format } => {
            if format != "text" && format != "json" {
                usage!("--format {format:?}: use text or json");
            }
            let description = admin.describe_topic(&name).await.map_err(|e| match e {
                keel_client::Error::UnknownTopic(topic) => {
                    anyhow::anyhow!("topic {topic} does not exist")
                }
                other => other.into(),
            })?;
            if format == "json" {
                out!("{}", describe_json(&description));
                return Ok(());
            }
            out!(
                "topic {} ({} partitions)",
                description.name,
                description.partitions.len()
            );
            out!(
                "{:>9} {:>7} {:>12} {:>15} {:>12} {:>12}",
                "partition",
                "leader",
                "log-start",
                "high-watermark",
                "log-end",
                "size"
            );
            for p in &description.partitions {
                out!(
                    "{:>9} {:>7} {:>12} {:>15} {:>12} {:>12}",
                    p.partition,
                    p.leader,
                    p.log_start_offset,
                    p.high_watermark,
                    p.log_end_offset,
                    p.size_bytes
                );
            }
            out!("configs:");
            for (key, value) in &description.configs {
                out!("  {key}={value}");
            }
        }
        TopicCommand::Delete { name } => {
            admin.delete_topic(&name).await?;
            out!("deleted topic {name}");
        }
    }
    Ok(())
}

/// `keel topic describe --format json`.
fn describe_json(description: &keel_client::TopicDescription) -> serde_json::Value {
    let partitions: Vec<serde_json::Value> = description
        .partitions
        .iter()
        .map(|p| {
            let leader = if p.error == keel_protocol::api::ErrorCode::LeaderNotAvailable
                || p.leader == u32::MAX
            {
                -1
            } else {
                i64::from(p.leader)
            };
            serde_json::json!({
                "partition": p.partition,
                "leader": leader,
                "leader_epoch": p.leader_epoch,
                "replicas": p.replicas,
                "isr": p.isr,
                "log_start_offset": p.log_start_offset,
                "high_watermark": p.high_watermark,
                "log_end_offset": p.log_end_offset,
                "size_bytes": p.size_bytes,
            })
        })
        .collect();
    let configs: serde_json::Map<String, serde_json::Value> = description
        .configs
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::json!({
        "name": description.name,
        "partitions": partitions,
        "configs": configs,
    })
}
