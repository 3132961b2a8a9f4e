//! Shrinking the log: retention, deleting before an offset, rolling, truncation.

use super::io::SegmentWriter;
use super::read::find_batch;
use super::*;

impl Log {
    /// Deletes whole old segments beyond `retention_ms` / `retention_bytes`, advancing the
    /// log-start offset. Returns the base offsets of deleted segments. A read in flight
    /// keeps the deleted segment's file open until it finishes.
    ///
    /// # Errors
    /// I/O errors removing files.
    pub async fn enforce_retention(&self) -> Result<Vec<i64>> {
        let config = &self.shared.config;
        let now_ms = self.shared.clock.now_ms();
        let count = {
            let state = self.shared.state.borrow();
            let summaries: Vec<SegmentSummary> = state
                .segments
                .values()
                .map(|s| SegmentSummary {
                    size: s.size,
                    max_timestamp: s.max_timestamp,
                    next_offset: s.next_offset,
                })
                .collect();
            let policy = RetentionPolicy {
                retention_ms: config.retention_ms,
                retention_bytes: config.retention_bytes,
            };
            let finalized = state.segments.values().take_while(|s| s.finalized).count();
            segments_to_delete(&summaries, policy, now_ms, state.high_watermark).min(finalized)
        };
        self.remove_leading(count, "retention").await
    }

    /// Deletes whole segments whose records all lie below `offset` (Kafka's DeleteRecords,
    /// at segment granularity), advancing the log-start offset. Returns the base offsets of
    /// deleted segments.
    ///
    /// # Errors
    /// I/O errors removing files.
    pub async fn delete_before(&self, offset: i64) -> Result<Vec<i64>> {
        let count = {
            let state = self.shared.state.borrow();
            let limit = offset.min(state.high_watermark);
            state
                .segments
                .values()
                .take_while(|s| s.finalized && s.next_offset <= limit)
                .count()
        };
        self.remove_leading(count, "delete-before").await
    }

    /// Seals the active segment (if it holds anything) so the next append starts a new
    /// one, and waits until the sealed segment is finished on disk.
    ///
    /// # Errors
    /// As [`Log::flush`].
    pub async fn roll(&self) -> Result<()> {
        {
            let mut guard = self.shared.state.borrow_mut();
            let state = &mut *guard;
            state.check_writable()?;
            if !state.active().is_empty() {
                state.active_mut().sealed = true;
                let base = state.log_end;
                state.segments.insert(
                    base,
                    Segment::new(base, self.shared.config.index_interval_bytes),
                );
            }
        }
        self.flush().await
    }

    async fn remove_leading(&self, count: usize, why: &'static str) -> Result<Vec<i64>> {
        let removed: Vec<Segment> = {
            let mut state = self.shared.state.borrow_mut();
            let bases: Vec<i64> = state.segments.keys().take(count).copied().collect();
            let removed: Vec<Segment> = bases
                .iter()
                .filter_map(|b| state.segments.remove(b))
                .collect();
            if let Some(first) = state.segments.values().next() {
                state.log_start = first.base_offset;
            }
            let log_start = state.log_start;
            while state
                .tail
                .front()
                .is_some_and(|c| c.base_offset < log_start)
            {
                let front = state.tail.pop_front().expect("checked");
                state.tail_bytes -= front.bytes.len() as u64;
            }
            removed
        };
        let mut deleted = Vec::with_capacity(removed.len());
        for segment in removed {
            let base = segment.base_offset;
            tracing::info!(dir = %self.shared.dir.display(), base, why, "deleting segment");
            drop(segment);
            io::remove_file(&log_path(&self.shared.dir, base)).await?;
            io::remove_file(&index_path(&self.shared.dir, base)).await?;
            io::remove_file(&time_index_path(&self.shared.dir, base)).await?;
            deleted.push(base);
        }
        if !deleted.is_empty() {
            io::sync_dir(&self.shared.dir).await?;
        }
        Ok(deleted)
    }

