//! One connection to a broker: requests are written by a writer task and responses routed
//! back by correlation id, so many requests can be in flight (pipelining).

use crate::error::{Error, Result};
use crate::security::ClientSecurity;
use bytes::{Bytes, BytesMut};
use keel_protocol::api::{ApiKey, ErrorCode, Request, Response};
use keel_protocol::frame::{check_response, write_request_prefix};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

type Pending = Arc<Mutex<HashMap<u32, oneshot::Sender<Result<(ErrorCode, Bytes)>>>>>;

/// The wait for a request's answer (see [`Connection::begin`]).
pub type Answer = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response>> + Send>>;

/// Largest response frame the client accepts.
const RESPONSE_BYTES_MAX: u32 = 512 << 20;

/// How long a request may wait for its answer unless its caller says otherwise (long polls
/// and group joins add their own wait to it).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long connecting, and the ApiVersions handshake that checks a Keel broker answers,
/// may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A pipelined connection. Cheap to clone.
#[derive(Clone)]
pub struct Connection {
    addr: String,
    outbox: mpsc::Sender<Vec<Bytes>>,
    pending: Pending,
    next_correlation: Arc<AtomicU32>,
    /// Set when the connection failed: later requests fail at once.
    broken: Arc<std::sync::atomic::AtomicBool>,
    /// With a SASL session that ends (KIP-368): when to stop using this connection (most
    /// of the way through the session), so callers connect and authenticate again.
    renew_at: Option<std::time::Instant>,
}

impl Connection {
    /// Connects to `addr`, or to the first that answers of a comma-separated list
    /// (a bootstrap list: `host:port,host:port`).
    ///
    /// # Errors
    /// [`Error::Connect`] naming the address (the last one tried).
    pub async fn connect(addr: &str) -> Result<Connection> {
        Connection::connect_with(addr, &ClientSecurity::default()).await
    }

