//! The controller's decoders: listener frames, metadata entries, images and the metadata
//! log file. Any bytes: an error or a value, never a panic or a huge allocation.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = keel_controller::wire::decode_frame(&mut buf) {}
    let _ = keel_controller::records::decode_entry(data);
    let _ = keel_controller::image::MetadataImage::decode(data);
    let found = keel_controller::disklog::recover(data);
    assert!(found.valid_bytes <= data.len());
    let _ = found.into_store(&[1, 2, 3]);
});
