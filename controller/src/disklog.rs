//! The metadata log's file format, sans-IO: what the I/O layer appends for a [`Persist`],
//! and how it rebuilds a [`LogStore`] from the file after a restart or a crash.
//!
//! The file is a sequence of records: u32 length of kind+body, u32 CRC-32C of kind+body,
//! a kind byte, the body. Records are appended in [`Persist`] order (snapshot, entries, hard
//! state) and the file is fsynced before anything that depends on them is sent. A crash can
//! leave a torn last record: [`recover`] stops at the first record that is short or fails
//! its CRC and reports the length to cut the file to. Each append ends with a round-end
//! record; a bad record with two round ends after it lies in a round whose fsync completed
//! before the next round was written (only the last round can be torn, and its pages may
//! reach the disk in any order, its own round end included): that is corruption, reported
//! with its byte position, never cut. Compaction rewrites the whole file
//! ([`encode_store`]) to a temporary name, fsyncs it and renames it over the old one.

use bytes::{Buf, BufMut, BytesMut};
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot};

use crate::store::{LogStore, Persist, SnapshotWrite};

const KIND_ENTRY: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_SNAPSHOT: u8 = 3;
const KIND_SNAPSHOT_REPLACES_LOG: u8 = 4;
const KIND_ROUND_END: u8 = 5;

/// Largest record read back (a snapshot of a big cluster fits).
pub const RECORD_BYTES_MAX: usize = 64 << 20;

/// What [`recover`] found.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// The latest snapshot.
    pub snapshot: Option<Snapshot>,
    /// The entries after it, conflicts already resolved (later writes win).
    pub entries: Vec<Entry>,
    /// The latest hard state.
    pub hard_state: HardState,
    /// Bytes of valid records; the file should be cut to this length.
    pub valid_bytes: usize,
    /// True when bytes after `valid_bytes` were dropped (a torn tail).
    pub torn: bool,
    /// Where a bad record lies that later complete rounds follow: corruption of data that
    /// was synced, not a torn tail. Nothing may be cut then.
    pub corrupt_at: Option<usize>,
}

impl Recovered {
    /// The log store these pieces make, for `voters`.
    pub fn into_store(self, voters: &[u64]) -> LogStore {
        LogStore::recover(voters, self.snapshot, self.entries, self.hard_state)
    }
}

fn put_record(out: &mut BytesMut, kind: u8, body: &[u8]) {
    let mut crc = crc32c::crc32c(&[kind]);
    crc = crc32c::crc32c_append(crc, body);
    out.put_u32(body.len() as u32 + 1);
    out.put_u32(crc);
    out.put_u8(kind);
    out.put_slice(body);
}

fn entry_body(entry: &Entry) -> Vec<u8> {
    let mut body = Vec::with_capacity(17 + entry.data.len());
    body.put_u64(entry.index);
    body.put_u64(entry.term);
    body.put_u8(entry.get_entry_type() as u8);
    body.put_slice(&entry.data);
    body
}

fn snapshot_body(snapshot: &Snapshot) -> Vec<u8> {
    let meta = snapshot.get_metadata();
    let voters = &meta.get_conf_state().voters;
    let mut body = Vec::new();
    body.put_u64(meta.index);
    body.put_u64(meta.term);
    body.put_u32(voters.len() as u32);
    for v in voters {
        body.put_u64(*v);
    }
    body.put_slice(snapshot.get_data());
    body
}

/// The bytes to append to the log file for `persist`.
pub fn encode_persist(persist: &Persist) -> Vec<u8> {
    let mut out = BytesMut::new();
    if let Some(write) = &persist.snapshot {
        let kind = if write.replaces_log {
            KIND_SNAPSHOT_REPLACES_LOG
        } else {
            KIND_SNAPSHOT
        };
        put_record(&mut out, kind, &snapshot_body(&write.snapshot));
    }
    for entry in &persist.entries {
        put_record(&mut out, KIND_ENTRY, &entry_body(entry));
    }
    if let Some(hs) = &persist.hard_state {
        let mut body = Vec::with_capacity(24);
        body.put_u64(hs.term);
        body.put_u64(hs.vote);
        body.put_u64(hs.commit);
        put_record(&mut out, KIND_HARD_STATE, &body);
    }
    if !out.is_empty() {
        put_record(&mut out, KIND_ROUND_END, &[]);
    }
    out.to_vec()
}

/// The bytes of a round-end record.
fn round_end() -> Vec<u8> {
    let mut out = BytesMut::new();
    put_record(&mut out, KIND_ROUND_END, &[]);
    out.to_vec()
}