    /// Removes every batch at or after the one holding `offset`; the log end becomes that
    /// batch's base offset (replication uses this to drop a diverged suffix).
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] below the log start; I/O errors.
    pub async fn truncate_to(&self, offset: i64) -> Result<()> {
        {
            let state = self.shared.state.borrow();
            state.check_writable()?;
            if offset < state.log_start {
                return Err(Error::OffsetOutOfRange {
                    offset,
                    log_start: state.log_start,
                    log_end: state.log_end,
                });
            }
            if offset >= state.log_end {
                return Ok(());
            }
        }
        self.flush().await?;
        let (segment_base, scan_from, cap, reader_path) = {
            let mut state = self.shared.state.borrow_mut();
            state.check_writable()?;
            assert!(!state.flushing, "flusher idle after flush");
            state.status = Status::Truncating;
            let segment = state
                .segments
                .range(..=offset)
                .next_back()
                .map(|(_, s)| s)
                .expect("offset >= log start");
            let scan_from = segment
                .offset_index
                .lookup(offset)
                .map_or(0, |e| e.position);
            (
                segment.base_offset,
                scan_from,
                segment.written_size,
                log_path(&self.shared.dir, segment.base_offset),
            )
        };
        let result = self
            .truncate_locked(offset, segment_base, scan_from, cap, &reader_path)
            .await;
        let mut state = self.shared.state.borrow_mut();
        // Open again either way: a failed cut leaves the log offline, and `resume` (which
        // does nothing to a log still truncating) brings it back.
        state.status = Status::Open;
        if let Err(error) = &result {
            state.fail(error);
        }
        result
    }

    async fn truncate_locked(
        &self,
        offset: i64,
        segment_base: i64,
        scan_from: u64,
        cap: u64,
        path: &Path,
    ) -> Result<()> {
        let (position, new_end) = if offset == segment_base {
            (0, segment_base)
        } else {
            let reader = io::open_read(path).await?;
            let found =
                find_batch(&reader, path, scan_from, cap, |_, last, _| last >= offset).await?;
            let (position, _) = found.expect("offset below the log end is in its segment");
            let header = io::read_exact(&reader, path, position, 8).await?;
            reader
                .close()
                .await
                .map_err(io::error(format!("closing {}", path.display())))?;
            (
                position,
                i64::from_be_bytes(header[..8].try_into().expect("8 bytes")),
            )
        };
        self.cut_at(offset, segment_base, position, new_end).await
    }

    /// Drops every segment after `segment_base` and everything of it from `position` (where
    /// the batch starting at `new_end` lies), reopening its writer there; the log ends at
    /// `new_end`. The flusher must be idle.
    pub(super) async fn cut_at(
        &self,
        offset: i64,
        segment_base: i64,
        position: u64,
        new_end: i64,
    ) -> Result<()> {
        let path = log_path(&self.shared.dir, segment_base);
        let path = path.as_path();
        let later: Vec<i64> = {
            let mut state = self.shared.state.borrow_mut();
            state.ahead.clear();
            state
                .segments
                .range(segment_base + 1..)
                .map(|(b, _)| *b)
                .collect()
        };
        for base in later {
            // Out of the bookkeeping only once its files are gone: after a failure a
            // second try (the next resume) removes them again. Forgotten first, a segment
            // whose removal failed stayed on disk after the log ended before it, and
            // recovery took it back (a log end past offsets it no longer had).
            io::remove_file(&log_path(&self.shared.dir, base)).await?;
            io::remove_file(&index_path(&self.shared.dir, base)).await?;
            io::remove_file(&time_index_path(&self.shared.dir, base)).await?;
            drop(self.shared.state.borrow_mut().segments.remove(&base));
        }
        let writer = {
            let mut state = self.shared.state.borrow_mut();
            let segment = state
                .segments
                .get_mut(&segment_base)
                .expect("segment exists");
            segment.writer.take().ok_or(segment.file_exists)
        };
        let writer = match writer {
            Ok(mut writer) => {
                writer.truncate(position).await?;
                writer
            }
            // A writer lost to an earlier failure (a truncation whose sync failed, say):
            // the file may have its length already while the device has not, so it is
            // synced whatever `open_at` finds.
            Err(true) => {
                let writer = SegmentWriter::open_at(path, position).await?;
                writer.sync_file().await?;
                writer
            }
            // Never created (its creation failed: a full disk): made now, empty.
            Err(false) => {
                assert_eq!(
                    position, 0,
                    "a segment without a file holds nothing written"
                );
                let writer = SegmentWriter::create(path).await?;
                io::sync_dir(&self.shared.dir).await?;
                writer
            }
        };
        io::remove_file(&index_path(&self.shared.dir, segment_base)).await?;
        io::remove_file(&time_index_path(&self.shared.dir, segment_base)).await?;
        io::sync_dir(&self.shared.dir).await?;
        let now_ms = self.shared.clock.now_ms();
        let mut guard = self.shared.state.borrow_mut();
        let state = &mut *guard;
        let segment = state
            .segments
            .get_mut(&segment_base)
            .expect("segment exists");
        segment.writer = Some(writer);
        segment.file_exists = true;
        segment.sealed = false;
        segment.finalized = false;
        segment.size = position;
        segment.written_size = position;
        segment.next_offset = new_end;
        segment.offset_index.truncate_to_position(position);
        segment.time_index.truncate_to_offset(new_end);
        segment.max_timestamp = segment.time_index.last().map_or(-1, |e| e.timestamp);
        segment.pacer = IndexPacer::new(self.shared.config.index_interval_bytes);
        segment.created_ms = (position > 0).then_some(now_ms);
        state.tail.retain(|c| c.base_offset < new_end);
        state.tail_bytes = state.tail.iter().map(|c| c.bytes.len() as u64).sum();
        state.unwritten_bytes = 0;
        state.log_end = new_end;
        state.written_end = new_end;
        state.durable_end = new_end;
        state.high_watermark = state.high_watermark.min(new_end);
        state.epochs.truncate(new_end)?;
        tracing::info!(dir = %self.shared.dir.display(), offset, new_end, "log truncated");
        Ok(())
    }
}

