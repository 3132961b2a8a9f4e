//! Metadata: brokers, topics, partitions with leader and offsets.

use crate::shard::{owner, Job, Reply, Shard};
use keel_protocol::api::{BrokerInfo, ErrorCode, PartitionMetadata, Response, TopicMetadata};
use std::rc::Rc;

/// Each topic named once, in the order first named: a request naming one topic many times
/// costs what naming it once does (as Kafka, which answers a set of topics).
fn once(mut names: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    names.retain(|name| seen.insert(name.clone()));
    names
}

pub async fn handle(shard: &Rc<Shard>, requested: Vec<String>) -> Response {
    let requested = once(requested);
    if let Some(view) = shard.cluster.clone() {
        return cluster(shard, &view, requested).await;
    }
    let wanted: Vec<(String, Option<u32>)> = {
        let registry = shard.registry.read();
        if requested.is_empty() {
            registry
                .topics()
                .iter()
                .map(|(name, entry)| (name.clone(), Some(entry.partitions)))
                .collect()
        } else {
            requested
                .into_iter()
                .map(|name| {
                    let partitions = registry.get(&name).map(|e| e.partitions);
                    (name, partitions)
                })
                .collect()
        }
    };
    let mut topics = Vec::with_capacity(wanted.len());
    for (topic, partitions) in wanted {
        let Some(partitions) = partitions else {
            topics.push(TopicMetadata {
                topic,
                error: ErrorCode::UnknownTopicOrPartition,
                partitions: Vec::new(),
            });
            continue;
        };
        let mut tasks = Vec::with_capacity(partitions as usize);
        for partition in 0..partitions {
            let (shard, topic) = (shard.clone(), topic.clone());
            tasks.push(glommio::spawn_local(async move {
                let owner = owner(&topic, partition, shard.shards());
                shard.call(owner, Job::Describe { topic, partition }).await
            }));
        }
        let mut described = Vec::with_capacity(tasks.len());
        for (partition, task) in tasks.into_iter().enumerate() {
            described.push(match task.await {
                Reply::Described(meta) => meta,
                _ => PartitionMetadata {
                    partition: partition as u32,
                    error: ErrorCode::Unknown,
                    leader: shard.config.node_id,
                    log_start_offset: -1,
                    high_watermark: -1,
                    log_end_offset: -1,
                    size_bytes: 0,
                    leader_epoch: 0,
                    replicas: Vec::new(),
                    isr: Vec::new(),
                },
            });
        }
        topics.push(TopicMetadata {
            topic,
            error: ErrorCode::None,
            partitions: described,
        });
    }
    let brokers = vec![BrokerInfo {
        node_id: shard.config.node_id,
        host: shard.config.listen.ip().to_string(),
        port: shard.config.listen.port(),
    }];
    Response::Metadata { brokers, topics }
}

/// Cluster mode: brokers, topics and leaders from the applied metadata; offsets of the
/// partitions this broker leads from their logs.
async fn cluster(
    shard: &Rc<Shard>,
    view: &crate::cluster::ClusterView,
    requested: Vec<String>,
) -> Response {
    let image = view.image();
    let brokers = image
        .brokers()
        .iter()
        .filter(|(_, b)| !b.fenced)
        .filter_map(|(id, b)| {
            let address: std::net::SocketAddr =
                crate::cluster::native_address(&b.address).parse().ok()?;
            Some(BrokerInfo {
                node_id: *id,
                host: address.ip().to_string(),
                port: address.port(),
            })
        })
        .collect();
    let names: Vec<String> = if requested.is_empty() {
        image.topics().keys().cloned().collect()
    } else {
        requested
    };
    let mut topics = Vec::with_capacity(names.len());
    for topic in names {
        let Some(info) = image.topic(&topic) else {
            topics.push(TopicMetadata {
                topic,
                error: ErrorCode::UnknownTopicOrPartition,
                partitions: Vec::new(),
            });
            continue;
        };
        let mut tasks = Vec::with_capacity(info.partitions.len());
        for (partition, state) in info.partitions.iter().enumerate() {
            let partition = partition as u32;
            let leader = state.leader;
            let (leader_epoch, replicas, isr) = (
                state.leader_epoch,
                state.replicas.clone(),
                state.isr.clone(),
            );
            let local = view.leads(&topic, partition).is_ok();
            let (shard, name) = (shard.clone(), topic.clone());
            tasks.push(glommio::spawn_local(async move {
                let unknown = PartitionMetadata {
                    partition,
                    error: if leader < 0 {
                        ErrorCode::LeaderNotAvailable
                    } else {
                        ErrorCode::None
                    },
                    leader: u32::try_from(leader).unwrap_or(u32::MAX),
                    log_start_offset: -1,
                    high_watermark: -1,
                    log_end_offset: -1,
                    size_bytes: 0,
                    leader_epoch,
                    replicas,
                    isr,
                };
                if !local {
                    return unknown;
                }
                let owner = owner(&name, partition, shard.shards());
                match shard
                    .call(
                        owner,
                        Job::Describe {
                            topic: name,
                            partition,
                        },
                    )
                    .await
                {
                    // Offsets from the log; replicas, ISR and epoch from the metadata.
                    Reply::Described(meta) => PartitionMetadata {
                        leader_epoch: unknown.leader_epoch,
                        replicas: unknown.replicas,
                        isr: unknown.isr,
                        ..meta
                    },
                    _ => unknown,
                }
            }));
        }
        let mut partitions = Vec::with_capacity(tasks.len());
        for task in tasks {
            partitions.push(task.await);
        }
        topics.push(TopicMetadata {
            topic,
            error: ErrorCode::None,
            partitions,
        });
    }
    Response::Metadata { brokers, topics }
}
