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

pub(crate) fn decode_record(
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
    let mut headers = Vec::with_capacity((header_count as usize).min(body.len() / 2));
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
        offset: base_offset.saturating_add(i64::from(offset_delta)),
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
        // Capacity from the bytes present, never from the count alone: a small zstd batch
        // claiming i32::MAX records must not make us allocate for them.
        let mut records =
            Vec::with_capacity((count as usize).min(data.len() / RECORD_LEN_MIN).min(1024));
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

/// What checking a batch's records found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordsSummary {
    /// Records present (equal to the header's count and to `last_offset_delta + 1`).
    pub count: i32,
    /// Largest record timestamp.
    pub max_timestamp: i64,
    /// Records without a key (refused by compacted topics).
    pub null_keys: i32,
}

/// Smallest encoding of one record: length, attributes, timestamp delta, offset delta, key
/// length, value length, header count (one byte each).
pub const RECORD_LEN_MIN: usize = 7;

impl BatchView<'_> {
    /// Checks what a producer controls and the broker relies on, beyond the CRC (which only
    /// proves the bytes are the producer's): at least one record; `records_count` equal to
    /// `last_offset_delta + 1` and to the records actually present; every record well formed
    /// with offset deltas 0, 1, 2, …; timestamps that do not overflow; and, for producer
    /// timestamps, `max_timestamp` equal to the largest record timestamp (time retention and
    /// time lookups trust it). Compressed records are decompressed, to at most
    /// `decompressed_max` bytes; nothing is allocated per record.
    ///
    /// # Errors
    /// [`Error::BadRecord`] naming the first inconsistency; compression errors.
    pub fn validate_records(&self, decompressed_max: usize) -> Result<RecordsSummary> {
        let count = self.records_count();
        let delta = self.last_offset_delta();
        if count < 1 {
            return Err(Error::BadRecord(format!(
                "records_count {count}: a batch holds at least one record"
            )));
        }
        if i64::from(delta) + 1 != i64::from(count) {
            return Err(Error::BadRecord(format!(
                "last_offset_delta {delta} does not match records_count {count}"
            )));
        }
        let section = &self.as_bytes()[HEADER_LEN..];
        let decompressed;
        let data: &[u8] = match self.compression()? {
            Compression::None => section,
            codec => {
                decompressed = codec.decompress(section, decompressed_max)?;
                &decompressed
            }
        };
        if (count as usize).saturating_mul(RECORD_LEN_MIN) > data.len() {
            return Err(Error::BadRecord(format!(
                "records_count {count} cannot fit in {} bytes of records",
                data.len()
            )));
        }
        let base_timestamp = self.base_timestamp();
        let mut max_timestamp = i64::MIN;
        let mut null_keys = 0;
        let mut input = data;
        for expected_delta in 0..count {
            let (timestamp_delta, null_key) = skip_record(&mut input, expected_delta)?;
            null_keys += i32::from(null_key);
            let timestamp = base_timestamp.checked_add(timestamp_delta).ok_or_else(|| {
                Error::BadRecord(format!(
                    "record {expected_delta}: timestamp delta {timestamp_delta} overflows"
                ))
            })?;
            max_timestamp = max_timestamp.max(timestamp);
        }
        if !input.is_empty() {
            return Err(Error::BadRecord(format!(
                "{} bytes after the last of {count} records",
                input.len()
            )));
        }
        if self.timestamp_type() == crate::batch::TimestampType::CreateTime
            && self.max_timestamp() != max_timestamp
        {
            return Err(Error::BadRecord(format!(
                "max_timestamp {} but the largest record timestamp is {max_timestamp}",
                self.max_timestamp()
            )));
        }
        Ok(RecordsSummary {
            count,
            max_timestamp,
            null_keys,
        })
    }
}

/// Walks one record, checking its structure and offset delta; returns its timestamp delta.
/// Skips one record; returns its timestamp delta and whether its key is null.
fn skip_record(input: &mut &[u8], expected_delta: i32) -> Result<(i64, bool)> {
    let bad = |what: String| Error::BadRecord(format!("record {expected_delta}: {what}"));
    let length = get_varint(input)?;
    if length < 0 {
        return Err(bad(format!("negative length {length}")));
    }
    let mut body = take(input, length as usize)?;
    take(&mut body, 1)?;
    let timestamp_delta = get_varlong(&mut body)?;
    let offset_delta = get_varint(&mut body)?;
    if offset_delta != expected_delta {
        return Err(bad(format!(
            "offset delta {offset_delta}, expected {expected_delta}"
        )));
    }
    let null_key = skip_nullable(&mut body)?;
    skip_nullable(&mut body)?;
    let headers = get_varint(&mut body)?;
    if headers < 0 {
        return Err(bad(format!("negative header count {headers}")));
    }
    for _ in 0..headers {
        let key_len = get_varint(&mut body)?;
        if key_len < 0 {
            return Err(bad(format!("negative header key length {key_len}")));
        }
        std::str::from_utf8(take(&mut body, key_len as usize)?)
            .map_err(|_| bad("header key is not UTF-8".into()))?;
        skip_nullable(&mut body)?;
    }
    if !body.is_empty() {
        return Err(bad(format!("{} bytes left inside the record", body.len())));
    }
    Ok((timestamp_delta, null_key))
}

