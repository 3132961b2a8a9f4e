//! The producer's background sender: takes the batches that may go, sends one request for
//! all ready partitions, and completes, retries or fails each batch from the response.

use super::*;

/// Records the deliveries of a batch cover: the sequence numbers it takes.
fn records(pending: &[Pending]) -> i32 {
    pending.iter().map(|p| p.records as i32).sum()
}

pub(super) fn complete(
    inner: &Inner,
    topic: &Arc<str>,
    partition: u32,
    pending: Vec<Pending>,
    result: std::result::Result<i64, Error>,
) {
    let mut permits = 0u32;
    let count = pending.len();
    let mut before = 0i64;
    for record in pending {
        permits += record.permits;
        let delivered = match &result {
            Ok(base) => Ok(RecordMetadata {
                topic: topic.clone(),
                partition,
                offset: if *base < 0 { -1 } else { base + before },
                timestamp: record.timestamp,
            }),
            Err(e) => Err(e.clone()),
        };
        before += i64::from(record.records);
        match record.completion {
            Completion::Channel(sender) => {
                let _ = sender.send(delivered);
            }
            Completion::Callback(callback) => callback(delivered),
            Completion::Forget => {
                if let Err(e) = delivered {
                    tracing::warn!(topic = &**topic, partition, error = %e, "fire-and-forget record failed");
                }
            }
        }
    }
    inner.buffer.add_permits(permits as usize);
    if inner.outstanding.fetch_sub(count, Ordering::SeqCst) == count {
        inner.idle.notify_waiters();
    }
}

/// How many batches a partition may have in flight.
pub(super) fn in_flight_max(inner: &Inner) -> usize {
    if inner.producer.is_some() {
        IN_FLIGHT_PER_PARTITION
    } else {
        // Without sequences a retry could overtake a later batch.
        1
    }
}

