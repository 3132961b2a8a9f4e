//! The work shards send each other for the partitions they own, and the answers.

use super::Shard;
use bytes::Bytes;
use keel_engine::{LogConfig, ReadData};
use keel_protocol::api::{
    ErrorCode, FetchPartitionResult, ListOffsetsPartitionResult, PartitionMetadata,
    ProducePartitionResult,
};
use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Instant;

/// A read of one partition: what a consumer fetches (up to the high watermark) or what a
/// follower fetches from its leader (up to the log end).
#[derive(Debug, Clone)]
pub enum Read {
    /// A consumer's read from `offset`.
    Fetch {
        topic: String,
        partition: u32,
        offset: i64,
        max_bytes: u32,
    },
    /// A follower's fetch of one partition this broker leads.
    Replica {
        topic: String,
        replica: u32,
        request: keel_protocol::api::ReplicaFetchPartition,
    },
}

impl Read {
    /// The partition read.
    pub fn partition(&self) -> (&str, u32) {
        match self {
            Read::Fetch {
                topic, partition, ..
            } => (topic, *partition),
            Read::Replica { topic, request, .. } => (topic, request.partition),
        }
    }

    /// The offset read from.
    pub fn offset(&self) -> i64 {
        match self {
            Read::Fetch { offset, .. } => *offset,
            Read::Replica { request, .. } => request.fetch_offset,
        }
    }
}

/// A service's work to run on another shard: made there into a future on that shard.
pub struct Remote {
    /// What it is, for the mesh-call counter.
    pub kind: &'static str,
    /// Called on the owner shard.
    pub work: Box<dyn FnOnce(Rc<Shard>) -> LocalAnswer + Send>,
}

/// A [`Remote`]'s future on its shard, answering any `Send` value (the caller knows the
/// type it asked for).
pub type LocalAnswer = Pin<Box<dyn Future<Output = Box<dyn Any + Send>>>>;

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({})", self.kind)
    }
}

/// Work for the shard that owns a partition.
#[derive(Debug)]
pub enum Job {
    /// Open (creating if needed) a partition's log.
    Open {
        topic: String,
        partition: u32,
        log: LogConfig,
    },
    /// Close a partition's log and delete its directory.
    Remove { topic: String, partition: u32 },
    /// Reopen a partition's log with a new configuration.
    Reconfigure {
        topic: String,
        partition: u32,
        log: LogConfig,
    },
    /// Append the batches of a produce request.
    Produce {
        topic: String,
        partition: u32,
        records: Bytes,
        acks: i8,
        /// How long an acks=all append may wait for the ISR.
        timeout_ms: u32,
    },
    /// A consumer's or a follower's read of one partition.
    Read(Read),
    /// Several jobs for partitions this shard owns, run at once; each not answered by
    /// `deadline` is answered RequestTimedOut (and runs on to its end).
    Many { jobs: Vec<Job>, deadline: Instant },
    /// Reads that answer as soon as one of them has something new to send (data past
    /// `after`, an error, a divergence), waiting on this shard until then or until
    /// `deadline`: a long poll's read, wait and read in one round trip. `after[i]`: the
    /// offset read `i` must see passed (the high watermark for a consumer, the log end for
    /// a follower); answered [`Reply::Polled`].
    Poll {
        reads: Vec<Read>,
        after: Vec<i64>,
        deadline: Instant,
    },
    /// Earliest, latest or by-time offset.
    ListOffsets {
        topic: String,
        partition: u32,
        timestamp: i64,
    },
    /// Offsets and size.
    Describe { topic: String, partition: u32 },
    /// A service's own work on this shard (the group coordinator's, say): answered
    /// [`Reply::Ran`].
    Run(Remote),
    /// A topic change for the controller (cluster mode), run on shard 0.
    Cluster(keel_controller::node::Request),
    /// Kafka's DeleteRecords: make records below `offset` (-1: the high watermark) go away,
    /// at segment granularity; answered with the new log start.
    DeleteRecords {
        topic: String,
        partition: u32,
        offset: i64,
    },
}

/// The owner's answer to a [`Job`].
#[derive(Debug)]
pub enum Reply {
    /// Open/Remove/Reconfigure outcome, or a job's failure (RequestTimedOut: not answered
    /// in time).
    Done(Result<(), (ErrorCode, String)>),
    /// Produce outcome.
    Produced(ProducePartitionResult),
    /// Fetch outcome: the entry (records empty) and the bytes to send.
    Fetched(FetchPartitionResult, ReadData),
    /// List-offsets outcome.
    Offsets(ListOffsetsPartitionResult),
    /// Describe outcome.
    Described(PartitionMetadata),
    /// Replica fetch outcome: the entry (records empty) and the bytes to send.
    ReplicaFetched(keel_protocol::api::ReplicaFetchResult, ReadData),
    /// The replies to [`Job::Many`], in job order.
    Many(Vec<Reply>),
    /// The replies to [`Job::Poll`], in job order, and how long it waited for them.
    Polled(Vec<Reply>, std::time::Duration),
    /// What a [`Job::Run`] answered.
    Ran(Box<dyn Any + Send>),
    /// The controller's answer to a topic change.
    Cluster(Result<keel_controller::node::Reply, keel_controller::Error>),
}

impl Reply {
    /// A job not answered in time.
    pub fn timed_out() -> Reply {
        Reply::Done(Err((ErrorCode::RequestTimedOut, String::new())))
    }

    /// The error of a reply that is not the answer its job expects.
    pub fn error(&self) -> ErrorCode {
        match self {
            Reply::Done(Err((error, _))) => *error,
            _ => ErrorCode::Unknown,
        }
    }
}

impl Job {
    /// The job's kind, for the mesh-call counter.
    pub fn kind(&self) -> &'static str {
        match self {
            Job::Open { .. } => "open",
            Job::Remove { .. } => "remove",
            Job::Reconfigure { .. } => "reconfigure",
            Job::Produce { .. } => "produce",
            Job::Read(Read::Fetch { .. }) => "fetch",
            Job::Read(Read::Replica { .. }) => "replica_fetch",
            Job::Many { jobs, .. } => jobs.first().map_or("many", Job::kind),
            Job::Poll { .. } => "poll",
            Job::ListOffsets { .. } => "list_offsets",
            Job::Describe { .. } => "describe",
            Job::Run(remote) => remote.kind,
            Job::Cluster(_) => "cluster",
            Job::DeleteRecords { .. } => "delete_records",
        }
    }
}
