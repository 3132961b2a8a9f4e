//! The native protocol's requests, responses and error codes. Specified in
//! `docs/protocol.md`; every body is encoded with [`crate::wire`].

use crate::wire::{len_u32, DecodeError, EncodeError, Reader, WriteExt};
use bytes::{BufMut, Bytes, BytesMut};

/// API keys. Numbers 20–39 are reserved for consumer groups, 40–59 for replication.
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
}

impl ApiKey {
    /// Every API with its supported version range.
    pub const ALL: [(ApiKey, u16, u16); 19] = [
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

/// A decoded request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Ask which APIs are supported.
    ApiVersions,
    /// Topics to describe; empty means all.
    Metadata {
        /// Topic names.
        topics: Vec<String>,
    },
    /// Topics to create.
    CreateTopics {
        /// Topics.
        topics: Vec<NewTopic>,
    },
    /// Topics to delete.
    DeleteTopics {
        /// Names.
        topics: Vec<String>,
    },
    /// Topics whose configs to return.
    DescribeConfigs {
        /// Names.
        topics: Vec<String>,
    },
    /// Config changes (entries given are set; others keep their values).
    AlterConfigs {
        /// Per topic, the entries to set.
        topics: Vec<(String, Vec<ConfigEntry>)>,
    },
    /// Appends.
    Produce {
        /// 0: no response; 1: after the leader appended; -1: after the batch is durable.
        acks: i8,
        /// Server-side timeout.
        timeout_ms: u32,
        /// Batches per partition.
        topics: Vec<TopicEntries<ProducePartition>>,
    },
    /// Reads.
    Fetch {
        /// Longest wait for `min_bytes` to accumulate.
        max_wait_ms: u32,
        /// Answer as soon as this much is available.
        min_bytes: u32,
        /// Most bytes in the whole response (at least one batch is returned).
        max_bytes: u32,
        /// Partitions and offsets.
        topics: Vec<TopicEntries<FetchPartition>>,
    },
    /// Offset lookups.
    ListOffsets {
        /// Partitions and timestamps.
        topics: Vec<TopicEntries<ListOffsetsPartition>>,
    },
    /// Find a group's coordinator.
    FindCoordinator {
        /// Group id.
        group: String,
    },
    /// Join a group.
    JoinGroup(JoinGroup),
    /// Get this member's assignment.
    SyncGroup {
        /// Group id.
        group: String,
        /// Generation the member joined.
        generation: i32,
        /// Member id.
        member_id: String,
    },
    /// Heartbeat.
    Heartbeat {
        /// Group id.
        group: String,
        /// Generation the member is in.
        generation: i32,
        /// Member id.
        member_id: String,
    },
    /// Leave.
    LeaveGroup {
        /// Group id.
        group: String,
        /// Member id.
        member_id: String,
    },
    /// Commit offsets (generation -1 and empty member id: a commit from outside the group,
    /// accepted only while the group has no members).
    OffsetCommit {
        /// Group id.
        group: String,
        /// Generation.
        generation: i32,
        /// Member id.
        member_id: String,
        /// Offsets: the next offset to read per partition.
        topics: Vec<TopicEntries<(u32, i64)>>,
    },
    /// Read committed offsets (empty topics: every committed partition).
    OffsetFetch {
        /// Group id.
        group: String,
        /// Partitions.
        topics: Vec<TopicEntries<u32>>,
    },
    /// List groups.
    ListGroups,
    /// Describe groups.
    DescribeGroups {
        /// Group ids.
        groups: Vec<String>,
    },
    /// Get a producer id for idempotent produce.
    InitProducerId,
}

/// A JoinGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroup {
    /// Group id.
    pub group: String,
    /// Empty for a new member; the id the broker gave otherwise.
    pub member_id: String,
    /// The member is removed when no heartbeat arrives for this long.
    pub session_timeout_ms: u32,
    /// How long a rebalance waits for members to rejoin.
    pub rebalance_timeout_ms: u32,
    /// Assignor: `range` or `roundrobin`.
    pub assignor: String,
    /// Topics the member subscribes to.
    pub topics: Vec<String>,
}

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
    /// `Empty`, `PreparingRebalance` or `Stable`.
    pub state: String,
    /// Generation.
    pub generation: i32,
    /// Assignor.
    pub assignor: String,
    /// Members.
    pub members: Vec<MemberDescription>,
}

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

