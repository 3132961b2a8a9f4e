//! A shard's periodic upkeep of the partitions it owns: retention, per-partition gauges,
//! fsync totals (driven by `background::housekeeping`).

use super::Shard;
use crate::metrics::PartitionLabel;

impl Shard {
    /// Retention, then the per-partition gauges, for every owned partition.
    pub async fn housekeeping(&self) {
        for ((topic, partition), log) in self.owned_logs() {
            if let Err(e) = log.enforce_retention().await {
                tracing::warn!(%topic, partition, error = %e, "retention failed");
            }
        }
        self.housekeeping_gauges();
    }

    /// Updates the per-partition gauges.
    pub fn housekeeping_gauges(&self) {
        let mut cached = 0;
        for ((topic, partition), log) in self.logs.borrow().iter() {
            cached += log.trim_tail_cache();
            let label = PartitionLabel {
                topic: topic.clone(),
                partition: *partition,
            };
            self.metrics
                .log_start_offset
                .get_or_create(&label)
                .set(log.log_start_offset());
            self.metrics
                .log_end_offset
                .get_or_create(&label)
                .set(log.log_end_offset());
            self.metrics
                .high_watermark
                .get_or_create(&label)
                .set(log.high_watermark());
            self.metrics
                .partition_size_bytes
                .get_or_create(&label)
                .set(log.size_bytes() as i64);
        }
        let shard = crate::metrics::ShardLabel {
            shard: self.id as u32,
        };
        self.metrics
            .tail_cache_bytes
            .get_or_create(&shard)
            .set(cached as i64);
    }

    /// fsync totals of this shard's partitions: (count, microseconds).
    pub fn fsync_totals(&self) -> (u64, u64) {
        self.logs
            .borrow()
            .values()
            .map(|l| l.stats())
            .fold((0, 0), |(n, us), s| (n + s.fsyncs, us + s.fsync_us_total))
    }
}
