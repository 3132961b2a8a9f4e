//! Metadata records: what one Raft entry of the metadata log holds, and their binary codec.
//!
//! An entry's data is a version byte, then a count and that many records. The records of
//! one entry are applied together or not at all ([`crate::image::MetadataImage::apply`]), so
//! a change that touches several things (fencing a broker and moving its partitions) never
//! half-applies.

use bytes::{BufMut, Bytes, BytesMut};
use keel_protocol::wire::{DecodeError, Reader, WriteExt};

use crate::error::Result;

/// The entry format this build writes and reads.
pub const ENTRY_VERSION: u8 = 3;

/// A partition's replicas and leadership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    /// Brokers holding a copy, the preferred leader first.
    pub replicas: Vec<u32>,
    /// In-sync replicas.
    pub isr: Vec<u32>,
    /// The leading broker, or -1 while the partition has none (offline).
    pub leader: i32,
    /// Bumped at every leader change; a leader is valid only for its epoch.
    pub leader_epoch: u32,
    /// Bumped at every change of the partition (leader or ISR): a change computed from
    /// another state than the current one is refused when applied, and an ISR request
    /// names the epoch it was made at (Kafka's partition epoch).
    pub partition_epoch: u32,
    /// A reassignment in progress: replicas being added (in `replicas` already, catching
    /// up) and being removed once every added one is in sync (KIP-455).
    pub adding: Vec<u32>,
    /// See `adding`.
    pub removing: Vec<u32>,
}

impl PartitionState {
    /// This state changed: the next partition epoch.
    pub fn next(&self) -> PartitionState {
        PartitionState {
            partition_epoch: self.partition_epoch + 1,
            ..self.clone()
        }
    }
}

/// One change to the cluster's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A broker process started (or restarted: a new incarnation) and registered.
    RegisterBroker {
        /// Node id.
        id: u32,
        /// The address clients and brokers are told.
        address: String,
        /// Unique per process start.
        incarnation: u64,
    },
    /// A broker's lease lapsed: it must not act as leader for anything.
    FenceBroker {
        /// Node id.
        id: u32,
        /// The incarnation fenced.
        incarnation: u64,
    },
    /// A fenced broker heartbeats again.
    UnfenceBroker {
        /// Node id.
        id: u32,
        /// Its incarnation.
        incarnation: u64,
    },
    /// A topic and its partitions. The topic id is assigned when the record is applied.
    CreateTopic {
        /// Name.
        name: String,
        /// Configs given at creation (`fsync`, `retention.ms`, ...).
        configs: Vec<(String, String)>,
        /// One entry per partition.
        partitions: Vec<PartitionState>,
    },
    /// Partitions added to a topic (after its last one).
    AddPartitions {
        /// Name.
        name: String,
        /// The id of the topic they are for (a re-created one of the same name is not).
        topic_id: u64,
        /// One entry per new partition.
        partitions: Vec<PartitionState>,
    },
    /// A topic removed.
    DeleteTopic {
        /// Name.
        name: String,
        /// The id it had, so a recreated topic of the same name is not deleted by mistake.
        topic_id: u64,
    },
    /// Configs set (an empty value removes the key).
    SetTopicConfigs {
        /// Topic name.
        name: String,
        /// Keys and values.
        configs: Vec<(String, String)>,
    },
    /// A partition's leader, epoch or ISR changed.
    PartitionChange {
        /// Topic id.
        topic_id: u64,
        /// Partition index.
        partition: u32,
        /// The new state.
        state: PartitionState,
    },
    /// The next `count` producer ids go to broker `broker` (KRaft's AllocateProducerIds):
    /// the block starts where the last one handed out ended, so no two brokers, and no two
    /// starts of one broker, hand out the same id.
    AllocateProducerIds {
        /// The broker the block is for.
        broker: u32,
        /// Ids in the block.
        count: u32,
    },
    /// The cluster's id, made by the first controller leader of a new quorum. Every broker
    /// keeps it in its data directory and refuses metadata of a quorum with another id.
    SetClusterId {
        /// The id (printable, at most [`crate::image::CLUSTER_ID_BYTES_MAX`] bytes).
        id: String,
    },
    /// Security metadata set or removed, all at once: users' SCRAM credentials, ACL
    /// bindings, client quotas. The controller keeps them as text it does not interpret;
    /// the brokers do (server/src/security/entries.rs).
    SetSecurity {
        /// The entries changed.
        entries: Vec<SecurityEntry>,
    },
}