impl Request {
    /// The request's API key.
    pub fn api_key(&self) -> ApiKey {
        match self {
            Request::ApiVersions => ApiKey::ApiVersions,
            Request::Metadata { .. } => ApiKey::Metadata,
            Request::CreateTopics { .. } => ApiKey::CreateTopics,
            Request::DeleteTopics { .. } => ApiKey::DeleteTopics,
            Request::DescribeConfigs { .. } => ApiKey::DescribeConfigs,
            Request::AlterConfigs { .. } => ApiKey::AlterConfigs,
            Request::Produce { .. } => ApiKey::Produce,
            Request::Fetch { .. } => ApiKey::Fetch,
            Request::ListOffsets { .. } => ApiKey::ListOffsets,
            Request::FindCoordinator { .. } => ApiKey::FindCoordinator,
            Request::JoinGroup(_) => ApiKey::JoinGroup,
            Request::SyncGroup { .. } => ApiKey::SyncGroup,
            Request::Heartbeat { .. } => ApiKey::Heartbeat,
            Request::LeaveGroup { .. } => ApiKey::LeaveGroup,
            Request::OffsetCommit { .. } => ApiKey::OffsetCommit,
            Request::OffsetFetch { .. } => ApiKey::OffsetFetch,
            Request::ListGroups => ApiKey::ListGroups,
            Request::DescribeGroups { .. } => ApiKey::DescribeGroups,
            Request::InitProducerId => ApiKey::InitProducerId,
        }
    }

    /// Decodes a request body.
    ///
    /// # Errors
    /// [`DecodeError`] for unknown APIs, unsupported versions and malformed bodies.
    pub fn decode(api_key: u16, version: u16, body: Bytes) -> Result<Request, DecodeError> {
        let api = ApiKey::from_u16(api_key).ok_or(DecodeError::UnknownApi(api_key))?;
        api.check_version(version)?;
        let mut r = Reader::new(body);
        let request = match api {
            ApiKey::ApiVersions => Request::ApiVersions,
            ApiKey::Metadata => Request::Metadata {
                topics: read_strings(&mut r, "topics")?,
            },
            ApiKey::CreateTopics => {
                let count = r.count("topics", 12)?;
                let topics = (0..count)
                    .map(|_| {
                        Ok(NewTopic {
                            name: r.string("name")?,
                            partitions: r.u32("partitions")?,
                            replication_factor: r.u16("replication_factor")?,
                            configs: read_configs(&mut r)?,
                        })
                    })
                    .collect::<Result<_, DecodeError>>()?;
                Request::CreateTopics { topics }
            }
            ApiKey::DeleteTopics => Request::DeleteTopics {
                topics: read_strings(&mut r, "topics")?,
            },
            ApiKey::DescribeConfigs => Request::DescribeConfigs {
                topics: read_strings(&mut r, "topics")?,
            },
            ApiKey::AlterConfigs => {
                let count = r.count("topics", 6)?;
                let topics = (0..count)
                    .map(|_| Ok((r.string("topic")?, read_configs(&mut r)?)))
                    .collect::<Result<_, DecodeError>>()?;
                Request::AlterConfigs { topics }
            }
            ApiKey::Produce => {
                let acks = r.i8("acks")?;
                if !matches!(acks, -1..=1) {
                    return Err(DecodeError::BadValue {
                        field: "acks",
                        value: acks.to_string(),
                    });
                }
                let timeout_ms = r.u32("timeout_ms")?;
                let topics = read_topic_entries(&mut r, 8, |r| {
                    Ok(ProducePartition {
                        partition: r.u32("partition")?,
                        records: r.bytes("records")?,
                    })
                })?;
                Request::Produce {
                    acks,
                    timeout_ms,
                    topics,
                }
            }
            ApiKey::Fetch => {
                let max_wait_ms = r.u32("max_wait_ms")?;
                let min_bytes = r.u32("min_bytes")?;
                let max_bytes = r.u32("max_bytes")?;
                let topics = read_topic_entries(&mut r, 16, |r| {
                    Ok(FetchPartition {
                        partition: r.u32("partition")?,
                        fetch_offset: r.i64("fetch_offset")?,
                        partition_max_bytes: r.u32("partition_max_bytes")?,
                    })
                })?;
                Request::Fetch {
                    max_wait_ms,
                    min_bytes,
                    max_bytes,
                    topics,
                }
            }
            ApiKey::FindCoordinator => Request::FindCoordinator {
                group: r.string("group")?,
            },
            ApiKey::JoinGroup => Request::JoinGroup(JoinGroup {
                group: r.string("group")?,
                member_id: r.string("member_id")?,
                session_timeout_ms: r.u32("session_timeout_ms")?,
                rebalance_timeout_ms: r.u32("rebalance_timeout_ms")?,
                assignor: r.string("assignor")?,
                topics: read_strings(&mut r, "topics")?,
            }),
            ApiKey::SyncGroup => Request::SyncGroup {
                group: r.string("group")?,
                generation: r.i32("generation")?,
                member_id: r.string("member_id")?,
            },
            ApiKey::Heartbeat => Request::Heartbeat {
                group: r.string("group")?,
                generation: r.i32("generation")?,
                member_id: r.string("member_id")?,
            },
            ApiKey::LeaveGroup => Request::LeaveGroup {
                group: r.string("group")?,
                member_id: r.string("member_id")?,
            },
            ApiKey::OffsetCommit => Request::OffsetCommit {
                group: r.string("group")?,
                generation: r.i32("generation")?,
                member_id: r.string("member_id")?,
                topics: read_topic_entries(&mut r, 12, |r| {
                    Ok((r.u32("partition")?, r.i64("offset")?))
                })?,
            },
            ApiKey::OffsetFetch => Request::OffsetFetch {
                group: r.string("group")?,
                topics: read_topic_entries(&mut r, 4, |r| r.u32("partition"))?,
            },
            ApiKey::ListGroups => Request::ListGroups,
            ApiKey::DescribeGroups => Request::DescribeGroups {
                groups: read_strings(&mut r, "groups")?,
            },
            ApiKey::InitProducerId => Request::InitProducerId,
            ApiKey::ListOffsets => {
                let topics = read_topic_entries(&mut r, 12, |r| {
                    Ok(ListOffsetsPartition {
                        partition: r.u32("partition")?,
                        timestamp: r.i64("timestamp")?,
                    })
                })?;
                Request::ListOffsets { topics }
            }
        };
        r.finish()?;
        Ok(request)
    }

