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

/// Sends one request frame on `stream`; the answer's body after the correlation id, or
/// `None` when the broker closed the connection instead.
pub fn request(stream: &mut std::net::TcpStream, frame: &[u8]) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    stream.write_all(frame).unwrap();
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).unwrap();
    Some(body[4..].to_vec())
}

/// SaslHandshake v1 naming `mechanism`.
pub fn sasl_handshake(mechanism: &str) -> Vec<u8> {
    let mut body = BytesMut::new();
    string(&mut body, mechanism);
    frame(17, 1, &body)
}

/// SaslAuthenticate v1 with `token`: the error code, the server's token and the session
/// lifetime, or `None` when the connection closed.
pub fn sasl_authenticate(
    stream: &mut std::net::TcpStream,
    token: &[u8],
) -> Option<(i16, Vec<u8>, i64)> {
    let mut body = BytesMut::new();
    body.put_i32(token.len() as i32);
    body.put_slice(token);
    let answer = request(stream, &frame(36, 1, &body))?;
    let mut at = &answer[..];
    let code = i16::from_be_bytes([at[0], at[1]]);
    let message_len = i16::from_be_bytes([at[2], at[3]]).max(0) as usize;
    at = &at[4 + message_len..];
    let len = i32::from_be_bytes(at[..4].try_into().unwrap()).max(0) as usize;
    let token = at[4..4 + len].to_vec();
    let lifetime = i64::from_be_bytes(at[4 + len..12 + len].try_into().unwrap());
    Some((code, token, lifetime))
}

/// A SCRAM-SHA-512 exchange on `stream` as `user` with `password`: the last
/// SaslAuthenticate's error code (0: authenticated, the server's proof checked) and the
/// session lifetime, or `None` when the connection closed.
pub fn scram_login(
    stream: &mut std::net::TcpStream,
    user: &str,
    password: &str,
) -> Option<(i16, i64)> {
    let answer = request(stream, &sasl_handshake("SCRAM-SHA-512"))?;
    assert_eq!(&answer[..2], &0i16.to_be_bytes(), "SCRAM-SHA-512 offered");
    let mut client = keel_auth::scram::ScramClient::new(
        keel_auth::scram::Hash::Sha512,
        user,
        password,
        "cnonce",
    );
    let (code, first, _) = sasl_authenticate(stream, &client.first())?;
    if code != 0 {
        return Some((code, 0));
    }
    let reply = client.reply(&first).unwrap();
    let answer = sasl_authenticate(stream, &reply);
    if let Some((0, last, _)) = &answer {
        client.verify(last).unwrap();
    }
    answer.map(|(code, _, lifetime)| (code, lifetime))
}