    /// As [`Connection::connect`], with `security`'s settings (TLS).
    ///
    /// # Errors
    /// [`Error::Connect`] naming the address (the last one tried), or why TLS failed.
    pub async fn connect_with(addr: &str, security: &ClientSecurity) -> Result<Connection> {
        let mut last = None;
        for one in addr.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match Connection::connect_one(one, security).await {
                Ok(connection) => return Ok(connection),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Connect {
            addr: addr.to_owned(),
            message: "no address given".into(),
        }))
    }

    async fn connect_one(addr: &str, security: &ClientSecurity) -> Result<Connection> {
        let failed = |message: String| Error::Connect {
            addr: addr.to_owned(),
            message,
        };
        let tls = security.tls_for(addr).map_err(failed)?;
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| failed(format!("no connection within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| failed(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let connection = match tls {
            None => {
                let (reader, writer) = stream.into_split();
                Connection::start(addr, reader, writer)
            }
            Some((connector, name)) => {
                let session =
                    tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, stream))
                        .await
                        .map_err(|_| {
                            failed(format!("no TLS handshake within {CONNECT_TIMEOUT:?}"))
                        })?
                        .map_err(|e| failed(format!("TLS handshake failed: {e}")))?;
                let (reader, writer) = tokio::io::split(session);
                Connection::start(addr, reader, writer)
            }
        };
        // Something listens there; make sure it is a Keel broker (a metrics or HTTP port
        // would otherwise leave every request waiting).
        match connection
            .call_timeout(&Request::ApiVersions, CONNECT_TIMEOUT)
            .await
        {
            Ok(Response::ApiVersions { .. }) => match security.sasl_credentials() {
                None => Ok(connection),
                Some(credentials) => {
                    let mut connection = connection;
                    // Refused credentials are the broker's answer, not a connection
                    // failure: callers do not retry them.
                    let lifetime = crate::sasl::authenticate(&connection, credentials).await?;
                    connection.renew_at =
                        lifetime.map(|l| std::time::Instant::now() + l.mul_f64(0.8));
                    Ok(connection)
                }
            },
            Ok(_) => Err(failed("unexpected answer to ApiVersions".into())),
            Err(Error::Timeout(_)) => Err(failed(format!(
                "no Keel broker answered within {CONNECT_TIMEOUT:?} (is this the metrics port?)"
            ))),
            Err(e) => Err(failed(format!("not a Keel broker: {e}"))),
        }
    }

    fn start(
        addr: &str,
        mut reader: impl tokio::io::AsyncRead + Unpin + Send + 'static,
        mut writer: impl tokio::io::AsyncWrite + Unpin + Send + 'static,
    ) -> Connection {
        let (outbox, mut inbox) = mpsc::channel::<Vec<Bytes>>(1024);
        let pending: Pending = Arc::default();
        let broken = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let address = addr.to_owned();
        let fail_all = {
            let pending = pending.clone();
            let addr = address.clone();
            let broken = broken.clone();
            move |message: String| {
                broken.store(true, Ordering::SeqCst);
                let mut pending = pending.lock().expect("pending lock");
                for (_, sender) in pending.drain() {
                    let _ = sender.send(Err(Error::Io {
                        addr: addr.clone(),
                        message: message.clone(),
                    }));
                }
            }
        };
        let fail_writer = fail_all.clone();
        tokio::spawn(async move {
            while let Some(mut frame) = inbox.recv().await {
                if let Err(e) = write_parts(&mut writer, &mut frame).await {
                    fail_writer(e.to_string());
                    return;
                }
            }
        });
        let routes = pending.clone();
        tokio::spawn(async move {
            let mut buffer = BytesMut::with_capacity(64 * 1024);
            loop {
                loop {
                    match check_response(&buffer, RESPONSE_BYTES_MAX) {
                        Ok(Some(frame)) => {
                            let bytes = buffer.split_to(frame.frame_len).freeze();
                            let correlation = frame.header.correlation_id.get();
                            let code = ErrorCode::from_u16(frame.header.error_code.get());
                            let sender = routes.lock().expect("pending lock").remove(&correlation);
                            match sender {
                                Some(sender) => {
                                    let _ = sender.send(Ok((code, bytes.slice(frame.body()))));
                                }
                                None if correlation == 0 && code != ErrorCode::None => {
                                    fail_all(format!(
                                        "broker closed the connection: {}",
                                        code.message()
                                    ));
                                    return;
                                }
                                // The request timed out and was forgotten.
                                None => tracing::debug!(correlation, "late response dropped"),
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            fail_all(e.to_string());
                            return;
                        }
                    }
                }
                match reader.read_buf(&mut buffer).await {
                    Ok(0) => {
                        fail_all("closed by the broker".into());
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        fail_all(e.to_string());
                        return;
                    }
                }
            }
        });
        Connection {
            addr: address,
            outbox,
            pending,
            next_correlation: Arc::new(AtomicU32::new(1)),
            broken,
            renew_at: None,
        }
    }

    /// Whether the connection has failed, or its SASL session is near its end (a new one
    /// is needed).
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
            || self
                .renew_at
                .is_some_and(|at| std::time::Instant::now() >= at)
    }

    /// The broker's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `request` and waits for its response, at most [`REQUEST_TIMEOUT`].
    ///
    /// # Errors
    /// Connection failures, [`Error::Timeout`], frame-level broker errors, undecodable
    /// responses.
    pub async fn call(&self, request: &Request) -> Result<Response> {
        self.call_timeout(request, REQUEST_TIMEOUT).await
    }

    /// As [`Connection::call`] with its own deadline. A request that times out is
    /// forgotten (its answer, if it comes, is dropped), so timeouts leave nothing behind.
    ///
    /// # Errors
    /// [`Error::Timeout`], and as [`Connection::call`].
    pub async fn call_timeout(&self, request: &Request, timeout: Duration) -> Result<Response> {
        self.begin(request, timeout).await?.await
    }

    /// Sends `request` now, so requests begun one after another go out in that order, and
    /// returns the wait for its answer (at most `timeout`; a timed-out request is forgotten).
    ///
    /// # Errors
    /// Connection failures (sending); the returned future: as [`Connection::call`].
    pub async fn begin(&self, request: &Request, timeout: Duration) -> Result<Answer> {
        let api = request.api_key();
        let (correlation, receiver) = self.submit(request, true).await?;
        let receiver = receiver.expect("a response is expected");
        let (pending, addr) = (self.pending.clone(), self.addr.clone());
        Ok(Box::pin(async move {
            let answer = match tokio::time::timeout(timeout, receiver).await {
                Ok(answer) => answer,
                Err(_) => {
                    pending.lock().expect("pending lock").remove(&correlation);
                    return Err(Error::Timeout(timeout));
                }
            };
            let (code, body) = answer.map_err(|_| Error::Io {
                addr,
                message: "connection dropped".into(),
            })??;
            if code != ErrorCode::None {
                return Err(Error::broker(code, ""));
            }
            decode(api, body)
        }))
    }

    /// Requests waiting for an answer (for tests of the bound).
    pub fn pending(&self) -> usize {
        self.pending.lock().expect("pending lock").len()
    }

    /// Sends a request that gets no response (produce with acks=0).
    ///
    /// # Errors
    /// Connection failures.
    pub async fn send_only(&self, request: &Request) -> Result<()> {
        self.submit(request, false).await.map(|_| ())
    }

    #[allow(clippy::type_complexity)]
    async fn submit(
        &self,
        request: &Request,
        expect_response: bool,
    ) -> Result<(u32, Option<oneshot::Receiver<Result<(ErrorCode, Bytes)>>>)> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(Error::Io {
                addr: self.addr.clone(),
                message: "connection lost".into(),
            });
        }
        let correlation = self.next_correlation.fetch_add(1, Ordering::Relaxed).max(1);
        // The frame goes out as parts: a produce request's record sets are written from
        // the batches themselves, not copied into the frame.
        let mut parts = Vec::new();
        let mut scratch = BytesMut::new();
        request.encode_parts(&mut scratch, &mut parts)?;
        let body_len: usize = parts.iter().map(Bytes::len).sum();
        let mut prefix =
            BytesMut::with_capacity(FRAME_PREFIX_LEN + parts.first().map_or(0, Bytes::len));
        write_request_prefix(
            &mut prefix,
            request.api_key() as u16,
            0,
            correlation,
            body_len,
        );
        // Small leading fields ride with the prefix: one write fewer.
        if parts.first().is_some_and(|p| p.len() <= SMALL_PART_BYTES) {
            prefix.extend_from_slice(&parts.remove(0));
        }
        let mut frame = Vec::with_capacity(parts.len() + 1);
        frame.push(prefix.freeze());
        frame.extend(parts);
        let receiver = expect_response.then(|| {
            let (sender, receiver) = oneshot::channel();
            self.pending
                .lock()
                .expect("pending lock")
                .insert(correlation, sender);
            receiver
        });
        if self.outbox.send(frame).await.is_err() {
            self.pending
                .lock()
                .expect("pending lock")
                .remove(&correlation);
            return Err(Error::Io {
                addr: self.addr.clone(),
                message: "connection closed".into(),
            });
        }
        Ok((correlation, receiver))
    }
}

