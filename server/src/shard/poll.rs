//! Reads of partitions and the long poll: a request's reads go to their owning shards at
//! once; when what came back is not enough, each owner shard gets one job that waits on
//! its partitions and then reads them (one round trip), the same for consumers' fetches
//! (Kafka's and native) and followers' replica fetches.

use super::{fan_out, fetch_error, owner, storage_error, Job, Read, Reply, Shard};
use bytes::Bytes;
use keel_engine::ReadData;
use keel_protocol::api::{ErrorCode, FetchPartitionResult};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

/// Longest a read of one partition (before any long-poll wait) may take before it is
/// answered RequestTimedOut.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long past a long poll's deadline the caller waits for an owner's answer.
const ANSWER_GRACE: Duration = Duration::from_millis(100);

/// Reads each partition on its owning shard; then, until `enough` holds for the replies or
/// `deadline` passes, waits for more: every owner shard gets one wait-then-read job for
/// its partitions, sent again only after it answered with something new. Returns a reply
/// per read, in order, and the time spent parked.
pub async fn long_poll(
    shard: &Rc<Shard>,
    reads: Vec<Read>,
    deadline: Instant,
    enough: impl Fn(&[Reply]) -> bool,
) -> (Vec<Reply>, Duration) {
    let owners: Vec<usize> = reads
        .iter()
        .map(|read| {
            let (topic, partition) = read.partition();
            owner(topic, partition, shard.shards())
        })
        .collect();
    let jobs = owners
        .iter()
        .zip(&reads)
        .map(|(owner, read)| (*owner, Job::Read(read.clone())))
        .collect();
    let mut replies = fan_out(shard, jobs, Instant::now() + READ_TIMEOUT).await;
    if enough(&replies) || Instant::now() >= deadline {
        return (replies, Duration::ZERO);
    }
    let parked = Instant::now();
    let mut by_owner: Vec<Vec<usize>> = vec![Vec::new(); shard.shards()];
    for (index, owner) in owners.iter().enumerate() {
        by_owner[*owner].push(index);
    }
    // At most one poll per owner is in flight, so the channel holds at most that many.
    let (answered, mut answers) = futures_channel::mpsc::unbounded();
    let mut outstanding = 0;
    for (owner, indices) in by_owner.iter().enumerate() {
        if !indices.is_empty() {
            let job = poll_job(&reads, &replies, indices, deadline);
            send_poll(shard, owner, job, answered.clone());
            outstanding += 1;
        }
    }
    while outstanding > 0 {
        use futures_lite::StreamExt;
        let left = (deadline + ANSWER_GRACE).saturating_duration_since(Instant::now());
        let next = futures_lite::future::or(answers.next(), async {
            glommio::timer::sleep(left).await;
            None
        });
        let Some((owner, reply)) = next.await else {
            break;
        };
        outstanding -= 1;
        let indices = &by_owner[owner];
        if let Reply::Many(fresh) = reply {
            if fresh.len() == indices.len() {
                for (index, fresh) in indices.iter().zip(fresh) {
                    replies[*index] = fresh;
                }
            }
        }
        if enough(&replies) {
            break;
        }
        if Instant::now() < deadline {
            let job = poll_job(&reads, &replies, indices, deadline);
            send_poll(shard, owner, job, answered.clone());
            outstanding += 1;
        }
    }
    (replies, parked.elapsed())
}

/// The wait-then-read job for one owner's reads: each waits to see passed what its last
/// reply showed (a consumer's high watermark, so partial data waits for more) or its own
/// offset.
fn poll_job(reads: &[Read], replies: &[Reply], indices: &[usize], deadline: Instant) -> Job {
    let after = indices
        .iter()
        .map(|&index| {
            let read = &reads[index];
            match (read, &replies[index]) {
                (Read::Fetch { offset, .. }, Reply::Fetched(result, _)) => {
                    (*offset).max(result.high_watermark)
                }
                _ => read.offset(),
            }
        })
        .collect();
    let reads = indices.iter().map(|&index| reads[index].clone()).collect();
    Job::Poll {
        reads,
        after,
        deadline,
    }
}

fn send_poll(
    shard: &Rc<Shard>,
    owner: usize,
    job: Job,
    answered: futures_channel::mpsc::UnboundedSender<(usize, Reply)>,
) {
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let reply = shard.call(owner, job).await;
        // A caller that stopped waiting dropped the receiver.
        let _ = answered.unbounded_send((owner, reply));
    })
    .detach();
}

/// Something a fetch answers at once: data, an error or a divergence.
pub fn worth_sending(reply: &Reply) -> bool {
    match reply {
        Reply::Fetched(result, data) => !data.is_empty() || result.error != ErrorCode::None,
        Reply::ReplicaFetched(result, data) => {
            !data.is_empty() || result.error != ErrorCode::None || result.diverging_end_offset >= 0
        }
        _ => true,
    }
}

