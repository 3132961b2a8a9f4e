//! Errors of the controller crate.

use keel_protocol::wire::{DecodeError, EncodeError};

/// Why a metadata change was refused, or a controller step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request reached a voter that is not the active controller.
    #[error("not the active controller (leader: {leader:?})")]
    NotController {
        /// The node believed to lead the quorum, when known.
        leader: Option<u64>,
    },
    /// The topic exists already.
    #[error("topic {0} already exists")]
    TopicExists(String),
    /// No topic of that name.
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    /// A partition index past the topic's count.
    #[error("topic {topic} has no partition {partition}")]
    UnknownPartition {
        /// Topic name.
        topic: String,
        /// Partition asked for.
        partition: u32,
    },
    /// More replicas asked for than brokers alive.
    #[error("replication factor {asked} is larger than the {alive} live brokers")]
    NotEnoughBrokers {
        /// Replication factor asked for.
        asked: u32,
        /// Brokers alive now.
        alive: u32,
    },
    /// A field value outside what the metadata allows (counts, names, ids).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// What was wrong.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A broker id is registered by another live process.
    #[error("node id {id} is already registered by a live broker at {address} (incarnation {incarnation})")]
    DuplicateBroker {
        /// The id.
        id: u32,
        /// Where the live one is.
        address: String,
        /// Its incarnation.
        incarnation: u64,
    },
    /// A broker unknown to the metadata, or an old incarnation of it.
    #[error("broker {id} incarnation {incarnation} is not registered (re-register)")]
    StaleBroker {
        /// The id.
        id: u32,
        /// The incarnation it claimed.
        incarnation: u64,
    },
    /// A partition change from a broker that is not its leader at the current epoch.
    #[error("stale leader: {topic}/{partition} is led by {leader} at epoch {epoch}")]
    StaleLeader {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// The current leader (-1: none).
        leader: i32,
        /// The current epoch.
        epoch: u32,
    },
    /// The proposal was lost because leadership changed before it committed.
    #[error("metadata change dropped: leadership changed before it committed (not applied)")]
    Dropped,
    /// A bounded queue or map is full.
    #[error("controller busy: {0}")]
    Busy(&'static str),
    /// A record or snapshot could not be decoded.
    #[error("corrupt metadata: {0}")]
    Decode(#[from] DecodeError),
    /// A record could not be encoded.
    #[error("metadata too large: {0}")]
    Encode(#[from] EncodeError),
    /// An error the controller reported over the wire, as its message.
    #[error("controller: {0}")]
    Remote(String),
    /// The Raft library refused a step.
    #[error("raft: {0}")]
    Raft(String),
}

impl From<raft::Error> for Error {
    fn from(e: raft::Error) -> Self {
        Error::Raft(e.to_string())
    }
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
