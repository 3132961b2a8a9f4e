//! The `.index` and `.timeindex` readers on arbitrary file bytes and segment bounds: never
//! panic; an accepted index answers lookups.
#![no_main]
use keel_engine::index::{OffsetIndex, TimeIndex};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 24 {
        return;
    }
    let base_offset = i64::from_be_bytes(data[..8].try_into().unwrap());
    let bound = i64::from_be_bytes(data[8..16].try_into().unwrap());
    let probe = i64::from_be_bytes(data[16..24].try_into().unwrap());
    let bytes = &data[24..];
    if let Ok(index) = OffsetIndex::from_bytes(base_offset, bytes, bound as u64) {
        let _ = index.lookup(probe);
        let _ = index.last();
        let _ = index.boundary_after(probe as u64);
        let _ = index.boundary_at_or_before(probe as u64, bound as u64);
        assert_eq!(index.to_bytes(), bytes, "accepted bytes round-trip");
    }
    if let Ok(index) = TimeIndex::from_bytes(base_offset, bytes, bound) {
        let _ = index.lookup_before(probe);
        let _ = index.last();
    }
});
