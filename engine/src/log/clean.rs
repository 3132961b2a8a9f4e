//! The log cleaner (compaction): keeps the latest record of each key, never changing an
//! offset. Only sealed, written and synced segments below the high watermark whose records
//! are all older than `min_compaction_lag_ms` are cleaned; the active segment never is.
//!
//! A pass: (1) the keys of the dirty part — from the cleaner checkpoint (where the last
//! pass's map ended) on — go into the offset map, key → latest offset, until the map is
//! full; (2) every cleanable segment up to where the map ended is rewritten with the
//! records whose key has no later offset in the map, a tombstone kept only while its
//! segment is younger than `delete_retention_ms`; records without a key are kept (written
//! before the topic was compacted). Each segment is read once: nothing is written until the
//! first batch that loses a record; from there the copy starts with the bytes before it,
//! as they were. Reads and writes together are paced (`io_bytes_per_second`).
//! (3) Each rewritten segment is swapped in: the cleaned
//! copy is written with direct I/O to `<base>.cleaned` and synced, the old indexes are
//! removed, and one rename replaces the data file; the in-memory segment changes at the
//! same instant, so a reader sees the old file or the new one, each with its own index. A
//! crash at any step leaves the old segment or the new one (recovery deletes a stray
//! `.cleaned` file and rebuilds a missing index). (4) The checkpoint moves to where the map
//! ended.

use super::*;
use crate::offset_map::{OffsetMap, Put};
use keel_protocol::retain::{retain_records, Retained};

/// When and how a compacted log is cleaned (Kafka's topic configs of the same names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CleanConfig {
    /// A tombstone is dropped once its segment is older than this.
    pub delete_retention_ms: i64,
    /// Records younger than this are never cleaned.
    pub min_compaction_lag_ms: i64,
    /// A segment with records older than this is cleaned whatever the dirty ratio
    /// (`i64::MAX`: never forced).
    pub max_compaction_lag_ms: i64,
    /// Clean once the dirty part is at least this share of the cleanable bytes.
    pub min_cleanable_dirty_ratio: f64,
    /// Most bytes a second the cleaner reads and writes together (`u64::MAX`: unpaced),
    /// so that cleaning does not take the device and CPU from produce and fetch (Kafka's
    /// `log.cleaner.io.max.bytes.per.second`).
    pub io_bytes_per_second: u64,
}

impl Default for CleanConfig {
    fn default() -> Self {
        CleanConfig {
            delete_retention_ms: 24 * 3600 * 1000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
            io_bytes_per_second: u64::MAX,
        }
    }
}

/// What a cleaning pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Segments rewritten.
    pub segments_rewritten: usize,
    /// Bytes read (map building and rewriting).
    pub bytes_read: u64,
    /// Bytes written (cleaned copies).
    pub bytes_written: u64,
    /// Bytes of the segments rewritten, before and after.
    pub bytes_before: u64,
    /// See `bytes_before`.
    pub bytes_after: u64,
    /// Records dropped.
    pub records_dropped: u64,
    /// Where the next pass's dirty part starts.
    pub checkpoint: i64,
    pace: Pace,
}

impl CleanStats {
    /// Waits as long as the pace asks, after the pass's reads and writes so far.
    async fn paced(&self) {
        if let Some(wait) = self.pace.wait(self.bytes_read + self.bytes_written) {
            io::sleep(wait).await;
        }
    }
}

/// The cleaner's I/O pacing: at most `rate` bytes read and written a second over the pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pace {
    rate: u64,
    started: Instant,
}

impl Default for Pace {
    fn default() -> Pace {
        Pace::new(u64::MAX)
    }
}

impl Pace {
    fn new(rate: u64) -> Pace {
        Pace {
            rate: rate.max(1),
            started: Instant::now(),
        }
    }

    /// How long to wait, having moved `bytes` in this pass, to stay within the rate.
    fn wait(&self, bytes: u64) -> Option<Duration> {
        if self.rate == u64::MAX {
            return None;
        }
        let due = Duration::from_secs_f64(bytes as f64 / self.rate as f64);
        due.checked_sub(self.started.elapsed())
    }
}

/// The file holding the offset the dirty part starts at.
const CHECKPOINT: &str = "cleaner-offset-checkpoint";
/// Bytes read per step (then other work of the shard may run).
const READ_CHUNK: u64 = 256 << 10;
/// A write's size bound, as the writer wants it (whole pages; the writes here are never
/// split: each is one read chunk's kept batches).
const WRITE_CHUNK_ALIGNED: u64 = 1 << 30;

/// A sealed segment the cleaner may touch.
#[derive(Debug, Clone, Copy)]
struct Cleanable {
    base: i64,
    next_offset: i64,
    size: u64,
    max_timestamp: i64,
}

