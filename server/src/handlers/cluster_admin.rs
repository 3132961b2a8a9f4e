//! Topic changes in cluster mode: sent to the controller, answered once applied here.

use crate::group::ownership::{partition_of, OFFSETS_PARTITIONS};
use crate::shard::Shard;
use keel_controller::node::Request as ControllerRequest;
use keel_controller::Error as ControllerError;
use keel_protocol::api::{ErrorCode, TopicResult};
use std::collections::BTreeMap;
use std::rc::Rc;

fn result(topic: String, error: ErrorCode, message: impl Into<String>) -> TopicResult {
    TopicResult {
        topic,
        error,
        message: message.into(),
    }
}

/// The native error code for a controller refusal.
pub fn error_code(e: &ControllerError) -> ErrorCode {
    match e {
        ControllerError::TopicExists(_) => ErrorCode::TopicAlreadyExists,
        ControllerError::UnknownTopic(_) | ControllerError::UnknownPartition { .. } => {
            ErrorCode::UnknownTopicOrPartition
        }
        ControllerError::NotEnoughBrokers { .. } => ErrorCode::InvalidReplicationFactor,
        ControllerError::Invalid { field, .. } if field.contains("topic") => {
            ErrorCode::InvalidTopic
        }
        ControllerError::Invalid { field, .. } if field.contains("partition") => {
            ErrorCode::InvalidPartitions
        }
        ControllerError::Invalid { .. } => ErrorCode::InvalidConfig,
        _ => ErrorCode::NotController,
    }
}

async fn change(shard: &Rc<Shard>, topic: String, request: ControllerRequest) -> TopicResult {
    match crate::cluster::change(shard, request).await {
        Ok(_) => result(topic, ErrorCode::None, ""),
        Err(e) => result(topic, error_code(&e), e.to_string()),
    }
}

/// Creates a topic through the controller.
pub async fn create(
    shard: &Rc<Shard>,
    name: String,
    partitions: u32,
    replication_factor: u32,
    configs: BTreeMap<String, String>,
) -> TopicResult {
    if replication_factor > 1 {
        if let Some(view) = &shard.cluster {
            let live = view.image().live_brokers().len() as u32;
            if replication_factor > live {
                return result(
                    name,
                    ErrorCode::InvalidReplicationFactor,
                    format!("replication factor {replication_factor} is larger than the {live} live brokers"),
                );
            }
        }
    }
    let request = ControllerRequest::CreateTopic {
        name: name.clone(),
        partitions,
        replication_factor,
        configs: configs.into_iter().collect(),
    };
    let created = change(shard, name, request).await;
    if created.error == ErrorCode::None {
        tracing::info!(topic = %created.topic, partitions, "topic created through the controller");
    }
    created
}

/// Deletes a topic through the controller.
pub async fn delete(shard: &Rc<Shard>, name: String) -> TopicResult {
    let request = ControllerRequest::DeleteTopic { name: name.clone() };
    change(shard, name, request).await
}

/// Moves leadership back to the preferred replicas of a topic's partitions (or of one,
/// `partition` >= 0) through the controller.
pub async fn elect_leaders(shard: &Rc<Shard>, topic: String, partition: i64) -> TopicResult {
    if shard.cluster.is_none() {
        return result(
            topic,
            ErrorCode::InvalidRequest,
            "elect-leaders needs cluster mode (--controller-voters)",
        );
    }
    let partition = match partition {
        -1 => None,
        p => match u32::try_from(p) {
            Ok(p) => Some(p),
            Err(_) => {
                return result(
                    topic,
                    ErrorCode::UnknownTopicOrPartition,
                    format!("partition {p}"),
                )
            }
        },
    };
    let request = ControllerRequest::ElectLeaders {
        topic: topic.clone(),
        partition,
    };
    change(shard, topic, request).await
}

