//! Topics, partitions, configs and the cluster, as Kafka's admin clients ask for them.

use super::{code, encode, text, Answer};
use crate::handlers;
use crate::registry::TopicEntry;
use crate::security::gate::Gate;
use crate::shard::Shard;
use keel_auth::acl::Operation;
use keel_kafka::errors;
use keel_kafka::frame::Header;
use keel_kafka::kafka_protocol::messages::{
    create_partitions_response::CreatePartitionsTopicResult,
    create_topics_response::CreatableTopicResult,
    delete_topics_response::DeletableTopicResult,
    describe_cluster_response::DescribeClusterBroker,
    describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult},
    BrokerId, CreatePartitionsResponse, CreateTopicsResponse, DeleteTopicsResponse,
    DescribeClusterResponse, DescribeConfigsResponse, TopicName,
};
use keel_kafka::requests::{
    AlterConfigs, ConfigResource, CreatePartitions, CreateTopics, DeleteTopics,
};
use keel_protocol::api::{ConfigEntry, ErrorCode, NewTopic, TopicResult};
use std::rc::Rc;

/// Kafka's resource type for a topic.
const TOPIC: i8 = 2;
/// Kafka's resource type for a broker.
const BROKER: i8 = 4;
/// Config sources: set on the topic, or the broker's default.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const DEFAULT_CONFIG: i8 = 5;

pub async fn create_topics(
    shard: &Rc<Shard>,
    header: &Header,
    gate: &Gate<'_>,
    request: CreateTopics,
) -> Answer {
    let mut results = Vec::with_capacity(request.topics.len());
    let mut creatable = Vec::new();
    for topic in request.topics {
        let refuse = |error: i16, message: &str| {
            CreatableTopicResult::default()
                .with_name(TopicName(text(topic.name.clone())))
                .with_error_code(error)
                .with_error_message(Some(text(message)))
        };
        // The topic first: its audit line names it.
        let allowed = gate.topic(Operation::Create, &topic.name) || gate.cluster(Operation::Create);
        if !allowed {
            results.push(refuse(
                errors::TOPIC_AUTHORIZATION_FAILED,
                "not authorized to create this topic",
            ));
            continue;
        }
        if topic.manual_assignment {
            results.push(refuse(
                errors::INVALID_REQUEST,
                "replica assignments are chosen by the broker: give a partition count and replication factor",
            ));
            continue;
        }
        let Some(configs) = topic
            .configs
            .into_iter()
            .map(|(key, value)| value.map(|value| ConfigEntry { key, value }))
            .collect::<Option<Vec<_>>>()
        else {
            results.push(refuse(errors::INVALID_CONFIG, "a config value is null"));
            continue;
        };
        let partitions = match topic.num_partitions {
            -1 => 1,
            n if n > 0 => n as u32,
            _ => {
                results.push(refuse(
                    errors::INVALID_PARTITIONS,
                    "a topic needs at least one partition",
                ));
                continue;
            }
        };
        let replication_factor = match topic.replication_factor {
            -1 => 1,
            n if n > 0 => n as u16,
            _ => {
                results.push(refuse(38, "the replication factor must be at least 1"));
                continue;
            }
        };
        creatable.push(NewTopic {
            name: topic.name,
            partitions,
            replication_factor,
            configs,
        });
    }
    let created: Vec<TopicResult> = if request.validate_only {
        // Checked above and by name here; nothing is created.
        let registry = shard.registry.read();
        creatable
            .into_iter()
            .map(|t| {
                let (error, message) = match keel_protocol::api::validate_topic_name(&t.name) {
                    Err(message) => (ErrorCode::InvalidTopic, message),
                    Ok(()) if registry.get(&t.name).is_some() => {
                        (ErrorCode::TopicAlreadyExists, "topic already exists".into())
                    }
                    Ok(()) => (ErrorCode::None, String::new()),
                };
                TopicResult {
                    topic: t.name,
                    error,
                    message,
                }
            })
            .collect()
    } else {
        handlers::admin::create(shard, creatable).await
    };
    for t in created {
        let entry = shard.registry.read().get(&t.topic).cloned();
        let mut result = CreatableTopicResult::default()
            .with_name(TopicName(text(t.topic.clone())))
            .with_error_code(code(t.error))
            .with_error_message((!t.message.is_empty()).then(|| text(t.message)))
            .with_topic_id(super::data::uuid(&shard.registry.read().kafka_id(&t.topic)));
        // Partition count and replication factor are answered from version 5.
        if let Some(entry) = entry.filter(|_| t.error == ErrorCode::None && header.api_version >= 5)
        {
            result = result
                .with_num_partitions(entry.partitions as i32)
                .with_replication_factor(replication_factor(shard, &t.topic));
        }
        results.push(result);
    }
    encode(
        header,
        &CreateTopicsResponse::default().with_topics(results),
    )
}