/// Path of a segment's cleaned copy while it is written.
pub(crate) fn cleaned_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.cleaned"))
}

impl Log {
    /// Cleans the log once if it is due (`None` otherwise), using `map` (cleared first) for
    /// the keys: its size bounds the memory a pass takes.
    ///
    /// # Errors
    /// I/O errors (the log goes on with whatever segments were swapped in), a batch that
    /// does not decode.
    pub async fn clean(
        &self,
        map: &mut OffsetMap,
        config: &CleanConfig,
    ) -> Result<Option<CleanStats>> {
        let now = self.shared.clock.now_ms();
        let segments = self.cleanable(now, config);
        let Some(last) = segments.last().copied() else {
            return Ok(None);
        };
        let checkpoint = self
            .read_checkpoint()
            .await?
            .clamp(segments[0].base, last.next_offset);
        let dirty: Vec<Cleanable> = segments
            .iter()
            .copied()
            .filter(|s| s.next_offset > checkpoint)
            .collect();
        if !due(&segments, &dirty, now, config) {
            return Ok(None);
        }
        let mut stats = CleanStats {
            pace: Pace::new(config.io_bytes_per_second),
            ..CleanStats::default()
        };
        map.clear();
        let map_end = self.build_map(&dirty, checkpoint, map, &mut stats).await?;
        for segment in segments.iter().filter(|s| s.base < map_end) {
            self.rewrite(*segment, map, now, config, &mut stats).await?;
        }
        self.write_checkpoint(map_end).await?;
        stats.checkpoint = map_end;
        Ok(Some(stats))
    }

    /// The cleanable prefix of the log: sealed, finalized segments below the high watermark,
    /// every record older than the minimum lag.
    fn cleanable(&self, now: i64, config: &CleanConfig) -> Vec<Cleanable> {
        let state = self.shared.state.borrow();
        if state.offline.is_some() || state.status != Status::Open {
            return Vec::new();
        }
        let bound = state.high_watermark.min(state.durable_end);
        let newest = now.saturating_sub(config.min_compaction_lag_ms);
        let count = state.segments.len().saturating_sub(1);
        state
            .segments
            .values()
            .take(count)
            .take_while(|s| {
                s.sealed && s.finalized && s.next_offset <= bound && s.max_timestamp <= newest
            })
            .map(|s| Cleanable {
                base: s.base_offset,
                next_offset: s.next_offset,
                size: s.size,
                max_timestamp: s.max_timestamp,
            })
            .collect()
    }

    async fn read_checkpoint(&self) -> Result<i64> {
        let bytes = io::read_small_file(&self.shared.dir.join(CHECKPOINT)).await?;
        Ok(bytes
            .and_then(|b| <[u8; 8]>::try_from(&b[..]).ok())
            .map_or(0, i64::from_be_bytes))
    }

    async fn write_checkpoint(&self, offset: i64) -> Result<()> {
        io::write_small_file(&self.shared.dir.join(CHECKPOINT), &offset.to_be_bytes()).await
    }

    /// Puts the keys of the dirty segments into `map` from `from` on; returns the offset the
    /// map covers up to (where it filled, or the end of the dirty part).
    async fn build_map(
        &self,
        dirty: &[Cleanable],
        from: i64,
        map: &mut OffsetMap,
        stats: &mut CleanStats,
    ) -> Result<i64> {
        for segment in dirty {
            let mut batches = SegmentBatches::open(&self.shared.dir, *segment).await?;
            while let Some(chunk) = batches.next(stats).await? {
                for batch in chunk {
                    let view = BatchView::new(&batch).map_err(invalid)?;
                    io::yield_if_needed().await;
                    for record in view.records().map_err(invalid)? {
                        let Some(key) = record.key.filter(|_| record.offset >= from) else {
                            continue;
                        };
                        if map.put(&key, record.offset) == Put::Full {
                            batches.close().await?;
                            return Ok(record.offset);
                        }
                    }
                }
            }
            batches.close().await?;
        }
        Ok(dirty.last().map_or(from, |s| s.next_offset))
    }

