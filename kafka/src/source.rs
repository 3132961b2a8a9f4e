//! Reading another cluster over the Kafka protocol, as a mirror does (issue 23): the Fetch
//! request it sends (v12 by topic name, v13 by topic id; flexible versions) and the Fetch
//! response decoded by hand with the same bounded [`Reader`] as requests — the source is a
//! peer, and kafka-protocol's decoders size vectors from counts before reading them. A
//! partition's record bytes stay one `Bytes` (no copy); [`whole_batches`] cuts them into the
//! complete batches a mirror appends (a fetch may end inside a batch).

use crate::read::{Reader, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use keel_protocol::batch::BatchView;

/// Kafka's Fetch API key.
pub const FETCH: i16 = 1;

/// How a topic is named in a fetch: by name (v12) or id (v13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicRef {
    /// By name (Fetch v12).
    Name(String),
    /// By id (Fetch v13+).
    Id([u8; 16]),
}

/// One partition to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// Partition index.
    pub partition: i32,
    /// Offset to read from.
    pub offset: i64,
    /// Most record bytes for it.
    pub max_bytes: i32,
}

/// A Fetch request: its frame (size prefix, header v2, body), ready to send. `topics` are
/// all names or all ids (v12 or v13).
pub fn fetch_request(
    correlation_id: i32,
    client_id: &str,
    (max_wait_ms, min_bytes, max_bytes): (i32, i32, i32),
    topics: &[(TopicRef, Vec<Wanted>)],
) -> BytesMut {
    let by_id = topics.iter().any(|(t, _)| matches!(t, TopicRef::Id(_)));
    let version: i16 = if by_id { 13 } else { 12 };
    request_frame((FETCH, version), correlation_id, client_id, true, |out| {
        fetch_body(out, (max_wait_ms, min_bytes, max_bytes), topics);
    })
}

fn fetch_body(
    out: &mut BytesMut,
    (max_wait_ms, min_bytes, max_bytes): (i32, i32, i32),
    topics: &[(TopicRef, Vec<Wanted>)],
) {
    out.put_i32(-1); // replica id: a consumer
    out.put_i32(max_wait_ms);
    out.put_i32(min_bytes);
    out.put_i32(max_bytes);
    out.put_i8(0); // isolation: read uncommitted (the high watermark)
    out.put_i32(0); // session id: no fetch session
    out.put_i32(-1); // session epoch
    crate::fetch::put_uvarint(out, topics.len() as u64 + 1);
    for (topic, partitions) in topics {
        match topic {
            TopicRef::Id(id) => out.put_slice(id),
            TopicRef::Name(name) => {
                crate::fetch::put_uvarint(out, name.len() as u64 + 1);
                out.put_slice(name.as_bytes());
            }
        }
        crate::fetch::put_uvarint(out, partitions.len() as u64 + 1);
        for wanted in partitions {
            out.put_i32(wanted.partition);
            out.put_i32(-1); // current leader epoch: not checked
            out.put_i64(wanted.offset);
            out.put_i32(-1); // last fetched epoch
            out.put_i64(-1); // log start offset (a consumer's)
            out.put_i32(wanted.max_bytes);
            out.put_u8(0);
        }
        out.put_u8(0);
    }
    out.put_u8(1); // forgotten topics: none
    out.put_u8(1); // rack id: empty
    out.put_u8(0);
}

/// A request frame, size prefix included: header v1 (api key, version, correlation id,
/// client id), v2 with its tagged fields when `flexible`, then what `body` writes.
pub fn request_frame(
    (api_key, version): (i16, i16),
    correlation_id: i32,
    client_id: &str,
    flexible: bool,
    body: impl FnOnce(&mut BytesMut),
) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_i32(0); // size, filled in below
    out.put_i16(api_key);
    out.put_i16(version);
    out.put_i32(correlation_id);
    let client = &client_id.as_bytes()[..client_id.len().min(i16::MAX as usize)];
    out.put_i16(client.len() as i16);
    out.put_slice(client);
    if flexible {
        out.put_u8(0); // header tagged fields
    }
    body(&mut out);
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    out
}

/// One partition of a Fetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePartition {
    /// Partition index.
    pub partition: i32,
    /// Kafka error code.
    pub error: i16,
    /// High watermark.
    pub high_watermark: i64,
    /// Log start offset.
    pub log_start: i64,
    /// The record bytes (whole batches, then perhaps the start of one more).
    pub records: Bytes,
}

/// One topic of a Fetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceTopic {
    /// How the answer names it.
    pub topic: TopicRef,
    /// Its partitions.
    pub partitions: Vec<SourcePartition>,
}

