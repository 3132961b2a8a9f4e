//! Every request decoder: the first four bytes choose the API key and version, the rest is
//! the body. Never panics; what decodes encodes again and decodes to the same request.
#![no_main]
use bytes::{Bytes, BytesMut};
use keel_protocol::api::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let api_key = u16::from_be_bytes([data[0], data[1]]) % 64;
    let version = u16::from_be_bytes([data[2], data[3]]) % 2;
    let body = Bytes::copy_from_slice(&data[4..]);
    if let Ok(request) = Request::decode(api_key, version, body) {
        let mut again = BytesMut::new();
        request
            .encode(&mut again)
            .expect("a decoded request fits the wire");
        let decoded = Request::decode(api_key, version, again.freeze()).expect("re-decodes");
        assert_eq!(decoded, request);
    }
});
