//! The native protocol's requests, responses and error codes. Specified in
//! `docs/protocol.md`; every body is encoded with [`crate::wire`].

use crate::wire::{len_u32, DecodeError, EncodeError, Reader, WriteExt};
use bytes::{BufMut, Bytes, BytesMut};

mod link;
mod replica;
mod request;
mod response;
mod response_codec;
mod security;
mod security_codec;
#[cfg(test)]
mod security_tests;
#[cfg(test)]
mod tests;

pub use link::{LinkAction, LinkRequest, LinkResponse, LinkStatus, MirrorPartitionStatus};
pub use replica::{
    write_replica_fetch_result_header, ReplicaFetch, ReplicaFetchPartition, ReplicaFetchResult,
    REPLICA_FETCH_RESULT_HEADER_LEN,
};
pub use request::{JoinGroup, Request};
pub use response::{
    BrokerInfo, ClusterBroker, FetchPartitionResult, GroupDescription, ListOffsetsPartitionResult,
    MemberDescription, PartitionMetadata, ProducePartitionResult, Response, TopicMetadata,
    TopicResult, FETCH_PARTITION_HEADER_LEN,
};
pub use response_codec::write_fetch_partition_header;
use response_codec::{read_topic_results, write_topic_results};
pub use security::{
    Acl, AclFilter, DeleteAclsResult, QuotaEntry, QuotaName, ScramUpsertion, SecurityRequest,
    SecurityResponse, UserDescription,
};

/// API keys. Numbers 20–39 are reserved for consumer groups, 40–59 for replication, 60–79
/// for security, 80–89 for cluster links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ApiKey {
    /// Which APIs and versions the broker speaks.
    ApiVersions = 0,
    /// Brokers, topics, partitions, leaders and offsets.
    Metadata = 1,
    /// Create topics.
    CreateTopics = 2,
    /// Delete topics.
    DeleteTopics = 3,
    /// Read topic configs.
    DescribeConfigs = 4,
    /// Change topic configs.
    AlterConfigs = 5,
    /// Append record batches.
    Produce = 10,
    /// Read record batches.
    Fetch = 11,
    /// Earliest, latest or by-time offsets.
    ListOffsets = 12,
    /// Which broker coordinates a group.
    FindCoordinator = 20,
    /// Join (or rejoin) a consumer group; answered when the rebalance completes.
    JoinGroup = 21,
    /// Fetch this member's assignment for a generation.
    SyncGroup = 22,
    /// Keep membership alive; learn about rebalances.
    Heartbeat = 23,
    /// Leave a group.
    LeaveGroup = 24,
    /// Commit offsets for a group.
    OffsetCommit = 25,
    /// Read a group's committed offsets.
    OffsetFetch = 26,
    /// Every group and its state.
    ListGroups = 27,
    /// Groups' state, members and assignments.
    DescribeGroups = 28,
    /// A producer id and epoch for idempotent produce.
    InitProducerId = 29,
    /// The controller, voters and brokers of the cluster.
    DescribeCluster = 30,
    /// A follower fetching from a partition's leader (replication).
    ReplicaFetch = 40,
    /// Move leadership back to partitions' preferred replicas.
    ElectLeaders = 41,
    /// Move a partition's replicas.
    ReassignPartition = 42,
    /// Move every replica off a broker.
    DecommissionBroker = 43,
    /// Choose a SASL mechanism (before any other request on a SASL listener).
    SaslHandshake = 60,
    /// One message of a SASL exchange.
    SaslAuthenticate = 61,
    /// SCRAM users and their mechanisms.
    DescribeUsers = 62,
    /// Set or remove SCRAM credentials.
    AlterUsers = 63,
    /// ACL bindings matching a filter.
    DescribeAcls = 64,
    /// Add ACL bindings.
    CreateAcls = 65,
    /// Remove ACL bindings.
    DeleteAcls = 66,
    /// Client quota entries.
    DescribeQuotas = 67,
    /// Set or remove client quotas.
    AlterQuotas = 68,
    /// Create, delete, describe, pause, resume or promote a cluster link.
    Link = 80,
}

