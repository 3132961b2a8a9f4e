//! The metadata state machine: the cluster's metadata as of an offset of the metadata log.
//!
//! Every voter and every broker holds one, built by applying committed entries in order (or
//! by loading a snapshot and applying what follows). Applying is deterministic, so two copies
//! at the same offset are equal.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::records::{PartitionState, Record};

mod security;
mod snapshot;

pub use security::{
    LINK_KIND, LINK_TEXT_BYTES_MAX, SECURITY_CHANGE_ENTRIES_MAX, SECURITY_ENTRIES_MAX,
    SECURITY_KIND_MAX, SECURITY_TEXT_BYTES_MAX,
};

/// Longest topic name (as Kafka).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Most partitions one topic may have.
pub const PARTITIONS_PER_TOPIC_MAX: u32 = 10_000;

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// The address it advertises.
    pub address: String,
    /// Its process incarnation.
    pub incarnation: u64,
    /// True while its lease has lapsed: it leads nothing.
    pub fenced: bool,
}

/// A topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Stable id, unique for the life of the cluster.
    pub id: u64,
    /// Configs.
    pub configs: BTreeMap<String, String>,
    /// Partitions by index.
    pub partitions: Vec<PartitionState>,
}

/// The metadata at `offset`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataImage {
    offset: u64,
    last_topic_id: u64,
    brokers: BTreeMap<u32, BrokerInfo>,
    topics: BTreeMap<String, TopicInfo>,
    /// The first producer id no block has taken yet.
    next_producer_id: u64,
    /// The latest block of producer ids each broker was given: `(first, count)`.
    producer_blocks: BTreeMap<u32, (u64, u32)>,
    /// The cluster's id, once its first controller leader set it.
    cluster_id: Option<String>,
    /// Security metadata by kind and key (users, ACLs, quotas: the brokers read them).
    security: BTreeMap<(u8, String), String>,
}

/// Longest cluster id.
pub const CLUSTER_ID_BYTES_MAX: usize = 64;

/// Most producer ids one block may hold.
pub const PRODUCER_ID_BLOCK_MAX: u32 = 1_000_000;
/// Who the producer ids reserved for mirrored data are "given" to (no broker has this id):
/// a broker's block starting below the end of the latest reservation is not used.
pub const RESERVED_PRODUCER_IDS: u32 = u32::MAX;

