//! Record sets: records for one partition prepared by the caller, encoded as they are
//! pushed and sent as one batch with one delivery, beside the per-record API.
//!
//! A per-record send costs a partition choice, a buffer permit, an accumulator lock and a
//! completion for every record; a record set pays those once for all its records, as
//! iggy-bench's prebuilt message batches do. Sequences (idempotence), in-flight limits,
//! retries and ordering are the per-record API's: a set goes after the records of its
//! partition accepted before it.

use super::*;

/// Records for one partition, encoded into one batch as they are pushed.
pub struct RecordSet {
    builder: BatchBuilder,
    bytes: usize,
    timestamp: i64,
}

impl Default for RecordSet {
    fn default() -> RecordSet {
        RecordSet::with_capacity(64 << 10)
    }
}

impl RecordSet {
    /// An empty set with room for `bytes` of encoded records before it grows.
    pub fn with_capacity(bytes: usize) -> RecordSet {
        RecordSet {
            builder: BatchBuilder::with_capacity(bytes.min(BATCH_RESERVE_MAX)),
            bytes: 0,
            timestamp: now_ms(),
        }
    }

    /// Adds a record with `value` (and `key`), stamped with the set's creation time.
    pub fn push(&mut self, key: Option<Bytes>, value: impl Into<Bytes>) -> &mut Self {
        let record = NewRecord {
            timestamp: self.timestamp,
            key,
            value: Some(value.into()),
            headers: Vec::new(),
        };
        self.push_record(record)
    }

    /// Adds a record as given (timestamp, key, value, headers).
    pub fn push_record(&mut self, record: NewRecord) -> &mut Self {
        self.bytes += record_size(record.key.as_ref(), record.value.as_ref(), &record.headers);
        self.builder.push(record);
        self
    }

    /// Records in the set.
    pub fn len(&self) -> usize {
        self.builder.records_count()
    }

    /// Whether the set holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// About the bytes the records take (what the producer's buffer counts).
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Producer {
    /// Sends `set` to `partition` of `topic` as one batch and returns its delivery: the
    /// metadata of its first record (the others follow at the next offsets).
    ///
    /// # Errors
    /// As [`Producer::enqueue`]; [`Error::InvalidRecord`] for an empty set, one larger than
    /// `record_bytes_max` or the buffer, or a partition the topic does not have.
    pub async fn enqueue_records(
        &self,
        topic: &str,
        partition: u32,
        set: RecordSet,
    ) -> Result<DeliveryFuture> {
        let (sender, receiver) = oneshot::channel();
        self.accept_set(topic, partition, set, Completion::Channel(sender))
            .await?;
        Ok(DeliveryFuture(receiver))
    }

    /// As [`Producer::enqueue_records`], calling `callback` with the delivery.
    ///
    /// # Errors
    /// As [`Producer::enqueue_records`] (then the callback is not called).
    pub async fn send_records_with_callback(
        &self,
        topic: &str,
        partition: u32,
        set: RecordSet,
        callback: impl FnOnce(Result<RecordMetadata>) + Send + 'static,
    ) -> Result<()> {
        let completion = Completion::Callback(Box::new(callback));
        self.accept_set(topic, partition, set, completion).await
    }

    async fn accept_set(
        &self,
        topic: &str,
        partition: u32,
        set: RecordSet,
        completion: Completion,
    ) -> Result<()> {
        tokio::task::consume_budget().await;
        let inner = &self.inner;
        if inner.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let (topic, partitions) = self.partition_count(topic).await?;
        if partition >= partitions {
            return Err(Error::InvalidRecord(format!(
                "partition {partition} of {topic} does not exist ({partitions} partitions)"
            )));
        }
        let size = set.bytes;
        if set.is_empty()
            || size > inner.config.record_bytes_max
            || size > inner.config.buffer_bytes
        {
            return Err(Error::InvalidRecord(format!(
                "a record set of {} records and {size} bytes (at least one record, at most \
                 {} bytes)",
                set.len(),
                inner.config.record_bytes_max.min(inner.config.buffer_bytes)
            )));
        }
        let permits = self.reserve(size).await?;
        let RecordSet {
            mut builder,
            timestamp,
            ..
        } = set;
        builder.compression(inner.config.compression);
        let records = builder.records_count() as u32;
        let batch = OpenBatch {
            builder,
            pending: vec![Pending {
                timestamp,
                permits,
                records,
                completion,
            }],
            bytes: size,
            created: Instant::now(),
        };
        {
            let mut accumulator = inner.accumulator.lock().expect("accumulator lock");
            let key = (topic, partition);
            // Records of the partition accepted before the set go before it.
            let earlier = accumulator.open.remove(&key);
            let queue = accumulator.sealed.entry(key).or_default();
            queue.extend(earlier);
            queue.push_back(batch);
        }
        inner.wake.notify_one();
        Ok(())
    }
}
