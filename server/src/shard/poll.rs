//! Reads of partitions and the long poll: each owner shard of a request's partitions gets
//! one job that reads them, waits on them when there is nothing to send, and reads again
//! (one mesh round trip per owner), the same for consumers' fetches (Kafka's and native)
//! and followers' replica fetches.

use super::{fetch_error, owner, storage_error, Job, Read, Reply, Shard};
use bytes::Bytes;
use keel_engine::ReadData;
use keel_protocol::api::{ErrorCode, FetchPartitionResult};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

/// Longest a read of one partition (after any long-poll wait) may take before it is
/// answered RequestTimedOut.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long past an owner's last possible answer the caller waits for it.
const ANSWER_GRACE: Duration = Duration::from_millis(100);

/// Reads each partition on its owning shard; when the replies are not `enough`, each
/// owner waits (until `deadline`) for a partition with something new and reads again,
/// and is asked again while they are still not enough. A request whose partitions one
/// shard owns costs one round trip; one spread over several owners, two (a read, then a
/// wait-and-read) per owner. `count` is the number of `reads`. Returns each read's outcome,
/// in order, and the longest time an owner spent parked.
pub async fn long_poll<T: super::Outcome>(
    shard: &Rc<Shard>,
    count: usize,
    reads: impl IntoIterator<Item = Read>,
    deadline: Instant,
    enough: Enough,
) -> (Vec<Result<T, ErrorCode>>, Duration) {
    let (replies, waited) = poll_replies(shard, count, reads, deadline, enough).await;
    (replies.into_iter().map(T::from_reply).collect(), waited)
}

/// When a long poll's replies are enough to answer.
#[derive(Debug, Clone, Copy)]
pub enum Enough {
    /// A consumer's fetch: this many bytes of records, or an error.
    Bytes(u64),
    /// A follower's fetch: anything to send (see [`worth_sending`]).
    Anything,
}

impl Enough {
    fn met(self, replies: &[Reply]) -> bool {
        match self {
            Enough::Bytes(min_bytes) => {
                let mut bytes = 0;
                for reply in replies {
                    match reply {
                        Reply::Fetched(result, data) if result.error == ErrorCode::None => {
                            bytes += data.len();
                        }
                        _ => return true,
                    }
                }
                bytes >= min_bytes
            }
            Enough::Anything => replies.iter().any(worth_sending),
        }
    }
}

async fn poll_replies(
    shard: &Rc<Shard>,
    count: usize,
    reads: impl IntoIterator<Item = Read>,
    deadline: Instant,
    enough: Enough,
) -> (Vec<Reply>, Duration) {
    // Room first: reads waiting for it are not made yet (as in `fan_out`).
    let _room = match super::fan_out::admit(shard, count).await {
        Ok(room) => room,
        Err(refused) => return (refused, Duration::ZERO),
    };
    let reads: Vec<Read> = reads.into_iter().collect();
    assert_eq!(
        reads.len(),
        count,
        "long_poll was told the count of its reads"
    );
    let mut by_owner: Vec<Vec<usize>> = vec![Vec::new(); shard.shards()];
    for (index, read) in reads.iter().enumerate() {
        let (topic, partition) = read.partition();
        by_owner[owner(topic, partition, shard.shards())].push(index);
    }
    let mut replies: Vec<Reply> = reads.iter().map(|_| Reply::timed_out()).collect();
    let mut waited = vec![Duration::ZERO; by_owner.len()];
    // One owner: its job waits there from the start (one round trip). Several: each first
    // reads and answers at once, so that an answer has every partition's state.
    let mut unanswered = by_owner
        .iter()
        .filter(|indices| !indices.is_empty())
        .count();
    let first_deadline = if unanswered == 1 {
        deadline
    } else {
        Instant::now()
    };
    let mut answered_once = vec![false; by_owner.len()];
    let mut polling = vec![false; by_owner.len()];
    // At most one poll per owner is in flight, so the channel holds at most that many.
    let (answered, mut answers) = futures_channel::mpsc::unbounded();
    for (owner, indices) in by_owner.iter().enumerate() {
        if !indices.is_empty() {
            let after = indices.iter().map(|&i| reads[i].offset()).collect();
            let job = poll_job(&reads, indices, after, first_deadline);
            send_poll(shard, owner, job, answered.clone());
            polling[owner] = true;
        }
    }
    // Every owner answers by then: it reads (within READ_TIMEOUT) once `deadline` passed.
    let give_up = deadline.max(Instant::now()) + READ_TIMEOUT + ANSWER_GRACE;
    while polling.contains(&true) {
        use futures_lite::StreamExt;
        let left = give_up.saturating_duration_since(Instant::now());
        let next = futures_lite::future::or(answers.next(), async {
            glommio::timer::sleep(left).await;
            None
        });
        let Some((owner, reply)) = next.await else {
            break;
        };
        polling[owner] = false;
        take_answer(&mut replies, &by_owner[owner], reply, &mut waited[owner]);
        if !answered_once[owner] {
            answered_once[owner] = true;
            unanswered -= 1;
        }
        // Until every owner answered once, one that did waits for the others: asked
        // again now, an owner with only errors to tell would answer at once, round after
        // round (it spun until the deadline).
        if unanswered > 0 {
            continue;
        }
        if enough.met(&replies) {
            break;
        }
        if Instant::now() < deadline {
            for (owner, indices) in by_owner.iter().enumerate() {
                if !indices.is_empty() && !polling[owner] {
                    let after = waiting_after(&reads, &replies, indices);
                    let job = poll_job(&reads, indices, after, deadline);
                    send_poll(shard, owner, job, answered.clone());
                    polling[owner] = true;
                }
            }
        }
    }
    (replies, waited.into_iter().max().unwrap_or_default())
}