/// A Fetch response frame's body (after the size prefix) for a request of `version` (12
/// or 13): the correlation id, the top-level error, and the topics.
///
/// # Errors
/// A malformed or truncated body, or counts the bytes cannot hold.
pub fn fetch_response(version: i16, body: Bytes) -> Result<(i32, i16, Vec<SourceTopic>)> {
    let mut r = Reader::new(body, true);
    let correlation_id = r.i32("correlation id")?;
    r.tagged_fields()?;
    let _throttle_ms = r.i32("throttle time")?;
    let error = r.i16("error code")?;
    let _session = r.i32("session id")?;
    let topics = r.array("responses", |r| {
        let topic = if version >= 13 {
            TopicRef::Id(r.uuid("topic id")?)
        } else {
            TopicRef::Name(r.string("topic")?)
        };
        let partitions = r.array("partitions", read_partition)?;
        r.tagged_fields()?;
        Ok(SourceTopic { topic, partitions })
    })?;
    r.tagged_fields()?;
    Ok((correlation_id, error, topics))
}

fn read_partition(r: &mut Reader) -> Result<SourcePartition> {
    let partition = r.i32("partition")?;
    let error = r.i16("error code")?;
    let high_watermark = r.i64("high watermark")?;
    let _last_stable = r.i64("last stable offset")?;
    let log_start = r.i64("log start offset")?;
    r.nullable_array("aborted transactions", |r| {
        let _producer = r.i64("producer id")?;
        let _first = r.i64("first offset")?;
        r.tagged_fields()
    })?;
    let _preferred = r.i32("preferred read replica")?;
    let records = r.nullable_bytes("records")?.unwrap_or_default();
    r.tagged_fields()?;
    Ok(SourcePartition {
        partition,
        error,
        high_watermark,
        log_start,
        records,
    })
}

/// A complete batch within a partition's record bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSpan {
    /// Base offset.
    pub base: i64,
    /// Last offset.
    pub last: i64,
    /// Where it starts in the record bytes, and its length.
    pub at: usize,
    /// Its length in bytes.
    pub len: usize,
}

/// The complete batches at the start of `records`, each checked (structure and CRC); a
/// trailing partial batch (a fetch's byte limit cut it) is left out.
///
/// # Errors
/// A batch that is complete but fails its checks (a corrupt source).
pub fn whole_batches(records: &Bytes) -> std::result::Result<Vec<BatchSpan>, String> {
    cut(records, true)
}

/// As [`whole_batches`] with the structure checked but not the CRC: for a reader that
/// hands the batches to a log that verifies each before storing it (a mirror).
///
/// # Errors
/// A batch that is complete but malformed.
pub fn batch_spans(records: &Bytes) -> std::result::Result<Vec<BatchSpan>, String> {
    cut(records, false)
}

fn cut(records: &Bytes, crc: bool) -> std::result::Result<Vec<BatchSpan>, String> {
    let mut spans = Vec::new();
    let mut at = 0;
    // base offset (8) + batch length (4): the length counts the bytes after these 12.
    while records.len() - at >= 12 {
        let declared = (&records[at + 8..at + 12]).get_i32();
        let Ok(len) = usize::try_from(declared) else {
            return Err(format!("a batch at byte {at} declares length {declared}"));
        };
        let total = 12 + len;
        if records.len() - at < total {
            break;
        }
        let bytes = &records[at..at + total];
        let view = if crc {
            BatchView::new_verified(bytes)
        } else {
            BatchView::new(bytes)
        }
        .map_err(|e| format!("the batch at byte {at}: {e}"))?;
        spans.push(BatchSpan {
            base: view.base_offset(),
            last: view.last_offset(),
            at,
            len: total,
        });
        at += total;
    }
    Ok(spans)
}

/// Kafka's Metadata API key.
pub const METADATA: i16 = 3;

/// A Metadata request (v12) for `topics` (`None`: every topic): its frame.
pub fn metadata_request(
    correlation_id: i32,
    client_id: &str,
    topics: Option<&[String]>,
) -> BytesMut {
    request_frame((METADATA, 12), correlation_id, client_id, true, |out| {
        match topics {
            None => out.put_u8(0), // null: every topic
            Some(topics) => {
                crate::fetch::put_uvarint(out, topics.len() as u64 + 1);
                for name in topics {
                    out.put_slice(&[0; 16]);
                    crate::fetch::put_uvarint(out, name.len() as u64 + 1);
                    out.put_slice(name.as_bytes());
                    out.put_u8(0);
                }
            }
        }
        out.put_u8(0); // allow auto topic creation: no
        out.put_u8(0); // include topic authorized operations: no
        out.put_u8(0);
    })
}

/// A broker of the source cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceBroker {
    /// Node id.
    pub node_id: i32,
    /// Host.
    pub host: String,
    /// Port.
    pub port: i32,
}

