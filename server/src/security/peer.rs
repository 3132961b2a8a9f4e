//! Connections between brokers and controllers: plain TCP, or with
//! `--inter-broker-security SSL` mutual TLS where each side shows the broker's own
//! certificate, which proves its node id (common name `keel-broker-ID`, see
//! [`super::tls::Tls::broker_id`]).

use super::Stores;
use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// A connection to or from another broker.
pub enum PeerStream {
    /// Plain TCP (a trusted network).
    Plain(TcpStream),
    /// TLS we started.
    Client(Box<futures_rustls::client::TlsStream<TcpStream>>),
    /// TLS a peer started.
    Server(Box<futures_rustls::server::TlsStream<TcpStream>>),
}

/// How this broker reaches its peers and accepts them.
#[derive(Clone, Debug)]
pub struct PeerSecurity(Option<Arc<Stores>>);

impl PeerSecurity {
    /// TLS between brokers when `tls` (the stores hold the certificates), plain otherwise.
    pub fn new(stores: &Arc<Stores>, tls: bool) -> PeerSecurity {
        PeerSecurity(tls.then(|| stores.clone()))
    }

    /// Whether peers must prove who they are.
    pub fn authenticates(&self) -> bool {
        self.0.is_some()
    }

    /// Connects to the peer at `address` within `timeout` (TCP and, with TLS, the
    /// handshake, which checks the peer's certificate against the CA for that address).
    ///
    /// # Errors
    /// The connection or handshake failed or took too long.
    pub async fn connect(
        &self,
        address: SocketAddr,
        timeout: Duration,
    ) -> std::io::Result<PeerStream> {
        let stream = TcpStream::connect_timeout(address, timeout)
            .await
            .map_err(std::io::Error::from)?;
        let _ = stream.set_nodelay(true);
        let Some(connector) = self.0.as_ref().and_then(|s| s.tls.as_ref()?.connector()) else {
            return Ok(PeerStream::Plain(stream));
        };
        let name = rustls::pki_types::ServerName::IpAddress(address.ip().into());
        let handshake = connector.connect(name, stream);
        match within(handshake, timeout).await {
            Some(Ok(tls)) => Ok(PeerStream::Client(Box::new(tls))),
            Some(Err(e)) => Err(e),
            None => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    /// Accepts a peer's connection: with TLS, its handshake within `timeout` and the node
    /// id its certificate proves (`None` without TLS).
    ///
    /// # Errors
    /// The handshake failed or took too long, or the certificate names no broker.
    pub async fn accept(
        &self,
        stream: TcpStream,
        timeout: Duration,
    ) -> std::io::Result<(PeerStream, Option<u32>)> {
        let _ = stream.set_nodelay(true);
        let Some(tls) = self.0.as_ref().and_then(|s| s.tls.as_ref()) else {
            return Ok((PeerStream::Plain(stream), None));
        };
        let session = match within(tls.acceptor().accept(stream), timeout).await {
            Some(session) => session?,
            None => return Err(std::io::ErrorKind::TimedOut.into()),
        };
        let id = super::tls::Tls::broker_id(session.get_ref().1.peer_certificates()).ok_or_else(
            || {
                std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "the peer's certificate names no broker (common name keel-broker-ID)",
                )
            },
        )?;
        Ok((PeerStream::Server(Box::new(session)), Some(id)))
    }
}

async fn within<T>(work: impl std::future::Future<Output = T>, timeout: Duration) -> Option<T> {
    futures_lite::future::or(async { Some(work.await) }, async {
        glommio::timer::sleep(timeout).await;
        None
    })
    .await
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            PeerStream::Client(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            PeerStream::Server(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            PeerStream::Client(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            PeerStream::Server(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            PeerStream::Client(s) => Pin::new(s.as_mut()).poll_flush(cx),
            PeerStream::Server(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_close(cx),
            PeerStream::Client(s) => Pin::new(s.as_mut()).poll_close(cx),
            PeerStream::Server(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}
