//! One client connection: frames in, requests handled in order, responses out. Many requests
//! may be in flight (pipelining); responses follow request order.

use crate::handlers::{self, Outgoing, Part};
use crate::security::{SecurityProtocol, Session};
use crate::shard::Shard;
use crate::stream::Reader;
pub use crate::stream::Writer;
use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use keel_auth::quota::QuotaKind;
use keel_protocol::api::{ErrorCode, Request};
use keel_protocol::frame::{announced_len, check_request, response_prefix, FrameError};
use keel_protocol::wire::DecodeError;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Bytes read from a socket at once: each connection's read buffer, outside the request
/// budget (bounded by the connection limit).
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// A connection's first read, before its read buffers are made.
const FIRST_READ_BYTES: usize = 64;

/// A request's bytes, counted against the shard's request budget until its response is sent.
type Permit = glommio::sync::StaticPermit;

type Pending<A> = (glommio::Task<Option<A>>, Permit);

/// Takes permits for a frame of `len` bytes from the shard's request budget, waiting
/// (and so not reading the socket: backpressure) while other requests hold it.
pub async fn reserve(shard: &Shard, len: usize) -> Option<Permit> {
    let units = (len as u64).min(shard.request_budget_bytes);
    let started = Instant::now();
    if shard.request_budget.available() < units {
        shard.metrics.request_budget_waits.inc();
    }
    let permit = shard
        .request_budget
        .acquire_static_permit(units)
        .await
        .ok()?;
    shard
        .metrics
        .request_budget_wait_seconds
        .inc_by(started.elapsed().as_secs_f64());
    Some(permit)
}

/// Serves a connection until the peer closes it, sends an unframeable request, or the
/// broker shuts down. Requests are handled concurrently as they arrive (pipelining), and a
/// writer task sends the responses strictly in request order.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream, stopping: Rc<std::cell::Cell<bool>>) {
    serve_wire::<Native>(shard, stream, stopping, 0).await
}

/// A wire protocol a connection speaks: how frames are cut from the stream, handled, and
/// answered.
pub trait Wire: 'static {
    /// A response ready to send.
    type Answer: 'static;
    /// The size of the first frame in `buf` once it is all there; `Err` with the error
    /// (for the metrics) and what to send (if anything) before closing when the stream
    /// cannot be read further.
    fn check(buf: &[u8], max: u32) -> Result<Option<usize>, (ErrorCode, Option<Self::Answer>)>;
    /// The announced size of the frame starting `buf`, once its size prefix is in.
    fn announced_len(buf: &[u8]) -> Option<usize>;
    /// The security protocol of the protocol's listener number `listener`.
    fn security(config: &crate::config::Config, listener: usize) -> SecurityProtocol;
    /// Handles one frame of the connection `session`; `None` when no response is due.
    fn handle(
        shard: Rc<Shard>,
        stopping: Rc<std::cell::Cell<bool>>,
        session: Rc<Session>,
        frame: bytes::Bytes,
    ) -> impl std::future::Future<Output = Option<Self::Answer>> + 'static;
    /// Writes an answer.
    fn send(
        stream: &mut Writer,
        answer: Self::Answer,
    ) -> impl std::future::Future<Output = std::io::Result<()>>;
}

/// The native protocol (docs/protocol.md).
pub struct Native;

impl Wire for Native {
    type Answer = (u32, Outgoing);

    fn check(buf: &[u8], max: u32) -> Result<Option<usize>, (ErrorCode, Option<Self::Answer>)> {
        match check_request(buf, max) {
            Ok(frame) => Ok(frame.map(|f| f.frame_len)),
            Err(e) => {
                // The stream cannot be resynchronised: say why, then close.
                let code = match e {
                    FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
                    FrameError::TooShort(_) => ErrorCode::InvalidRequest,
                };
                tracing::debug!(error = %e, "unframeable request");
                Err((code, Some((0, Outgoing::error(code)))))
            }
        }
    }

    fn announced_len(buf: &[u8]) -> Option<usize> {
        announced_len(buf)
    }

    fn security(config: &crate::config::Config, _listener: usize) -> SecurityProtocol {
        config.security.native
    }

    async fn handle(
        shard: Rc<Shard>,
        stopping: Rc<std::cell::Cell<bool>>,
        session: Rc<Session>,
        bytes: bytes::Bytes,
    ) -> Option<Self::Answer> {
        let frame = check_request(&bytes, u32::MAX).ok()??;
        let body = bytes.slice(frame.body());
        let correlation_id = frame.header.correlation_id.get();
        let (api_key, api_version) = (frame.header.api_key.get(), frame.header.api_version.get());
        handle_one(&shard, &stopping, &session, api_key, api_version, body)
            .await
            .map(|outgoing| (correlation_id, outgoing))
    }