    /// Rewrites one segment without the records the map and the tombstone rule drop, and
    /// swaps it in. One pass: nothing is written until the first batch that loses a record;
    /// then the bytes before it are copied as they are and the rest follows as read.
    async fn rewrite(
        &self,
        segment: Cleanable,
        map: &OffsetMap,
        now: i64,
        config: &CleanConfig,
        stats: &mut CleanStats,
    ) -> Result<()> {
        let tombstones_expired =
            segment.max_timestamp < now.saturating_sub(config.delete_retention_ms);
        let keep = |record: &keel_protocol::batch::Record| match &record.key {
            None => true,
            Some(key) => {
                let latest = map.get(key).is_none_or(|latest| latest <= record.offset);
                latest && (record.value.is_some() || !tombstones_expired)
            }
        };
        let mut copy: Option<CleanedCopy> = None;
        let mut position = 0u64;
        let mut batches = SegmentBatches::open(&self.shared.dir, segment).await?;
        while let Some(chunk) = batches.next(stats).await? {
            let mut kept = Vec::with_capacity(chunk.len());
            for batch in chunk {
                io::yield_if_needed().await;
                let view = BatchView::new(&batch).map_err(invalid)?;
                let retained = retain_records(&view, keep).map_err(invalid)?;
                if copy.is_none() && retained != Retained::All {
                    copy =
                        Some(CleanedCopy::start(&self.shared.dir, segment, position, stats).await?);
                }
                position += batch.len() as u64;
                let Some(copy) = copy.as_mut() else {
                    continue;
                };
                let before = view.records_count().max(0) as u64;
                match retained {
                    Retained::All => kept.push(batch.clone()),
                    Retained::Nothing => copy.dropped += before,
                    Retained::Some(bytes) => {
                        let after = BatchView::new(&bytes).map_err(invalid)?.records_count();
                        copy.dropped += before - after.max(0) as u64;
                        kept.push(Bytes::from(bytes));
                    }
                }
            }
            if let Some(copy) = copy.as_mut() {
                copy.write(&kept, stats).await?;
            }
        }
        batches.close().await?;
        let Some(copy) = copy else {
            return Ok(());
        };
        let (cleaned, cleaned_len, dropped) = copy.finish().await?;
        self.swap_in(segment, &cleaned, cleaned_len).await?;
        stats.segments_rewritten += 1;
        stats.bytes_before += segment.size;
        stats.bytes_after += cleaned_len;
        stats.records_dropped += dropped;
        Ok(())
    }

    /// Replaces a segment's data file with its cleaned copy (durable, synced) and its
    /// bookkeeping with the copy's, at one instant for readers.
    async fn swap_in(&self, segment: Cleanable, cleaned: &Path, cleaned_len: u64) -> Result<()> {
        let dir = self.shared.dir.clone();
        let base = segment.base;
        let mut scanner = Scanner::from_start(base, self.shared.config.index_interval_bytes, true);
        let file = io::open_read(cleaned).await?;
        let stop = io::scan(&file, cleaned, cleaned_len, &mut scanner).await?;
        file.close()
            .await
            .map_err(io::error(format!("closing {}", cleaned.display())))?;
        if let Stop::Invalid { reason, .. } = stop {
            return Err(Error::Corrupt {
                path: cleaned.to_owned(),
                position: scanner.position(),
                reason,
            });
        }
        let max_timestamp = scanner.max_timestamp();
        let (offset_index, time_index) = scanner.into_indexes();
        // A crash from here on finds the old data file or the new one, without an index
        // to mislead it: recovery rebuilds the index from whichever it finds.
        io::remove_file(&index_path(&dir, base)).await?;
        io::remove_file(&time_index_path(&dir, base)).await?;
        let unchanged = {
            let state = self.shared.state.borrow();
            state.status == Status::Open
                && state
                    .segments
                    .get(&base)
                    .is_some_and(|s| s.sealed && s.finalized && s.size == segment.size)
        };
        if !unchanged {
            // Retention deleted it, or a truncation cut it, meanwhile: the copy is not what
            // the log holds any more.
            return io::remove_file(cleaned).await;
        }
        {
            // No await from the check to the swap: the segment is still the one checked.
            let mut state = self.shared.state.borrow_mut();
            // The tail cache's copies of this segment's batches (and of any before it) go:
            // their file positions are the old file's.
            while let Some(front) = state.tail.front() {
                if front.segment_base > base {
                    break;
                }
                state.tail_bytes -= front.bytes.len() as u64;
                state.tail.pop_front();
            }
            let current = state.segments.get_mut(&base).expect("checked above");
            io::rename(cleaned, &log_path(&dir, base))?;
            current.size = cleaned_len;
            current.written_size = cleaned_len;
            current.max_timestamp = current.max_timestamp.max(max_timestamp);
            current.offset_index = offset_index;
            current.time_index = time_index;
            current.reader = None;
            current.generation += 1;
        }
        io::sync_dir(&dir).await?;
        let (offset_bytes, time_bytes) = {
            let state = self.shared.state.borrow();
            match state.segments.get(&base) {
                Some(s) => (s.offset_index.to_bytes(), s.time_index.to_bytes()),
                None => return Ok(()),
            }
        };
        io::write_small_file(&index_path(&dir, base), &offset_bytes).await?;
        io::write_small_file(&time_index_path(&dir, base), &time_bytes).await
    }
}

