//! A produce job on the partition's owner: checks, idempotent-producer sequences, append,
//! acknowledgement per acks.

use super::*;

impl Shard {
    pub(super) async fn produce(
        &self,
        topic: &str,
        partition: u32,
        records: Bytes,
        (acks, timeout_ms): (i8, u32),
    ) -> ProducePartitionResult {
        let failed = |error| ProducePartitionResult {
            partition,
            error,
            base_offset: -1,
            log_start_offset: -1,
        };
        let Some(log) = self.log(topic, partition) else {
            return failed(ErrorCode::UnknownTopicOrPartition);
        };
        // Split the record set into batches and check every one before appending any, so a
        // bad batch never leaves part of a request stored.
        let (needs_keys, read_only, promoted_mirror) =
            self.registry
                .read()
                .get(topic)
                .map_or((false, false, false), |t| {
                    let mirror = t.configs.contains_key(crate::config::topic::MIRROR_LINK);
                    let read_only = crate::config::topic::read_only_mirror(&t.configs);
                    (
                        crate::compaction::needs_keys(&t.configs),
                        read_only,
                        mirror && !read_only,
                    )
                });
        if read_only {
            return failed(ErrorCode::ReadOnlyTopic);
        }
        let mut batches = Vec::new();
        let mut rest = &records[..];
        while !rest.is_empty() {
            let total = match peek_batch_len(rest) {
                Ok(Some(total)) => total,
                Ok(None) | Err(_) => return failed(ErrorCode::CorruptMessage),
            };
            if total > self.config.batch_bytes_max as usize {
                return failed(ErrorCode::MessageTooLarge);
            }
            if rest.len() < total {
                return failed(ErrorCode::CorruptMessage);
            }
            // The CRC is checked here, once: the log takes the batch as checked.
            let Ok(batch) = Batch::checked(BytesMut::from(&rest[..total])) else {
                return failed(ErrorCode::CorruptMessage);
            };
            let valid = batch.view().and_then(|view| {
                Ok(view.validate_records(self.config.batch_decompressed_bytes_max)?)
            });
            match valid {
                Ok(summary) if needs_keys && summary.null_keys > 0 => {
                    return failed(ErrorCode::InvalidRecord)
                }
                Ok(_) => {}
                Err(_) => return failed(ErrorCode::CorruptMessage),
            }
            batches.push(batch);
            rest = &rest[total..];
        }
        if batches.is_empty() {
            return failed(ErrorCode::CorruptMessage);
        }
        // Replicated: acks=all is refused (nothing appended) while the ISR is too small,
        // and answered once every ISR member has the batches.
        let replicated = match self.replication_gate(topic, partition, acks) {
            Ok(replicated) => replicated,
            Err(error) => return failed(error),
        };
        // A leader whose log holds a later epoch than its own (a promoted mirror holds the
        // source's) writes nothing until its epoch is raised past it (`mirror/task.rs`
        // asks): batches of one epoch always come from one leader (KIP-101).
        if let Some(epoch) = replicated {
            if log
                .latest_epoch()
                .is_some_and(|latest| latest > epoch as i32)
            {
                return failed(ErrorCode::NotLeaderOrFollower);
            }
        }
        if promoted_mirror && !self.promoted_writable(topic, partition) {
            return failed(ErrorCode::NotLeaderOrFollower);
        }
        self.metrics.bytes_in.inc_by(records.len() as u64);
        self.partition_metrics(topic, partition)
            .bytes_in
            .inc_by(records.len() as u64);
        // Idempotent producers: check sequences before anything is appended, reserving each
        // new batch. A retried batch already stored is answered with its original offset,
        // not stored again. The state records a batch's offset only once its append
        // succeeded (the offset the log gave it); a failed append aborts the reservation,
        // so the retry is stored rather than acknowledged as a duplicate of nothing.
        let key = (topic.to_owned(), partition);
        let mut plan = Vec::with_capacity(batches.len());
        for batch in batches {
            let view = batch.view().expect("checked above");
            let producer = (view.producer_id() >= 0).then(|| {
                (
                    view.producer_id(),
                    view.producer_epoch(),
                    view.base_sequence(),
                    view.records_count(),
                )
            });
            let checked = match producer {
                None => Ok(SequenceCheck::Append),
                Some((id, epoch, sequence, count)) => self
                    .producers
                    .borrow_mut()
                    .entry(key.clone())
                    .or_default()
                    .check(id, epoch, sequence, count),
            };
            match checked {
                Ok(SequenceCheck::Append) => plan.push((batch, None, producer)),
                Ok(SequenceCheck::Duplicate(offset)) => plan.push((batch, Some(offset), None)),
                Err(error) => {
                    self.abort_reserved(&key, plan.iter().filter_map(|p| p.2));
                    return failed(error);
                }
            }
        }
        if let Some(stall) = self.fault_stall(topic) {
            glommio::timer::sleep(stall).await;
        }
        let mut base_offset = -1;
        let count = plan.len();
        let last_is_duplicate = plan
            .last()
            .is_some_and(|(_, duplicate_of, _)| duplicate_of.is_some());
        let mut plan = plan.into_iter().enumerate();
        while let Some((index, (batch, duplicate_of, producer))) = plan.next() {
            if let Some(offset) = duplicate_of {
                if base_offset < 0 {
                    base_offset = offset;
                }
                continue;
            }
            // With acks=all the last batch's durability covers the earlier ones: offsets
            // become durable in order. With acks=1 its write does (writes complete in
            // order): an acknowledged batch is on the device, so neither a killed broker
            // nor a write failing (a full disk) loses it.
            let last_append = index + 1 == count || last_is_duplicate;
            let appended = match self.fault_append(topic) {
                Some(error) => Err(error),
                None if acks == -1 && last_append => log.append(batch).await,
                None if acks == 1 && last_append => log.append_written(batch).await,
                None => log.append_accepted(batch).await,
            };
            match appended {
                Ok(info) => {
                    if base_offset < 0 {
                        base_offset = info.base_offset;
                    }
                    if let Some((id, epoch, sequence, _)) = producer {
                        if let Some(states) = self.producers.borrow_mut().get_mut(&key) {
                            states.commit(id, epoch, sequence, info.base_offset);
                        }
                    }
                }
                Err(e) => {
                    let rest = plan.filter_map(|(_, p)| p.2);
                    self.abort_reserved(&key, producer.into_iter().chain(rest));
                    return failed(storage_error(&e).0);
                }
            }
        }
        if acks != 0 && last_is_duplicate {
            // A retried batch is answered once the original is durable (acks=1: at least
            // written, which a flush covers).
            if let Err(e) = log.flush().await {
                return failed(storage_error(&e).0);
            }
        }
        if let Some(epoch) = replicated {
            self.replication_appended(topic, partition, &log);
            if acks == -1 {
                // Everything up to the log end now: covers a duplicate's original too.
                let end = log.log_end_offset();
                let timeout = std::time::Duration::from_millis(u64::from(timeout_ms.max(1)));
                if let Err(error) = self
                    .wait_replicated(topic, partition, (&log, epoch), end, timeout)
                    .await
                {
                    return failed(error);
                }
            }
        }
        ProducePartitionResult {
            partition,
            error: ErrorCode::None,
            base_offset,
            log_start_offset: log.log_start_offset(),
        }
    }

