//! The recovery scanner: walks a segment's bytes batch by batch, checking lengths, magic,
//! CRCs and offset continuity, and rebuilds the indexes on the way. Sans-IO: the caller
//! feeds it bytes read from the file and acts on where it stops.

use crate::index::{IndexPacer, OffsetIndex, TimeIndex};
use keel_protocol::batch::{peek_batch_len, BatchView, LOG_OVERHEAD};

/// What the scanner wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Feed bytes starting at `position`, at least `len_min` of them (or all that remain).
    NeedMore {
        /// Where the next bytes must start.
        position: u64,
        /// The fewest bytes that let the scanner make progress.
        len_min: usize,
    },
    /// The scan ended at [`Scanner::position`].
    Stop(Stop),
}

/// Why a scan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The file ends exactly after a valid batch.
    Clean,
    /// A zero length field: the zero-padded tail left by a direct-I/O write. The log ends here.
    Zeros,
    /// The bytes at the position are not a valid next batch.
    Invalid {
        /// What is wrong.
        reason: String,
        /// Where the following batch would start if this one's length field is believable
        /// and the file is long enough; a valid batch there means corruption in the middle
        /// rather than a torn tail.
        next_batch_at: Option<u64>,
    },
}

/// Walks batches from a starting position.
#[derive(Debug, Clone)]
pub struct Scanner {
    base_offset: i64,
    position: u64,
    next_offset: Option<i64>,
    max_timestamp: i64,
    verify_crc: bool,
    batches_count: u64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    pacer: IndexPacer,
}

impl Scanner {
    /// A scanner for a whole segment from byte 0, rebuilding its indexes.
    pub fn from_start(base_offset: i64, index_interval_bytes: u64, verify_crc: bool) -> Scanner {
        Scanner {
            base_offset,
            position: 0,
            next_offset: Some(base_offset),
            max_timestamp: -1,
            verify_crc,
            batches_count: 0,
            offset_index: OffsetIndex::new(base_offset),
            time_index: TimeIndex::new(base_offset),
            pacer: IndexPacer::new(index_interval_bytes),
        }
    }

    /// A scanner that resumes at a batch boundary known from a trusted index, keeping that
    /// index and adding entries for what it finds.
    pub fn resume(
        offset_index: OffsetIndex,
        time_index: TimeIndex,
        position: u64,
        index_interval_bytes: u64,
        max_timestamp: i64,
    ) -> Scanner {
        Scanner {
            base_offset: offset_index.base_offset(),
            position,
            next_offset: None,
            max_timestamp,
            verify_crc: true,
            batches_count: 0,
            pacer: IndexPacer::new(index_interval_bytes),
            offset_index,
            time_index,
        }
    }

