//! Decode, encode, decode for requests and responses from the same bytes, and the batch
//! header view against a rebuilt batch: what decodes is stable under re-encoding.
#![no_main]
use bytes::{Bytes, BytesMut};
use keel_protocol::api::{ApiKey, Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let (api, _, _) = ApiKey::ALL[selector as usize % ApiKey::ALL.len()];
    let body = Bytes::copy_from_slice(body);
    if let Ok(request) = Request::decode(api as u16, 0, body.clone()) {
        let mut first = BytesMut::new();
        request.encode(&mut first).expect("fits");
        let again = Request::decode(api as u16, 0, first.clone().freeze()).expect("re-decodes");
        let mut second = BytesMut::new();
        again.encode(&mut second).expect("fits");
        assert_eq!(first, second, "encoding is stable");
    }
    if let Ok(response) = Response::decode(api, body) {
        let mut first = BytesMut::new();
        response.encode(&mut first).expect("fits");
        let again = Response::decode(api, first.clone().freeze()).expect("re-decodes");
        let mut second = BytesMut::new();
        again.encode(&mut second).expect("fits");
        assert_eq!(first, second, "encoding is stable");
    }
});
