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
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Open,
    Truncating,
    Closed,
}

enum WaitFor {
    Durable(i64),
    Written(i64),
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
    /// Replication: the high watermark the partition's replicas agree on (the leader's
    /// from its ISR, a follower's from its leader); readers never pass it. `None` without
    /// replication.
    replication_cap: Option<i64>,
    /// Replica fetches waiting for the log end to pass an offset.
    end_waiters: Vec<(i64, oneshot::Sender<()>)>,
    /// Where each leader epoch starts on this log (`leader-epoch-checkpoint`).
    epochs: epochs::Epochs,
    /// Cold reads' read-ahead and where the last one ended.
    ahead: cold::ReadAhead,
}

/// Parked readers kept before cancelled ones are pruned.
const DATA_WAITERS_PRUNE_MIN: usize = 64;

struct Shared {
    dir: PathBuf,
    config: LogConfig,
    clock: Rc<dyn Clock>,
    state: RefCell<State>,
    /// This log's share of a tail-cache budget it shares with other logs (bytes, changing
    /// as logs come and go), when it was given one: [`Log::share_tail_cache`].
    tail_share: std::cell::OnceCell<TailShare>,
}

/// A log's share of a tail-cache budget several logs of one executor share: the most its
/// tail cache may hold of durable batches, set by whoever owns the budget.
pub type TailShare = Rc<std::cell::Cell<u64>>;

impl Shared {
    /// What the tail cache may hold of durable batches now.
    fn tail_cap(&self) -> u64 {
        let share = self.tail_share.get().map_or(u64::MAX, |share| share.get());
        self.config.tail_cache_bytes.min(share)
    }
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
///     let info = log.append(bytes::BytesMut::from(builder.build()?.as_slice())).await?;
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
        let written = self.written_end;
        self.waiters.retain_mut(|waiter| {
            let ready = match waiter.wait_for {
                WaitFor::Durable(next) => next <= durable,
                WaitFor::Written(next) => next <= written,
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
        let local = self.local_end(fsync);
        self.high_watermark = self.replication_cap.map_or(local, |cap| cap.min(local));
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

    /// What this log alone may make visible: its durable end under `fsync=always`, else
    /// its end. A replica reports this as its log end to the leader.
    fn local_end(&self, fsync: FsyncPolicy) -> i64 {
        match fsync {
            FsyncPolicy::Always => self.durable_end,
            FsyncPolicy::Interval(_) | FsyncPolicy::Never => self.log_end,
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
            let name = entry.file_name();
            let name = name.to_str().unwrap_or_default();
            if let Some(base) = parse_log_file_name(name) {
                bases.push(base);
            } else if name.ends_with(".cleaned") {
                // A cleaned copy a crash left before it was swapped in: the segment it was
                // made from is still there.
                io::remove_file(&entry.path()).await?;
            }
        }
        bases.sort_unstable();
        let segments = recover(&dir, &config, &bases, clock.now_ms()).await?;
        let log_start = segments.values().next().map_or(0, |s| s.base_offset);
        let log_end = segments.values().next_back().map_or(0, |s| s.next_offset);
        let mut segments = segments;
        let epochs = epochs::Epochs::load(&dir, &segments, log_start, log_end).await?;
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
            replication_cap: None,
            end_waiters: Vec::new(),
            epochs,
            ahead: cold::ReadAhead::default(),
        };
        let shared = Rc::new(Shared {
            dir,
            config,
            clock,
            state: RefCell::new(state),
            tail_share: std::cell::OnceCell::new(),
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
    /// Bounds this log's tail cache by `share` too (a budget shared with other logs: the
    /// owner of the budget sets each log's share), from its next eviction on. Set once;
    /// a second share is ignored.
    pub fn share_tail_cache(&self, share: TailShare) {
        let _ = self.shared.tail_share.set(share);
    }

    /// Evicts durable batches from the tail cache down to its current cap (after a
    /// shared budget's share shrank); returns the bytes the cache holds then.
    pub fn trim_tail_cache(&self) -> u64 {
        let cap = self.shared.tail_cap();
        let mut state = self.shared.state.borrow_mut();
        state.evict(cap);
        state.tail_bytes
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
        state.end_waiters.clear();
        Ok(())
    }
}

mod append;
mod clean;
mod cold;
mod epochs;
mod flush;
mod read;
mod reopen;
mod replica;
mod resume;
mod tail;
mod trim;
mod types;

pub use append::Batch;
pub use clean::{CleanConfig, CleanStats};
pub use types::{AppendInfo, Clock, LogStats, ManualClock, ReadData, ReadResult, SystemClock};

use flush::{claim_flusher, interval_syncer, spawn_flusher};
use reopen::recover;