    /// Byte position after the last valid batch.
    pub fn position(&self) -> u64 {
        self.position
    }
    /// Offset after the last valid batch (`None` when resumed and nothing was found yet).
    pub fn next_offset(&self) -> Option<i64> {
        self.next_offset
    }
    /// Largest timestamp seen (or carried over when resumed).
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }
    /// Valid batches walked.
    pub fn batches_count(&self) -> u64 {
        self.batches_count
    }
    /// The indexes as rebuilt.
    pub fn into_indexes(self) -> (OffsetIndex, TimeIndex) {
        (self.offset_index, self.time_index)
    }

    /// Consumes `data`, which starts at [`Scanner::position`]; `eof` says the file ends
    /// where `data` does.
    pub fn feed(&mut self, data: &[u8], eof: bool) -> Step {
        let mut rest = data;
        loop {
            if rest.is_empty() && eof {
                return Step::Stop(Stop::Clean);
            }
            if rest.len() < LOG_OVERHEAD {
                if eof {
                    return self.invalid(
                        format!("{} stray bytes at the end of the file", rest.len()),
                        None,
                    );
                }
                return Step::NeedMore {
                    position: self.position,
                    len_min: LOG_OVERHEAD,
                };
            }
            if rest[8..12] == [0, 0, 0, 0] {
                return Step::Stop(Stop::Zeros);
            }
            let total = match peek_batch_len(rest) {
                Ok(Some(total)) => total,
                Ok(None) => unreachable!("at least LOG_OVERHEAD bytes are present"),
                Err(e) => return self.invalid(e.to_string(), None),
            };
            if rest.len() < total {
                if eof {
                    let reason = format!("batch needs {total} bytes, file has {}", rest.len());
                    return self.invalid(reason, None);
                }
                return Step::NeedMore {
                    position: self.position,
                    len_min: total,
                };
            }
            let next_batch_at = Some(self.position + total as u64);
            let view = match BatchView::new(&rest[..total]) {
                Ok(view) => view,
                Err(e) => return self.invalid(e.to_string(), next_batch_at),
            };
            if self.verify_crc {
                if let Err(e) = view.verify_crc() {
                    return self.invalid(e.to_string(), next_batch_at);
                }
            }
            let expected = self.next_offset.unwrap_or(self.base_offset);
            // Offsets only grow; they may jump where the cleaner removed whole batches.
            let continuous = view.base_offset() >= expected;
            if !continuous {
                let reason = format!(
                    "batch base offset {} where {expected} was expected",
                    view.base_offset()
                );
                return self.invalid(reason, next_batch_at);
            }
            let relative = view.last_offset().checked_sub(self.base_offset);
            if relative.is_none_or(|r| r > u32::MAX as i64) || view.last_offset() == i64::MAX {
                return self.invalid("batch offsets overflow the segment".into(), next_batch_at);
            }
            if self.pacer.on_batch(total as u64)
                && self
                    .offset_index
                    .last()
                    .is_none_or(|e| e.position < self.position)
            {
                self.offset_index.append(view.last_offset(), self.position);
            }
            if view.max_timestamp() > self.max_timestamp {
                self.max_timestamp = view.max_timestamp();
                self.time_index
                    .maybe_append(view.max_timestamp(), view.last_offset());
            }
            self.position += total as u64;
            self.next_offset = Some(view.next_offset());
            self.batches_count += 1;
            rest = &rest[total..];
        }
    }

    fn invalid(&self, reason: String, next_batch_at: Option<u64>) -> Step {
        Step::Stop(Stop::Invalid {
            reason,
            next_batch_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_protocol::batch::{set_base_offset, BatchBuilder, NewRecord};

    fn segment(batches: usize, records_per_batch: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut offset = 0i64;
        for index in 0..batches {
            let mut builder = BatchBuilder::new();
            for record in 0..records_per_batch {
                builder.push(NewRecord::value(
                    1000 + index as i64,
                    format!("batch {index} record {record}"),
                ));
            }
            let mut bytes = builder.build().unwrap();
            set_base_offset(&mut bytes, offset);
            offset += records_per_batch as i64;
            out.extend_from_slice(&bytes);
        }
        out
    }

    fn scan_all(data: &[u8]) -> (Scanner, Stop) {
        let mut scanner = Scanner::from_start(0, 100, true);
        match scanner.feed(data, true) {
            Step::Stop(stop) => (scanner, stop),
            step => panic!("whole file fed, got {step:?}"),
        }
    }

    #[test]
    fn clean_segment_scans_to_the_end_and_rebuilds_indexes() {
        // Goal: every batch is walked, offsets continue, indexes point at batch starts.
        let data = segment(10, 3);
        let (scanner, stop) = scan_all(&data);
        assert_eq!(stop, Stop::Clean);
        assert_eq!(scanner.position(), data.len() as u64);
        assert_eq!(scanner.next_offset(), Some(30));
        assert_eq!(scanner.batches_count(), 10);
        assert_eq!(scanner.max_timestamp(), 1009);
        let (offset_index, time_index) = scanner.into_indexes();
        assert!(!offset_index.is_empty());
        assert_eq!(time_index.len(), 10);
        let position = offset_index.lookup(29).unwrap().position as usize;
        assert!(BatchView::new_verified(&data[position..]).is_ok());
    }

    #[test]
    fn zero_padding_ends_the_log() {
        // Goal: the zero tail of a direct-I/O page is the end of the log, not corruption.
        let mut data = segment(3, 2);
        let valid = data.len();
        data.resize(valid + 4096, 0);
        let (scanner, stop) = scan_all(&data);
        assert_eq!(stop, Stop::Zeros);
        assert_eq!(scanner.position(), valid as u64);
    }

    #[test]
    fn torn_tail_stops_at_the_last_whole_batch() {
        // Goal: a half-written last batch is reported as invalid with no batch after it.
        let data = segment(4, 2);
        let cut = data.len() - 10;
        let (scanner, stop) = scan_all(&data[..cut]);
        let Stop::Invalid { next_batch_at, .. } = stop else {
            panic!("expected invalid, got {stop:?}")
        };
        assert_eq!(next_batch_at, None);
        assert_eq!(scanner.next_offset(), Some(6));
    }

    #[test]
    fn flipped_byte_in_the_middle_points_at_the_next_batch() {
        // Goal: corruption followed by more batches is told apart from a torn tail.
        let mut data = segment(4, 2);
        let one = BatchView::new(&data).unwrap().len();
        data[one + 70] ^= 0xff;
        let (scanner, stop) = scan_all(&data);
        assert_eq!(scanner.position(), one as u64);
        let Stop::Invalid {
            next_batch_at,
            reason,
        } = stop
        else {
            panic!("expected invalid")
        };
        assert!(reason.contains("CRC"), "{reason}");
        assert_eq!(next_batch_at, Some(2 * one as u64));
    }

    #[test]
    fn fed_in_small_pieces_gives_the_same_result() {
        // Goal: the scanner asks for exactly what it needs and resumes at the right place.
        let data = segment(7, 5);
        let mut scanner = Scanner::from_start(0, 100, true);
        let mut position = 0usize;
        let stop = loop {
            let end = (position + 37).min(data.len());
            match scanner.feed(&data[position..end], end == data.len()) {
                Step::NeedMore {
                    position: p,
                    len_min,
                } => {
                    position = p as usize;
                    if position + len_min > end {
                        // Re-feed a longer piece, as a reader would.
                        let longer = (position + len_min).min(data.len());
                        match scanner.feed(&data[position..longer], longer == data.len()) {
                            Step::NeedMore { position: p, .. } => position = p as usize,
                            Step::Stop(stop) => break stop,
                        }
                    }
                }
                Step::Stop(stop) => break stop,
            }
        };
        assert_eq!(stop, Stop::Clean);
        assert_eq!(scanner.next_offset(), Some(35));
    }

    #[test]
    fn offsets_going_back_are_invalid_and_a_gap_is_not() {
        // Goal: offsets in a segment only grow; a cleaned segment has gaps where whole
        // batches were removed, a batch going back is corruption.
        let mut data = segment(2, 2);
        let one = BatchView::new(&data).unwrap().len();
        set_base_offset(&mut data[one..], 5);
        let (scanner, stop) = scan_all(&data);
        assert_eq!(stop, Stop::Clean, "a gap is fine");
        assert_eq!(scanner.next_offset(), Some(7));
        set_base_offset(&mut data[one..], 1);
        let (_, stop) = scan_all(&data);
        assert!(
            matches!(stop, Stop::Invalid { ref reason, .. } if reason.contains("expected")),
            "{stop:?}"
        );
    }
}