/// Round ends anywhere in `data` (found by their exact bytes, record boundaries unknown).
fn round_ends_in(data: &[u8]) -> usize {
    let marker = round_end();
    data.windows(marker.len()).filter(|w| *w == marker).count()
}

/// The whole log in its compacted form: snapshot, entries after it, hard state.
pub fn encode_store(store: &LogStore) -> Vec<u8> {
    let snapshot = store.snapshot_ref();
    let persist = Persist {
        snapshot: (snapshot.get_metadata().index > 0).then(|| SnapshotWrite {
            snapshot: snapshot.clone(),
            replaces_log: true,
        }),
        entries: store.entries_ref().to_vec(),
        hard_state: Some(store.hard_state().clone()),
    };
    encode_persist(&persist)
}

/// Reads a log file's bytes back; never panics, whatever the bytes.
pub fn recover(mut data: &[u8]) -> Recovered {
    let total = data.len();
    let mut found = Recovered::default();
    loop {
        let at = total - data.len();
        if data.is_empty() {
            found.valid_bytes = at;
            return found;
        }
        let record = read_record(data);
        let applied = record.is_some_and(|(kind, body, _)| apply_record(&mut found, kind, body));
        let Some((_, _, used)) = record.filter(|_| applied) else {
            found.valid_bytes = at;
            found.torn = true;
            if round_ends_in(data.get(1..).unwrap_or_default()) >= 2 {
                found.corrupt_at = Some(at);
            }
            return found;
        };
        data = &data[used..];
    }
}

fn read_record(data: &[u8]) -> Option<(u8, &[u8], usize)> {
    let mut head = data.get(..8)?;
    let len = head.get_u32() as usize;
    let crc = head.get_u32();
    if len == 0 || len > RECORD_BYTES_MAX {
        return None;
    }
    let payload = data.get(8..8 + len)?;
    if crc32c::crc32c(payload) != crc {
        return None;
    }
    Some((payload[0], &payload[1..], 8 + len))
}

