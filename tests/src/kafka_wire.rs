//! Kafka requests written by hand, for tests that send what no client would.

use bytes::{BufMut, BytesMut};

/// A request frame: size, header v1 (key, version, correlation id 7, client id "t"), body.
pub fn frame(api_key: i16, version: i16, body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_i32(2 + 2 + 4 + 2 + 1 + body.len() as i32);
    out.put_i16(api_key);
    out.put_i16(version);
    out.put_i32(7);
    out.put_i16(1);
    out.put_u8(b't');
    out.put_slice(body);
    out.to_vec()
}

/// A string as Kafka's non-flexible versions write it (i16 length, bytes).
pub fn string(out: &mut BytesMut, s: &str) {
    out.put_i16(s.len() as i16);
    out.put_slice(s.as_bytes());
}
