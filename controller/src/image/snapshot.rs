//! The image as bytes, for Raft snapshots: sections appended over time, each absent from
//! images written before it (decoded as its empty default).

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use keel_protocol::wire::{Reader, WriteExt};

use super::{BrokerInfo, MetadataImage, TopicInfo};
use crate::error::Result;
use crate::records::{decode_configs, decode_partition, encode_configs, encode_partition};

impl MetadataImage {
    /// The image as bytes, for a Raft snapshot.
    ///
    /// # Errors
    /// A field too long for its length (not reachable through [`Self::apply`]).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = BytesMut::new();
        out.put_u64(self.offset);
        out.put_u64(self.last_topic_id);
        out.put_count("brokers", self.brokers.len())?;
        for (id, b) in &self.brokers {
            out.put_u32(*id);
            out.put_string("address", &b.address)?;
            out.put_u64(b.incarnation);
            out.put_u8(u8::from(b.fenced));
        }
        out.put_count("topics", self.topics.len())?;
        for (name, t) in &self.topics {
            out.put_string("topic", name)?;
            out.put_u64(t.id);
            let configs: Vec<(String, String)> = t
                .configs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            encode_configs(&mut out, &configs)?;
            out.put_count("partitions", t.partitions.len())?;
            for p in &t.partitions {
                encode_partition(&mut out, p)?;
            }
        }
        // Partition epochs follow, in the same order (images made before they existed end
        // above, and read as epoch 0).
        for t in self.topics.values() {
            for p in &t.partitions {
                out.put_u32(p.partition_epoch);
            }
        }
        // Reassignments in progress, in the same order (absent from older images).
        for t in self.topics.values() {
            for p in &t.partitions {
                crate::records::encode_reassignment(&mut out, p)?;
            }
        }
        // Producer ids and the cluster id (absent from older images; empty: none yet).
        out.put_u64(self.next_producer_id);
        out.put_count("producer blocks", self.producer_blocks.len())?;
        for (broker, (first, count)) in &self.producer_blocks {
            out.put_u32(*broker);
            out.put_u64(*first);
            out.put_u32(*count);
        }
        out.put_string("cluster id", self.cluster_id.as_deref().unwrap_or(""))?;
        // Security metadata (absent from older images).
        let entries: Vec<crate::records::SecurityEntry> = self
            .security
            .iter()
            .map(|((kind, key), value)| crate::records::SecurityEntry {
                kind: *kind,
                key: key.clone(),
                value: Some(value.clone()),
            })
            .collect();
        crate::records::encode_security(&mut out, &entries)?;
        Ok(out.to_vec())
    }

    /// An image from [`Self::encode`]'s bytes.
    ///
    /// # Errors
    /// Truncated or malformed data.
    pub fn decode(data: &[u8]) -> Result<MetadataImage> {
        let mut r = Reader::new(Bytes::copy_from_slice(data));
        let offset = r.i64("offset")? as u64;
        let last_topic_id = r.i64("last topic id")? as u64;
        let mut brokers = BTreeMap::new();
        for _ in 0..r.count("brokers", 15)? {
            let id = r.u32("broker id")?;
            let info = BrokerInfo {
                address: r.string("address")?,
                incarnation: r.i64("incarnation")? as u64,
                fenced: r.i8("fenced")? != 0,
            };
            brokers.insert(id, info);
        }
        let mut topics = BTreeMap::new();
        for _ in 0..r.count("topics", 18)? {
            let name = r.string("topic")?;
            let id = r.i64("topic id")? as u64;
            let configs = decode_configs(&mut r)?.into_iter().collect();
            let count = r.count("partitions", 16)?;
            let mut partitions = Vec::with_capacity(count);
            for _ in 0..count {
                partitions.push(decode_partition(&mut r, 1)?);
            }
            topics.insert(
                name,
                TopicInfo {
                    id,
                    configs,
                    partitions,
                },
            );
        }
        if r.remaining() > 0 {
            for topic in topics.values_mut() {
                for p in &mut topic.partitions {
                    p.partition_epoch = r.u32("partition epoch")?;
                }
            }
        }
        if r.remaining() > 0 {
            for topic in topics.values_mut() {
                for p in &mut topic.partitions {
                    crate::records::decode_reassignment(&mut r, p)?;
                }
            }
        }
        let mut next_producer_id = 0;
        let mut producer_blocks = BTreeMap::new();
        let mut cluster_id = None;
        if r.remaining() > 0 {
            next_producer_id = r.i64("next producer id")? as u64;
            for _ in 0..r.count("producer blocks", 16)? {
                let broker = r.u32("broker id")?;
                let first = r.i64("first producer id")? as u64;
                producer_blocks.insert(broker, (first, r.u32("producer id count")?));
            }
            cluster_id = Some(r.string("cluster id")?).filter(|id| !id.is_empty());
        }
        let mut security = BTreeMap::new();
        if r.remaining() > 0 {
            for entry in crate::records::decode_security(&mut r)? {
                security.insert((entry.kind, entry.key), entry.value.unwrap_or_default());
            }
        }
        r.finish()?;
        Ok(MetadataImage {
            offset,
            last_topic_id,
            brokers,
            topics,
            next_producer_id,
            producer_blocks,
            cluster_id,
            security,
        })
    }
}
