//! Decoding the records of a batch: every record as values ([`BatchView::records`]), and
//! the checks the broker makes before storing a batch ([`BatchView::validate_records`]).

use crate::batch::{BatchView, DECOMPRESSED_LEN_MAX, HEADER_LEN};
use crate::compression::Compression;
use crate::error::{Error, Result};
use crate::varint::{get_varint, get_varlong};
use bytes::Bytes;

/// A record header: a string key and an optional byte value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name (UTF-8).
    pub key: String,
    /// Header value; `None` is Kafka's null.
    pub value: Option<Bytes>,
}

/// One decoded record, with absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Absolute offset in the partition.
    pub offset: i64,
    /// Absolute timestamp (ms since the epoch).
    pub timestamp: i64,
    /// Key; `None` is Kafka's null key.
    pub key: Option<Bytes>,
    /// Value; `None` is a tombstone.
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
}

fn take<'a>(input: &mut &'a [u8], len: usize) -> Result<&'a [u8]> {
    if input.len() < len {
        return Err(Error::Truncated {
            needed: len,
            available: input.len(),
        });
    }
    let (head, rest) = input.split_at(len);
    *input = rest;
    Ok(head)
}

fn get_nullable(input: &mut &[u8], data: &Bytes) -> Result<Option<Bytes>> {
    let len = get_varint(input)?;
    if len < -1 {
        return Err(Error::BadRecord(format!("negative length {len}")));
    }
    if len == -1 {
        return Ok(None);
    }
    let slice = take(input, len as usize)?;
    Ok(Some(data.slice_ref(slice)))
}

fn decode_record(
    input: &mut &[u8],
    data: &Bytes,
    base_offset: i64,
    base_timestamp: i64,
) -> Result<Record> {
    let length = get_varint(input)?;
    if length < 0 {
        return Err(Error::BadRecord(format!("negative record length {length}")));
    }
    let mut body = take(input, length as usize)?;
    let _attributes = take(&mut body, 1)?;
    let timestamp_delta = get_varlong(&mut body)?;
    let offset_delta = get_varint(&mut body)?;
    if offset_delta < 0 {
        return Err(Error::BadRecord(format!(
            "negative offset delta {offset_delta}"
        )));
    }
    let key = get_nullable(&mut body, data)?;
    let value = get_nullable(&mut body, data)?;
    let header_count = get_varint(&mut body)?;
    if header_count < 0 {
        return Err(Error::BadRecord(format!(
            "negative header count {header_count}"
        )));
    }
    let mut headers = Vec::with_capacity((header_count as usize).min(body.len()));
    for _ in 0..header_count {
        let key_len = get_varint(&mut body)?;
        if key_len < 0 {
            return Err(Error::BadRecord(format!(
                "negative header key length {key_len}"
            )));
        }
        let key = std::str::from_utf8(take(&mut body, key_len as usize)?)
            .map_err(|e| Error::BadRecord(format!("header key is not UTF-8: {e}")))?
            .to_owned();
        let value = get_nullable(&mut body, data)?;
        headers.push(Header { key, value });
    }
    if !body.is_empty() {
        return Err(Error::BadRecord(format!(
            "{} bytes left inside a record",
            body.len()
        )));
    }
    Ok(Record {
        offset: base_offset + i64::from(offset_delta),
        timestamp: base_timestamp.wrapping_add(timestamp_delta),
        key,
        value,
        headers,
    })
}

impl BatchView<'_> {
    /// Decodes every record (decompressing first when needed).
    ///
    /// # Errors
    /// [`Error::BadRecord`] for malformed records or a count that does not match the
    /// header, compression errors, [`Error::UnsupportedCompression`] for gzip/snappy.
    pub fn records(&self) -> Result<Vec<Record>> {
        let count = self.records_count();
        if count < 0 {
            return Err(Error::BadRecord(format!("negative records count {count}")));
        }
        let section = &self.as_bytes()[HEADER_LEN..];
        let data: Bytes = match self.compression()? {
            Compression::None => Bytes::copy_from_slice(section),
            codec => Bytes::from(codec.decompress(section, DECOMPRESSED_LEN_MAX)?),
        };
        let mut records = Vec::with_capacity((count as usize).min(data.len()));
        let mut input: &[u8] = &data;
        for _ in 0..count {
            let record =
                decode_record(&mut input, &data, self.base_offset(), self.base_timestamp())?;
            if record.offset > self.last_offset() {
                return Err(Error::BadRecord(format!(
                    "record offset {} beyond batch last offset {}",
                    record.offset,
                    self.last_offset()
                )));
            }
            records.push(record);
        }
        if !input.is_empty() {
            return Err(Error::BadRecord(format!(
                "{} bytes after the last of {count} records",
                input.len()
            )));
        }
        Ok(records)
    }
}
