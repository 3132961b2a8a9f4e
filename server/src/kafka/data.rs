//! Metadata, Produce, ListOffsets, DeleteRecords and InitProducerId over the native
//! handlers.

use super::{code, encode, text, Answer};
use crate::handlers::{self, groups::OFFSETS_TOPIC, metadata::Offsets};
use crate::security::gate::Gate;
use crate::shard::Shard;
use keel_auth::acl::Operation;
use keel_auth::quota::QuotaKind;
use keel_kafka::errors;
use keel_kafka::frame::Header;
use keel_kafka::kafka_protocol::messages::{
    list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse},
    metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic},
    produce_response::{PartitionProduceResponse, TopicProduceResponse},
    BrokerId, InitProducerIdResponse, ListOffsetsResponse, MetadataResponse, ProduceResponse,
    ProducerId, TopicName,
};
use keel_kafka::requests::{InitProducerId, ListOffsets, Metadata, Produce};
use keel_protocol::api::{ErrorCode, ListOffsetsPartition, ProducePartition, TopicEntries};
use std::rc::Rc;

/// The name of a topic known by its id, if any topic has that id.
pub fn topic_by_id(shard: &Shard, id: &[u8; 16]) -> Option<String> {
    shard.registry.read().by_id(id).map(str::to_owned)
}

/// Every broker's id and address (host, port) on Kafka listener number `listener` (the
/// one the client came through: each broker's listener of the same name), and the
/// controller's id.
pub fn brokers(shard: &Shard, listener: usize) -> (Vec<(u32, String, u16)>, u32) {
    let Some(view) = &shard.cluster else {
        let address = super::advertised(shard, listener).unwrap_or(shard.config.listen);
        let node = shard.config.node_id;
        return (vec![(node, address.ip().to_string(), address.port())], node);
    };
    let name = shard
        .config
        .kafka_listeners
        .get(listener)
        .map_or("", |l| l.name.as_str());
    let image = view.image();
    let brokers = image
        .brokers()
        .iter()
        .filter(|(_, broker)| !broker.fenced)
        .filter_map(|(id, broker)| {
            let address = crate::cluster::kafka_address(&broker.address, name)?;
            Some((*id, address.ip().to_string(), address.port()))
        })
        .collect();
    let controller = view
        .controller()
        .leader
        .map_or(shard.config.node_id, |l| l as u32);
    (brokers, controller)
}

pub async fn metadata(
    shard: &Rc<Shard>,
    header: &Header,
    gate: &Gate<'_>,
    request: Metadata,
) -> Answer {
    let mut names = request.topics;
    // Topics asked for by an id no topic has are answered UNKNOWN_TOPIC_ID.
    let mut unknown_ids = Vec::new();
    if !request.topic_ids.is_empty() {
        let names = names.get_or_insert_with(Vec::new);
        for id in &request.topic_ids {
            match topic_by_id(shard, id) {
                Some(name) => names.push(name),
                None => unknown_ids.push(*id),
            }
        }
    }
    // Named topics this connection may not describe answer TOPIC_AUTHORIZATION_FAILED;
    // when every topic is asked for they are left out (as Kafka).
    let describable = |topic: &str| gate.topic(Operation::Describe, topic);
    let mut denied = Vec::new();
    let topics = match names {
        // Asked for none: brokers only.
        Some(names) if names.is_empty() => Vec::new(),
        Some(names) => {
            let (names, refused): (Vec<String>, Vec<String>) =
                names.into_iter().partition(|t| describable(t));
            denied = refused;
            if names.is_empty() {
                Vec::new()
            } else {
                handlers::metadata::handle(shard, names, Offsets::Left)
                    .await
                    .1
            }
        }
        None => {
            let mut topics = handlers::metadata::handle(shard, Vec::new(), Offsets::Left)
                .await
                .1;
            topics.retain(|t| describable(&t.topic));
            topics
        }
    };
    let (brokers, controller) = brokers(shard, gate.session().listener);
    let response = MetadataResponse::default()
        .with_brokers(
            brokers
                .into_iter()
                .map(|(id, host, port)| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(id as i32))
                        .with_host(text(host))
                        .with_port(i32::from(port))
                })
                .collect(),
        )
        .with_cluster_id(Some(text(cluster_id(shard))))
        .with_controller_id(BrokerId(controller as i32))
        .with_topics(
            topics
                .into_iter()
                .map(|topic| {
                    let ids = |nodes: &[u32]| nodes.iter().map(|n| BrokerId(*n as i32)).collect();
                    MetadataResponseTopic::default()
                        .with_error_code(code(topic.error))
                        .with_topic_id(uuid(&shard.registry.read().kafka_id(&topic.topic)))
                        .with_is_internal(topic.topic == OFFSETS_TOPIC)
                        .with_partitions(
                            topic
                                .partitions
                                .iter()
                                .map(|p| {
                                    let replicas = if p.replicas.is_empty() {
                                        vec![p.leader]
                                    } else {
                                        p.replicas.clone()
                                    };
                                    let isr = if p.isr.is_empty() {
                                        replicas.clone()
                                    } else {
                                        p.isr.clone()
                                    };
                                    MetadataResponsePartition::default()
                                        .with_error_code(code(p.error))
                                        .with_partition_index(p.partition as i32)
                                        .with_leader_id(BrokerId(p.leader as i32))
                                        .with_leader_epoch(p.leader_epoch as i32)
                                        .with_replica_nodes(ids(&replicas))
                                        .with_isr_nodes(ids(&isr))
                                })
                                .collect(),
                        )
                        .with_name(Some(TopicName(text(topic.topic))))
                })
                .chain(denied.into_iter().map(|name| {
                    MetadataResponseTopic::default()
                        .with_error_code(errors::TOPIC_AUTHORIZATION_FAILED)
                        .with_name(Some(TopicName(text(name))))
                }))
                .chain(unknown_ids.iter().map(|id| {
                    MetadataResponseTopic::default()
                        .with_error_code(errors::UNKNOWN_TOPIC_ID)
                        .with_topic_id(uuid(id))
                }))
                .collect(),
        );
    encode(header, &response)
}

