//! The consumer: reads assigned partitions from positions it keeps, with long-polling
//! fetches, one fetch prefetched while the caller processes the previous records.
//!
//! With a group id, [`Consumer::subscribe`] joins a consumer group: the broker assigns
//! partitions, a background task heartbeats, rebalances revoke and assign partitions (a
//! [`RebalanceListener`] hears about both), and positions start from committed offsets.

use crate::connection::Connection;
use crate::connection::REQUEST_TIMEOUT;

/// Pause before looking for a group coordinator again after it could not be reached.
const COORDINATOR_RETRY: Duration = Duration::from_millis(200);
use crate::error::{Error, Result};
use bytes::Bytes;
use keel_protocol::api::{
    ErrorCode, FetchPartition, FetchPartitionResult, ListOffsetsPartition, Request, Response,
    TopicEntries, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP,
};
use keel_protocol::batch::{end_offset, BatchView, Header};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

mod builder;
mod group;
mod positions;

pub use builder::ConsumerBuilder;

/// A topic and partition.
pub type TopicPartition = (String, u32);

/// A record read from Keel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Offset.
    pub offset: i64,
    /// Timestamp (ms).
    pub timestamp: i64,
    /// Key.
    pub key: Option<Bytes>,
    /// Value (`None`: tombstone).
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<Header>,
}

/// Where to start when a partition has no position (or it fell out of the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The first offset still in the log.
    Earliest,
    /// The end: only new records.
    #[default]
    Latest,
}

/// Hears about partitions leaving and joining this consumer in a rebalance; commit in
/// `on_revoked` to hand over exactly where you are.
pub trait RebalanceListener: Send + Sync {
    /// Partitions about to be taken away.
    fn on_revoked(&self, _partitions: &[TopicPartition]) {}
    /// Partitions just assigned.
    fn on_assigned(&self, _partitions: &[TopicPartition]) {}
}

type Prefetch = tokio::task::JoinHandle<Result<Response>>;

/// Reads records from assigned partitions.
pub struct Consumer {
    config: ConsumerBuilder,
    /// The bootstrap connection: groups and their offsets.
    connection: Connection,
    /// Partition data goes to each partition's leader.
    router: std::sync::Arc<crate::router::Router>,
    positions: BTreeMap<TopicPartition, Option<i64>>,
    high_watermarks: BTreeMap<TopicPartition, i64>,
    buffered: VecDeque<ConsumerRecord>,
    prefetch: Option<(Prefetch, BTreeMap<TopicPartition, i64>)>,
    membership: Option<Membership>,
}

struct Membership {
    group: String,
    topics: Vec<String>,
    member_id: String,
    generation: i32,
    joined: bool,
    rejoin: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The coordinator went away or moved: find it and carry on in the same generation
    /// (the new coordinator restored the group), or rejoin if it did not.
    moved: std::sync::Arc<std::sync::atomic::AtomicBool>,
    last_follow: Option<std::time::Instant>,
    last_poll: std::sync::Arc<std::sync::Mutex<std::time::Instant>>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
    last_commit: std::time::Instant,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // Like a crash: no LeaveGroup; the broker drops the member after its session timeout.
        if let Some(membership) = &mut self.membership {
            if let Some(heartbeat) = membership.heartbeat.take() {
                heartbeat.abort();
            }
        }
        if let Some((task, _)) = self.prefetch.take() {
            task.abort();
        }
    }
}

impl Consumer {
    /// A builder for a consumer connected to `bootstrap`.
    pub fn builder(bootstrap: impl Into<String>) -> ConsumerBuilder {
        ConsumerBuilder {
            bootstrap: bootstrap.into(),
            security: crate::ClientSecurity::default(),
            max_wait: Duration::from_millis(500),
            partition_max_bytes: 1 << 20,
            max_bytes: 50 << 20,
            reset: OffsetReset::Latest,
            group: None,
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            max_poll_interval: Duration::from_secs(300),
            assignor: "range".into(),
            auto_commit: None,
            listener: None,
        }
    }

