//! A link worker's fetching (`task.rs`): one Fetch per source leader for the mirror
//! partitions it serves, the next one sent before the answer of the last is appended (the
//! source reads while this broker writes), each answer's whole batches appended verbatim
//! when the partition's mirror still stands where that fetch asked from.

use super::definition::Definition;
use super::partition::{Fetched, Span, Step};
use super::source::{CLIENT_ID, FRAME_MAX};
use super::task::{Worker, BACKOFF};
use crate::config::topic::read_only_mirror;
use bytes::{Bytes, BytesMut};
use keel_kafka::source::{self as wire, TopicRef, Wanted};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Fetch sizes: per partition, per request, and the source's long-poll wait.
const PARTITION_MAX_BYTES: i32 = 8 << 20;
const REQUEST_MAX_BYTES: i32 = 16 << 20;
const MAX_WAIT_MS: i32 = 200;
/// How long one leader's pipeline runs before the worker looks at its links, ownership
/// and metadata again.
const PIPELINE_MAX: Duration = Duration::from_millis(500);

/// The partitions of one fetch: per source topic, where each was asked from.
type Asked = Vec<(TopicRef, Vec<Wanted>)>;

impl Worker {
    /// Fetches every mirroring partition from its source leader, a pipeline per leader;
    /// the bytes appended, `None` when there was nothing to fetch.
    pub(super) async fn fetch_all(&mut self, definition: &Definition) -> Option<u64> {
        let mut by_leader: BTreeMap<String, BTreeMap<String, Vec<Wanted>>> = BTreeMap::new();
        for ((_, partition), owned) in &self.owned {
            let ready = owned.checked && !owned.resync;
            let Some(offset) = owned.mirror.next_fetch().filter(|_| ready) else {
                continue;
            };
            let leader = self
                .metadata
                .topics
                .get(&owned.source_topic)
                .and_then(|(_, leaders)| leaders.get(&(*partition as i32)))
                .and_then(|leader| self.metadata.brokers.get(leader));
            let Some(address) = leader else {
                self.metadata.at = None;
                continue;
            };
            by_leader
                .entry(address.clone())
                .or_default()
                .entry(owned.source_topic.clone())
                .or_default()
                .push(Wanted {
                    partition: *partition as i32,
                    offset,
                    max_bytes: partition_max_bytes(definition),
                });
        }
        if by_leader.is_empty() {
            return None;
        }
        let mut appended = 0;
        for (address, topics) in by_leader {
            let asked: Asked = topics
                .into_iter()
                .map(|(topic, wanted)| (TopicRef::Name(topic), wanted))
                .collect();
            match self.pipeline(&address, definition, asked).await {
                Ok(bytes) => appended += bytes,
                Err(reason) => {
                    tracing::debug!(link = %self.name, address, reason, "source fetch failed");
                    self.connections.remove(&address);
                    self.metadata.at = None;
                    self.fail_link(&format!("source {address}: {reason}"));
                    glommio::timer::sleep(BACKOFF).await;
                }
            }
        }
        Some(appended)
    }

    /// Fetches from one source leader, sending the next fetch (from where the answer's
    /// whole batches end) before appending the answer, while answers bring records and for
    /// at most [`PIPELINE_MAX`]; the bytes appended.
    async fn pipeline(
        &mut self,
        address: &str,
        definition: &Definition,
        mut asked: Asked,
    ) -> Result<u64, String> {
        self.connection(address, definition).await?;
        let mut connection = self.connections.remove(address).expect("connected above");
        let started = Instant::now();
        let mut correlation = send_fetch(&mut connection, &asked).await?;
        let mut appended = 0;
        let outcome = loop {
            let answer = match receive_fetch(&mut connection, correlation).await {
                Ok(answer) => answer,
                Err(e) => break Err(e),
            };
            let next = next_asked(&asked, &answer);
            // A throttled link fetches once per round (the round then waits what the
            // bytes cost); an unthrottled one keeps a fetch ahead of its appends.
            let throttled = definition.throttle_bytes_per_second > 0;
            let more = next.is_some() && !throttled && started.elapsed() < PIPELINE_MAX;
            let sent = match next.filter(|_| more) {
                Some(next) => match send_fetch(&mut connection, &next).await {
                    Ok(c) => Some((c, next)),
                    Err(e) => break Err(e),
                },
                None => None,
            };
            appended += self.apply_all(&asked, answer).await;
            self.publish(definition);
            match sent {
                Some((c, next)) => (correlation, asked) = (c, next),
                None => break Ok(appended),
            }
        };
        if outcome.is_ok() {
            self.connections.insert(address.to_owned(), connection);
        }
        outcome
    }

    /// Applies a source's fetch answer to each partition that still stands where the
    /// fetch asked from (an answer sent for after a failed append is dropped); the bytes
    /// appended.
    async fn apply_all(&mut self, asked: &Asked, topics: Vec<wire::SourceTopic>) -> u64 {
        let mut appended = 0;
        for topic in topics {
            let TopicRef::Name(source_topic) = topic.topic else {
                continue;
            };
            for answer in topic.partitions {
                let from = asked_offset(asked, &source_topic, answer.partition);
                let key = self.owned.iter().find_map(|((t, p), o)| {
                    let here = o.source_topic == source_topic && *p as i32 == answer.partition;
                    (here && from.is_some() && o.mirror.next_fetch() == from)
                        .then(|| (t.clone(), *p))
                });
                if let Some(key) = key {
                    appended += self.apply(&key, answer).await;
                }
            }
        }
        appended
    }