fn decode(api: ApiKey, body: Bytes) -> Result<Response> {
    Response::decode(api, body).map_err(|e| Error::Protocol(e.to_string()))
}

/// Bytes of a request frame before its body: length and header.
const FRAME_PREFIX_LEN: usize = 14;

/// A leading body part up to this size is copied behind the frame prefix.
const SMALL_PART_BYTES: usize = 4096;

/// Writes every part, in order, with vectored writes.
async fn write_parts(
    writer: &mut (impl tokio::io::AsyncWrite + Unpin),
    parts: &mut [Bytes],
) -> std::io::Result<()> {
    use bytes::Buf;
    use tokio::io::AsyncWriteExt;
    let mut first = 0;
    while first < parts.len() {
        let slices: Vec<std::io::IoSlice<'_>> = parts[first..]
            .iter()
            .take(64)
            .map(|p| std::io::IoSlice::new(p))
            .collect();
        let mut written = writer.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let part = &mut parts[first];
            if written >= part.len() {
                written -= part.len();
                first += 1;
            } else {
                part.advance(written);
                written = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Takes at most 3 bytes per write, from as many slices as it is given.
    struct Trickle(Vec<u8>);

    impl tokio::io::AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let n = buf.len().min(3);
            self.0.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            let mut left = 3;
            for buf in bufs {
                let n = buf.len().min(left);
                self.0.extend_from_slice(&buf[..n]);
                left -= n;
                if left == 0 {
                    break;
                }
            }
            Poll::Ready(Ok(3 - left))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn parts_are_written_whole_and_in_order_through_short_writes() {
        let mut parts: Vec<Bytes> = ["ab", "", "cdefg", "h", "ijklmnopq"]
            .iter()
            .map(|s| Bytes::from(s.to_string()))
            .collect();
        let mut out = Trickle(Vec::new());
        write_parts(&mut out, &mut parts).await.unwrap();
        assert_eq!(out.0, b"abcdefghijklmnopq");
    }
}