    /// Encodes the body (without frame header).
    ///
    /// # Errors
    /// A value too long for its length field (see [`EncodeError`]); `out` then holds a
    /// partial body that must not be sent.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            Request::ApiVersions => {}
            Request::Metadata { topics }
            | Request::DeleteTopics { topics }
            | Request::DescribeConfigs { topics } => write_strings(out, "topics", topics)?,
            Request::CreateTopics { topics } => {
                out.put_count("topics", topics.len())?;
                for topic in topics {
                    out.put_string("name", &topic.name)?;
                    out.put_u32(topic.partitions);
                    out.put_u16(topic.replication_factor);
                    write_configs(out, &topic.configs)?;
                }
            }
            Request::AlterConfigs { topics } => {
                out.put_count("topics", topics.len())?;
                for (topic, configs) in topics {
                    out.put_string("topic", topic)?;
                    write_configs(out, configs)?;
                }
            }
            Request::Produce {
                acks,
                timeout_ms,
                topics,
            } => {
                out.put_i8(*acks);
                out.put_u32(*timeout_ms);
                write_topic_entries(out, topics, |out, p| {
                    out.put_u32(p.partition);
                    out.put_sized("records", &p.records)?;
                    Ok(())
                })?;
            }
            Request::Fetch {
                max_wait_ms,
                min_bytes,
                max_bytes,
                topics,
            } => {
                out.put_u32(*max_wait_ms);
                out.put_u32(*min_bytes);
                out.put_u32(*max_bytes);
                write_topic_entries(out, topics, |out, p| {
                    out.put_u32(p.partition);
                    out.put_i64(p.fetch_offset);
                    out.put_u32(p.partition_max_bytes);
                    Ok(())
                })?;
            }
            Request::ListOffsets { topics } => write_topic_entries(out, topics, |out, p| {
                out.put_u32(p.partition);
                out.put_i64(p.timestamp);
                Ok(())
            })?,
            Request::FindCoordinator { group } => out.put_string("group", group)?,
            Request::JoinGroup(join) => {
                out.put_string("group", &join.group)?;
                out.put_string("member_id", &join.member_id)?;
                out.put_u32(join.session_timeout_ms);
                out.put_u32(join.rebalance_timeout_ms);
                out.put_string("assignor", &join.assignor)?;
                write_strings(out, "topics", &join.topics)?;
            }
            Request::SyncGroup {
                group,
                generation,
                member_id,
            }
            | Request::Heartbeat {
                group,
                generation,
                member_id,
            } => {
                out.put_string("group", group)?;
                out.put_i32(*generation);
                out.put_string("member_id", member_id)?;
            }
            Request::LeaveGroup { group, member_id } => {
                out.put_string("group", group)?;
                out.put_string("member_id", member_id)?;
            }
            Request::OffsetCommit {
                group,
                generation,
                member_id,
                topics,
            } => {
                out.put_string("group", group)?;
                out.put_i32(*generation);
                out.put_string("member_id", member_id)?;
                write_topic_entries(out, topics, |out, (partition, offset)| {
                    out.put_u32(*partition);
                    out.put_i64(*offset);
                    Ok(())
                })?;
            }
            Request::OffsetFetch { group, topics } => {
                out.put_string("group", group)?;
                write_topic_entries(out, topics, |out, partition| {
                    out.put_u32(*partition);
                    Ok(())
                })?;
            }
            Request::ListGroups => {}
            Request::DescribeGroups { groups } => write_strings(out, "groups", groups)?,
            Request::InitProducerId => {}
        }
        Ok(())
    }
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

