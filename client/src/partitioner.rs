//! Choosing a partition: Kafka's murmur2 for keyed records (so a key lands where Kafka's Java
//! client would put it), sticky round-robin for records without a key, or a user function.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Kafka's murmur2 hash (the Java client's `Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes(chunk.try_into().expect("4 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= u32::from(tail[2]) << 16;
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for `key` among `partitions`.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions
}

/// A user partitioner: (topic, key, partition count) → partition.
pub type PartitionFn = Arc<dyn Fn(&str, Option<&[u8]>, u32) -> u32 + Send + Sync>;

/// How the producer picks partitions for records that do not name one.
#[derive(Clone, Default)]
pub enum Partitioner {
    /// murmur2 for keys; for null keys, stick to one partition per batch, then move on.
    #[default]
    Default,
    /// A function of the caller's.
    Custom(PartitionFn),
}

impl std::fmt::Debug for Partitioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Partitioner::Default => write!(f, "Default"),
            Partitioner::Custom(_) => write!(f, "Custom(..)"),
        }
    }
}

/// Sticky round-robin for null keys: all records go to the current partition until a batch
/// for it is sent, then the next partition takes over.
#[derive(Debug, Default)]
pub(crate) struct Sticky {
    current: AtomicUsize,
}

impl Sticky {
    pub(crate) fn partition(&self, partitions: u32) -> u32 {
        (self.current.load(Ordering::Relaxed) % partitions as usize) as u32
    }
    pub(crate) fn batch_sent(&self) {
        self.current.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Goal: Kafka's published UtilsTest.testMurmur2 vectors.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, hash) in cases {
            assert_eq!(murmur2(key), hash, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn keys_map_to_positive_hash_modulo_partitions() {
        // Goal: the Java client's `toPositive(murmur2(key)) % partitions`.
        assert_eq!(
            partition_for_key(b"foobar", 12),
            ((-790_332_482i32 & 0x7fff_ffff) as u32) % 12
        );
        assert_eq!(partition_for_key(b"abc", 7), 479_470_107 % 7);
    }

    #[test]
    fn sticky_moves_on_after_a_batch() {
        // Goal: null-key records stick to one partition per batch and spread over time.
        let sticky = Sticky::default();
        let first = sticky.partition(3);
        assert_eq!(sticky.partition(3), first);
        sticky.batch_sent();
        assert_ne!(sticky.partition(3), first);
    }
}
