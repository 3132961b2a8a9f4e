//! Sparse offset and time indexes, in Kafka's file formats, kept in memory.
//!
//! Offset index entry (8 bytes, big-endian): last offset of a batch relative to the
//! segment's base offset (u32), and the batch's byte position in the segment (u32).
//! Time index entry (12 bytes): the segment's largest timestamp so far (i64) and the
//! relative last offset of the batch that set it (u32).
//!
//! Entries are added at most every `index_interval_bytes`, so a lookup lands at most one
//! interval before the batch wanted and a short header scan finishes the job.

/// Size of one offset index entry on disk.
pub const OFFSET_ENTRY_LEN: usize = 8;
/// Size of one time index entry on disk.
pub const TIME_ENTRY_LEN: usize = 12;

/// One offset index entry, with the offset made absolute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Last offset of the batch at `position`.
    pub last_offset: i64,
    /// Byte position of the batch in the segment.
    pub position: u64,
}

/// The sparse offset index of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetIndex {
    base_offset: i64,
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    /// An empty index for the segment starting at `base_offset`.
    pub fn new(base_offset: i64) -> OffsetIndex {
        OffsetIndex {
            base_offset,
            entries: Vec::new(),
        }
    }

    /// Base offset of the segment.
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds an entry for the batch ending at `last_offset` and starting at `position`.
    ///
    /// # Panics
    /// If the entry does not come strictly after the previous one, or does not fit the
    /// 32-bit relative format.
    pub fn append(&mut self, last_offset: i64, position: u64) {
        let relative = last_offset.saturating_sub(self.base_offset);
        assert!(
            (0..=u32::MAX as i64).contains(&relative),
            "index offset {last_offset} outside segment {}",
            self.base_offset
        );
        assert!(
            position <= u32::MAX as u64,
            "index position {position} exceeds 32 bits"
        );
        if let Some(&(last_relative, last_position)) = self.entries.last() {
            assert!(
                relative as u32 > last_relative,
                "index offsets must increase"
            );
            assert!(
                position as u32 > last_position,
                "index positions must increase"
            );
        }
        self.entries.push((relative as u32, position as u32));
    }

    fn entry(&self, index: usize) -> OffsetEntry {
        let (relative, position) = self.entries[index];
        OffsetEntry {
            last_offset: self.base_offset.saturating_add(i64::from(relative)),
            position: u64::from(position),
        }
    }

    /// The last entry whose batch ends at or before `offset`; a scan for the batch holding
    /// `offset` starts at its position (or at 0 when `None`).
    pub fn lookup(&self, offset: i64) -> Option<OffsetEntry> {
        let relative = offset.checked_sub(self.base_offset)?;
        if relative < 0 {
            return None;
        }
        let relative = relative.min(u32::MAX as i64) as u32;
        let count = self.entries.partition_point(|&(r, _)| r <= relative);
        (count > 0).then(|| self.entry(count - 1))
    }

    /// The last entry.
    pub fn last(&self) -> Option<OffsetEntry> {
        (!self.entries.is_empty()).then(|| self.entry(self.entries.len() - 1))
    }

    /// Every entry, in order.
    pub fn entries(&self) -> Vec<OffsetEntry> {
        (0..self.entries.len())
            .map(|index| self.entry(index))
            .collect()
    }

    /// The largest batch-start position in `(after, limit]`, if any.
    pub fn boundary_at_or_before(&self, after: u64, limit: u64) -> Option<u64> {
        let count = self
            .entries
            .partition_point(|&(_, p)| u64::from(p) <= limit);
        let position = u64::from(self.entries[..count].last()?.1);
        (position > after).then_some(position)
    }

    /// The smallest batch-start position strictly after `after`, if any.
    pub fn boundary_after(&self, after: u64) -> Option<u64> {
        let count = self
            .entries
            .partition_point(|&(_, p)| u64::from(p) <= after);
        self.entries.get(count).map(|&(_, p)| u64::from(p))
    }

    /// Drops entries for batches at or after `position`.
    pub fn truncate_to_position(&mut self, position: u64) {
        let keep = self
            .entries
            .partition_point(|&(_, p)| u64::from(p) < position);
        self.entries.truncate(keep);
    }

    /// The Kafka `.index` file bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_LEN);
        for &(relative, position) in &self.entries {
            out.extend_from_slice(&relative.to_be_bytes());
            out.extend_from_slice(&position.to_be_bytes());
        }
        out
    }

    /// Parses an `.index` file and checks it is plausible for a segment of `segment_len`
    /// bytes: whole entries, strictly increasing, positions inside the segment.
    ///
    /// # Errors
    /// A sentence saying what is wrong; the caller rebuilds the index from the segment.
    pub fn from_bytes(
        base_offset: i64,
        bytes: &[u8],
        segment_len: u64,
    ) -> Result<OffsetIndex, String> {
        if !bytes.len().is_multiple_of(OFFSET_ENTRY_LEN) {
            return Err(format!(
                "length {} is not a multiple of {OFFSET_ENTRY_LEN}",
                bytes.len()
            ));
        }
        let mut index = OffsetIndex::new(base_offset);
        for chunk in bytes.chunks_exact(OFFSET_ENTRY_LEN) {
            let relative = u32::from_be_bytes(chunk[0..4].try_into().expect("4 bytes"));
            let position = u32::from_be_bytes(chunk[4..8].try_into().expect("4 bytes"));
            if u64::from(position) >= segment_len {
                return Err(format!(
                    "position {position} beyond segment length {segment_len}"
                ));
            }
            if let Some(&(last_relative, last_position)) = index.entries.last() {
                if relative <= last_relative || position <= last_position {
                    return Err(format!("entry ({relative}, {position}) does not increase"));
                }
            }
            index.entries.push((relative, position));
        }
        Ok(index)
    }
}