/// Skips a nullable field; `true` when it is null.
fn skip_nullable(input: &mut &[u8]) -> Result<bool> {
    let len = get_varint(input)?;
    if len < -1 {
        return Err(Error::BadRecord(format!("negative length {len}")));
    }
    if len >= 0 {
        take(input, len as usize)?;
    }
    Ok(len == -1)
}

#[cfg(test)]
mod tests {
    use crate::batch::{BatchBuilder, BatchView, NewRecord};
    use crate::Compression;

    fn built(compression: Compression, count: i64) -> Vec<u8> {
        let mut builder = BatchBuilder::new();
        builder.compression(compression);
        for n in 0..count {
            builder.push(NewRecord::value(1_000 + n, vec![b'x'; 100]));
        }
        builder.build().unwrap()
    }

    /// Overwrites header bytes at `at` and recomputes the CRC, as a hostile producer can.
    fn forged(mut batch: Vec<u8>, at: usize, bytes: &[u8]) -> Vec<u8> {
        batch[at..at + bytes.len()].copy_from_slice(bytes);
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    fn validate(batch: &[u8]) -> Result<super::RecordsSummary, String> {
        BatchView::new_verified(batch)
            .map_err(|e| e.to_string())?
            .validate_records(1 << 20)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn honest_batches_validate() {
        for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let summary = validate(&built(codec, 5)).unwrap();
            assert_eq!((summary.count, summary.max_timestamp), (5, 1_004));
        }
    }

    #[test]
    fn values_the_crc_covers_but_a_producer_controls_are_checked() {
        // Goal: a CRC-valid batch cannot claim more offsets, more records or other
        // timestamps than it holds.
        let honest = built(Compression::None, 3);
        let cases = [
            (23, i32::MAX.to_be_bytes().to_vec(), "last_offset_delta"),
            (
                57,
                4i32.to_be_bytes().to_vec(),
                "last_offset_delta 2 does not match",
            ),
            (57, 0i32.to_be_bytes().to_vec(), "at least one record"),
            (35, i64::MAX.to_be_bytes().to_vec(), "max_timestamp"),
            (27, i64::MAX.to_be_bytes().to_vec(), "overflows"),
        ];
        for (at, bytes, expected) in cases {
            let error = validate(&forged(honest.clone(), at, &bytes)).unwrap_err();
            assert!(error.contains(expected), "{at}: {error}");
        }
        // Offset deltas must count 0, 1, 2: a batch with both counts raised to 4 and only
        // three records is refused.
        let more = forged(honest.clone(), 23, &3i32.to_be_bytes());
        let more = forged(more, 57, &4i32.to_be_bytes());
        assert!(validate(&more).is_err());
    }

    #[test]
    fn a_small_compressed_batch_claiming_billions_of_records_allocates_nothing_for_them() {
        // Goal: allocation follows the bytes present, not a count in the batch.
        for codec in [Compression::Zstd, Compression::Lz4] {
            let bomb = forged(built(codec, 1), 57, &i32::MAX.to_be_bytes());
            let bomb = forged(bomb, 23, &(i32::MAX - 1).to_be_bytes());
            let view = BatchView::new_verified(&bomb).unwrap();
            assert!(view.records().is_err());
            assert!(view.validate_records(1 << 20).is_err());
        }
        // 200 MiB of zeros in a few KiB of zstd: sizing the record list by the decompressed
        // bytes alone once asked for tens of GB.
        let mut builder = BatchBuilder::new();
        builder.compression(Compression::Zstd);
        builder.push(NewRecord::value(1, vec![0u8; 200 << 20]));
        let bomb = forged(builder.build().unwrap(), 57, &i32::MAX.to_be_bytes());
        assert!(bomb.len() < 1 << 20, "{}", bomb.len());
        let view = BatchView::new_verified(&bomb).unwrap();
        let (result, largest) = crate::alloc_probe::largest_allocation(|| view.records());
        assert!(result.is_err());
        assert!(
            largest <= 256 << 20,
            "largest allocation {largest} bytes: sized by the count, not the bytes present"
        );
        assert!(
            view.validate_records(32 << 20).is_err(),
            "over the broker's limit"
        );
    }
}
