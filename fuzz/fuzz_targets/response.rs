//! Every response decoder (the client reads them): the first byte chooses the API, the rest
//! is the body. Never panics; what decodes encodes again and decodes to the same response.
#![no_main]
use bytes::{Bytes, BytesMut};
use keel_protocol::api::{ApiKey, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let (api, _, _) = ApiKey::ALL[selector as usize % ApiKey::ALL.len()];
    if let Ok(response) = Response::decode(api, Bytes::copy_from_slice(body)) {
        let mut again = BytesMut::new();
        response
            .encode(&mut again)
            .expect("a decoded response fits the wire");
        let decoded = Response::decode(api, again.freeze()).expect("re-decodes");
        assert_eq!(decoded, response);
    }
});
