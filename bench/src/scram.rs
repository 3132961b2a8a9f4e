//! SCRAM handshakes per second against a broker's SASL Kafka listener: each handshake a
//! new connection, SaslHandshake v1 and two SaslAuthenticate v1 exchanges with keel-auth's
//! SCRAM client (the broker's side: a PBKDF2-derived credential lookup, two HMACs and a
//! hash), the server's signature checked.

use anyhow::{bail, Context};
use bytes::{Buf, BufMut, BytesMut};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Handshakes per second over `seconds` with `threads` clients in parallel.
///
/// # Errors
/// A handshake that fails (a wrong password, a broker that does not speak SASL).
pub fn handshakes_per_second(
    address: &str,
    user: &str,
    password: &str,
    threads: usize,
    seconds: f64,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (done, stop) = (done.clone(), stop.clone());
            let (address, user, password) =
                (address.to_owned(), user.to_owned(), password.to_owned());
            std::thread::spawn(move || -> anyhow::Result<()> {
                while !stop.load(Ordering::Relaxed) {
                    handshake(&address, &user, &password)?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker
            .join()
            .map_err(|_| anyhow::anyhow!("a handshake thread panicked"))??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// One SCRAM-SHA-512 authentication on a new connection.
fn handshake(address: &str, user: &str, password: &str) -> anyhow::Result<()> {
    let mut stream =
        TcpStream::connect(address).with_context(|| format!("connecting to {address}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut body = BytesMut::new();
    put_string(&mut body, "SCRAM-SHA-512");
    let mut answer = call(&mut stream, 17, &body)?;
    if answer.len() < 2 || answer.get_i16() != 0 {
        bail!("SaslHandshake refused SCRAM-SHA-512");
    }
    let nonce: String = (0..24)
        .map(|i| char::from(b'a' + ((i * 7 + user.len()) % 26) as u8))
        .collect();
    let mut client =
        keel_auth::scram::ScramClient::new(keel_auth::scram::Hash::Sha512, user, password, &nonce);
    let server_first = authenticate(&mut stream, &client.first())?;
    let reply = client
        .reply(&server_first)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let server_final = authenticate(&mut stream, &reply)?;
    client
        .verify(&server_final)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// SaslAuthenticate v1 with `token`: the server's token.
fn authenticate(stream: &mut TcpStream, token: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = BytesMut::new();
    body.put_i32(token.len() as i32);
    body.put_slice(token);
    let mut answer = call(stream, 36, &body)?;
    if answer.len() < 4 {
        bail!("a short SaslAuthenticate answer");
    }
    let code = answer.get_i16();
    let message_len = answer.get_i16().max(0) as usize;
    if code != 0 || answer.len() < message_len + 4 {
        bail!("SaslAuthenticate failed with error {code}");
    }
    answer.advance(message_len);
    let len = answer.get_i32().max(0) as usize;
    Ok(answer.split_to(len.min(answer.len())).to_vec())
}

/// One request (header v1, version 1) and its answer after the correlation id.
fn call(stream: &mut TcpStream, api_key: i16, body: &[u8]) -> anyhow::Result<BytesMut> {
    let mut frame = BytesMut::new();
    frame.put_i32((2 + 2 + 4 + 2 + 5 + body.len()) as i32);
    frame.put_i16(api_key);
    frame.put_i16(1);
    frame.put_i32(1);
    put_string(&mut frame, "bench");
    frame.put_slice(body);
    stream.write_all(&frame)?;
    let mut size = [0u8; 4];
    stream
        .read_exact(&mut size)
        .context("the broker closed the connection")?;
    let len = i32::from_be_bytes(size);
    if !(4..=1 << 20).contains(&len) {
        bail!("an answer of {len} bytes");
    }
    let mut answer = vec![0u8; len as usize];
    stream.read_exact(&mut answer)?;
    let mut answer = BytesMut::from(&answer[..]);
    answer.advance(4);
    Ok(answer)
}

fn put_string(out: &mut BytesMut, s: &str) {
    out.put_i16(s.len() as i16);
    out.put_slice(s.as_bytes());
}
