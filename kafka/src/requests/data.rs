//! Data-path requests: Metadata, Produce, Fetch, ListOffsets, DeleteRecords, InitProducerId.

use crate::read::{Reader, Result};
use bytes::Bytes;

/// A Metadata request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// Topics by name (`None`: every topic). Topics named by id only (v10+) come as
    /// their id in `topic_ids`.
    pub topics: Option<Vec<String>>,
    /// Topics asked for by id (v10+, name null).
    pub topic_ids: Vec<[u8; 16]>,
    /// Whether a missing topic may be created (Keel never auto-creates).
    pub allow_auto_topic_creation: bool,
}

pub(super) fn metadata(r: &mut Reader, version: i16) -> Result<Metadata> {
    let mut topic_ids = Vec::new();
    let topics = r.nullable_array("topics", |r| {
        let id = if version >= 10 {
            Some(r.uuid("topic id")?)
        } else {
            None
        };
        let name = if version >= 10 {
            r.nullable_string("topic")?
        } else {
            Some(r.string("topic")?)
        };
        r.tagged_fields()?;
        Ok((id, name))
    })?;
    let mut names = topics.map(|topics| {
        topics
            .into_iter()
            .filter_map(|(id, name)| match name {
                Some(name) => Some(name),
                None => {
                    topic_ids.extend(id);
                    None
                }
            })
            .collect::<Vec<_>>()
    });
    // Version 0 has no null: an empty list means every topic.
    if version == 0 && names.as_ref().is_some_and(Vec::is_empty) {
        names = None;
    }
    let allow_auto_topic_creation = if version >= 4 {
        r.bool("allow auto topic creation")?
    } else {
        true
    };
    if (8..=10).contains(&version) {
        r.bool("include cluster authorized operations")?;
    }
    if version >= 8 {
        r.bool("include topic authorized operations")?;
    }
    Ok(Metadata {
        topics: names,
        topic_ids,
        allow_auto_topic_creation,
    })
}

/// A partition of a Produce request: index and record batches (null when a client sent
/// none).
pub type ProducePartition = (i32, Option<Bytes>);

/// A Produce request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produce {
    /// Set by transactional producers (refused: transactions are not supported).
    pub transactional_id: Option<String>,
    /// 0, 1 or -1.
    pub acks: i16,
    /// How long to wait for the acks.
    pub timeout_ms: i32,
    /// Per topic, per partition, the record batches as sent.
    pub topics: Vec<(String, Vec<ProducePartition>)>,
}

pub(super) fn produce(r: &mut Reader, _version: i16) -> Result<Produce> {
    let transactional_id = r.nullable_string("transactional id")?;
    let acks = r.i16("acks")?;
    let timeout_ms = r.i32("timeout")?;
    let topics = r.array("topics", |r| {
        let name = r.string("topic")?;
        let partitions = r.array("partitions", |r| {
            let index = r.i32("partition")?;
            let records = r.nullable_bytes("records")?;
            r.tagged_fields()?;
            Ok((index, records))
        })?;
        r.tagged_fields()?;
        Ok((name, partitions))
    })?;
    Ok(Produce {
        transactional_id,
        acks,
        timeout_ms,
        topics,
    })
}

/// A partition of a Fetch request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPartition {
    /// Partition index.
    pub partition: i32,
    /// The leader epoch the client knows (-1: none).
    pub current_leader_epoch: i32,
    /// First offset wanted.
    pub fetch_offset: i64,
    /// Most bytes for this partition.
    pub partition_max_bytes: i32,
}

/// A topic of a Fetch request: by name (v4–12) or by id (v13+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTopic {
    /// Name (empty in v13+).
    pub name: String,
    /// Id (zero before v13).
    pub id: [u8; 16],
    /// Partitions.
    pub partitions: Vec<FetchPartition>,
}

/// A Fetch request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// Longest wait for `min_bytes`.
    pub max_wait_ms: i32,
    /// Answer once this much is there.
    pub min_bytes: i32,
    /// Most bytes in the response.
    pub max_bytes: i32,
    /// 0 read uncommitted, 1 read committed (the same here: no transactions).
    pub isolation_level: i8,
    /// Fetch session id (v7+); sessions are answered as full fetches.
    pub session_id: i32,
    /// Fetch session epoch (v7+).
    pub session_epoch: i32,
    /// Topics.
    pub topics: Vec<FetchTopic>,
}

