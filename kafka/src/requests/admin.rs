//! Admin requests: topics, partitions and configs.

use crate::read::{Reader, Result};

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatableTopic {
    /// Name.
    pub name: String,
    /// Partitions (-1: the broker's default).
    pub num_partitions: i32,
    /// Replication factor (-1: the broker's default).
    pub replication_factor: i16,
    /// Whether the client chose the replicas itself (refused: Keel places replicas).
    pub manual_assignment: bool,
    /// Configs, (name, value).
    pub configs: Vec<(String, Option<String>)>,
}

/// A CreateTopics request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopics {
    /// Topics.
    pub topics: Vec<CreatableTopic>,
    /// Timeout.
    pub timeout_ms: i32,
    /// Check only, create nothing.
    pub validate_only: bool,
}

fn configs(r: &mut Reader) -> Result<Vec<(String, Option<String>)>> {
    r.array("configs", |r| {
        let name = r.string("config name")?;
        let value = r.nullable_string("config value")?;
        r.tagged_fields()?;
        Ok((name, value))
    })
}

pub(super) fn create_topics(r: &mut Reader) -> Result<CreateTopics> {
    let topics = r.array("topics", |r| {
        let name = r.string("topic")?;
        let num_partitions = r.i32("partitions")?;
        let replication_factor = r.i16("replication factor")?;
        let assignments = r.array("assignments", |r| {
            r.i32("partition")?;
            r.array("broker ids", |r| r.i32("broker id"))?;
            r.tagged_fields()
        })?;
        let configs = configs(r)?;
        r.tagged_fields()?;
        Ok(CreatableTopic {
            name,
            num_partitions,
            replication_factor,
            manual_assignment: !assignments.is_empty(),
            configs,
        })
    })?;
    let timeout_ms = r.i32("timeout")?;
    let validate_only = r.bool("validate only")?;
    Ok(CreateTopics {
        topics,
        timeout_ms,
        validate_only,
    })
}

/// A DeleteTopics request: names, or ids (v6+) where the name is null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteTopics {
    /// Topics by name.
    pub names: Vec<String>,
    /// Topics by id.
    pub ids: Vec<[u8; 16]>,
}

pub(super) fn delete_topics(r: &mut Reader, version: i16) -> Result<DeleteTopics> {
    let mut out = DeleteTopics {
        names: Vec::new(),
        ids: Vec::new(),
    };
    if version >= 6 {
        let topics = r.array("topics", |r| {
            let name = r.nullable_string("topic")?;
            let id = r.uuid("topic id")?;
            r.tagged_fields()?;
            Ok((name, id))
        })?;
        for (name, id) in topics {
            match name {
                Some(name) => out.names.push(name),
                None => out.ids.push(id),
            }
        }
    } else {
        out.names = r.array("topic names", |r| r.string("topic"))?;
    }
    r.i32("timeout")?;
    Ok(out)
}

/// A CreatePartitions request: per topic, the new total partition count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatePartitions {
    /// (topic, new count, whether the client chose replicas).
    pub topics: Vec<(String, i32, bool)>,
    /// Check only.
    pub validate_only: bool,
}

pub(super) fn create_partitions(r: &mut Reader) -> Result<CreatePartitions> {
    let topics = r.array("topics", |r| {
        let name = r.string("topic")?;
        let count = r.i32("count")?;
        let assignments = r.nullable_array("assignments", |r| {
            r.array("broker ids", |r| r.i32("broker id"))?;
            r.tagged_fields()
        })?;
        r.tagged_fields()?;
        Ok((name, count, assignments.is_some_and(|a| !a.is_empty())))
    })?;
    r.i32("timeout")?;
    let validate_only = r.bool("validate only")?;
    Ok(CreatePartitions {
        topics,
        validate_only,
    })
}

/// A resource of DescribeConfigs: type (2 topic, 4 broker), name, the keys wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigResource {
    /// 2 topic, 4 broker, 8 broker logger.
    pub resource_type: i8,
    /// Topic name or broker id.
    pub name: String,
    /// Keys wanted (`None`: all).
    pub keys: Option<Vec<String>>,
}

pub(super) fn describe_configs(r: &mut Reader, version: i16) -> Result<Vec<ConfigResource>> {
    let resources = r.array("resources", |r| {
        let resource_type = r.i8("resource type")?;
        let name = r.string("resource name")?;
        let keys = r.nullable_array("configuration keys", |r| r.string("key"))?;
        r.tagged_fields()?;
        Ok(ConfigResource {
            resource_type,
            name,
            keys,
        })
    })?;
    r.bool("include synonyms")?;
    if version >= 3 {
        r.bool("include documentation")?;
    }
    Ok(resources)
}

/// A config change: name, operation (0 set, 1 delete, 2 append, 3 subtract; AlterConfigs
/// is always "set", and replaces every other key), value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    /// Key.
    pub name: String,
    /// Operation.
    pub operation: i8,
    /// Value.
    pub value: Option<String>,
}

/// An AlterConfigs or IncrementalAlterConfigs request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterConfigs {
    /// (resource type, name, changes).
    pub resources: Vec<(i8, String, Vec<ConfigChange>)>,
    /// Check only.
    pub validate_only: bool,
}

pub(super) fn alter_configs(r: &mut Reader, incremental: bool) -> Result<AlterConfigs> {
    let resources = r.array("resources", |r| {
        let resource_type = r.i8("resource type")?;
        let name = r.string("resource name")?;
        let changes = r.array("configs", |r| {
            let name = r.string("config name")?;
            let operation = if incremental {
                r.i8("config operation")?
            } else {
                0
            };
            let value = r.nullable_string("config value")?;
            r.tagged_fields()?;
            Ok(ConfigChange {
                name,
                operation,
                value,
            })
        })?;
        r.tagged_fields()?;
        Ok((resource_type, name, changes))
    })?;
    let validate_only = r.bool("validate only")?;
    Ok(AlterConfigs {
        resources,
        validate_only,
    })
}
