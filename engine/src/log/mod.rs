//! The partition log: appends with group commit, reads from the tail cache or the segment
//! files, rolls, retention, truncation and recovery on open.
//!
//! All state lives in one `RefCell` owned by the shard's executor. Appends do their
//! bookkeeping synchronously (offsets are assigned in call order) and then wait, if the
//! fsync policy says so, for a single background flusher task that writes everything
//! unwritten in one direct-I/O write and syncs once for everyone waiting: group commit.

use crate::config::{FsyncPolicy, LogConfig, OnCorruption, Verify};
use crate::error::{Error, Result};
use crate::index::{IndexPacer, OffsetIndex, TimeIndex};
use crate::io::{self, File, PreparedWrite, SegmentWriter, Submitter};
use crate::recovery::{Scanner, Stop};
use crate::retention::{segments_to_delete, RetentionPolicy, SegmentSummary};
use crate::segment::{
    index_path, log_path, parse_log_file_name, time_index_path, Segment, SegmentInfo,
};
use bytes::{Bytes, BytesMut};
use futures_channel::oneshot;
use keel_protocol::batch::{
    peek_batch_len, set_base_offset, set_partition_leader_epoch, BatchView, LOG_OVERHEAD,
};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Source of wall-clock time in milliseconds (roll by age, retention by time).
pub trait Clock {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// A clock tests move by hand.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Rc<Cell<i64>>);

impl ManualClock {
    /// A clock reading `now_ms`.
    pub fn new(now_ms: i64) -> ManualClock {
        ManualClock(Rc::new(Cell::new(now_ms)))
    }
    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.set(self.0.get() + ms);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.get()
    }
}

/// Where an appended batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record.
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// Largest record timestamp in the batch.
    pub max_timestamp: i64,
}

/// A byte range of a segment file that a server can send with zero copy (sendfile/splice).
///
/// Holds the file open, so the range stays readable even if retention deletes the segment
/// meanwhile.
#[derive(Debug, Clone)]
pub struct FileRange {
    file: Arc<std::fs::File>,
    position: u64,
    len: u64,
}

impl FileRange {
    /// The open file.
    pub fn file(&self) -> &Arc<std::fs::File> {
        &self.file
    }
    /// Raw descriptor for sendfile/splice.
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
    /// Byte position of the first batch.
    pub fn position(&self) -> u64 {
        self.position
    }
    /// Length in bytes (whole batches).
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether the range is empty (never true for a range returned by a read).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Copies the range into memory with a blocking `pread`: for tools and tests, not for
    /// a shard's event loop.
    ///
    /// # Errors
    /// I/O errors of the read.
    pub fn read_to_vec(&self) -> Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut out = vec![0; self.len as usize];
        self.file
            .read_exact_at(&mut out, self.position)
            .map_err(|e| Error::io("reading a file range", e))?;
        Ok(out)
    }
}

/// The bytes a read returns: whole batches, from memory or from a file.
#[derive(Debug, Clone)]
pub enum ReadData {
    /// Nothing at or after the offset is readable yet.
    Empty,
    /// Recent batches served from the tail cache, in order.
    Memory(Vec<Bytes>),
    /// Older batches, as a range of a segment file.
    File(FileRange),
}

impl ReadData {
    /// Number of bytes.
    pub fn len(&self) -> u64 {
        match self {
            ReadData::Empty => 0,
            ReadData::Memory(chunks) => chunks.iter().map(|c| c.len() as u64).sum(),
            ReadData::File(range) => range.len(),
        }
    }
    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The bytes in one buffer (blocking read for file ranges; tools and tests).
    ///
    /// # Errors
    /// I/O errors reading a file range.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        match self {
            ReadData::Empty => Ok(Vec::new()),
            ReadData::Memory(chunks) => Ok(chunks.concat()),
            ReadData::File(range) => range.read_to_vec(),
        }
    }
}

/// The answer to a read.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Whole batches starting with the one holding the requested offset.
    pub data: ReadData,
    /// Offsets below this are readable by consumers.
    pub high_watermark: i64,
    /// First offset in the log.
    pub log_start_offset: i64,
    /// Offset the next append gets.
    pub log_end_offset: i64,
}

