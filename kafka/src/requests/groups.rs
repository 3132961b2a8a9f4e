//! Consumer-group requests (Kafka's classic group protocol).

use crate::read::{Reader, Result};
use bytes::Bytes;

/// A FindCoordinator request: the keys (group ids) asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindCoordinator {
    /// 0 group, 1 transaction (refused), 2 share group.
    pub key_type: i8,
    /// Group ids (one before v4).
    pub keys: Vec<String>,
}

pub(super) fn find_coordinator(r: &mut Reader, version: i16) -> Result<FindCoordinator> {
    let key = if version <= 3 {
        Some(r.string("key")?)
    } else {
        None
    };
    let key_type = if version >= 1 { r.i8("key type")? } else { 0 };
    let keys = if version >= 4 {
        r.array("coordinator keys", |r| r.string("key"))?
    } else {
        key.into_iter().collect()
    };
    Ok(FindCoordinator { key_type, keys })
}

/// A JoinGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroup {
    /// Group id.
    pub group: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout (v0: the session timeout).
    pub rebalance_timeout_ms: i32,
    /// Empty for a new member.
    pub member_id: String,
    /// Static membership (v5+).
    pub group_instance_id: Option<String>,
    /// `consumer` for consumers; other clients name their own.
    pub protocol_type: String,
    /// Assignors the member supports, in preference order, with its metadata for each.
    pub protocols: Vec<(String, Bytes)>,
}

pub(super) fn join_group(r: &mut Reader, version: i16) -> Result<JoinGroup> {
    let group = r.string("group id")?;
    let session_timeout_ms = r.i32("session timeout")?;
    let rebalance_timeout_ms = if version >= 1 {
        r.i32("rebalance timeout")?
    } else {
        session_timeout_ms
    };
    let member_id = r.string("member id")?;
    let group_instance_id = if version >= 5 {
        r.nullable_string("group instance id")?
    } else {
        None
    };
    let protocol_type = r.string("protocol type")?;
    let protocols = r.array("protocols", |r| {
        let name = r.string("protocol name")?;
        let metadata = r.bytes("protocol metadata")?;
        r.tagged_fields()?;
        Ok((name, metadata))
    })?;
    if version >= 8 {
        r.nullable_string("reason")?;
    }
    Ok(JoinGroup {
        group,
        session_timeout_ms,
        rebalance_timeout_ms,
        member_id,
        group_instance_id,
        protocol_type,
        protocols,
    })
}

/// A SyncGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroup {
    /// Group id.
    pub group: String,
    /// Generation.
    pub generation: i32,
    /// Member id.
    pub member_id: String,
    /// Static membership.
    pub group_instance_id: Option<String>,
    /// The leader's assignments: (member id, assignment bytes); empty from followers.
    pub assignments: Vec<(String, Bytes)>,
}

pub(super) fn sync_group(r: &mut Reader, version: i16) -> Result<SyncGroup> {
    let group = r.string("group id")?;
    let generation = r.i32("generation")?;
    let member_id = r.string("member id")?;
    let group_instance_id = if version >= 3 {
        r.nullable_string("group instance id")?
    } else {
        None
    };
    if version >= 5 {
        r.nullable_string("protocol type")?;
        r.nullable_string("protocol name")?;
    }
    let assignments = r.array("assignments", |r| {
        let member = r.string("member id")?;
        let assignment = r.bytes("assignment")?;
        r.tagged_fields()?;
        Ok((member, assignment))
    })?;
    Ok(SyncGroup {
        group,
        generation,
        member_id,
        group_instance_id,
        assignments,
    })
}

/// A Heartbeat request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// Group id.
    pub group: String,
    /// Generation.
    pub generation: i32,
    /// Member id.
    pub member_id: String,
    /// Static membership.
    pub group_instance_id: Option<String>,
}

