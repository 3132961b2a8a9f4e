//! The consumer protocol's embedded formats, which the broker reads to show Kafka groups
//! in `keel group describe`: a member's subscription (JoinGroup metadata) and assignment
//! (SyncGroup bytes). Always classic encoding; newer versions only append fields.

use crate::read::{Reader, Result};
use bytes::Bytes;

/// The topics a subscription names.
///
/// # Errors
/// [`crate::read::DecodeError`] for malformed bytes.
pub fn subscription_topics(metadata: Bytes) -> Result<Vec<String>> {
    let mut r = Reader::new(metadata, false);
    r.i16("subscription version")?;
    r.array("subscription topics", |r| r.string("topic"))
}

/// The partitions an assignment gives, per topic.
///
/// # Errors
/// [`crate::read::DecodeError`] for malformed bytes.
pub fn assignment_partitions(assignment: Bytes) -> Result<Vec<(String, Vec<i32>)>> {
    if assignment.is_empty() {
        return Ok(Vec::new());
    }
    let mut r = Reader::new(assignment, false);
    r.i16("assignment version")?;
    r.array("assigned topics", |r| {
        Ok((
            r.string("topic")?,
            r.array("partitions", |r| r.i32("partition"))?,
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    #[test]
    fn what_clients_embed_is_read() {
        // Goal: subscriptions and assignments of every version decode to their topics.
        for version in 0..=3 {
            let subscription = ConsumerProtocolSubscription::default().with_topics(vec![
                StrBytes::from_static_str("a"),
                StrBytes::from_static_str("b"),
            ]);
            let mut out = bytes::BytesMut::new();
            bytes::BufMut::put_i16(&mut out, version);
            subscription.encode(&mut out, version).unwrap();
            assert_eq!(subscription_topics(out.freeze()).unwrap(), ["a", "b"]);
        }
        let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            kafka_protocol::messages::consumer_protocol_assignment::TopicPartition::default()
                .with_topic(StrBytes::from_static_str("a").into())
                .with_partitions(vec![0, 2]),
        ]);
        let mut out = bytes::BytesMut::new();
        bytes::BufMut::put_i16(&mut out, 1);
        assignment.encode(&mut out, 1).unwrap();
        assert_eq!(
            assignment_partitions(out.freeze()).unwrap(),
            [("a".to_string(), vec![0, 2])]
        );
        assert!(assignment_partitions(Bytes::from_static(&[0, 0, 0x7f, 0, 0, 0])).is_err());
    }
}
