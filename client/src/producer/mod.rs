//! The producer: records are batched per partition in the background (`batch_bytes`,
//! `linger`), sent with the configured acks, retried on retriable errors, and each send
//! completes with the record's offset.
//!
//! Three ways to send, as in Kafka:
//! - fire-and-forget: [`Producer::send_and_forget`];
//! - synchronous: `producer.send(record).await` returns the [`RecordMetadata`];
//! - asynchronous: [`Producer::enqueue`] returns a [`DeliveryFuture`] to await later, and
//!   [`Producer::send_with_callback`] calls a function when the record is delivered.
//!
//! Order within a partition is kept: a partition has at most one batch in flight, and a
//! failed batch is retried before anything after it is sent.

use crate::error::{Error, Result};
use crate::partitioner::{partition_for_key, Partitioner, Sticky};
use bytes::Bytes;
use keel_protocol::api::{ErrorCode, ProducePartition, Request, Response, TopicEntries};
use keel_protocol::batch::{BatchBuilder, Header, NewRecord, ProducerFields};
use keel_protocol::Compression;
use rustc_hash::FxHashMap as HashMap;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify, Semaphore};

/// A record to send.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    /// Topic.
    pub topic: String,
    /// Partition; chosen by the partitioner when `None`.
    pub partition: Option<u32>,
    /// Key (decides the partition with the default partitioner).
    pub key: Option<Bytes>,
    /// Value; `None` is a tombstone.
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<Header>,
    /// Timestamp in ms; the send time when `None`.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record with a value.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> ProducerRecord {
        ProducerRecord {
            topic: topic.into(),
            value: Some(value.into()),
            ..ProducerRecord::default()
        }
    }
    /// Sets the key.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }
    /// Sets the partition explicitly.
    pub fn partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }
    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header {
            key: key.into(),
            value: Some(value.into()),
        });
        self
    }
    /// Sets the timestamp (ms since the epoch).
    pub fn timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }
    fn size(&self) -> usize {
        record_size(self.key.as_ref(), self.value.as_ref(), &self.headers)
    }
}

/// What a record takes of the producer's buffer: its bytes and a little for its framing.
fn record_size(key: Option<&Bytes>, value: Option<&Bytes>, headers: &[Header]) -> usize {
    key.map_or(0, Bytes::len)
        + value.map_or(0, Bytes::len)
        + headers
            .iter()
            .map(|h| h.key.len() + h.value.as_ref().map_or(0, Bytes::len))
            .sum::<usize>()
        + 32
}

/// Where a record was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic (shared with the producer's other records of it).
    pub topic: Arc<str>,
    /// Partition.
    pub partition: u32,
    /// Offset.
    pub offset: i64,
    /// Timestamp.
    pub timestamp: i64,
}

/// Acknowledgement level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// No response: offsets are reported as -1.
    None,
    /// After the partition's log accepted the batch.
    Leader,
    /// After the batch is durable per the topic's fsync policy.
    #[default]
    All,
}

impl Acks {
    fn wire(self) -> i8 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// What `send` does when the buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenFull {
    /// Wait for space.
    #[default]
    Wait,
    /// Fail with [`Error::BufferFull`].
    Error,
}

enum Completion {
    Channel(oneshot::Sender<Result<RecordMetadata>>),
    Callback(Box<dyn FnOnce(Result<RecordMetadata>) + Send>),
    Forget,
}

/// One delivery waiting in a batch: a record, or a whole record set.
struct Pending {
    timestamp: i64,
    permits: u32,
    /// Records it covers (its first record's offset is the batch's base plus the records
    /// of the deliveries before it).
    records: u32,
    completion: Completion,
}

struct OpenBatch {
    builder: BatchBuilder,
    pending: Vec<Pending>,
    bytes: usize,
    created: Instant,
}

/// A built batch on its way.
struct SealedBatch {
    key: PartitionKey,
    bytes: Bytes,
    pending: Vec<Pending>,
    /// Retries so far.
    attempts: u32,
    /// Position among the producer's batches, by first send: retries go in this order.
    order: u64,
    /// Epoch and base sequence stamped in `bytes` (idempotent producers).
    stamp: Option<(i16, i32)>,
    /// A retry waits until then (the backoff).
    not_before: Option<Instant>,
}