/// One time index entry, with the offset made absolute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    /// Largest timestamp in the segment up to and including the batch.
    pub timestamp: i64,
    /// Last offset of the batch.
    pub last_offset: i64,
}

/// The sparse time index of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeIndex {
    base_offset: i64,
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// An empty index for the segment starting at `base_offset`.
    pub fn new(base_offset: i64) -> TimeIndex {
        TimeIndex {
            base_offset,
            entries: Vec::new(),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds an entry; ignored unless `timestamp` is larger than the last entry's.
    pub fn maybe_append(&mut self, timestamp: i64, last_offset: i64) {
        let relative = last_offset.saturating_sub(self.base_offset);
        assert!(
            (0..=u32::MAX as i64).contains(&relative),
            "time index offset outside segment"
        );
        match self.entries.last() {
            Some(&(last_timestamp, last_relative))
                if timestamp <= last_timestamp || relative as u32 <= last_relative => {}
            _ => self.entries.push((timestamp, relative as u32)),
        }
    }

    /// The last entry whose timestamp is below `timestamp`: every batch up to its offset has
    /// only smaller timestamps, so a search for `timestamp` can start after it.
    pub fn lookup_before(&self, timestamp: i64) -> Option<TimeEntry> {
        let count = self.entries.partition_point(|&(t, _)| t < timestamp);
        (count > 0).then(|| {
            let (timestamp, relative) = self.entries[count - 1];
            TimeEntry {
                timestamp,
                last_offset: self.base_offset.saturating_add(i64::from(relative)),
            }
        })
    }

    /// The last entry.
    pub fn last(&self) -> Option<TimeEntry> {
        self.entries.last().map(|&(timestamp, relative)| TimeEntry {
            timestamp,
            last_offset: self.base_offset.saturating_add(i64::from(relative)),
        })
    }

    /// Drops entries for offsets at or after `offset`.
    pub fn truncate_to_offset(&mut self, offset: i64) {
        let keep = self
            .entries
            .partition_point(|&(_, r)| self.base_offset.saturating_add(i64::from(r)) < offset);
        self.entries.truncate(keep);
    }

    /// The Kafka `.timeindex` file bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_ENTRY_LEN);
        for &(timestamp, relative) in &self.entries {
            out.extend_from_slice(&timestamp.to_be_bytes());
            out.extend_from_slice(&relative.to_be_bytes());
        }
        out
    }

    /// Parses a `.timeindex` file for a segment whose offsets end before `next_offset`.
    ///
    /// # Errors
    /// A sentence saying what is wrong; the caller rebuilds the index from the segment.
    pub fn from_bytes(
        base_offset: i64,
        bytes: &[u8],
        next_offset: i64,
    ) -> Result<TimeIndex, String> {
        if !bytes.len().is_multiple_of(TIME_ENTRY_LEN) {
            return Err(format!(
                "length {} is not a multiple of {TIME_ENTRY_LEN}",
                bytes.len()
            ));
        }
        let mut index = TimeIndex::new(base_offset);
        for chunk in bytes.chunks_exact(TIME_ENTRY_LEN) {
            let timestamp = i64::from_be_bytes(chunk[0..8].try_into().expect("8 bytes"));
            let relative = u32::from_be_bytes(chunk[8..12].try_into().expect("4 bytes"));
            let offset = base_offset.saturating_add(i64::from(relative));
            if offset >= next_offset {
                return Err(format!("offset {offset} beyond segment end {next_offset}"));
            }
            if let Some(&(last_timestamp, last_relative)) = index.entries.last() {
                if timestamp <= last_timestamp || relative <= last_relative {
                    return Err(format!("entry ({timestamp}, {relative}) does not increase"));
                }
            }
            index.entries.push((timestamp, relative));
        }
        Ok(index)
    }
}