/// Starts moving a partition's replicas through the controller (answered once the move is
/// committed; it completes when the new replicas are in sync).
pub async fn reassign(
    shard: &Rc<Shard>,
    (topic, partition): (String, u32),
    replicas: Vec<u32>,
) -> TopicResult {
    if shard.cluster.is_none() {
        return result(topic, ErrorCode::InvalidRequest, CLUSTER_ONLY);
    }
    let request = ControllerRequest::Reassign {
        topic: topic.clone(),
        partition,
        replicas,
    };
    change(shard, topic, request).await
}

/// Moves every replica off a broker through the controller.
pub async fn decommission(shard: &Rc<Shard>, broker: u32) -> TopicResult {
    let name = format!("broker-{broker}");
    if shard.cluster.is_none() {
        return result(name, ErrorCode::InvalidRequest, CLUSTER_ONLY);
    }
    change(shard, name, ControllerRequest::Decommission { id: broker }).await
}

const CLUSTER_ONLY: &str = "needs cluster mode (--controller-voters)";

/// Sets a topic's configs through the controller (`configs` already checked).
pub async fn alter(
    shard: &Rc<Shard>,
    name: String,
    configs: BTreeMap<String, String>,
) -> TopicResult {
    let request = ControllerRequest::SetConfigs {
        name: name.clone(),
        configs: configs.into_iter().collect(),
    };
    change(shard, name, request).await
}

/// Grows a topic to `count` partitions through the controller (checked already).
pub async fn add_partitions(shard: &Rc<Shard>, name: &str, count: u32) -> TopicResult {
    let request = ControllerRequest::AddPartitions {
        name: name.to_owned(),
        count,
    };
    change(shard, name.to_owned(), request).await
}

/// Configs of `__consumer_offsets`: compacted (the latest commit per key), never trimmed by
/// time or size, in segments of `offsets_segment_bytes` (Kafka's default is 100 MiB).
pub fn offsets_topic_configs(segment_bytes: u64) -> Vec<(String, String)> {
    [
        ("cleanup.policy", "compact".to_owned()),
        ("retention.ms", "-1".to_owned()),
        ("retention.bytes", "-1".to_owned()),
        ("segment.bytes", segment_bytes.to_string()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}

/// The group's coordinator: `Ok(node id, address)`, or the error to answer.
pub async fn coordinator(shard: &Rc<Shard>, group: &str) -> Result<(u32, String), ErrorCode> {
    use crate::handlers::groups::OFFSETS_TOPIC;
    let Some(view) = &shard.cluster else {
        return Ok((shard.config.node_id, shard.config.listen.to_string()));
    };
    if view.image().topic(OFFSETS_TOPIC).is_none() {
        // Made on first use, as Kafka does, once brokers have registered: replicated on
        // up to `offsets.topic.replication.factor` brokers, its leaders spread by placement.
        let live = view.image().live_brokers().len().max(1) as u32;
        let request = ControllerRequest::CreateTopic {
            name: OFFSETS_TOPIC.to_owned(),
            partitions: OFFSETS_PARTITIONS,
            replication_factor: shard.config.offsets_replication_factor.min(live),
            configs: offsets_topic_configs(shard.config.offsets_segment_bytes),
        };
        match crate::cluster::change(shard, request).await {
            Ok(_) | Err(ControllerError::TopicExists(_)) => {}
            Err(e) => {
                tracing::warn!(error = %e, "creating the coordinator partitions failed");
                return Err(ErrorCode::NotCoordinator);
            }
        }
    }
    let image = view.image();
    let Some(state) = image.topic(OFFSETS_TOPIC).and_then(|t| {
        let partition = partition_of(group, t.partitions.len() as u32);
        t.partitions.get(partition as usize)
    }) else {
        return Err(ErrorCode::NotCoordinator);
    };
    let Ok(leader) = u32::try_from(state.leader) else {
        return Err(ErrorCode::LeaderNotAvailable);
    };
    let address = image
        .brokers()
        .get(&leader)
        .map(|b| crate::cluster::native_address(&b.address).to_owned())
        .ok_or(ErrorCode::LeaderNotAvailable)?;
    Ok((leader, address))
}