    async fn send(stream: &mut Writer, answer: Self::Answer) -> std::io::Result<()> {
        send(stream, answer.0, answer.1).await
    }
}

/// Serves a connection speaking `W` until the peer closes it, sends an unframeable
/// request, stays idle for `connections_max_idle_ms`, or the broker shuts down. Until its
/// first bytes arrive a plain connection holds its socket and a small task only; then its
/// read buffers and writer are made ([`serve_active`]). A TLS connection first completes
/// its handshake (within the same idle time).
pub async fn serve_wire<W: Wire>(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    stopping: Rc<std::cell::Cell<bool>>,
    listener: usize,
) {
    let idle = Duration::from_millis(shard.config.connections_max_idle_ms);
    let protocol = W::security(&shard.config, listener);
    if protocol.tls() {
        // Boxed: an idle plain connection's task must not be as large as a handshake.
        return Box::pin(serve_tls::<W>(shard, stream, stopping, idle, listener)).await;
    }
    let mut first = [0u8; FIRST_READ_BYTES];
    let read = match read_within(&mut stream, &mut first, idle).await {
        Some(Ok(read)) if read > 0 => read,
        _ => return,
    };
    let peer = peer_of(&stream);
    let (reader, writer) = match crate::stream::plain(stream) {
        Ok(halves) => halves,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "cannot duplicate the socket");
            return;
        }
    };
    let session = Rc::new(Session::new(
        peer,
        (protocol, listener),
        shard.config.security.sasl_offer(),
        None,
    ));
    let connection = serve_active::<W>(shard, reader, writer, session, stopping, &first[..read]);
    Box::pin(connection).await
}

/// Serves a TLS connection once its handshake completed within `idle`.
async fn serve_tls<W: Wire>(
    shard: Rc<Shard>,
    stream: TcpStream,
    stopping: Rc<std::cell::Cell<bool>>,
    idle: Duration,
    listener: usize,
) {
    // The configuration makes TLS settings for every TLS listener.
    let Some(tls) = shard.security.tls.as_ref() else {
        return;
    };
    let peer = peer_of(&stream);
    let Some((reader, writer, certificate)) = crate::stream::tls(stream, tls, idle, &peer).await
    else {
        return;
    };
    let session = Rc::new(Session::new(
        peer,
        (W::security(&shard.config, listener), listener),
        shard.config.security.sasl_offer(),
        certificate,
    ));
    serve_active::<W>(shard, reader, writer, session, stopping, &[]).await
}

fn peer_of(stream: &TcpStream) -> Rc<str> {
    stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default()
        .into()
}

/// Reads into `into`, or `None` when nothing came for `idle`.
async fn read_within(
    stream: &mut (impl futures_lite::AsyncRead + Unpin),
    into: &mut [u8],
    idle: Duration,
) -> Option<std::io::Result<usize>> {
    futures_lite::future::or(async { Some(stream.read(into).await) }, async {
        glommio::timer::sleep(idle).await;
        None
    })
    .await
}

