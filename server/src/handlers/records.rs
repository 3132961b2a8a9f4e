//! The one encoder of native fetch answers, a consumer's (Fetch) and a follower's
//! (ReplicaFetch): per topic, each partition's header, then its records while the
//! response's byte budget lasts (the first non-empty partition's always), sent from where
//! they are (tail cache or file range). The Kafka listener's fetch uses the same budget.

use super::{Outgoing, Part};
use bytes::BytesMut;
use keel_engine::ReadData;
use keel_protocol::api::{
    write_fetch_partition_header, write_replica_fetch_result_header, ErrorCode,
    FetchPartitionResult, ReplicaFetchResult,
};
use keel_protocol::wire::{EncodeError, WriteExt};

/// Per topic, each partition's result and the records read for it, in request order.
pub type Round<R> = Vec<(String, Vec<(R, ReadData)>)>;

/// A partition's entry in a fetch answer: its error and its header on the wire.
pub trait FetchEntry {
    /// The partition index.
    fn partition(&self) -> u32;
    /// The entry's error.
    fn error(&self) -> ErrorCode;
    /// Writes the entry's header announcing `records_len` bytes of records.
    fn write_header(&self, head: &mut BytesMut, records_len: usize) -> Result<(), EncodeError>;
}

impl FetchEntry for FetchPartitionResult {
    fn partition(&self) -> u32 {
        self.partition
    }
    fn error(&self) -> ErrorCode {
        self.error
    }
    fn write_header(&self, head: &mut BytesMut, records_len: usize) -> Result<(), EncodeError> {
        write_fetch_partition_header(head, self, records_len)
    }
}

impl FetchEntry for ReplicaFetchResult {
    fn partition(&self) -> u32 {
        self.partition
    }
    fn error(&self) -> ErrorCode {
        self.error
    }
    fn write_header(&self, head: &mut BytesMut, records_len: usize) -> Result<(), EncodeError> {
        write_replica_fetch_result_header(head, self, records_len)
    }
}

/// A fetch answer for `round` within `max_bytes`: the distinct errors of its entries (for
/// the error counters), then the parts (headers in memory, records from memory or as file
/// ranges); `sent(topic, partition, bytes)` is told of each partition's records that go
/// out. An encoding error is answered with an error frame, never a panic (names and
/// counts were bounded where they entered).
pub fn records_answer<R: FetchEntry>(
    round: Round<R>,
    max_bytes: u32,
    mut sent: impl FnMut(&str, u32, u64),
    waited: std::time::Duration,
) -> Outgoing {
    let mut errors: Vec<ErrorCode> = round
        .iter()
        .flat_map(|(_, entries)| entries.iter().map(|(result, _)| result.error()))
        .filter(|e| *e != ErrorCode::None)
        .collect();
    errors.sort_by_key(|e| *e as u16);
    errors.dedup();
    let mut parts = Vec::new();
    let mut head = BytesMut::new();
    if let Err(e) = encode(round, max_bytes, &mut sent, &mut parts, &mut head) {
        tracing::warn!(error = %e, "fetch response cannot be encoded");
        return Outgoing::error(ErrorCode::InvalidRequest);
    }
    if !head.is_empty() {
        parts.push(head.freeze());
    }
    Outgoing {
        error_code: ErrorCode::None,
        parts,
        errors,
        waited,
    }
}

fn encode<R: FetchEntry>(
    round: Round<R>,
    max_bytes: u32,
    sent: &mut impl FnMut(&str, u32, u64),
    parts: &mut Vec<Part>,
    head: &mut BytesMut,
) -> Result<(), EncodeError> {
    let mut budget = Budget::new(max_bytes);
    head.put_count("topics", round.len())?;
    for (topic, partitions) in round {
        head.put_string("topic", &topic)?;
        head.put_count("partitions", partitions.len())?;
        for (result, data) in partitions {
            let keep = budget.take(data.len());
            result.write_header(head, if keep { data.len() as usize } else { 0 })?;
            if keep {
                sent(&topic, result.partition(), data.len());
                super::push_records(data, head, parts);
            }
        }
    }
    Ok(())
}

/// A response's byte budget: records go in while they fit, and the first non-empty
/// partition's always (so a consumer is never stuck behind one large batch).
pub struct Budget {
    left: u64,
    first: bool,
}

impl Budget {
    /// A budget of `max_bytes`.
    pub fn new(max_bytes: u32) -> Budget {
        Budget {
            left: u64::from(max_bytes),
            first: true,
        }
    }

    /// Whether records of `len` bytes go into the response (then counted against it).
    pub fn take(&mut self, len: u64) -> bool {
        let keep = len > 0 && (self.first || len <= self.left);
        if keep {
            self.first = false;
            self.left = self.left.saturating_sub(len);
        }
        keep
    }
}
