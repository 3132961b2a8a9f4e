//! A client connection's bytes: plain TCP, or TLS over it, as a read half and a write half
//! that proceed independently (the reader reads requests while the writer sends answers).

use crate::security::{tls::Tls, Certificate};
use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

type TlsStream = futures_rustls::server::TlsStream<TcpStream>;

/// What a connection reads from.
pub enum Reader {
    /// The socket itself.
    Plain(TcpStream),
    /// Decrypted bytes of the TLS session.
    Tls(futures_lite::io::ReadHalf<TlsStream>),
}

/// What a connection writes to.
pub struct Writer {
    inner: WriterInner,
    socket: RawFd,
}

enum WriterInner {
    /// A second descriptor of the socket.
    Plain(TcpStream),
    /// The TLS session, shared with the reader.
    Tls(futures_lite::io::WriteHalf<TlsStream>),
}

impl Writer {
    /// The socket's descriptor (to shut it down).
    pub fn socket(&self) -> RawFd {
        self.socket
    }
}

/// Splits a plain connection: the writer gets its own descriptor of the socket, so neither
/// half waits for the other.
///
/// # Errors
/// The descriptor cannot be duplicated (out of descriptors).
pub fn plain(stream: TcpStream) -> std::io::Result<(Reader, Writer)> {
    // Close-on-exec as every other descriptor: a process started from this one must not
    // hold the connection open.
    // SAFETY: fcntl(2) F_DUPFD_CLOEXEC of a descriptor we own.
    let write_fd = unsafe { libc::fcntl(stream.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if write_fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `write_fd` is a fresh descriptor of a connected TCP socket, owned from here on.
    let writer = unsafe { <TcpStream as std::os::fd::FromRawFd>::from_raw_fd(write_fd) };
    let socket = writer.as_raw_fd();
    Ok((
        Reader::Plain(stream),
        Writer {
            inner: WriterInner::Plain(writer),
            socket,
        },
    ))
}

/// Runs the TLS handshake of `stream` (within `within`) and splits the session; with the
/// what the client's certificate says, if it showed one. `None` when the handshake
/// failed or timed out (logged: an untrusted or expired certificate, a client that does not
/// speak TLS).
pub async fn tls(
    stream: TcpStream,
    tls: &Tls,
    within: Duration,
    peer: &str,
) -> Option<(Reader, Writer, Option<Certificate>)> {
    let socket = stream.as_raw_fd();
    let handshake = tls.acceptor().accept(stream);
    let session = futures_lite::future::or(async { Some(handshake.await) }, async {
        glommio::timer::sleep(within).await;
        None
    })
    .await;
    let session = match session {
        Some(Ok(session)) => session,
        Some(Err(e)) => {
            tracing::info!(target: "keel::audit", %peer, error = %e, "TLS handshake failed");
            return None;
        }
        None => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return None;
        }
    };
    let certificate = tls.certificate(session.get_ref().1.peer_certificates());
    let (read, write) = futures_lite::io::split(session);
    Some((
        Reader::Tls(read),
        Writer {
            inner: WriterInner::Tls(write),
            socket,
        },
        certificate,
    ))
}

impl AsyncRead for Reader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Reader::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Reader::Tls(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Writer {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().inner {
            WriterInner::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            WriterInner::Tls(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().inner {
            WriterInner::Plain(stream) => Pin::new(stream).poll_flush(cx),
            WriterInner::Tls(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().inner {
            WriterInner::Plain(stream) => Pin::new(stream).poll_close(cx),
            WriterInner::Tls(stream) => Pin::new(stream).poll_close(cx),
        }
    }
}
