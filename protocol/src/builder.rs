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
    /// Records encoded as they are pushed, behind [`HEADER_LEN`] bytes kept for the header:
    /// without compression this buffer becomes the batch, so a record's bytes are copied
    /// once, into here.
    buffer: Vec<u8>,
    count: usize,
    base_timestamp: i64,
    max_timestamp: i64,
    /// The first record that could not be encoded; reported by `build`.
    error: Option<String>,
}

impl BatchBuilder {
    /// An empty builder: base offset 0, no compression, no producer id.
    pub fn new() -> BatchBuilder {
        BatchBuilder {
            partition_leader_epoch: -1,
            ..BatchBuilder::default()
        }
    }
    /// An empty builder whose buffer holds `bytes` of records before it grows.
    pub fn with_capacity(bytes: usize) -> BatchBuilder {
        let mut buffer = Vec::with_capacity(HEADER_LEN + bytes);
        buffer.resize(HEADER_LEN, 0);
        BatchBuilder {
            partition_leader_epoch: -1,
            buffer,
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
    /// Adds a record (encoding it now); offsets are assigned in push order. A record that
    /// cannot be encoded (a key or value over 2 GiB) makes `build` fail.
    pub fn push(&mut self, record: NewRecord) -> &mut Self {
        if self.buffer.len() < HEADER_LEN {
            self.buffer.resize(HEADER_LEN, 0);
        }
        if self.count == 0 {
            self.base_timestamp = record.timestamp;
            self.max_timestamp = record.timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(record.timestamp);
        let Ok(offset_delta) = i32::try_from(self.count) else {
            self.error.get_or_insert_with(|| "too many records".into());
            return self;
        };
        let delta = record.timestamp.wrapping_sub(self.base_timestamp);
        if let Err(e) = encode_record(&mut self.buffer, &record, offset_delta, delta) {
            self.error.get_or_insert_with(|| e.to_string());
        }
        self.count += 1;
        self
    }
    /// Number of records pushed so far.
    pub fn records_count(&self) -> usize {
        self.count
    }

    /// Encodes the batch, leaving the builder as it was.
    ///
    /// # Errors
    /// As [`BatchBuilder::finish`].
    pub fn build(&self) -> Result<Vec<u8>> {
        self.clone().finish()
    }

    /// Encodes the batch; without compression the records are not copied again.
    ///
    /// # Errors
    /// [`Error::Encode`] for an empty batch, a record that could not be encoded, or a batch
    /// larger than [`BATCH_LEN_MAX`]; compression errors.
    pub fn finish(self) -> Result<Vec<u8>> {
        if let Some(error) = &self.error {
            return Err(Error::Encode(error.clone()));
        }
        if self.count == 0 {
            return Err(Error::Encode("a batch needs at least one record".into()));
        }
        let count =
            i32::try_from(self.count).map_err(|_| Error::Encode("too many records".into()))?;
        let mut out = match self.compression {
            Compression::None => self.buffer,
            compression => {
                let section = compression.compress(&self.buffer[HEADER_LEN..])?;
                let mut out = Vec::with_capacity(HEADER_LEN + section.len());
                out.resize(HEADER_LEN, 0);
                out.extend_from_slice(&section);
                out
            }
        };
        let total = out.len();
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
        let mut header = [0u8; HEADER_LEN];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            header[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&self.base_offset.to_be_bytes());
        put(&((total - LOG_OVERHEAD) as i32).to_be_bytes());
        put(&self.partition_leader_epoch.to_be_bytes());
        put(&[MAGIC as u8]);
        put(&[0; 4]);
        put(&attributes.to_be_bytes());
        put(&(count - 1).to_be_bytes());
        put(&self.base_timestamp.to_be_bytes());
        put(&self.max_timestamp.to_be_bytes());
        put(&self.producer.producer_id.to_be_bytes());
        put(&self.producer.producer_epoch.to_be_bytes());
        put(&self.producer.base_sequence.to_be_bytes());
        put(&count.to_be_bytes());
        debug_assert_eq!(at, HEADER_LEN);
        out[..HEADER_LEN].copy_from_slice(&header);
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