/// The cluster id clients see: fixed per data directory's node, stable across restarts.
pub fn cluster_id(shard: &Shard) -> String {
    match &shard.config.cluster {
        Some(cluster) => format!(
            "keel-{}",
            cluster
                .voters
                .iter()
                .map(|(id, _)| id.to_string())
                .collect::<Vec<_>>()
                .join("-")
        ),
        None => format!("keel-{}", shard.config.node_id),
    }
}

/// A kafka-protocol UUID.
pub fn uuid(id: &[u8; 16]) -> keel_kafka::uuid::Uuid {
    keel_kafka::uuid::Uuid::from_bytes(*id)
}

pub async fn produce(
    shard: &Rc<Shard>,
    header: &Header,
    gate: &Gate<'_>,
    request: Produce,
) -> Option<Answer> {
    let refuse_all = |error: i16| {
        request
            .topics
            .iter()
            .map(|(name, partitions)| {
                TopicProduceResponse::default()
                    .with_name(TopicName(text(name.clone())))
                    .with_partition_responses(
                        partitions
                            .iter()
                            .map(|(index, _)| {
                                PartitionProduceResponse::default()
                                    .with_index(*index)
                                    .with_error_code(error)
                                    .with_base_offset(-1)
                            })
                            .collect(),
                    )
            })
            .collect::<Vec<_>>()
    };
    if request.transactional_id.is_some() {
        let response =
            ProduceResponse::default().with_responses(refuse_all(errors::TRANSACTIONS_UNSUPPORTED));
        return Some(encode(header, &response));
    }
    let acks = match request.acks {
        -1..=1 => request.acks as i8,
        _ => {
            let response = ProduceResponse::default()
                .with_responses(refuse_all(code(ErrorCode::InvalidRequiredAcks)));
            return Some(encode(header, &response));
        }
    };
    // Negative partitions and null record sets cannot be appended: they are answered
    // apart, the rest go to the native path in one piece.
    let mut refused: Vec<(String, i32, i16)> = Vec::new();
    let mut topics = Vec::with_capacity(request.topics.len());
    for (topic, partitions) in request.topics {
        let mut entries = Vec::with_capacity(partitions.len());
        if !gate.topic(Operation::Write, &topic) {
            let denied = errors::TOPIC_AUTHORIZATION_FAILED;
            refused.extend(
                partitions
                    .iter()
                    .map(|(index, _)| (topic.clone(), *index, denied)),
            );
            topics.push(TopicEntries {
                topic,
                partitions: entries,
            });
            continue;
        }
        for (index, records) in partitions {
            match (u32::try_from(index), records) {
                (Ok(partition), Some(records)) => {
                    entries.push(ProducePartition { partition, records })
                }
                (Err(_), _) => {
                    refused.push((topic.clone(), index, errors::UNKNOWN_TOPIC_OR_PARTITION))
                }
                (Ok(_), None) => refused.push((topic.clone(), index, errors::CORRUPT_MESSAGE)),
            }
        }
        topics.push(TopicEntries {
            topic,
            partitions: entries,
        });
    }
    let timeout_ms = request.timeout_ms.max(0) as u32;
    let bytes: u64 = topics
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| p.records.len() as u64)
        .sum();
    let client_id = header.client_id.as_deref().unwrap_or_default();
    let throttle =
        super::quotas::charge(shard, gate.session(), client_id, QuotaKind::Produce, bytes);
    let topics = handlers::produce::handle(shard, acks, timeout_ms, topics).await;
    if acks == 0 {
        return None;
    }
    let mut responses: Vec<TopicProduceResponse> = topics
        .into_iter()
        .map(|entry| {
            let mut partitions: Vec<PartitionProduceResponse> = entry
                .partitions
                .iter()
                .map(|p| {
                    PartitionProduceResponse::default()
                        .with_index(p.partition as i32)
                        .with_error_code(code(p.error))
                        .with_base_offset(p.base_offset)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(p.log_start_offset)
                })
                .collect();
            partitions.extend(refused.iter().filter(|(t, ..)| *t == entry.topic).map(
                |(_, index, error)| {
                    PartitionProduceResponse::default()
                        .with_index(*index)
                        .with_error_code(*error)
                        .with_base_offset(-1)
                },
            ));
            TopicProduceResponse::default()
                .with_name(TopicName(text(entry.topic)))
                .with_partition_responses(partitions)
        })
        .collect();
    responses.retain(|t| !t.partition_responses.is_empty());
    Some(encode(
        header,
        &ProduceResponse::default()
            .with_responses(responses)
            .with_throttle_time_ms(throttle),
    ))
}