impl MetadataImage {
    /// The offset (Raft index) of the last entry applied.
    pub fn offset(&self) -> u64 {
        self.offset
    }
    /// Registered brokers by id.
    pub fn brokers(&self) -> &BTreeMap<u32, BrokerInfo> {
        &self.brokers
    }
    /// Topics by name.
    pub fn topics(&self) -> &BTreeMap<String, TopicInfo> {
        &self.topics
    }
    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.get(name)
    }
    /// A topic's name by id.
    pub fn topic_name(&self, topic_id: u64) -> Option<&str> {
        self.topics
            .iter()
            .find(|(_, t)| t.id == topic_id)
            .map(|(n, _)| n.as_str())
    }
    /// The next producer id a block would start at.
    pub fn next_producer_id(&self) -> u64 {
        self.next_producer_id
    }
    /// The latest block of producer ids given to `broker`, as `(first, count)`.
    pub fn producer_block(&self, broker: u32) -> Option<(u64, u32)> {
        self.producer_blocks.get(&broker).copied()
    }
    /// The cluster's id, once set.
    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }
    /// Brokers not fenced, by id.
    pub fn live_brokers(&self) -> Vec<u32> {
        self.brokers
            .iter()
            .filter(|(_, b)| !b.fenced)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Moves the offset past an entry that holds no records (a Raft leader's empty entry).
    pub fn skip(&mut self, offset: u64) {
        assert!(offset > self.offset, "entries are applied in order");
        self.offset = offset;
    }

    /// Applies the records of the entry at `offset`, all or none. An entry whose records do
    /// not fit the metadata (a topic created twice by racing proposals) changes nothing but
    /// the offset, identically on every copy, and the error says why.
    ///
    /// # Errors
    /// The first record that does not fit.
    pub fn apply(&mut self, offset: u64, records: &[Record]) -> Result<()> {
        assert!(offset > self.offset, "entries are applied in order");
        let mut next = self.clone();
        next.offset = offset;
        let mut result = Ok(());
        for record in records {
            if let Err(e) = next.apply_one(record) {
                result = Err(e);
                break;
            }
        }
        match result {
            Ok(()) => *self = next,
            Err(_) => self.offset = offset,
        }
        result
    }

    fn apply_one(&mut self, record: &Record) -> Result<()> {
        match record {
            Record::RegisterBroker {
                id,
                address,
                incarnation,
            } => {
                self.brokers.insert(
                    *id,
                    BrokerInfo {
                        address: address.clone(),
                        incarnation: *incarnation,
                        fenced: false,
                    },
                );
            }
            Record::FenceBroker { id, incarnation } | Record::UnfenceBroker { id, incarnation } => {
                let fenced = matches!(record, Record::FenceBroker { .. });
                match self.brokers.get_mut(id) {
                    Some(b) if b.incarnation == *incarnation => b.fenced = fenced,
                    _ => {
                        return Err(Error::StaleBroker {
                            id: *id,
                            incarnation: *incarnation,
                        })
                    }
                }
            }
            Record::CreateTopic {
                name,
                configs,
                partitions,
            } => {
                check_topic_name(name)?;
                if self.topics.contains_key(name) {
                    return Err(Error::TopicExists(name.clone()));
                }
                if partitions.is_empty() || partitions.len() > PARTITIONS_PER_TOPIC_MAX as usize {
                    return Err(Error::Invalid {
                        field: "partitions",
                        reason: format!("{} (1 to {PARTITIONS_PER_TOPIC_MAX})", partitions.len()),
                    });
                }
                self.last_topic_id += 1;
                self.topics.insert(
                    name.clone(),
                    TopicInfo {
                        id: self.last_topic_id,
                        configs: configs.iter().cloned().collect(),
                        partitions: partitions.clone(),
                    },
                );
            }
            Record::AddPartitions {
                name,
                topic_id,
                partitions,
            } => {
                let topic = match self.topics.get_mut(name) {
                    Some(t) if t.id == *topic_id => t,
                    _ => return Err(Error::UnknownTopic(name.clone())),
                };
                let count = topic.partitions.len() + partitions.len();
                if partitions.is_empty() || count > PARTITIONS_PER_TOPIC_MAX as usize {
                    return Err(Error::Invalid {
                        field: "partitions",
                        reason: format!("{count} (1 to {PARTITIONS_PER_TOPIC_MAX})"),
                    });
                }
                topic.partitions.extend(partitions.iter().cloned());
            }
            Record::DeleteTopic { name, topic_id } => match self.topics.get(name) {
                Some(t) if t.id == *topic_id => {
                    self.topics.remove(name);
                }
                _ => return Err(Error::UnknownTopic(name.clone())),
            },
            Record::SetTopicConfigs { name, configs } => {
                let topic = self
                    .topics
                    .get_mut(name)
                    .ok_or_else(|| Error::UnknownTopic(name.clone()))?;
                for (key, value) in configs {
                    if value.is_empty() {
                        topic.configs.remove(key);
                    } else {
                        topic.configs.insert(key.clone(), value.clone());
                    }
                }
            }
            Record::PartitionChange {
                topic_id,
                partition,
                state,
            } => {
                let (name, topic) = self
                    .topics
                    .iter_mut()
                    .find(|(_, t)| t.id == *topic_id)
                    .ok_or_else(|| Error::UnknownTopic(format!("id {topic_id}")))?;
                let current = topic
                    .partitions
                    .get_mut(*partition as usize)
                    .ok_or_else(|| Error::UnknownPartition {
                        topic: name.clone(),
                        partition: *partition,
                    })?;
                // A change computed from another state than this one (another change of
                // the partition came first) is refused: it would undo that change.
                if state.partition_epoch != current.partition_epoch + 1 {
                    return Err(Error::Invalid {
                        field: "partition epoch",
                        reason: format!(
                            "{} does not follow {}",
                            state.partition_epoch, current.partition_epoch
                        ),
                    });
                }
                // A leader is valid only for its epoch: every change of leader moves the
                // epoch forward, so two brokers never lead one partition at one epoch.
                if state.leader != current.leader && state.leader_epoch <= current.leader_epoch {
                    return Err(Error::Invalid {
                        field: "leader epoch",
                        reason: format!(
                            "a new leader needs an epoch above {}",
                            current.leader_epoch
                        ),
                    });
                }
                if state.leader_epoch < current.leader_epoch {
                    return Err(Error::Invalid {
                        field: "leader epoch",
                        reason: "epochs never go back".into(),
                    });
                }
                *current = state.clone();
            }
            Record::AllocateProducerIds { broker, count } => {
                // A reservation past mirrored ids may skip more than a block.
                let most = if *broker == RESERVED_PRODUCER_IDS {
                    u32::MAX
                } else {
                    PRODUCER_ID_BLOCK_MAX
                };
                if *count == 0 || *count > most {
                    return Err(Error::Invalid {
                        field: "producer id count",
                        reason: format!("{count} (1 to {PRODUCER_ID_BLOCK_MAX})"),
                    });
                }
                let first = self.next_producer_id;
                // Kafka's producer ids are non-negative i64s.
                let next = first + u64::from(*count);
                if next > i64::MAX as u64 {
                    return Err(Error::Invalid {
                        field: "producer id count",
                        reason: "producer ids exhausted".into(),
                    });
                }
                self.next_producer_id = next;
                self.producer_blocks.insert(*broker, (first, *count));
            }
            Record::SetClusterId { id } => {
                let printable = id.bytes().all(|b| b.is_ascii_graphic());
                if id.is_empty() || id.len() > CLUSTER_ID_BYTES_MAX || !printable {
                    return Err(Error::Invalid {
                        field: "cluster id",
                        reason: format!("{id:?} (1 to {CLUSTER_ID_BYTES_MAX} printable bytes)"),
                    });
                }
                match &self.cluster_id {
                    Some(current) if current != id => {
                        return Err(Error::Invalid {
                            field: "cluster id",
                            reason: format!("the cluster's id is {current} already"),
                        })
                    }
                    _ => self.cluster_id = Some(id.clone()),
                }
            }
            Record::SetSecurity { entries } => {
                self.check_security(entries)?;
                for entry in entries {
                    let key = (entry.kind, entry.key.clone());
                    match &entry.value {
                        Some(value) => self.security.insert(key, value.clone()),
                        None => self.security.remove(&key),
                    };
                }
            }
        }
        Ok(())
    }
}

/// Checks a topic name as Kafka does: 1–249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
///
/// # Errors
/// The name breaks a rule; the error names it.
pub fn check_topic_name(name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::Invalid {
            field: "topic name",
            reason: format!("{name:?}: {reason}"),
        })
    };
    if name.is_empty() || name.len() > TOPIC_NAME_BYTES_MAX {
        return bad("must be 1 to 249 bytes");
    }
    if name == "." || name == ".." {
        return bad("must not be . or ..");
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-')
    {
        return bad("only a-z, A-Z, 0-9, '.', '_' and '-' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
