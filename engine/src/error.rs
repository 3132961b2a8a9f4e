//! Errors of the storage engine.

use std::path::PathBuf;
use std::sync::Arc;

/// Result of the engine.
pub type Result<T> = std::result::Result<T, Error>;

/// What can go wrong with a partition log.
///
/// `Clone` because one failed group-commit fsync is reported to every append that was
/// waiting for it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O error, with what the engine was doing.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What the engine was doing (names the file).
        context: String,
        /// The underlying error.
        source: Arc<std::io::Error>,
    },
    /// A segment holds bytes that are not a valid batch where one must be.
    #[error("corrupt segment {path} at byte {position}: {reason}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte position of the bad batch in the file.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// A batch handed to `append` is not a valid RecordBatch v2.
    #[error("invalid batch: {0}")]
    InvalidBatch(#[from] keel_protocol::Error),
    /// A batch handed to `append` has trailing bytes or other framing problems.
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    /// The offset asked for is outside `[log_start, log_end]`.
    #[error("offset {offset} out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        /// Requested offset.
        offset: i64,
        /// First offset in the log.
        log_start: i64,
        /// Offset the next append gets.
        log_end: i64,
    },
    /// A configuration value is invalid.
    #[error("invalid log configuration: {0}")]
    Config(String),
    /// An earlier write or fsync failed; the log refuses further writes until reopened.
    #[error("log is offline after an earlier I/O failure: {0}")]
    Offline(String),
    /// The log is closed or being truncated.
    #[error("log is {0}")]
    Unavailable(&'static str),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source: Arc::new(source),
        }
    }
}
