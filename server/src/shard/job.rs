//! The work shards send each other for the partitions they own, and the answers.

use bytes::Bytes;
use keel_engine::{LogConfig, ReadData};
use keel_protocol::api::{
    ErrorCode, FetchPartitionResult, ListOffsetsPartitionResult, PartitionMetadata,
    ProducePartitionResult,
};
use std::time::Duration;

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
    /// Read from an offset.
    Fetch {
        topic: String,
        partition: u32,
        offset: i64,
        max_bytes: u32,
    },
    /// Complete when the partition has data at `offset` or after `wait`.
    WaitForData {
        topic: String,
        partition: u32,
        offset: i64,
        wait: Duration,
    },
    /// Earliest, latest or by-time offset.
    ListOffsets {
        topic: String,
        partition: u32,
        timestamp: i64,
    },
    /// Offsets and size.
    Describe { topic: String, partition: u32 },
    /// A follower's fetch of one partition this broker leads.
    ReplicaFetch {
        topic: String,
        replica: u32,
        request: keel_protocol::api::ReplicaFetchPartition,
    },
    /// Complete when the partition's log end passes `offset` or after `wait`.
    WaitForEnd {
        topic: String,
        partition: u32,
        offset: i64,
        wait: Duration,
    },
    /// A consumer-group request, for the coordinator shard.
    Group(keel_protocol::api::Request),
    /// A Kafka client's group request (classic protocol), for the coordinator shard.
    KafkaGroup(crate::kafka::groups::GroupJob),
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
    /// Open/Remove/Reconfigure/WaitForData outcome.
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
    /// Group request outcome.
    Group(keel_protocol::api::Response),
    /// Kafka group request outcome.
    KafkaGroup(crate::kafka::groups::GroupReply),
    /// The controller's answer to a topic change.
    Cluster(Result<keel_controller::node::Reply, keel_controller::Error>),
}
