//! Admin calls that move replicas and leadership in a cluster.

use super::{check, Admin};
use crate::error::{Error, Result};
use keel_protocol::api::{Request, Response};

impl Admin {
    /// Moves leadership of `topic`'s partitions (or of one) back to their preferred replica
    /// (the first of their replicas) where it is alive and in sync (cluster mode).
    ///
    /// # Errors
    /// The broker's refusal (unknown topic or partition, not a cluster), I/O.
    pub async fn elect_leaders(&self, topic: &str, partition: Option<u32>) -> Result<()> {
        match self
            .call(Request::ElectLeaders {
                topic: topic.to_owned(),
                partition: partition.map_or(-1, i64::from),
            })
            .await?
        {
            Response::ElectLeaders { topics } => check(topics),
            _ => Err(Error::Protocol("elect-leaders response expected".into())),
        }
    }

    /// Starts moving a partition's replicas to `replicas` (the first becomes the preferred
    /// leader); it completes once the new replicas are in sync (cluster mode).
    ///
    /// # Errors
    /// The broker's refusal (unknown topic or partition, brokers not alive, a move already
    /// in progress), I/O.
    pub async fn reassign_partition(
        &self,
        topic: &str,
        partition: u32,
        replicas: &[u32],
    ) -> Result<()> {
        match self
            .call(Request::ReassignPartition {
                topic: topic.to_owned(),
                partition,
                replicas: replicas.to_vec(),
            })
            .await?
        {
            Response::ReassignPartition { topics } => check(topics),
            _ => Err(Error::Protocol("reassign response expected".into())),
        }
    }

    /// Moves every replica off broker `id` (cluster mode); the moves complete as the new
    /// replicas catch up.
    ///
    /// # Errors
    /// The broker's refusal (unknown broker, no broker to move to), I/O.
    pub async fn decommission_broker(&self, id: u32) -> Result<()> {
        match self
            .call(Request::DecommissionBroker { broker: id })
            .await?
        {
            Response::DecommissionBroker { topics } => check(topics),
            _ => Err(Error::Protocol("decommission response expected".into())),
        }
    }
}