/// One security metadata entry: its kind, its key, and its value (`None`: removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEntry {
    /// What it is (1 to [`crate::image::SECURITY_KIND_MAX`]; the brokers name them).
    pub kind: u8,
    /// Which one (at most [`crate::image::SECURITY_TEXT_BYTES_MAX`] bytes).
    pub key: String,
    /// Its value (as long at most), or `None` to remove it.
    pub value: Option<String>,
}

const TAG_REGISTER: u8 = 1;
const TAG_FENCE: u8 = 2;
const TAG_UNFENCE: u8 = 3;
const TAG_CREATE_TOPIC: u8 = 4;
const TAG_DELETE_TOPIC: u8 = 5;
const TAG_SET_CONFIGS: u8 = 6;
const TAG_PARTITION_CHANGE: u8 = 7;
const TAG_PRODUCER_IDS: u8 = 8;
const TAG_CLUSTER_ID: u8 = 9;
const TAG_SECURITY: u8 = 10;
const TAG_ADD_PARTITIONS: u8 = 11;

/// Encodes the records of one entry.
///
/// # Errors
/// A string or list too long for its length field.
pub fn encode_entry(records: &[Record]) -> Result<Vec<u8>> {
    let mut out = BytesMut::new();
    out.put_u8(ENTRY_VERSION);
    out.put_count("records", records.len())?;
    for record in records {
        encode_record(&mut out, record)?;
    }
    Ok(out.to_vec())
}

/// Decodes the records of one entry.
///
/// # Errors
/// Truncated or malformed data, or an unknown version.
pub fn decode_entry(data: &[u8]) -> Result<Vec<Record>> {
    let mut reader = Reader::new(Bytes::copy_from_slice(data));
    let version = reader.i8("entry version")? as u8;
    if !(1..=ENTRY_VERSION).contains(&version) {
        return Err(DecodeError::BadValue {
            field: "entry version",
            value: version.to_string(),
        }
        .into());
    }
    let count = reader.count("records", 1)?;
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        records.push(decode_record(&mut reader, version)?);
    }
    reader.finish()?;
    Ok(records)
}

pub(crate) fn encode_partition(out: &mut BytesMut, state: &PartitionState) -> Result<()> {
    encode_ids(out, "replicas", &state.replicas)?;
    encode_ids(out, "isr", &state.isr)?;
    out.put_i32(state.leader);
    out.put_u32(state.leader_epoch);
    Ok(())
}

/// Writes a partition as entry version 3 does (with its partition epoch and reassignment);
/// the image keeps those in sections of their own.
pub(crate) fn encode_partition_v2(out: &mut BytesMut, state: &PartitionState) -> Result<()> {
    encode_partition(out, state)?;
    out.put_u32(state.partition_epoch);
    encode_reassignment(out, state)
}

/// The reassignment part of a partition (entry version 3).
pub(crate) fn encode_reassignment(out: &mut BytesMut, state: &PartitionState) -> Result<()> {
    encode_ids(out, "adding", &state.adding)?;
    encode_ids(out, "removing", &state.removing)
}

/// Reads what [`encode_reassignment`] wrote.
pub(crate) fn decode_reassignment(reader: &mut Reader, state: &mut PartitionState) -> Result<()> {
    state.adding = decode_ids(reader, "adding")?;
    state.removing = decode_ids(reader, "removing")?;
    Ok(())
}

/// Reads a partition; entries before version 2 have no partition epoch (0).
pub(crate) fn decode_partition(reader: &mut Reader, version: u8) -> Result<PartitionState> {
    Ok(PartitionState {
        replicas: decode_ids(reader, "replicas")?,
        isr: decode_ids(reader, "isr")?,
        leader: reader.i32("leader")?,
        leader_epoch: reader.u32("leader epoch")?,
        partition_epoch: if version >= 2 {
            reader.u32("partition epoch")?
        } else {
            0
        },
        adding: if version >= 3 {
            decode_ids(reader, "adding")?
        } else {
            Vec::new()
        },
        removing: if version >= 3 {
            decode_ids(reader, "removing")?
        } else {
            Vec::new()
        },
    })
}

pub(crate) fn encode_configs(out: &mut BytesMut, configs: &[(String, String)]) -> Result<()> {
    out.put_count("configs", configs.len())?;
    for (key, value) in configs {
        out.put_string("config key", key)?;
        out.put_string("config value", value)?;
    }
    Ok(())
}

pub(crate) fn decode_configs(reader: &mut Reader) -> Result<Vec<(String, String)>> {
    let count = reader.count("configs", 4)?;
    let mut configs = Vec::with_capacity(count);
    for _ in 0..count {
        configs.push((reader.string("config key")?, reader.string("config value")?));
    }
    Ok(configs)
}