fn read_error(r: &mut Reader) -> Result<ErrorCode, DecodeError> {
    Ok(ErrorCode::from_u16(r.u16("error")?))
}

fn read_topic_results(r: &mut Reader) -> Result<Vec<TopicResult>, DecodeError> {
    let count = r.count("topics", 6)?;
    (0..count)
        .map(|_| {
            Ok(TopicResult {
                topic: r.string("topic")?,
                error: read_error(r)?,
                message: r.string("message")?,
            })
        })
        .collect()
}

fn write_topic_results(out: &mut BytesMut, topics: &[TopicResult]) -> Result<(), EncodeError> {
    out.put_count("topics", topics.len())?;
    for topic in topics {
        out.put_string("topic", &topic.topic)?;
        out.put_u16(topic.error as u16);
        out.put_string("message", &topic.message)?;
    }
    Ok(())
}

/// Writes the part of a fetch partition entry before its records.
pub fn write_fetch_partition_header(
    out: &mut BytesMut,
    result: &FetchPartitionResult,
    records_len: usize,
) -> Result<(), EncodeError> {
    out.put_u32(result.partition);
    out.put_u16(result.error as u16);
    out.put_i64(result.high_watermark);
    out.put_i64(result.log_start_offset);
    out.put_u32(len_u32("records", records_len)?);
    Ok(())
}

