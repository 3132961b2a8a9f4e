//! Appends: checks, offset assignment and stamping, the tail cache, waiting for the fsync
//! policy (or only for acceptance), and readers waiting for data.

use super::*;

/// When an append completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ack {
    /// When the fsync policy is satisfied (with `always`: on disk).
    Durable,
    /// When its bytes were written to the device (direct I/O, no fsync): a crash of the
    /// process loses nothing written, nor does a failed write lose an acknowledged batch.
    Written,
    /// As soon as offsets are assigned (back-pressure still applies).
    Accepted,
}

/// Who decides a batch's base offset and leader epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stamp {
    /// This log leads: the next offset and its leader epoch are stamped.
    Leader,
    /// A follower appends the leader's batch as it is: it must start at the log end.
    Verbatim,
}

/// A batch to append: bytes as received, or bytes whose CRC the caller already checked
/// ([`Batch::checked`]), which the log then does not check a second time.
pub struct Batch {
    bytes: BytesMut,
    crc_checked: bool,
}

impl From<BytesMut> for Batch {
    fn from(bytes: BytesMut) -> Batch {
        Batch {
            bytes,
            crc_checked: false,
        }
    }
}

impl Batch {
    /// Checks the batch's framing and CRC once, for whoever appends it next.
    ///
    /// # Errors
    /// [`Error::InvalidBatch`] for bad bytes or CRC.
    pub fn checked(bytes: BytesMut) -> Result<Batch> {
        BatchView::new_verified(&bytes)?;
        Ok(Batch {
            bytes,
            crc_checked: true,
        })
    }

    /// The batch's header and records, read in place.
    ///
    /// # Errors
    /// [`Error::InvalidBatch`] when the bytes are not a batch.
    pub fn view(&self) -> Result<BatchView<'_>> {
        Ok(BatchView::new(&self.bytes)?)
    }
}

impl Log {
    /// Appends one RecordBatch v2, assigning its base offset and leader epoch; the bytes are
    /// stored otherwise unchanged. Completes when the fsync policy is satisfied: with
    /// `always`, once the batch is on disk.
    ///
    /// # Errors
    /// [`Error::InvalidBatch`] for bad bytes or CRC (nothing is stored),
    /// [`Error::Offline`] after an I/O failure, [`Error::Unavailable`] while closed or
    /// truncating.
    pub async fn append(&self, batch: impl Into<Batch>) -> Result<AppendInfo> {
        let (info, wait) = self.append_buffered(batch.into())?;
        if let Some((done, wait_for_space)) = wait {
            done.await.map_err(|_| Error::Unavailable("closed"))??;
            if wait_for_space {
                io::yield_to_reactor().await;
            }
        }
        Ok(info)
    }

    fn append_buffered(&self, batch: Batch) -> Result<(AppendInfo, Option<AckWait>)> {
        self.append_buffered_with(batch, Ack::Durable, Stamp::Leader)
    }

