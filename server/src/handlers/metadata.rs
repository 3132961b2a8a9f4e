//! Metadata: brokers, topics, partitions with leader and offsets.

use crate::shard::{owner, Job, Reply, Shard};
use keel_protocol::api::{BrokerInfo, ErrorCode, PartitionMetadata, Response, TopicMetadata};
use std::rc::Rc;

pub async fn handle(shard: &Rc<Shard>, requested: Vec<String>) -> Response {
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
