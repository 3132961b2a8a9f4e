//! Cluster mode: partition jobs this broker may not serve, because it does not lead the
//! partition at the metadata's epoch (or its lease lapsed).

use super::{fetch_error, Job, Reply, Shard};
use keel_engine::ReadData;
use keel_protocol::api::{ErrorCode, ListOffsetsPartitionResult, ProducePartitionResult};

impl Shard {
    /// Cluster mode: the answer for a partition job this broker may not serve because it
    /// does not lead the partition (or its lease lapsed).
    pub(super) fn leadership_refusal(&self, job: &Job) -> Option<Reply> {
        let view = self.cluster.as_ref()?;
        let (topic, partition) = match job {
            Job::Produce {
                topic, partition, ..
            }
            | Job::Read(super::Read::Fetch {
                topic, partition, ..
            })
            | Job::ListOffsets {
                topic, partition, ..
            }
            | Job::DeleteRecords {
                topic, partition, ..
            } => (topic, *partition),
            _ => return None,
        };
        let error = match (view.leads(topic, partition), self.log(topic, partition)) {
            // The metadata says this broker leads it, but its log is not open yet (the
            // registry follows the metadata a moment later): not ready, ask again.
            (Ok(_), None) => ErrorCode::NotLeaderOrFollower,
            (Ok(epoch), Some(log)) => {
                // Replicated partitions: the role (and so the high watermark consumers
                // see, and where acks=all waits) follows the metadata before anything runs.
                let replicated = self.refresh_role(topic, partition, &log);
                // Batches appended now carry the epoch this broker leads at.
                if matches!(job, Job::Produce { .. }) && !replicated {
                    log.set_leader_epoch(epoch as i32);
                }
                return None;
            }
            (Err(error), _) => error,
        };
        Some(match job {
            Job::Produce { .. } => Reply::Produced(ProducePartitionResult {
                partition,
                error,
                base_offset: -1,
                log_start_offset: -1,
            }),
            Job::Read(_) => Reply::Fetched(fetch_error(partition, error), ReadData::Empty),
            Job::ListOffsets { .. } | Job::DeleteRecords { .. } => {
                Reply::Offsets(ListOffsetsPartitionResult {
                    partition,
                    error,
                    timestamp: -1,
                    offset: -1,
                })
            }
            _ => Reply::Done(Err((error, format!("{topic}-{partition}")))),
        })
    }
}