impl ApiKey {
    /// Every API with its supported version range.
    pub const ALL: [(ApiKey, u16, u16); 34] = [
        (ApiKey::ApiVersions, 0, 0),
        (ApiKey::Metadata, 0, 0),
        (ApiKey::CreateTopics, 0, 0),
        (ApiKey::DeleteTopics, 0, 0),
        (ApiKey::DescribeConfigs, 0, 0),
        (ApiKey::AlterConfigs, 0, 0),
        (ApiKey::Produce, 0, 0),
        (ApiKey::Fetch, 0, 0),
        (ApiKey::ListOffsets, 0, 0),
        (ApiKey::FindCoordinator, 0, 0),
        (ApiKey::JoinGroup, 0, 0),
        (ApiKey::SyncGroup, 0, 0),
        (ApiKey::Heartbeat, 0, 0),
        (ApiKey::LeaveGroup, 0, 0),
        (ApiKey::OffsetCommit, 0, 0),
        (ApiKey::OffsetFetch, 0, 0),
        (ApiKey::ListGroups, 0, 0),
        (ApiKey::DescribeGroups, 0, 0),
        (ApiKey::InitProducerId, 0, 0),
        (ApiKey::DescribeCluster, 0, 0),
        (ApiKey::ReplicaFetch, 0, 0),
        (ApiKey::ElectLeaders, 0, 0),
        (ApiKey::ReassignPartition, 0, 0),
        (ApiKey::DecommissionBroker, 0, 0),
        (ApiKey::SaslHandshake, 0, 0),
        (ApiKey::SaslAuthenticate, 0, 0),
        (ApiKey::DescribeUsers, 0, 0),
        (ApiKey::AlterUsers, 0, 0),
        (ApiKey::DescribeAcls, 0, 0),
        (ApiKey::CreateAcls, 0, 0),
        (ApiKey::DeleteAcls, 0, 0),
        (ApiKey::DescribeQuotas, 0, 0),
        (ApiKey::AlterQuotas, 0, 0),
        (ApiKey::Link, 0, 0),
    ];

    /// The API named by `key`, if known.
    pub fn from_u16(key: u16) -> Option<ApiKey> {
        ApiKey::ALL
            .iter()
            .map(|(k, _, _)| *k)
            .find(|k| *k as u16 == key)
    }

    /// Lowercase name for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            ApiKey::ApiVersions => "api_versions",
            ApiKey::Metadata => "metadata",
            ApiKey::CreateTopics => "create_topics",
            ApiKey::DeleteTopics => "delete_topics",
            ApiKey::DescribeConfigs => "describe_configs",
            ApiKey::AlterConfigs => "alter_configs",
            ApiKey::Produce => "produce",
            ApiKey::Fetch => "fetch",
            ApiKey::ListOffsets => "list_offsets",
            ApiKey::FindCoordinator => "find_coordinator",
            ApiKey::JoinGroup => "join_group",
            ApiKey::SyncGroup => "sync_group",
            ApiKey::Heartbeat => "heartbeat",
            ApiKey::LeaveGroup => "leave_group",
            ApiKey::OffsetCommit => "offset_commit",
            ApiKey::OffsetFetch => "offset_fetch",
            ApiKey::ListGroups => "list_groups",
            ApiKey::DescribeGroups => "describe_groups",
            ApiKey::InitProducerId => "init_producer_id",
            ApiKey::DescribeCluster => "describe_cluster",
            ApiKey::ReplicaFetch => "replica_fetch",
            ApiKey::ElectLeaders => "elect_leaders",
            ApiKey::ReassignPartition => "reassign_partition",
            ApiKey::DecommissionBroker => "decommission_broker",
            ApiKey::SaslHandshake => "sasl_handshake",
            ApiKey::SaslAuthenticate => "sasl_authenticate",
            ApiKey::DescribeUsers => "describe_users",
            ApiKey::AlterUsers => "alter_users",
            ApiKey::DescribeAcls => "describe_acls",
            ApiKey::CreateAcls => "create_acls",
            ApiKey::DeleteAcls => "delete_acls",
            ApiKey::DescribeQuotas => "describe_quotas",
            ApiKey::AlterQuotas => "alter_quotas",
            ApiKey::Link => "link",
        }
    }

    /// Checks `version` is supported.
    ///
    /// # Errors
    /// [`DecodeError::UnsupportedVersion`].
    pub fn check_version(self, version: u16) -> Result<(), DecodeError> {
        let (_, min, max) = ApiKey::ALL
            .iter()
            .find(|(k, _, _)| *k == self)
            .expect("every key is listed");
        if version < *min || version > *max {
            return Err(DecodeError::UnsupportedVersion {
                api_key: self as u16,
                version,
            });
        }
        Ok(())
    }
}

