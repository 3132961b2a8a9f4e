//! The frame decoders (request on the broker, response on the client) on arbitrary bytes:
//! never panic; a complete frame lies inside the input.
#![no_main]
use keel_protocol::frame::{check_request, check_response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for max in [64 << 20, 1024, 16] {
        if let Ok(Some(frame)) = check_request(data, max) {
            assert!(frame.frame_len <= data.len());
            let _ = &data[frame.body()];
        }
        if let Ok(Some(frame)) = check_response(data, max) {
            assert!(frame.frame_len <= data.len());
            let _ = &data[frame.body()];
        }
    }
});