    pub(super) fn append_buffered_with(
        &self,
        batch: Batch,
        ack: Ack,
        stamp: Stamp,
    ) -> Result<(AppendInfo, Option<AckWait>)> {
        let Batch {
            bytes: mut batch,
            crc_checked,
        } = batch;
        let view = if crc_checked {
            BatchView::new(&batch)?
        } else {
            BatchView::new_verified(&batch)?
        };
        if view.len() != batch.len() {
            return Err(Error::InvalidAppend(format!(
                "{} bytes after the batch",
                batch.len() - view.len()
            )));
        }
        let count = i64::from(view.last_offset_delta()) + 1;
        let records = i64::from(view.records_count());
        // A leader's cleaned batch keeps its offsets with fewer records in them.
        let cleaned = matches!(stamp, Stamp::Verbatim) && records > 0 && records < count;
        if records != count && !cleaned {
            // The offsets a batch takes follow last_offset_delta; a count that disagrees
            // would make readers and the log see different offsets.
            return Err(Error::InvalidAppend(format!(
                "records_count {} does not match last_offset_delta {}",
                view.records_count(),
                view.last_offset_delta()
            )));
        }
        let max_timestamp = view.max_timestamp();
        let len = batch.len() as u64;
        let config = &self.shared.config;
        let now_ms = self.shared.clock.now_ms();
        let mut guard = self.shared.state.borrow_mut();
        let state = &mut *guard;
        state.check_writable()?;

        let active = state.active();
        let too_big = active.size + len > config.segment_bytes;
        let too_old = config.segment_ms.is_some_and(|ms| {
            active
                .created_ms
                .is_some_and(|c| now_ms.saturating_sub(c) >= i64::try_from(ms).unwrap_or(i64::MAX))
        });
        let offsets_full = state.log_end + count - active.base_offset > u32::MAX as i64;
        if !active.is_empty() && (too_big || too_old || offsets_full) {
            state.active_mut().sealed = true;
            let base = state.log_end;
            state
                .segments
                .insert(base, Segment::new(base, config.index_interval_bytes));
        }

        let mut base_offset = state.log_end;
        let epoch = match stamp {
            Stamp::Leader => {
                // Never below an epoch already in the log (a log once replicated, now
                // appended to by a single node).
                let epoch = state.leader_epoch.max(state.epochs.latest().unwrap_or(0));
                set_base_offset(&mut batch, base_offset);
                set_partition_leader_epoch(&mut batch, epoch);
                epoch
            }
            Stamp::Verbatim => {
                // A leader's cleaned log has gaps where whole batches were removed: a batch
                // may start past the log end, never before it.
                if view.base_offset() < base_offset {
                    return Err(Error::InvalidAppend(format!(
                        "replicated batch at offset {} but the log ends at {base_offset}",
                        view.base_offset()
                    )));
                }
                base_offset = view.base_offset();
                view.partition_leader_epoch()
            }
        };
        // Durable before the batch enters the log: a stored batch's epoch is always known.
        // A failure to record it is the log's storage failing, as a failed write is.
        if let Err(error) = state.epochs.begin(epoch, base_offset) {
            if matches!(error, Error::Io { .. }) {
                state.fail(&error);
            }
            return Err(error);
        }
        let bytes = batch.freeze();
        let last_offset = base_offset + count - 1;
        let segment = state.active_mut();
        let position = segment.size;
        if segment.pacer.on_batch(len) {
            segment.offset_index.append(last_offset, position);
        }
        if max_timestamp > segment.max_timestamp {
            segment.max_timestamp = max_timestamp;
            segment.time_index.maybe_append(max_timestamp, last_offset);
        }
        segment.size += len;
        segment.next_offset = last_offset + 1;
        segment.created_ms.get_or_insert(now_ms);
        let segment_base = segment.base_offset;
        state.log_end = last_offset + 1;
        state.tail.push_back(Cached {
            base_offset,
            next_offset: last_offset + 1,
            segment_base,
            position,
            max_timestamp,
            bytes,
        });
        state.tail_bytes += len;
        if !state.end_waiters.is_empty() {
            let log_end = state.log_end;
            state.end_waiters.retain(|(offset, _)| *offset >= log_end);
        }
        state.unwritten_bytes += len;
        state.stats.appends += 1;
        state.update_high_watermark(config.fsync);

        if config.fsync == FsyncPolicy::Always {
            // Even an append nobody waits for is synced promptly under `always`.
            state.sync_requested = true;
        }
        let full = state.unwritten_bytes > config.unwritten_bytes_max;
        let wait_for = match (ack, config.fsync) {
            (Ack::Durable, FsyncPolicy::Always) => Some(WaitFor::Durable(state.log_end)),
            // Writes complete in order: waiting for this one covers the space too.
            (Ack::Written, _) => Some(WaitFor::Written(state.log_end)),
            _ if full => Some(WaitFor::Space),
            _ => None,
        };
        let receiver = wait_for.map(|wait_for| {
            let (done, receiver) = oneshot::channel();
            let for_space = matches!(wait_for, WaitFor::Space);
            state.waiters.push(Waiter { wait_for, done });
            (receiver, for_space)
        });
        let spawn = claim_flusher(state);
        drop(guard);
        if spawn {
            spawn_flusher(&self.shared);
        }
        Ok((
            AppendInfo {
                base_offset,
                last_offset,
                max_timestamp,
            },
            receiver,
        ))
    }

    /// Completes once the high watermark is above `offset` (a reader at `offset` has
    /// something to read), or the log is closed. For long-polling fetches.
    pub async fn wait_for_data(&self, offset: i64) {
        let receiver = {
            let mut state = self.shared.state.borrow_mut();
            if state.high_watermark > offset || state.status == Status::Closed {
                return;
            }
            // A reader that gave up (its long poll timed out) leaves a cancelled sender
            // behind; prune them whenever the list has doubled, so an idle partition polled
            // forever keeps a bounded list (amortised O(1) per wait).
            if state.data_waiters.len() >= DATA_WAITERS_PRUNE_MIN.max(2 * state.data_waiters_live) {
                state
                    .data_waiters
                    .retain(|(_, sender)| !sender.is_canceled());
                state.data_waiters_live = state.data_waiters.len();
            }
            let (done, receiver) = oneshot::channel();
            state.data_waiters.push((offset, done));
            receiver
        };
        let _ = receiver.await;
    }

    /// Appends like [`Log::append`] but completes as soon as the batch is accepted (offsets
    /// assigned, bytes on their way to disk) without waiting for the fsync policy: what a
    /// producer with `acks=0` gets (and the batches of a request before its last, whose
    /// acknowledgement covers them). Back-pressure still applies.
    ///
    /// # Errors
    /// As [`Log::append`].
    pub async fn append_accepted(&self, batch: impl Into<Batch>) -> Result<AppendInfo> {
        self.append_acked(batch.into(), Ack::Accepted).await
    }

    /// Appends like [`Log::append`] but completes once the batch's bytes were written to
    /// the device (direct I/O; no fsync waited for): what a Kafka producer with `acks=1`
    /// gets from Keel, so neither a killed process nor a failed write (a full disk) loses
    /// an acknowledged batch. Writes complete in order, so earlier appends are written too.
    ///
    /// # Errors
    /// As [`Log::append`]; the write's own failure among them.
    pub async fn append_written(&self, batch: impl Into<Batch>) -> Result<AppendInfo> {
        self.append_acked(batch.into(), Ack::Written).await
    }

    async fn append_acked(&self, batch: Batch, ack: Ack) -> Result<AppendInfo> {
        let (info, wait) = self.append_buffered_with(batch, ack, Stamp::Leader)?;
        if let Some((done, wait_for_space)) = wait {
            done.await.map_err(|_| Error::Unavailable("closed"))??;
            if wait_for_space {
                io::yield_to_reactor().await;
            }
        }
        Ok(info)
    }
}
