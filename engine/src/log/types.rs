//! The log's public value types: clocks, append and read results, file ranges, stats.

use super::*;

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

/// The bytes a read returns: whole batches, from memory or from a file.
#[derive(Debug, Clone)]
pub enum ReadData {
    /// Nothing at or after the offset is readable yet.
    Empty,
    /// Recent batches served from the tail cache, in order.
    Memory(Vec<Bytes>),
    /// Older batches, read from their segment file (`log/cold.rs`).
    Disk(Vec<Bytes>),
}

impl ReadData {
    /// Number of bytes.
    pub fn len(&self) -> u64 {
        match self {
            ReadData::Empty => 0,
            ReadData::Memory(chunks) | ReadData::Disk(chunks) => {
                chunks.iter().map(|c| c.len() as u64).sum()
            }
        }
    }
    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The bytes in one buffer (tools and tests).
    ///
    /// # Errors
    /// I/O errors reading a file range.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        match self {
            ReadData::Empty => Ok(Vec::new()),
            ReadData::Memory(chunks) | ReadData::Disk(chunks) => Ok(chunks.concat()),
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
    /// Reads served from segment files.
    pub reads_file: u64,
    /// Readers parked in [`Log::wait_for_data`] (including abandoned ones not yet pruned:
    /// at most twice the live ones, and at least 64).
    pub data_waiters: u64,
}