/// Rewrites a batch's producer epoch and base sequence (and so its CRC): a batch sent
/// before its partition moved to a new epoch is resent under the new one.
fn restamp(bytes: &Bytes, epoch: i16, sequence: i32) -> Bytes {
    let mut batch = bytes.to_vec();
    batch[51..53].copy_from_slice(&epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&sequence.to_be_bytes());
    if let Ok(view) = keel_protocol::batch::BatchView::new(&batch) {
        let crc = view.computed_crc();
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    Bytes::from(batch)
}

/// Takes the batches that may go now, at most one per partition per request: a
/// partition's retries (one at a time, in order, once nothing of it is in flight), else
/// its oldest full batch, else its open batch once lingered (or flushed) or grown past
/// `batch_bytes`, while fewer than [`in_flight_max`] of its batches are in flight.
fn take_ready(inner: &Inner) -> Vec<SealedBatch> {
    let mut accumulator = inner.accumulator.lock().expect("accumulator lock");
    let accumulator = &mut *accumulator;
    let flush =
        std::mem::take(&mut accumulator.flush_requested) || inner.closed.load(Ordering::SeqCst);
    let now = Instant::now();
    let max = in_flight_max(inner);
    let mut ready = Vec::new();
    let retrying: Vec<PartitionKey> = accumulator.retry.keys().cloned().collect();
    for key in retrying {
        if accumulator.in_flight.get(&key).copied().unwrap_or(0) > 0 {
            continue;
        }
        let queue = accumulator.retry.get_mut(&key).expect("listed");
        let Some((&order, first)) = queue.iter().next() else {
            accumulator.retry.remove(&key);
            continue;
        };
        if first.not_before.is_some_and(|t| t > now) {
            continue;
        }
        let mut batch = queue.remove(&order).expect("first entry");
        if queue.is_empty() {
            accumulator.retry.remove(&key);
        }
        if let (Some(_), Some((epoch, _))) = (inner.producer, batch.stamp) {
            let mut sequences = inner.sequences.lock().expect("sequences lock");
            if let Some((current, next)) = sequences.get_mut(&key) {
                if *current != epoch {
                    batch.bytes = restamp(&batch.bytes, *current, *next);
                    batch.stamp = Some((*current, *next));
                    *next = next.wrapping_add(records(&batch.pending));
                }
            }
        }
        *accumulator.in_flight.entry(key).or_insert(0) += 1;
        ready.push(batch);
    }
    let room = |accumulator: &Accumulator, key: &PartitionKey| {
        !accumulator.retry.contains_key(key)
            && accumulator.in_flight.get(key).copied().unwrap_or(0) < max
            && !ready.iter().any(|b: &SealedBatch| &b.key == key)
    };
    let mut due: Vec<PartitionKey> = accumulator
        .sealed
        .iter()
        .filter(|(key, queue)| !queue.is_empty() && room(accumulator, key))
        .map(|(key, _)| key.clone())
        .collect();
    let lingered: Vec<PartitionKey> = accumulator
        .open
        .iter()
        .filter(|(key, batch)| {
            room(accumulator, key)
                && !due.contains(*key)
                && (flush
                    // Grown past batch_bytes while the slots were taken: full now.
                    || batch.bytes >= inner.config.batch_bytes
                    || batch.created.elapsed() >= inner.config.linger)
        })
        .map(|(key, _)| key.clone())
        .collect();
    due.extend(lingered);
    if !due.is_empty() || !ready.is_empty() {
        // A request goes anyway: batches half way through their linger ride along, so
        // partitions whose batches opened at different moments share requests (and fsync
        // rounds) instead of each getting its own.
        let riders: Vec<PartitionKey> = accumulator
            .open
            .iter()
            .filter(|(key, batch)| {
                room(accumulator, key)
                    && !due.contains(*key)
                    && batch.created.elapsed() >= inner.config.linger / 2
            })
            .map(|(key, _)| key.clone())
            .collect();
        due.extend(riders);
    }
    for key in due {
        let from_sealed = accumulator
            .sealed
            .get_mut(&key)
            .and_then(VecDeque::pop_front);
        let mut batch = match from_sealed {
            Some(batch) => batch,
            None => match accumulator.open.remove(&key) {
                Some(batch) => batch,
                None => continue,
            },
        };
        let mut stamp = None;
        if let Some(fields) = inner.producer {
            // Sequences are assigned once, when the batch is first sent; retries resend the
            // same bytes, so the broker can recognise them.
            let mut sequences = inner.sequences.lock().expect("sequences lock");
            let (epoch, next) = sequences
                .entry(key.clone())
                .or_insert((fields.producer_epoch, 0));
            batch.builder.producer(ProducerFields {
                base_sequence: *next,
                producer_epoch: *epoch,
                ..fields
            });
            stamp = Some((*epoch, *next));
            *next = next.wrapping_add(records(&batch.pending));
        }
        let bytes = match batch.builder.finish() {
            Ok(bytes) => Bytes::from(bytes),
            Err(e) => {
                let error = Err(Error::InvalidRecord(e.to_string()));
                // Its sequence is spent: the partition starts over in the next epoch.
                fail_for_good(inner, &key, stamp);
                complete(inner, &key.0, key.1, batch.pending, error);
                continue;
            }
        };
        if let Some(sticky) = inner.sticky.lock().expect("sticky lock").get(&*key.0) {
            sticky.batch_sent();
        }
        *accumulator.in_flight.entry(key.clone()).or_insert(0) += 1;
        accumulator.next_order += 1;
        ready.push(SealedBatch {
            key,
            bytes,
            pending: batch.pending,
            attempts: 0,
            order: accumulator.next_order,
            stamp,
            not_before: None,
        });
    }
    ready
}

/// A batch failed for good (perhaps stored, perhaps not): its sequence is never reused;
/// the partition starts over at sequence 0 of the next epoch (unless that happened since the
/// batch was stamped).
fn fail_for_good(inner: &Inner, key: &PartitionKey, stamp: Option<(i16, i32)>) {
    let Some((stamped, _)) = stamp else {
        return;
    };
    if let Some((epoch, next)) = inner.sequences.lock().expect("sequences lock").get_mut(key) {
        if *epoch == stamped {
            *epoch = epoch.wrapping_add(1).max(0);
            *next = 0;
        }
    }
}

/// Longest the sender sleeps with nothing open (it is woken by any new batch anyway).
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// When the sender must look again: the earliest open batch of a partition with room in
/// flight, or the earliest retry backoff.
fn next_due(inner: &Inner) -> Option<Instant> {
    let accumulator = inner.accumulator.lock().expect("accumulator lock");
    let max = in_flight_max(inner);
    let open = accumulator
        .open
        .iter()
        .filter(|(key, _)| {
            !accumulator.retry.contains_key(*key)
                && accumulator.in_flight.get(*key).copied().unwrap_or(0) < max
        })
        .map(|(_, batch)| batch.created + inner.config.linger);
    let retries = accumulator
        .retry
        .values()
        .filter_map(|queue| queue.values().next().and_then(|b| b.not_before));
    open.chain(retries).min()
}

/// A request on its way and the batches it carries, by partition.
type InFlight = (
    tokio::task::JoinHandle<std::result::Result<Option<Response>, Error>>,
    HashMap<PartitionKey, SealedBatch>,
);

pub(super) async fn sender(inner: Arc<Inner>) {
    // Answers are handled in the order the requests went, so a partition's outcomes are
    // seen in sequence order (and its records complete in order).
    let (answers, in_order) = tokio::sync::mpsc::unbounded_channel::<InFlight>();
    tokio::spawn(handle_answers(inner.clone(), in_order));
    loop {
        let ready = take_ready(&inner);
        if ready.is_empty() {
            if inner.closed.load(Ordering::SeqCst) && inner.outstanding.load(Ordering::SeqCst) == 0
            {
                return;
            }
            // Sleep until the earliest open batch is due (not a whole linger from now, which
            // made a batch wait up to twice the linger), or until woken by a full or new
            // batch, an answer, a flush or close.
            let wait = next_due(&inner)
                .map_or(IDLE_WAIT, |due| {
                    due.saturating_duration_since(Instant::now())
                })
                .max(Duration::from_micros(50));
            let _ = tokio::time::timeout(wait, inner.wake.notified()).await;
            continue;
        }
        // One request per leader carries every ready partition it leads (one request in
        // all on a single broker).
        let mut topics: Vec<String> = ready.iter().map(|b| b.key.0.to_string()).collect();
        topics.sort_unstable();
        topics.dedup();
        inner.router.refresh_if_stale(&topics).await;
        let mut by_leader: HashMap<crate::router::BrokerId, Vec<SealedBatch>> = HashMap::default();
        for batch in ready {
            let leader = inner.router.leader(&batch.key.0, batch.key.1);
            by_leader.entry(leader).or_default().push(batch);
        }
        for (leader, batches) in by_leader {
            if !send_to(&inner, &answers, leader, batches).await {
                return;
            }
        }
    }
}

/// Sends one produce request for `batches` to `leader`; false when the answer handler is
/// gone (the producer is closing).
async fn send_to(
    inner: &Arc<Inner>,
    answers: &tokio::sync::mpsc::UnboundedSender<InFlight>,
    leader: crate::router::BrokerId,
    batches: Vec<SealedBatch>,
) -> bool {
    {
        let mut by_topic: HashMap<String, Vec<ProducePartition>> = HashMap::default();
        let mut waiting = HashMap::default();
        for batch in batches {
            by_topic
                .entry(batch.key.0.to_string())
                .or_default()
                .push(ProducePartition {
                    partition: batch.key.1,
                    records: batch.bytes.clone(),
                });
            waiting.insert(batch.key.clone(), batch);
        }
        let request = Request::Produce {
            acks: inner.config.acks.wire(),
            timeout_ms: inner
                .config
                .request_timeout
                .as_millis()
                .min(u32::MAX as u128) as u32,
            topics: by_topic
                .into_iter()
                .map(|(topic, partitions)| TopicEntries { topic, partitions })
                .collect(),
        };
        // Sent here, in order: a partition's batches reach the broker in sequence order.
        let connection = match inner.router.connection(leader).await {
            Ok(connection) => connection,
            Err(e) => {
                let call = tokio::spawn(async move { Err(e) });
                return answers.send((call, waiting)).is_ok();
            }
        };
        let call = if inner.config.acks == Acks::None {
            let sent = connection.send_only(&request).await.map(|()| None);
            tokio::spawn(async move { sent })
        } else {
            match connection
                .begin(&request, inner.config.request_timeout)
                .await
            {
                Ok(answer) => tokio::spawn(async move { answer.await.map(Some) }),
                Err(e) => tokio::spawn(async move { Err(e) }),
            }
        };
        answers.send((call, waiting)).is_ok()
    }
}

async fn handle_answers(
    inner: Arc<Inner>,
    mut in_order: tokio::sync::mpsc::UnboundedReceiver<InFlight>,
) {
    while let Some((call, waiting)) = in_order.recv().await {
        let outcome = call
            .await
            .unwrap_or_else(|e| Err(Error::Protocol(format!("produce request task failed: {e}"))));
        if let Err(Error::Io { .. } | Error::Connect { .. }) = &outcome {
            // The connection broke: the retries go over a new one, to the leader the
            // metadata then names.
            inner.router.mark_stale();
            if let Err(e) = inner.router.reconnect_bootstrap().await {
                tracing::warn!(error = %e, "reconnecting failed");
            }
        }
        let mut results: HashMap<PartitionKey, std::result::Result<i64, Error>> =
            HashMap::default();
        match outcome {
            Ok(None) => {
                for key in waiting.keys() {
                    results.insert(key.clone(), Ok(-1));
                }
            }
            Ok(Some(Response::Produce { topics })) => {
                for topic in topics {
                    for p in topic.partitions {
                        let result = if p.error == ErrorCode::None {
                            Ok(p.base_offset)
                        } else {
                            if matches!(
                                p.error,
                                ErrorCode::NotLeaderOrFollower | ErrorCode::LeaderNotAvailable
                            ) {
                                inner.router.mark_stale();
                            }
                            Err(Error::broker(p.error, ""))
                        };
                        results.insert((Arc::from(topic.topic.as_str()), p.partition), result);
                    }
                }
            }
            Ok(Some(_)) => {
                for key in waiting.keys() {
                    results.insert(
                        key.clone(),
                        Err(Error::Protocol("produce response expected".into())),
                    );
                }
            }
            Err(e) => {
                for key in waiting.keys() {
                    results.insert(key.clone(), Err(e.clone()));
                }
            }
        }
        for (key, mut batch) in waiting {
            let result = results.remove(&key).unwrap_or_else(|| {
                Err(Error::Protocol(
                    "partition missing from the response".into(),
                ))
            });
            let mut accumulator = inner.accumulator.lock().expect("accumulator lock");
            if let Some(count) = accumulator.in_flight.get_mut(&key) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    accumulator.in_flight.remove(&key);
                }
            }
            let error = match result {
                Ok(base) => {
                    drop(accumulator);
                    complete(&inner, &key.0, key.1, batch.pending, Ok(base));
                    continue;
                }
                Err(error) => error,
            };
            // Retry when the error may pass, when an earlier batch of the partition is
            // being retried (this one was then refused as out of order, and will follow
            // it), or when the partition moved to a new epoch since this one was stamped.
            let earlier_retried = accumulator
                .retry
                .get(&key)
                .is_some_and(|queue| queue.keys().next().is_some_and(|o| *o < batch.order));
            let stale_epoch = batch.stamp.is_some_and(|(epoch, _)| {
                inner
                    .sequences
                    .lock()
                    .expect("sequences lock")
                    .get(&key)
                    .is_some_and(|(current, _)| *current != epoch)
            });
            let out_of_order = matches!(
                &error,
                Error::Broker {
                    code: ErrorCode::OutOfOrderSequence,
                    ..
                }
            );
            let retriable =
                error.is_retriable() || stale_epoch || (out_of_order && earlier_retried);
            if retriable && batch.attempts < inner.config.retries {
                tracing::debug!(topic = %key.0, partition = key.1, %error, attempts = batch.attempts, "retrying batch");
                batch.attempts += 1;
                batch.not_before = Some(Instant::now() + inner.config.retry_backoff);
                accumulator
                    .retry
                    .entry(key)
                    .or_default()
                    .insert(batch.order, batch);
                continue;
            }
            drop(accumulator);
            fail_for_good(&inner, &key, batch.stamp);
            complete(&inner, &key.0, key.1, batch.pending, Err(error));
        }
        inner.wake.notify_one();
    }
}