/// Counters for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Batches appended.
    pub appends: u64,
    /// Direct-I/O writes issued.
    pub writes: u64,
    /// Bytes handed to those writes (including rewritten partial pages and padding).
    pub bytes_written: u64,
    /// Total time writes were in flight, microseconds.
    pub write_us_total: u64,
    /// fdatasync calls.
    pub fsyncs: u64,
    /// Total time spent in fdatasync, microseconds.
    pub fsync_us_total: u64,
    /// Longest fdatasync, microseconds.
    pub fsync_us_max: u64,
    /// Reads served from the tail cache.
    pub reads_memory: u64,
    /// Reads served as file ranges.
    pub reads_file: u64,
    /// Readers parked in [`Log::wait_for_data`] (including abandoned ones not yet pruned:
    /// at most twice the live ones, and at least 64).
    pub data_waiters: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Open,
    Truncating,
    Closed,
}

enum WaitFor {
    Durable(i64),
    Space,
    Idle,
}

/// What an append waits for after its bookkeeping: the flusher's answer, and whether it
/// waited for buffer space (then it lets the reactor submit I/O before going on).
type AckWait = (oneshot::Receiver<Result<()>>, bool);

/// A write handed to the kernel, and what to record when it completes.
struct InFlight {
    base: i64,
    end_len: u64,
    end_aligned: u64,
    started: Instant,
    task: io::Task<Result<()>>,
}

struct Waiter {
    wait_for: WaitFor,
    done: oneshot::Sender<Result<()>>,
}

struct Cached {
    base_offset: i64,
    next_offset: i64,
    segment_base: i64,
    position: u64,
    max_timestamp: i64,
    bytes: Bytes,
}

struct State {
    segments: BTreeMap<i64, Segment>,
    log_start: i64,
    log_end: i64,
    high_watermark: i64,
    written_end: i64,
    durable_end: i64,
    leader_epoch: i32,
    tail: VecDeque<Cached>,
    tail_bytes: u64,
    unwritten_bytes: u64,
    flushing: bool,
    sync_requested: bool,
    waiters: Vec<Waiter>,
    offline: Option<String>,
    status: Status,
    last_sync: Instant,
    stats: LogStats,
    /// Readers waiting for the high watermark to pass an offset.
    data_waiters: Vec<(i64, oneshot::Sender<()>)>,
    /// Waiters left after the last pruning of cancelled ones.
    data_waiters_live: usize,
}

/// Parked readers kept before cancelled ones are pruned.
const DATA_WAITERS_PRUNE_MIN: usize = 64;

struct Shared {
    dir: PathBuf,
    config: LogConfig,
    clock: Rc<dyn Clock>,
    state: RefCell<State>,
}

/// One partition's log in one directory. Cheap to clone (a handle); must stay on the
/// glommio executor that opened it.
///
/// ```no_run
/// use keel_engine::{Log, LogConfig};
/// use keel_protocol::batch::{BatchBuilder, NewRecord};
///
/// glommio::LocalExecutor::default().run(async {
///     let log = Log::open("/tmp/keel-doc/orders-0", LogConfig::default()).await?;
///     let mut builder = BatchBuilder::new();
///     builder.push(NewRecord::value(1_700_000_000_000, "hello"));
///     let info = log.append(builder.build()?.as_slice().into()).await?;
///     assert_eq!(info.base_offset, 0);
///     let read = log.read(0, 1 << 20).await?;
///     assert!(!read.data.is_empty());
///     log.close().await
/// }).unwrap();
/// # Ok::<(), keel_engine::Error>(())
/// ```
#[derive(Clone)]
pub struct Log {
    shared: Rc<Shared>,
}

impl State {
    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    fn complete_waiters(&mut self, unwritten_bytes_max: u64) {
        let (durable, unwritten) = (self.durable_end, self.unwritten_bytes);
        self.waiters.retain_mut(|waiter| {
            let ready = match waiter.wait_for {
                WaitFor::Durable(next) => next <= durable,
                WaitFor::Space => unwritten <= unwritten_bytes_max,
                WaitFor::Idle => false,
            };
            if ready {
                let (done, _) = oneshot::channel();
                let sender = std::mem::replace(&mut waiter.done, done);
                let _ = sender.send(Ok(()));
            }
            !ready
        });
    }

    fn complete_idle(&mut self) {
        self.waiters.retain_mut(|waiter| {
            let idle = matches!(waiter.wait_for, WaitFor::Idle);
            if idle {
                let (done, _) = oneshot::channel();
                let _ = std::mem::replace(&mut waiter.done, done).send(Ok(()));
            }
            !idle
        });
    }

