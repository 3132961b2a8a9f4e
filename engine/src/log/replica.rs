//! What replication needs from a log: appending a leader's batches verbatim, reading up to
//! the log end for followers, the high watermark the replicas agree on, waiting for the log
//! end to move, and the leader-epoch lookups of KIP-101/KIP-279.

use super::append::{Ack, Stamp};
use super::*;

impl Log {
    /// Appends a batch replicated from the leader exactly as it is (its base offset, which
    /// must be this log's end, its leader epoch and CRC). Completes when the fsync policy
    /// is satisfied, as [`Log::append`].
    ///
    /// # Errors
    /// [`Error::InvalidBatch`] for bad bytes, [`Error::InvalidAppend`] when the batch does
    /// not start at the log end or its epoch goes back; as [`Log::append`] otherwise.
    pub async fn append_replica(&self, batch: BytesMut) -> Result<AppendInfo> {
        let (info, wait) =
            self.append_buffered_with(batch.into(), Ack::Durable, Stamp::Verbatim)?;
        if let Some((done, wait_for_space)) = wait {
            done.await.map_err(|_| Error::Unavailable("closed"))??;
            if wait_for_space {
                io::yield_to_reactor().await;
            }
        }
        Ok(info)
    }

    /// Reads like [`Log::read`] but up to the log end rather than the high watermark: what
    /// a leader sends its followers.
    ///
    /// # Errors
    /// As [`Log::read`].
    pub async fn read_replica(&self, offset: i64, max_bytes: u64) -> Result<ReadResult> {
        self.read_below(offset, max_bytes, true).await
    }

    /// Caps the high watermark at what the partition's replicas agree on (`None`: no
    /// replication, the log alone decides). Readers waiting below the new mark wake.
    pub fn set_replication_high_watermark(&self, cap: Option<i64>) {
        let mut state = self.shared.state.borrow_mut();
        state.replication_cap = cap;
        state.update_high_watermark(self.shared.config.fsync);
    }

    /// The cap set by [`Log::set_replication_high_watermark`] (`None`: not set since
    /// the log opened, or no replication).
    pub fn replication_high_watermark(&self) -> Option<i64> {
        self.shared.state.borrow().replication_cap
    }

    /// Appends batches replicated from the leader, as [`Log::append_replica`] each, waiting
    /// once for the last (offsets become durable in order): one group commit for a fetch.
    ///
    /// # Errors
    /// As [`Log::append_replica`]; batches before the failing one stay appended.
    pub async fn append_replica_batches(&self, batches: Vec<BytesMut>) -> Result<()> {
        let count = batches.len();
        for (index, batch) in batches.into_iter().enumerate() {
            let last = index + 1 == count;
            let (_, wait) = self.append_buffered_with(
                batch.into(),
                if last { Ack::Durable } else { Ack::Accepted },
                Stamp::Verbatim,
            )?;
            if let Some((done, wait_for_space)) = wait {
                done.await.map_err(|_| Error::Unavailable("closed"))??;
                if wait_for_space {
                    io::yield_to_reactor().await;
                }
            }
        }
        Ok(())
    }

    /// What this log holds by its own fsync policy: the durable end under `fsync=always`,
    /// else the log end. A replica reports this as its progress.
    pub fn local_end_offset(&self) -> i64 {
        self.shared
            .state
            .borrow()
            .local_end(self.shared.config.fsync)
    }

    /// Completes once the log end is past `offset`, or the log is closed: a leader's
    /// long-polled replica fetch.
    pub async fn wait_for_end(&self, offset: i64) {
        let receiver = {
            let mut state = self.shared.state.borrow_mut();
            if state.log_end > offset || state.status == Status::Closed {
                return;
            }
            if state.end_waiters.len() >= DATA_WAITERS_PRUNE_MIN {
                state
                    .end_waiters
                    .retain(|(_, sender)| !sender.is_canceled());
            }
            let (done, receiver) = oneshot::channel();
            state.end_waiters.push((offset, done));
            receiver
        };
        let _ = receiver.await;
    }

    /// The latest leader epoch with a batch in this log.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.shared.state.borrow().epochs.latest()
    }

    /// The epoch of the batch just before `offset` (`None` at the start): what a follower
    /// fetching from `offset` names as its last fetched epoch.
    pub fn epoch_before(&self, offset: i64) -> Option<i32> {
        self.shared.state.borrow().epochs.epoch_before(offset)
    }

    /// The largest epoch at most `epoch` on this log and the offset where it ends (the log
    /// end for the latest); `None` when nothing is at or before `epoch`.
    pub fn epoch_end_offset(&self, epoch: i32) -> Option<(i32, i64)> {
        let state = self.shared.state.borrow();
        state.epochs.end_offset_for(epoch, state.log_end)
    }
}
