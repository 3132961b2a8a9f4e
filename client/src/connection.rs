//! One connection to a broker: requests are written by a writer task and responses routed
//! back by correlation id, so many requests can be in flight (pipelining).

use crate::error::{Error, Result};
use bytes::{Bytes, BytesMut};
use keel_protocol::api::{ApiKey, ErrorCode, Request, Response};
use keel_protocol::frame::{check_response, write_request};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

type Pending = Arc<Mutex<HashMap<u32, oneshot::Sender<Result<(ErrorCode, Bytes)>>>>>;

/// Largest response frame the client accepts.
const RESPONSE_BYTES_MAX: u32 = 512 << 20;

/// A pipelined connection. Cheap to clone.
#[derive(Clone)]
pub struct Connection {
    addr: String,
    outbox: mpsc::Sender<BytesMut>,
    pending: Pending,
    next_correlation: Arc<AtomicU32>,
    /// Set when the connection failed: later requests fail at once.
    broken: Arc<std::sync::atomic::AtomicBool>,
}

impl Connection {
    /// Connects to `addr`.
    ///
    /// # Errors
    /// [`Error::Connect`] naming the address.
    pub async fn connect(addr: &str) -> Result<Connection> {
        let stream = TcpStream::connect(addr).await.map_err(|e| Error::Connect {
            addr: addr.to_owned(),
            message: e.to_string(),
        })?;
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = stream.into_split();
        let (outbox, mut inbox) = mpsc::channel::<BytesMut>(1024);
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
            while let Some(frame) = inbox.recv().await {
                if let Err(e) = writer.write_all(&frame).await {
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
                                None => tracing::warn!(correlation, "response nobody waits for"),
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
        Ok(Connection {
            addr: address,
            outbox,
            pending,
            next_correlation: Arc::new(AtomicU32::new(1)),
            broken,
        })
    }

    /// Whether the connection has failed (a new one is needed).
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }

    /// The broker's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `request` and waits for its response (no timeout; see [`Connection::call_timeout`]).
    ///
    /// # Errors
    /// Connection failures, frame-level broker errors, undecodable responses.
    pub async fn call(&self, request: &Request) -> Result<Response> {
        let api = request.api_key();
        let receiver = self
            .submit(request, true)
            .await?
            .expect("a response is expected");
        let (code, body) = receiver.await.map_err(|_| Error::Io {
            addr: self.addr.clone(),
            message: "connection dropped".into(),
        })??;
        if code != ErrorCode::None {
            return Err(Error::broker(code, ""));
        }
        decode(api, body)
    }

    /// As [`Connection::call`] with a deadline.
    ///
    /// # Errors
    /// [`Error::Timeout`], and as [`Connection::call`].
    pub async fn call_timeout(
        &self,
        request: &Request,
        timeout: std::time::Duration,
    ) -> Result<Response> {
        tokio::time::timeout(timeout, self.call(request))
            .await
            .map_err(|_| Error::Timeout(timeout))?
    }

    /// Sends a request that gets no response (produce with acks=0).
    ///
    /// # Errors
    /// Connection failures.
    pub async fn send_only(&self, request: &Request) -> Result<()> {
        self.submit(request, false).await.map(|_| ())
    }

    async fn submit(
        &self,
        request: &Request,
        expect_response: bool,
    ) -> Result<Option<oneshot::Receiver<Result<(ErrorCode, Bytes)>>>> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(Error::Io {
                addr: self.addr.clone(),
                message: "connection lost".into(),
            });
        }
        let correlation = self.next_correlation.fetch_add(1, Ordering::Relaxed).max(1);
        let mut body = BytesMut::new();
        request.encode(&mut body)?;
        let mut frame = BytesMut::with_capacity(body.len() + 14);
        write_request(&mut frame, request.api_key() as u16, 0, correlation, &body);
        let receiver = expect_response.then(|| {
            let (sender, receiver) = oneshot::channel();
            self.pending
                .lock()
                .expect("pending lock")
                .insert(correlation, sender);
            receiver
        });
        self.outbox.send(frame).await.map_err(|_| Error::Io {
            addr: self.addr.clone(),
            message: "connection closed".into(),
        })?;
        Ok(receiver)
    }
}

fn decode(api: ApiKey, body: Bytes) -> Result<Response> {
    Response::decode(api, body).map_err(|e| Error::Protocol(e.to_string()))
}
