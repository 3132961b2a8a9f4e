//! The record batch view and record decoding on arbitrary bytes (CRC checked as a peer's
//! bytes would be): never panics.
#![no_main]
use keel_protocol::batch::{peek_batch_len, BatchView};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = peek_batch_len(data);
    if let Ok(view) = BatchView::new(data) {
        let _ = (view.base_offset(), view.last_offset(), view.max_timestamp());
        let _ = view.verify_crc();
        let _ = view.records();
        let _ = view.validate_records(1 << 20);
    }
});
