//! The replica fetch API (40): followers fetching from a partition's leader. Many
//! partitions per request, long-polled; the answer carries the leader's high watermark and,
//! when the follower's log diverged from the leader's (KIP-320), where its last fetched
//! epoch ends on the leader, so the follower truncates before fetching again.

use super::*;

/// A partition a follower fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaFetchPartition {
    /// Partition index.
    pub partition: u32,
    /// The leader epoch the follower knows from the metadata: a leader at another epoch
    /// refuses (`FencedLeaderEpoch` when the follower's is older, `UnknownLeaderEpoch` when
    /// newer).
    pub leader_epoch: i32,
    /// The follower's log end (it has everything before, durably per its fsync policy).
    pub fetch_offset: i64,
    /// The epoch of the follower's batch just before `fetch_offset`; -1 at the start.
    pub last_fetched_epoch: i32,
    /// Most bytes for this partition (at least one batch is sent).
    pub partition_max_bytes: u32,
}

/// The replica fetch request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaFetch {
    /// The follower's node id.
    pub replica_id: u32,
    /// Longest wait for data when no partition has any.
    pub max_wait_ms: u32,
    /// Most bytes in the response.
    pub max_bytes: u32,
    /// Partitions and offsets.
    pub topics: Vec<TopicEntries<ReplicaFetchPartition>>,
}

/// The leader's answer for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaFetchResult {
    /// Partition index.
    pub partition: u32,
    /// Outcome.
    pub error: ErrorCode,
    /// The leader's high watermark.
    pub high_watermark: i64,
    /// The leader's log start.
    pub log_start_offset: i64,
    /// The leader's log end.
    pub log_end_offset: i64,
    /// With `diverging_end_offset`: the follower's last fetched epoch is not the leader's
    /// at `fetch_offset`; the largest epoch the leader has at most that one, -1 otherwise.
    pub diverging_epoch: i32,
    /// Where `diverging_epoch` ends on the leader; the follower truncates to at most this.
    pub diverging_end_offset: i64,
    /// Batches from `fetch_offset` (empty when diverging).
    pub records: Bytes,
}

/// Bytes of a replica fetch partition entry before its records.
pub const REPLICA_FETCH_RESULT_HEADER_LEN: usize = 4 + 2 + 8 + 8 + 8 + 4 + 8 + 4;

impl ReplicaFetch {
    pub(super) fn decode(r: &mut Reader) -> Result<ReplicaFetch, DecodeError> {
        let replica_id = r.u32("replica_id")?;
        let max_wait_ms = r.u32("max_wait_ms")?;
        let max_bytes = r.u32("max_bytes")?;
        let topics = read_topic_entries(r, 24, |r| {
            Ok(ReplicaFetchPartition {
                partition: r.u32("partition")?,
                leader_epoch: r.i32("leader_epoch")?,
                fetch_offset: r.i64("fetch_offset")?,
                last_fetched_epoch: r.i32("last_fetched_epoch")?,
                partition_max_bytes: r.u32("partition_max_bytes")?,
            })
        })?;
        Ok(ReplicaFetch {
            replica_id,
            max_wait_ms,
            max_bytes,
            topics,
        })
    }

    pub(super) fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        out.put_u32(self.replica_id);
        out.put_u32(self.max_wait_ms);
        out.put_u32(self.max_bytes);
        write_topic_entries(out, &self.topics, |out, p| {
            out.put_u32(p.partition);
            out.put_i32(p.leader_epoch);
            out.put_i64(p.fetch_offset);
            out.put_i32(p.last_fetched_epoch);
            out.put_u32(p.partition_max_bytes);
            Ok(())
        })
    }
}

/// Writes the part of a replica fetch partition entry before its records.
pub fn write_replica_fetch_result_header(
    out: &mut BytesMut,
    result: &ReplicaFetchResult,
    records_len: usize,
) -> Result<(), EncodeError> {
    out.put_u32(result.partition);
    out.put_u16(result.error as u16);
    out.put_i64(result.high_watermark);
    out.put_i64(result.log_start_offset);
    out.put_i64(result.log_end_offset);
    out.put_i32(result.diverging_epoch);
    out.put_i64(result.diverging_end_offset);
    out.put_u32(len_u32("records", records_len)?);
    Ok(())
}

pub(super) fn decode_results(
    r: &mut Reader,
) -> Result<Vec<TopicEntries<ReplicaFetchResult>>, DecodeError> {
    read_topic_entries(r, REPLICA_FETCH_RESULT_HEADER_LEN, |r| {
        Ok(ReplicaFetchResult {
            partition: r.u32("partition")?,
            error: ErrorCode::from_u16(r.u16("error")?),
            high_watermark: r.i64("high_watermark")?,
            log_start_offset: r.i64("log_start_offset")?,
            log_end_offset: r.i64("log_end_offset")?,
            diverging_epoch: r.i32("diverging_epoch")?,
            diverging_end_offset: r.i64("diverging_end_offset")?,
            records: r.bytes("records")?,
        })
    })
}

pub(super) fn encode_results(
    out: &mut BytesMut,
    topics: &[TopicEntries<ReplicaFetchResult>],
) -> Result<(), EncodeError> {
    write_topic_entries(out, topics, |out, p| {
        write_replica_fetch_result_header(out, p, p.records.len())?;
        out.put_slice(&p.records);
        Ok(())
    })
}
