//! `keel partition ...` (replicas and leadership of a topic's partitions) and `keel broker
//! decommission`.

use keel_client::Admin;

#[derive(clap::Subcommand)]
pub enum PartitionCommand {
    /// Move a partition's replicas to these brokers (the first becomes its preferred
    /// leader): the new ones catch up and join the ISR, then the old ones leave.
    Reassign {
        /// Topic name.
        topic: String,
        /// Partition index.
        #[arg(long)]
        partition: u32,
        /// Comma-separated broker ids, e.g. 2,3,4.
        #[arg(long, value_delimiter = ',', required = true)]
        replicas: Vec<u32>,
        /// Bytes per second the leader sends each new replica while it catches up (sets the
        /// topic's `reassignment.throttle.bytes.per.sec`; 0 lifts it).
        #[arg(long)]
        throttle: Option<u64>,
    },
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

pub async fn run(target: &crate::Target, command: PartitionCommand) -> anyhow::Result<()> {
    let admin = Admin::connect_with(&target.bootstrap, target.security.clone()).await?;
    match command {
        PartitionCommand::Reassign {
            topic,
            partition,
            replicas,
            throttle,
        } => {
            if let Some(rate) = throttle {
                let rate = rate.to_string();
                admin
                    .alter_configs(&topic, &[("reassignment.throttle.bytes.per.sec", &rate)])
                    .await?;
            }
            admin
                .reassign_partition(&topic, partition, &replicas)
                .await?;
            out!("{topic}-{partition}: moving to replicas {replicas:?}; `keel topic describe {topic}` shows when it is done");
        }
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

#[derive(clap::Subcommand)]
pub enum BrokerCommand {
    /// Move every replica off a broker (each to another live broker); once the moves are
    /// done it holds nothing and may stop.
    Decommission {
        /// Node id.
        id: u32,
    },
}

pub async fn run_broker(target: &crate::Target, command: BrokerCommand) -> anyhow::Result<()> {
    let admin = Admin::connect_with(&target.bootstrap, target.security.clone()).await?;
    match command {
        BrokerCommand::Decommission { id } => {
            admin.decommission_broker(id).await?;
            out!("broker {id}: its replicas are moving to other brokers; `keel topic describe` shows when none is left");
        }
    }
    Ok(())
}