    /// Joins the configured group for `topics`; partitions come from the group's
    /// rebalances, starting at committed offsets. The join happens in the next `poll`.
    ///
    /// # Errors
    /// [`Error::InvalidRecord`] when no group id was configured.
    pub fn subscribe(&mut self, topics: &[&str]) -> Result<()> {
        let group = self.config.group.clone().ok_or_else(|| {
            Error::InvalidRecord("subscribe needs a group id (ConsumerBuilder::group)".into())
        })?;
        self.membership = Some(Membership {
            group,
            topics: topics.iter().map(|t| t.to_string()).collect(),
            member_id: String::new(),
            generation: -1,
            joined: false,
            rejoin: std::sync::Arc::default(),
            moved: std::sync::Arc::default(),
            last_follow: None,
            last_poll: std::sync::Arc::new(std::sync::Mutex::new(std::time::Instant::now())),
            heartbeat: None,
            last_commit: std::time::Instant::now(),
        });
        Ok(())
    }

    /// This member's id in its group, once joined.
    pub fn member_id(&self) -> Option<&str> {
        self.membership
            .as_ref()
            .filter(|m| m.joined)
            .map(|m| m.member_id.as_str())
    }

    /// Reads exactly these partitions from now on; positions of partitions kept are kept.
    pub fn assign(&mut self, partitions: impl IntoIterator<Item = TopicPartition>) {
        let wanted: Vec<TopicPartition> = partitions.into_iter().collect();
        self.positions.retain(|tp, _| wanted.contains(tp));
        for tp in wanted {
            self.positions.entry(tp).or_insert(None);
        }
        self.invalidate();
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.positions.keys().cloned().collect()
    }

    fn invalidate(&mut self) {
        if let Some((task, _)) = self.prefetch.take() {
            task.abort();
        }
        self.buffered.clear();
    }

    /// The next offset to read from `partition`, once known.
    pub fn position(&self, partition: &TopicPartition) -> Option<i64> {
        self.positions.get(partition).copied().flatten()
    }

    /// Records available but not yet read, as of the last fetch.
    pub fn lag(&self, partition: &TopicPartition) -> Option<i64> {
        Some(self.high_watermarks.get(partition)? - self.position(partition)?)
    }

    fn fetch_request(
        &self,
        positions: &BTreeMap<TopicPartition, i64>,
        max_wait: Duration,
    ) -> Request {
        let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
        for ((topic, partition), offset) in positions {
            topics.entry(topic).or_default().push(FetchPartition {
                partition: *partition,
                fetch_offset: *offset,
                partition_max_bytes: self.config.partition_max_bytes,
            });
        }
        Request::Fetch {
            max_wait_ms: max_wait.as_millis().min(u32::MAX as u128) as u32,
            min_bytes: 1,
            max_bytes: self.config.max_bytes,
            topics: topics
                .into_iter()
                .map(|(topic, partitions)| TopicEntries {
                    topic: topic.to_owned(),
                    partitions,
                })
                .collect(),
        }
    }

    fn start_prefetch(&mut self, max_wait: Duration) {
        let positions: BTreeMap<TopicPartition, i64> = self
            .positions
            .iter()
            .filter_map(|(tp, p)| Some((tp.clone(), (*p)?)))
            .collect();
        self.start_prefetch_at(positions, max_wait);
    }