    fn fail(&mut self, error: &Error) {
        tracing::error!(%error, "log goes offline");
        self.offline = Some(error.to_string());
        for waiter in self.waiters.drain(..) {
            let _ = waiter.done.send(Err(error.clone()));
        }
    }

    fn update_high_watermark(&mut self, fsync: FsyncPolicy) {
        self.high_watermark = match fsync {
            FsyncPolicy::Always => self.durable_end,
            FsyncPolicy::Interval(_) | FsyncPolicy::Never => self.log_end,
        };
        assert!(
            self.high_watermark <= self.log_end,
            "high watermark above log end"
        );
        if !self.data_waiters.is_empty() {
            let high_watermark = self.high_watermark;
            // Dropping a sender wakes its reader; the ones kept are still waiting.
            self.data_waiters
                .retain(|(offset, _)| *offset >= high_watermark);
        }
    }

    fn evict(&mut self, tail_cache_bytes: u64) {
        let evictable = self.written_end.min(self.high_watermark);
        while self.tail_bytes > tail_cache_bytes {
            match self.tail.front() {
                Some(front) if front.next_offset <= evictable => {
                    self.tail_bytes -= front.bytes.len() as u64;
                    self.tail.pop_front();
                }
                _ => break,
            }
        }
    }

    fn check_writable(&self) -> Result<()> {
        if let Some(reason) = &self.offline {
            return Err(Error::Offline(reason.clone()));
        }
        match self.status {
            Status::Open => Ok(()),
            Status::Truncating => Err(Error::Unavailable("being truncated")),
            Status::Closed => Err(Error::Unavailable("closed")),
        }
    }
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, recovering from whatever a crash left.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad config, [`Error::Corrupt`] when a segment is corrupt and
    /// `config.on_corruption` is `Fail`, I/O errors.
    pub async fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Log> {
        Log::open_with_clock(dir, config, Rc::new(SystemClock)).await
    }

    /// As [`Log::open`], with a clock of the caller's choosing.
    ///
    /// # Errors
    /// As [`Log::open`].
    pub async fn open_with_clock(
        dir: impl AsRef<Path>,
        config: LogConfig,
        clock: Rc<dyn Clock>,
    ) -> Result<Log> {
        config.validate()?;
        // io_uring opens paths relative to no directory: glommio fails on relative paths
        // (EBADF), so the log works with an absolute one.
        let dir = std::path::absolute(dir.as_ref())
            .map_err(|e| Error::io(format!("resolving {}", dir.as_ref().display()), e))?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        io::probe_device(&dir).await?;
        let mut bases = Vec::new();
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
            if let Some(base) = entry.file_name().to_str().and_then(parse_log_file_name) {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        let segments = recover(&dir, &config, &bases, clock.now_ms()).await?;
        let log_start = segments.values().next().map_or(0, |s| s.base_offset);
        let log_end = segments.values().next_back().map_or(0, |s| s.next_offset);
        let mut segments = segments;
        if segments.is_empty() {
            segments.insert(0, Segment::new(0, config.index_interval_bytes));
        }
        let state = State {
            segments,
            log_start,
            log_end,
            high_watermark: log_end,
            written_end: log_end,
            durable_end: log_end,
            leader_epoch: 0,
            tail: VecDeque::new(),
            tail_bytes: 0,
            unwritten_bytes: 0,
            flushing: false,
            sync_requested: false,
            waiters: Vec::new(),
            offline: None,
            status: Status::Open,
            last_sync: Instant::now(),
            stats: LogStats::default(),
            data_waiters: Vec::new(),
            data_waiters_live: 0,
        };
        let shared = Rc::new(Shared {
            dir,
            config,
            clock,
            state: RefCell::new(state),
        });
        if let FsyncPolicy::Interval(every) = shared.config.fsync {
            io::spawn_detached(interval_syncer(Rc::downgrade(&shared), every));
        }
        Ok(Log { shared })
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
    /// The configuration the log was opened with.
    pub fn config(&self) -> &LogConfig {
        &self.shared.config
    }
    /// First offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.shared.state.borrow().log_start
    }
    /// Offset the next append gets.
    pub fn log_end_offset(&self) -> i64 {
        self.shared.state.borrow().log_end
    }
    /// Offsets below this are visible to readers.
    pub fn high_watermark(&self) -> i64 {
        self.shared.state.borrow().high_watermark
    }
    /// Offsets below this are synced to disk.
    pub fn durable_end_offset(&self) -> i64 {
        self.shared.state.borrow().durable_end
    }
    /// Counters since open.
    pub fn stats(&self) -> LogStats {
        let state = self.shared.state.borrow();
        LogStats {
            data_waiters: state.data_waiters.len() as u64,
            ..state.stats
        }
    }
    /// Sets the leader epoch stamped on appended batches.
    pub fn set_leader_epoch(&self, epoch: i32) {
        self.shared.state.borrow_mut().leader_epoch = epoch;
    }
    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.shared
            .state
            .borrow()
            .segments
            .values()
            .map(|s| s.size)
            .sum()
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let state = self.shared.state.borrow();
        let active_base = state.active().base_offset;
        state
            .segments
            .values()
            .map(|s| SegmentInfo {
                base_offset: s.base_offset,
                next_offset: s.next_offset,
                size: s.size,
                max_timestamp: s.max_timestamp,
                path: log_path(&self.shared.dir, s.base_offset),
                active: s.base_offset == active_base,
            })
            .collect()
    }