/// How far the partition a reply read has got: its high watermark for a consumer, its log
/// end for a follower (what [`Job::Poll`] waits to see pass).
fn reached(reply: &Reply) -> i64 {
    match reply {
        Reply::Fetched(result, _) => result.high_watermark,
        Reply::ReplicaFetched(result, _) => result.log_end_offset,
        _ => -1,
    }
}

impl Shard {
    /// Reads one partition this shard owns.
    pub(super) async fn read(self: &Rc<Self>, read: Read) -> Reply {
        match read {
            Read::Fetch {
                topic,
                partition,
                offset,
                max_bytes,
            } => self.fetch(&topic, partition, offset, max_bytes).await,
            Read::Replica {
                topic,
                replica,
                request,
            } => {
                self.metrics.partition_read("replica_fetch");
                let (result, data) =
                    crate::replication::replica_read(self, &topic, replica, request).await;
                Reply::ReplicaFetched(result, data)
            }
        }
    }

    async fn fetch(&self, topic: &str, partition: u32, offset: i64, max_bytes: u32) -> Reply {
        self.metrics.partition_read("fetch");
        let Some(log) = self.log(topic, partition) else {
            return Reply::Fetched(
                fetch_error(partition, ErrorCode::UnknownTopicOrPartition),
                ReadData::Empty,
            );
        };
        match log.read(offset, u64::from(max_bytes)).await {
            Ok(read) => {
                match &read.data {
                    ReadData::Memory(_) => self.metrics.reads_memory.inc(),
                    ReadData::File(_) => self.metrics.reads_file.inc(),
                    ReadData::Empty => 0,
                };
                let entry = FetchPartitionResult {
                    partition,
                    error: ErrorCode::None,
                    high_watermark: read.high_watermark,
                    log_start_offset: read.log_start_offset,
                    records: Bytes::new(),
                };
                Reply::Fetched(entry, read.data)
            }
            Err(e) => {
                let mut entry = fetch_error(partition, storage_error(&e).0);
                entry.high_watermark = log.high_watermark();
                entry.log_start_offset = log.log_start_offset();
                Reply::Fetched(entry, ReadData::Empty)
            }
        }
    }

    /// [`Job::Poll`]: waits until one of `reads` has something past its `after` (or a
    /// throttled follower's allowance is back), reads them all, and answers when one has
    /// something to send or `deadline` passed. What passed `after` yet cannot be sent (a
    /// throttled follower) makes the read wait for the throttle, never spin.
    pub(super) async fn poll(
        self: &Rc<Self>,
        reads: Vec<Read>,
        mut after: Vec<i64>,
        deadline: Instant,
    ) -> Vec<Reply> {
        let mut resume: Vec<Option<Instant>> = vec![None; reads.len()];
        loop {
            self.wait_any(&reads, &after, &resume, deadline).await;
            let jobs = reads.iter().cloned().map(Job::Read).collect();
            let replies = self.run_many(jobs, Instant::now() + READ_TIMEOUT).await;
            if Instant::now() >= deadline || replies.iter().any(worth_sending) {
                return replies;
            }
            for (index, (read, reply)) in reads.iter().zip(&replies).enumerate() {
                resume[index] = None;
                let seen = reached(reply);
                if seen <= after[index] {
                    continue;
                }
                if let Read::Replica {
                    topic,
                    replica,
                    request,
                } = read
                {
                    if let Some(wait) =
                        crate::replication::throttle_wait(self, topic, request.partition, *replica)
                    {
                        resume[index] = Some(Instant::now() + wait);
                        continue;
                    }
                }
                after[index] = seen;
            }
        }
    }

    /// Until one read's partition passes its `after`, a resume time comes, or `deadline`.
    async fn wait_any(
        &self,
        reads: &[Read],
        after: &[i64],
        resume: &[Option<Instant>],
        deadline: Instant,
    ) {
        let mut until = deadline;
        let mut waits: Vec<Pin<Box<dyn Future<Output = ()>>>> = Vec::new();
        for ((read, after), resume) in reads.iter().zip(after).zip(resume) {
            if let Some(at) = resume {
                until = until.min(*at);
                continue;
            }
            let (topic, partition) = read.partition();
            let Some(log) = self.log(topic, partition) else {
                continue;
            };
            let after = *after;
            waits.push(match read {
                Read::Fetch { .. } => Box::pin(async move { log.wait_for_data(after).await }),
                Read::Replica { .. } => Box::pin(async move { log.wait_for_end(after).await }),
            });
        }
        let any = std::future::poll_fn(|cx| {
            if waits
                .iter_mut()
                .any(|wait| wait.as_mut().poll(cx).is_ready())
            {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        let left = until.saturating_duration_since(Instant::now());
        futures_lite::future::or(any, glommio::timer::sleep(left)).await;
    }
}