    fn start_prefetch_at(&mut self, positions: BTreeMap<TopicPartition, i64>, max_wait: Duration) {
        if positions.is_empty() {
            return;
        }
        // One fetch per leader (one in all on a single broker), merged into one answer.
        let mut by_leader: BTreeMap<crate::router::BrokerId, BTreeMap<TopicPartition, i64>> =
            BTreeMap::new();
        for (tp, offset) in &positions {
            let leader = self.router.leader(&tp.0, tp.1);
            by_leader
                .entry(leader)
                .or_default()
                .insert(tp.clone(), *offset);
        }
        let requests: Vec<(crate::router::BrokerId, Request)> = by_leader
            .iter()
            .map(|(leader, positions)| (*leader, self.fetch_request(positions, max_wait)))
            .collect();
        let router = self.router.clone();
        let task = tokio::spawn(async move {
            let timeout = max_wait.saturating_add(REQUEST_TIMEOUT);
            let mut calls = tokio::task::JoinSet::new();
            for (leader, request) in requests {
                let router = router.clone();
                calls.spawn(async move {
                    let connection = router.connection(leader).await?;
                    connection.call_timeout(&request, timeout).await
                });
            }
            // The first answer with records ends the wait (with whatever else has arrived
            // by then): one broker's long poll must not hold up another's data. The
            // partitions of the fetches still out are asked again by the next fetch, from
            // the same positions (their late answers are dropped).
            let mut merged = Vec::new();
            let mut last_error = None;
            let mut take = |answer: Result<Response>, merged: &mut Vec<_>| match answer {
                Ok(Response::Fetch { topics }) => {
                    let records = topics
                        .iter()
                        .flat_map(|t: &TopicEntries<FetchPartitionResult>| &t.partitions)
                        .any(|p| !p.records.is_empty());
                    merged.extend(topics);
                    records
                }
                Ok(_) => {
                    last_error = Some(Error::Protocol("fetch response expected".into()));
                    false
                }
                Err(e) => {
                    router.mark_stale();
                    last_error = Some(e);
                    false
                }
            };
            while let Some(joined) = calls.join_next().await {
                let Ok(answer) = joined else { continue };
                if take(answer, &mut merged) {
                    while let Some(joined) = calls.try_join_next() {
                        if let Ok(answer) = joined {
                            take(answer, &mut merged);
                        }
                    }
                    break;
                }
            }
            calls.abort_all();
            match (merged.is_empty(), last_error) {
                (true, Some(e)) => Err(e),
                _ => Ok(Response::Fetch { topics: merged }),
            }
        });
        self.prefetch = Some((task, positions));
    }

