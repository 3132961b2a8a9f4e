//! Metadata: brokers, topics, partitions with leader and (native protocol) offsets.

use crate::shard::{fan_out, owner, Job, Shard};
use keel_protocol::api::{BrokerInfo, ErrorCode, PartitionMetadata, TopicMetadata};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Longest the offsets of a Metadata request's partitions may take to gather.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a Metadata answer carries each partition's offsets and size (the native
/// protocol's does; Kafka's has no place for them, so nothing is asked of the shards).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Offsets {
    Included,
    Left,
}

/// Each topic named once, in the order first named: a request naming one topic many times
/// costs what naming it once does (as Kafka, which answers a set of topics).
fn once(mut names: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    names.retain(|name| seen.insert(name.clone()));
    names
}

/// A partition as the metadata knows it, before any offsets.
fn partition(partition: u32, error: ErrorCode, leader: u32) -> PartitionMetadata {
    PartitionMetadata {
        partition,
        error,
        leader,
        log_start_offset: -1,
        high_watermark: -1,
        log_end_offset: -1,
        size_bytes: 0,
        leader_epoch: 0,
        replicas: Vec::new(),
        isr: Vec::new(),
    }
}

/// The brokers and the topics asked for (every topic for none), each once.
pub async fn handle(
    shard: &Rc<Shard>,
    requested: Vec<String>,
    offsets: Offsets,
) -> (Vec<BrokerInfo>, Vec<TopicMetadata>) {
    let requested = once(requested);
    let (brokers, mut topics) = match shard.cluster.clone() {
        Some(view) => cluster(&view, requested),
        None => single(shard, requested),
    };
    if offsets == Offsets::Included {
        describe(shard, &mut topics).await;
    }
    (brokers, topics)
}

/// Single node: every registered partition led here.
fn single(shard: &Shard, requested: Vec<String>) -> (Vec<BrokerInfo>, Vec<TopicMetadata>) {
    let node = shard.config.node_id;
    let registry = shard.registry.read();
    let names = if requested.is_empty() {
        registry.topics().keys().cloned().collect()
    } else {
        requested
    };
    let topics = names
        .into_iter()
        .map(|topic| match registry.get(&topic) {
            None => TopicMetadata {
                topic,
                error: ErrorCode::UnknownTopicOrPartition,
                partitions: Vec::new(),
            },
            Some(entry) => TopicMetadata {
                topic,
                error: ErrorCode::None,
                partitions: (0..entry.partitions)
                    .map(|p| PartitionMetadata {
                        replicas: vec![node],
                        isr: vec![node],
                        ..partition(p, ErrorCode::None, node)
                    })
                    .collect(),
            },
        })
        .collect();
    let brokers = vec![BrokerInfo {
        node_id: node,
        host: shard.config.listen.ip().to_string(),
        port: shard.config.listen.port(),
    }];
    (brokers, topics)
}

/// Cluster mode: brokers, topics, leaders, replicas and ISR from the applied metadata.
fn cluster(
    view: &crate::cluster::ClusterView,
    requested: Vec<String>,
) -> (Vec<BrokerInfo>, Vec<TopicMetadata>) {
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
    let topics = names
        .into_iter()
        .map(|topic| {
            let Some(info) = image.topic(&topic) else {
                // A broker still catching up with the metadata log (just restarted) cannot
                // say a topic does not exist: a retriable error, so a client keeps what it
                // knew and asks again (librdkafka took "unknown" for a topic whose
                // partitions were gone and its group stopped).
                let error = if view.caught_up() {
                    ErrorCode::UnknownTopicOrPartition
                } else {
                    ErrorCode::LeaderNotAvailable
                };
                return TopicMetadata {
                    topic,
                    error,
                    partitions: Vec::new(),
                };
            };
            let partitions = info
                .partitions
                .iter()
                .enumerate()
                .map(|(index, state)| {
                    let error = if state.leader < 0 {
                        ErrorCode::LeaderNotAvailable
                    } else {
                        ErrorCode::None
                    };
                    PartitionMetadata {
                        leader_epoch: state.leader_epoch,
                        replicas: state.replicas.clone(),
                        isr: state.isr.clone(),
                        ..partition(
                            index as u32,
                            error,
                            u32::try_from(state.leader).unwrap_or(u32::MAX),
                        )
                    }
                })
                .collect();
            TopicMetadata {
                topic,
                error: ErrorCode::None,
                partitions,
            }
        })
        .collect();
    (brokers, topics)
}

/// Offsets and sizes of the partitions this broker leads, from their logs, every
/// partition of every topic at once. Single node: a partition whose log is not open is
/// answered UnknownTopicOrPartition.
pub(crate) async fn describe(shard: &Rc<Shard>, topics: &mut [TopicMetadata]) {
    let node = shard.config.node_id;
    let local = |topic: &str, partition: u32| match &shard.cluster {
        Some(view) => view.leads(topic, partition).is_ok(),
        None => true,
    };
    let mut described = Vec::new();
    let mut jobs = Vec::new();
    for (t, entry) in topics.iter().enumerate() {
        for (p, meta) in entry.partitions.iter().enumerate() {
            if meta.leader == node && local(&entry.topic, meta.partition) {
                let job = Job::Describe {
                    topic: entry.topic.clone(),
                    partition: meta.partition,
                };
                jobs.push((owner(&entry.topic, meta.partition, shard.shards()), job));
                described.push((t, p));
            }
        }
    }
    // The partitions are the broker's, not the request's: asked in chunks that each fit
    // one request's limit, under one deadline.
    let deadline = Instant::now() + DESCRIBE_TIMEOUT;
    let mut replies = Vec::with_capacity(jobs.len());
    let mut jobs = jobs.into_iter().peekable();
    while jobs.peek().is_some() {
        let chunk: Vec<_> = jobs
            .by_ref()
            .take(shard.config.request_partitions_max)
            .collect();
        replies.extend(fan_out::<PartitionMetadata>(shard, chunk.len(), chunk, deadline).await);
    }
    let single = shard.cluster.is_none();
    for ((t, p), reply) in described.into_iter().zip(replies) {
        let meta = &mut topics[t].partitions[p];
        match (reply, single) {
            (Ok(found), true) => *meta = found,
            // Offsets from the log; replicas, ISR and epoch from the metadata.
            (Ok(found), false) => {
                *meta = PartitionMetadata {
                    leader_epoch: meta.leader_epoch,
                    replicas: std::mem::take(&mut meta.replicas),
                    isr: std::mem::take(&mut meta.isr),
                    ..found
                }
            }
            (_, true) => meta.error = ErrorCode::Unknown,
            (_, false) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_catching_up_never_says_a_topic_does_not_exist() {
        let view = crate::cluster::ClusterView::new(1);
        let (_, topics) = cluster(&view, vec!["orders".into()]);
        assert_eq!(topics[0].error, ErrorCode::LeaderNotAvailable);
        view.set_caught_up(true);
        let (_, topics) = cluster(&view, vec!["orders".into()]);
        assert_eq!(topics[0].error, ErrorCode::UnknownTopicOrPartition);
    }
}
