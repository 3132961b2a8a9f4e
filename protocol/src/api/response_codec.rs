//! Encoding and decoding of [`Response`] bodies (the types are in `response.rs`).
use super::*;

fn read_error(r: &mut Reader) -> Result<ErrorCode, DecodeError> {
    Ok(ErrorCode::from_u16(r.u16("error")?))
}

pub(super) fn read_topic_results(r: &mut Reader) -> Result<Vec<TopicResult>, DecodeError> {
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

pub(super) fn write_topic_results(
    out: &mut BytesMut,
    topics: &[TopicResult],
) -> Result<(), EncodeError> {
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
                    let partitions_count = r.count("partitions", 54)?;
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
                                leader_epoch: r.u32("leader_epoch")?,
                                replicas: read_ids(&mut r, "replicas")?,
                                isr: read_ids(&mut r, "isr")?,
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
            ApiKey::ElectLeaders => Response::ElectLeaders {
                topics: read_topic_results(&mut r)?,
            },
            ApiKey::ReassignPartition => Response::ReassignPartition {
                topics: read_topic_results(&mut r)?,
            },
            ApiKey::DecommissionBroker => Response::DecommissionBroker {
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
            ApiKey::DescribeCluster => {
                let error = read_error(&mut r)?;
                let controller_leader = r.i64("controller_leader")?;
                let controller_term = r.i64("controller_term")? as u64;
                let voters = read_ids(&mut r, "voters")?;
                let metadata_offset = r.i64("metadata_offset")? as u64;
                let count = r.count("brokers", 15)?;
                let mut brokers = Vec::with_capacity(count);
                for _ in 0..count {
                    brokers.push(ClusterBroker {
                        node_id: r.u32("node_id")?,
                        address: r.string("address")?,
                        incarnation: r.i64("incarnation")? as u64,
                        fenced: r.i8("fenced")? != 0,
                    });
                }
                Response::DescribeCluster {
                    error,
                    controller_leader,
                    controller_term,
                    voters,
                    metadata_offset,
                    brokers,
                }
            }
            ApiKey::ReplicaFetch => Response::ReplicaFetch {
                topics: super::replica::decode_results(&mut r)?,
            },
            ApiKey::InitProducerId => Response::InitProducerId {
                error: read_error(&mut r)?,
                producer_id: r.i64("producer_id")?,
                producer_epoch: r.i32("producer_epoch")? as i16,
            },
            ApiKey::SaslHandshake
            | ApiKey::SaslAuthenticate
            | ApiKey::DescribeUsers
            | ApiKey::AlterUsers
            | ApiKey::DescribeAcls
            | ApiKey::CreateAcls
            | ApiKey::DeleteAcls
            | ApiKey::DescribeQuotas
            | ApiKey::AlterQuotas => Response::Security(SecurityResponse::decode(api_key, &mut r)?),
            ApiKey::Link => Response::Link(LinkResponse::decode(&mut r)?),
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
                        out.put_u32(p.leader_epoch);
                        for ids in [&p.replicas, &p.isr] {
                            out.put_count("replicas", ids.len())?;
                            for id in ids {
                                out.put_u32(*id);
                            }
                        }
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
            Response::ReplicaFetch { topics } => super::replica::encode_results(out, topics)?,
            Response::Security(response) => response.encode(out)?,
            Response::Link(response) => response.encode(out)?,
            Response::ElectLeaders { topics }
            | Response::ReassignPartition { topics }
            | Response::DecommissionBroker { topics } => write_topic_results(out, topics)?,
            Response::DescribeCluster {
                error,
                controller_leader,
                controller_term,
                voters,
                metadata_offset,
                brokers,
            } => {
                out.put_u16(*error as u16);
                out.put_i64(*controller_leader);
                out.put_u64(*controller_term);
                out.put_count("voters", voters.len())?;
                for v in voters {
                    out.put_u32(*v);
                }
                out.put_u64(*metadata_offset);
                out.put_count("brokers", brokers.len())?;
                for b in brokers {
                    out.put_u32(b.node_id);
                    out.put_string("address", &b.address)?;
                    out.put_u64(b.incarnation);
                    out.put_u8(u8::from(b.fenced));
                }
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

fn read_ids(r: &mut Reader, field: &'static str) -> Result<Vec<u32>, DecodeError> {
    let count = r.count(field, 4)?;
    (0..count).map(|_| r.u32(field)).collect()
}