    /// A follower stored batches replicated from the leader: their idempotent producers'
    /// sequences are recorded as the leader's were, so that if this broker comes to lead,
    /// a producer's retry of a batch it already has is answered as a duplicate.
    /// Whether a promoted mirror partition takes writes here yet: its leader epoch was
    /// raised above the mirrored ones (single node: always).
    fn promoted_writable(&self, topic: &str, partition: u32) -> bool {
        self.cluster.as_ref().is_none_or(|view| {
            let status = view.mirrors.lock().unwrap_or_else(|e| e.into_inner());
            status.writable.contains(&(topic.to_owned(), partition))
        })
    }

    pub(crate) fn learn_producers(
        &self,
        topic: &str,
        partition: u32,
        stored: &[crate::producers::StoredBatch],
    ) {
        let mut producers = self.producers.borrow_mut();
        let states = producers.entry((topic.to_owned(), partition)).or_default();
        for &(id, epoch, sequence, count, base_offset) in stored {
            if let Ok(SequenceCheck::Append) = states.check(id, epoch, sequence, count) {
                states.commit(id, epoch, sequence, base_offset);
            }
        }
    }

    /// A follower cut its log at `offset`: its producers forget the batches cut.
    pub(crate) fn truncate_producers(&self, topic: &str, partition: u32, offset: i64) {
        if let Some(states) = self
            .producers
            .borrow_mut()
            .get_mut(&(topic.to_owned(), partition))
        {
            states.truncate(offset);
        }
    }

    /// Rebuilds the idempotent producers of a partition just opened from the end of its
    /// log, before it serves anything: a producer's retry of a batch stored before the
    /// broker stopped is then answered as a duplicate instead of stored twice.
    pub(super) async fn restore_producers(&self, topic: &str, partition: u32, log: &Log) {
        match log.read_tail(crate::producers::RESTORE_SCAN_BYTES).await {
            Ok(tail) => {
                let stored = crate::producers::stored_batches(&tail);
                self.learn_producers(topic, partition, &stored);
            }
            Err(e) => {
                tracing::warn!(topic, partition, error = %e, "reading the log's end to restore producers failed");
            }
        }
    }

    /// Makes reserved sequences acceptable again after their batches were not stored.
    fn abort_reserved(
        &self,
        key: &(String, u32),
        reserved: impl Iterator<Item = (i64, i16, i32, i32)>,
    ) {
        let mut producers = self.producers.borrow_mut();
        let Some(states) = producers.get_mut(key) else {
            return;
        };
        for (id, epoch, sequence, _) in reserved {
            states.abort(id, epoch, sequence);
        }
    }

    /// Fault injection for tests: how long appends to `topic` stall first
    /// (`KEEL_FAULT_STALL_APPENDS=PREFIX:MS`).
    fn fault_stall(&self, topic: &str) -> Option<std::time::Duration> {
        let (prefix, stall) = self.fault_stall.as_ref()?;
        topic.starts_with(prefix.as_str()).then_some(*stall)
    }

    /// Fault injection for tests: `KEEL_FAULT_FAIL_APPENDS=TOPIC:N` fails the first N
    /// appends to TOPIC with an I/O error, as a failing disk would.
    fn fault_append(&self, topic: &str) -> Option<EngineError> {
        let spec = self.fault_appends.as_ref()?;
        if spec.0 != topic || spec.1.get() == 0 {
            return None;
        }
        spec.1.set(spec.1.get() - 1);
        Some(EngineError::Offline(
            "injected I/O error (KEEL_FAULT_FAIL_APPENDS)".into(),
        ))
    }
}