pub(super) fn fetch(r: &mut Reader, version: i16) -> Result<Fetch> {
    if version <= 14 {
        r.i32("replica id")?;
    }
    let max_wait_ms = r.i32("max wait")?;
    let min_bytes = r.i32("min bytes")?;
    let max_bytes = r.i32("max bytes")?;
    let isolation_level = r.i8("isolation level")?;
    let (session_id, session_epoch) = if version >= 7 {
        (r.i32("session id")?, r.i32("session epoch")?)
    } else {
        (0, -1)
    };
    let topic = |r: &mut Reader| -> Result<(String, [u8; 16])> {
        if version >= 13 {
            Ok((String::new(), r.uuid("topic id")?))
        } else {
            Ok((r.string("topic")?, [0; 16]))
        }
    };
    let topics = r.array("topics", |r| {
        let (name, id) = topic(r)?;
        let partitions = r.array("partitions", |r| {
            let partition = r.i32("partition")?;
            let current_leader_epoch = if version >= 9 {
                r.i32("current leader epoch")?
            } else {
                -1
            };
            let fetch_offset = r.i64("fetch offset")?;
            if version >= 12 {
                r.i32("last fetched epoch")?;
            }
            if version >= 5 {
                r.i64("log start offset")?;
            }
            let partition_max_bytes = r.i32("partition max bytes")?;
            r.tagged_fields()?;
            Ok(FetchPartition {
                partition,
                current_leader_epoch,
                fetch_offset,
                partition_max_bytes,
            })
        })?;
        r.tagged_fields()?;
        Ok(FetchTopic {
            name,
            id,
            partitions,
        })
    })?;
    if version >= 7 {
        r.array("forgotten topics", |r| {
            topic(r)?;
            r.array("forgotten partitions", |r| r.i32("partition"))?;
            r.tagged_fields()
        })?;
    }
    if version >= 11 {
        r.string("rack id")?;
    }
    Ok(Fetch {
        max_wait_ms,
        min_bytes,
        max_bytes,
        isolation_level,
        session_id,
        session_epoch,
        topics,
    })
}

/// A ListOffsets request: per topic, (partition, current leader epoch, timestamp).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsets {
    /// Per topic, (partition, timestamp): -2 earliest, -1 latest, -3 max timestamp, else
    /// a time in ms.
    pub topics: Vec<(String, Vec<(i32, i64)>)>,
}

pub(super) fn list_offsets(r: &mut Reader, version: i16) -> Result<ListOffsets> {
    r.i32("replica id")?;
    if version >= 2 {
        r.i8("isolation level")?;
    }
    let topics = r.array("topics", |r| {
        let name = r.string("topic")?;
        let partitions = r.array("partitions", |r| {
            let partition = r.i32("partition")?;
            if version >= 4 {
                r.i32("current leader epoch")?;
            }
            let timestamp = r.i64("timestamp")?;
            r.tagged_fields()?;
            Ok((partition, timestamp))
        })?;
        r.tagged_fields()?;
        Ok((name, partitions))
    })?;
    Ok(ListOffsets { topics })
}

/// A DeleteRecords request: per topic, (partition, delete below this offset; -1 = the
/// high watermark).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRecords {
    /// Per topic, (partition, offset).
    pub topics: Vec<(String, Vec<(i32, i64)>)>,
    /// Timeout.
    pub timeout_ms: i32,
}

pub(super) fn delete_records(r: &mut Reader) -> Result<DeleteRecords> {
    let topics = r.array("topics", |r| {
        let name = r.string("topic")?;
        let partitions = r.array("partitions", |r| {
            let partition = r.i32("partition")?;
            let offset = r.i64("offset")?;
            r.tagged_fields()?;
            Ok((partition, offset))
        })?;
        r.tagged_fields()?;
        Ok((name, partitions))
    })?;
    let timeout_ms = r.i32("timeout")?;
    Ok(DeleteRecords { topics, timeout_ms })
}

/// One partition of an OffsetForLeaderEpoch request: (partition, the current leader epoch
/// the client knows or -1, the epoch whose end it asks for).
pub type EpochQuery = (i32, i32, i32);

/// An OffsetForLeaderEpoch request (v2+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetForLeaderEpoch {
    /// Per topic, its partitions' queries.
    pub topics: Vec<(String, Vec<EpochQuery>)>,
}

pub(super) fn offset_for_leader_epoch(
    r: &mut Reader,
    version: i16,
) -> Result<OffsetForLeaderEpoch> {
    if version >= 3 {
        r.i32("replica id")?;
    }
    let topics = r.array("topics", |r| {
        let name = r.string("topic")?;
        let partitions = r.array("partitions", |r| {
            let partition = r.i32("partition")?;
            let current = r.i32("current leader epoch")?;
            let epoch = r.i32("leader epoch")?;
            r.tagged_fields()?;
            Ok((partition, current, epoch))
        })?;
        r.tagged_fields()?;
        Ok((name, partitions))
    })?;
    Ok(OffsetForLeaderEpoch { topics })
}

/// An InitProducerId request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitProducerId {
    /// Set by transactional producers (refused).
    pub transactional_id: Option<String>,
}

pub(super) fn init_producer_id(r: &mut Reader, version: i16) -> Result<InitProducerId> {
    let transactional_id = r.nullable_string("transactional id")?;
    r.i32("transaction timeout")?;
    if version >= 3 {
        r.i64("producer id")?;
        r.i16("producer epoch")?;
    }
    Ok(InitProducerId { transactional_id })
}
