//! The Raft log as the library reads it: a snapshot, the entries after it, the hard state.
//!
//! This is the in-memory mirror of what the I/O layer keeps on disk. The driver changes it
//! when it hands the same change to the I/O layer as a [`Persist`], so after a restart the
//! I/O layer rebuilds exactly this from its files ([`LogStore::recover`]).

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{RaftState, StorageError};

/// What the I/O layer must make durable (written and fsynced) before the driver's messages
/// are sent, in this order: the snapshot, then the entries, then the hard state.
#[derive(Debug, Clone, Default)]
pub struct Persist {
    /// A snapshot to store.
    pub snapshot: Option<SnapshotWrite>,
    /// Entries to append; any stored entry at or after the first one's index is replaced.
    pub entries: Vec<Entry>,
    /// The new term, vote and commit index.
    pub hard_state: Option<HardState>,
}

impl Persist {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none() && self.entries.is_empty() && self.hard_state.is_none()
    }
}

/// A snapshot and what it does to the stored entries.
#[derive(Debug, Clone)]
pub struct SnapshotWrite {
    /// The snapshot (metadata: index, term, voters; data: the encoded metadata image).
    pub snapshot: Snapshot,
    /// True when it came from the leader: every stored entry is dropped. False for a local
    /// compaction: only entries up to its index are dropped.
    pub replaces_log: bool,
}

/// The Raft log in memory.
#[derive(Debug, Clone)]
pub struct LogStore {
    hard_state: HardState,
    snapshot: Snapshot,
    entries: Vec<Entry>,
}

impl LogStore {
    /// An empty log whose quorum is `voters`.
    pub fn new(voters: &[u64]) -> LogStore {
        let mut snapshot = Snapshot::default();
        snapshot
            .mut_metadata()
            .set_conf_state(ConfState::from((voters.to_vec(), vec![])));
        LogStore {
            hard_state: HardState::default(),
            snapshot,
            entries: Vec::new(),
        }
    }

    /// The log as the I/O layer found it on disk.
    pub fn recover(
        voters: &[u64],
        snapshot: Option<Snapshot>,
        entries: Vec<Entry>,
        hard_state: HardState,
    ) -> LogStore {
        let mut store = LogStore::new(voters);
        if let Some(snapshot) = snapshot {
            store.snapshot = snapshot;
        }
        store.hard_state = hard_state;
        // A snapshot only holds committed entries; the hard state written with an older
        // round may carry an older commit index.
        let snapshot_index = store.snapshot.get_metadata().index;
        if store.hard_state.commit < snapshot_index {
            store.hard_state.commit = snapshot_index;
        }
        let first = store.first();
        for entry in entries {
            // Entries not following the log (a file written by something else) end it.
            if entry.index > store.last() + 1 {
                break;
            }
            if entry.index >= first {
                store.append(&[entry]);
            }
        }
        // A commit index past the log (entries lost with a torn file) would stop raft-rs;
        // commit is recomputed from the quorum, so lowering it is safe.
        if store.hard_state.commit > store.last() {
            store.hard_state.commit = store.last();
        }
        store
    }

    /// The stored snapshot (index 0 when none).
    pub fn snapshot_ref(&self) -> &Snapshot {
        &self.snapshot
    }
    /// The hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }
    /// The stored entries after the snapshot.
    pub fn entries_ref(&self) -> &[Entry] {
        &self.entries
    }

    fn first(&self) -> u64 {
        self.snapshot.get_metadata().index + 1
    }
    fn last(&self) -> u64 {
        self.snapshot.get_metadata().index + self.entries.len() as u64
    }

    /// Appends entries, replacing any stored at or after the first one's index.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(head) = entries.first() else { return };
        assert!(
            head.index >= self.first(),
            "entries before the snapshot cannot be appended"
        );
        assert!(
            head.index <= self.last() + 1,
            "entries must follow the log without a gap"
        );
        let keep = (head.index - self.first()) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
    }

    /// Sets the hard state.
    pub fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }
    /// Moves the commit index of the hard state.
    pub fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
    }

    /// Stores a snapshot, as [`SnapshotWrite`] says.
    pub fn apply_snapshot(&mut self, write: &SnapshotWrite) {
        let index = write.snapshot.get_metadata().index;
        if write.replaces_log {
            self.entries.clear();
            if self.hard_state.commit < index {
                self.hard_state.commit = index;
            }
        } else {
            assert!(
                index <= self.last(),
                "a compaction snapshot is within the log"
            );
            let drop = (index + 1).saturating_sub(self.first()) as usize;
            self.entries.drain(..drop.min(self.entries.len()));
        }
        self.snapshot = write.snapshot.clone();
    }

    /// A compaction snapshot at `index` (applied, stored) holding `data`.
    ///
    /// # Panics
    /// `index` is not a stored entry's index.
    pub fn compaction(&self, index: u64, data: Vec<u8>) -> SnapshotWrite {
        let term = raft::Storage::term(self, index).expect("compaction index is stored");
        let mut snapshot = Snapshot::default();
        snapshot.set_data(data.into());
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(self.snapshot.get_metadata().get_conf_state().clone());
        SnapshotWrite {
            snapshot,
            replaces_log: false,
        }
    }
}

impl raft::Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.snapshot.get_metadata().get_conf_state().clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: raft::GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let from = (low - self.first()) as usize;
        let to = (high - self.first()) as usize;
        let mut entries = self.entries[from..to].to_vec();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        let snapshot_index = self.snapshot.get_metadata().index;
        if index == snapshot_index {
            return Ok(self.snapshot.get_metadata().term);
        }
        if index < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if index > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(index - self.first()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.snapshot.get_metadata().index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Entry::default()
        }
    }

    // A conflicting append replaces the suffix; compaction keeps later entries and terms.
    #[test]
    fn append_replace_compact() {
        let mut store = LogStore::new(&[1, 2, 3]);
        store.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        store.append(&[entry(2, 2)]);
        assert_eq!(store.last_index().unwrap(), 2);
        assert_eq!(store.term(2).unwrap(), 2);
        store.append(&[entry(3, 2), entry(4, 2)]);
        let write = store.compaction(3, b"image".to_vec());
        store.apply_snapshot(&write);
        assert_eq!(store.first_index().unwrap(), 4);
        assert_eq!(store.term(3).unwrap(), 2);
        assert!(store.term(2).is_err());
        let got = store.entries(4, 5, None, raft::GetEntriesContext::empty(false));
        assert_eq!(got.unwrap().len(), 1);
        assert!(store
            .entries(2, 4, None, raft::GetEntriesContext::empty(false))
            .is_err());
        // Recovery from the same pieces gives the same log.
        let again = LogStore::recover(
            &[1, 2, 3],
            Some(store.snapshot_ref().clone()),
            vec![entry(2, 2), entry(3, 2), entry(4, 2)],
            store.hard_state().clone(),
        );
        assert_eq!(again.last_index().unwrap(), 4);
        assert_eq!(again.first_index().unwrap(), 4);
    }
}