fn encode_ids(out: &mut BytesMut, field: &'static str, ids: &[u32]) -> Result<()> {
    out.put_count(field, ids.len())?;
    for id in ids {
        out.put_u32(*id);
    }
    Ok(())
}

fn decode_ids(reader: &mut Reader, field: &'static str) -> Result<Vec<u32>> {
    let count = reader.count(field, 4)?;
    (0..count).map(|_| Ok(reader.u32(field)?)).collect()
}

fn encode_record(out: &mut BytesMut, record: &Record) -> Result<()> {
    match record {
        Record::RegisterBroker {
            id,
            address,
            incarnation,
        } => {
            out.put_u8(TAG_REGISTER);
            out.put_u32(*id);
            out.put_string("address", address)?;
            out.put_u64(*incarnation);
        }
        Record::FenceBroker { id, incarnation } => {
            out.put_u8(TAG_FENCE);
            out.put_u32(*id);
            out.put_u64(*incarnation);
        }
        Record::UnfenceBroker { id, incarnation } => {
            out.put_u8(TAG_UNFENCE);
            out.put_u32(*id);
            out.put_u64(*incarnation);
        }
        Record::CreateTopic {
            name,
            configs,
            partitions,
        } => {
            out.put_u8(TAG_CREATE_TOPIC);
            out.put_string("topic", name)?;
            encode_configs(out, configs)?;
            out.put_count("partitions", partitions.len())?;
            for partition in partitions {
                encode_partition_v2(out, partition)?;
            }
        }
        Record::AddPartitions {
            name,
            topic_id,
            partitions,
        } => {
            out.put_u8(TAG_ADD_PARTITIONS);
            out.put_string("topic", name)?;
            out.put_u64(*topic_id);
            out.put_count("partitions", partitions.len())?;
            for partition in partitions {
                encode_partition_v2(out, partition)?;
            }
        }
        Record::DeleteTopic { name, topic_id } => {
            out.put_u8(TAG_DELETE_TOPIC);
            out.put_string("topic", name)?;
            out.put_u64(*topic_id);
        }
        Record::SetTopicConfigs { name, configs } => {
            out.put_u8(TAG_SET_CONFIGS);
            out.put_string("topic", name)?;
            encode_configs(out, configs)?;
        }
        Record::PartitionChange {
            topic_id,
            partition,
            state,
        } => {
            out.put_u8(TAG_PARTITION_CHANGE);
            out.put_u64(*topic_id);
            out.put_u32(*partition);
            encode_partition_v2(out, state)?;
        }
        Record::AllocateProducerIds { broker, count } => {
            out.put_u8(TAG_PRODUCER_IDS);
            out.put_u32(*broker);
            out.put_u32(*count);
        }
        Record::SetClusterId { id } => {
            out.put_u8(TAG_CLUSTER_ID);
            out.put_string("cluster id", id)?;
        }
        Record::SetSecurity { entries } => {
            out.put_u8(TAG_SECURITY);
            encode_security(out, entries)?;
        }
    }
    Ok(())
}

/// Writes security entries (records, requests and the image's section share it).
pub(crate) fn encode_security(out: &mut BytesMut, entries: &[SecurityEntry]) -> Result<()> {
    out.put_count("security entries", entries.len())?;
    for entry in entries {
        out.put_u8(entry.kind);
        out.put_string("security key", &entry.key)?;
        match &entry.value {
            Some(value) => {
                out.put_u8(1);
                out.put_string("security value", value)?;
            }
            None => out.put_u8(0),
        }
    }
    Ok(())
}

/// Reads what [`encode_security`] wrote.
pub(crate) fn decode_security(reader: &mut Reader) -> Result<Vec<SecurityEntry>> {
    let count = reader.count("security entries", 4)?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let kind = reader.i8("security kind")? as u8;
        let key = reader.string("security key")?;
        let value = match reader.i8("security value present")? {
            0 => None,
            _ => Some(reader.string("security value")?),
        };
        entries.push(SecurityEntry { kind, key, value });
    }
    Ok(entries)
}

/// A count and that many partition states.
fn decode_partitions(reader: &mut Reader, version: u8) -> Result<Vec<PartitionState>> {
    let count = reader.count("partitions", 16)?;
    let mut partitions = Vec::with_capacity(count);
    for _ in 0..count {
        partitions.push(decode_partition(reader, version)?);
    }
    Ok(partitions)
}

