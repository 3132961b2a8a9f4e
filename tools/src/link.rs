//! `keel link`: cluster links, defined on the destination cluster (the tool's
//! `--bootstrap`), mirroring a source cluster's topics byte for byte at the same offsets.

use crate::Usage;
use anyhow::Context;
use clap::Subcommand;
use keel_client::Admin;
use keel_protocol::api::{LinkAction, LinkStatus, MirrorPartitionStatus};

#[derive(Subcommand)]
pub enum LinkCommand {
    /// Define a link and start mirroring the topics it selects.
    Create {
        /// Link name.
        name: String,
        /// Source cluster bootstrap addresses, HOST:PORT[,…] (its Kafka listener).
        #[arg(long)]
        source: String,
        /// The source's security settings, Kafka client properties (security.protocol,
        /// sasl.mechanism, sasl.username, sasl.password, ssl.ca.location, …); files it names
        /// are read by the destination's brokers.
        #[arg(long)]
        source_config: Option<std::path::PathBuf>,
        /// Source topics to mirror: names, prefixes (`orders.*`), `re:REGEX`, comma-separated.
        #[arg(long)]
        topics: String,
        /// Source topics left out, as --topics.
        #[arg(long)]
        exclude: Option<String>,
        /// Consumer groups whose committed offsets are synced, as --topics.
        #[arg(long)]
        groups: Option<String>,
        /// Put before each mirror topic's name (`source.` makes `source.orders`).
        #[arg(long)]
        topic_prefix: Option<String>,
        /// Most bytes per second the link fetches on each broker (0: unlimited).
        #[arg(long, default_value_t = 0)]
        throttle_bytes_per_second: u64,
        /// How often group offsets are synced, in milliseconds.
        #[arg(long)]
        group_sync_interval_ms: Option<u64>,
        /// Source topic configs not synced to the mirror topics, as --topics; an empty list
        /// syncs every config Keel knows. Default: min.insync.replicas,
        /// unclean.leader.election.enable, fsync, replica.lag.time.max.ms and the
        /// replication throttles (this cluster's own durability and replication choices).
        #[arg(long)]
        config_sync_exclude: Option<String>,
        /// Failback: topics this cluster already has become mirrors of the source's, each
        /// truncated where its history parts from the source's (after a promotion there).
        #[arg(long)]
        failback: bool,
    },
    /// Every link and its state.
    List,
    /// A link's definition and each mirror partition's progress and lag.
    Describe {
        /// Link name.
        name: String,
        /// text or json.
        #[arg(long, default_value = "text")]
        format: String,
    },
    /// Stop fetching (mirror topics stay read-only).
    Pause {
        /// Link name.
        name: String,
    },
    /// Fetch again, each partition from its own log end.
    Resume {
        /// Link name.
        name: String,
    },
    /// Delete the link (its mirror topics stay, read-only until promoted).
    Delete {
        /// Link name.
        name: String,
    },
    /// Make mirror topics writable at their last mirrored offset (failover).
    Promote {
        /// Link name.
        name: String,
        /// Promote only these topics (repeatable); all of the link's without.
        #[arg(long = "topic")]
        topics: Vec<String>,
    },
}

