//! Fetch over the native read path: the same long poll and reads, the response written by
//! hand so cold data goes from the segment file to the socket with zero copy.

use super::{code, data::topic_by_id, Answer};
use crate::handlers::{self, fetch, Budget};
use crate::security::gate::Gate;
use crate::shard::Shard;
use bytes::BytesMut;
use keel_auth::acl::Operation;
use keel_auth::quota::QuotaKind;
use keel_kafka::errors;
use keel_kafka::fetch::{
    write_end, write_partition, write_partition_end, write_start, write_topic, PartitionHead,
};
use keel_kafka::frame::Header;
use keel_kafka::requests::Fetch;
use keel_protocol::api::{FetchPartition, TopicEntries};
use std::rc::Rc;

pub async fn fetch(shard: &Rc<Shard>, header: &Header, gate: &Gate<'_>, request: Fetch) -> Answer {
    let version = header.api_version;
    // Topics named by an id no topic has are answered UNKNOWN_TOPIC_ID; partitions with a
    // negative index UNKNOWN_TOPIC_OR_PARTITION.
    let mut topics: Vec<TopicEntries<FetchPartition>> = Vec::with_capacity(request.topics.len());
    let mut unknown: Vec<(usize, i32, i16)> = Vec::new();
    let mut ids = Vec::with_capacity(request.topics.len());
    for (index, topic) in request.topics.iter().enumerate() {
        let name = if version >= 13 {
            topic_by_id(shard, &topic.id)
        } else {
            Some(topic.name.clone())
        };
        ids.push(topic.id);
        let readable = name
            .as_deref()
            .is_some_and(|n| gate.topic(Operation::Read, n));
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            match (&name, u32::try_from(p.partition)) {
                (Some(_), _) if !readable => {
                    unknown.push((index, p.partition, errors::TOPIC_AUTHORIZATION_FAILED))
                }
                (Some(_), Ok(partition)) => partitions.push(FetchPartition {
                    partition,
                    fetch_offset: p.fetch_offset,
                    partition_max_bytes: p.partition_max_bytes.max(0) as u32,
                }),
                (None, _) => unknown.push((index, p.partition, errors::UNKNOWN_TOPIC_ID)),
                (Some(_), Err(_)) => {
                    unknown.push((index, p.partition, errors::UNKNOWN_TOPIC_OR_PARTITION))
                }
            }
        }
        topics.push(TopicEntries {
            topic: name.unwrap_or_default(),
            partitions,
        });
    }
    let (round, _waited) = fetch::gather(
        shard,
        request.max_wait_ms.max(0) as u32,
        request.min_bytes.max(0) as u32,
        &topics,
    )
    .await;
    // The bytes this answer sends count against the client's fetch quota first: the
    // answer carries the throttle time (KIP-219).
    let mut probe = Budget::new(request.max_bytes.max(0) as u32);
    let sent: u64 = round
        .iter()
        .flat_map(|(_, partitions)| partitions)
        .filter(|(result, data)| {
            result.error == keel_protocol::api::ErrorCode::None && probe.take(data.len())
        })
        .map(|(_, data)| data.len())
        .sum();
    let client_id = header.client_id.as_deref().unwrap_or_default();
    let throttle = super::quotas::charge(shard, gate.session(), client_id, QuotaKind::Fetch, sent);
    let mut parts = Vec::new();
    let mut head = BytesMut::new();
    header.response_header(&mut head);
    write_start(&mut head, version, throttle, 0, 0, round.len());
    let mut budget = Budget::new(request.max_bytes.max(0) as u32);
    for (index, (topic, partitions)) in round.into_iter().enumerate() {
        let refused: Vec<&(usize, i32, i16)> =
            unknown.iter().filter(|(i, ..)| *i == index).collect();
        // Written from v13 only, where the request named the topic by it.
        let id = ids[index];
        write_topic(
            &mut head,
            version,
            &topic,
            &id,
            partitions.len() + refused.len(),
        );
        for (result, data) in partitions {
            let len = data.len();
            let keep = result.error == keel_protocol::api::ErrorCode::None && budget.take(len);
            let send_len = if keep { len as usize } else { 0 };
            let partition_head = PartitionHead {
                partition: result.partition as i32,
                error: code(result.error),
                high_watermark: result.high_watermark,
                last_stable_offset: result.high_watermark,
                log_start_offset: result.log_start_offset,
            };
            write_partition(&mut head, version, &partition_head, send_len);
            if keep {
                fetch::count_out(shard, &topic, result.partition, len);
                handlers::push_records(data, &mut head, &mut parts);
            }
            write_partition_end(&mut head, version);
        }
        for (_, partition, error) in refused {
            let partition_head = PartitionHead {
                partition: *partition,
                error: *error,
                high_watermark: -1,
                last_stable_offset: -1,
                log_start_offset: -1,
            };
            write_partition(&mut head, version, &partition_head, 0);
            write_partition_end(&mut head, version);
        }
        write_end(&mut head, version);
    }
    write_end(&mut head, version);
    parts.push(head.freeze());
    Answer::Parts(parts)
}
