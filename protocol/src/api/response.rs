//! Responses of the native protocol: their types (encoding and decoding: `response_codec.rs`).

use super::*;

/// A group member as described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// Subscribed topics.
    pub topics: Vec<String>,
    /// Assigned partitions.
    pub assignment: Vec<TopicEntries<u32>>,
}

/// A group as described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group: String,
    /// Outcome.
    pub error: ErrorCode,
    /// `Empty`, `PreparingRebalance`, `CompletingRebalance` (a Kafka client's group
    /// awaiting its leader's assignment) or `Stable`.
    pub state: String,
    /// Generation.
    pub generation: i32,
    /// Assignor.
    pub assignor: String,
    /// Members.
    pub members: Vec<MemberDescription>,
}

/// Per-topic outcome with an optional message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicResult {
    /// Topic name.
    pub topic: String,
    /// Outcome.
    pub error: ErrorCode,
    /// Detail for people (empty when none).
    pub message: String,
}

/// A broker in metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Node id.
    pub node_id: u32,
    /// Host clients connect to.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// A partition in metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// Partition index.
    pub partition: u32,
    /// Outcome.
    pub error: ErrorCode,
    /// Leader's node id.
    pub leader: u32,
    /// First offset.
    pub log_start_offset: i64,
    /// Offsets below it are visible to consumers.
    pub high_watermark: i64,
    /// Offset of the next append.
    pub log_end_offset: i64,
    /// Bytes on disk.
    pub size_bytes: u64,
    /// The leader's epoch (bumped at every leader change; 0 on a single node).
    pub leader_epoch: u32,
    /// Brokers holding a copy.
    pub replicas: Vec<u32>,
    /// In-sync replicas.
    pub isr: Vec<u32>,
}

/// A topic in metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// Topic name.
    pub topic: String,
    /// Outcome.
    pub error: ErrorCode,
    /// Partitions.
    pub partitions: Vec<PartitionMetadata>,
}

/// Produce outcome of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducePartitionResult {
    /// Partition index.
    pub partition: u32,
    /// Outcome.
    pub error: ErrorCode,
    /// Offset given to the first record of the first batch (-1 on error).
    pub base_offset: i64,
    /// First offset of the log.
    pub log_start_offset: i64,
}

/// Fetch outcome of one partition. `records` is the last field so a server can send it
/// straight from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartitionResult {
    /// Partition index.
    pub partition: u32,
    /// Outcome.
    pub error: ErrorCode,
    /// Offsets below it are readable.
    pub high_watermark: i64,
    /// First offset of the log.
    pub log_start_offset: i64,
    /// Whole record batches.
    pub records: Bytes,
}

/// Size of a fetch partition entry before its records.
pub const FETCH_PARTITION_HEADER_LEN: usize = 4 + 2 + 8 + 8 + 4;

/// List-offsets outcome of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListOffsetsPartitionResult {
    /// Partition index.
    pub partition: u32,
    /// Outcome.
    pub error: ErrorCode,
    /// The offset (-1 when none).
    pub offset: i64,
    /// Timestamp of the record found (-1 for earliest/latest).
    pub timestamp: i64,
}

