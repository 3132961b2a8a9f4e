//! The Kafka listener's decoders: frames, request headers, every served API's body at every
//! served version, and the consumer protocol's embedded subscription and assignment. The
//! first two bytes pick an API and version (so every decoder is reached), the rest is the
//! body; then the whole input is also tried as a raw frame and header. Never panics, and
//! never allocates for more than the input holds (libFuzzer's RSS limit would catch it).
#![no_main]
use bytes::{BufMut, Bytes, BytesMut};
use keel_kafka::{consumer, frame, requests, versions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = frame::check_frame(data, 1 << 20);
    if let Ok((header, mut reader)) = frame::parse_header(Bytes::copy_from_slice(data)) {
        if let Some(api) = versions::served(header.api_key, header.api_version) {
            let _ = requests::decode(api, header.api_version, &mut reader);
        }
    }
    if data.len() >= 2 {
        let (api, min, max, first_flexible) =
            versions::SUPPORTED[data[0] as usize % versions::SUPPORTED.len()];
        let version = min + (data[1] as i16 % (max - min + 1));
        let mut body = BytesMut::new();
        body.put_i16(api as i16);
        body.put_i16(version);
        body.put_i32(1);
        body.put_i16(-1);
        if version >= first_flexible {
            body.put_u8(0);
        }
        body.put_slice(&data[2..]);
        let (header, mut reader) = frame::parse_header(body.freeze()).expect("a valid header");
        let _ = requests::decode(api, header.api_version, &mut reader);
    }
    let _ = consumer::subscription_topics(Bytes::copy_from_slice(data));
    let _ = consumer::assignment_partitions(Bytes::copy_from_slice(data));
});
