//! `keel group ...`

use keel_client::{Admin, ResetTo};

#[derive(clap::Subcommand)]
pub enum GroupCommand {
    /// List consumer groups and their state.
    List,
    /// Members, assignments, committed offsets and lag.
    Describe {
        /// Group id.
        group: String,
    },
    /// Move a group's committed offsets (the group must have no active members).
    ResetOffsets {
        /// Group id.
        group: String,
        /// Topic.
        #[arg(long)]
        topic: String,
        /// To each partition's first offset.
        #[arg(long, conflicts_with_all = ["to_latest", "to_offset"])]
        to_earliest: bool,
        /// To each partition's end.
        #[arg(long, conflicts_with = "to_offset")]
        to_latest: bool,
        /// To this offset.
        #[arg(long)]
        to_offset: Option<i64>,
    },
}

pub async fn run(target: &crate::Target, command: GroupCommand) -> anyhow::Result<()> {
    let admin = Admin::connect_with(&target.bootstrap, target.security.clone()).await?;
    match command {
        GroupCommand::List => {
            for (group, state) in admin.list_groups().await? {
                out!("{group}\t{state}");
            }
        }
        GroupCommand::Describe { group } => {
            let description = admin
                .describe_group(&group)
                .await
                .map_err(|_| anyhow::anyhow!("group {group} does not exist"))?;
            out!(
                "group {} state {} generation {} assignor {}",
                description.group,
                description.state,
                description.generation,
                description.assignor
            );
            let mut topics: Vec<String> = description
                .members
                .iter()
                .flat_map(|m| m.topics.clone())
                .collect();
            for member in &description.members {
                let assigned: Vec<String> = member
                    .assignment
                    .iter()
                    .map(|entry| format!("{}:{:?}", entry.topic, entry.partitions))
                    .collect();
                out!(
                    "member {} topics {:?} assigned {}",
                    member.member_id,
                    member.topics,
                    assigned.join(" ")
                );
            }
            if topics.is_empty() {
                // An empty group: describe every topic it has offsets for.
                topics = admin.list_topics().await?;
            }
            topics.sort();
            topics.dedup();
            out!(
                "{:<24} {:>9} {:>12} {:>15} {:>10}",
                "topic",
                "partition",
                "committed",
                "high-watermark",
                "lag"
            );
            for topic in topics.iter().filter(|t| !t.starts_with("__")) {
                let offsets = admin.group_offsets(&group, topic).await?;
                if description.members.is_empty() && offsets.iter().all(|p| p.committed < 0) {
                    continue;
                }
                for p in offsets {
                    out!(
                        "{:<24} {:>9} {:>12} {:>15} {:>10}",
                        topic,
                        p.partition,
                        p.committed,
                        p.high_watermark,
                        p.lag()
                    );
                }
            }
        }
        GroupCommand::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
        } => {
            let to = match (to_earliest, to_latest, to_offset) {
                (true, _, _) => ResetTo::Earliest,
                (_, true, _) => ResetTo::Latest,
                (_, _, Some(offset)) => ResetTo::Offset(offset),
                _ => usage!("say where to: --to-earliest, --to-latest or --to-offset O"),
            };
            for (partition, offset) in admin.reset_offsets(&group, &topic, to).await? {
                out!("{topic}\t{partition}\t{offset}");
            }
        }
    }
    Ok(())
}
