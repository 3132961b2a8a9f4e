//! Bringing an offline log back without a restart: after a failed write or sync (a full
//! disk, EIO) the log refused appends and failed every waiting append; once the device
//! takes writes again, [`Log::resume`] drops what was never written (none of it was
//! acknowledged: acks=1 is answered once written, acks=all once durable), reopens the
//! segment writer where the written batches end, and syncs.

use super::io::SegmentWriter;
use super::*;

impl Log {
    /// True while an I/O failure keeps the log offline.
    pub fn is_offline(&self) -> bool {
        self.shared.state.borrow().offline.is_some()
    }

    /// Brings an offline log back: the log ends where its written batches end, its writer
    /// reopens there, and a sync is requested (a failed sync may have lost what the device
    /// had). Does nothing to a log that is not offline.
    ///
    /// # Errors
    /// The device still fails: the log stays (or goes again) offline.
    pub async fn resume(&self) -> Result<()> {
        let (segment_base, position, new_end) = {
            let mut state = self.shared.state.borrow_mut();
            if state.offline.is_none() || state.flushing || state.status != Status::Open {
                return Ok(());
            }
            state.status = Status::Truncating;
            let new_end = state.written_end;
            // The first batch not wholly written starts where the log is cut; with none,
            // the active segment's end.
            let (segment_base, position) =
                match state.tail.iter().find(|c| c.base_offset >= new_end) {
                    Some(cached) => (cached.segment_base, cached.position),
                    None => (state.active().base_offset, state.active().size),
                };
            (segment_base, position, new_end)
        };
        let result = self.reopen_at(segment_base, position, new_end).await;
        let mut state = self.shared.state.borrow_mut();
        state.status = Status::Open;
        match &result {
            Ok(()) => {
                state.offline = None;
                state.sync_requested = true;
                tracing::info!(dir = %self.shared.dir.display(), log_end = new_end, "log back online");
                let spawn = claim_flusher(&mut state);
                drop(state);
                if spawn {
                    flush::spawn_flusher(&self.shared);
                }
            }
            Err(error) => state.offline = Some(error.to_string()),
        }
        result
    }

    /// A sealed segment whose finishing failed lost its writer with the failure: reopened
    /// where its written bytes end, so finishing it again syncs them before anything later
    /// is written (only the last segment may ever be torn).
    async fn reopen_unfinished(&self, except: i64) -> Result<()> {
        let lost: Vec<(i64, u64)> = {
            let state = self.shared.state.borrow();
            state
                .segments
                .values()
                .filter(|s| !s.finalized && s.writer.is_none() && s.file_exists)
                .filter(|s| s.base_offset != except)
                .map(|s| (s.base_offset, s.written_size))
                .collect()
        };
        for (base, written) in lost {
            let writer = SegmentWriter::open_at(&log_path(&self.shared.dir, base), written).await?;
            let mut state = self.shared.state.borrow_mut();
            let segment = state.segments.get_mut(&base).expect("segment exists");
            segment.writer = Some(writer);
        }
        Ok(())
    }

    async fn reopen_at(&self, segment_base: i64, position: u64, new_end: i64) -> Result<()> {
        self.reopen_unfinished(segment_base).await?;
        let durable_end = self.shared.state.borrow().durable_end;
        self.cut_at(new_end, segment_base, position, new_end)
            .await?;
        // What was written but not synced is not durable yet: the next sync makes it so.
        let mut state = self.shared.state.borrow_mut();
        state.durable_end = durable_end.min(new_end);
        state.update_high_watermark(self.shared.config.fsync);
        Ok(())
    }
}
