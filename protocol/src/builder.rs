//! Building a RecordBatch v2 from records: the producer's side of [`crate::batch`].

use crate::batch::TimestampType;
use crate::batch::{
    BatchView, ATTRIBUTES, BATCH_LEN_MAX, CRC, HEADER_LEN, LOG_OVERHEAD, MAGIC, TIMESTAMP_TYPE_BIT,
    TRANSACTIONAL_BIT,
};
use crate::compression::Compression;
use crate::error::{Error, Result};
use crate::records::Header;
use crate::varint::{put_varint, put_varlong, varint_len, varlong_len};
use bytes::Bytes;

/// A record to put in a new batch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewRecord {
    /// Timestamp (ms since the epoch).
    pub timestamp: i64,
    /// Key; `None` is Kafka's null key.
    pub key: Option<Bytes>,
    /// Value; `None` is a tombstone.
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
}

impl NewRecord {
    /// A record with a value and a timestamp, no key and no headers.
    pub fn value(timestamp: i64, value: impl Into<Bytes>) -> NewRecord {
        NewRecord {
            timestamp,
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
        }
    }
}

/// Idempotent-producer fields of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerFields {
    /// Producer id (-1: none).
    pub producer_id: i64,
    /// Producer epoch (-1: none).
    pub producer_epoch: i16,
    /// Sequence of the first record (-1: none).
    pub base_sequence: i32,
}

impl Default for ProducerFields {
    fn default() -> Self {
        ProducerFields {
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        }
    }
}

/// Builds one RecordBatch v2 from records.
///
/// ```
/// use keel_protocol::batch::{BatchBuilder, BatchView, NewRecord};
/// let mut builder = BatchBuilder::new();
/// builder.push(NewRecord::value(1_700_000_000_000, "hello"));
/// let bytes = builder.build().unwrap();
/// let view = BatchView::new_verified(&bytes).unwrap();
/// assert_eq!(view.records_count(), 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct BatchBuilder {
    base_offset: i64,
    partition_leader_epoch: i32,
    compression: Compression,
    timestamp_type: TimestampType,
    transactional: bool,
    producer: ProducerFields,
    records: Vec<NewRecord>,
}

impl BatchBuilder {
    /// An empty builder: base offset 0, no compression, no producer id.
    pub fn new() -> BatchBuilder {
        BatchBuilder {
            partition_leader_epoch: -1,
            ..BatchBuilder::default()
        }
    }
    /// Sets the base offset (a broker overwrites it on append).
    pub fn base_offset(&mut self, base_offset: i64) -> &mut Self {
        self.base_offset = base_offset;
        self
    }
    /// Sets the partition leader epoch (a broker overwrites it on append; -1 by default).
    pub fn partition_leader_epoch(&mut self, epoch: i32) -> &mut Self {
        self.partition_leader_epoch = epoch;
        self
    }
    /// Sets the compression codec.
    pub fn compression(&mut self, compression: Compression) -> &mut Self {
        self.compression = compression;
        self
    }
    /// Sets the timestamp type.
    pub fn timestamp_type(&mut self, timestamp_type: TimestampType) -> &mut Self {
        self.timestamp_type = timestamp_type;
        self
    }
    /// Marks the batch transactional.
    pub fn transactional(&mut self, transactional: bool) -> &mut Self {
        self.transactional = transactional;
        self
    }
    /// Sets the idempotent producer fields.
    pub fn producer(&mut self, producer: ProducerFields) -> &mut Self {
        self.producer = producer;
        self
    }
    /// Adds a record; offsets are assigned in push order.
    pub fn push(&mut self, record: NewRecord) -> &mut Self {
        self.records.push(record);
        self
    }
    /// Number of records pushed so far.
    pub fn records_count(&self) -> usize {
        self.records.len()
    }