pub async fn run(target: &crate::Target, command: LinkCommand) -> anyhow::Result<()> {
    let admin = Admin::connect_with(&target.bootstrap, target.security.clone()).await?;
    match command {
        LinkCommand::Create {
            name,
            source,
            source_config,
            topics,
            exclude,
            groups,
            topic_prefix,
            throttle_bytes_per_second,
            group_sync_interval_ms,
            config_sync_exclude,
            failback,
        } => {
            let mut lines = vec![format!("source={source}"), format!("topics={topics}")];
            let optional = [
                ("exclude", exclude),
                ("groups", groups),
                ("topic.prefix", topic_prefix),
                (
                    "group.sync.interval.ms",
                    group_sync_interval_ms.map(|ms| ms.to_string()),
                ),
                ("config.sync.exclude", config_sync_exclude),
            ];
            for (key, value) in optional {
                if let Some(value) = value {
                    lines.push(format!("{key}={value}"));
                }
            }
            lines.push(format!(
                "throttle.bytes.per.second={throttle_bytes_per_second}"
            ));
            if failback {
                lines.push("failback=true".to_owned());
            }
            if let Some(path) = source_config {
                lines.extend(source_properties(&path)?);
            }
            admin
                .link(LinkAction::Create, &name, &lines.join("\n"), Vec::new())
                .await?;
            out!("link {name} created");
        }
        LinkCommand::List => {
            for link in admin.describe_links("").await? {
                let source = setting(&link, "source").unwrap_or_default();
                out!("{}\t{}\t{source}", link.name, link.state);
            }
        }
        LinkCommand::Describe { name, format } => {
            if format != "text" && format != "json" {
                return Err(Usage(format!("--format text|json, not {format:?}")).into());
            }
            let links = admin.describe_links(&name).await?;
            let Some(link) = links.into_iter().find(|l| l.name == name) else {
                anyhow::bail!("no link {name}");
            };
            if format == "json" {
                out!("{}", describe_json(&link));
            } else {
                describe_text(&link);
            }
        }
        LinkCommand::Pause { name } => {
            admin.link(LinkAction::Pause, &name, "", Vec::new()).await?;
            out!("link {name} paused");
        }
        LinkCommand::Resume { name } => {
            admin
                .link(LinkAction::Resume, &name, "", Vec::new())
                .await?;
            out!("link {name} resumed");
        }
        LinkCommand::Delete { name } => {
            admin
                .link(LinkAction::Delete, &name, "", Vec::new())
                .await?;
            out!("link {name} deleted");
        }
        LinkCommand::Promote { name, topics } => {
            admin
                .link(LinkAction::Promote, &name, "", topics.clone())
                .await?;
            // Each partition takes writes once its leader raised its epoch past the
            // mirrored ones (a second or so): wait for that, as a user would.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let waiting = promoting(&admin, &name, &topics).await?;
                if waiting == 0 {
                    out!("link {name}: mirror topics promoted");
                    break;
                }
                if std::time::Instant::now() > deadline {
                    out!("link {name}: mirror topics promoted; {waiting} partition(s) not writable yet (see link describe)");
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
    Ok(())
}

/// Partitions of the promoted topics (`topics`, or all) not writable yet.
async fn promoting(admin: &Admin, link: &str, topics: &[String]) -> anyhow::Result<usize> {
    let links = admin.describe_links(link).await?;
    Ok(links
        .iter()
        .flat_map(|l| &l.partitions)
        .filter(|p| topics.is_empty() || topics.contains(&p.topic))
        .filter(|p| p.state == "promoting" || p.state == "mirroring" || p.state == "paused")
        .count())
}

/// The `source.KEY=VALUE` lines of a Kafka client properties file.
fn source_properties(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--source-config {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once('=') {
            Some((key, value)) => format!("source.{}={}", key.trim(), value.trim()),
            None => format!("source.{l}"),
        })
        .collect())
}

fn setting<'a>(link: &'a LinkStatus, key: &str) -> Option<&'a str> {
    link.definition
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
}

/// A topic's state from its partitions': failed if one failed, promoted when all are.
fn topic_state(partitions: &[&MirrorPartitionStatus]) -> &'static str {
    if partitions.iter().any(|p| p.state.starts_with("failed")) {
        "failed"
    } else if partitions.iter().all(|p| p.state == "promoted") {
        "promoted"
    } else if partitions.iter().any(|p| p.state == "promoting") {
        "promoting"
    } else if partitions.iter().any(|p| p.state == "paused") {
        "paused"
    } else {
        "mirroring"
    }
}

fn by_topic(link: &LinkStatus) -> Vec<(&str, Vec<&MirrorPartitionStatus>)> {
    let mut topics: Vec<(&str, Vec<&MirrorPartitionStatus>)> = Vec::new();
    for partition in &link.partitions {
        match topics.last_mut() {
            Some((topic, partitions)) if *topic == partition.topic => partitions.push(partition),
            _ => topics.push((&partition.topic, vec![partition])),
        }
    }
    topics
}

fn describe_json(link: &LinkStatus) -> serde_json::Value {
    let topics: Vec<serde_json::Value> = by_topic(link)
        .into_iter()
        .map(|(topic, partitions)| {
            let state = topic_state(&partitions);
            let partitions: Vec<serde_json::Value> = partitions
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "partition": p.partition,
                        "state": p.state,
                        "source_high_watermark": p.source_high_watermark,
                        "mirrored_offset": p.mirrored_offset,
                        "lag_records": p.lag_records,
                        "lag_seconds": p.lag_ms as f64 / 1000.0,
                    })
                })
                .collect();
            serde_json::json!({"topic": topic, "state": state, "partitions": partitions})
        })
        .collect();
    serde_json::json!({
        "name": link.name,
        "state": link.state,
        "source": setting(link, "source").unwrap_or_default(),
        "topics": topics,
    })
}

fn describe_text(link: &LinkStatus) {
    out!("link {}\tstate {}", link.name, link.state);
    for line in link.definition.lines() {
        out!("  {line}");
    }
    for (topic, partitions) in by_topic(link) {
        out!("topic {topic}\tstate {}", topic_state(&partitions));
        for p in partitions {
            out!(
                "  partition {}\t{}\tmirrored {}\tsource {}\tlag {} records, {:.1} s",
                p.partition,
                p.state,
                p.mirrored_offset,
                p.source_high_watermark,
                p.lag_records,
                p.lag_ms as f64 / 1000.0
            );
        }
    }
}
