//! The producer's background sender: takes the batches that may go, sends one request for
//! all ready partitions, and completes, retries or fails each batch from the response.

use super::*;

pub(super) fn complete(
    inner: &Inner,
    topic: &str,
    partition: u32,
    pending: Vec<Pending>,
    result: std::result::Result<i64, Error>,
) {
    let mut permits = 0u32;
    let count = pending.len();
    for (index, record) in pending.into_iter().enumerate() {
        permits += record.permits;
        let delivered = match &result {
            Ok(base) => Ok(RecordMetadata {
                topic: topic.to_owned(),
                partition,
                offset: if *base < 0 { -1 } else { base + index as i64 },
                timestamp: record.timestamp,
            }),
            Err(e) => Err(e.clone()),
        };
        match record.completion {
            Completion::Channel(sender) => {
                let _ = sender.send(delivered);
            }
            Completion::Callback(callback) => callback(delivered),
            Completion::Forget => {
                if let Err(e) = delivered {
                    tracing::warn!(%topic, partition, error = %e, "fire-and-forget record failed");
                }
            }
        }
    }
    inner.buffer.add_permits(permits as usize);
    if inner.outstanding.fetch_sub(count, Ordering::SeqCst) == count {
        inner.idle.notify_waiters();
    }
}

type Ready = Vec<SealedBatch>;

