//! ListOffsets: earliest, latest or the first offset at or after a timestamp, every
//! partition on its owning shard at once.

use crate::shard::{fan_out, owner, Job, Shard};
use keel_protocol::api::{
    ErrorCode, ListOffsetsPartition, ListOffsetsPartitionResult, TopicEntries,
};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Longest a ListOffsets request may take (a by-time lookup reads index files).
const LIST_OFFSETS_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn handle(
    shard: &Rc<Shard>,
    topics: Vec<TopicEntries<ListOffsetsPartition>>,
) -> Vec<TopicEntries<ListOffsetsPartitionResult>> {
    let refused = super::entries_refused(shard, &topics);
    let jobs = topics
        .iter()
        .filter(|_| refused.is_none())
        .flat_map(|entry| {
            entry.partitions.iter().map(|request| {
                let job = Job::ListOffsets {
                    topic: entry.topic.clone(),
                    partition: request.partition,
                    timestamp: request.timestamp,
                };
                (owner(&entry.topic, request.partition, shard.shards()), job)
            })
        });
    let count = super::entries_to_run(refused, &topics);
    let deadline = Instant::now() + LIST_OFFSETS_TIMEOUT;
    let replies = fan_out::<ListOffsetsPartitionResult>(shard, count, jobs, deadline).await;
    let missing = refused.unwrap_or(ErrorCode::Unknown);
    super::regroup(&topics, replies, missing, |request, reply| {
        reply.unwrap_or_else(|error| ListOffsetsPartitionResult {
            partition: request.partition,
            error,
            offset: -1,
            timestamp: -1,
        })
    })
    .into_iter()
    .map(|(topic, partitions)| TopicEntries { topic, partitions })
    .collect()
}