    async fn apply(&mut self, key: &(String, u32), answer: wire::SourcePartition) -> u64 {
        const OFFSET_OUT_OF_RANGE: i16 = 1;
        if answer.error != 0 && answer.error != OFFSET_OUT_OF_RANGE {
            // Leadership moved, the topic is being made: ask the metadata again.
            self.metadata.at = None;
            return 0;
        }
        // The structure here; the CRC where the log stores each batch (once per byte).
        let spans = match wire::batch_spans(&answer.records) {
            Ok(spans) => spans,
            Err(e) => {
                tracing::warn!(link = %self.name, topic = %key.0, partition = key.1, error = %e, "the source sent a corrupt batch; fetching again");
                return 0;
            }
        };
        let now_ms = self.now_ms();
        let owned = self.owned.get_mut(key).expect("asked for owned partitions");
        let topic_id = self
            .metadata
            .topics
            .get(&owned.source_topic)
            .map_or(owned.expected_id, |(id, _)| *id);
        let fetched = Fetched {
            topic_id,
            high_watermark: answer.high_watermark,
            log_start: answer.log_start,
            out_of_range: answer.error == OFFSET_OUT_OF_RANGE,
            batches: spans
                .iter()
                .map(|s| Span {
                    base: s.base,
                    last: s.last,
                })
                .collect(),
        };
        match owned.mirror.fetched(&fetched, now_ms) {
            Step::Wait => 0,
            Step::Append(range) => {
                let batches: Vec<Bytes> = spans[range]
                    .iter()
                    .map(|s| answer.records.slice(s.at..s.at + s.len))
                    .collect();
                self.append(key, batches).await
            }
            Step::Restart(at) => {
                self.restart(key, at).await;
                0
            }
            Step::Fail(reason) => {
                tracing::warn!(link = %self.name, topic = %key.0, partition = key.1, reason, "mirror partition failed");
                0
            }
        }
    }

    /// The partition's log, if this broker still leads the partition, it is still a mirror,
    /// the link is not paused and the mirror's end is the log's (checked with no await
    /// before a change to the log is queued).
    fn writable_log(&mut self, (topic, partition): &(String, u32)) -> Option<keel_engine::Log> {
        let log = self.shard.log_handle(topic, *partition)?;
        let still_mirror = self
            .shard
            .registry
            .read()
            .get(topic)
            .is_some_and(|t| read_only_mirror(&t.configs));
        if !still_mirror || self.view.leads(topic, *partition).is_err() {
            self.owned.remove(&(topic.clone(), *partition));
            return None;
        }
        // Paused (or deleted) while the fetch was out: nothing from it is appended.
        if self.definition().is_none_or(|d| d.paused) {
            return None;
        }
        // The batches go where the mirror thinks its log ends, or nowhere (a verbatim
        // append takes a batch past the log end, as a compacted source's gap).
        let owned = self.owned.get_mut(&(topic.clone(), *partition))?;
        if owned.resync || owned.mirror.end() != log.log_end_offset() {
            owned.resync = true;
            return None;
        }
        Some(log)
    }

    /// The source's retention deleted the mirror's next offset: the mirror's log starts
    /// again, empty, where the source's does now (its followers do the same when they next
    /// fetch), as a Kafka follower behind its leader's log start.
    async fn restart(&mut self, key: &(String, u32), at: i64) {
        let Some(log) = self.writable_log(key) else {
            return;
        };
        let (topic, partition) = (&key.0, key.1);
        tracing::warn!(link = %self.name, topic, partition, log_end = log.log_end_offset(), source_start = at, "the source's retention passed the mirror's end: the mirror starts again at the source's log start");
        if let Err(e) = log.restart_at(at).await {
            tracing::warn!(link = %self.name, topic, partition, error = %e, "restarting the mirror's log failed; retrying once the log is back");
            if let Some(owned) = self.owned.get_mut(key) {
                owned.storage_error = Some(e.to_string());
                owned.resync = true;
            }
            return;
        }
        self.shard.truncate_producers(topic, partition, i64::MIN);
        self.shard.replication_appended(topic, partition, &log);
        let now_ms = self.now_ms();
        if let Some(owned) = self.owned.get_mut(key) {
            owned.mirror.restarted(log.log_end_offset(), now_ms);
        }
    }

