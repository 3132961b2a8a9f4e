//! A request's partition jobs sent to their owning shards: one mesh message per owner
//! carrying all of its jobs, every owner (and every topic) at once, one deadline for the
//! whole request.

use super::{Job, Reply, Shard};
use keel_protocol::api::ErrorCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long past the request's deadline the caller waits for an owner's answer: the
/// owner answers every job by the deadline, and this covers the trip back.
const ANSWER_GRACE: Duration = Duration::from_millis(100);

/// Runs each of the `count` jobs on its shard (`(owner, job)`) and returns their outcomes in
/// job order (see [`replies`]).
pub async fn fan_out<T: super::Outcome>(
    shard: &Rc<Shard>,
    count: usize,
    jobs: impl IntoIterator<Item = (usize, Job)>,
    deadline: Instant,
) -> Vec<Result<T, ErrorCode>> {
    replies(shard, count, jobs, deadline)
        .await
        .into_iter()
        .map(T::from_reply)
        .collect()
}

/// Runs each of the `count` jobs on its shard (`(owner, job)`) and returns the replies in
/// job order. The jobs are made only once there is room for them (see [`admit`]): a request
/// waiting holds its decoded entries, nothing more. A job not answered by `deadline` is
/// answered [`Reply::timed_out`] and runs on to its end on its shard (as a produce whose
/// answer timed out does in Kafka); an owner that is gone answers its jobs ShuttingDown.
async fn replies(
    shard: &Rc<Shard>,
    count: usize,
    jobs: impl IntoIterator<Item = (usize, Job)>,
    deadline: Instant,
) -> Vec<Reply> {
    let _room = match admit(shard, count).await {
        Ok(room) => room,
        Err(refused) => return refused,
    };
    let mut by_owner: Vec<(Vec<usize>, Vec<Job>)> =
        (0..shard.shards()).map(|_| Default::default()).collect();
    for (index, (owner, job)) in jobs.into_iter().enumerate() {
        assert!(owner < by_owner.len(), "job for shard {owner} of {count}");
        by_owner[owner].0.push(index);
        by_owner[owner].1.push(job);
    }
    let made: usize = by_owner.iter().map(|(indices, _)| indices.len()).sum();
    assert_eq!(made, count, "fan_out was told the count of its jobs");
    let calls: Vec<_> = by_owner
        .into_iter()
        .enumerate()
        .filter(|(_, (_, jobs))| !jobs.is_empty())
        .map(|(owner, (indices, jobs))| {
            let shard = shard.clone();
            let call = glommio::spawn_local(async move {
                shard.call(owner, Job::Many { jobs, deadline }).await
            });
            (indices, call.detach())
        })
        .collect();
    let mut replies: Vec<Option<Reply>> = (0..count).map(|_| None).collect();
    for (indices, call) in calls {
        let left = (deadline + ANSWER_GRACE).saturating_duration_since(Instant::now());
        let answered = futures_lite::future::or(call, async {
            glommio::timer::sleep(left).await;
            None
        })
        .await;
        match answered {
            Some(Reply::Many(answers)) if answers.len() == indices.len() => {
                for (index, answer) in indices.into_iter().zip(answers) {
                    replies[index] = Some(answer);
                }
            }
            Some(Reply::Done(Err(failed))) => {
                for index in indices {
                    replies[index] = Some(Reply::Done(Err(failed.clone())));
                }
            }
            _ => {}
        }
    }
    replies
        .into_iter()
        .map(|reply| reply.unwrap_or_else(Reply::timed_out))
        .collect()
}

/// How long admin work on every partition of a topic may take (opening a partition
/// recovers its log): in effect, no deadline.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Runs `job(p)` for every partition `p` of `topic` on its owning shard (in chunks of
/// `request_partitions_max`, each all at once) and returns the first error any answered:
/// opening, removing or reconfiguring a topic's logs.
///
/// # Errors
/// The message of the first partition whose job failed.
pub async fn on_every_partition(
    shard: &Rc<Shard>,
    topic: &str,
    partitions: u32,
    job: impl Fn(u32) -> Job,
) -> Result<(), String> {
    on_partitions(shard, topic, 0..partitions, job).await
}

/// As [`on_every_partition`], for the partitions in `range` only (the ones a topic grew by).
///
/// # Errors
/// The message of the first partition whose job failed.
pub async fn on_partitions(
    shard: &Rc<Shard>,
    topic: &str,
    range: std::ops::Range<u32>,
    job: impl Fn(u32) -> Job,
) -> Result<(), String> {
    let chunk = u32::try_from(shard.config.request_partitions_max).unwrap_or(u32::MAX);
    let mut first_error = None;
    let (mut start, partitions) = (range.start, range.end);
    while start < partitions {
        let end = start.saturating_add(chunk).min(partitions);
        let jobs = (start..end).map(|partition| {
            (
                super::owner(topic, partition, shard.shards()),
                job(partition),
            )
        });
        let count = (end - start) as usize;
        for reply in replies(shard, count, jobs, Instant::now() + ADMIN_TIMEOUT).await {
            if let Reply::Done(Err((_, message))) = reply {
                first_error.get_or_insert(message);
            }
        }
        start = end;
    }
    first_error.map_or(Ok(()), Err)
}

/// Room for a request's `count` partition jobs among those this shard's requests have in
/// flight, waited for (backpressure); or, for more than `request_partitions_max`, a reply
/// per job refusing the request (InvalidRequest) before anything is sent.
pub(super) async fn admit(
    shard: &Shard,
    count: usize,
) -> Result<Option<glommio::sync::Permit<'_>>, Vec<Reply>> {
    let max = shard.config.request_partitions_max;
    if count > max {
        let message = format!(
            "{count} partition entries in one request; at most {max} (request_partitions_max)"
        );
        let refused = || Reply::Done(Err((ErrorCode::InvalidRequest, message.clone())));
        return Err((0..count).map(|_| refused()).collect());
    }
    // A closed semaphore (shutting down): go on without room, as every job fails anyway.
    Ok(shard.partition_jobs.acquire_permit(count as u64).await.ok())
}

impl Shard {
    /// Runs jobs for partitions this shard owns, all at once; each not done by `deadline`
    /// is answered [`Reply::timed_out`] and left running.
    pub(super) async fn run_many(self: &Rc<Self>, jobs: Vec<Job>, deadline: Instant) -> Vec<Reply> {
        let tasks: Vec<_> = jobs
            .into_iter()
            .map(|job| {
                let shard = self.clone();
                glommio::spawn_local(async move { shard.execute(job).await }).detach()
            })
            .collect();
        let mut replies = Vec::with_capacity(tasks.len());
        for task in tasks {
            replies.push(answer_by(deadline, task).await);
        }
        replies
    }
}

/// The task's answer, or [`Reply::timed_out`] once `deadline` passed (the task runs on).
pub(super) async fn answer_by(deadline: Instant, task: glommio::task::JoinHandle<Reply>) -> Reply {
    let left = deadline.saturating_duration_since(Instant::now());
    futures_lite::future::or(
        async { task.await.unwrap_or_else(Reply::timed_out) },
        async {
            glommio::timer::sleep(left).await;
            Reply::timed_out()
        },
    )
    .await
}
