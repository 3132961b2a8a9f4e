//! The Fetch response, encoded by hand so record bytes can follow each partition header
//! straight from a segment file (zero copy): headers are written here, records are sent
//! by the caller right after each partition's header, as many bytes as it announced.

use bytes::{BufMut, BytesMut};

/// A partition's answer, before its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionHead {
    /// Partition index.
    pub partition: i32,
    /// Kafka error code.
    pub error: i16,
    /// High watermark.
    pub high_watermark: i64,
    /// Last stable offset (= high watermark: no transactions).
    pub last_stable_offset: i64,
    /// Log start offset.
    pub log_start_offset: i64,
}

fn flexible(version: i16) -> bool {
    version >= 12
}

fn put_count(out: &mut BytesMut, version: i16, count: usize) {
    if flexible(version) {
        put_uvarint(out, count as u64 + 1);
    } else {
        out.put_i32(count as i32);
    }
}

/// An UNSIGNED_VARINT.
pub fn put_uvarint(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// The response's start (after the response header): throttle time, error and session
/// id (v7+), and the topic count.
pub fn write_start(
    out: &mut BytesMut,
    version: i16,
    throttle_ms: i32,
    error: i16,
    session_id: i32,
    topics: usize,
) {
    out.put_i32(throttle_ms);
    if version >= 7 {
        out.put_i16(error);
        out.put_i32(session_id);
    }
    put_count(out, version, topics);
}

/// A topic's start: its name (v4–12) or id (v13+), and its partition count.
pub fn write_topic(out: &mut BytesMut, version: i16, name: &str, id: &[u8; 16], partitions: usize) {
    if version >= 13 {
        out.put_slice(id);
    } else if flexible(version) {
        put_uvarint(out, name.len() as u64 + 1);
        out.put_slice(name.as_bytes());
    } else {
        out.put_i16(name.len() as i16);
        out.put_slice(name.as_bytes());
    }
    put_count(out, version, partitions);
}

/// A partition's header, announcing `records_len` record bytes that the caller sends
/// next; then (flexible versions) [`write_partition_end`].
pub fn write_partition(out: &mut BytesMut, version: i16, head: &PartitionHead, records_len: usize) {
    out.put_i32(head.partition);
    out.put_i16(head.error);
    out.put_i64(head.high_watermark);
    out.put_i64(head.last_stable_offset);
    if version >= 5 {
        out.put_i64(head.log_start_offset);
    }
    // Aborted transactions: none (an empty array; null would also do).
    put_count(out, version, 0);
    if version >= 11 {
        out.put_i32(-1);
    }
    if flexible(version) {
        put_uvarint(out, records_len as u64 + 1);
    } else {
        out.put_i32(records_len as i32);
    }
}

/// After a partition's records: its tagged fields (flexible versions).
pub fn write_partition_end(out: &mut BytesMut, version: i16) {
    if flexible(version) {
        out.put_u8(0);
    }
}

/// After a topic's partitions, and after the last topic: tagged fields (flexible).
pub fn write_end(out: &mut BytesMut, version: i16) {
    if flexible(version) {
        out.put_u8(0);
    }
}

/// A topic's id for the topic-id versions (Fetch v13+, Metadata v10+): derived from the
/// name, the same on every broker and across restarts, never zero.
pub fn topic_id(name: &str) -> [u8; 16] {
    let hash = |seed: u64| {
        name.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&hash(0xcbf2_9ce4_8422_2325).to_be_bytes());
    id[8..].copy_from_slice(&hash(0x6c62_272e_07bb_0142).to_be_bytes());
    if id == [0; 16] {
        id[15] = 1;
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::messages::FetchResponse;
    use kafka_protocol::protocol::Decodable;

    #[test]
    fn hand_encoded_responses_decode_with_kafka_protocol_in_every_version() {
        // Goal: what librdkafka and the Java client parse (the schema as the crate knows
        // it) is what is written, records included, from v4 to v16.
        let records = Bytes::from_static(b"0123456789");
        for version in 4..=16i16 {
            let mut out = BytesMut::new();
            write_start(&mut out, version, 0, 0, 0, 1);
            write_topic(&mut out, version, "orders", &topic_id("orders"), 2);
            for partition in 0..2 {
                let head = PartitionHead {
                    partition,
                    error: 0,
                    high_watermark: 40 + i64::from(partition),
                    last_stable_offset: 40,
                    log_start_offset: 3,
                };
                let len = if partition == 0 { records.len() } else { 0 };
                write_partition(&mut out, version, &head, len);
                if partition == 0 {
                    out.extend_from_slice(&records);
                }
                write_partition_end(&mut out, version);
            }
            write_end(&mut out, version);
            write_end(&mut out, version);
            let mut bytes = out.freeze();
            let decoded = FetchResponse::decode(&mut bytes, version).unwrap();
            assert!(bytes.is_empty(), "v{version}: trailing bytes");
            let topic = &decoded.responses[0];
            if version >= 13 {
                assert_eq!(topic.topic_id.as_bytes(), &topic_id("orders"));
            } else {
                assert_eq!(topic.topic.as_str(), "orders");
            }
            assert_eq!(topic.partitions[0].records.as_deref(), Some(&records[..]));
            assert_eq!(topic.partitions[1].high_watermark, 41);
            assert_eq!(topic.partitions[1].records.as_deref(), Some(&b""[..]));
        }
    }

    #[test]
    fn topic_ids_differ_by_name() {
        assert_ne!(topic_id("a"), topic_id("b"));
        assert_eq!(topic_id("a"), topic_id("a"));
        assert_ne!(topic_id(""), [0; 16]);
    }
}
