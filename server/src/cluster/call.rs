//! Requests from one broker to another over the native protocol: a connection to a broker
//! named in the metadata, and one request answered on it (the follower's fetch, the
//! migration of committed offsets).

use crate::security::peer::{PeerSecurity, PeerStream};
use crate::shard::Shard;
use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use keel_protocol::api::{ErrorCode, Request, Response};
use keel_protocol::frame;
use std::time::Duration;

/// A connection to `broker`'s native listener, as the metadata names it (mutual TLS with
/// `--inter-broker-security SSL`: our certificate proves our node id).
pub async fn connect(shard: &Shard, leader: u32) -> Option<PeerStream> {
    let view = shard.cluster.as_ref()?;
    let address =
        crate::cluster::native_address(&view.image().brokers().get(&leader)?.address).to_owned();
    let address: std::net::SocketAddr = match address.parse() {
        Ok(a) => a,
        Err(_) => {
            tracing::warn!(leader, %address, "leader address is not HOST:PORT");
            return None;
        }
    };
    let peers = PeerSecurity::new(&shard.security, shard.config.security.inter_broker_tls);
    match peers.connect(address, Duration::from_secs(1)).await {
        Ok(stream) => Some(stream),
        Err(e) => {
            tracing::debug!(leader, %address, error = %e, "cannot reach the leader");
            None
        }
    }
}

/// Sends one request and reads its answer (a frame of at most `frame_max` bytes).
///
/// # Errors
/// I/O errors; the peer's error code or an undecodable answer as `InvalidData`.
pub async fn exchange(
    stream: &mut PeerStream,
    correlation: u32,
    request: &Request,
    frame_max: u32,
) -> std::io::Result<Response> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let mut body = BytesMut::new();
    request
        .encode(&mut body)
        .map_err(|e| invalid(e.to_string()))?;
    let mut out = BytesMut::with_capacity(body.len() + 16);
    frame::write_request(&mut out, request.api_key() as u16, 0, correlation, &body);
    stream.write_all(&out).await?;
    stream.flush().await?;
    let mut buf = BytesMut::with_capacity(64 << 10);
    let mut chunk = vec![0u8; 256 << 10];
    let found = loop {
        match frame::check_response(&buf, frame_max) {
            Ok(Some(found)) => break found,
            Ok(None) => {}
            Err(e) => return Err(invalid(e.to_string())),
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..read]);
    };
    if found.header.correlation_id.get() != correlation {
        return Err(invalid("response to another request".into()));
    }
    if found.header.error_code.get() != 0 {
        return Err(invalid(format!(
            "leader answered error {:?}",
            ErrorCode::from_u16(found.header.error_code.get())
        )));
    }
    let body = buf.split_to(found.frame_len).freeze().slice(found.body());
    Response::decode(request.api_key(), body).map_err(|e| invalid(e.to_string()))
}
