//! One segment's bookkeeping: file names, offsets, sizes and its in-memory indexes.

use crate::index::{IndexPacer, OffsetIndex, TimeIndex};
use crate::io::{File, SegmentWriter};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Digits in a segment file name, as in Kafka.
pub const NAME_DIGITS: usize = 20;

/// `00000000000000000042.log` for base offset 42.
pub fn log_file_name(base_offset: i64) -> String {
    format!("{base_offset:020}.log")
}

/// Path of a segment's data file.
pub fn log_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(log_file_name(base_offset))
}

/// Path of a segment's offset index.
pub fn index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.index"))
}

/// Path of a segment's time index.
pub fn time_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.timeindex"))
}

/// The base offset named by a segment data file, if `name` is one.
pub fn parse_log_file_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Offsets in a segment are base + a 32-bit delta: a base past this cannot be ours.
    digits.parse().ok().filter(|base| *base <= BASE_OFFSET_MAX)
}

/// Largest base offset a segment may have: every offset in it still fits an i64.
pub const BASE_OFFSET_MAX: i64 = i64::MAX - u32::MAX as i64 - 1;

/// Public description of a segment, for tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// First offset of the segment.
    pub base_offset: i64,
    /// Offset after its last batch.
    pub next_offset: i64,
    /// Size in bytes (including bytes not yet written to the file).
    pub size: u64,
    /// Largest record timestamp (-1 when empty).
    pub max_timestamp: i64,
    /// The data file.
    pub path: PathBuf,
    /// Whether appends go to this segment.
    pub active: bool,
}

pub(crate) struct Segment {
    pub(crate) base_offset: i64,
    pub(crate) next_offset: i64,
    /// Logical size: every appended batch, written or not.
    pub(crate) size: u64,
    /// Bytes known to be in the file.
    pub(crate) written_size: u64,
    pub(crate) max_timestamp: i64,
    /// Clock time of the first append (roll by age).
    pub(crate) created_ms: Option<i64>,
    pub(crate) offset_index: OffsetIndex,
    pub(crate) time_index: TimeIndex,
    pub(crate) pacer: IndexPacer,
    /// Open for appends; taken out by the flusher while it writes.
    pub(crate) writer: Option<SegmentWriter>,
    /// No more appends will go here.
    pub(crate) sealed: bool,
    /// Sealed, written, synced, trimmed and indexed on disk.
    pub(crate) finalized: bool,
    /// The file exists on disk.
    pub(crate) file_exists: bool,
    pub(crate) reader: Option<Rc<File>>,
    /// Bumped when the cleaner swaps in a rewritten data file: a reader that planned
    /// against the old one reads again.
    pub(crate) generation: u64,
}

impl Segment {
    pub(crate) fn new(base_offset: i64, index_interval_bytes: u64) -> Segment {
        Segment {
            base_offset,
            next_offset: base_offset,
            size: 0,
            written_size: 0,
            max_timestamp: -1,
            created_ms: None,
            offset_index: OffsetIndex::new(base_offset),
            time_index: TimeIndex::new(base_offset),
            pacer: IndexPacer::new(index_interval_bytes),
            writer: None,
            sealed: false,
            finalized: false,
            file_exists: false,
            reader: None,
            generation: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.size == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_kafka() {
        // Goal: file names sort by offset and parse back; other files are ignored.
        assert_eq!(log_file_name(42), "00000000000000000042.log");
        assert_eq!(parse_log_file_name("00000000000000000042.log"), Some(42));
        assert_eq!(parse_log_file_name("00000000000000000042.index"), None);
        assert_eq!(parse_log_file_name("42.log"), None);
        assert_eq!(parse_log_file_name("0000000000000000004x.log"), None);
    }
}