/// Puts an owner's answer for its reads (`indices`) into `replies`.
fn take_answer(replies: &mut [Reply], indices: &[usize], reply: Reply, waited: &mut Duration) {
    match reply {
        Reply::Polled(fresh, parked) if fresh.len() == indices.len() => {
            *waited += parked;
            for (index, fresh) in indices.iter().zip(fresh) {
                replies[*index] = fresh;
            }
        }
        Reply::Done(Err(failed)) => {
            for index in indices {
                replies[*index] = Reply::Done(Err(failed.clone()));
            }
        }
        _ => {}
    }
}

/// What each of an owner's reads waits to see passed next: what its last reply showed (a
/// consumer's high watermark, so partial data waits for more) or its own offset.
fn waiting_after(reads: &[Read], replies: &[Reply], indices: &[usize]) -> Vec<i64> {
    indices
        .iter()
        .map(|&index| match (&reads[index], &replies[index]) {
            (Read::Fetch { offset, .. }, Reply::Fetched(result, _)) => {
                (*offset).max(result.high_watermark)
            }
            (read, _) => read.offset(),
        })
        .collect()
}

fn poll_job(reads: &[Read], indices: &[usize], after: Vec<i64>, deadline: Instant) -> Job {
    Job::Poll {
        reads: indices.iter().map(|&index| reads[index].clone()).collect(),
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
fn worth_sending(reply: &Reply) -> bool {
    match reply {
        Reply::Fetched(result, data) => !data.is_empty() || result.error != ErrorCode::None,
        Reply::ReplicaFetched(result, data) => {
            !data.is_empty() || result.error != ErrorCode::None || result.diverging_end_offset >= 0
        }
        _ => true,
    }
}

/// Whether a poll's reply is worth answering now: an error or a divergence, or data up
/// to a point past `after` (data the caller saw already, a partial fetch waiting for
/// `min_bytes`, is not).
fn news((reply, after): (&Reply, &i64)) -> bool {
    match reply {
        Reply::Fetched(result, data) => {
            result.error != ErrorCode::None || (!data.is_empty() && result.high_watermark > *after)
        }
        Reply::ReplicaFetched(result, _) if result.diverging_end_offset >= 0 => true,
        Reply::ReplicaFetched(result, data) => {
            result.error != ErrorCode::None || (!data.is_empty() && result.log_end_offset > *after)
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
                    ReadData::Disk(_) => self.metrics.reads_file.inc(),
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

    /// [`Job::Poll`]: reads `reads`; answers when one has something new to send (past its
    /// `after`: see [`news`]) or `deadline` passed, and otherwise waits until one of them
    /// passes its `after` (or a throttled follower's allowance is back) and reads again.
    /// What passed `after` yet cannot be sent (a throttled follower) makes the read wait
    /// for the throttle, never spin. Returns the replies and the time spent waiting.
    pub(super) async fn poll(
        self: &Rc<Self>,
        reads: Vec<Read>,
        mut after: Vec<i64>,
        deadline: Instant,
    ) -> (Vec<Reply>, Duration) {
        let mut resume: Vec<Option<Instant>> = vec![None; reads.len()];
        let mut waited = Duration::ZERO;
        loop {
            let replies = self.read_all(&reads, Instant::now() + READ_TIMEOUT).await;
            if Instant::now() >= deadline || replies.iter().zip(&after).any(news) {
                return (replies, waited);
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
            let parked = Instant::now();
            self.wait_any(&reads, &after, &resume, deadline).await;
            waited += parked.elapsed();
        }
    }

    /// Reads every partition at once: each read is polled once here (a read from the tail
    /// cache, the common case, is done then, at the cost of a function call); one that has
    /// to wait for the device runs on as a task of its own, answered
    /// [`Reply::timed_out`] if not done by `deadline`.
    async fn read_all(self: &Rc<Self>, reads: &[Read], deadline: Instant) -> Vec<Reply> {
        let mut replies: Vec<Option<Reply>> = Vec::with_capacity(reads.len());
        let mut waiting = Vec::new();
        for (index, read) in reads.iter().enumerate() {
            let shard = self.clone();
            let read = read.clone();
            // As every partition job: refused unless this broker leads it (cluster mode).
            let mut reading: Pin<Box<dyn Future<Output = Reply>>> =
                Box::pin(async move { shard.execute(Job::Read(read)).await });
            match futures_lite::future::poll_once(&mut reading).await {
                Some(reply) => replies.push(Some(reply)),
                None => {
                    replies.push(None);
                    waiting.push((index, glommio::spawn_local(reading).detach()));
                }
            }
        }
        for (index, task) in waiting {
            replies[index] = Some(super::fan_out::answer_by(deadline, task).await);
        }
        replies
            .into_iter()
            .map(|reply| reply.unwrap_or_else(Reply::timed_out))
            .collect()
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
