//! Where the consumer reads from: seeks, ListOffsets lookups (beginning, end, timestamp) and
//! resolving positions not known yet by the reset policy.

use super::*;

impl Consumer {
    /// Moves `partition` to `offset`.
    pub fn seek(&mut self, partition: &TopicPartition, offset: i64) {
        self.positions.insert(partition.clone(), Some(offset));
        self.invalidate();
    }

    async fn list_offset(&self, partition: &TopicPartition, timestamp: i64) -> Result<i64> {
        let request = Request::ListOffsets {
            topics: vec![TopicEntries {
                topic: partition.0.clone(),
                partitions: vec![ListOffsetsPartition {
                    partition: partition.1,
                    timestamp,
                }],
            }],
        };
        let leader = self.router.leader(&partition.0, partition.1);
        let connection = self.router.connection(leader).await?;
        let Response::ListOffsets { topics } = connection.call(&request).await? else {
            return Err(Error::Protocol("list-offsets response expected".into()));
        };
        let result = topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| Error::Protocol("empty list-offsets response".into()))?;
        if result.error != ErrorCode::None {
            return Err(Error::broker(
                result.error,
                format!("{}-{}", partition.0, partition.1),
            ));
        }
        Ok(result.offset)
    }

    /// Moves `partition` to its first offset.
    ///
    /// # Errors
    /// Broker errors (e.g. unknown partition).
    pub async fn seek_to_beginning(&mut self, partition: &TopicPartition) -> Result<()> {
        let offset = self.list_offset(partition, EARLIEST_TIMESTAMP).await?;
        self.seek(partition, offset);
        Ok(())
    }

    /// Moves `partition` to its end (only new records).
    ///
    /// # Errors
    /// Broker errors.
    pub async fn seek_to_end(&mut self, partition: &TopicPartition) -> Result<()> {
        let offset = self.list_offset(partition, LATEST_TIMESTAMP).await?;
        self.seek(partition, offset);
        Ok(())
    }

    /// Moves `partition` to the first record at or after `timestamp` (or the end).
    ///
    /// # Errors
    /// Broker errors.
    pub async fn seek_to_timestamp(
        &mut self,
        partition: &TopicPartition,
        timestamp: i64,
    ) -> Result<()> {
        let offset = match self.list_offset(partition, timestamp).await? {
            -1 => self.list_offset(partition, LATEST_TIMESTAMP).await?,
            offset => offset,
        };
        self.seek(partition, offset);
        Ok(())
    }

    pub(super) async fn resolve_positions(&mut self) -> Result<()> {
        let unknown: Vec<TopicPartition> = self
            .positions
            .iter()
            .filter(|(_, p)| p.is_none())
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in unknown {
            let timestamp = if self.config.reset == OffsetReset::Earliest {
                EARLIEST_TIMESTAMP
            } else {
                LATEST_TIMESTAMP
            };
            let offset = self.list_offset(&tp, timestamp).await?;
            self.positions.insert(tp, Some(offset));
        }
        Ok(())
    }
}
