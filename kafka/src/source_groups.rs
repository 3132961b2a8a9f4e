//! Reading a source cluster's consumer groups and leader epochs over the Kafka protocol, as
//! a cluster link does (issue 23): ListGroups v2, FindCoordinator v2 and OffsetFetch v5 to
//! sync group offsets, OffsetForLeaderEpoch v3 to find where a returning cluster's history
//! parts from the source's (failback) — versions every Kafka 2.x–4.x broker serves, not
//! flexible — their answers decoded with the bounded [`Reader`] (the source is a peer).

use crate::read::{Reader, Result};
use bytes::{BufMut, Bytes, BytesMut};

const LIST_GROUPS: i16 = 16;
const FIND_COORDINATOR: i16 = 10;
const OFFSET_FETCH: i16 = 9;
const OFFSET_FOR_LEADER_EPOCH: i16 = 23;

/// A request frame with header v1 (these versions are not flexible).
fn frame(
    api: (i16, i16),
    correlation_id: i32,
    client_id: &str,
    body: impl FnOnce(&mut BytesMut),
) -> BytesMut {
    crate::source::request_frame(api, correlation_id, client_id, false, body)
}

fn put_string(out: &mut BytesMut, value: &str) {
    let bytes = &value.as_bytes()[..value.len().min(i16::MAX as usize)];
    out.put_i16(bytes.len() as i16);
    out.put_slice(bytes);
}

/// ListGroups v2: every group of the broker asked (each broker coordinates some).
pub fn list_groups_request(correlation_id: i32, client_id: &str) -> BytesMut {
    frame((LIST_GROUPS, 2), correlation_id, client_id, |_| {})
}

/// A group as ListGroups names it: (group id, protocol type).
pub type ListedGroup = (String, String);

/// A ListGroups v2 answer (after the size prefix): the correlation id, the error, and the
/// groups.
///
/// # Errors
/// A malformed or truncated body.
pub fn list_groups_response(body: Bytes) -> Result<(i32, i16, Vec<ListedGroup>)> {
    let mut r = Reader::new(body, false);
    let correlation_id = r.i32("correlation id")?;
    let _throttle = r.i32("throttle time")?;
    let error = r.i16("error code")?;
    let groups = r.array("groups", |r| {
        Ok((r.string("group id")?, r.string("protocol type")?))
    })?;
    Ok((correlation_id, error, groups))
}

/// FindCoordinator v2 for `group`.
pub fn find_coordinator_request(correlation_id: i32, client_id: &str, group: &str) -> BytesMut {
    frame((FIND_COORDINATOR, 2), correlation_id, client_id, |out| {
        put_string(out, group);
        out.put_i8(0); // key type: group
    })
}

/// A FindCoordinator v2 answer: the correlation id, the error, and the coordinator's
/// `HOST:PORT`.
///
/// # Errors
/// A malformed or truncated body.
pub fn find_coordinator_response(body: Bytes) -> Result<(i32, i16, String)> {
    let mut r = Reader::new(body, false);
    let correlation_id = r.i32("correlation id")?;
    let _throttle = r.i32("throttle time")?;
    let error = r.i16("error code")?;
    let _message = r.nullable_string("error message")?;
    let _node = r.i32("node id")?;
    let host = r.string("host")?;
    let port = r.i32("port")?;
    Ok((correlation_id, error, format!("{host}:{port}")))
}

/// OffsetFetch v5 for every committed partition of `group`.
pub fn offset_fetch_request(correlation_id: i32, client_id: &str, group: &str) -> BytesMut {
    frame((OFFSET_FETCH, 5), correlation_id, client_id, |out| {
        put_string(out, group);
        out.put_i32(-1); // topics: null, every committed partition
    })
}

/// A group's committed offset for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The next offset the group reads.
    pub offset: i64,
}