macro_rules! error_codes {
    ($($name:ident = $code:literal, $text:literal;)*) => {
        /// Stable error codes: the numbers never change meaning.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum ErrorCode {
            $(#[doc = $text] $name = $code,)*
        }

        impl ErrorCode {
            /// The code named by `code`; unknown codes map to `Unknown`.
            pub fn from_u16(code: u16) -> ErrorCode {
                match code {
                    $($code => ErrorCode::$name,)*
                    _ => ErrorCode::Unknown,
                }
            }
            /// A sentence for people.
            pub fn message(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $text,)*
                }
            }
        }
    };
}

error_codes! {
    None = 0, "no error";
    Unknown = 1, "unexpected server error";
    CorruptMessage = 2, "record batch failed its CRC or structure check";
    UnknownTopicOrPartition = 3, "topic or partition does not exist";
    InvalidTopic = 4, "invalid topic name";
    TopicAlreadyExists = 5, "topic already exists";
    InvalidPartitions = 6, "invalid number of partitions";
    InvalidReplicationFactor = 7, "invalid replication factor";
    InvalidConfig = 8, "invalid configuration";
    MessageTooLarge = 9, "record batch is larger than allowed";
    OffsetOutOfRange = 10, "offset is outside the log";
    UnsupportedVersion = 11, "API version not supported";
    InvalidRequest = 12, "malformed request";
    RequestTimedOut = 13, "request timed out";
    StorageError = 14, "the partition's storage failed";
    UnknownApi = 15, "unknown API key";
    FrameTooLarge = 16, "request frame is larger than allowed";
    TooManyConnections = 17, "connection limit reached";
    TooManyPartitions = 18, "partition limit reached";
    InvalidRequiredAcks = 19, "acks must be 0, 1 or -1 (all)";
    ShuttingDown = 20, "broker is shutting down";
    UnknownMemberId = 21, "the group does not know this member (it timed out or left): rejoin";
    IllegalGeneration = 22, "stale group generation: rejoin";
    RebalanceInProgress = 23, "the group is rebalancing: rejoin";
    InvalidGroupId = 24, "invalid group id";
    InvalidSessionTimeout = 25, "session timeout outside the broker's limits";
    UnknownAssignor = 26, "unknown partition assignor";
    OutOfOrderSequence = 27, "producer sequence number out of order: records were lost between producer and broker";
    InvalidProducerEpoch = 28, "producer epoch is older than the partition's";
    InvalidRebalanceTimeout = 29, "rebalance timeout outside the broker's limits";
    GroupMaxSizeReached = 30, "the group has as many members as the broker allows";
    TooManyGroups = 31, "group limit reached";
    InvalidClientId = 32, "invalid client id";
    NotLeaderOrFollower = 33, "this broker does not lead the partition: refresh metadata and go to its leader";
    LeaderNotAvailable = 34, "the partition has no leader now (its broker is fenced or down)";
    NotController = 35, "the cluster's controller could not be reached or changed: retry";
    NotCoordinator = 36, "this broker does not coordinate the group: find its coordinator again";
    FencedLeaderEpoch = 37, "the request's leader epoch is older than the partition's: refresh metadata";
    UnknownLeaderEpoch = 38, "the request's leader epoch is newer than this broker knows yet: retry";
    NotEnoughReplicas = 39, "fewer in-sync replicas than min.insync.replicas: nothing was appended";
    NotEnoughReplicasAfterAppend = 40, "appended, but the in-sync replicas fell below min.insync.replicas before it was replicated: retry";
    CoordinatorLoadInProgress = 41, "the group's coordinator is loading its offsets after a leadership change: retry";
    CoordinatorNotAvailable = 42, "the group's coordinator cannot store offsets now (too few in-sync replicas): retry";
    InvalidRecord = 43, "a record the topic does not take (a compacted topic needs a key on every record)";
    TopicAuthorizationFailed = 44, "not authorized to access this topic";
    GroupAuthorizationFailed = 45, "not authorized to access this group";
    ClusterAuthorizationFailed = 46, "not authorized to act on the cluster";
    SaslAuthenticationFailed = 47, "authentication failed (or not authenticated yet on a SASL listener)";
    UnsupportedSaslMechanism = 48, "the listener does not offer this SASL mechanism";
    IllegalSaslState = 49, "no SASL exchange expected now (a second handshake, or a listener without SASL)";
    SecurityDisabled = 50, "the broker runs without an authorizer (--authorizer on)";
    ResourceNotFound = 51, "no such user or credential";
    UnacceptableCredential = 52, "the credential is refused (iterations out of range, or an empty salt)";
    DuplicateResource = 53, "a user appears more than once in one request";
    InvalidQuota = 54, "invalid quota entity, key or value";
    ReadOnlyTopic = 55, "the topic is a mirror of another cluster's: read-only until promoted (keel link promote)";
    LinkNotFound = 56, "no cluster link of that name";
    LinkExists = 57, "a cluster link of that name exists";
    InvalidLink = 58, "invalid cluster link definition";
}