pub async fn list_offsets(
    shard: &Rc<Shard>,
    header: &Header,
    gate: &Gate<'_>,
    request: ListOffsets,
) -> Answer {
    let mut refused: Vec<(String, i32, i16)> = Vec::new();
    let topics = request
        .topics
        .into_iter()
        .map(|(topic, partitions)| {
            let allowed = gate.topic(Operation::Describe, &topic);
            let partitions = partitions
                .into_iter()
                .filter_map(|(partition, timestamp)| match u32::try_from(partition) {
                    Ok(partition) if allowed => Some(ListOffsetsPartition {
                        partition,
                        timestamp,
                    }),
                    Ok(_) => {
                        let denied = errors::TOPIC_AUTHORIZATION_FAILED;
                        refused.push((topic.clone(), partition, denied));
                        None
                    }
                    Err(_) => {
                        let unknown = errors::UNKNOWN_TOPIC_OR_PARTITION;
                        refused.push((topic.clone(), partition, unknown));
                        None
                    }
                })
                .collect();
            TopicEntries { topic, partitions }
        })
        .collect();
    let topics = handlers::list_offsets::handle(shard, topics).await;
    let topics = topics
        .into_iter()
        .map(|entry| {
            let mut partitions: Vec<ListOffsetsPartitionResponse> = entry
                .partitions
                .iter()
                .map(|p| {
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition as i32)
                        .with_error_code(code(p.error))
                        .with_offset(p.offset)
                        .with_timestamp(p.timestamp)
                        .with_leader_epoch(-1)
                })
                .collect();
            partitions.extend(refused.iter().filter(|(t, ..)| *t == entry.topic).map(
                |(_, p, error)| {
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(*p)
                        .with_error_code(*error)
                        .with_offset(-1)
                        .with_timestamp(-1)
                },
            ));
            ListOffsetsTopicResponse::default()
                .with_name(TopicName(text(entry.topic)))
                .with_partitions(partitions)
        })
        .collect();
    encode(header, &ListOffsetsResponse::default().with_topics(topics))
}

pub async fn init_producer_id(
    shard: &Rc<Shard>,
    header: &Header,
    gate: &Gate<'_>,
    request: InitProducerId,
) -> Answer {
    // Kafka's rule: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic.
    let may = gate.cluster(Operation::IdempotentWrite) || gate.any_topic(Operation::Write);
    let response = if !may {
        InitProducerIdResponse::default()
            .with_error_code(errors::CLUSTER_AUTHORIZATION_FAILED)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    } else if request
        .transactional_id
        .as_deref()
        .is_some_and(|t| !t.is_empty())
    {
        InitProducerIdResponse::default()
            .with_error_code(errors::TRANSACTIONS_UNSUPPORTED)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    } else {
        match crate::producer_ids::next(shard).await {
            Ok(id) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0),
            Err(error) => InitProducerIdResponse::default()
                .with_error_code(code(error))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        }
    };
    encode(header, &response)
}