impl Response {
    /// Decodes a response body for `api_key`.
    ///
    /// # Errors
    /// [`DecodeError`] for malformed bodies.
    pub fn decode(api_key: ApiKey, body: Bytes) -> Result<Response, DecodeError> {
        let mut r = Reader::new(body);
        let response = match api_key {
            ApiKey::ApiVersions => {
                let count = r.count("apis", 6)?;
                let apis = (0..count)
                    .map(|_| Ok((r.u16("api_key")?, r.u16("min")?, r.u16("max")?)))
                    .collect::<Result<_, DecodeError>>()?;
                Response::ApiVersions { apis }
            }
            ApiKey::Metadata => {
                let count = r.count("brokers", 8)?;
                let brokers = (0..count)
                    .map(|_| {
                        Ok(BrokerInfo {
                            node_id: r.u32("node_id")?,
                            host: r.string("host")?,
                            port: r.u16("port")?,
                        })
                    })
                    .collect::<Result<_, DecodeError>>()?;
                let count = r.count("topics", 8)?;
                let mut topics = Vec::with_capacity(count);
                for _ in 0..count {
                    let topic = r.string("topic")?;
                    let error = read_error(&mut r)?;
                    let partitions_count = r.count("partitions", 42)?;
                    let partitions = (0..partitions_count)
                        .map(|_| {
                            Ok(PartitionMetadata {
                                partition: r.u32("partition")?,
                                error: read_error(&mut r)?,
                                leader: r.u32("leader")?,
                                log_start_offset: r.i64("log_start_offset")?,
                                high_watermark: r.i64("high_watermark")?,
                                log_end_offset: r.i64("log_end_offset")?,
                                size_bytes: r.i64("size_bytes")? as u64,
                            })
                        })
                        .collect::<Result<_, DecodeError>>()?;
                    topics.push(TopicMetadata {
                        topic,
                        error,
                        partitions,
                    });
                }
                Response::Metadata { brokers, topics }
            }
            ApiKey::CreateTopics => Response::CreateTopics {
                topics: read_topic_results(&mut r)?,
            },
            ApiKey::DeleteTopics => Response::DeleteTopics {
                topics: read_topic_results(&mut r)?,
            },
            ApiKey::AlterConfigs => Response::AlterConfigs {
                topics: read_topic_results(&mut r)?,
            },
            ApiKey::DescribeConfigs => {
                let count = r.count("topics", 8)?;
                let topics = (0..count)
                    .map(|_| {
                        Ok((
                            r.string("topic")?,
                            read_error(&mut r)?,
                            read_configs(&mut r)?,
                        ))
                    })
                    .collect::<Result<_, DecodeError>>()?;
                Response::DescribeConfigs { topics }
            }
            ApiKey::Produce => Response::Produce {
                topics: read_topic_entries(&mut r, 22, |r| {
                    Ok(ProducePartitionResult {
                        partition: r.u32("partition")?,
                        error: read_error(r)?,
                        base_offset: r.i64("base_offset")?,
                        log_start_offset: r.i64("log_start_offset")?,
                    })
                })?,
            },
            ApiKey::Fetch => Response::Fetch {
                topics: read_topic_entries(&mut r, FETCH_PARTITION_HEADER_LEN, |r| {
                    Ok(FetchPartitionResult {
                        partition: r.u32("partition")?,
                        error: read_error(r)?,
                        high_watermark: r.i64("high_watermark")?,
                        log_start_offset: r.i64("log_start_offset")?,
                        records: r.bytes("records")?,
                    })
                })?,
            },
            ApiKey::FindCoordinator => Response::FindCoordinator {
                error: read_error(&mut r)?,
                broker: BrokerInfo {
                    node_id: r.u32("node_id")?,
                    host: r.string("host")?,
                    port: r.u16("port")?,
                },
            },
            ApiKey::JoinGroup => Response::JoinGroup {
                error: read_error(&mut r)?,
                generation: r.i32("generation")?,
                member_id: r.string("member_id")?,
                members: read_strings(&mut r, "members")?,
            },
            ApiKey::SyncGroup => Response::SyncGroup {
                error: read_error(&mut r)?,
                assignment: read_topic_entries(&mut r, 4, |r| r.u32("partition"))?,
            },
            ApiKey::Heartbeat => Response::Heartbeat {
                error: read_error(&mut r)?,
            },
            ApiKey::LeaveGroup => Response::LeaveGroup {
                error: read_error(&mut r)?,
            },
            ApiKey::OffsetCommit => Response::OffsetCommit {
                topics: read_topic_entries(&mut r, 6, |r| {
                    Ok((r.u32("partition")?, read_error(r)?))
                })?,
            },
            ApiKey::OffsetFetch => Response::OffsetFetch {
                error: read_error(&mut r)?,
                topics: read_topic_entries(&mut r, 12, |r| {
                    Ok((r.u32("partition")?, r.i64("offset")?))
                })?,
            },
            ApiKey::ListGroups => {
                let count = r.count("groups", 4)?;
                let groups = (0..count)
                    .map(|_| Ok((r.string("group")?, r.string("state")?)))
                    .collect::<Result<_, DecodeError>>()?;
                Response::ListGroups { groups }
            }
            ApiKey::DescribeGroups => {
                let count = r.count("groups", 12)?;
                let mut groups = Vec::with_capacity(count);
                for _ in 0..count {
                    let group = r.string("group")?;
                    let error = read_error(&mut r)?;
                    let state = r.string("state")?;
                    let generation = r.i32("generation")?;
                    let assignor = r.string("assignor")?;
                    let members_count = r.count("members", 10)?;
                    let mut members = Vec::with_capacity(members_count);
                    for _ in 0..members_count {
                        members.push(MemberDescription {
                            member_id: r.string("member_id")?,
                            topics: read_strings(&mut r, "topics")?,
                            assignment: read_topic_entries(&mut r, 4, |r| r.u32("partition"))?,
                        });
                    }
                    groups.push(GroupDescription {
                        group,
                        error,
                        state,
                        generation,
                        assignor,
                        members,
                    });
                }
                Response::DescribeGroups { groups }
            }
            ApiKey::InitProducerId => Response::InitProducerId {
                error: read_error(&mut r)?,
                producer_id: r.i64("producer_id")?,
                producer_epoch: r.i32("producer_epoch")? as i16,
            },
            ApiKey::ListOffsets => Response::ListOffsets {
                topics: read_topic_entries(&mut r, 22, |r| {
                    Ok(ListOffsetsPartitionResult {
                        partition: r.u32("partition")?,
                        error: read_error(r)?,
                        offset: r.i64("offset")?,
                        timestamp: r.i64("timestamp")?,
                    })
                })?,
            },
        };
        r.finish()?;
        Ok(response)
    }