/// Serves a connection whose first bytes were `first`. Requests are handled concurrently
/// as they arrive (pipelining), and a writer task sends the responses strictly in request
/// order.
async fn serve_active<W: Wire>(
    shard: Rc<Shard>,
    mut reader: Reader,
    mut writer: Writer,
    session: Rc<Session>,
    stopping: Rc<std::cell::Cell<bool>>,
    first: &[u8],
) {
    let peer = session.peer.clone();
    let (queue, pending) = glommio::channels::local_channel::new_bounded::<Pending<W::Answer>>(
        shard.config.connection_requests_max,
    );
    let writer_task = glommio::spawn_local(async move {
        while let Some((task, permit)) = pending.recv().await {
            if let Some(answer) = task.await {
                W::send(&mut writer, answer).await?;
            }
            // The request's bytes stop counting once its answer is out.
            drop(permit);
        }
        std::io::Result::Ok(())
    });
    let mut buffer = BytesMut::with_capacity(READ_CHUNK_BYTES);
    buffer.extend_from_slice(first);
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let idle = Duration::from_millis(shard.config.connections_max_idle_ms);
    // Permits already taken for the large frame being read.
    let mut reserved: Option<Permit> = None;
    'connection: loop {
        loop {
            match W::check(&buffer, shard.config.frame_bytes_max) {
                Ok(Some(frame_len)) => {
                    let permit = match reserved.take() {
                        Some(permit) => permit,
                        None => match reserve(&shard, frame_len).await {
                            Some(permit) => permit,
                            None => break 'connection,
                        },
                    };
                    let bytes = buffer.split_to(frame_len).freeze();
                    let task = glommio::spawn_local(W::handle(
                        shard.clone(),
                        stopping.clone(),
                        session.clone(),
                        bytes,
                    ));
                    if queue.send((task, permit)).await.is_err() {
                        break 'connection;
                    }
                }
                Ok(None) => break,
                Err((code, answer)) => {
                    tracing::debug!(%peer, "unframeable request, closing");
                    shard.metrics.request_error("invalid", code);
                    if let Some(answer) = answer {
                        let task = glommio::spawn_local(async move { Some(answer) });
                        if let Some(permit) = reserve(&shard, 0).await {
                            let _ = queue.send((task, permit)).await;
                        }
                    }
                    break 'connection;
                }
            }
        }
        if stopping.get() {
            break;
        }
        // A frame larger than the read buffer is paid for before its body is read, so
        // connections waiting for budget hold no more than their read buffer: whoever holds
        // budget holds whole frames, and finishing them frees it.
        if reserved.is_none() {
            if let Some(len) = W::announced_len(&buffer).filter(|len| *len > READ_CHUNK_BYTES) {
                match reserve(&shard, len).await {
                    Some(permit) => reserved = Some(permit),
                    None => break,
                }
                // Room for the whole frame at once: growing the buffer step by step would
                // copy what was read so far at every step. (Paid for by the permit above.)
                buffer.reserve(len.saturating_sub(buffer.len()));
            }
        }
        // A client over its quota: its next request is not read until its throttle time
        // has passed (Kafka mutes the channel the same way), or the broker stops.
        if let Some(pause) = session.throttled_for() {
            let until = Instant::now() + pause;
            while !stopping.get() && Instant::now() < until {
                let left = until.saturating_duration_since(Instant::now());
                glommio::timer::sleep(left.min(Duration::from_millis(100))).await;
            }
        }
        // A connection that sends nothing for `connections_max_idle_ms` is closed (what
        // it asked is still answered first).
        match read_within(&mut reader, &mut chunk, idle).await {
            None => {
                tracing::debug!(%peer, "idle, closing");
                break;
            }
            Some(Ok(0) | Err(_)) => break,
            Some(Ok(read)) => buffer.extend_from_slice(&chunk[..read]),
        }
    }
    drop(queue);
    if let Err(e) = writer_task.await {
        tracing::debug!(%peer, error = %e, "write failed, closing");
    }
}

/// The authorization error `request` gets from the ACLs, if any (without an authorizer
/// only admin changes are asked, for their audit line).
fn refused(shard: &Shard, session: &Session, request: &Request) -> Option<ErrorCode> {
    if !shard.security.acls.enabled() && !crate::native_acls::is_admin(request) {
        return None;
    }
    crate::native_acls::refusal(&crate::security::gate::Gate::new(shard, session), request)
}

/// Whether a request that speaks for a broker comes from that broker: with
/// `--inter-broker-security SSL` a replica fetch must come from a connection whose
/// certificate proves the follower it names (otherwise anyone could move a leader's high
/// watermark by fetching as a follower). Refusals are logged.
fn speaks_for_itself(shard: &Shard, session: &Session, request: &Request) -> bool {
    let Request::ReplicaFetch(fetch) = request else {
        return true;
    };
    if !shard.config.security.inter_broker_tls {
        return true;
    }
    let proven = session.certificate.as_ref().and_then(|c| c.broker);
    if proven == Some(fetch.replica_id) {
        return true;
    }
    tracing::warn!(target: "keel::audit", peer = %session.peer, follower = fetch.replica_id, ?proven, "replica fetch refused: the connection is not that follower's");
    false
}

/// The record bytes a produce request carries (what its byte-rate quota counts).
fn produced_bytes(request: &Request) -> Option<u64> {
    let Request::Produce { topics, .. } = request else {
        return None;
    };
    let bytes = topics
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| p.records.len() as u64)
        .sum();
    Some(bytes)
}

/// Charges a native request to its user's quotas (the native protocol names no client
/// id: the user's and the default client's entries apply): the record bytes of a
/// produce, the bytes of a fetch's answer (`fetched`), and the handling time of every
/// request.
fn charge_quotas(
    shard: &Shard,
    session: &Session,
    produced: Option<u64>,
    fetched: Option<&Outgoing>,
    busy: Duration,
) {
    use crate::security::quotas::charge;
    if !shard.security.quotas.any() {
        return;
    }
    if let Some(bytes) = produced {
        charge(shard, session, "", QuotaKind::Produce, bytes);
    }
    if let Some(fetched) = fetched {
        let bytes: usize = fetched.parts.iter().map(Part::len).sum();
        charge(shard, session, "", QuotaKind::Fetch, bytes as u64);
    }
    let micros = u64::try_from(busy.as_micros()).unwrap_or(u64::MAX);
    charge(shard, session, "", QuotaKind::Request, micros);
}