/// Whether a pass is due: the dirty share reached the ratio, or a dirty segment is older
/// than the maximum lag.
fn due(all: &[Cleanable], dirty: &[Cleanable], now: i64, config: &CleanConfig) -> bool {
    if dirty.is_empty() {
        return false;
    }
    let total: u64 = all.iter().map(|s| s.size).sum();
    let dirty_bytes: u64 = dirty.iter().map(|s| s.size).sum();
    let ratio = if total == 0 {
        0.0
    } else {
        dirty_bytes as f64 / total as f64
    };
    let overdue = config.max_compaction_lag_ms < i64::MAX
        && dirty
            .iter()
            .any(|s| s.max_timestamp < now.saturating_sub(config.max_compaction_lag_ms));
    ratio >= config.min_cleanable_dirty_ratio || overdue
}

/// The batches of a sealed segment, a read chunk at a time.
struct SegmentBatches {
    file: io::File,
    path: PathBuf,
    size: u64,
    position: u64,
    pending: Vec<u8>,
}

impl SegmentBatches {
    async fn open(dir: &Path, segment: Cleanable) -> Result<SegmentBatches> {
        let path = log_path(dir, segment.base);
        Ok(SegmentBatches {
            file: io::open_read(&path).await?,
            path,
            size: segment.size,
            position: 0,
            pending: Vec::new(),
        })
    }

    /// The whole batches of the next chunk read (`None` at the end).
    async fn next(&mut self, stats: &mut CleanStats) -> Result<Option<Vec<Bytes>>> {
        if self.position >= self.size {
            if !self.pending.is_empty() {
                return Err(invalid(format!(
                    "{}: {} bytes after the last whole batch",
                    self.path.display(),
                    self.pending.len()
                )));
            }
            return Ok(None);
        }
        let len = READ_CHUNK.min(self.size - self.position);
        let chunk = io::read_exact(&self.file, &self.path, self.position, len as usize).await?;
        self.position += len;
        stats.bytes_read += len;
        stats.paced().await;
        self.pending.extend_from_slice(&chunk);
        let mut batches = Vec::new();
        let mut at = 0;
        while let Some(total) = peek_batch_len(&self.pending[at..]).map_err(invalid)? {
            if at + total > self.pending.len() {
                break;
            }
            batches.push(Bytes::copy_from_slice(&self.pending[at..at + total]));
            at += total;
        }
        self.pending.drain(..at);
        io::yield_to_reactor().await;
        Ok(Some(batches))
    }

    async fn close(self) -> Result<()> {
        self.file
            .close()
            .await
            .map_err(io::error(format!("closing {}", self.path.display())))
    }
}

/// A segment's cleaned copy while it is written.
struct CleanedCopy {
    path: PathBuf,
    writer: io::SegmentWriter,
    dropped: u64,
}

impl CleanedCopy {
    /// Creates the copy and writes the source's first `prefix` bytes (whole batches that
    /// keep every record) into it, as they are.
    async fn start(
        dir: &Path,
        segment: Cleanable,
        prefix: u64,
        stats: &mut CleanStats,
    ) -> Result<CleanedCopy> {
        let path = cleaned_path(dir, segment.base);
        let mut copy = CleanedCopy {
            writer: io::SegmentWriter::create(&path).await?,
            path,
            dropped: 0,
        };
        let source = log_path(dir, segment.base);
        let file = io::open_read(&source).await?;
        let mut at = 0;
        while at < prefix {
            let len = READ_CHUNK.min(prefix - at);
            let bytes = io::read_exact(&file, &source, at, len as usize).await?;
            at += len;
            stats.bytes_read += len;
            copy.write(&[Bytes::from(bytes)], stats).await?;
        }
        file.close()
            .await
            .map_err(io::error(format!("closing {}", source.display())))?;
        Ok(copy)
    }

    /// Appends kept batches.
    async fn write(&mut self, batches: &[Bytes], stats: &mut CleanStats) -> Result<()> {
        if batches.is_empty() {
            return Ok(());
        }
        let write = self.writer.prepare(batches, false, WRITE_CHUNK_ALIGNED, 0);
        self.writer.submitter().submit(write).await?;
        stats.bytes_written += batches.iter().map(|b| b.len() as u64).sum::<u64>();
        stats.paced().await;
        Ok(())
    }

    /// Syncs and closes the copy: its path, length and the records it left out.
    async fn finish(self) -> Result<(PathBuf, u64, u64)> {
        let len = self.writer.len();
        self.writer.finish().await?;
        Ok((self.path, len, self.dropped))
    }
}

fn invalid(reason: impl std::fmt::Display) -> Error {
    Error::InvalidBatch(keel_protocol::Error::BadRecord(reason.to_string()))
}
