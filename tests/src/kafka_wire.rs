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

/// Sends one Kafka request frame on a new connection and reads the answer's frame: its
/// body after the size prefix (the correlation id first).
pub fn exchange(addr: std::net::SocketAddr, frame: &[u8]) -> bytes::Bytes {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream.write_all(frame).unwrap();
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).unwrap();
    bytes::Bytes::from(body)
}