/// Batches in flight per partition with idempotence (the broker checks sequences, so order
/// holds, as with Kafka's `max.in.flight.requests.per.connection`); 1 without.
pub const IN_FLIGHT_PER_PARTITION: usize = 5;

/// A topic (shared, so keys cost no allocation) and a partition.
pub(crate) type PartitionKey = (Arc<str>, u32);

/// A new batch reserves room for at most this many records' completions up front.
const PENDING_RESERVE_MAX: usize = 4096;

/// A new batch reserves `batch_bytes` for its records, up to this much.
const BATCH_RESERVE_MAX: usize = 1 << 20;

#[derive(Default)]
struct Accumulator {
    open: HashMap<PartitionKey, OpenBatch>,
    /// Full batches waiting for room in flight, oldest first: a batch never grows past
    /// `batch_grow_bytes` (plus one record) while it waits.
    sealed: HashMap<PartitionKey, VecDeque<OpenBatch>>,
    /// Batches in flight per partition.
    in_flight: HashMap<PartitionKey, usize>,
    /// Batches to retry per partition, by first-send order. While a partition has any, its
    /// in-flight batches drain first and then the retries go one at a time, in order,
    /// before anything new.
    retry: HashMap<PartitionKey, BTreeMap<u64, SealedBatch>>,
    next_order: u64,
    flush_requested: bool,
}

impl Accumulator {
    /// Whether a batch of `key` sealed now could be sent at once: no retries pending, no
    /// full batch queued before it, fewer than `max` in flight.
    fn has_room(&self, key: &PartitionKey, max: usize) -> bool {
        !self.retry.contains_key(key)
            && self.sealed.get(key).is_none_or(VecDeque::is_empty)
            && self.in_flight.get(key).copied().unwrap_or(0) < max
    }
}

struct Inner {
    config: ProducerBuilder,
    /// Connections to the brokers, routed by partition leader.
    router: crate::router::Router,
    /// Producer id and epoch when idempotent.
    producer: Option<ProducerFields>,
    /// Per partition when idempotent: the epoch its batches carry and the next sequence. A
    /// batch that failed for good may or may not have been stored, so its sequence is never
    /// reused: the partition moves to the next epoch and starts again at 0, which the broker
    /// takes as a fresh start (without that, every later batch would be refused as out of
    /// order).
    sequences: Mutex<HashMap<PartitionKey, (i16, i32)>>,
    /// Per topic: its name as the keys share it, and its partition count.
    partitions: Mutex<HashMap<String, (Arc<str>, u32)>>,
    sticky: Mutex<HashMap<String, Arc<Sticky>>>,
    accumulator: Mutex<Accumulator>,
    buffer: Semaphore,
    wake: Notify,
    outstanding: AtomicUsize,
    idle: Notify,
    closed: AtomicBool,
}

/// A record's delivery, to await later.
pub struct DeliveryFuture(oneshot::Receiver<Result<RecordMetadata>>);

impl std::future::Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::Closed)))
    }
}