/// A decoded response body.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// Supported APIs: (key, min version, max version).
    ApiVersions {
        /// Entries.
        apis: Vec<(u16, u16, u16)>,
    },
    /// Cluster metadata.
    Metadata {
        /// Brokers.
        brokers: Vec<BrokerInfo>,
        /// Topics.
        topics: Vec<TopicMetadata>,
    },
    /// Per-topic results.
    CreateTopics {
        /// Results.
        topics: Vec<TopicResult>,
    },
    /// Per-topic results.
    DeleteTopics {
        /// Results.
        topics: Vec<TopicResult>,
    },
    /// Configs per topic.
    DescribeConfigs {
        /// (topic, outcome, entries).
        topics: Vec<(String, ErrorCode, Vec<ConfigEntry>)>,
    },
    /// Per-topic results.
    AlterConfigs {
        /// Results.
        topics: Vec<TopicResult>,
    },
    /// Per-partition results.
    Produce {
        /// Results.
        topics: Vec<TopicEntries<ProducePartitionResult>>,
    },
    /// Per-partition data.
    Fetch {
        /// Results.
        topics: Vec<TopicEntries<FetchPartitionResult>>,
    },
    /// Per-partition offsets.
    ListOffsets {
        /// Results.
        topics: Vec<TopicEntries<ListOffsetsPartitionResult>>,
    },
    /// The coordinator.
    FindCoordinator {
        /// Outcome.
        error: ErrorCode,
        /// Coordinator's address.
        broker: BrokerInfo,
    },
    /// Join outcome.
    JoinGroup {
        /// Outcome.
        error: ErrorCode,
        /// The new generation.
        generation: i32,
        /// This member's id.
        member_id: String,
        /// The generation's members.
        members: Vec<String>,
    },
    /// This member's partitions.
    SyncGroup {
        /// Outcome.
        error: ErrorCode,
        /// Assignment.
        assignment: Vec<TopicEntries<u32>>,
    },
    /// Heartbeat outcome.
    Heartbeat {
        /// Outcome (`RebalanceInProgress`: rejoin).
        error: ErrorCode,
    },
    /// Leave outcome.
    LeaveGroup {
        /// Outcome.
        error: ErrorCode,
    },
    /// Per-partition commit outcome.
    OffsetCommit {
        /// Outcome (group-level errors repeat on every partition).
        topics: Vec<TopicEntries<(u32, ErrorCode)>>,
    },
    /// Committed offsets (-1: none).
    OffsetFetch {
        /// Outcome.
        error: ErrorCode,
        /// Offsets.
        topics: Vec<TopicEntries<(u32, i64)>>,
    },
    /// Groups and states.
    ListGroups {
        /// (group, state).
        groups: Vec<(String, String)>,
    },
    /// Group descriptions.
    DescribeGroups {
        /// Groups.
        groups: Vec<GroupDescription>,
    },
    /// A producer id and epoch.
    InitProducerId {
        /// Outcome.
        error: ErrorCode,
        /// Producer id.
        producer_id: i64,
        /// Producer epoch.
        producer_epoch: i16,
    },
    /// The cluster as this broker knows it.
    DescribeCluster {
        /// Outcome.
        error: ErrorCode,
        /// The controller quorum's leader, -1 when unknown.
        controller_leader: i64,
        /// Its term.
        controller_term: u64,
        /// Voter ids.
        voters: Vec<u32>,
        /// Offset of the metadata this broker has applied.
        metadata_offset: u64,
        /// Registered brokers.
        brokers: Vec<ClusterBroker>,
    },
    /// Outcome of an ElectLeaders request (one entry, for its topic).
    ElectLeaders {
        /// Per topic.
        topics: Vec<TopicResult>,
    },
    /// Outcome of a ReassignPartition request (one entry, for its topic).
    ReassignPartition {
        /// Per topic.
        topics: Vec<TopicResult>,
    },
    /// Outcome of a DecommissionBroker request (one entry, named `broker-ID`).
    DecommissionBroker {
        /// The entry.
        topics: Vec<TopicResult>,
    },
    /// Batches for a follower.
    ReplicaFetch {
        /// Per partition.
        topics: Vec<TopicEntries<ReplicaFetchResult>>,
    },
    /// SASL and the admin APIs for users, ACLs and quotas.
    Security(SecurityResponse),
    /// Cluster links.
    Link(LinkResponse),
}

/// A broker as the cluster metadata holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterBroker {
    /// Node id.
    pub node_id: u32,
    /// Advertised address.
    pub address: String,
    /// Process incarnation.
    pub incarnation: u64,
    /// True while its lease with the controller has lapsed.
    pub fenced: bool,
}
