//! Requests of the native protocol: their types, decoding and encoding.

use super::*;

/// A decoded request body.
#[derive(Debug, Clone, PartialEq)]
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
    /// The controller, voters and brokers.
    DescribeCluster,
    /// A follower's fetch from partition leaders.
    ReplicaFetch(ReplicaFetch),
    /// Leadership back to the preferred replica (cluster mode).
    ElectLeaders {
        /// Topic.
        topic: String,
        /// One partition, or -1 for all.
        partition: i64,
    },
    /// Move a partition's replicas to these brokers (cluster mode).
    ReassignPartition {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// Wanted replicas, the preferred leader first.
        replicas: Vec<u32>,
    },
    /// Move every replica off a broker (cluster mode).
    DecommissionBroker {
        /// Node id.
        broker: u32,
    },
    /// SASL and the admin APIs for users, ACLs and quotas.
    Security(SecurityRequest),
    /// Cluster links.
    Link(LinkRequest),
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

impl Request {
    /// The consumer group a group request is about (FindCoordinator's too).
    pub fn group(&self) -> Option<&str> {
        match self {
            Request::FindCoordinator { group }
            | Request::SyncGroup { group, .. }
            | Request::Heartbeat { group, .. }
            | Request::LeaveGroup { group, .. }
            | Request::OffsetCommit { group, .. }
            | Request::OffsetFetch { group, .. } => Some(group),
            Request::JoinGroup(join) => Some(&join.group),
            _ => None,
        }
    }

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
            Request::DescribeCluster => ApiKey::DescribeCluster,
            Request::ReplicaFetch(_) => ApiKey::ReplicaFetch,
            Request::ElectLeaders { .. } => ApiKey::ElectLeaders,
            Request::ReassignPartition { .. } => ApiKey::ReassignPartition,
            Request::DecommissionBroker { .. } => ApiKey::DecommissionBroker,
            Request::Security(request) => request.api_key(),
            Request::Link(_) => ApiKey::Link,
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
            ApiKey::DescribeCluster => Request::DescribeCluster,
            ApiKey::ReplicaFetch => Request::ReplicaFetch(ReplicaFetch::decode(&mut r)?),
            ApiKey::ElectLeaders => Request::ElectLeaders {
                topic: r.string("topic")?,
                partition: r.i64("partition")?,
            },
            ApiKey::ReassignPartition => {
                let topic = r.string("topic")?;
                let partition = r.u32("partition")?;
                let count = r.count("replicas", 4)?;
                let replicas = (0..count)
                    .map(|_| r.u32("replicas"))
                    .collect::<Result<_, DecodeError>>()?;
                Request::ReassignPartition {
                    topic,
                    partition,
                    replicas,
                }
            }
            ApiKey::DecommissionBroker => Request::DecommissionBroker {
                broker: r.u32("broker")?,
            },
            ApiKey::SaslHandshake
            | ApiKey::SaslAuthenticate
            | ApiKey::DescribeUsers
            | ApiKey::AlterUsers
            | ApiKey::DescribeAcls
            | ApiKey::CreateAcls
            | ApiKey::DeleteAcls
            | ApiKey::DescribeQuotas
            | ApiKey::AlterQuotas => Request::Security(SecurityRequest::decode(api, &mut r)?),
            ApiKey::Link => Request::Link(LinkRequest::decode(&mut r)?),
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

    /// Encodes the body as parts to write back to back, so large record sets are not
    /// copied: a produce request's records are parts of their own (`Bytes` clones); the
    /// rest is encoded as [`Request::encode`] does, into `out` and split off as parts.
    /// The parts concatenated equal `encode`'s bytes.
    ///
    /// # Errors
    /// As [`Request::encode`].
    pub fn encode_parts(
        &self,
        out: &mut BytesMut,
        parts: &mut Vec<Bytes>,
    ) -> Result<(), EncodeError> {
        match self {
            Request::Produce {
                acks,
                timeout_ms,
                topics,
            } => write_produce(out, *acks, *timeout_ms, topics, |out, records| {
                parts.push(out.split().freeze());
                parts.push(records.clone());
            })?,
            other => other.encode(out)?,
        }
        if !out.is_empty() {
            parts.push(out.split().freeze());
        }
        Ok(())
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
            } => write_produce(out, *acks, *timeout_ms, topics, |out, records| {
                out.put_slice(records);
            })?,
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
            Request::InitProducerId | Request::DescribeCluster => {}
            Request::ReplicaFetch(fetch) => fetch.encode(out)?,
            Request::ElectLeaders { topic, partition } => {
                out.put_string("topic", topic)?;
                out.put_i64(*partition);
            }
            Request::ReassignPartition {
                topic,
                partition,
                replicas,
            } => {
                out.put_string("topic", topic)?;
                out.put_u32(*partition);
                out.put_count("replicas", replicas.len())?;
                for id in replicas {
                    out.put_u32(*id);
                }
            }
            Request::DecommissionBroker { broker } => out.put_u32(*broker),
            Request::Security(request) => request.encode(out)?,
            Request::Link(request) => request.encode(out)?,
        }
        Ok(())
    }
}

/// A produce body; each partition's records (after their length) are handed to `records`,
/// which appends them to `out` or sends them as a part of their own.
fn write_produce(
    out: &mut BytesMut,
    acks: i8,
    timeout_ms: u32,
    topics: &[TopicEntries<ProducePartition>],
    mut records: impl FnMut(&mut BytesMut, &Bytes),
) -> Result<(), EncodeError> {
    out.put_i8(acks);
    out.put_u32(timeout_ms);
    write_topic_entries(out, topics, |out, p| {
        out.put_u32(p.partition);
        out.put_u32(len_u32("records", p.records.len())?);
        records(out, &p.records);
        Ok(())
    })
}
