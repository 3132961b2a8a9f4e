//! A batch with only some of its records, for the log cleaner. The kept records' bytes are
//! copied as they are (their offset and timestamp deltas unchanged), so every kept record
//! keeps its offset and timestamp; the header keeps its base offset, last offset delta,
//! timestamps, attributes and producer fields (a producer's last sequence stays known), and
//! gets the new record count, length and CRC. A compressed batch is compressed again with
//! its codec.

use crate::batch::{BatchView, ATTRIBUTES, CRC, DECOMPRESSED_LEN_MAX, HEADER_LEN, LOG_OVERHEAD};
use crate::compression::Compression;
use crate::error::{Error, Result};
use crate::records::{decode_record, Record};
use bytes::Bytes;

/// What is left of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retained {
    /// Every record is kept: the batch as it is.
    All,
    /// No record is kept.
    Nothing,
    /// The batch rebuilt with the kept records.
    Some(Vec<u8>),
}

const RECORDS_COUNT: usize = HEADER_LEN - 4;

/// Keeps the records of `batch` for which `keep` is true. Control batches are always kept.
///
/// # Errors
/// Records that do not decode, compression errors.
pub fn retain_records(
    batch: &BatchView,
    mut keep: impl FnMut(&Record) -> bool,
) -> Result<Retained> {
    if batch.is_control() {
        return Ok(Retained::All);
    }
    let section = &batch.as_bytes()[HEADER_LEN..];
    let compression = batch.compression()?;
    let data: Bytes = match compression {
        Compression::None => Bytes::copy_from_slice(section),
        codec => Bytes::from(codec.decompress(section, DECOMPRESSED_LEN_MAX)?),
    };
    let count = batch.records_count();
    if count < 0 {
        return Err(Error::BadRecord(format!("negative records count {count}")));
    }
    let mut kept = Vec::with_capacity(data.len());
    let (mut kept_count, mut input) = (0i32, &data[..]);
    for _ in 0..count {
        let before = input;
        let record = decode_record(
            &mut input,
            &data,
            batch.base_offset(),
            batch.base_timestamp(),
        )?;
        if keep(&record) {
            kept.extend_from_slice(&before[..before.len() - input.len()]);
            kept_count += 1;
        }
    }
    if kept_count == count {
        return Ok(Retained::All);
    }
    if kept_count == 0 {
        return Ok(Retained::Nothing);
    }
    let section = match compression {
        Compression::None => kept,
        codec => codec.compress(&kept)?,
    };
    let mut out = Vec::with_capacity(HEADER_LEN + section.len());
    out.extend_from_slice(&batch.as_bytes()[..HEADER_LEN]);
    out.extend_from_slice(&section);
    let length = i32::try_from(out.len() - LOG_OVERHEAD)
        .map_err(|_| Error::Encode("batch too large".into()))?;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    out[RECORDS_COUNT..HEADER_LEN].copy_from_slice(&kept_count.to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES..]);
    out[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(Retained::Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, NewRecord, ProducerFields};

    fn batch(compression: Compression) -> Vec<u8> {
        let mut builder = BatchBuilder::new();
        builder.base_offset(100).compression(compression);
        builder.producer(ProducerFields {
            producer_id: 7,
            producer_epoch: 1,
            base_sequence: 40,
        });
        for i in 0..5i64 {
            builder.push(NewRecord {
                timestamp: 1_000 + i,
                key: Some(Bytes::from(format!("k{i}"))),
                value: (i != 3).then(|| Bytes::from(format!("v{i}"))),
                headers: Vec::new(),
            });
        }
        builder.build().unwrap()
    }

    #[test]
    fn kept_records_keep_their_offsets_timestamps_and_the_batch_its_producer() {
        // Goal: a cleaned batch reads back as the same records minus the dropped ones, and
        // its header still spans the original offsets (the producer's last sequence holds).
        for compression in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let bytes = batch(compression);
            let view = BatchView::new_verified(&bytes).unwrap();
            let Retained::Some(out) = retain_records(&view, |r| r.offset % 2 == 0).unwrap() else {
                panic!("some records kept");
            };
            let cleaned = BatchView::new_verified(&out).unwrap();
            let records = cleaned.records().unwrap();
            let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
            assert_eq!(offsets, vec![100, 102, 104], "{compression:?}");
            assert_eq!(records[1].timestamp, 1_002);
            assert_eq!(records[1].value.as_deref(), Some(&b"v2"[..]));
            assert_eq!(cleaned.base_offset(), 100);
            assert_eq!(cleaned.last_offset(), 104);
            assert_eq!(cleaned.records_count(), 3);
            assert_eq!(cleaned.producer_id(), 7);
            assert_eq!(cleaned.base_sequence(), 40);
            assert_eq!(cleaned.compression().unwrap(), compression);
            assert_eq!(cleaned.max_timestamp(), view.max_timestamp());
        }
    }

    #[test]
    fn all_or_nothing_is_said_without_a_copy() {
        let bytes = batch(Compression::None);
        let view = BatchView::new_verified(&bytes).unwrap();
        assert_eq!(retain_records(&view, |_| true).unwrap(), Retained::All);
        assert_eq!(retain_records(&view, |_| false).unwrap(), Retained::Nothing);
    }
}