fn replication_factor(shard: &Shard, topic: &str) -> i16 {
    shard
        .cluster
        .as_ref()
        .and_then(|view| {
            let image = view.image();
            let partition = image.topics().get(topic)?.partitions.first()?;
            Some(partition.replicas.len() as i16)
        })
        .unwrap_or(1)
}

pub async fn delete_topics(
    shard: &Rc<Shard>,
    header: &Header,
    gate: &Gate<'_>,
    request: DeleteTopics,
) -> Answer {
    let mut names = request.names;
    let mut unknown_ids = Vec::new();
    for id in request.ids {
        match super::data::topic_by_id(shard, &id) {
            Some(name) => names.push(name),
            None => unknown_ids.push(id),
        }
    }
    // Kafka's rule: a topic this connection may not describe looks unknown; one it may
    // describe but not delete answers TOPIC_AUTHORIZATION_FAILED.
    let (names, denied): (Vec<String>, Vec<String>) = names
        .into_iter()
        .partition(|t| gate.topic(Operation::Delete, t));
    // The ids the topics had (gone from the registry once deleted).
    let deleted_ids: Vec<[u8; 16]> = {
        let registry = shard.registry.read();
        names.iter().map(|t| registry.kafka_id(t)).collect()
    };
    let topics = handlers::admin::delete(shard, names).await;
    let mut results: Vec<DeletableTopicResult> = topics
        .into_iter()
        .zip(deleted_ids)
        .map(|(t, id)| {
            DeletableTopicResult::default()
                .with_topic_id(super::data::uuid(&id))
                .with_name(Some(TopicName(text(t.topic))))
                .with_error_code(code(t.error))
                .with_error_message((!t.message.is_empty()).then(|| text(t.message)))
        })
        .collect();
    results.extend(unknown_ids.iter().map(|id| {
        DeletableTopicResult::default()
            .with_topic_id(super::data::uuid(id))
            .with_error_code(errors::UNKNOWN_TOPIC_ID)
    }));
    results.extend(denied.into_iter().map(|topic| {
        let error = if gate.topic(Operation::Describe, &topic) {
            errors::TOPIC_AUTHORIZATION_FAILED
        } else {
            errors::UNKNOWN_TOPIC_OR_PARTITION
        };
        DeletableTopicResult::default()
            .with_topic_id(super::data::uuid(&shard.registry.read().kafka_id(&topic)))
            .with_name(Some(TopicName(text(topic))))
            .with_error_code(error)
    }));
    encode(
        header,
        &DeleteTopicsResponse::default().with_responses(results),
    )
}

pub async fn create_partitions(
    shard: &Rc<Shard>,
    header: &Header,
    gate: &Gate<'_>,
    request: CreatePartitions,
) -> Answer {
    let mut results = Vec::with_capacity(request.topics.len());
    for (topic, count, manual) in request.topics {
        let outcome = if !gate.topic(Operation::Alter, &topic) {
            Err((
                errors::TOPIC_AUTHORIZATION_FAILED,
                "not authorized to alter this topic".to_owned(),
            ))
        } else if manual {
            Err((
                errors::INVALID_REQUEST,
                "replica assignments are chosen by the broker".to_owned(),
            ))
        } else {
            crate::handlers::admin::add_partitions(shard, &topic, count, request.validate_only)
                .await
                .map_err(|(error, message)| (code(error), message))
        };
        let (error, message) = match outcome {
            Ok(()) => (0, None),
            Err((error, message)) => (error, Some(text(message))),
        };
        results.push(
            CreatePartitionsTopicResult::default()
                .with_name(TopicName(text(topic)))
                .with_error_code(error)
                .with_error_message(message),
        );
    }
    encode(
        header,
        &CreatePartitionsResponse::default().with_results(results),
    )
}

/// Kafka's names for what a topic's configs mean here, beside Keel's own keys.
fn kafka_topic_configs(shard: &Shard, entry: &TopicEntry) -> Vec<(String, String, i8, bool)> {
    let mut out: Vec<(String, String, i8, bool)> = handlers::admin::effective_configs(shard, entry)
        .into_iter()
        .filter(|c| c.key != "partitions")
        .map(|c| {
            let source = if entry.configs.contains_key(&c.key) {
                DYNAMIC_TOPIC_CONFIG
            } else {
                DEFAULT_CONFIG
            };
            (c.key, c.value, source, false)
        })
        .collect();
    // Fixed behaviours, shown read-only under Kafka's names.
    for (key, value) in [
        ("compression.type", "producer".to_owned()),
        ("message.timestamp.type", "CreateTime".to_owned()),
        (
            "max.message.bytes",
            shard.config.batch_bytes_max.to_string(),
        ),
    ] {
        out.push((key.to_owned(), value, DEFAULT_CONFIG, true));
    }
    out
}