    /// Encodes the body (without frame header).
    ///
    /// # Errors
    /// A value too long for its length field (see [`EncodeError`]); `out` then holds a
    /// partial body that must not be sent.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            Response::ApiVersions { apis } => {
                out.put_count("apis", apis.len())?;
                for (key, min, max) in apis {
                    out.put_u16(*key);
                    out.put_u16(*min);
                    out.put_u16(*max);
                }
            }
            Response::Metadata { brokers, topics } => {
                out.put_count("brokers", brokers.len())?;
                for broker in brokers {
                    out.put_u32(broker.node_id);
                    out.put_string("host", &broker.host)?;
                    out.put_u16(broker.port);
                }
                out.put_count("topics", topics.len())?;
                for topic in topics {
                    out.put_string("topic", &topic.topic)?;
                    out.put_u16(topic.error as u16);
                    out.put_count("partitions", topic.partitions.len())?;
                    for p in &topic.partitions {
                        out.put_u32(p.partition);
                        out.put_u16(p.error as u16);
                        out.put_u32(p.leader);
                        out.put_i64(p.log_start_offset);
                        out.put_i64(p.high_watermark);
                        out.put_i64(p.log_end_offset);
                        out.put_i64(p.size_bytes as i64);
                    }
                }
            }
            Response::CreateTopics { topics }
            | Response::DeleteTopics { topics }
            | Response::AlterConfigs { topics } => write_topic_results(out, topics)?,
            Response::DescribeConfigs { topics } => {
                out.put_count("topics", topics.len())?;
                for (topic, error, configs) in topics {
                    out.put_string("topic", topic)?;
                    out.put_u16(*error as u16);
                    write_configs(out, configs)?;
                }
            }
            Response::Produce { topics } => write_topic_entries(out, topics, |out, p| {
                out.put_u32(p.partition);
                out.put_u16(p.error as u16);
                out.put_i64(p.base_offset);
                out.put_i64(p.log_start_offset);
                Ok(())
            })?,
            Response::Fetch { topics } => write_topic_entries(out, topics, |out, p| {
                write_fetch_partition_header(out, p, p.records.len())?;
                out.put_slice(&p.records);
                Ok(())
            })?,
            Response::ListOffsets { topics } => write_topic_entries(out, topics, |out, p| {
                out.put_u32(p.partition);
                out.put_u16(p.error as u16);
                out.put_i64(p.offset);
                out.put_i64(p.timestamp);
                Ok(())
            })?,
            Response::InitProducerId {
                error,
                producer_id,
                producer_epoch,
            } => {
                out.put_u16(*error as u16);
                out.put_i64(*producer_id);
                out.put_i32(i32::from(*producer_epoch));
            }
            Response::FindCoordinator { error, broker } => {
                out.put_u16(*error as u16);
                out.put_u32(broker.node_id);
                out.put_string("host", &broker.host)?;
                out.put_u16(broker.port);
            }
            Response::JoinGroup {
                error,
                generation,
                member_id,
                members,
            } => {
                out.put_u16(*error as u16);
                out.put_i32(*generation);
                out.put_string("member_id", member_id)?;
                write_strings(out, "members", members)?;
            }
            Response::SyncGroup { error, assignment } => {
                out.put_u16(*error as u16);
                write_topic_entries(out, assignment, |out, partition| {
                    out.put_u32(*partition);
                    Ok(())
                })?;
            }
            Response::Heartbeat { error } | Response::LeaveGroup { error } => {
                out.put_u16(*error as u16)
            }
            Response::OffsetCommit { topics } => {
                write_topic_entries(out, topics, |out, (partition, error)| {
                    out.put_u32(*partition);
                    out.put_u16(*error as u16);
                    Ok(())
                })?
            }
            Response::OffsetFetch { error, topics } => {
                out.put_u16(*error as u16);
                write_topic_entries(out, topics, |out, (partition, offset)| {
                    out.put_u32(*partition);
                    out.put_i64(*offset);
                    Ok(())
                })?;
            }
            Response::ListGroups { groups } => {
                out.put_count("groups", groups.len())?;
                for (group, state) in groups {
                    out.put_string("group", group)?;
                    out.put_string("state", state)?;
                }
            }
            Response::DescribeGroups { groups } => {
                out.put_count("groups", groups.len())?;
                for group in groups {
                    out.put_string("group", &group.group)?;
                    out.put_u16(group.error as u16);
                    out.put_string("state", &group.state)?;
                    out.put_i32(group.generation);
                    out.put_string("assignor", &group.assignor)?;
                    out.put_count("members", group.members.len())?;
                    for member in &group.members {
                        out.put_string("member_id", &member.member_id)?;
                        write_strings(out, "topics", &member.topics)?;
                        write_topic_entries(out, &member.assignment, |out, partition| {
                            out.put_u32(*partition);
                            Ok(())
                        })?;
                    }
                }
            }
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(request: Request) {
        let mut body = BytesMut::new();
        request.encode(&mut body).unwrap();
        let decoded = Request::decode(request.api_key() as u16, 0, body.freeze()).unwrap();
        assert_eq!(decoded, request);
    }

    #[test]
    fn a_value_too_long_for_the_wire_is_an_encode_error_naming_the_field() {
        // Goal: a member id built past 64 KiB cannot panic the encoder (it once took a
        // shard down); the error names the field and the limit.
        let response = Response::JoinGroup {
            error: ErrorCode::None,
            generation: 1,
            member_id: "m".repeat(70_000),
            members: vec![],
        };
        let error = response.encode(&mut BytesMut::new()).unwrap_err();
        assert_eq!(
            error,
            EncodeError {
                field: "member_id",
                len: 70_000,
                limit: 65_535
            }
        );
        let request = Request::CreateTopics {
            topics: vec![NewTopic {
                name: "t".into(),
                partitions: 1,
                replication_factor: 1,
                configs: vec![ConfigEntry {
                    key: "k".repeat(70_000),
                    value: "1".into(),
                }],
            }],
        };
        let error = request.encode(&mut BytesMut::new()).unwrap_err();
        assert_eq!(error.field, "config.key");
        assert!(error.to_string().contains("65535"), "{error}");
    }

    #[test]
    fn every_request_round_trips() {
        // Goal: encode and decode agree for every API.
        round_trip(Request::ApiVersions);
        round_trip(Request::Metadata {
            topics: vec!["a".into(), "b".into()],
        });
        round_trip(Request::CreateTopics {
            topics: vec![NewTopic {
                name: "orders".into(),
                partitions: 6,
                replication_factor: 1,
                configs: vec![ConfigEntry {
                    key: "retention.ms".into(),
                    value: "1000".into(),
                }],
            }],
        });
        round_trip(Request::DeleteTopics {
            topics: vec!["orders".into()],
        });
        round_trip(Request::DescribeConfigs {
            topics: vec!["orders".into()],
        });
        round_trip(Request::AlterConfigs {
            topics: vec![(
                "orders".into(),
                vec![ConfigEntry {
                    key: "fsync".into(),
                    value: "never".into(),
                }],
            )],
        });
        round_trip(Request::Produce {
            acks: -1,
            timeout_ms: 30_000,
            topics: vec![TopicEntries {
                topic: "orders".into(),
                partitions: vec![ProducePartition {
                    partition: 3,
                    records: Bytes::from_static(b"batch bytes"),
                }],
            }],
        });
        round_trip(Request::Fetch {
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 1 << 20,
            topics: vec![TopicEntries {
                topic: "orders".into(),
                partitions: vec![FetchPartition {
                    partition: 1,
                    fetch_offset: 42,
                    partition_max_bytes: 65536,
                }],
            }],
        });
        round_trip(Request::JoinGroup(JoinGroup {
            group: "g".into(),
            member_id: String::new(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            assignor: "range".into(),
            topics: vec!["a".into()],
        }));
        round_trip(Request::SyncGroup {
            group: "g".into(),
            generation: 3,
            member_id: "m".into(),
        });
        round_trip(Request::Heartbeat {
            group: "g".into(),
            generation: 3,
            member_id: "m".into(),
        });
        round_trip(Request::LeaveGroup {
            group: "g".into(),
            member_id: "m".into(),
        });
        round_trip(Request::OffsetCommit {
            group: "g".into(),
            generation: 3,
            member_id: "m".into(),
            topics: vec![TopicEntries {
                topic: "a".into(),
                partitions: vec![(0, 42), (1, 7)],
            }],
        });
        round_trip(Request::OffsetFetch {
            group: "g".into(),
            topics: vec![TopicEntries {
                topic: "a".into(),
                partitions: vec![0, 1],
            }],
        });
        round_trip(Request::ListGroups);
        round_trip(Request::DescribeGroups {
            groups: vec!["g".into()],
        });
        round_trip(Request::FindCoordinator { group: "g".into() });
        round_trip(Request::ListOffsets {
            topics: vec![TopicEntries {
                topic: "t".into(),
                partitions: vec![ListOffsetsPartition {
                    partition: 0,
                    timestamp: EARLIEST_TIMESTAMP,
                }],
            }],
        });
    }

    #[test]
    fn responses_round_trip() {
        // Goal: the client decodes what the server encodes.
        let responses = [
            (
                ApiKey::ApiVersions,
                Response::ApiVersions {
                    apis: vec![(0, 0, 0), (10, 0, 0)],
                },
            ),
            (
                ApiKey::Metadata,
                Response::Metadata {
                    brokers: vec![BrokerInfo {
                        node_id: 1,
                        host: "127.0.0.1".into(),
                        port: 7070,
                    }],
                    topics: vec![TopicMetadata {
                        topic: "t".into(),
                        error: ErrorCode::None,
                        partitions: vec![PartitionMetadata {
                            partition: 0,
                            error: ErrorCode::None,
                            leader: 1,
                            log_start_offset: 0,
                            high_watermark: 5,
                            log_end_offset: 5,
                            size_bytes: 1234,
                        }],
                    }],
                },
            ),
            (
                ApiKey::Fetch,
                Response::Fetch {
                    topics: vec![TopicEntries {
                        topic: "t".into(),
                        partitions: vec![FetchPartitionResult {
                            partition: 0,
                            error: ErrorCode::OffsetOutOfRange,
                            high_watermark: 9,
                            log_start_offset: 2,
                            records: Bytes::from_static(b"xyz"),
                        }],
                    }],
                },
            ),
            (
                ApiKey::Produce,
                Response::Produce {
                    topics: vec![TopicEntries {
                        topic: "t".into(),
                        partitions: vec![ProducePartitionResult {
                            partition: 0,
                            error: ErrorCode::None,
                            base_offset: 7,
                            log_start_offset: 0,
                        }],
                    }],
                },
            ),
        ];
        for (api, response) in responses {
            let mut body = BytesMut::new();
            response.encode(&mut body).unwrap();
            assert_eq!(Response::decode(api, body.freeze()).unwrap(), response);
        }
    }

    #[test]
    fn bad_requests_are_typed_errors() {
        // Goal: unknown APIs, versions, acks and hostile counts are refused by name.
        assert_eq!(
            Request::decode(999, 0, Bytes::new()),
            Err(DecodeError::UnknownApi(999))
        );
        assert_eq!(
            Request::decode(1, 7, Bytes::new()),
            Err(DecodeError::UnsupportedVersion {
                api_key: 1,
                version: 7
            })
        );
        let mut body = BytesMut::new();
        Request::Produce {
            acks: 1,
            timeout_ms: 1,
            topics: vec![],
        }
        .encode(&mut body)
        .unwrap();
        body[0] = 5;
        assert!(matches!(
            Request::decode(10, 0, body.freeze()),
            Err(DecodeError::BadValue { field: "acks", .. })
        ));
        // A count of 4 billion topics in a 4-byte body.
        let hostile = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            Request::decode(1, 0, hostile),
            Err(DecodeError::BadLength { .. })
        ));
        assert!(matches!(
            Request::decode(0, 0, Bytes::from_static(b"x")),
            Err(DecodeError::Trailing(1))
        ));
    }

    #[test]
    fn topic_names_follow_kafka() {
        // Goal: the same names Kafka accepts and refuses.
        for ok in ["a", "orders.v1", "A-b_c", &"x".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "with space", "slash/", "ü", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn random_bodies_never_panic(api in 0u16..16, body in proptest::collection::vec(any::<u8>(), 0..200)) {
            // Goal: every decoder answers garbage with an error or a value, never a panic.
            let _ = Request::decode(api, 0, Bytes::from(body.clone()));
            if let Some(key) = ApiKey::from_u16(api) {
                let _ = Response::decode(key, Bytes::from(body));
            }
        }
    }
}
