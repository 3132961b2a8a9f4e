//! Produce: appends each partition's batches on its owning shard, all partitions at once.

use crate::handlers::groups::OFFSETS_TOPIC;
use crate::shard::{owner, Job, Reply, Shard};
use keel_protocol::api::{
    ErrorCode, ProducePartition, ProducePartitionResult, Response, TopicEntries,
};
use std::rc::Rc;
use std::time::Duration;

/// Longest a produce waits for its acknowledgement condition (a longer `timeout_ms` is cut
/// to this; the answer is then RequestTimedOut).
pub const PRODUCE_TIMEOUT_MS_MAX: u32 = 300_000;

pub async fn handle(
    shard: &Rc<Shard>,
    acks: i8,
    timeout_ms: u32,
    topics: Vec<TopicEntries<ProducePartition>>,
) -> Response {
    let timeout = Duration::from_millis(u64::from(timeout_ms.clamp(1, PRODUCE_TIMEOUT_MS_MAX)));
    let mut results = Vec::with_capacity(topics.len());
    for entry in topics {
        if entry.topic == OFFSETS_TOPIC {
            // Only the group coordinator writes committed offsets (as in Kafka).
            let partitions = entry
                .partitions
                .iter()
                .map(|request| ProducePartitionResult {
                    partition: request.partition,
                    error: ErrorCode::InvalidTopic,
                    base_offset: -1,
                    log_start_offset: -1,
                })
                .collect();
            results.push(TopicEntries {
                topic: entry.topic,
                partitions,
            });
            continue;
        }
        let mut tasks = Vec::with_capacity(entry.partitions.len());
        for request in entry.partitions {
            let (shard, topic) = (shard.clone(), entry.topic.clone());
            let partition = request.partition;
            tasks.push((
                partition,
                glommio::spawn_local(async move {
                    let owner = owner(&topic, partition, shard.shards());
                    let job = Job::Produce {
                        topic,
                        partition,
                        records: request.records,
                        acks,
                        timeout_ms,
                    };
                    match shard.call(owner, job).await {
                        Reply::Produced(result) => result,
                        _ => ProducePartitionResult {
                            partition,
                            error: ErrorCode::Unknown,
                            base_offset: -1,
                            log_start_offset: -1,
                        },
                    }
                }),
            ));
        }
        let mut partitions = Vec::with_capacity(tasks.len());
        for (partition, task) in tasks {
            let timed_out = ProducePartitionResult {
                partition,
                error: ErrorCode::RequestTimedOut,
                base_offset: -1,
                log_start_offset: -1,
            };
            // On timeout the append may still complete later, as with Kafka.
            let result = futures_lite::future::or(task, async {
                glommio::timer::sleep(timeout).await;
                timed_out
            })
            .await;
            partitions.push(result);
        }
        results.push(TopicEntries {
            topic: entry.topic,
            partitions,
        });
    }
    Response::Produce { topics: results }
}