fn broker_configs(shard: &Shard) -> Vec<(String, String, i8, bool)> {
    let log = &shard.config.log_defaults;
    let optional = |value: Option<u64>| value.map_or("-1".to_owned(), |v| v.to_string());
    [
        ("broker.id", shard.config.node_id.to_string()),
        ("num.partitions", "1".to_owned()),
        ("default.replication.factor", "1".to_owned()),
        ("log.retention.ms", optional(log.retention_ms)),
        ("log.retention.bytes", optional(log.retention_bytes)),
        ("log.segment.bytes", log.segment_bytes.to_string()),
        (
            "message.max.bytes",
            shard.config.batch_bytes_max.to_string(),
        ),
        ("auto.create.topics.enable", "false".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v, DEFAULT_CONFIG, true))
    .collect()
}

pub fn describe_configs(
    shard: &Rc<Shard>,
    header: &Header,
    gate: &Gate<'_>,
    resources: Vec<ConfigResource>,
) -> Answer {
    let results = resources
        .into_iter()
        .map(|resource| {
            let found = match resource.resource_type {
                TOPIC if !gate.topic(Operation::DescribeConfigs, &resource.name) => Err((
                    errors::TOPIC_AUTHORIZATION_FAILED,
                    "not authorized to describe this topic's configs",
                )),
                BROKER if !gate.cluster(Operation::DescribeConfigs) => Err((
                    errors::CLUSTER_AUTHORIZATION_FAILED,
                    "not authorized to describe the broker's configs",
                )),
                TOPIC => match shard.registry.read().get(&resource.name) {
                    Some(entry) => Ok(kafka_topic_configs(shard, entry)),
                    None => Err((errors::UNKNOWN_TOPIC_OR_PARTITION, "topic does not exist")),
                },
                BROKER
                    if resource.name.is_empty()
                        || resource.name == shard.config.node_id.to_string() =>
                {
                    Ok(broker_configs(shard))
                }
                BROKER => Err((
                    errors::INVALID_REQUEST,
                    "this broker answers for itself only",
                )),
                _ => Err((
                    errors::INVALID_REQUEST,
                    "only topic and broker configs are described",
                )),
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(text(resource.name));
            match found {
                Ok(configs) => result.with_configs(
                    configs
                        .into_iter()
                        .filter(|(key, ..)| {
                            // Null keys: every config; a list: those named (as Kafka's).
                            resource.keys.as_ref().is_none_or(|keys| keys.contains(key))
                        })
                        .map(|(key, value, source, read_only)| {
                            DescribeConfigsResourceResult::default()
                                .with_name(text(key))
                                .with_value(Some(text(value)))
                                .with_read_only(read_only)
                                .with_config_source(source)
                        })
                        .collect(),
                ),
                Err((error, message)) => result
                    .with_error_code(error)
                    .with_error_message(Some(text(message))),
            }
        })
        .collect();
    encode(
        header,
        &DescribeConfigsResponse::default().with_results(results),
    )
}

/// AlterConfigs (every key not given returns to its default, as Kafka's replaces the set)
/// and IncrementalAlterConfigs (set and delete; append and subtract are for list configs,
/// which topics here do not have).
pub async fn alter_configs(
    shard: &Rc<Shard>,
    header: &Header,
    gate: &Gate<'_>,
    request: AlterConfigs,
    incremental: bool,
) -> Answer {
    let mut results = Vec::with_capacity(request.resources.len());
    for (resource_type, name, changes) in request.resources {
        let outcome = match resource_type {
            TOPIC if !gate.topic(Operation::AlterConfigs, &name) => Err((
                errors::TOPIC_AUTHORIZATION_FAILED,
                "not authorized to alter this topic's configs".to_owned(),
            )),
            BROKER if !gate.cluster(Operation::AlterConfigs) => Err((
                errors::CLUSTER_AUTHORIZATION_FAILED,
                "not authorized to alter the broker's configs".to_owned(),
            )),
            _ => {
                let validate_only = request.validate_only;
                alter_one(
                    shard,
                    resource_type,
                    &name,
                    changes,
                    incremental,
                    validate_only,
                )
                .await
            }
        };
        let (error, message) = match outcome {
            Ok(()) => (0, None),
            Err((error, message)) => (error, Some(text(message))),
        };
        results.push((resource_type, name, error, message));
    }
    if incremental {
        use keel_kafka::kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
        use keel_kafka::kafka_protocol::messages::IncrementalAlterConfigsResponse;
        let responses = results
            .into_iter()
            .map(|(resource_type, name, error, message)| {
                AlterConfigsResourceResponse::default()
                    .with_resource_type(resource_type)
                    .with_resource_name(text(name))
                    .with_error_code(error)
                    .with_error_message(message)
            })
            .collect();
        encode(
            header,
            &IncrementalAlterConfigsResponse::default().with_responses(responses),
        )
    } else {
        use keel_kafka::kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
        use keel_kafka::kafka_protocol::messages::AlterConfigsResponse;
        let responses = results
            .into_iter()
            .map(|(resource_type, name, error, message)| {
                AlterConfigsResourceResponse::default()
                    .with_resource_type(resource_type)
                    .with_resource_name(text(name))
                    .with_error_code(error)
                    .with_error_message(message)
            })
            .collect();
        encode(
            header,
            &AlterConfigsResponse::default().with_responses(responses),
        )
    }
}

async fn alter_one(
    shard: &Rc<Shard>,
    resource_type: i8,
    name: &str,
    changes: Vec<keel_kafka::requests::ConfigChange>,
    incremental: bool,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    if resource_type != TOPIC {
        return Err((
            errors::INVALID_REQUEST,
            "only topic configs can be changed; broker configs are set at start-up".into(),
        ));
    }
    let Some(entry) = shard.registry.read().get(name).cloned() else {
        return Err((
            errors::UNKNOWN_TOPIC_OR_PARTITION,
            "topic does not exist".into(),
        ));
    };
    // Defaults of every key, to "delete" (reset) keys with.
    let defaults: Vec<ConfigEntry> = handlers::admin::effective_configs(
        shard,
        &TopicEntry {
            partitions: entry.partitions,
            ..TopicEntry::default()
        },
    );
    let default_of = |key: &str| {
        defaults
            .iter()
            .find(|c| c.key == key)
            .map(|c| c.value.clone())
    };
    let mut set: Vec<ConfigEntry> = Vec::new();
    if !incremental {
        // Keys set before and not given now go back to their defaults.
        for key in entry.configs.keys() {
            if !changes.iter().any(|c| &c.name == key) {
                if let Some(value) = default_of(key) {
                    set.push(ConfigEntry {
                        key: key.clone(),
                        value,
                    });
                }
            }
        }
    }
    for change in changes {
        let value = match (change.operation, change.value) {
            (0, Some(value)) => value,
            (0, None) | (1, _) => match default_of(&change.name) {
                Some(value) => value,
                None => {
                    return Err((
                        errors::INVALID_CONFIG,
                        format!(
                            "unknown topic config {:?}",
                            crate::config::clip(&change.name)
                        ),
                    ))
                }
            },
            _ => {
                return Err((
                    errors::INVALID_CONFIG,
                    format!(
                        "{}: append and subtract apply to list configs; topics here have none",
                        crate::config::clip(&change.name)
                    ),
                ))
            }
        };
        set.push(ConfigEntry {
            key: change.name,
            value,
        });
    }
    if validate_only {
        let mut configs = entry.configs.clone();
        configs.extend(set.into_iter().map(|c| (c.key, c.value)));
        return shard
            .config
            .topic_log_config(&configs)
            .map(|_| ())
            .map_err(|message| (errors::INVALID_CONFIG, message));
    }
    let topics = handlers::admin::alter_configs(shard, vec![(name.to_owned(), set)]).await;
    match topics.into_iter().next() {
        Some(t) if t.error == ErrorCode::None => Ok(()),
        Some(t) => Err((code(t.error), t.message)),
        None => Err((errors::UNKNOWN_SERVER_ERROR, "no answer".into())),
    }
}

pub fn describe_cluster(shard: &Rc<Shard>, header: &Header, gate: &Gate<'_>) -> Answer {
    if !gate.cluster(Operation::Describe) {
        let response = DescribeClusterResponse::default()
            .with_error_code(errors::CLUSTER_AUTHORIZATION_FAILED)
            .with_controller_id(BrokerId(-1));
        return encode(header, &response);
    }
    let (brokers, controller) = super::data::brokers(shard, gate.session().listener);
    let response = DescribeClusterResponse::default()
        .with_cluster_id(text(super::data::cluster_id(shard)))
        .with_controller_id(BrokerId(controller as i32))
        .with_brokers(
            brokers
                .into_iter()
                .map(|(id, host, port)| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(id as i32))
                        .with_host(text(host))
                        .with_port(i32::from(port))
                })
                .collect(),
        );
    encode(header, &response)
}