async fn handle_one(
    shard: &Rc<Shard>,
    stopping: &std::cell::Cell<bool>,
    session: &Session,
    api_key: u16,
    api_version: u16,
    body: bytes::Bytes,
) -> Option<Outgoing> {
    let peer = &*session.peer;
    if stopping.get() {
        return Some(Outgoing::error(ErrorCode::ShuttingDown));
    }
    let started = Instant::now();
    match Request::decode(api_key, api_version, body) {
        Ok(request) if !speaks_for_itself(shard, session, &request) => {
            shard.metrics.peer_claims_refused.inc();
            Some(Outgoing::error(ErrorCode::ClusterAuthorizationFailed))
        }
        Ok(request) => {
            // A cluster broker still reading its users and ACLs holds clients' requests
            // (bounded); another broker's are not decided by them.
            if !session.is_broker()
                && !matches!(request, Request::ReplicaFetch(_) | Request::ApiVersions)
            {
                crate::security::settle::ready(shard).await;
            }
            let refusal = crate::native_security::unauthenticated(session, &request)
                .or_else(|| refused(shard, session, &request));
            if let Some(code) = refusal {
                let api = request.api_key().name();
                shard.metrics.api(api).requests.inc();
                shard.metrics.request_error(api, code);
                return Some(Outgoing::error(code));
            }
            let api = request.api_key().name();
            let produced = produced_bytes(&request);
            let fetch = matches!(request, Request::Fetch { .. });
            // Replication is never throttled (Kafka exempts inter-broker requests): a
            // follower's fetch, or anything a broker's certificate sends.
            let exempt = session.is_broker() || matches!(request, Request::ReplicaFetch(_));
            let serve = async {
                match request {
                    Request::Security(request) => {
                        Some(crate::native_security::handle(shard, session, request).await)
                    }
                    // With the authorizer on, per topic or filtered, as Kafka's.
                    request => match crate::native_acls::serve(shard, session, request).await {
                        Ok(answer) => answer,
                        Err(request) => handlers::handle(shard, request).await,
                    },
                }
            };
            let (outgoing, busy) =
                crate::security::quotas::Timed::new(serve, &shard.security.quotas).await;
            let fetched = outgoing.as_ref().filter(|_| fetch);
            if !exempt {
                charge_quotas(shard, session, produced, fetched, busy);
            }
            let metrics = shard.metrics.api(api);
            metrics.requests.inc();
            let waited = outgoing.as_ref().map_or(Duration::ZERO, |o| o.waited);
            metrics
                .seconds
                .observe(started.elapsed().saturating_sub(waited).as_secs_f64());
            if !waited.is_zero() {
                shard
                    .metrics
                    .fetch_wait_seconds
                    .observe(waited.as_secs_f64());
            }
            for error in outgoing.iter().flat_map(|o| &o.errors) {
                shard.metrics.request_error(api, *error);
            }
            outgoing
        }
        Err(e) => {
            tracing::debug!(%peer, error = %e, "bad request");
            let code = match e {
                DecodeError::UnknownApi(_) => ErrorCode::UnknownApi,
                DecodeError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
                DecodeError::BadValue { field: "acks", .. } => ErrorCode::InvalidRequiredAcks,
                _ => ErrorCode::InvalidRequest,
            };
            shard.metrics.api("invalid").requests.inc();
            shard.metrics.request_error("invalid", code);
            Some(Outgoing::error(code))
        }
    }
}

async fn send(stream: &mut Writer, correlation_id: u32, outgoing: Outgoing) -> std::io::Result<()> {
    let body_len: usize = outgoing.parts.iter().map(Part::len).sum();
    let prefix = response_prefix(correlation_id, outgoing.error_code as u16, body_len);
    write_parts(stream, &prefix, outgoing.parts).await
}

/// Writes `prefix` then `parts` and flushes.
pub async fn write_parts(
    stream: &mut Writer,
    prefix: &[u8],
    parts: Vec<Part>,
) -> std::io::Result<()> {
    let mut first = BytesMut::with_capacity(prefix.len() + 64);
    first.extend_from_slice(prefix);
    // Coalesce the prefix with a leading in-memory part to save a write.
    let mut parts = parts.into_iter().peekable();
    if let Some(bytes) = parts.peek() {
        first.extend_from_slice(bytes);
        parts.next();
    }
    stream.write_all(&first).await?;
    for bytes in parts {
        stream.write_all(&bytes).await?;
    }
    stream.flush().await
}
