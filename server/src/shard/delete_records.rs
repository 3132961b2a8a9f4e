//! Kafka's DeleteRecords on a partition's owner.

use super::{storage_error, Reply, Shard};
use keel_protocol::api::{ErrorCode, ListOffsetsPartitionResult};

impl Shard {
    /// Deletes every segment whose records all lie below `offset` (-1 or past the high
    /// watermark: every record), sealing the active segment first when all of it goes;
    /// answers the new log start (Kafka's low watermark) in `offset`.
    pub(super) async fn delete_records(&self, topic: &str, partition: u32, offset: i64) -> Reply {
        let answer = |error: ErrorCode, offset: i64| {
            Reply::Offsets(ListOffsetsPartitionResult {
                partition,
                error,
                offset,
                timestamp: -1,
            })
        };
        let Some(log) = self.log(topic, partition) else {
            return answer(ErrorCode::UnknownTopicOrPartition, -1);
        };
        let high_watermark = log.high_watermark();
        let offset = if offset == -1 { high_watermark } else { offset };
        if offset < 0 || offset > high_watermark {
            return answer(ErrorCode::OffsetOutOfRange, -1);
        }
        let deleted = async {
            if offset == high_watermark && log.log_end_offset() == high_watermark {
                log.roll().await?;
            }
            log.delete_before(offset).await
        }
        .await;
        match deleted {
            Ok(segments) => {
                tracing::info!(%topic, partition, offset, segments = segments.len(), "records deleted");
                answer(ErrorCode::None, log.log_start_offset())
            }
            Err(e) => answer(storage_error(&e).0, -1),
        }
    }
}