/// Takes the batches that may go now: retries first, then full, lingered or flushed ones,
/// never a second batch for a partition with one in flight.
fn take_ready(inner: &Inner) -> Ready {
    let mut accumulator = inner.accumulator.lock().expect("accumulator lock");
    let flush =
        std::mem::take(&mut accumulator.flush_requested) || inner.closed.load(Ordering::SeqCst);
    let mut ready = Vec::new();
    let mut still_waiting = VecDeque::new();
    while let Some(retry) = accumulator.retry.pop_front() {
        if accumulator.in_flight.contains(&retry.0) {
            still_waiting.push_back(retry);
        } else {
            accumulator.in_flight.insert(retry.0.clone());
            ready.push(retry);
        }
    }
    accumulator.retry = still_waiting;
    // Per free partition: its oldest full batch, else its open batch once lingered (or
    // flushed).
    let mut due: Vec<(String, u32)> = accumulator
        .sealed
        .iter()
        .filter(|(key, queue)| !queue.is_empty() && !accumulator.in_flight.contains(*key))
        .map(|(key, _)| key.clone())
        .collect();
    let free = |key: &(String, u32)| !accumulator.in_flight.contains(key);
    let lingered: Vec<(String, u32)> = accumulator
        .open
        .iter()
        .filter(|(key, batch)| {
            free(key)
                && !due.contains(*key)
                && (flush || batch.created.elapsed() >= inner.config.linger)
        })
        .map(|(key, _)| key.clone())
        .collect();
    due.extend(lingered);
    if !due.is_empty() {
        // A request goes anyway: batches half way through their linger ride along, so
        // partitions whose batches opened at different moments share requests (and fsync
        // rounds) instead of each getting its own.
        let riders: Vec<(String, u32)> = accumulator
            .open
            .iter()
            .filter(|(key, batch)| {
                free(key)
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
            None => accumulator.open.remove(&key).expect("listed above"),
        };
        accumulator.in_flight.insert(key.clone());
        if let Some(fields) = inner.producer {
            // Sequences are assigned once, when the batch is sealed; retries resend the
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
            *next = next.wrapping_add(batch.pending.len() as i32);
        }
        let bytes = match batch.builder.build() {
            Ok(bytes) => Bytes::from(bytes),
            Err(e) => {
                accumulator.in_flight.remove(&key);
                drop(accumulator);
                complete(
                    inner,
                    &key.0,
                    key.1,
                    batch.pending,
                    Err(Error::InvalidRecord(e.to_string())),
                );
                return ready;
            }
        };
        if let Some(sticky) = inner.sticky.lock().expect("sticky lock").get(&key.0) {
            sticky.batch_sent();
        }
        ready.push((key, bytes, batch.pending, 0));
    }
    ready
}

/// Longest the sender sleeps with nothing open (it is woken by any new batch anyway).
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// When the earliest open batch of a partition without a batch in flight is due.
fn next_due(inner: &Inner) -> Option<Instant> {
    let accumulator = inner.accumulator.lock().expect("accumulator lock");
    accumulator
        .open
        .iter()
        .filter(|(key, _)| !accumulator.in_flight.contains(*key))
        .map(|(_, batch)| batch.created + inner.config.linger)
        .min()
}

pub(super) async fn sender(inner: Arc<Inner>) {
    loop {
        let ready = take_ready(&inner);
        if ready.is_empty() {
            if inner.closed.load(Ordering::SeqCst) && inner.outstanding.load(Ordering::SeqCst) == 0
            {
                return;
            }
            // Sleep until the earliest open batch is due (not a whole linger from now, which
            // made a batch wait up to twice the linger), or until woken by a full or new
            // batch, a response, a flush or close.
            let wait = next_due(&inner)
                .map_or(IDLE_WAIT, |due| {
                    due.saturating_duration_since(Instant::now())
                })
                .max(Duration::from_micros(50));
            let _ = tokio::time::timeout(wait, inner.wake.notified()).await;
            continue;
        }
        // One request carries every ready partition.
        let mut by_topic: HashMap<String, Vec<ProducePartition>> = HashMap::new();
        let mut waiting: HashMap<(String, u32), (Bytes, Vec<Pending>, u32)> = HashMap::new();
        for ((topic, partition), bytes, pending, attempts) in ready {
            by_topic
                .entry(topic.clone())
                .or_default()
                .push(ProducePartition {
                    partition,
                    records: bytes.clone(),
                });
            waiting.insert((topic, partition), (bytes, pending, attempts));
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
        let inner = inner.clone();
        tokio::spawn(async move {
            let connection = inner.connection.lock().expect("connection lock").clone();
            let outcome = if inner.config.acks == Acks::None {
                connection.send_only(&request).await.map(|()| None)
            } else {
                connection
                    .call_timeout(&request, inner.config.request_timeout)
                    .await
                    .map(Some)
            };
            if let Err(Error::Io { .. }) = &outcome {
                // The connection broke: the retries below go over a new one.
                match Connection::connect(&inner.config.bootstrap).await {
                    Ok(fresh) => *inner.connection.lock().expect("connection lock") = fresh,
                    Err(e) => tracing::warn!(error = %e, "reconnecting failed"),
                }
            }
            let mut results: HashMap<(String, u32), std::result::Result<i64, Error>> =
                HashMap::new();
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
                                Err(Error::broker(p.error, ""))
                            };
                            results.insert((topic.topic.clone(), p.partition), result);
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
            for (key, (bytes, pending, attempts)) in waiting {
                let result = results.remove(&key).unwrap_or_else(|| {
                    Err(Error::Protocol(
                        "partition missing from the response".into(),
                    ))
                });
                match result {
                    Err(e) if e.is_retriable() && attempts < inner.config.retries => {
                        tracing::debug!(topic = %key.0, partition = key.1, error = %e, attempts, "retrying batch");
                        tokio::time::sleep(inner.config.retry_backoff).await;
                        let mut accumulator = inner.accumulator.lock().expect("accumulator lock");
                        accumulator.in_flight.remove(&key);
                        accumulator
                            .retry
                            .push_back((key, bytes, pending, attempts + 1));
                    }
                    result => {
                        if result.is_err() && inner.producer.is_some() {
                            // Failed for good (perhaps stored, perhaps not): never reuse its
                            // sequence; the partition starts over in the next epoch.
                            if let Some((epoch, next)) = inner
                                .sequences
                                .lock()
                                .expect("sequences lock")
                                .get_mut(&key)
                            {
                                *epoch = epoch.wrapping_add(1).max(0);
                                *next = 0;
                            }
                        }
                        inner
                            .accumulator
                            .lock()
                            .expect("accumulator lock")
                            .in_flight
                            .remove(&key);
                        complete(&inner, &key.0, key.1, pending, result);
                    }
                }
            }
            inner.wake.notify_one();
        });
    }
}
