//! Record decoding behind a valid header: the fuzzer's bytes become the records section
//! (and the header fields it chooses) of a batch whose length, magic and CRC are made
//! right, so decoding (lz4 and zstd included) is reached. Never panics; a batch that
//! validates decodes to exactly `records_count` records at consecutive offsets.
#![no_main]
use keel_protocol::batch::{BatchView, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < HEADER_LEN {
        return;
    }
    let mut batch = data.to_vec();
    let length = (batch.len() - 12) as u32;
    batch[8..12].copy_from_slice(&length.to_be_bytes());
    batch[16] = 2;
    // Compression codec: none, lz4 or zstd, from the attributes the fuzzer chose.
    let codec = [0u8, 3, 4][batch[22] as usize % 3];
    batch[22] = (batch[22] & !0x07) | codec;
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    let Ok(view) = BatchView::new_verified(&batch) else {
        return;
    };
    let records = view.records();
    if let Ok(summary) = view.validate_records(1 << 20) {
        let records = records.expect("a batch that validates decodes");
        assert_eq!(records.len() as i32, summary.count);
        for (n, record) in records.iter().enumerate() {
            assert_eq!(record.offset, view.base_offset().wrapping_add(n as i64));
        }
    }
});
