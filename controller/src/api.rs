//! What brokers and tools ask the controller, what it answers, and its settings.

use raft::eraftpb::Message;

use crate::store::Persist;

/// An incarnation: the data directory's random id in the high 32 bits, the count of starts
/// on that directory in the low 32.
pub fn incarnation(directory_id: u32, start_count: u32) -> u64 {
    u64::from(directory_id) << 32 | u64::from(start_count)
}

/// Who asked: the I/O layer's handle for routing an answer back.
pub type Token = u64;

/// Settings of one voter.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// This voter's id (a node id, not 0).
    pub node_id: u64,
    /// Every voter's id, the same list on every node.
    pub voters: Vec<u64>,
    /// Milliseconds per Raft tick.
    pub tick_ms: u64,
    /// Ticks without a leader's message before a follower campaigns (randomized up to 2×).
    pub election_ticks: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// A broker not heard from for this long is fenced.
    pub lease_ms: u64,
    /// Applied entries between snapshots (log compaction).
    pub snapshot_entries: u64,
    /// Most changes proposed and not yet applied.
    pub pending_max: usize,
    /// Most entries one metadata update carries to a broker.
    pub update_entries_max: usize,
    /// A heartbeat from a broker that has everything is held this long, or until the
    /// metadata moves, so brokers learn of changes as soon as they are applied.
    pub heartbeat_hold_ms: u64,
    /// Seeds the election timeouts.
    pub seed: u64,
    /// The cluster id this voter proposes when it leads a quorum whose metadata has none
    /// yet (a new cluster): unique per quorum, so the I/O layer makes it at random.
    pub new_cluster_id: String,
    /// Keep every applied entry for [`crate::node::Controller::take_applied`] (simulations check them).
    pub record_applied: bool,
}

impl ControllerConfig {
    /// Defaults: 100 ms ticks, elections after 1–2 s, broker leases of 4 s.
    pub fn new(node_id: u64, voters: Vec<u64>) -> ControllerConfig {
        ControllerConfig {
            node_id,
            voters,
            tick_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 2,
            lease_ms: 4_000,
            snapshot_entries: 1_000,
            pending_max: 4_096,
            update_entries_max: 500,
            heartbeat_hold_ms: 500,
            seed: 1,
            new_cluster_id: format!("keel-{node_id}"),
            record_applied: false,
        }
    }
}

