//! ListOffsets: earliest, latest or the first offset at or after a timestamp.

use crate::shard::{owner, Job, Reply, Shard};
use keel_protocol::api::{
    ErrorCode, ListOffsetsPartition, ListOffsetsPartitionResult, Response, TopicEntries,
};
use std::rc::Rc;

pub async fn handle(
    shard: &Rc<Shard>,
    topics: Vec<TopicEntries<ListOffsetsPartition>>,
) -> Response {
    let mut results = Vec::with_capacity(topics.len());
    for entry in topics {
        let mut tasks = Vec::with_capacity(entry.partitions.len());
        for request in entry.partitions {
            let (shard, topic) = (shard.clone(), entry.topic.clone());
            tasks.push(glommio::spawn_local(async move {
                let owner = owner(&topic, request.partition, shard.shards());
                let job = Job::ListOffsets {
                    topic,
                    partition: request.partition,
                    timestamp: request.timestamp,
                };
                match shard.call(owner, job).await {
                    Reply::Offsets(result) => result,
                    _ => ListOffsetsPartitionResult {
                        partition: request.partition,
                        error: ErrorCode::Unknown,
                        offset: -1,
                        timestamp: -1,
                    },
                }
            }));
        }
        let mut partitions = Vec::with_capacity(tasks.len());
        for task in tasks {
            partitions.push(task.await);
        }
        results.push(TopicEntries {
            topic: entry.topic,
            partitions,
        });
    }
    Response::ListOffsets { topics: results }
}
