//! A connection to a source cluster's broker over the Kafka protocol (glommio): framed
//! request/response with a deadline and a bounded answer, TLS (rustls; the source's
//! certificate checked against the link's CA file and the address's host, and a client
//! certificate for mTLS) and SASL (PLAIN, SCRAM-SHA-256/512) with Kafka's SaslHandshake v1
//! and SaslAuthenticate v1, as the link's source settings ask. What the frames hold is `keel_kafka::source`'s.

use crate::security::peer::PeerStream;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use keel_auth::scram::ScramClient;
use keel_auth::Mechanism;
use std::collections::BTreeMap;
use std::time::Duration;

/// Largest answer frame accepted from a source broker.
pub const FRAME_MAX: usize = 64 << 20;
/// How long connecting, authenticating and each exchange may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The client id the link shows the source.
pub const CLIENT_ID: &str = "keel-link";

/// One source broker connection.
pub struct SourceConnection {
    stream: PeerStream,
    correlation: i32,
}

async fn within<T>(
    what: &str,
    work: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    futures_lite::future::or(work, async {
        glommio::timer::sleep(CALL_TIMEOUT).await;
        Err(format!(
            "{what}: no answer within {} s",
            CALL_TIMEOUT.as_secs()
        ))
    })
    .await
}

impl SourceConnection {
    /// Connects to `address` and authenticates as the link's `config` says.
    ///
    /// # Errors
    /// Unreachable, refused credentials, or a security protocol not offered here, in words.
    pub async fn connect(
        address: &str,
        config: &BTreeMap<String, String>,
    ) -> Result<SourceConnection, String> {
        let protocol = config
            .get("security.protocol")
            .map_or("PLAINTEXT", String::as_str);
        let (tls, sasl) = match protocol {
            "PLAINTEXT" => (false, false),
            "SASL_PLAINTEXT" => (false, true),
            "SSL" => (true, false),
            "SASL_SSL" => (true, true),
            other => {
                return Err(format!(
                    "source security.protocol {other}: PLAINTEXT, SASL_PLAINTEXT, SSL or SASL_SSL"
                ))
            }
        };
        // The files first: a bad setting is said as such, not as an unreachable source.
        let tls = if tls { Some(connector(config)?) } else { None };
        let stream = within(&format!("connecting to {address}"), async {
            TcpStream::connect(address)
                .await
                .map_err(|e| format!("connecting to {address}: {e}"))
        })
        .await?;
        let _ = stream.set_nodelay(true);
        let stream = match tls {
            None => PeerStream::Plain(stream),
            Some(connector) => {
                let name = server_name(address)?;
                let session = within("the TLS handshake", async {
                    connector
                        .connect(name, stream)
                        .await
                        .map_err(|e| format!("TLS with {address}: {e}"))
                })
                .await?;
                PeerStream::Client(Box::new(session))
            }
        };
        let mut connection = SourceConnection {
            stream,
            correlation: 0,
        };
        if sasl {
            within("SASL", connection.authenticate(config)).await?;
        }
        Ok(connection)
    }

    /// The next correlation id (a request is built with it, then [`Self::call`]ed).
    pub fn next_correlation(&mut self) -> i32 {
        self.correlation = self.correlation.wrapping_add(1);
        self.correlation
    }

    /// Sends a whole frame (size prefix included) and returns the answer's body (after the
    /// size), checked to carry `correlation`.
    ///
    /// # Errors
    /// I/O, a deadline, an over-long or mismatched answer.
    pub async fn call(&mut self, frame: &[u8], correlation: i32) -> Result<Bytes, String> {
        self.send(frame).await?;
        self.receive(correlation).await
    }

    /// Sends a whole frame; its answer is read by [`Self::receive`] (answers come in the
    /// order the requests were sent, so one may be sent before the last is read).
    ///
    /// # Errors
    /// I/O or a deadline.
    pub async fn send(&mut self, frame: &[u8]) -> Result<(), String> {
        within("the source", async {
            self.stream
                .write_all(frame)
                .await
                .map_err(|e| format!("sending: {e}"))
        })
        .await
    }