    /// Appends one RecordBatch v2, assigning its base offset and leader epoch; the bytes are
    /// stored otherwise unchanged. Completes when the fsync policy is satisfied: with
    /// `always`, once the batch is on disk.
    ///
    /// # Errors
    /// [`Error::InvalidBatch`] for bad bytes or CRC (nothing is stored),
    /// [`Error::Offline`] after an I/O failure, [`Error::Unavailable`] while closed or
    /// truncating.
    pub async fn append(&self, batch: BytesMut) -> Result<AppendInfo> {
        let (info, wait) = self.append_buffered(batch)?;
        if let Some((done, wait_for_space)) = wait {
            done.await.map_err(|_| Error::Unavailable("closed"))??;
            if wait_for_space {
                io::yield_to_reactor().await;
            }
        }
        Ok(info)
    }

    fn append_buffered(&self, batch: BytesMut) -> Result<(AppendInfo, Option<AckWait>)> {
        self.append_buffered_with(batch, true)
    }

    fn append_buffered_with(
        &self,
        mut batch: BytesMut,
        wait_durable: bool,
    ) -> Result<(AppendInfo, Option<AckWait>)> {
        let view = BatchView::new_verified(&batch)?;
        if view.len() != batch.len() {
            return Err(Error::InvalidAppend(format!(
                "{} bytes after the batch",
                batch.len() - view.len()
            )));
        }
        let count = i64::from(view.last_offset_delta()) + 1;
        if i64::from(view.records_count()) != count {
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

        let base_offset = state.log_end;
        set_base_offset(&mut batch, base_offset);
        set_partition_leader_epoch(&mut batch, state.leader_epoch);
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
        state.unwritten_bytes += len;
        state.stats.appends += 1;
        state.update_high_watermark(config.fsync);

        if config.fsync == FsyncPolicy::Always {
            // Even an append nobody waits for is synced promptly under `always`.
            state.sync_requested = true;
        }
        let wait_for = match config.fsync {
            FsyncPolicy::Always if wait_durable => Some(WaitFor::Durable(state.log_end)),
            FsyncPolicy::Always if state.unwritten_bytes > config.unwritten_bytes_max => {
                Some(WaitFor::Space)
            }
            FsyncPolicy::Always => None,
            FsyncPolicy::Interval(_) | FsyncPolicy::Never
                if state.unwritten_bytes > config.unwritten_bytes_max =>
            {
                Some(WaitFor::Space)
            }
            FsyncPolicy::Interval(_) | FsyncPolicy::Never => None,
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
    /// Kafka producer with `acks=1` gets. Back-pressure still applies.
    ///
    /// # Errors
    /// As [`Log::append`].
    pub async fn append_accepted(&self, batch: BytesMut) -> Result<AppendInfo> {
        let (info, wait) = self.append_buffered_with(batch, false)?;
        if let Some((done, wait_for_space)) = wait {
            done.await.map_err(|_| Error::Unavailable("closed"))??;
            if wait_for_space {
                io::yield_to_reactor().await;
            }
        }
        Ok(info)
    }

    /// Writes and syncs everything appended so far (and finishes rolled segments).
    ///
    /// # Errors
    /// [`Error::Offline`] or the I/O error that made the log go offline.
    pub async fn flush(&self) -> Result<()> {
        let (receiver, spawn) = {
            let mut state = self.shared.state.borrow_mut();
            if let Some(reason) = &state.offline {
                return Err(Error::Offline(reason.clone()));
            }
            let (done, receiver) = oneshot::channel();
            let target = state.log_end;
            state.waiters.push(Waiter {
                wait_for: WaitFor::Durable(target),
                done,
            });
            state.sync_requested = true;
            let needs_work = state.durable_end < target
                || state.segments.values().any(|s| s.sealed && !s.finalized);
            let mut spawn = false;
            if needs_work {
                spawn = claim_flusher(&mut state);
            } else {
                state.complete_waiters(self.shared.config.unwritten_bytes_max);
            }
            (receiver, spawn)
        };
        if spawn {
            spawn_flusher(&self.shared);
        }
        receiver.await.map_err(|_| Error::Unavailable("closed"))??;
        self.wait_idle().await
    }

    async fn wait_idle(&self) -> Result<()> {
        let receiver = {
            let mut state = self.shared.state.borrow_mut();
            if !state.flushing {
                return Ok(());
            }
            let (done, receiver) = oneshot::channel();
            state.waiters.push(Waiter {
                wait_for: WaitFor::Idle,
                done,
            });
            receiver
        };
        receiver.await.map_err(|_| Error::Unavailable("closed"))?
    }

    /// Reads whole batches starting with the one holding `offset`, up to `max_bytes` (at
    /// least one batch, as Kafka does), never past the high watermark and never across a
    /// segment boundary. Recent batches come from memory; older ones as a [`FileRange`].
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] outside `[log_start, log_end]`; I/O errors.
    pub async fn read(&self, offset: i64, max_bytes: u64) -> Result<ReadResult> {
        let plan =
            {
                let mut guard = self.shared.state.borrow_mut();
                let state = &mut *guard;
                if offset < state.log_start || offset > state.log_end {
                    return Err(Error::OffsetOutOfRange {
                        offset,
                        log_start: state.log_start,
                        log_end: state.log_end,
                    });
                }
                let result = |data| ReadResult {
                    data,
                    high_watermark: state.high_watermark,
                    log_start_offset: state.log_start,
                    log_end_offset: state.log_end,
                };
                if offset >= state.high_watermark {
                    return Ok(result(ReadData::Empty));
                }
                if state
                    .tail
                    .front()
                    .is_some_and(|front| front.base_offset <= offset)
                {
                    let first = state.tail.partition_point(|c| c.next_offset <= offset);
                    let mut chunks = Vec::new();
                    let mut total = 0u64;
                    for cached in state.tail.range(first..) {
                        let len = cached.bytes.len() as u64;
                        let fits = chunks.is_empty() || total + len <= max_bytes;
                        if cached.base_offset >= state.high_watermark
                            || cached.segment_base != state.tail[first].segment_base
                            || !fits
                        {
                            break;
                        }
                        total += len;
                        chunks.push(cached.bytes.clone());
                    }
                    assert!(
                        !chunks.is_empty(),
                        "offset below the high watermark is in the cache"
                    );
                    let answer = result(ReadData::Memory(chunks));
                    state.stats.reads_memory += 1;
                    return Ok(answer);
                }
                let tail_front = state.tail.front().map(|c| (c.segment_base, c.position));
                let (_, segment) = state.segments.range_mut(..=offset).next_back().ok_or(
                    Error::OffsetOutOfRange {
                        offset,
                        log_start: state.log_start,
                        log_end: state.log_end,
                    },
                )?;
                let cap = match tail_front {
                    Some((base, position)) if base == segment.base_offset => position,
                    _ => segment.written_size,
                };
                let path = log_path(&self.shared.dir, segment.base_offset);
                // Opened per read and closed when the range is dropped: caching it would
                // cost a descriptor per partition on top of the writer's.
                let send_file = Arc::new(
                    std::fs::File::open(&path)
                        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?,
                );
                let scan_from = segment
                    .offset_index
                    .lookup(offset)
                    .map_or(0, |e| e.position);
                let reader = segment
                    .reader
                    .clone()
                    .or_else(|| segment.writer.as_ref().map(|w| w.file()));
                let header = (state.high_watermark, state.log_start, state.log_end);
                state.stats.reads_file += 1;
                (
                    path,
                    segment.base_offset,
                    reader,
                    send_file,
                    scan_from,
                    cap,
                    header,
                )
            };
        let (
            path,
            segment_base,
            reader,
            send_file,
            scan_from,
            cap,
            (high_watermark, log_start, log_end),
        ) = plan;
        let reader = match reader {
            Some(reader) => reader,
            None => {
                let reader = Rc::new(io::open_read(&path).await?);
                if let Some(segment) = self
                    .shared
                    .state
                    .borrow_mut()
                    .segments
                    .get_mut(&segment_base)
                {
                    segment.reader.get_or_insert_with(|| reader.clone());
                }
                reader
            }
        };
        let Some((start, first_len)) =
            find_batch(&reader, &path, scan_from, cap, |_, last, _| last >= offset).await?
        else {
            return Ok(ReadResult {
                data: ReadData::Empty,
                high_watermark,
                log_start_offset: log_start,
                log_end_offset: log_end,
            });
        };
        let limit = start.saturating_add(max_bytes);
        let end = if cap <= limit {
            cap
        } else {
            // Index entries are batch starts, so any entry within the budget ends a run of
            // whole batches; with none (or the segment deleted meanwhile), the first batch
            // alone is returned.
            let state = self.shared.state.borrow();
            state
                .segments
                .get(&segment_base)
                .and_then(|segment| segment.offset_index.boundary_at_or_before(start, limit))
                .unwrap_or(start + first_len)
                .max(start + first_len)
        };
        assert!(
            end > start && end <= cap,
            "file range must hold whole written batches"
        );
        let range = FileRange {
            file: send_file,
            position: start,
            len: end - start,
        };
        Ok(ReadResult {
            data: ReadData::File(range),
            high_watermark,
            log_start_offset: log_start,
            log_end_offset: log_end,
        })
    }

    /// The first offset whose record timestamp is at or after `timestamp` (Kafka's
    /// ListOffsets by time), with that record's timestamp; `None` when no record is that new.
    ///
    /// # Errors
    /// I/O errors, or [`Error::Corrupt`] if a batch read back does not decode.
    pub async fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>> {
        let candidates: Vec<(i64, i64, u64, u64)> = {
            let state = self.shared.state.borrow();
            let tail_front = state.tail.front().map(|c| (c.segment_base, c.position));
            state
                .segments
                .values()
                .filter(|s| s.max_timestamp >= timestamp && s.base_offset < state.high_watermark)
                .map(|s| {
                    let after = s
                        .time_index
                        .lookup_before(timestamp)
                        .map_or(s.base_offset, |e| e.last_offset + 1);
                    let scan_from = s.offset_index.lookup(after).map_or(0, |e| e.position);
                    let cap = match tail_front {
                        Some((base, position)) if base == s.base_offset => position,
                        _ => s.written_size,
                    };
                    (s.base_offset, after, scan_from, cap)
                })
                .collect()
        };
        for (segment_base, after, scan_from, cap) in candidates {
            let path = log_path(&self.shared.dir, segment_base);
            if scan_from < cap {
                let reader = io::open_read(&path).await?;
                let found = find_batch(&reader, &path, scan_from, cap, |_, last, max_ts| {
                    last >= after && max_ts >= timestamp
                })
                .await?;
                if let Some((position, total)) = found {
                    let batch = io::read_exact(&reader, &path, position, total as usize).await?;
                    reader
                        .close()
                        .await
                        .map_err(io::error(format!("closing {}", path.display())))?;
                    return first_at_or_after(&batch, timestamp, &path, position).map(Some);
                }
                reader
                    .close()
                    .await
                    .map_err(io::error(format!("closing {}", path.display())))?;
            }
            let cached: Vec<(Bytes, u64)> = {
                let state = self.shared.state.borrow();
                state
                    .tail
                    .iter()
                    .filter(|c| {
                        c.segment_base == segment_base
                            && c.max_timestamp >= timestamp
                            && c.base_offset < state.high_watermark
                    })
                    .map(|c| (c.bytes.clone(), c.position))
                    .collect()
            };
            if let Some((bytes, position)) = cached.first() {
                return first_at_or_after(bytes, timestamp, &path, *position).map(Some);
            }
        }
        Ok(None)
    }

    /// Deletes whole old segments beyond `retention_ms` / `retention_bytes`, advancing the
    /// log-start offset. Returns the base offsets of deleted segments. Readers holding a
    /// [`FileRange`] of a deleted segment can still finish.
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
        match &result {
            Ok(()) => state.status = Status::Open,
            Err(error) => state.fail(error),
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
        let (later, writer) = {
            let mut state = self.shared.state.borrow_mut();
            let later_bases: Vec<i64> = state
                .segments
                .range(segment_base + 1..)
                .map(|(b, _)| *b)
                .collect();
            let later: Vec<Segment> = later_bases
                .iter()
                .filter_map(|b| state.segments.remove(b))
                .collect();
            let segment = state
                .segments
                .get_mut(&segment_base)
                .expect("segment exists");
            (later, segment.writer.take())
        };
        for segment in later {
            let base = segment.base_offset;
            drop(segment);
            io::remove_file(&log_path(&self.shared.dir, base)).await?;
            io::remove_file(&index_path(&self.shared.dir, base)).await?;
            io::remove_file(&time_index_path(&self.shared.dir, base)).await?;
        }
        let writer = match writer {
            Some(mut writer) => {
                writer.truncate(position).await?;
                writer
            }
            None => SegmentWriter::open_at(path, position).await?,
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
        tracing::info!(dir = %self.shared.dir.display(), offset, new_end, "log truncated");
        Ok(())
    }

    /// Flushes, syncs and closes every file. Further calls on any handle fail.
    ///
    /// # Errors
    /// The I/O error of the final flush, if any.
    pub async fn close(&self) -> Result<()> {
        self.flush().await?;
        let (writer, base, offset_index, time_index) = {
            let mut state = self.shared.state.borrow_mut();
            state.status = Status::Closed;
            let active = state.active_mut();
            (
                active.writer.take(),
                active.base_offset,
                active.offset_index.to_bytes(),
                active.time_index.to_bytes(),
            )
        };
        if let Some(writer) = writer {
            io::write_small_file(&index_path(&self.shared.dir, base), &offset_index).await?;
            io::write_small_file(&time_index_path(&self.shared.dir, base), &time_index).await?;
            writer.finish().await?;
        }
        let mut state = self.shared.state.borrow_mut();
        for segment in state.segments.values_mut() {
            segment.reader = None;
        }
        state.data_waiters.clear();
        Ok(())
    }
}

/// Scans batch headers from `from` (a batch start) up to `cap` and returns the position and
/// length of the first batch for which `wanted(base, last, max_timestamp)` holds.
async fn find_batch(
    file: &File,
    path: &Path,
    from: u64,
    cap: u64,
    wanted: impl Fn(i64, i64, i64) -> bool,
) -> Result<Option<(u64, u64)>> {
    const HEADER_PART: usize = 43;
    let mut position = from;
    while position < cap {
        let header = io::read_exact(file, path, position, HEADER_PART).await?;
        let corrupt = |reason: String| Error::Corrupt {
            path: path.to_owned(),
            position,
            reason,
        };
        let total = match peek_batch_len(&header) {
            Ok(Some(total)) => total as u64,
            Ok(None) => unreachable!("header has 43 bytes"),
            Err(e) => return Err(corrupt(e.to_string())),
        };
        let base = i64::from_be_bytes(header[0..8].try_into().expect("8 bytes"));
        let delta = i32::from_be_bytes(header[23..27].try_into().expect("4 bytes"));
        let max_timestamp = i64::from_be_bytes(header[35..43].try_into().expect("8 bytes"));
        if wanted(base, base + i64::from(delta), max_timestamp) {
            return Ok(Some((position, total)));
        }
        position += total;
    }
    Ok(None)
}

fn first_at_or_after(
    batch: &[u8],
    timestamp: i64,
    path: &Path,
    position: u64,
) -> Result<(i64, i64)> {
    let corrupt = |reason: String| Error::Corrupt {
        path: path.to_owned(),
        position,
        reason,
    };
    let view = BatchView::new_verified(batch).map_err(|e| corrupt(e.to_string()))?;
    let records = view.records().map_err(|e| corrupt(e.to_string()))?;
    records
        .iter()
        .find(|r| r.timestamp >= timestamp)
        .map(|r| (r.offset, r.timestamp))
        .ok_or_else(|| {
            corrupt(format!(
                "max timestamp {} but no record reaches {timestamp}",
                view.max_timestamp()
            ))
        })
}

mod flush;
mod reopen;

use flush::{claim_flusher, interval_syncer, spawn_flusher};
use reopen::recover;