    /// Returns the records available now, waiting up to `timeout` for some to arrive.
    /// Positions advance past what is returned.
    ///
    /// # Errors
    /// Connection and broker errors (an offset that fell out of the log is reset per the
    /// configured [`OffsetReset`] instead). In a group, errors that retrying may cure (a
    /// coordinator or leader moving, a broker down) are retried by the next poll instead.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        if self.membership.is_none() {
            return self.poll_once(timeout).await;
        }
        match self.poll_once(timeout).await {
            Err(e) if e.is_retriable() => {
                // In a group, as a Kafka consumer does: a coordinator or leader that moved,
                // is loading, or whose broker is down is found again by the next poll.
                tracing::debug!(error = %e, "poll: retrying");
                self.router.mark_stale();
                tokio::time::sleep(timeout.min(COORDINATOR_RETRY)).await;
                Ok(Vec::new())
            }
            polled => polled,
        }
    }

    async fn poll_once(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        self.ensure_group().await?;
        if let (Some(interval), Some(membership)) = (self.config.auto_commit, &self.membership) {
            if membership.last_commit.elapsed() >= interval {
                self.commit_async();
            }
        }
        if !self.buffered.is_empty() {
            return Ok(self.buffered.drain(..).collect());
        }
        if self.positions.is_empty() {
            tokio::time::sleep(timeout.min(Duration::from_millis(100))).await;
            return Ok(Vec::new());
        }
        if self.prefetch.is_none() {
            let mut topics: Vec<String> = self.positions.keys().map(|(t, _)| t.clone()).collect();
            topics.dedup();
            self.router.refresh_if_stale(&topics).await;
        }
        self.resolve_positions().await?;
        if self.prefetch.is_none() {
            self.start_prefetch(timeout.min(self.config.max_wait));
        }
        let Some((task, asked)) = self.prefetch.take() else {
            return Ok(Vec::new());
        };
        let response = task.await.map_err(|_| Error::Closed)??;
        if let Response::Fetch { topics } = &response {
            let moved = topics.iter().flat_map(|t| &t.partitions).any(|p| {
                matches!(
                    p.error,
                    ErrorCode::NotLeaderOrFollower | ErrorCode::LeaderNotAvailable
                )
            });
            if moved {
                self.router.mark_stale();
            }
        }
        let Response::Fetch { topics } = response else {
            return Err(Error::Protocol("fetch response expected".into()));
        };
        // Pipelining: where each partition's data ends is in the batch headers, so the next
        // fetch leaves now and travels while these batches are checked and decoded. (A
        // batch that then fails its check ends this poll with an error; the fetch already
        // sent asked from past it, no longer matches the position, and is dropped.)
        let mut ahead: BTreeMap<TopicPartition, i64> = self
            .positions
            .iter()
            .filter_map(|(tp, p)| Some((tp.clone(), (*p)?)))
            .collect();
        for topic in &topics {
            for result in &topic.partitions {
                let tp = (topic.topic.clone(), result.partition);
                let Some(&from) = asked.get(&tp) else {
                    continue;
                };
                if self.position(&tp) != Some(from) {
                    continue;
                }
                if result.error != ErrorCode::None {
                    ahead.remove(&tp);
                    continue;
                }
                ahead.insert(tp, end_offset(from, &result.records));
            }
        }
        self.start_prefetch_at(ahead, self.config.max_wait);
        let mut records = Vec::new();
        for topic in topics {
            for result in topic.partitions {
                let tp = (topic.topic.clone(), result.partition);
                let Some(&from) = asked.get(&tp) else {
                    continue;
                };
                if self.position(&tp) != Some(from) {
                    continue; // moved by a seek meanwhile
                }
                self.take_partition(&tp, from, result, &mut records)?;
            }
        }
        Ok(records)
    }

    fn take_partition(
        &mut self,
        tp: &TopicPartition,
        from: i64,
        result: FetchPartitionResult,
        out: &mut Vec<ConsumerRecord>,
    ) -> Result<()> {
        match result.error {
            ErrorCode::None => {}
            ErrorCode::OffsetOutOfRange => {
                tracing::warn!(topic = %tp.0, partition = tp.1, offset = from, "offset out of range, resetting");
                self.positions.insert(tp.clone(), None);
                return Ok(());
            }
            // The partition moved or is offline for now: ask where it is and try again at
            // the same position next poll.
            ErrorCode::NotLeaderOrFollower | ErrorCode::LeaderNotAvailable => {
                self.router.mark_stale();
                return Ok(());
            }
            code => return Err(Error::broker(code, format!("{}-{}", tp.0, tp.1))),
        }
        self.high_watermarks
            .insert(tp.clone(), result.high_watermark);
        let mut next = from;
        let mut rest = &result.records[..];
        while !rest.is_empty() {
            let view = BatchView::new_verified(rest)
                .map_err(|e| Error::Protocol(format!("{}-{} at {next}: {e}", tp.0, tp.1)))?;
            for record in view.records().map_err(|e| Error::Protocol(e.to_string()))? {
                if record.offset >= from {
                    out.push(ConsumerRecord {
                        topic: tp.0.clone(),
                        partition: tp.1,
                        offset: record.offset,
                        timestamp: record.timestamp,
                        key: record.key,
                        value: record.value,
                        headers: record.headers,
                    });
                }
            }
            next = next.max(view.next_offset());
            rest = &rest[view.len()..];
        }
        self.positions.insert(tp.clone(), Some(next));
        Ok(())
    }

    /// The next record, waiting as long as it takes.
    ///
    /// # Errors
    /// As [`Consumer::poll`].
    pub async fn next(&mut self) -> Result<ConsumerRecord> {
        loop {
            if let Some(record) = self.buffered.pop_front() {
                return Ok(record);
            }
            let records = self.poll(self.config.max_wait).await?;
            self.buffered.extend(records);
        }
    }

    /// The records as an async stream (each item one record).
    pub fn into_stream(self) -> RecordStream {
        RecordStream {
            state: StreamState::Idle(Box::new(self)),
        }
    }
}

type NextRecord = std::pin::Pin<
    Box<dyn std::future::Future<Output = (Box<Consumer>, Result<ConsumerRecord>)> + Send>,
>;

enum StreamState {
    Idle(Box<Consumer>),
    Waiting(NextRecord),
    Done,
}

/// An async stream of records ([`futures_core::Stream`]).
pub struct RecordStream {
    state: StreamState,
}

impl futures_core::Stream for RecordStream {
    type Item = Result<ConsumerRecord>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        loop {
            match std::mem::replace(&mut self.state, StreamState::Done) {
                StreamState::Idle(mut consumer) => {
                    self.state = StreamState::Waiting(Box::pin(async move {
                        let record = consumer.next().await;
                        (consumer, record)
                    }));
                }
                StreamState::Waiting(mut future) => match future.as_mut().poll(cx) {
                    std::task::Poll::Ready((consumer, record)) => {
                        self.state = StreamState::Idle(consumer);
                        return std::task::Poll::Ready(Some(record));
                    }
                    std::task::Poll::Pending => {
                        self.state = StreamState::Waiting(future);
                        return std::task::Poll::Pending;
                    }
                },
                StreamState::Done => return std::task::Poll::Ready(None),
            }
        }
    }
}
