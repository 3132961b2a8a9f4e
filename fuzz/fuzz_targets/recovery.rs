//! The recovery scanner over arbitrary segment bytes, fed in fuzzer-chosen pieces: never
//! panics, never goes back, and ends with a verdict.
#![no_main]
use keel_engine::recovery::{Scanner, Step};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let base_offset = i64::from_be_bytes(data[..8].try_into().unwrap());
    let verify_crc = data[8] & 1 == 1;
    let segment = &data[9..];
    let mut scanner = Scanner::from_start(base_offset, 64, verify_crc);
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps < 100_000, "the scanner makes progress");
        let position = scanner.position() as usize;
        assert!(position <= segment.len());
        let chunk = &segment[position..];
        match scanner.feed(chunk, true) {
            Step::Stop(_) => break,
            Step::NeedMore { position: at, .. } => {
                assert!(at as usize >= position, "never goes back");
                if at as usize > segment.len() {
                    break;
                }
            }
        }
    }
    let _ = scanner.into_indexes();
});