fn decode_record(reader: &mut Reader, version: u8) -> Result<Record> {
    let tag = reader.i8("record type")? as u8;
    Ok(match tag {
        TAG_REGISTER => Record::RegisterBroker {
            id: reader.u32("broker id")?,
            address: reader.string("address")?,
            incarnation: reader.i64("incarnation")? as u64,
        },
        TAG_FENCE => Record::FenceBroker {
            id: reader.u32("broker id")?,
            incarnation: reader.i64("incarnation")? as u64,
        },
        TAG_UNFENCE => Record::UnfenceBroker {
            id: reader.u32("broker id")?,
            incarnation: reader.i64("incarnation")? as u64,
        },
        TAG_CREATE_TOPIC => {
            let name = reader.string("topic")?;
            let configs = decode_configs(reader)?;
            let partitions = decode_partitions(reader, version)?;
            Record::CreateTopic {
                name,
                configs,
                partitions,
            }
        }
        TAG_ADD_PARTITIONS => {
            let name = reader.string("topic")?;
            let topic_id = reader.i64("topic id")? as u64;
            let partitions = decode_partitions(reader, version)?;
            Record::AddPartitions {
                name,
                topic_id,
                partitions,
            }
        }
        TAG_DELETE_TOPIC => Record::DeleteTopic {
            name: reader.string("topic")?,
            topic_id: reader.i64("topic id")? as u64,
        },
        TAG_SET_CONFIGS => Record::SetTopicConfigs {
            name: reader.string("topic")?,
            configs: decode_configs(reader)?,
        },
        TAG_PARTITION_CHANGE => Record::PartitionChange {
            topic_id: reader.i64("topic id")? as u64,
            partition: reader.u32("partition")?,
            state: decode_partition(reader, version)?,
        },
        TAG_PRODUCER_IDS => Record::AllocateProducerIds {
            broker: reader.u32("broker id")?,
            count: reader.u32("producer id count")?,
        },
        TAG_CLUSTER_ID => Record::SetClusterId {
            id: reader.string("cluster id")?,
        },
        TAG_SECURITY => Record::SetSecurity {
            entries: decode_security(reader)?,
        },
        other => {
            return Err(DecodeError::BadValue {
                field: "record type",
                value: other.to_string(),
            }
            .into())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition() -> PartitionState {
        PartitionState {
            replicas: vec![2, 1],
            isr: vec![2],
            leader: 2,
            leader_epoch: 7,
            partition_epoch: 11,
            adding: vec![3],
            removing: vec![1],
        }
    }

    // Every record kind survives encode then decode unchanged.
    #[test]
    fn round_trip() {
        let records = vec![
            Record::RegisterBroker {
                id: 3,
                address: "127.0.0.1:7070".into(),
                incarnation: u64::MAX,
            },
            Record::FenceBroker {
                id: 3,
                incarnation: 9,
            },
            Record::AddPartitions {
                name: "orders".into(),
                topic_id: 4,
                partitions: vec![partition(), partition()],
            },
            Record::UnfenceBroker {
                id: 3,
                incarnation: 9,
            },
            Record::CreateTopic {
                name: "t".into(),
                configs: vec![("fsync".into(), "always".into())],
                partitions: vec![partition(), partition()],
            },
            Record::DeleteTopic {
                name: "t".into(),
                topic_id: 5,
            },
            Record::SetTopicConfigs {
                name: "t".into(),
                configs: vec![],
            },
            Record::PartitionChange {
                topic_id: 5,
                partition: 1,
                state: partition(),
            },
            Record::AllocateProducerIds {
                broker: 2,
                count: 1_000,
            },
            Record::SetClusterId { id: "3f2a".into() },
            Record::SetSecurity {
                entries: vec![
                    SecurityEntry {
                        kind: 1,
                        key: "alice".into(),
                        value: Some("credential".into()),
                    },
                    SecurityEntry {
                        kind: 2,
                        key: "binding".into(),
                        value: None,
                    },
                ],
            },
        ];
        let data = encode_entry(&records).unwrap();
        assert_eq!(decode_entry(&data).unwrap(), records);
    }

    // Cut or corrupted entries are errors, never panics or huge allocations.
    #[test]
    fn truncated_and_garbage_are_errors() {
        let data = encode_entry(&[Record::CreateTopic {
            name: "topic".into(),
            configs: vec![("a".into(), "b".into())],
            partitions: vec![partition()],
        }])
        .unwrap();
        for len in 0..data.len() {
            assert!(decode_entry(&data[..len]).is_err(), "prefix of {len} bytes");
        }
        assert!(decode_entry(&[1, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(
            decode_entry(&[ENTRY_VERSION + 1, 0, 0, 0, 0]).is_err(),
            "unknown version"
        );
    }

    proptest::proptest! {
        // Arbitrary bytes decode to an error or to records, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = decode_entry(&data);
        }
    }
}
