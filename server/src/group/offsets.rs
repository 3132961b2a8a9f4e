//! Records of `__consumer_offsets`: the key of a committed offset, and the checks a commit
//! passes before its batch is built.

use keel_protocol::api::{ErrorCode, TopicEntries};

/// Key of a committed offset in `__consumer_offsets`.
pub fn offset_key(group: &str, topic: &str, partition: u32) -> String {
    format!("{group}\u{0}{topic}\u{0}{partition}")
}

/// An upper bound on the bytes of the batch a commit writes: the batch header, then per
/// record its key, value and varint framing.
pub(crate) fn commit_bytes(group: &str, topics: &[TopicEntries<(u32, i64)>]) -> usize {
    const RECORD_OVERHEAD: usize = 32;
    topics
        .iter()
        .map(|entry| {
            let per_record = group.len() + entry.topic.len() + 12 + 8 + RECORD_OVERHEAD;
            per_record.saturating_mul(entry.partitions.len())
        })
        .fold(keel_protocol::batch::HEADER_LEN, usize::saturating_add)
}

/// The entries of a commit whose topic and partition exist (`counts`: partitions of each
/// entry's topic, 0 for a topic that does not exist).
pub(crate) fn known_partitions(
    asked: &[TopicEntries<(u32, i64)>],
    counts: &[u32],
) -> Vec<TopicEntries<(u32, i64)>> {
    assert_eq!(asked.len(), counts.len());
    asked
        .iter()
        .zip(counts)
        .filter_map(|(entry, count)| {
            let partitions: Vec<(u32, i64)> = entry
                .partitions
                .iter()
                .copied()
                .filter(|(partition, _)| partition < count)
                .collect();
            (!partitions.is_empty()).then(|| TopicEntries {
                topic: entry.topic.clone(),
                partitions,
            })
        })
        .collect()
}

/// The answer to a commit, in the order asked: `error` for the partitions that exist,
/// UnknownTopicOrPartition for the rest.
pub(crate) fn commit_answer(
    asked: Vec<TopicEntries<(u32, i64)>>,
    counts: &[u32],
    error: ErrorCode,
) -> Vec<TopicEntries<(u32, ErrorCode)>> {
    asked
        .into_iter()
        .zip(counts)
        .map(|(entry, count)| TopicEntries {
            topic: entry.topic,
            partitions: entry
                .partitions
                .into_iter()
                .map(|(partition, _)| {
                    let known = partition < *count;
                    (
                        partition,
                        if known {
                            error
                        } else {
                            ErrorCode::UnknownTopicOrPartition
                        },
                    )
                })
                .collect(),
        })
        .collect()
}

/// The (group, topic, partition) of an offset key.
pub fn parse_offset_key(key: &[u8]) -> Option<(String, String, u32)> {
    let text = std::str::from_utf8(key).ok()?;
    let mut parts = text.split('\u{0}');
    let (group, topic, partition) = (parts.next()?, parts.next()?, parts.next()?);
    Some((group.to_owned(), topic.to_owned(), partition.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use keel_protocol::batch::{BatchBuilder, NewRecord};

    #[test]
    fn commit_bytes_bounds_the_batch_a_commit_builds() {
        // Goal: the size check before building never lets through a batch larger than it said.
        for (group_len, topic_len, partitions) in [(1, 1, 1), (30_000, 249, 50), (7, 20, 5_000)] {
            let group = "g".repeat(group_len);
            let topics = vec![TopicEntries {
                topic: "t".repeat(topic_len),
                partitions: (0..partitions).map(|p| (u32::MAX - p, i64::MAX)).collect(),
            }];
            let mut builder = BatchBuilder::new();
            for (partition, offset) in &topics[0].partitions {
                builder.push(NewRecord {
                    timestamp: i64::MAX,
                    key: Some(Bytes::from(offset_key(
                        &group,
                        &topics[0].topic,
                        *partition,
                    ))),
                    value: Some(Bytes::copy_from_slice(&offset.to_be_bytes())),
                    headers: Vec::new(),
                });
            }
            let built = builder.build().unwrap().len();
            let bound = commit_bytes(&group, &topics);
            assert!(built <= bound, "{built} > {bound}");
        }
    }
}