    /// Encodes the batch.
    ///
    /// # Errors
    /// [`Error::Encode`] for an empty batch or one larger than [`BATCH_LEN_MAX`];
    /// compression errors.
    pub fn build(&self) -> Result<Vec<u8>> {
        if self.records.is_empty() {
            return Err(Error::Encode("a batch needs at least one record".into()));
        }
        let count = i32::try_from(self.records.len())
            .map_err(|_| Error::Encode("too many records".into()))?;
        let base_timestamp = self.records[0].timestamp;
        let max_timestamp = self
            .records
            .iter()
            .map(|r| r.timestamp)
            .max()
            .expect("non-empty");
        let mut section = Vec::new();
        for (offset_delta, record) in self.records.iter().enumerate() {
            encode_record(
                &mut section,
                record,
                offset_delta as i32,
                record.timestamp.wrapping_sub(base_timestamp),
            )?;
        }
        let section = self.compression.compress(&section)?;
        let total = HEADER_LEN + section.len();
        if total > BATCH_LEN_MAX {
            return Err(Error::Encode(format!(
                "batch of {total} bytes exceeds {BATCH_LEN_MAX}"
            )));
        }
        let mut attributes = self.compression.id();
        if self.timestamp_type == TimestampType::LogAppendTime {
            attributes |= TIMESTAMP_TYPE_BIT;
        }
        if self.transactional {
            attributes |= TRANSACTIONAL_BIT;
        }
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&self.base_offset.to_be_bytes());
        out.extend_from_slice(&((total - LOG_OVERHEAD) as i32).to_be_bytes());
        out.extend_from_slice(&self.partition_leader_epoch.to_be_bytes());
        out.push(MAGIC as u8);
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&attributes.to_be_bytes());
        out.extend_from_slice(&(count - 1).to_be_bytes());
        out.extend_from_slice(&base_timestamp.to_be_bytes());
        out.extend_from_slice(&max_timestamp.to_be_bytes());
        out.extend_from_slice(&self.producer.producer_id.to_be_bytes());
        out.extend_from_slice(&self.producer.producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.producer.base_sequence.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
        debug_assert_eq!(out.len(), HEADER_LEN);
        out.extend_from_slice(&section);
        let crc = crc32c::crc32c(&out[ATTRIBUTES..]);
        out[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        debug_assert!(
            BatchView::new_verified(&out).is_ok(),
            "builder output must verify"
        );
        Ok(out)
    }
}

fn nullable_len(value: &Option<Bytes>) -> usize {
    match value {
        None => varint_len(-1),
        Some(bytes) => varint_len(bytes.len() as i32) + bytes.len(),
    }
}

fn put_nullable(out: &mut Vec<u8>, value: &Option<Bytes>) {
    match value {
        None => put_varint(out, -1),
        Some(bytes) => {
            put_varint(out, bytes.len() as i32);
            out.extend_from_slice(bytes);
        }
    }
}

fn encode_record(
    out: &mut Vec<u8>,
    record: &NewRecord,
    offset_delta: i32,
    timestamp_delta: i64,
) -> Result<()> {
    let too_big = |what: &str| Error::Encode(format!("{what} larger than 2 GiB"));
    for (what, field) in [("key", &record.key), ("value", &record.value)] {
        if field.as_ref().is_some_and(|b| b.len() > i32::MAX as usize) {
            return Err(too_big(what));
        }
    }
    let mut body_len = 1 + varlong_len(timestamp_delta) + varint_len(offset_delta);
    body_len += nullable_len(&record.key) + nullable_len(&record.value);
    body_len += varint_len(record.headers.len() as i32);
    for header in &record.headers {
        body_len +=
            varint_len(header.key.len() as i32) + header.key.len() + nullable_len(&header.value);
    }
    let body_len = i32::try_from(body_len).map_err(|_| too_big("record"))?;
    let start = out.len();
    put_varint(out, body_len);
    let body_start = out.len();
    out.push(0);
    put_varlong(out, timestamp_delta);
    put_varint(out, offset_delta);
    put_nullable(out, &record.key);
    put_nullable(out, &record.value);
    put_varint(out, record.headers.len() as i32);
    for header in &record.headers {
        put_varint(out, header.key.len() as i32);
        out.extend_from_slice(header.key.as_bytes());
        put_nullable(out, &header.value);
    }
    debug_assert_eq!(
        out.len() - body_start,
        body_len as usize,
        "record length prefix must match body"
    );
    debug_assert!(out.len() > start);
    Ok(())
}
