//! Typed outcomes of partition jobs. A service asks the shard layer for the type its job
//! answers ([`Shard::ask`], [`super::fan_out`], [`super::long_poll`]) and gets that type or
//! an error code; the mesh's [`Reply`] is matched here, once per type, never in a service.

use super::{Reply, Shard};
use keel_engine::ReadData;
use keel_protocol::api::{
    ErrorCode, FetchPartitionResult, ListOffsetsPartitionResult, PartitionMetadata,
    ProducePartitionResult, ReplicaFetchResult,
};
use std::rc::Rc;

/// What one kind of partition job answers.
pub trait Outcome: Sized {
    /// The outcome `reply` carries.
    ///
    /// # Errors
    /// The error of a reply that is not this outcome (a refusal, a timeout, a shard gone).
    fn from_reply(reply: Reply) -> Result<Self, ErrorCode>;
}

/// A consumer's read: the entry (records empty) and the bytes to send.
pub type Fetched = (FetchPartitionResult, ReadData);
/// A follower's read: the entry (records empty) and the bytes to send.
pub type ReplicaFetched = (ReplicaFetchResult, ReadData);
/// The controller's answer to a change forwarded to shard 0.
pub type ClusterAnswer = Result<keel_controller::node::Reply, keel_controller::Error>;

impl Outcome for ProducePartitionResult {
    fn from_reply(reply: Reply) -> Result<Self, ErrorCode> {
        match reply {
            Reply::Produced(result) => Ok(result),
            other => Err(other.error()),
        }
    }
}

impl Outcome for Fetched {
    fn from_reply(reply: Reply) -> Result<Self, ErrorCode> {
        match reply {
            Reply::Fetched(result, data) => Ok((result, data)),
            other => Err(other.error()),
        }
    }
}

impl Outcome for ReplicaFetched {
    fn from_reply(reply: Reply) -> Result<Self, ErrorCode> {
        match reply {
            Reply::ReplicaFetched(result, data) => Ok((result, data)),
            other => Err(other.error()),
        }
    }
}

/// List offsets and delete records.
impl Outcome for ListOffsetsPartitionResult {
    fn from_reply(reply: Reply) -> Result<Self, ErrorCode> {
        match reply {
            Reply::Offsets(result) => Ok(result),
            other => Err(other.error()),
        }
    }
}

impl Outcome for PartitionMetadata {
    fn from_reply(reply: Reply) -> Result<Self, ErrorCode> {
        match reply {
            Reply::Described(described) => Ok(described),
            other => Err(other.error()),
        }
    }
}

impl Outcome for ClusterAnswer {
    fn from_reply(reply: Reply) -> Result<Self, ErrorCode> {
        match reply {
            Reply::Cluster(answer) => Ok(answer),
            other => Err(other.error()),
        }
    }
}

impl Shard {
    /// Runs `job` on shard `owner` and returns its outcome.
    ///
    /// # Errors
    /// The error of a job refused, timed out or whose shard is gone.
    pub async fn ask<T: Outcome>(
        self: &Rc<Self>,
        owner: usize,
        job: super::Job,
    ) -> Result<T, ErrorCode> {
        T::from_reply(self.call(owner, job).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_of_another_kind_is_its_error() {
        // Goal: a service asking for one outcome never mistakes another reply for it.
        let timed_out = ProducePartitionResult::from_reply(Reply::timed_out());
        assert_eq!(timed_out.unwrap_err(), ErrorCode::RequestTimedOut);
        let offsets = Reply::Offsets(ListOffsetsPartitionResult {
            partition: 0,
            error: ErrorCode::None,
            timestamp: -1,
            offset: 7,
        });
        assert_eq!(
            ProducePartitionResult::from_reply(offsets).unwrap_err(),
            ErrorCode::Unknown
        );
    }
}