/// An OffsetFetch v5 answer: the correlation id, the group's error, and its committed
/// offsets (partitions with an error or no offset left out).
///
/// # Errors
/// A malformed or truncated body.
pub fn offset_fetch_response(body: Bytes) -> Result<(i32, i16, Vec<Committed>)> {
    let mut r = Reader::new(body, false);
    let correlation_id = r.i32("correlation id")?;
    let _throttle = r.i32("throttle time")?;
    let topics = r.array("topics", |r| {
        let topic = r.string("topic")?;
        let partitions = r.array("partitions", |r| {
            let partition = r.i32("partition")?;
            let offset = r.i64("committed offset")?;
            let _epoch = r.i32("committed leader epoch")?;
            let _metadata = r.nullable_string("metadata")?;
            let error = r.i16("error code")?;
            Ok((partition, offset, error))
        })?;
        Ok((topic, partitions))
    })?;
    let error = r.i16("error code")?;
    let committed = topics
        .into_iter()
        .flat_map(|(topic, partitions)| {
            partitions
                .into_iter()
                .filter(|(_, offset, error)| *error == 0 && *offset >= 0)
                .map(move |(partition, offset, _)| Committed {
                    topic: topic.clone(),
                    partition,
                    offset,
                })
        })
        .collect();
    Ok((correlation_id, error, committed))
}

/// OffsetForLeaderEpoch v3 (as a consumer, replica id -1): for each (partition, epoch) of
/// `topic`, where that epoch ends on the source.
pub fn offset_for_leader_epoch_request(
    correlation_id: i32,
    client_id: &str,
    topic: &str,
    partitions: &[(i32, i32)],
) -> BytesMut {
    frame(
        (OFFSET_FOR_LEADER_EPOCH, 3),
        correlation_id,
        client_id,
        |out| {
            out.put_i32(-1); // replica id: a consumer
            out.put_i32(1);
            put_string(out, topic);
            out.put_i32(partitions.len() as i32);
            for (partition, epoch) in partitions {
                out.put_i32(*partition);
                out.put_i32(-1); // current leader epoch: not checked
                out.put_i32(*epoch);
            }
        },
    )
}

/// Where an epoch ends on the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEnd {
    /// Partition.
    pub partition: i32,
    /// Kafka error code.
    pub error: i16,
    /// The largest epoch at most the one asked (-1: none).
    pub leader_epoch: i32,
    /// Where it ends (-1: none).
    pub end_offset: i64,
}

/// An OffsetForLeaderEpoch v3 answer: the correlation id and each partition's answer.
///
/// # Errors
/// A malformed or truncated body.
pub fn offset_for_leader_epoch_response(body: Bytes) -> Result<(i32, Vec<EpochEnd>)> {
    let mut r = Reader::new(body, false);
    let correlation_id = r.i32("correlation id")?;
    let _throttle = r.i32("throttle time")?;
    let topics = r.array("topics", |r| {
        let _topic = r.string("topic")?;
        r.array("partitions", |r| {
            Ok(EpochEnd {
                error: r.i16("error code")?,
                partition: r.i32("partition")?,
                leader_epoch: r.i32("leader epoch")?,
                end_offset: r.i64("end offset")?,
            })
        })
    })?;
    Ok((correlation_id, topics.into_iter().flatten().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_decode_and_truncated_ones_are_refused() {
        let mut list = BytesMut::new();
        list.put_i32(5);
        list.put_i32(0);
        list.put_i16(0);
        list.put_i32(1);
        put_string(&mut list, "billing");
        put_string(&mut list, "consumer");
        let list = list.freeze();
        assert_eq!(
            list_groups_response(list.clone()).unwrap(),
            (5, 0, vec![("billing".into(), "consumer".into())])
        );
        assert!(list_groups_response(list.slice(..list.len() - 3)).is_err());
        let mut fetch = BytesMut::new();
        fetch.put_i32(6);
        fetch.put_i32(0);
        fetch.put_i32(1);
        put_string(&mut fetch, "orders");
        fetch.put_i32(2);
        for (partition, offset, error) in [(0, 42i64, 0i16), (1, -1, 0)] {
            fetch.put_i32(partition);
            fetch.put_i64(offset);
            fetch.put_i32(-1);
            fetch.put_i16(-1);
            fetch.put_i16(error);
        }
        fetch.put_i16(0);
        let (_, error, committed) = offset_fetch_response(fetch.freeze()).unwrap();
        assert_eq!(error, 0);
        assert_eq!(
            committed,
            [Committed {
                topic: "orders".into(),
                partition: 0,
                offset: 42
            }]
        );
        // A hostile count cannot make the decoder allocate past the bytes.
        let mut hostile = BytesMut::new();
        hostile.put_i32(7);
        hostile.put_i32(0);
        hostile.put_i32(i32::MAX);
        assert!(offset_fetch_response(hostile.freeze()).is_err());
    }
}