impl Log {
    /// Empties the log and starts it again at `offset`, at or past its end (Kafka's
    /// truncate-fully-and-start-at): a follower or mirror whose next offset the leader's
    /// or source's retention deleted goes on from where that log now starts. The new empty
    /// segment is on disk before this returns, so the log reopens starting at `offset`.
    ///
    /// # Errors
    /// [`Error::InvalidAppend`] for an offset before the log end; I/O errors (the log goes
    /// offline, as after a failed truncation).
    pub async fn restart_at(&self, offset: i64) -> Result<()> {
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        if offset < end {
            return Err(Error::InvalidAppend(format!(
                "restarting the log at {offset}, before its end {end}"
            )));
        }
        // One empty segment at the log start first, so the log always has an active one.
        self.truncate_to(start).await?;
        {
            let mut state = self.shared.state.borrow_mut();
            state.check_writable()?;
            state.status = Status::Truncating;
        }
        let result = self.move_empty_segment(offset).await;
        let mut state = self.shared.state.borrow_mut();
        state.status = Status::Open;
        match &result {
            Ok(()) => {
                tracing::info!(dir = %self.shared.dir.display(), from = start, offset, "log restarted")
            }
            Err(error) => state.fail(error),
        }
        result
    }

    /// The log's only segment, empty, is replaced by an empty one at `offset`: the new
    /// file is made (and its directory synced) before the old one goes, so a crash between
    /// leaves an empty segment before it (a gap recovery accepts) and never no segment.
    async fn move_empty_segment(&self, offset: i64) -> Result<()> {
        let old = {
            let state = self.shared.state.borrow();
            assert_eq!(state.segments.len(), 1, "truncated to its start");
            assert_eq!(state.log_start, state.log_end, "truncated to its start");
            state.log_start
        };
        if offset != old {
            let writer = SegmentWriter::create(&log_path(&self.shared.dir, offset)).await?;
            io::sync_dir(&self.shared.dir).await?;
            let mut segment = Segment::new(offset, self.shared.config.index_interval_bytes);
            segment.writer = Some(writer);
            segment.file_exists = true;
            self.shared
                .state
                .borrow_mut()
                .segments
                .insert(offset, segment);
            io::remove_file(&log_path(&self.shared.dir, old)).await?;
            io::remove_file(&index_path(&self.shared.dir, old)).await?;
            io::remove_file(&time_index_path(&self.shared.dir, old)).await?;
            io::sync_dir(&self.shared.dir).await?;
            drop(self.shared.state.borrow_mut().segments.remove(&old));
        }
        let mut guard = self.shared.state.borrow_mut();
        let state = &mut *guard;
        state.log_start = offset;
        state.log_end = offset;
        state.written_end = offset;
        state.durable_end = offset;
        state.replication_cap = state.replication_cap.map(|cap| cap.max(offset));
        state.update_high_watermark(self.shared.config.fsync);
        state.tail.clear();
        state.tail_bytes = 0;
        state.unwritten_bytes = 0;
        state.epochs.truncate(i64::MIN)?;
        Ok(())
    }
}