    /// Appends source batches verbatim, if [`Self::writable_log`] allows.
    async fn append(&mut self, key: &(String, u32), batches: Vec<Bytes>) -> u64 {
        let Some(log) = self.writable_log(key) else {
            return 0;
        };
        let (topic, partition) = (&key.0, &key.1);
        let key = key.clone();
        let bytes: u64 = batches.iter().map(|b| b.len() as u64).sum();
        let mut producers = Vec::new();
        for batch in &batches {
            if let Ok(view) = keel_protocol::batch::BatchView::new(batch) {
                producers.extend(crate::producers::stored_batch(&view));
            }
        }
        let batches = batches.iter().map(|b| BytesMut::from(&b[..])).collect();
        if let Err(e) = log.append_replica_batches(batches).await {
            if let keel_engine::Error::InvalidBatch(_) = e {
                // The source sent a batch failing its CRC: nothing of it is stored; the
                // mirror fetches again from its log's end.
                tracing::warn!(link = %self.name, topic, partition, error = %e, "the source sent a corrupt batch; fetching again");
                if let Some(owned) = self.owned.get_mut(&key) {
                    owned.resync = true;
                }
                return 0;
            }
            // A full or failing disk: the partition says so and fetches again from its
            // log's end once the log is back (what was written before the failure stays).
            if let Some(owned) = self.owned.get_mut(&key) {
                if owned.storage_error.is_none() {
                    tracing::warn!(link = %self.name, topic, partition, error = %e, "mirror append failed; retrying from the log end once the log is back");
                }
                owned.storage_error = Some(e.to_string());
                owned.resync = true;
            }
            return 0;
        }
        if let Some(owned) = self.owned.get_mut(&key) {
            if owned.storage_error.take().is_some() {
                tracing::info!(link = %self.name, topic, partition, "mirror appends again");
            }
        }
        self.shard.learn_producers(topic, *partition, &producers);
        self.shard.replication_appended(topic, *partition, &log);
        // The source's producer ids are in this cluster's log now: its own producers must
        // never be given one of them (their sequences would collide after a promotion).
        let highest = producers.iter().map(|p| p.0).max().unwrap_or(-1);
        let floor = crate::producer_ids::reserved_floor(&self.view.image());
        if highest >= 0 && floor <= highest as u64 {
            let _ = crate::producer_ids::reserve_through(&self.shard, highest as u64).await;
        }
        self.shard.metrics.mirror_bytes_in.inc_by(bytes);
        let now_ms = self.now_ms();
        if let Some(owned) = self.owned.get_mut(&(topic.clone(), *partition)) {
            owned.mirror.appended(log.log_end_offset(), now_ms);
        }
        bytes
    }
}

/// Most bytes fetched per partition: a second's worth on a throttled link (at least 64 KiB,
/// and a fetch returns at least one whole batch anyway).
fn partition_max_bytes(definition: &Definition) -> i32 {
    match definition.throttle_bytes_per_second {
        0 => PARTITION_MAX_BYTES,
        rate => rate.clamp(64 << 10, PARTITION_MAX_BYTES as u64) as i32,
    }
}

async fn send_fetch(
    connection: &mut super::source::SourceConnection,
    asked: &Asked,
) -> Result<i32, String> {
    let correlation = connection.next_correlation();
    let limits = (MAX_WAIT_MS, 1, REQUEST_MAX_BYTES.min(FRAME_MAX as i32));
    let frame = wire::fetch_request(correlation, CLIENT_ID, limits, asked);
    connection.send(&frame).await?;
    Ok(correlation)
}

async fn receive_fetch(
    connection: &mut super::source::SourceConnection,
    correlation: i32,
) -> Result<Vec<wire::SourceTopic>, String> {
    let body = connection.receive(correlation).await?;
    let (_, error, topics) =
        wire::fetch_response(12, body).map_err(|e| format!("its fetch answer: {e}"))?;
    if error != 0 {
        return Err(format!("the fetch was refused (Kafka error {error})"));
    }
    Ok(topics)
}

/// Where `asked` fetched `topic`'s `partition` from.
fn asked_offset(asked: &Asked, topic: &str, partition: i32) -> Option<i64> {
    asked
        .iter()
        .filter(|(t, _)| matches!(t, TopicRef::Name(name) if name == topic))
        .flat_map(|(_, wanted)| wanted)
        .find(|w| w.partition == partition)
        .map(|w| w.offset)
}

/// The next fetch after `answer`: each partition from where its whole batches below the
/// high watermark end (what the mirror's log will end at once they are appended); `None`
/// when the answer brought nothing to append (caught up, or an error to look at).
fn next_asked(asked: &Asked, answer: &[wire::SourceTopic]) -> Option<Asked> {
    let mut next = asked.clone();
    let mut moved = false;
    for (topic, wanted) in &mut next {
        let TopicRef::Name(name) = topic else {
            continue;
        };
        for want in wanted.iter_mut() {
            let Some(partition) = answer
                .iter()
                .filter(|t| matches!(&t.topic, TopicRef::Name(n) if n == name))
                .flat_map(|t| &t.partitions)
                .find(|p| p.partition == want.partition && p.error == 0)
            else {
                continue;
            };
            let Ok(spans) = wire::batch_spans(&partition.records) else {
                return None;
            };
            if let Some(last) = spans
                .iter()
                .take_while(|s| s.last < partition.high_watermark)
                .last()
            {
                if last.last >= want.offset {
                    want.offset = last.last + 1;
                    moved = true;
                }
            }
        }
    }
    moved.then_some(next)
}
