//! [`ProducerBuilder`]: the producer's settings and how a producer starts (connect, get a
//! producer id when idempotent, spawn the sender).

use super::{sender, Accumulator, Acks, Inner, Producer, WhenFull};
use crate::error::{Error, Result};
use crate::partitioner::Partitioner;
use keel_protocol::api::{ErrorCode, Request, Response};
use keel_protocol::batch::ProducerFields;
use keel_protocol::Compression;
use rustc_hash::FxHashMap as HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// Configures and builds a [`Producer`].
#[derive(Debug, Clone)]
pub struct ProducerBuilder {
    pub(super) bootstrap: String,
    pub(super) security: crate::ClientSecurity,
    pub(super) acks: Acks,
    pub(super) batch_bytes: usize,
    pub(super) batch_grow_bytes: usize,
    pub(super) linger: Duration,
    pub(super) buffer_bytes: usize,
    pub(super) when_full: WhenFull,
    pub(super) compression: Compression,
    pub(super) request_timeout: Duration,
    pub(super) retries: u32,
    pub(super) retry_backoff: Duration,
    pub(super) partitioner: Partitioner,
    pub(super) idempotence: bool,
    pub(super) record_bytes_max: usize,
}

/// Default [`ProducerBuilder::record_bytes_max`]: what fits the broker's default batch
/// limit (8 MiB) with room for the batch header.
pub const RECORD_BYTES_MAX: usize = (8 << 20) - 1024;

impl ProducerBuilder {
    /// Largest record accepted (key, value and headers; default [`RECORD_BYTES_MAX`]); a
    /// larger one is refused by `send`/`enqueue` with [`Error::InvalidRecord`] naming its
    /// size and the limit, before anything is sent.
    pub fn record_bytes_max(mut self, bytes: usize) -> Self {
        self.record_bytes_max = bytes.max(1);
        self
    }
    /// How connections are made (default plain TCP; TLS: [`crate::ClientSecurity::tls`]).
    pub fn security(mut self, security: crate::ClientSecurity) -> Self {
        self.security = security;
        self
    }
    /// Idempotent produce (default on, with `acks=all`): the broker recognises a retried
    /// batch by its producer id and sequence and stores it once, in order.
    pub fn idempotence(mut self, enabled: bool) -> Self {
        self.idempotence = enabled;
        self
    }
    /// Acknowledgement level (default: all).
    pub fn acks(mut self, acks: Acks) -> Self {
        self.acks = acks;
        self
    }
    /// Send a partition's batch once it holds this many bytes (default 16 KiB).
    pub fn batch_bytes(mut self, bytes: usize) -> Self {
        self.batch_bytes = bytes.max(1);
        self
    }
    /// While every in-flight slot of a partition is taken, its open batch keeps growing
    /// past `batch_bytes` up to this size (default 1 MiB; never below `batch_bytes`) and
    /// goes as soon as a slot frees. Under light load batches stay small and leave at once;
    /// when the broker is the bottleneck each request carries more, so a partition's
    /// throughput is not capped at `IN_FLIGHT_PER_PARTITION × batch_bytes` per round trip.
    pub fn batch_grow_bytes(mut self, bytes: usize) -> Self {
        self.batch_grow_bytes = bytes;
        self
    }
    /// Wait this long for more records before sending a batch that is not full (default 5 ms).
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }
    /// Most bytes of records accepted but not yet delivered (default 32 MiB).
    pub fn buffer_bytes(mut self, bytes: usize) -> Self {
        self.buffer_bytes = bytes.max(1);
        self
    }
    /// What `send` does when the buffer is full (default: wait).
    pub fn when_full(mut self, when_full: WhenFull) -> Self {
        self.when_full = when_full;
        self
    }
    /// Batch compression: none, lz4 or zstd (default none).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }
    /// Longest wait for one produce response (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
    /// Retries of a failed batch on retriable errors (default 5), with `backoff` between.
    pub fn retries(mut self, retries: u32, backoff: Duration) -> Self {
        self.retries = retries;
        self.retry_backoff = backoff;
        self
    }
    /// The partitioner for records without an explicit partition.
    pub fn partitioner(mut self, partitioner: Partitioner) -> Self {
        self.partitioner = partitioner;
        self
    }

    /// Connects and starts the background sender.
    ///
    /// # Errors
    /// [`Error::Connect`] when the broker is not reachable.
    pub async fn build(self) -> Result<Producer> {
        let router = crate::router::Router::connect(
            &self.bootstrap,
            self.request_timeout,
            self.security.clone(),
        )
        .await?;
        let connection = router.bootstrap();
        let producer = if self.idempotence && self.acks == Acks::All {
            match connection
                .call_timeout(&Request::InitProducerId, self.request_timeout)
                .await?
            {
                Response::InitProducerId {
                    error: ErrorCode::None,
                    producer_id,
                    producer_epoch,
                } => Some(ProducerFields {
                    producer_id,
                    producer_epoch,
                    base_sequence: 0,
                }),
                Response::InitProducerId { error, .. } => {
                    return Err(Error::broker(error, "getting a producer id"))
                }
                _ => return Err(Error::Protocol("init-producer-id response expected".into())),
            }
        } else {
            None
        };
        let inner = Arc::new(Inner {
            producer,
            sequences: Mutex::new(HashMap::default()),
            buffer: Semaphore::new(self.buffer_bytes),
            config: self,
            router,
            partitions: Mutex::new(HashMap::default()),
            sticky: Mutex::new(HashMap::default()),
            accumulator: Mutex::new(Accumulator::default()),
            wake: Notify::new(),
            outstanding: AtomicUsize::new(0),
            idle: Notify::new(),
            closed: AtomicBool::new(false),
        });
        tokio::spawn(sender(inner.clone()));
        Ok(Producer { inner })
    }
}