    /// Reads the next answer's body (after the size), checked to carry `correlation`.
    ///
    /// # Errors
    /// I/O, a deadline, an over-long or mismatched answer.
    pub async fn receive(&mut self, correlation: i32) -> Result<Bytes, String> {
        within("the source", async {
            let mut size = [0u8; 4];
            self.stream.read_exact(&mut size).await.map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    "the connection closed without an answer: not a Kafka broker (or a TLS listener)?".to_owned()
                } else {
                    format!("reading: {e}")
                }
            })?;
            let size = i32::from_be_bytes(size);
            let size = usize::try_from(size)
                .ok()
                .filter(|s| (4..=FRAME_MAX).contains(s))
                .ok_or_else(|| format!("an answer of {size} bytes: not a Kafka broker?"))?;
            let mut body = vec![0u8; size];
            self.stream
                .read_exact(&mut body)
                .await
                .map_err(|e| format!("reading: {e}"))?;
            let answered = (&body[..4]).get_i32();
            if answered != correlation {
                return Err(format!(
                    "answer {answered} to request {correlation}: not a Kafka broker?"
                ));
            }
            Ok(Bytes::from(body))
        })
        .await
    }

    async fn authenticate(&mut self, config: &BTreeMap<String, String>) -> Result<(), String> {
        let name = config.get("sasl.mechanism").map_or("PLAIN", String::as_str);
        let mechanism = Mechanism::parse(name).ok_or_else(|| {
            format!("sasl.mechanism {name}: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
        })?;
        let user = config.get("sasl.username").cloned().unwrap_or_default();
        let password = config.get("sasl.password").cloned().unwrap_or_default();
        self.handshake(name).await?;
        match mechanism.scram() {
            None => {
                self.step(&keel_auth::plain::message(&user, &password))
                    .await?;
            }
            Some(hash) => {
                let mut nonce = [0u8; 24];
                getrandom::getrandom(&mut nonce).map_err(|e| format!("no randomness: {e}"))?;
                let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
                let mut client = ScramClient::new(hash, &user, &password, &nonce);
                let server_first = self.step(&client.first()).await?;
                let reply = client
                    .reply(&server_first)
                    .map_err(|e| format!("SASL: {e}"))?;
                let server_final = self.step(&reply).await?;
                client
                    .verify(&server_final)
                    .map_err(|e| format!("SASL: the source's signature: {e}"))?;
            }
        }
        Ok(())
    }

    /// A request frame with header v1 (the SASL APIs' versions here are not flexible).
    fn frame(&mut self, api_key: i16, version: i16, body: &[u8]) -> (BytesMut, i32) {
        let correlation = self.next_correlation();
        let frame = keel_kafka::source::request_frame(
            (api_key, version),
            correlation,
            CLIENT_ID,
            false,
            |out| out.put_slice(body),
        );
        (frame, correlation)
    }

    async fn handshake(&mut self, mechanism: &str) -> Result<(), String> {
        let mut body = BytesMut::new();
        body.put_i16(mechanism.len() as i16);
        body.put_slice(mechanism.as_bytes());
        let (frame, correlation) = self.frame(17, 1, &body);
        let mut answer = self.call(&frame, correlation).await?;
        answer.advance(4);
        match short(&mut answer)? {
            0 => Ok(()),
            code => Err(format!(
                "SASL: the source refused mechanism {mechanism} (Kafka error {code})"
            )),
        }
    }

    /// One SaslAuthenticate v1: the source's message.
    async fn step(&mut self, message: &[u8]) -> Result<Vec<u8>, String> {
        let mut body = BytesMut::new();
        body.put_i32(message.len() as i32);
        body.put_slice(message);
        let (frame, correlation) = self.frame(36, 1, &body);
        let mut answer = self.call(&frame, correlation).await?;
        answer.advance(4);
        let code = short(&mut answer)?;
        let text = nullable_string(&mut answer)?;
        if code != 0 {
            return Err(format!(
                "SASL: the source refused the credentials (Kafka error {code}: {})",
                text.unwrap_or_default()
            ));
        }
        if answer.remaining() < 4 {
            return Err("SASL: a truncated answer".into());
        }
        let len = usize::try_from(answer.get_i32()).unwrap_or(0);
        if answer.remaining() < len {
            return Err("SASL: a truncated answer".into());
        }
        Ok(answer.split_to(len).to_vec())
    }
}

/// What makes TLS connections to the source, from the link's `ssl.*` settings: the CA
/// file its certificates chain to, and a certificate and key to show it (mTLS), read from
/// each destination broker's filesystem.
fn connector(config: &BTreeMap<String, String>) -> Result<futures_rustls::TlsConnector, String> {
    let path = |key: &str| config.get(key).map(std::path::Path::new);
    let ca = path("ssl.ca.location")
        .ok_or("source security.protocol SSL needs ssl.ca.location (the CA's PEM file)")?;
    let identity = match (path("ssl.certificate.location"), path("ssl.key.location")) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => {
            return Err(
                "source ssl.certificate.location and ssl.key.location go together".to_owned(),
            )
        }
    };
    let config = crate::security::tls::client_config(ca, identity)
        .map_err(|e| format!("source TLS settings: {e:#}"))?;
    Ok(futures_rustls::TlsConnector::from(config))
}

/// The name the source's certificate must carry: the host of `address` (`HOST:PORT`).
fn server_name(address: &str) -> Result<rustls::pki_types::ServerName<'static>, String> {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|_| format!("{address}: not a host name or address TLS can check"))
}

/// The connection to `address` in `connections`, made (and authenticated) if absent.
///
/// # Errors
/// As [`SourceConnection::connect`].
pub async fn cached<'a>(
    connections: &'a mut std::collections::HashMap<String, SourceConnection>,
    address: &str,
    config: &BTreeMap<String, String>,
) -> Result<&'a mut SourceConnection, String> {
    if !connections.contains_key(address) {
        let connection = SourceConnection::connect(address, config).await?;
        connections.insert(address.to_owned(), connection);
    }
    Ok(connections.get_mut(address).expect("inserted above"))
}

/// One request and its answer's body on `connection`: `request` builds the frame for a
/// correlation id.
///
/// # Errors
/// As [`SourceConnection::call`].
pub async fn ask(
    connection: &mut SourceConnection,
    request: impl FnOnce(i32) -> bytes::BytesMut,
) -> Result<Bytes, String> {
    let correlation = connection.next_correlation();
    let frame = request(correlation);
    connection.call(&frame, correlation).await
}

fn short(answer: &mut Bytes) -> Result<i16, String> {
    if answer.remaining() < 2 {
        return Err("a truncated answer: not a Kafka broker?".into());
    }
    Ok(answer.get_i16())
}

fn nullable_string(answer: &mut Bytes) -> Result<Option<String>, String> {
    let len = short(answer)?;
    let Ok(len) = usize::try_from(len) else {
        return Ok(None);
    };
    if answer.remaining() < len {
        return Err("a truncated answer".into());
    }
    Ok(Some(
        String::from_utf8_lossy(&answer.split_to(len)).into_owned(),
    ))
}
