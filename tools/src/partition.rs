//! `keel partition ...`: leadership of a topic's partitions.

use keel_client::Admin;

#[derive(clap::Subcommand)]
pub enum PartitionCommand {
    /// Move leadership back to each partition's preferred replica (the first of its
    /// replicas) where it is alive and in sync.
    ElectLeaders {
        /// Topic name.
        topic: String,
        /// Only this partition.
        #[arg(long)]
        partition: Option<u32>,
    },
}

pub async fn run(bootstrap: &str, command: PartitionCommand) -> anyhow::Result<()> {
    let admin = Admin::connect(bootstrap).await?;
    match command {
        PartitionCommand::ElectLeaders { topic, partition } => {
            admin.elect_leaders(&topic, partition).await?;
            match partition {
                Some(p) => out!("{topic}-{p}: led by its preferred replica where it is in sync"),
                None => out!(
                    "{topic}: partitions led by their preferred replicas where they are in sync"
                ),
            }
        }
    }
    Ok(())
}