/// A topic of the source cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceTopicMetadata {
    /// Kafka error code (UNKNOWN_TOPIC_OR_PARTITION, TOPIC_AUTHORIZATION_FAILED, …).
    pub error: i16,
    /// Name.
    pub name: String,
    /// Id (what tells a re-created topic from the one mirrored).
    pub id: [u8; 16],
    /// Internal (`__consumer_offsets`).
    pub internal: bool,
    /// (partition, leader node id, leader epoch, error) per partition.
    pub partitions: Vec<(i32, i32, i32, i16)>,
}

/// A Metadata v12 response frame's body: the correlation id, the brokers and the topics.
///
/// # Errors
/// A malformed or truncated body, or counts the bytes cannot hold.
pub fn metadata_response(
    body: Bytes,
) -> Result<(i32, Vec<SourceBroker>, Vec<SourceTopicMetadata>)> {
    let mut r = Reader::new(body, true);
    let correlation_id = r.i32("correlation id")?;
    r.tagged_fields()?;
    let _throttle_ms = r.i32("throttle time")?;
    let brokers = r.array("brokers", |r| {
        let broker = SourceBroker {
            node_id: r.i32("node id")?,
            host: r.string("host")?,
            port: r.i32("port")?,
        };
        let _rack = r.nullable_string("rack")?;
        r.tagged_fields()?;
        Ok(broker)
    })?;
    let _cluster_id = r.nullable_string("cluster id")?;
    let _controller = r.i32("controller id")?;
    let topics = r.array("topics", |r| {
        let error = r.i16("error code")?;
        let name = r.nullable_string("name")?.unwrap_or_default();
        let id = r.uuid("topic id")?;
        let internal = r.bool("is internal")?;
        let partitions = r.array("partitions", |r| {
            let error = r.i16("error code")?;
            let partition = r.i32("partition")?;
            let leader = r.i32("leader")?;
            let epoch = r.i32("leader epoch")?;
            for field in ["replicas", "isr", "offline replicas"] {
                r.array(field, |r| r.i32(field))?;
            }
            r.tagged_fields()?;
            Ok((partition, leader, epoch, error))
        })?;
        let _operations = r.i32("topic authorized operations")?;
        r.tagged_fields()?;
        Ok(SourceTopicMetadata {
            error,
            name,
            id,
            internal,
            partitions,
        })
    })?;
    r.tagged_fields()?;
    Ok((correlation_id, brokers, topics))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::{
        write_end, write_partition, write_partition_end, write_start, write_topic, PartitionHead,
    };
    use keel_protocol::batch::{BatchBuilder, NewRecord};

    fn batch(base: i64, values: &[&str]) -> Vec<u8> {
        let mut builder = BatchBuilder::new();
        for (i, value) in values.iter().enumerate() {
            builder.push(NewRecord::value(
                1_700_000_000_000 + i as i64,
                value.to_string(),
            ));
        }
        let mut bytes = builder.build().unwrap().to_vec();
        bytes[..8].copy_from_slice(&base.to_be_bytes());
        // The CRC covers what follows the attributes' offset, not the base offset.
        bytes
    }

    /// A Fetch response as the broker encodes it (after the size prefix).
    fn response(version: i16, records: &[u8], id: [u8; 16]) -> Bytes {
        let mut out = BytesMut::new();
        out.put_i32(77);
        out.put_u8(0);
        write_start(&mut out, version, 0, 0, 0, 1);
        write_topic(&mut out, version, "orders", &id, 1);
        let head = PartitionHead {
            partition: 3,
            error: 0,
            high_watermark: 10,
            last_stable_offset: 10,
            log_start_offset: 2,
        };
        write_partition(&mut out, version, &head, records.len());
        out.put_slice(records);
        write_partition_end(&mut out, version);
        write_end(&mut out, version);
        write_end(&mut out, version);
        out.freeze()
    }

    #[test]
    fn the_brokers_fetch_answer_decodes_and_cuts_into_whole_batches() {
        let mut records = batch(2, &["a", "b", "c"]);
        records.extend(batch(5, &["d"]));
        let whole = records.len();
        let partial = batch(6, &["e", "f"]);
        records.extend(&partial[..partial.len() - 5]);
        for (version, topic) in [
            (12, TopicRef::Name("orders".into())),
            (13, TopicRef::Id([9; 16])),
        ] {
            let (correlation, error, topics) =
                fetch_response(version, response(version, &records, [9; 16])).unwrap();
            assert_eq!((correlation, error), (77, 0));
            assert_eq!(topics[0].topic, topic);
            let partition = &topics[0].partitions[0];
            assert_eq!(
                (
                    partition.partition,
                    partition.high_watermark,
                    partition.log_start
                ),
                (3, 10, 2)
            );
            assert_eq!(partition.records.len(), records.len());
            let spans = whole_batches(&partition.records).unwrap();
            let summary: Vec<(i64, i64)> = spans.iter().map(|s| (s.base, s.last)).collect();
            assert_eq!(summary, [(2, 4), (5, 5)], "the partial batch is left out");
            assert_eq!(spans[1].at + spans[1].len, whole);
        }
    }

    #[test]
    fn corrupt_and_truncated_answers_are_errors_not_panics() {
        let mut records = batch(0, &["a"]);
        let last = records.len() - 1;
        records[last] ^= 0xff;
        assert!(whole_batches(&Bytes::from(records)).is_err(), "a bad CRC");
        let mut negative = vec![0u8; 12];
        negative[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(whole_batches(&Bytes::from(negative)).is_err());
        let good = response(13, &batch(0, &["a"]), [1; 16]);
        for cut in 0..good.len() {
            assert!(
                fetch_response(13, good.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
        // A count far beyond the bytes present is refused before any allocation.
        let mut huge = BytesMut::new();
        huge.put_i32(1);
        huge.put_u8(0);
        huge.put_i32(0);
        huge.put_i16(0);
        huge.put_i32(0);
        crate::fetch::put_uvarint(&mut huge, u32::MAX as u64);
        assert!(fetch_response(13, huge.freeze()).is_err());
    }

    #[test]
    fn the_fetch_request_is_what_the_broker_reads() {
        for topic in [TopicRef::Name("orders".into()), TopicRef::Id([4; 16])] {
            let wanted = Wanted {
                partition: 1,
                offset: 42,
                max_bytes: 1 << 20,
            };
            let frame = fetch_request(
                5,
                "keel-mirror",
                (500, 1, 8 << 20),
                &[(topic.clone(), vec![wanted])],
            );
            let size = i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
            assert_eq!(size, frame.len() - 4);
            let (header, mut reader) =
                crate::frame::parse_header(frame.freeze().slice(4..)).unwrap();
            assert_eq!((header.api_key, header.correlation_id), (FETCH, 5));
            let api = kafka_protocol::messages::ApiKey::Fetch;
            let crate::requests::KafkaRequest::Fetch(fetch) =
                crate::requests::decode(api, header.api_version, &mut reader).unwrap()
            else {
                panic!("a fetch")
            };
            assert_eq!(
                (fetch.max_wait_ms, fetch.min_bytes, fetch.max_bytes),
                (500, 1, 8 << 20)
            );
            let read = &fetch.topics[0];
            match topic {
                TopicRef::Name(name) => assert_eq!(
                    (header.api_version, read.name.as_str()),
                    (12, name.as_str())
                ),
                TopicRef::Id(id) => assert_eq!((header.api_version, read.id), (13, id)),
            }
            assert_eq!(
                (
                    read.partitions[0].partition,
                    read.partitions[0].fetch_offset
                ),
                (1, 42)
            );
            assert_eq!(read.partitions[0].partition_max_bytes, 1 << 20);
        }
    }

    #[test]
    fn a_metadata_answer_decodes_and_every_cut_of_it_is_an_error() {
        use kafka_protocol::messages::metadata_response::{
            MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
        };
        use kafka_protocol::messages::{BrokerId, MetadataResponse, TopicName};
        use kafka_protocol::protocol::{Encodable, StrBytes};
        let topic = MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("orders"))))
            .with_topic_id(crate::uuid::Uuid::from_bytes([5; 16]))
            .with_partitions(vec![MetadataResponsePartition::default()
                .with_partition_index(2)
                .with_leader_id(BrokerId(7))
                .with_leader_epoch(4)
                .with_replica_nodes(vec![BrokerId(7)])]);
        let response = MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(7))
                .with_host(StrBytes::from_static_str("10.0.0.7"))
                .with_port(9092)])
            .with_topics(vec![topic]);
        let mut body = BytesMut::new();
        body.put_i32(31);
        body.put_u8(0);
        response.encode(&mut body, 12).unwrap();
        let body = body.freeze();
        let (correlation, brokers, topics) = metadata_response(body.clone()).unwrap();
        assert_eq!(correlation, 31);
        assert_eq!(
            (
                brokers[0].node_id,
                brokers[0].host.as_str(),
                brokers[0].port
            ),
            (7, "10.0.0.7", 9092)
        );
        assert_eq!((topics[0].name.as_str(), topics[0].id), ("orders", [5; 16]));
        assert_eq!(topics[0].partitions, [(2, 7, 4, 0)]);
        for cut in 0..body.len() {
            assert!(
                metadata_response(body.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
    }
}