pub(super) fn heartbeat(r: &mut Reader, version: i16) -> Result<Heartbeat> {
    let group = r.string("group id")?;
    let generation = r.i32("generation")?;
    let member_id = r.string("member id")?;
    let group_instance_id = if version >= 3 {
        r.nullable_string("group instance id")?
    } else {
        None
    };
    Ok(Heartbeat {
        group,
        generation,
        member_id,
        group_instance_id,
    })
}

/// A LeaveGroup request: the members leaving, (member id, group instance id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveGroup {
    /// Group id.
    pub group: String,
    /// Members leaving (one before v3).
    pub members: Vec<(String, Option<String>)>,
}

pub(super) fn leave_group(r: &mut Reader, version: i16) -> Result<LeaveGroup> {
    let group = r.string("group id")?;
    let members = if version <= 2 {
        vec![(r.string("member id")?, None)]
    } else {
        r.array("members", |r| {
            let member = r.string("member id")?;
            let instance = r.nullable_string("group instance id")?;
            if version >= 5 {
                r.nullable_string("reason")?;
            }
            r.tagged_fields()?;
            Ok((member, instance))
        })?
    };
    Ok(LeaveGroup { group, members })
}

/// An OffsetCommit request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    /// Group id.
    pub group: String,
    /// Generation (-1 from outside the group).
    pub generation: i32,
    /// Member id (empty from outside the group).
    pub member_id: String,
    /// Static membership.
    pub group_instance_id: Option<String>,
    /// Per topic, (partition, next offset to read).
    pub topics: Vec<(String, Vec<(i32, i64)>)>,
}

pub(super) fn offset_commit(r: &mut Reader, version: i16) -> Result<OffsetCommit> {
    let group = r.string("group id")?;
    let generation = r.i32("generation")?;
    let member_id = r.string("member id")?;
    let group_instance_id = if version >= 7 {
        r.nullable_string("group instance id")?
    } else {
        None
    };
    if version <= 4 {
        r.i64("retention time")?;
    }
    let topics = r.array("topics", |r| {
        let name = r.string("topic")?;
        let partitions = r.array("partitions", |r| {
            let partition = r.i32("partition")?;
            let offset = r.i64("committed offset")?;
            if version >= 6 {
                r.i32("committed leader epoch")?;
            }
            r.nullable_string("committed metadata")?;
            r.tagged_fields()?;
            Ok((partition, offset))
        })?;
        r.tagged_fields()?;
        Ok((name, partitions))
    })?;
    Ok(OffsetCommit {
        group,
        generation,
        member_id,
        group_instance_id,
        topics,
    })
}

/// One group of an OffsetFetch request: `None` topics means every committed partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchGroup {
    /// Group id.
    pub group: String,
    /// Per topic, the partitions; `None` for all.
    pub topics: Option<TopicPartitions>,
}

/// An OffsetFetch request (one group before v8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetch {
    /// The groups asked about.
    pub groups: Vec<OffsetFetchGroup>,
}

/// Per topic, the partitions asked about.
pub type TopicPartitions = Vec<(String, Vec<i32>)>;

fn offset_fetch_topics(r: &mut Reader) -> Result<Option<TopicPartitions>> {
    r.nullable_array("topics", |r| {
        let name = r.string("topic")?;
        let partitions = r.array("partitions", |r| r.i32("partition"))?;
        r.tagged_fields()?;
        Ok((name, partitions))
    })
}

pub(super) fn offset_fetch(r: &mut Reader, version: i16) -> Result<OffsetFetch> {
    let groups = if version <= 7 {
        let group = r.string("group id")?;
        let topics = offset_fetch_topics(r)?;
        vec![OffsetFetchGroup { group, topics }]
    } else {
        r.array("groups", |r| {
            let group = r.string("group id")?;
            if version >= 9 {
                r.nullable_string("member id")?;
                r.i32("member epoch")?;
            }
            let topics = offset_fetch_topics(r)?;
            r.tagged_fields()?;
            Ok(OffsetFetchGroup { group, topics })
        })?
    };
    if version >= 7 {
        r.bool("require stable")?;
    }
    Ok(OffsetFetch { groups })
}
