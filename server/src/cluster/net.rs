//! Controller connections on shard 0: the listener (other voters, brokers) and one
//! outgoing connection per voter, each a reader task and a writer task fed by a bounded
//! local channel. Framing is `keel_controller::wire`; a connection opens with a hello that
//! must carry the same voter list as ours. With `--inter-broker-security SSL` both ends
//! show certificates first, and the hello's node id must be the one the caller's
//! certificate proves.

use super::node::Node;
use crate::security::peer::{PeerSecurity, PeerStream};
use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::TcpListener;
use keel_controller::wire::{decode_frame, encode_frame, Frame};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

/// Frames queued for one connection before more are dropped (Raft resends; requests time
/// out and are retried).
pub const CONNECTION_QUEUE_FRAMES: usize = 1_024;

/// A connection's outgoing queue.
pub type Outbox = LocalSender<Frame>;

async fn read_frame<R: futures_lite::AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
) -> std::io::Result<Option<Frame>> {
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        match decode_frame(buf) {
            Ok(Some(frame)) => return Ok(Some(frame)),
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
        let read = reader.read(&mut chunk).await?;
        if read == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..read]);
    }
}

async fn write_frame<W: futures_lite::AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &Frame,
) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    encode_frame(&mut out, frame)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    writer.write_all(&out).await?;
    writer.flush().await
}

fn spawn_writer<W: futures_lite::AsyncWrite + Unpin + 'static>(mut writer: W) -> Outbox {
    let (tx, rx) = local_channel::new_bounded::<Frame>(CONNECTION_QUEUE_FRAMES);
    glommio::spawn_local(async move {
        while let Some(frame) = rx.recv().await {
            if write_frame(&mut writer, &frame).await.is_err() {
                break;
            }
        }
    })
    .detach();
    tx
}

/// Controller connections served at once (voters and brokers, each holding one); more
/// are closed at once.
const INBOUND_MAX: usize = 1_024;
/// Longest a new controller connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts controller connections until the process ends.
pub async fn serve(listener: TcpListener, node: Rc<RefCell<Node>>, peers: PeerSecurity) {
    let open = Rc::new(std::cell::Cell::new(0usize));
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "controller accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if open.get() >= INBOUND_MAX {
            tracing::warn!(
                max = INBOUND_MAX,
                "controller connection refused: too many open"
            );
            continue;
        }
        open.set(open.get() + 1);
        let (node, open, peers) = (node.clone(), open.clone(), peers.clone());
        glommio::spawn_local(async move {
            let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            match peers.accept(stream, HELLO_TIMEOUT).await {
                Ok((stream, proven)) => inbound(stream, proven, node).await,
                Err(e) => {
                    tracing::warn!(target: "keel::audit", %peer, error = %e, "controller connection refused: TLS")
                }
            }
            open.set(open.get() - 1);
        })
        .detach();
    }
}

/// Serves an accepted connection whose certificate proved node `proven` (with TLS).
async fn inbound(stream: PeerStream, proven: Option<u32>, node: Rc<RefCell<Node>>) {
    let (mut reader, mut writer) = futures_lite::io::split(stream);
    let mut buf = BytesMut::new();
    let hello = futures_lite::future::or(
        async { read_frame(&mut reader, &mut buf).await.ok().flatten() },
        async {
            glommio::timer::sleep(HELLO_TIMEOUT).await;
            None
        },
    )
    .await;
    let Some(Frame::Hello { node_id, voters }) = hello else {
        return;
    };
    let verdict = match proven {
        Some(id) if u64::from(id) != node_id => Err(format!(
            "the hello says node {node_id} but the certificate is broker {id}'s"
        )),
        _ => node.borrow().check_hello(node_id, &voters),
    };
    if let Err(reason) = verdict {
        tracing::warn!(peer = node_id, %reason, "controller connection refused");
        let _ = write_frame(&mut writer, &Frame::Refused(reason)).await;
        return;
    }
    if write_frame(&mut writer, &Frame::Welcome).await.is_err() {
        return;
    }
    let outbox = spawn_writer(writer);
    let conn = node.borrow_mut().add_inbound(outbox, node_id);
    while let Ok(Some(frame)) = read_frame(&mut reader, &mut buf).await {
        node.borrow_mut().on_inbound(conn, frame);
    }
    node.borrow_mut().remove_inbound(conn);
}

/// Keeps a connection to the voter `peer` at `address` open, reconnecting after failures.
pub async fn connect_loop(
    peer: u64,
    address: SocketAddr,
    node: Rc<RefCell<Node>>,
    peers: PeerSecurity,
) {
    loop {
        if let Err(e) = outbound(peer, address, &node, &peers).await {
            tracing::debug!(peer, %address, error = %e, "controller connection ended");
        }
        node.borrow_mut().remove_peer(peer);
        glommio::timer::sleep(Duration::from_millis(200)).await;
    }
}

async fn outbound(
    peer: u64,
    address: SocketAddr,
    node: &Rc<RefCell<Node>>,
    peers: &PeerSecurity,
) -> std::io::Result<()> {
    let stream = peers.connect(address, Duration::from_secs(1)).await?;
    let (mut reader, mut writer) = futures_lite::io::split(stream);
    let hello = node.borrow().hello();
    write_frame(&mut writer, &hello).await?;
    let mut buf = BytesMut::new();
    match read_frame(&mut reader, &mut buf).await? {
        Some(Frame::Welcome) => {}
        Some(Frame::Refused(reason)) => {
            node.borrow_mut().refused_by(peer, &reason);
            glommio::timer::sleep(Duration::from_secs(1)).await;
            return Ok(());
        }
        _ => return Ok(()),
    }
    node.borrow_mut().welcomed();
    let outbox = spawn_writer(writer);
    node.borrow_mut().add_peer(peer, outbox);
    while let Some(frame) = read_frame(&mut reader, &mut buf).await? {
        node.borrow_mut().on_outbound(peer, frame);
    }
    Ok(())
}
