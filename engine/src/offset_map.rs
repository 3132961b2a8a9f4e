//! The log cleaner's offset map (Kafka's `SkimpyOffsetMap`): the latest offset of each key
//! in the part of a log being cleaned, in memory fixed when the map is made.
//!
//! A key is kept as a 128-bit hash (two independent SipHash passes), not as its bytes, so
//! every entry costs the same 24 bytes whatever the key's size; slots are probed linearly.
//! The map takes keys up to a load factor of 0.9; past that [`OffsetMap::put`] refuses new
//! keys (a key already there still moves to its later offset), and the cleaner cleans only
//! up to the offset where the map filled, leaving the rest for its next pass. Pure: no I/O.

use std::hash::{Hash, Hasher};

/// Bytes one entry takes: the key's 128-bit hash and its offset.
pub const ENTRY_BYTES: usize = 24;

/// Share of the slots the map fills before it refuses new keys (as Kafka's cleaner).
const LOAD_FACTOR: f64 = 0.9;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    hash: u128,
    /// -1: empty.
    offset: i64,
}

const EMPTY: Slot = Slot {
    hash: 0,
    offset: -1,
};

/// Key → latest offset, bounded.
#[derive(Debug, Clone)]
pub struct OffsetMap {
    slots: Vec<Slot>,
    used: usize,
    limit: usize,
    latest: i64,
}

/// What [`OffsetMap::put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// The key is in the map at this offset (new, or moved to it).
    Stored,
    /// A new key and the map is full: the cleaner stops before this offset.
    Full,
}

fn hash_key(key: &[u8]) -> u128 {
    let mut first = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut first);
    let mut second = std::collections::hash_map::DefaultHasher::new();
    0x9e37_79b9_7f4a_7c15_u64.hash(&mut second);
    key.hash(&mut second);
    u128::from(first.finish()) << 64 | u128::from(second.finish())
}

impl OffsetMap {
    /// A map using at most about `memory_bytes` (at least one entry).
    pub fn new(memory_bytes: usize) -> OffsetMap {
        let slots = (memory_bytes / ENTRY_BYTES).max(2);
        OffsetMap {
            slots: vec![EMPTY; slots],
            used: 0,
            limit: ((slots as f64 * LOAD_FACTOR) as usize).clamp(1, slots - 1),
            latest: -1,
        }
    }

    /// Keys the map holds.
    pub fn len(&self) -> usize {
        self.used
    }

    /// True when it holds no key.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Most keys it takes.
    pub fn capacity(&self) -> usize {
        self.limit
    }

    /// The largest offset put so far (-1: none).
    pub fn latest_offset(&self) -> i64 {
        self.latest
    }

    /// Forgets every key, keeping the memory.
    pub fn clear(&mut self) {
        self.slots.fill(EMPTY);
        self.used = 0;
        self.latest = -1;
    }

    /// Records that `key`'s latest record is at `offset` (offsets are put in log order).
    ///
    /// # Panics
    /// An offset below one put before, or negative: the cleaner reads the log in order.
    pub fn put(&mut self, key: &[u8], offset: i64) -> Put {
        assert!(
            offset >= 0 && offset >= self.latest,
            "offsets are put in log order"
        );
        let hash = hash_key(key);
        let at = self.find(hash);
        if self.slots[at].offset < 0 {
            if self.used >= self.limit {
                return Put::Full;
            }
            self.used += 1;
        }
        self.slots[at] = Slot { hash, offset };
        self.latest = offset;
        Put::Stored
    }

    /// The latest offset of `key`, if the map holds it.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        let slot = self.slots[self.find(hash_key(key))];
        (slot.offset >= 0).then_some(slot.offset)
    }

    /// The slot holding `hash`, or the empty one where it would go. The map always keeps
    /// an empty slot (its limit is below the slot count), so probing ends.
    fn find(&self, hash: u128) -> usize {
        let mut at = (hash as usize) % self.slots.len();
        loop {
            let slot = self.slots[at];
            if slot.offset < 0 || slot.hash == hash {
                return at;
            }
            at = (at + 1) % self.slots.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    // Goal: the latest offset of each key wins, whatever the keys' sizes.
    #[test]
    fn the_latest_offset_of_each_key_wins() {
        let mut map = OffsetMap::new(1 << 16);
        assert_eq!(map.put(b"a", 0), Put::Stored);
        assert_eq!(map.put(&[7u8; 10_000], 1), Put::Stored);
        assert_eq!(map.put(b"a", 2), Put::Stored);
        assert_eq!(map.get(b"a"), Some(2));
        assert_eq!(map.get(&[7u8; 10_000]), Some(1));
        assert_eq!(map.get(b"b"), None);
        assert_eq!((map.len(), map.latest_offset()), (2, 2));
        map.clear();
        assert!(map.is_empty() && map.get(b"a").is_none());
    }

    // Goal: memory is bounded: a full map refuses new keys but still moves known ones.
    #[test]
    fn a_full_map_refuses_new_keys_and_moves_known_ones() {
        let mut map = OffsetMap::new(10 * ENTRY_BYTES);
        assert_eq!(map.capacity(), 9);
        for offset in 0..9 {
            assert_eq!(map.put(&[offset as u8], offset), Put::Stored);
        }
        assert_eq!(map.put(b"new", 9), Put::Full);
        assert_eq!(map.put(&[3], 10), Put::Stored);
        assert_eq!(map.get(&[3]), Some(10));
        assert_eq!(map.len(), 9);
        assert_eq!(OffsetMap::new(0).capacity(), 1, "at least one key");
    }

    #[test]
    #[should_panic(expected = "log order")]
    fn offsets_go_forward() {
        let mut map = OffsetMap::new(1 << 10);
        map.put(b"a", 5);
        map.put(b"b", 4);
    }

    proptest::proptest! {
        // The map answers as a HashMap of the latest offsets does, for every key it took.
        #[test]
        fn agrees_with_a_hash_map(keys in proptest::collection::vec(0u16..300, 1..2_000), slots in 4usize..400) {
            let mut map = OffsetMap::new(slots * ENTRY_BYTES);
            let mut model: HashMap<u16, i64> = HashMap::new();
            for (offset, key) in keys.iter().enumerate() {
                let offset = offset as i64;
                let bytes = key.to_be_bytes();
                match map.put(&bytes, offset) {
                    Put::Stored => { model.insert(*key, offset); }
                    Put::Full => {
                        proptest::prop_assert!(!model.contains_key(key));
                        proptest::prop_assert_eq!(model.len(), map.capacity());
                    }
                }
            }
            proptest::prop_assert_eq!(map.len(), model.len());
            for key in 0u16..300 {
                proptest::prop_assert_eq!(map.get(&key.to_be_bytes()), model.get(&key).copied());
            }
        }
    }
}