fn apply_record(found: &mut Recovered, kind: u8, mut body: &[u8]) -> bool {
    match kind {
        KIND_ENTRY => {
            if body.len() < 17 {
                return false;
            }
            let index = body.get_u64();
            let term = body.get_u64();
            let entry_type = match body.get_u8() {
                0 => EntryType::EntryNormal,
                1 => EntryType::EntryConfChange,
                2 => EntryType::EntryConfChangeV2,
                _ => return false,
            };
            let mut entry = Entry {
                index,
                term,
                data: body.to_vec().into(),
                ..Entry::default()
            };
            entry.set_entry_type(entry_type);
            // A later write at an index replaces it and everything after it.
            found.entries.retain(|e| e.index < index);
            if found.entries.last().is_some_and(|e| e.index + 1 != index) {
                return false;
            }
            found.entries.push(entry);
        }
        KIND_HARD_STATE => {
            if body.len() != 24 {
                return false;
            }
            found.hard_state = HardState {
                term: body.get_u64(),
                vote: body.get_u64(),
                commit: body.get_u64(),
                ..HardState::default()
            };
        }
        KIND_ROUND_END => {
            if !body.is_empty() {
                return false;
            }
        }
        KIND_SNAPSHOT | KIND_SNAPSHOT_REPLACES_LOG => {
            if body.len() < 20 {
                return false;
            }
            let index = body.get_u64();
            let term = body.get_u64();
            let count = body.get_u32() as usize;
            if body.len() < count.saturating_mul(8) {
                return false;
            }
            let voters: Vec<u64> = (0..count).map(|_| body.get_u64()).collect();
            let mut snapshot = Snapshot::default();
            snapshot.set_data(body.to_vec().into());
            let meta = snapshot.mut_metadata();
            meta.index = index;
            meta.term = term;
            meta.set_conf_state(ConfState::from((voters, vec![])));
            if kind == KIND_SNAPSHOT_REPLACES_LOG {
                found.entries.clear();
            } else {
                found.entries.retain(|e| e.index > index);
            }
            found.snapshot = Some(snapshot);
        }
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Entry::default()
        }
    }

    fn hard_state(term: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote: 1,
            commit,
            ..HardState::default()
        }
    }

    // Appended persists read back as the log they describe, conflicts resolved.
    #[test]
    fn appends_read_back() {
        let mut file = encode_persist(&Persist {
            snapshot: None,
            entries: vec![entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")],
            hard_state: Some(hard_state(1, 1)),
        });
        file.extend(encode_persist(&Persist {
            snapshot: None,
            entries: vec![entry(2, 2, b"B")],
            hard_state: Some(hard_state(2, 2)),
        }));
        let found = recover(&file);
        assert!(!found.torn);
        assert_eq!(found.valid_bytes, file.len());
        let got: Vec<(u64, u64)> = found.entries.iter().map(|e| (e.index, e.term)).collect();
        assert_eq!(got, vec![(1, 1), (2, 2)]);
        assert_eq!(found.hard_state.commit, 2);
    }

    // Every cut of the file recovers a prefix of its records and says where to cut.
    #[test]
    fn torn_tails_recover_a_prefix() {
        let file = encode_persist(&Persist {
            snapshot: None,
            entries: (1..=5).map(|i| entry(i, 1, b"data")).collect(),
            hard_state: Some(hard_state(1, 5)),
        });
        for len in 0..file.len() {
            let found = recover(&file[..len]);
            assert!(found.valid_bytes <= len);
            assert_eq!(found.torn, found.valid_bytes < len, "cut at {len}");
            let indexes: Vec<u64> = found.entries.iter().map(|e| e.index).collect();
            assert_eq!(indexes, (1..=indexes.len() as u64).collect::<Vec<_>>());
        }
        let mut flipped = file.clone();
        flipped[20] ^= 1;
        assert!(recover(&flipped).torn);
        assert_eq!(
            recover(&flipped).corrupt_at,
            None,
            "the last round may be torn"
        );
    }

    // Goal: a bad record in a round that later rounds follow was synced, then damaged:
    // corruption, refused with its position. Before, it was cut as a torn tail, dropping
    // fsynced Raft state (votes, entries) after it.
    #[test]
    fn a_bad_record_before_later_rounds_is_corruption_not_a_torn_tail() {
        let rounds: Vec<Vec<u8>> = (1..=3)
            .map(|i| {
                encode_persist(&Persist {
                    snapshot: None,
                    entries: vec![entry(i, 1, b"data")],
                    hard_state: Some(hard_state(1, i)),
                })
            })
            .collect();
        let file = rounds.concat();
        let starts = [0, rounds[0].len(), rounds[0].len() + rounds[1].len()];
        for (round, start) in starts.iter().enumerate() {
            let mut damaged = file.clone();
            damaged[start + 12] ^= 0x40;
            let found = recover(&damaged);
            assert!(found.torn);
            assert_eq!(found.valid_bytes, *start);
            let corrupt = found.corrupt_at.is_some();
            // Round 2's own round end and round 3's follow a bad record in round 2.
            assert_eq!(corrupt, round < 2, "damage in round {}", round + 1);
        }
    }

    // A compacted file holds the snapshot, later entries and the hard state.
    #[test]
    fn compaction_round_trip() {
        let mut store = LogStore::new(&[1, 2, 3]);
        store.append(&[entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 2, b"c")]);
        store.set_hard_state(hard_state(2, 3));
        let write = store.compaction(2, b"image".to_vec());
        store.apply_snapshot(&write);
        let found = recover(&encode_store(&store));
        let snapshot = found.snapshot.clone().unwrap();
        assert_eq!(snapshot.get_metadata().index, 2);
        assert_eq!(snapshot.get_data(), b"image");
        assert_eq!(
            snapshot.get_metadata().get_conf_state().voters,
            vec![1, 2, 3]
        );
        let back = found.into_store(&[1, 2, 3]);
        assert_eq!(raft::Storage::last_index(&back).unwrap(), 3);
        assert_eq!(raft::Storage::first_index(&back).unwrap(), 3);
    }

    // CRC-valid records that do not make a log (an entry far past the snapshot) give a
    // shorter log, not a panic.
    #[test]
    fn valid_records_out_of_order_do_not_panic() {
        let mut file = encode_persist(&Persist {
            snapshot: None,
            entries: vec![entry(10, 1, b"x")],
            hard_state: Some(hard_state(1, 10)),
        });
        file.extend(encode_persist(&Persist {
            snapshot: None,
            entries: vec![entry(3, 1, b"y")],
            hard_state: None,
        }));
        let store = recover(&file).into_store(&[1]);
        assert!(raft::Storage::last_index(&store).unwrap() <= 3);
        assert!(
            store.hard_state().commit <= 3,
            "commit stays within the log"
        );
        let config = crate::node::ControllerConfig::new(1, vec![1]);
        assert!(crate::node::Controller::new(config, store, 0).is_ok());
    }

    proptest::proptest! {
        // Arbitrary bytes recover to something (maybe nothing), never a panic.
        #[test]
        fn arbitrary_bytes(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let found = recover(&data);
            proptest::prop_assert!(found.valid_bytes <= data.len());
        }
    }
}
