//! Produce: appends each partition's batches on its owning shard, every topic and
//! partition at once, answered within one timeout for the whole request.

use crate::handlers::groups::OFFSETS_TOPIC;
use crate::shard::{fan_out, owner, Job, Shard};
use keel_protocol::api::{ErrorCode, ProducePartition, ProducePartitionResult, TopicEntries};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Longest a produce waits for its acknowledgement condition (a longer `timeout_ms` is cut
/// to this; the answer is then RequestTimedOut).
pub const PRODUCE_TIMEOUT_MS_MAX: u32 = 300_000;

pub async fn handle(
    shard: &Rc<Shard>,
    acks: i8,
    timeout_ms: u32,
    topics: Vec<TopicEntries<ProducePartition>>,
) -> Vec<TopicEntries<ProducePartitionResult>> {
    let timeout = Duration::from_millis(u64::from(timeout_ms.clamp(1, PRODUCE_TIMEOUT_MS_MAX)));
    let deadline = Instant::now() + timeout;
    // Only the group coordinator writes committed offsets (as in Kafka).
    let refused = super::entries_refused(shard, &topics);
    let writable = |topic: &str| refused.is_none() && topic != OFFSETS_TOPIC;
    let count = topics
        .iter()
        .filter(|entry| writable(&entry.topic))
        .map(|entry| entry.partitions.len())
        .sum();
    let jobs = topics
        .iter()
        .filter(|entry| writable(&entry.topic))
        .flat_map(|entry| {
            entry.partitions.iter().map(|request| {
                let job = Job::Produce {
                    topic: entry.topic.clone(),
                    partition: request.partition,
                    records: request.records.clone(),
                    acks,
                    timeout_ms,
                };
                (owner(&entry.topic, request.partition, shard.shards()), job)
            })
        });
    // On timeout an append may still complete later, as with Kafka.
    let mut replies = fan_out::<ProducePartitionResult>(shard, count, jobs, deadline)
        .await
        .into_iter();
    topics
        .into_iter()
        .map(|entry| {
            let writable = writable(&entry.topic);
            let partitions = entry
                .partitions
                .iter()
                .map(|request| {
                    let error = if let Some(error) = refused {
                        error
                    } else if !writable {
                        ErrorCode::InvalidTopic
                    } else {
                        match replies.next() {
                            Some(Ok(result)) => return result,
                            Some(Err(error)) => error,
                            None => ErrorCode::Unknown,
                        }
                    };
                    ProducePartitionResult {
                        partition: request.partition,
                        error,
                        base_offset: -1,
                        log_start_offset: -1,
                    }
                })
                .collect();
            TopicEntries {
                topic: entry.topic,
                partitions,
            }
        })
        .collect()
}
