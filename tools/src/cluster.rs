//! `keel cluster ...`: the controller, voters and brokers, and the metadata as a tree.

use keel_client::{Admin, ClusterDescription};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum ClusterCommand {
    /// The controller's leader and term, the voters, and every broker with its state.
    Describe {
        /// text or json.
        #[arg(long, default_value = "text")]
        format: String,
    },
    /// The metadata as a tree (`/brokers/ids/N`, `/controller`, `/topics/T/partitions/P/state`,
    /// `/config/topics/T`), or the subtree at PATH.
    Metadata {
        /// A path in the tree, e.g. `/topics/orders`.
        path: Option<String>,
        /// Print each change as the broker applies it, until interrupted.
        #[arg(long)]
        watch: bool,
    },
}

fn state(fenced: bool) -> &'static str {
    if fenced {
        "fenced"
    } else {
        "alive"
    }
}

/// `keel cluster describe --format json`.
pub fn describe_json(cluster: &ClusterDescription) -> serde_json::Value {
    json!({
        "controller": {
            "leader": cluster.controller_leader.map_or(-1, i64::from),
            "term": cluster.controller_term,
            "voters": cluster.voters,
        },
        "metadata_offset": cluster.metadata_offset,
        "brokers": cluster.brokers.iter().map(|b| json!({
            "id": b.node_id,
            "address": b.address,
            "state": state(b.fenced),
            "incarnation": b.incarnation,
        })).collect::<Vec<_>>(),
    })
}

/// The metadata tree as `path -> value` lines.
async fn tree(admin: &Admin) -> anyhow::Result<BTreeMap<String, String>> {
    let cluster = admin.describe_cluster().await?;
    let mut tree = BTreeMap::new();
    for b in &cluster.brokers {
        tree.insert(
            format!("/brokers/ids/{}", b.node_id),
            json!({"address": b.address, "state": state(b.fenced), "incarnation": b.incarnation})
                .to_string(),
        );
    }
    tree.insert(
        "/controller".into(),
        json!({
            "leader": cluster.controller_leader.map_or(-1, i64::from),
            "term": cluster.controller_term,
            "voters": cluster.voters,
            "metadata_offset": cluster.metadata_offset,
        })
        .to_string(),
    );
    for name in admin.list_topics().await? {
        let Ok(topic) = admin.describe_topic(&name).await else {
            continue;
        };
        tree.insert(
            format!("/topics/{name}"),
            json!({"partitions": topic.partitions.len()}).to_string(),
        );
        for p in &topic.partitions {
            tree.insert(
                format!("/topics/{name}/partitions/{}/state", p.partition),
                json!({
                    "leader": leader(p.leader),
                    "leader_epoch": p.leader_epoch,
                    "replicas": p.replicas,
                    "isr": p.isr,
                    "error": format!("{:?}", p.error),
                })
                .to_string(),
            );
        }
        let configs: BTreeMap<String, String> = topic.configs.into_iter().collect();
        tree.insert(format!("/config/topics/{name}"), json!(configs).to_string());
    }
    Ok(tree)
}

fn leader(leader: u32) -> i64 {
    if leader == u32::MAX {
        -1
    } else {
        i64::from(leader)
    }
}

fn under(path: &str, prefix: &Option<String>) -> bool {
    match prefix {
        None => true,
        Some(prefix) => {
            let prefix = prefix.trim_end_matches('/');
            path == prefix || path.starts_with(&format!("{prefix}/"))
        }
    }
}

pub async fn run(target: &crate::Target, command: ClusterCommand) -> anyhow::Result<()> {
    let admin = Admin::connect_with(&target.bootstrap, target.security.clone()).await?;
    match command {
        ClusterCommand::Describe { format } => {
            let cluster = admin.describe_cluster().await?;
            match format.as_str() {
                "json" => out!("{}", describe_json(&cluster)),
                "text" => {
                    let leader = cluster
                        .controller_leader
                        .map_or("none".to_owned(), |l| l.to_string());
                    let voters: Vec<String> = cluster.voters.iter().map(u32::to_string).collect();
                    out!(
                        "controller leader {leader}, term {}, voters {}",
                        cluster.controller_term,
                        voters.join(",")
                    );
                    out!("metadata offset {}", cluster.metadata_offset);
                    out!("{:>6} {:>22} {:>7}", "broker", "address", "state");
                    for b in &cluster.brokers {
                        out!("{:>6} {:>22} {:>7}", b.node_id, b.address, state(b.fenced));
                    }
                }
                other => usage!("--format {other:?}: use text or json"),
            }
        }
        ClusterCommand::Metadata { path, watch } => {
            let mut shown = tree(&admin).await?;
            for (key, value) in shown.iter().filter(|(k, _)| under(k, &path)) {
                out!("{key} {value}");
            }
            if !watch {
                return Ok(());
            }
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let now = tree(&admin).await?;
                for (key, value) in now.iter().filter(|(k, _)| under(k, &path)) {
                    if shown.get(key) != Some(value) {
                        out!("{key} {value}");
                    }
                }
                for key in shown.keys().filter(|k| under(k, &path)) {
                    if !now.contains_key(key) {
                        out!("{key} (deleted)");
                    }
                }
                shown = now;
            }
        }
    }
    Ok(())
}