/// What a broker or tool asks the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A broker process starts. Its incarnation is [`incarnation`]`(directory id, start
    /// count)`: a higher count from the same data directory is a restart and replaces the
    /// old registration at once; another directory's id while the old one is live is a
    /// second process with the same node id, refused.
    Register {
        /// Node id.
        id: u32,
        /// Advertised address.
        address: String,
        /// This process's incarnation.
        incarnation: u64,
    },
    /// A registered broker renews its lease and asks for metadata after `offset`.
    Heartbeat {
        /// Node id.
        id: u32,
        /// Its incarnation.
        incarnation: u64,
        /// The metadata offset it has applied.
        offset: u64,
    },
    /// A tool or client asks for metadata after `offset` (no lease).
    Fetch {
        /// The metadata offset it has applied.
        offset: u64,
    },
    /// Create a topic, its partitions placed over the live brokers.
    CreateTopic {
        /// Name.
        name: String,
        /// Partition count.
        partitions: u32,
        /// Copies of each partition.
        replication_factor: u32,
        /// Configs.
        configs: Vec<(String, String)>,
    },
    /// Grow a topic to `count` partitions (Kafka's CreatePartitions): the new ones placed
    /// over the live brokers as a new topic's, with as many replicas as its first one.
    AddPartitions {
        /// Name.
        name: String,
        /// The new partition count (above the current one).
        count: u32,
    },
    /// Delete a topic.
    DeleteTopic {
        /// Name.
        name: String,
    },
    /// Set topic configs (an empty value removes a key).
    SetConfigs {
        /// Name.
        name: String,
        /// Keys and values.
        configs: Vec<(String, String)>,
    },
    /// A partition's leader asks for a new ISR (shrink or expand). Valid only from the
    /// current leader at the current leader epoch: a deposed leader's request is refused.
    AlterIsr {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: u32,
        /// The asking leader.
        leader: u32,
        /// The epoch it leads at.
        leader_epoch: u32,
        /// The partition epoch its view of the partition has: a request made from an older
        /// state is refused (it may undo a change the leader has not seen).
        partition_epoch: u32,
        /// The ISR it wants (containing itself).
        isr: Vec<u32>,
    },
    /// Move a partition's replicas to `replicas` (the first becomes the preferred leader):
    /// the new ones are added and catch up, and once every one is in sync the old ones
    /// leave (KIP-455).
    Reassign {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: u32,
        /// The replicas wanted, distinct live brokers.
        replicas: Vec<u32>,
    },
    /// Move every replica off broker `id` (reassigning each of its partitions to another
    /// live broker), after which it may stop without making anything unavailable.
    Decommission {
        /// Node id.
        id: u32,
    },
    /// Broker `id`'s log of a partition it leads failed (a full or failing disk): another
    /// live in-sync replica leads it, if any (Kafka's offline log directory).
    LogOffline {
        /// Node id.
        id: u32,
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: u32,
        /// The epoch it leads at (a stale report changes nothing).
        leader_epoch: u32,
    },
    /// A block of `count` producer ids for broker `id` (KRaft's AllocateProducerIds). The
    /// answer is the entry's offset; the block is the image's
    /// [`crate::image::MetadataImage::producer_block`] once that entry is applied.
    AllocateProducerIds {
        /// Node id.
        id: u32,
        /// Ids wanted (1 to [`crate::image::PRODUCER_ID_BLOCK_MAX`]).
        count: u32,
    },
    /// Moves the producer-id floor past `below`, so no broker hands out an id a mirror
    /// topic's batches carry (issue 23): a block from the next id to at least `below` goes
    /// to [`crate::image::RESERVED_PRODUCER_IDS`], and brokers leave unused every block
    /// they took before it (at most `u32::MAX` ids per request: the caller asks again).
    ReserveProducerIds {
        /// The asking broker.
        id: u32,
        /// The first id that may be handed out after it.
        below: u64,
    },
    /// Set or remove security metadata entries (users, ACLs, quotas), all or none.
    SetSecurity {
        /// The entries.
        entries: Vec<crate::records::SecurityEntry>,
    },
    /// Move leadership back to each partition's preferred replica (the first of its
    /// replicas) where that replica is alive and in sync; `partition` `None`: all of them.
    ElectLeaders {
        /// Topic name.
        topic: String,
        /// One partition, or every partition of the topic.
        partition: Option<u32>,
    },
    /// A leader whose log holds batches of a later epoch than its own (a promoted mirror
    /// partition holds the source's epochs) asks for a leader epoch above `above`, so that
    /// what it writes next is told apart from every earlier batch (KIP-101).
    RaiseLeaderEpoch {
        /// The leading broker.
        id: u32,
        /// Topic name.
        topic: String,
        /// Partition.
        partition: u32,
        /// The latest epoch in its log.
        above: u32,
    },
}

impl Request {
    /// The broker a request speaks for, when only that broker may make it (its
    /// registration, heartbeat, ISR changes, offline logs and producer ids): the controller
    /// refuses it from a connection of another node.
    pub fn claimed_broker(&self) -> Option<u32> {
        match self {
            Request::Register { id, .. }
            | Request::Heartbeat { id, .. }
            | Request::LogOffline { id, .. }
            | Request::AllocateProducerIds { id, .. }
            | Request::ReserveProducerIds { id, .. }
            | Request::RaiseLeaderEpoch { id, .. } => Some(*id),
            Request::AlterIsr { leader, .. } => Some(*leader),
            _ => None,
        }
    }
}

/// Metadata a broker does not have yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// The entries after the asked offset, as `(offset, entry data)`; empty data for entries
    /// that hold no records.
    Entries(Vec<(u64, Vec<u8>)>),
    /// The whole image (the asked offset was compacted away).
    Image(Vec<u8>),
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The change committed and was applied at this offset.
    Committed {
        /// Its offset.
        offset: u64,
    },
    /// A heartbeat or fetch: the metadata after the asked offset (maybe nothing).
    Metadata {
        /// The controller's term, for fencing stale controllers on the broker side.
        term: u64,
        /// True while the broker is fenced (for heartbeats).
        fenced: bool,
        /// What to apply.
        update: Option<Update>,
    },
}

/// One round of output: persist this, then send these messages.
#[derive(Debug, Default)]
pub struct Ready {
    /// Write and fsync before sending anything.
    pub persist: Persist,
    /// Raft messages to send once persisted.
    pub messages: Vec<Message>,
}