/// Decides when the next index entries are due: every `interval_bytes` of appended batches.
#[derive(Debug, Clone, Copy)]
pub struct IndexPacer {
    interval_bytes: u64,
    bytes_since_entry: u64,
    first: bool,
}

impl IndexPacer {
    /// A pacer that indexes the first batch and then one batch per `interval_bytes`.
    pub fn new(interval_bytes: u64) -> IndexPacer {
        assert!(interval_bytes > 0, "index interval must be positive");
        IndexPacer {
            interval_bytes,
            bytes_since_entry: 0,
            first: true,
        }
    }

    /// Called before appending a batch of `batch_len` bytes; true when it gets an entry.
    pub fn on_batch(&mut self, batch_len: u64) -> bool {
        let due = self.first || self.bytes_since_entry >= self.interval_bytes;
        if due {
            self.first = false;
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += batch_len;
        due
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn extreme_base_offsets_and_probes_do_not_overflow() {
        // Regression (fuzz target `index`, fuzz/regressions/index): a lookup below an
        // index based at i64::MIN subtracted with overflow.
        let entries = [0u8, 0, 0, 1, 0, 0, 0, 16];
        for base in [i64::MIN, -1, 0, i64::MAX - 1, i64::MAX] {
            let index = OffsetIndex::from_bytes(base, &entries, 1 << 20).expect("valid entry");
            let entry = OffsetEntry {
                last_offset: base.saturating_add(1),
                position: 16,
            };
            assert_eq!(index.last(), Some(entry));
            for probe in [i64::MIN, -1, 0, 5, i64::MAX] {
                // Found once the probe is at or past the entry's offset, base + 1.
                let past = probe.checked_sub(base).is_some_and(|r| r >= 1);
                assert_eq!(index.lookup(probe), past.then_some(entry), "{base} {probe}");
            }
            let time = [0u8, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1];
            let index = TimeIndex::from_bytes(base, &time, i64::MAX);
            // The entry's offset, base + 1, must lie below the segment's end (i64::MAX).
            let fits = base.saturating_add(1) < i64::MAX;
            assert_eq!(index.is_ok(), fits, "{base}");
            if let Ok(index) = index {
                assert_eq!(index.lookup_before(i64::MIN), None);
                let last = index.last().expect("one entry");
                assert_eq!((last.timestamp, last.last_offset), (9, base + 1));
            }
        }
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lookup_finds_the_last_entry_at_or_before() {
        // Goal: lookups land on the entry a forward scan must start from.
        let mut index = OffsetIndex::new(100);
        index.append(104, 0);
        index.append(109, 4096);
        index.append(120, 9000);
        assert_eq!(index.lookup(99), None);
        assert_eq!(index.lookup(100), None);
        assert_eq!(index.lookup(104).unwrap().position, 0);
        assert_eq!(index.lookup(108).unwrap().position, 0);
        assert_eq!(index.lookup(109).unwrap().position, 4096);
        assert_eq!(index.lookup(1_000_000).unwrap().position, 9000);
    }

    #[test]
    fn boundaries_are_batch_starts() {
        // Goal: a read's end is a batch start within the byte budget, never past it.
        let mut index = OffsetIndex::new(0);
        index.append(9, 0);
        index.append(19, 1000);
        index.append(29, 2000);
        assert_eq!(index.boundary_at_or_before(0, 1500), Some(1000));
        assert_eq!(index.boundary_at_or_before(1000, 1500), None);
        assert_eq!(index.boundary_at_or_before(0, 999), None);
        assert_eq!(index.boundary_after(0), Some(1000));
        assert_eq!(index.boundary_after(2000), None);
    }

    #[test]
    fn garbage_index_files_are_refused() {
        // Goal: a zero-filled or torn index is detected so recovery rebuilds it.
        assert!(
            OffsetIndex::from_bytes(0, &[0u8; 16], 100).is_err(),
            "zeros repeat"
        );
        assert!(
            OffsetIndex::from_bytes(0, &[0u8; 7], 100).is_err(),
            "partial entry"
        );
        let mut index = OffsetIndex::new(0);
        index.append(3, 0);
        index.append(7, 500);
        assert!(
            OffsetIndex::from_bytes(0, &index.to_bytes(), 400).is_err(),
            "position past the end"
        );
        assert_eq!(
            OffsetIndex::from_bytes(0, &index.to_bytes(), 600).unwrap(),
            index
        );
    }

    #[test]
    fn time_index_only_grows() {
        // Goal: out-of-order timestamps never create a decreasing entry.
        let mut index = TimeIndex::new(0);
        index.maybe_append(50, 0);
        index.maybe_append(40, 1);
        index.maybe_append(60, 2);
        assert_eq!(index.len(), 2);
        assert_eq!(index.lookup_before(55).unwrap().last_offset, 0);
        assert_eq!(index.lookup_before(50), None);
        assert_eq!(
            TimeIndex::from_bytes(0, &index.to_bytes(), 3).unwrap(),
            index
        );
        assert!(TimeIndex::from_bytes(0, &index.to_bytes(), 2).is_err());
    }

    proptest! {
        #[test]
        fn index_round_trips_and_lookup_matches_linear_scan(
            gaps in proptest::collection::vec((1u32..50, 1u32..5000), 1..100),
            probe in 0i64..10_000,
        ) {
            let mut index = OffsetIndex::new(1000);
            let mut offset = 1000i64;
            let mut position = 0u64;
            let mut entries = Vec::new();
            for (offset_gap, position_gap) in gaps {
                index.append(offset, position);
                entries.push((offset, position));
                offset += i64::from(offset_gap);
                position += u64::from(position_gap);
            }
            let parsed = OffsetIndex::from_bytes(1000, &index.to_bytes(), position + 1).unwrap();
            prop_assert_eq!(&parsed, &index);
            let target = 1000 + probe;
            let expected = entries.iter().rev().find(|(o, _)| *o <= target).map(|&(_, p)| p);
            prop_assert_eq!(index.lookup(target).map(|e| e.position), expected);
        }
    }
}