/// A key-value config entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Config name, e.g. `retention.ms`.
    pub key: String,
    /// Config value, as text.
    pub value: String,
}

fn read_configs(r: &mut Reader) -> Result<Vec<ConfigEntry>, DecodeError> {
    let count = r.count("configs", 4)?;
    (0..count)
        .map(|_| {
            Ok(ConfigEntry {
                key: r.string("config.key")?,
                value: r.string("config.value")?,
            })
        })
        .collect()
}

fn write_configs(out: &mut BytesMut, configs: &[ConfigEntry]) -> Result<(), EncodeError> {
    out.put_count("configs", configs.len())?;
    for entry in configs {
        out.put_string("config.key", &entry.key)?;
        out.put_string("config.value", &entry.value)?;
    }
    Ok(())
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Name (Kafka's rules: `[a-zA-Z0-9._-]`, 1–249 characters, not `.` or `..`).
    pub name: String,
    /// Partition count.
    pub partitions: u32,
    /// Replicas per partition (1 on a single node).
    pub replication_factor: u16,
    /// Topic configs.
    pub configs: Vec<ConfigEntry>,
}

/// A partition of a produce request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePartition {
    /// Partition index.
    pub partition: u32,
    /// One or more RecordBatch v2, back to back.
    pub records: Bytes,
}

/// A partition of a fetch request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPartition {
    /// Partition index.
    pub partition: u32,
    /// First offset wanted.
    pub fetch_offset: i64,
    /// Most bytes to return for this partition (at least one batch is returned).
    pub partition_max_bytes: u32,
}

/// A partition of a list-offsets request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListOffsetsPartition {
    /// Partition index.
    pub partition: u32,
    /// `-2` earliest, `-1` latest, else a timestamp in ms.
    pub timestamp: i64,
}

/// Entries grouped by topic, as every per-partition request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicEntries<T> {
    /// Topic name.
    pub topic: String,
    /// Per-partition entries.
    pub partitions: Vec<T>,
}

/// Timestamp meaning "earliest offset" in [`ListOffsetsPartition`].
pub const EARLIEST_TIMESTAMP: i64 = -2;
/// Timestamp meaning "latest offset" in [`ListOffsetsPartition`].
pub const LATEST_TIMESTAMP: i64 = -1;
/// Timestamp meaning "the record with the largest timestamp" in [`ListOffsetsPartition`].
pub const MAX_TIMESTAMP: i64 = -3;

fn read_topic_entries<T>(
    r: &mut Reader,
    element_len_min: usize,
    mut read: impl FnMut(&mut Reader) -> Result<T, DecodeError>,
) -> Result<Vec<TopicEntries<T>>, DecodeError> {
    let count = r.count("topics", 6)?;
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        let topic = r.string("topic")?;
        let partitions_count = r.count("partitions", element_len_min)?;
        let partitions = (0..partitions_count)
            .map(|_| read(r))
            .collect::<Result<_, _>>()?;
        topics.push(TopicEntries { topic, partitions });
    }
    Ok(topics)
}

fn write_topic_entries<T>(
    out: &mut BytesMut,
    topics: &[TopicEntries<T>],
    mut write: impl FnMut(&mut BytesMut, &T) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    out.put_count("topics", topics.len())?;
    for topic in topics {
        out.put_string("topic", &topic.topic)?;
        out.put_count("partitions", topic.partitions.len())?;
        for partition in &topic.partitions {
            write(out, partition)?;
        }
    }
    Ok(())
}

fn read_strings(r: &mut Reader, field: &'static str) -> Result<Vec<String>, DecodeError> {
    let count = r.count(field, 2)?;
    (0..count).map(|_| r.string(field)).collect()
}

fn write_strings(
    out: &mut BytesMut,
    field: &'static str,
    values: &[String],
) -> Result<(), EncodeError> {
    out.put_count(field, values.len())?;
    for value in values {
        out.put_string(field, value)?;
    }
    Ok(())
}

/// Checks a topic name against Kafka's rules.
///
/// # Errors
/// A sentence saying what is wrong.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name {name:?} is not allowed"));
    }
    if name.len() > 249 {
        return Err(format!(
            "topic name is {} characters, the maximum is 249",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!("topic name {name:?} contains {bad:?}; allowed are ASCII letters, digits, '.', '_' and '-'"));
    }
    Ok(())
}
