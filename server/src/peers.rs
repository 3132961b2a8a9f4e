//! Calls between shards: a job goes to the owning shard over one glommio channel mesh and
//! its reply comes back over another, to a task of the calling shard that completes the
//! caller's local oneshot.
//!
//! Every task is woken by its own thread. The reply used to travel in a `futures` oneshot
//! completed by the owning shard, which woke the caller's glommio task from a foreign
//! thread. glommio's foreign-waker path has a window between dropping the last reference
//! and re-queuing the task, and under load (long polls and produce calls crossing shards)
//! brokers segfaulted in `RawTask::do_wake` and while dropping a cross-shard task's
//! captures, most likely through that window (not reproduced on demand). glommio's meshes
//! notify the other executor through its reactor, and the waker they wake is registered
//! on, and woken by, the receiving thread.

use crate::shard::{Job, Reply};
use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

/// A job, the caller's peer id on the reply mesh, and the caller's call id.
pub type Envelope = (Job, usize, u64);

/// A reply and the call it answers.
pub type ReplyEnvelope = (u64, Reply);

/// Capacity of each shard-to-shard channel (each direction, each mesh).
pub const MESH_CHANNEL_CAPACITY: usize = 1024;

/// The two meshes every shard joins at start-up.
#[derive(Clone)]
pub struct Meshes {
    jobs: MeshBuilder<Envelope, Full>,
    replies: MeshBuilder<ReplyEnvelope, Full>,
}

impl Meshes {
    /// Meshes for `shards` shards.
    pub fn new(shards: usize) -> Meshes {
        Meshes {
            jobs: MeshBuilder::full(shards, MESH_CHANNEL_CAPACITY),
            replies: MeshBuilder::full(shards, MESH_CHANNEL_CAPACITY),
        }
    }
}

/// This shard's end of the meshes.
pub struct Peers {
    jobs: Senders<Envelope>,
    replies: Senders<ReplyEnvelope>,
    /// Calls waiting for their reply, by call id. An entry lives while its call does (a
    /// dropped call removes it), so the map is bounded by the calls in flight.
    pending: RefCell<HashMap<u64, oneshot::Sender<Reply>>>,
    next_call: Cell<u64>,
}

/// Removes a call's entry when the call ends, answered or dropped.
struct PendingCall<'a> {
    peers: &'a Peers,
    id: u64,
}

impl Drop for PendingCall<'_> {
    fn drop(&mut self) {
        self.peers.pending.borrow_mut().remove(&self.id);
    }
}

impl Peers {
    /// Joins both meshes (every shard must join); returns this shard's end, the jobs sent
    /// to it, and the replies sent to it. The job mesh's peer id is the shard's id.
    ///
    /// # Errors
    /// When a mesh cannot be joined.
    pub async fn join(
        meshes: Meshes,
    ) -> anyhow::Result<(Peers, Receivers<Envelope>, Receivers<ReplyEnvelope>)> {
        let (jobs, job_receivers) = meshes
            .jobs
            .join()
            .await
            .map_err(|_| anyhow::anyhow!("joining the shard job mesh failed"))?;
        let (replies, reply_receivers) = meshes
            .replies
            .join()
            .await
            .map_err(|_| anyhow::anyhow!("joining the shard reply mesh failed"))?;
        let peers = Peers {
            jobs,
            replies,
            pending: RefCell::new(HashMap::new()),
            next_call: Cell::new(0),
        };
        Ok((peers, job_receivers, reply_receivers))
    }

    /// This shard's id (its peer id on the job mesh).
    pub fn id(&self) -> usize {
        self.jobs.peer_id()
    }

    /// Sends `job` to shard `owner` and waits for its reply; `None` when that shard is gone
    /// or dropped the job.
    pub async fn call(&self, owner: usize, job: Job) -> Option<Reply> {
        let id = self.next_call.get();
        self.next_call.set(id.wrapping_add(1));
        let (reply, answer) = oneshot::channel();
        self.pending.borrow_mut().insert(id, reply);
        let _entry = PendingCall { peers: self, id };
        self.jobs
            .send_to(owner, (job, self.replies.peer_id(), id))
            .await
            .ok()?;
        answer.await.ok()
    }

    /// Sends the reply to call `id` back to the shard that made it.
    pub async fn reply(&self, reply_to: usize, id: u64, reply: Reply) {
        // A shard that is gone no longer waits for anything.
        let _ = self.replies.send_to(reply_to, (id, reply)).await;
    }

    /// Completes this shard's calls as their replies arrive (one task per peer).
    pub fn serve_replies(self: &Rc<Self>, mut receivers: Receivers<ReplyEnvelope>) {
        for (_, stream) in receivers.streams() {
            let peers = self.clone();
            glommio::spawn_local(async move {
                while let Some((id, reply)) = stream.recv().await {
                    let waiting = peers.pending.borrow_mut().remove(&id);
                    if let Some(waiting) = waiting {
                        // A local wake: the caller runs on this thread.
                        let _ = waiting.send(reply);
                    }
                }
            })
            .detach();
        }
    }
}
