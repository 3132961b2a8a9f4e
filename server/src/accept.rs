//! Accepting connections on one listener of a shard (native or Kafka protocol) until the
//! broker stops, within the broker-wide connection limit.

use crate::metrics::Metrics;
use crate::shard::Shard;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpListener;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Which protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Keel's own protocol (docs/protocol.md).
    Native,
    /// Kafka's wire protocol (docs/kafka-compatibility.md), on the listener of this
    /// number (`--kafka-listeners` order).
    Kafka(usize),
}

/// What the accept loops of a shard share.
#[derive(Clone)]
pub struct Acceptor {
    pub shard: Rc<Shard>,
    pub stopping: Rc<Cell<bool>>,
    pub stop: Arc<AtomicBool>,
    pub connections: Arc<AtomicUsize>,
    pub metrics: Arc<Metrics>,
    /// Connections open on this shard.
    pub local: Rc<Cell<usize>>,
    /// Descriptors of open connections, so shutdown can wake readers blocked on idle
    /// clients.
    pub sockets: Rc<RefCell<HashSet<i32>>>,
}

impl Acceptor {
    /// Accepts until the broker stops.
    pub async fn run(self, listener: TcpListener, protocol: Protocol) {
        loop {
            let accepted =
                futures_lite::future::or(async { Some(listener.accept().await) }, async {
                    while !self.stop.load(Ordering::SeqCst) {
                        glommio::timer::sleep(Duration::from_millis(25)).await;
                    }
                    None
                })
                .await;
            let Some(accepted) = accepted else { break };
            let mut stream = match accepted {
                Ok(stream) => stream,
                Err(e) => {
                    // Out of descriptors, say: pause rather than spin on the error.
                    tracing::warn!(error = %e, "accept failed");
                    glommio::timer::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if self.connections.load(Ordering::SeqCst) >= self.shard.config.connections_max {
                // The native protocol says why; a Kafka client just sees the close.
                if protocol == Protocol::Native {
                    let frame = keel_protocol::frame::response_prefix(
                        0,
                        keel_protocol::api::ErrorCode::TooManyConnections as u16,
                        0,
                    );
                    let _ = stream.write_all(&frame).await;
                }
                continue;
            }
            let _ = stream.set_nodelay(true);
            self.connections.fetch_add(1, Ordering::SeqCst);
            self.metrics.connections.inc();
            self.local.set(self.local.get() + 1);
            let socket = std::os::fd::AsRawFd::as_raw_fd(&stream);
            self.sockets.borrow_mut().insert(socket);
            let this = self.clone();
            glommio::spawn_local(async move {
                match protocol {
                    Protocol::Native => {
                        crate::conn::serve(this.shard.clone(), stream, this.stopping.clone()).await
                    }
                    Protocol::Kafka(listener) => {
                        let (shard, stopping) = (this.shard.clone(), this.stopping.clone());
                        crate::kafka::serve(shard, stream, stopping, listener).await
                    }
                }
                this.sockets.borrow_mut().remove(&socket);
                this.connections.fetch_sub(1, Ordering::SeqCst);
                this.metrics.connections.dec();
                this.local.set(this.local.get() - 1);
            })
            .detach();
        }
    }
}
