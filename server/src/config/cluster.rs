//! Cluster-mode settings: the controller quorum from `--controller-voters`, checked
//! against this node's flags.

use anyhow::{bail, Context};
use std::net::SocketAddr;

/// Cluster settings from the flags.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's id.
    pub node_id: u32,
    /// The quorum: `(id, controller address)`, sorted by id.
    pub voters: Vec<(u64, SocketAddr)>,
    /// Where this node's controller listens (when it is a voter).
    pub controller_listen: SocketAddr,
    /// The native address other nodes and clients are told.
    pub advertised: SocketAddr,
    /// The Kafka addresses told to clients, per listener name (empty: the Kafka protocol
    /// is off); filled at start once ports are resolved.
    pub advertised_kafka: Vec<(String, SocketAddr)>,
}

impl ClusterConfig {
    /// Parses `--controller-voters` (`ID@HOST:PORT,...`) and checks it against this node.
    ///
    /// # Errors
    /// Bad syntax, id 0, duplicate ids or addresses, or this voter's entry disagreeing with
    /// `--controller-listen`; each named in one line.
    pub fn new(
        node_id: u32,
        voters_text: &str,
        controller_listen: SocketAddr,
        advertised: SocketAddr,
    ) -> anyhow::Result<ClusterConfig> {
        if node_id == 0 {
            bail!("--node-id must not be 0 in cluster mode");
        }
        let mut voters: Vec<(u64, SocketAddr)> = Vec::new();
        for item in voters_text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (id, address) = item
                .split_once('@')
                .with_context(|| format!("--controller-voters: {item:?} is not ID@HOST:PORT"))?;
            let id: u64 = id
                .parse()
                .ok()
                .filter(|id| *id > 0 && *id <= u64::from(u32::MAX))
                .with_context(|| format!("--controller-voters: {id:?} is not a node id"))?;
            let address: SocketAddr = address.parse().with_context(|| {
                format!("--controller-voters: {address:?} is not HOST:PORT (an IP address)")
            })?;
            if voters.iter().any(|(other, _)| *other == id) {
                bail!("--controller-voters: duplicate node id {id}");
            }
            if voters.iter().any(|(_, other)| *other == address) {
                bail!("--controller-voters: duplicate address {address}");
            }
            voters.push((id, address));
        }
        if voters.is_empty() {
            bail!("--controller-voters is empty");
        }
        voters.sort();
        let mut controller_listen = controller_listen;
        if let Some((_, address)) = voters.iter().find(|(id, _)| *id == u64::from(node_id)) {
            let default: SocketAddr = "127.0.0.1:7072".parse().expect("valid address");
            if controller_listen == default {
                controller_listen = *address;
            } else if controller_listen != *address {
                bail!(
                    "node {node_id} is {address} in --controller-voters but --controller-listen is {controller_listen}"
                );
            }
        }
        Ok(ClusterConfig {
            node_id,
            voters,
            controller_listen,
            advertised,
            advertised_kafka: Vec::new(),
        })
    }

    /// Accepts a peer's hello when its voter list is ours and its node id is not ours.
    ///
    /// # Errors
    /// Why not, in one line.
    pub fn check_hello(&self, node_id: u64, voters: &[(u64, String)]) -> Result<(), String> {
        let ours: Vec<(u64, String)> = self
            .voters
            .iter()
            .map(|(id, a)| (*id, a.to_string()))
            .collect();
        if voters != ours.as_slice() {
            let theirs = voters
                .iter()
                .map(|(id, a)| format!("{id}@{a}"))
                .collect::<Vec<_>>()
                .join(",");
            return Err(format!(
                "voter list disagrees: node {node_id} has --controller-voters {theirs}, node {} has {}",
                self.node_id,
                self.voters_text()
            ));
        }
        if node_id == u64::from(self.node_id) {
            return Err(format!(
                "node id {node_id} is already taken by the node at {}",
                self.controller_listen
            ));
        }
        Ok(())
    }

    /// True when this node is one of the voters.
    pub fn is_voter(&self) -> bool {
        self.voters
            .iter()
            .any(|(id, _)| *id == u64::from(self.node_id))
    }

    /// The voter list as printed in refusals: `1@127.0.0.1:7072,2@...`.
    pub fn voters_text(&self) -> String {
        voters_text(&self.voters)
    }
}

/// A voter list as `ID@ADDR,...`.
pub fn voters_text(voters: &[(u64, SocketAddr)]) -> String {
    voters
        .iter()
        .map(|(id, a)| format!("{id}@{a}"))
        .collect::<Vec<_>>()
        .join(",")
}
