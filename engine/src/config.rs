//! Per-log configuration, validated once at open.

use crate::error::{Error, Result};
use std::str::FromStr;
use std::time::Duration;

/// When appended bytes are made durable with fdatasync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// An append completes only after its bytes are synced; concurrent appends share one
    /// fsync (group commit).
    Always,
    /// Bytes are synced at least every interval; appends complete once buffered.
    Interval(Duration),
    /// The engine never syncs except when rolling or closing a segment.
    Never,
}

impl FromStr for FsyncPolicy {
    type Err = Error;

    /// Parses `always`, `never` or `interval:<ms>`.
    fn from_str(text: &str) -> Result<FsyncPolicy> {
        match text {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            other => {
                let ms = other
                    .strip_prefix("interval:")
                    .and_then(|ms| ms.parse::<u64>().ok())
                    .filter(|ms| *ms > 0)
                    .ok_or_else(|| {
                        Error::Config(format!(
                            "fsync must be always, never or interval:<ms>, got {other:?}"
                        ))
                    })?;
                Ok(FsyncPolicy::Interval(Duration::from_millis(ms)))
            }
        }
    }
}

impl std::fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FsyncPolicy::Always => write!(f, "always"),
            FsyncPolicy::Never => write!(f, "never"),
            FsyncPolicy::Interval(every) => write!(f, "interval:{}", every.as_millis()),
        }
    }
}

/// What recovery does when an older segment (or the middle of the last one) is corrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnCorruption {
    /// Stop the open with [`Error::Corrupt`] naming the file and position.
    #[default]
    Fail,
    /// Truncate the log before the first bad batch and go on (data after it is lost).
    Truncate,
}

/// How much recovery checks on open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// CRC-check every batch of the last segment; older segments, which were synced and
    /// sealed before the next one got data, are checked from their last index entry on.
    #[default]
    LastSegment,
    /// CRC-check every batch of every segment.
    All,
}

/// Configuration of one partition log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll to a new segment when the active one would exceed this size.
    pub segment_bytes: u64,
    /// Roll to a new segment when the active one's first append is older than this.
    pub segment_ms: Option<u64>,
    /// Bytes between two offset/time index entries.
    pub index_interval_bytes: u64,
    /// Durability policy.
    pub fsync: FsyncPolicy,
    /// Delete whole segments whose newest record is older than this.
    pub retention_ms: Option<u64>,
    /// Delete whole old segments while the log is larger than this.
    pub retention_bytes: Option<u64>,
    /// Recent batches kept in memory so tail reads never touch the disk.
    pub tail_cache_bytes: u64,
    /// Largest single write to the segment file.
    pub write_chunk_bytes: u64,
    /// The active segment file is extended ahead of its writes with fallocate(2) in steps
    /// that double from 64 KiB up to this size (0: never), so a direct-I/O write does not
    /// extend the file: the kernel then completes it without a worker thread and a sync
    /// has no file size to record. The space past the data is trimmed when the segment is
    /// sealed, and recovery reads it as the zero padding it is.
    pub preallocate_bytes_max: u64,
    /// With `never`/`interval`, appends wait for a write once this much is unwritten.
    pub unwritten_bytes_max: u64,
    /// Recovery thoroughness.
    pub verify: Verify,
    /// Recovery's answer to corruption.
    pub on_corruption: OnCorruption,
}

/// Alignment of every direct-I/O write and of the segment size limit.
pub const IO_ALIGN: u64 = 4096;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: Some(7 * 24 * 3600 * 1000),
            index_interval_bytes: 4096,
            fsync: FsyncPolicy::Always,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            tail_cache_bytes: 1 << 20,
            write_chunk_bytes: 4 << 20,
            unwritten_bytes_max: 8 << 20,
            preallocate_bytes_max: 16 << 20,
            verify: Verify::LastSegment,
            on_corruption: OnCorruption::Fail,
        }
    }
}

impl LogConfig {
    /// Checks the values relate sensibly.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first bad value.
    pub fn validate(&self) -> Result<()> {
        let check = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(Error::Config(what.to_owned()))
            }
        };
        check(
            self.segment_bytes >= 1024,
            "segment_bytes must be at least 1024",
        )?;
        check(
            self.segment_bytes <= u32::MAX as u64,
            "segment_bytes must fit the 32-bit index positions",
        )?;
        check(
            self.index_interval_bytes > 0,
            "index_interval_bytes must be positive",
        )?;
        check(
            self.write_chunk_bytes >= IO_ALIGN,
            "write_chunk_bytes must be at least 4096",
        )?;
        check(
            self.write_chunk_bytes.is_multiple_of(IO_ALIGN),
            "write_chunk_bytes must be a multiple of 4096",
        )?;
        check(
            self.unwritten_bytes_max > 0,
            "unwritten_bytes_max must be positive",
        )?;
        check(self.segment_ms != Some(0), "segment_ms must be positive")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policy_parses_the_brief_spellings() {
        // Goal: the three spellings of the command-line contract parse and print back.
        for text in ["always", "never", "interval:250"] {
            assert_eq!(text.parse::<FsyncPolicy>().unwrap().to_string(), text);
        }
        for bad in ["", "sometimes", "interval:", "interval:0", "interval:-3"] {
            assert!(
                bad.parse::<FsyncPolicy>().is_err(),
                "{bad:?} must be rejected"
            );
        }
    }

    #[test]
    fn default_config_is_valid() {
        // Goal: defaults pass their own validation, and nonsense does not.
        LogConfig::default().validate().unwrap();
        let bad = LogConfig {
            segment_bytes: 10,
            ..LogConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