/// Sends records to Keel. Cheap to clone; all clones share one connection and buffer.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Producer {
    /// A builder for a producer connected to `bootstrap` (`host:port`).
    pub fn builder(bootstrap: impl Into<String>) -> ProducerBuilder {
        ProducerBuilder {
            bootstrap: bootstrap.into(),
            security: crate::ClientSecurity::default(),
            acks: Acks::All,
            batch_bytes: 16 * 1024,
            batch_grow_bytes: 1 << 20,
            linger: Duration::from_millis(5),
            buffer_bytes: 32 << 20,
            when_full: WhenFull::Wait,
            compression: Compression::None,
            request_timeout: Duration::from_secs(30),
            retries: 5,
            retry_backoff: Duration::from_millis(100),
            partitioner: Partitioner::Default,
            idempotence: true,
            record_bytes_max: RECORD_BYTES_MAX,
        }
    }

    /// Sends and waits for the delivery: the synchronous style.
    ///
    /// # Errors
    /// As [`Producer::enqueue`], plus the delivery's error.
    pub async fn send(&self, record: ProducerRecord) -> Result<RecordMetadata> {
        self.enqueue(record).await?.await
    }

    /// Accepts the record and returns its delivery to await later: the asynchronous style.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`], [`Error::BufferFull`] (with [`WhenFull::Error`]),
    /// [`Error::Closed`], [`Error::InvalidRecord`].
    pub async fn enqueue(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        let (sender, receiver) = oneshot::channel();
        self.accept(record, Completion::Channel(sender)).await?;
        Ok(DeliveryFuture(receiver))
    }

    /// Accepts the record and calls `callback` with its delivery.
    ///
    /// # Errors
    /// As [`Producer::enqueue`] (then the callback is not called).
    pub async fn send_with_callback(
        &self,
        record: ProducerRecord,
        callback: impl FnOnce(Result<RecordMetadata>) + Send + 'static,
    ) -> Result<()> {
        self.accept(record, Completion::Callback(Box::new(callback)))
            .await
    }

    /// Accepts the record; its delivery is not reported: the fire-and-forget style.
    ///
    /// # Errors
    /// As [`Producer::enqueue`].
    pub async fn send_and_forget(&self, record: ProducerRecord) -> Result<()> {
        self.accept(record, Completion::Forget).await
    }

    /// The topic's shared name and partition count (asked of the broker once).
    async fn partition_count(&self, topic: &str) -> Result<(Arc<str>, u32)> {
        if let Some(known) = self
            .inner
            .partitions
            .lock()
            .expect("partitions lock")
            .get(topic)
        {
            return Ok(known.clone());
        }
        let response = self
            .inner
            .router
            .connection(None)
            .await?
            .call_timeout(
                &Request::Metadata {
                    topics: vec![topic.to_owned()],
                },
                self.inner.config.request_timeout,
            )
            .await?;
        let Response::Metadata { topics, .. } = response else {
            return Err(Error::Protocol("metadata response expected".into()));
        };
        let topic_metadata = topics
            .into_iter()
            .find(|t| t.topic == topic)
            .ok_or_else(|| Error::UnknownTopic(topic.to_owned()))?;
        if topic_metadata.error != ErrorCode::None || topic_metadata.partitions.is_empty() {
            return Err(Error::topic_unusable(topic, topic_metadata.error));
        }
        let known = (
            Arc::<str>::from(topic),
            topic_metadata.partitions.len() as u32,
        );
        self.inner
            .partitions
            .lock()
            .expect("partitions lock")
            .insert(topic.to_owned(), known.clone());
        Ok(known)
    }

    /// Takes `size` bytes of the buffer (waiting or failing as `when_full` says) for one
    /// more outstanding delivery; the permits to give back when it completes.
    async fn reserve(&self, size: usize) -> Result<u32> {
        let inner = &self.inner;
        let permits = size as u32;
        let permit = match inner.config.when_full {
            WhenFull::Wait => inner
                .buffer
                .acquire_many(permits)
                .await
                .map_err(|_| Error::Closed)?,
            WhenFull::Error => inner
                .buffer
                .try_acquire_many(permits)
                .map_err(|_| Error::BufferFull(inner.config.buffer_bytes))?,
        };
        permit.forget();
        inner.outstanding.fetch_add(1, Ordering::SeqCst);
        Ok(permits)
    }

    async fn accept(&self, record: ProducerRecord, completion: Completion) -> Result<()> {
        // Accepting rarely awaits anything; without this a tight send loop would keep its
        // worker thread, starving the sender task woken onto the same worker.
        tokio::task::consume_budget().await;
        let inner = &self.inner;
        if inner.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let (topic, partitions) = self.partition_count(&record.topic).await?;
        let partition = match record.partition {
            Some(partition) if partition < partitions => partition,
            Some(partition) => {
                return Err(Error::InvalidRecord(format!(
                    "partition {partition} of {} does not exist ({partitions} partitions)",
                    record.topic
                )))
            }
            None => match (&inner.config.partitioner, &record.key) {
                (Partitioner::Custom(choose), key) => {
                    choose(&record.topic, key.as_deref(), partitions) % partitions
                }
                (Partitioner::Default, Some(key)) => partition_for_key(key, partitions),
                (Partitioner::Default, None) => {
                    let sticky = {
                        let mut stickies = inner.sticky.lock().expect("sticky lock");
                        match stickies.get(&record.topic) {
                            Some(sticky) => sticky.clone(),
                            None => stickies.entry(record.topic.clone()).or_default().clone(),
                        }
                    };
                    sticky.partition(partitions)
                }
            },
        };
        let size = record.size();
        if size > inner.config.record_bytes_max {
            return Err(Error::InvalidRecord(format!(
                "record of {size} bytes is over the limit of {} bytes",
                inner.config.record_bytes_max
            )));
        }
        if size > inner.config.buffer_bytes {
            return Err(Error::InvalidRecord(format!(
                "record of {size} bytes is larger than the whole buffer"
            )));
        }
        let permits = self.reserve(size).await?;
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let opened;
        let full = {
            let mut accumulator = inner.accumulator.lock().expect("accumulator lock");
            let key = (topic.clone(), partition);
            // A batch that could go now is sealed at batch_bytes; one that would only wait
            // for an in-flight slot keeps growing, up to batch_grow_bytes. Whether it could
            // go is asked only when that matters: when a batch opens (for its buffer) and
            // once it holds batch_bytes.
            let in_flight_max = sender::in_flight_max(inner);
            let grow_to = inner.config.batch_grow_bytes.max(inner.config.batch_bytes);
            opened = !accumulator.open.contains_key(&key);
            if opened {
                let reserve = if accumulator.has_room(&key, in_flight_max) {
                    inner.config.batch_bytes
                } else {
                    grow_to
                };
                // Room for a full batch up front: records are encoded straight into it.
                let mut builder = BatchBuilder::with_capacity(reserve.min(BATCH_RESERVE_MAX));
                builder.compression(inner.config.compression);
                let batch = OpenBatch {
                    builder,
                    // About as many records as fit, so the list seldom grows.
                    pending: Vec::with_capacity(
                        (inner.config.batch_bytes / size.max(1) + 1).min(PENDING_RESERVE_MAX),
                    ),
                    bytes: 0,
                    created: Instant::now(),
                };
                accumulator.open.insert(key.clone(), batch);
            }
            let batch = accumulator.open.get_mut(&key).expect("opened above");
            batch.builder.push(NewRecord {
                timestamp,
                key: record.key,
                value: record.value,
                headers: record.headers,
            });
            batch.pending.push(Pending {
                timestamp,
                permits,
                records: 1,
                completion,
            });
            batch.bytes += size;
            let bytes = batch.bytes;
            let full = bytes >= inner.config.batch_bytes
                && (bytes >= grow_to || accumulator.has_room(&key, in_flight_max));
            if full {
                let batch = accumulator.open.remove(&key).expect("just filled");
                accumulator.sealed.entry(key).or_default().push_back(batch);
            }
            full
        };
        // A full batch can go now; a new one sets an earlier deadline than the sender may
        // be sleeping towards.
        if full || opened {
            inner.wake.notify_one();
        }
        Ok(())
    }

    /// Waits until every record accepted so far is delivered (or failed).
    pub async fn flush(&self) {
        loop {
            let idle = self.inner.idle.notified();
            if self.inner.outstanding.load(Ordering::SeqCst) == 0 {
                return;
            }
            self.inner
                .accumulator
                .lock()
                .expect("accumulator lock")
                .flush_requested = true;
            self.inner.wake.notify_one();
            idle.await;
        }
    }

    /// Delivers everything accepted, then stops; later sends fail with [`Error::Closed`].
    pub async fn close(&self) {
        self.flush().await;
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.wake.notify_one();
    }
}

mod builder;
mod record_set;
mod sender;
pub use builder::{ProducerBuilder, RECORD_BYTES_MAX};
pub use record_set::RecordSet;
use sender::sender;
