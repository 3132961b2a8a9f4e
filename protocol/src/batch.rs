//! Kafka RecordBatch v2: a zero-copy header view, record decoding, and a builder.
//!
//! Layout (big-endian), as stored on disk and sent on the wire:
//!
//! ```text
//! offset size field
//!  0     8    base_offset
//!  8     4    batch_length            (bytes after this field)
//! 12     4    partition_leader_epoch
//! 16     1    magic (= 2)
//! 17     4    crc (CRC-32C of bytes 21..end)
//! 21     2    attributes
//! 23     4    last_offset_delta
//! 27     8    base_timestamp
//! 35     8    max_timestamp
//! 43     8    producer_id
//! 51     2    producer_epoch
//! 53     4    base_sequence
//! 57     4    records_count
//! 61     ...  records (compressed as a whole when attributes say so)
//! ```

use crate::compression::Compression;
use crate::error::{Error, Result};

pub use crate::builder::{BatchBuilder, NewRecord, ProducerFields};
pub use crate::records::{Header, Record};

/// Bytes before the `batch_length` field's coverage starts: base offset and length.
pub const LOG_OVERHEAD: usize = 12;
/// Size of the fixed header, up to and including the record count.
pub const HEADER_LEN: usize = 61;
/// The only magic value Keel reads and writes.
pub const MAGIC: i8 = 2;
/// Largest batch the codec accepts (total bytes, header included).
pub const BATCH_LEN_MAX: usize = 64 << 20;
/// Largest decompressed records section the decoder will produce.
pub const DECOMPRESSED_LEN_MAX: usize = 256 << 20;

const BASE_OFFSET: usize = 0;
const LENGTH: usize = 8;
const PARTITION_LEADER_EPOCH: usize = 12;
const MAGIC_AT: usize = 16;
pub(crate) const CRC: usize = 17;
pub(crate) const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORDS_COUNT: usize = 57;

const _: () = assert!(RECORDS_COUNT + 4 == HEADER_LEN);
const _: () = assert!(CRC + 4 == ATTRIBUTES);

pub(crate) const TIMESTAMP_TYPE_BIT: i16 = 0x08;
pub(crate) const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// How a batch's timestamps were assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// Set by the producer.
    #[default]
    CreateTime,
    /// Set by the broker when appending.
    LogAppendTime,
}

/// Total size of the batch at the front of `input`, without checking anything else.
///
/// Returns `Ok(None)` when fewer than [`LOG_OVERHEAD`] bytes are available (incomplete is
/// a normal outcome for a stream reader), and `Ok(Some(total))` otherwise, where `total`
/// may exceed `input.len()`.
///
/// # Errors
/// [`Error::BadLength`] when the length field is smaller than a header or larger than
/// [`BATCH_LEN_MAX`].
pub fn peek_batch_len(input: &[u8]) -> Result<Option<usize>> {
    if input.len() < LOG_OVERHEAD {
        return Ok(None);
    }
    let length = i32::from_be_bytes(input[LENGTH..LENGTH + 4].try_into().expect("4 bytes"));
    let total = i64::from(length) + LOG_OVERHEAD as i64;
    if total < HEADER_LEN as i64 || total > BATCH_LEN_MAX as i64 {
        return Err(Error::BadLength(i64::from(length)));
    }
    Ok(Some(total as usize))
}

/// A borrowed view of one complete batch: reads header fields in place, decodes nothing.
#[derive(Clone, Copy)]
pub struct BatchView<'a> {
    bytes: &'a [u8],
}

impl std::fmt::Debug for BatchView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchView")
            .field("base_offset", &self.base_offset())
            .field("last_offset", &self.last_offset())
            .field("len", &self.bytes.len())
            .field("records_count", &self.records_count())
            .finish()
    }
}

impl<'a> BatchView<'a> {
    /// Views the batch at the front of `input` (which may hold more bytes after it).
    ///
    /// Checks the length and magic, not the CRC: call [`BatchView::verify_crc`] for that.
    ///
    /// # Errors
    /// [`Error::Truncated`] when `input` ends before the batch does, [`Error::BadLength`]
    /// for an impossible length, [`Error::BadMagic`] for magic other than 2.
    pub fn new(input: &'a [u8]) -> Result<BatchView<'a>> {
        let Some(total) = peek_batch_len(input)? else {
            return Err(Error::Truncated {
                needed: LOG_OVERHEAD,
                available: input.len(),
            });
        };
        if input.len() < total {
            return Err(Error::Truncated {
                needed: total,
                available: input.len(),
            });
        }
        let magic = input[MAGIC_AT] as i8;
        if magic != MAGIC {
            return Err(Error::BadMagic(magic));
        }
        let view = BatchView {
            bytes: &input[..total],
        };
        let last_offset_delta = view.last_offset_delta();
        if last_offset_delta < 0 {
            return Err(Error::BadRecord(format!(
                "negative last_offset_delta {last_offset_delta}"
            )));
        }
        Ok(view)
    }

    /// Views `input` and checks its CRC.
    ///
    /// # Errors
    /// As [`BatchView::new`], plus [`Error::CrcMismatch`].
    pub fn new_verified(input: &'a [u8]) -> Result<BatchView<'a>> {
        let view = BatchView::new(input)?;
        view.verify_crc()?;
        Ok(view)
    }

    /// The whole batch's bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Total size in bytes, header included.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    fn i16_at(&self, at: usize) -> i16 {
        i16::from_be_bytes(self.bytes[at..at + 2].try_into().expect("2 bytes"))
    }
    fn i32_at(&self, at: usize) -> i32 {
        i32::from_be_bytes(self.bytes[at..at + 4].try_into().expect("4 bytes"))
    }
    fn i64_at(&self, at: usize) -> i64 {
        i64::from_be_bytes(self.bytes[at..at + 8].try_into().expect("8 bytes"))
    }

    /// Offset of the first record.
    pub fn base_offset(&self) -> i64 {
        self.i64_at(BASE_OFFSET)
    }
    /// Offset of the last record: `base_offset + last_offset_delta`.
    pub fn last_offset(&self) -> i64 {
        // Saturating: a base offset read from a file or a peer may be anything.
        self.base_offset()
            .saturating_add(i64::from(self.last_offset_delta()))
    }
    /// Offset after the last record.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }
    /// The leader epoch stamped by the broker.
    pub fn partition_leader_epoch(&self) -> i32 {
        self.i32_at(PARTITION_LEADER_EPOCH)
    }
    /// The CRC stored in the header.
    pub fn crc(&self) -> u32 {
        self.i32_at(CRC) as u32
    }
    /// Raw attribute bits.
    pub fn attributes(&self) -> i16 {
        self.i16_at(ATTRIBUTES)
    }
    /// The records' compression codec.
    ///
    /// # Errors
    /// [`Error::BadRecord`] for a codec id Kafka does not define.
    pub fn compression(&self) -> Result<Compression> {
        Compression::from_attributes(self.attributes())
    }
    /// Whether timestamps are producer- or broker-assigned.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes() & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
    /// Part of a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes() & TRANSACTIONAL_BIT != 0
    }
    /// Holds control records (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes() & CONTROL_BIT != 0
    }
    /// `last_offset - base_offset`.
    pub fn last_offset_delta(&self) -> i32 {
        self.i32_at(LAST_OFFSET_DELTA)
    }
    /// Timestamp of the first record.
    pub fn base_timestamp(&self) -> i64 {
        self.i64_at(BASE_TIMESTAMP)
    }
    /// Largest record timestamp.
    pub fn max_timestamp(&self) -> i64 {
        self.i64_at(MAX_TIMESTAMP)
    }
    /// Idempotent producer id, -1 when none.
    pub fn producer_id(&self) -> i64 {
        self.i64_at(PRODUCER_ID)
    }
    /// Idempotent producer epoch, -1 when none.
    pub fn producer_epoch(&self) -> i16 {
        self.i16_at(PRODUCER_EPOCH)
    }
    /// Sequence number of the first record, -1 when none.
    pub fn base_sequence(&self) -> i32 {
        self.i32_at(BASE_SEQUENCE)
    }
    /// Number of records, as the header says.
    pub fn records_count(&self) -> i32 {
        self.i32_at(RECORDS_COUNT)
    }

    /// CRC-32C of the bytes the CRC covers.
    pub fn computed_crc(&self) -> u32 {
        crc32c::crc32c(&self.bytes[ATTRIBUTES..])
    }

    /// Checks the stored CRC against the bytes.
    ///
    /// # Errors
    /// [`Error::CrcMismatch`] naming both values.
    pub fn verify_crc(&self) -> Result<()> {
        let stored = self.crc();
        let computed = self.computed_crc();
        if stored != computed {
            return Err(Error::CrcMismatch { stored, computed });
        }
        Ok(())
    }
}

/// The offset after the last whole batch of a record set (batches back to back), read from
/// headers alone (no CRC check), or `from` when there is none; a partial or unreadable
/// batch ends the walk. A consumer uses it to send its next fetch before decoding.
pub fn end_offset(from: i64, mut records: &[u8]) -> i64 {
    let mut next = from;
    while let Ok(view) = BatchView::new(records) {
        next = next.max(view.next_offset());
        records = &records[view.len()..];
    }
    next
}

/// Rewrites the base offset of the batch at the front of `batch` (outside the CRC).
///
/// # Panics
/// If `batch` is shorter than a batch header.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    assert!(
        batch.len() >= HEADER_LEN,
        "set_base_offset needs a whole header"
    );
    batch[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Rewrites the partition leader epoch of the batch at the front of `batch` (outside the CRC).
///
/// # Panics
/// If `batch` is shorter than a batch header.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    assert!(
        batch.len() >= HEADER_LEN,
        "set_partition_leader_epoch needs a whole header"
    );
    batch[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    #[test]
    fn end_offset_walks_whole_batches_only() {
        let batch = |base: i64, count: i64| {
            let mut builder = BatchBuilder::new();
            builder.base_offset(base);
            for i in 0..count {
                builder.push(NewRecord::value(i, "v"));
            }
            builder.build().unwrap()
        };
        let mut set = batch(10, 3);
        set.extend_from_slice(&batch(13, 5));
        assert_eq!(end_offset(10, &set), 18);
        let third = batch(18, 2);
        set.extend_from_slice(&third[..third.len() - 1]);
        assert_eq!(end_offset(10, &set), 18, "a partial batch is not counted");
        assert_eq!(end_offset(7, &[]), 7);
        assert_eq!(end_offset(7, &[0xff; 40]), 7, "garbage ends the walk");
    }

    /// Batches captured from librdkafka on the wire, as published in influxdata/rskafka's
    /// `src/protocol/record.rs` tests: bytes from another implementation, not our encoder.
    fn rdkafka_uncompressed() -> Vec<u8> {
        [
            &b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x4b\x00\x00\x00\x00"[..],
            b"\x02\x27\x24\xfe\xcd\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x61",
            b"\xd5\x9b\x77\x00\x00\x00\x00\x61\xd5\x9b\x77\xff\xff\xff\xff\xff",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x01\x32\x00\x00",
            b"\x00\x00\x16\x68\x65\x6c\x6c\x6f\x20\x6b\x61\x66\x6b\x61\x02\x06",
            b"\x66\x6f\x6f\x06\x62\x61\x72",
        ]
        .concat()
    }

    fn rdkafka_lz4() -> Vec<u8> {
        [
            &b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x63\x00\x00\x00\x00"[..],
            b"\x02\x1b\xa5\x92\x35\x00\x03\x00\x00\x00\x00\x00\x00\x01\x7e\xb1",
            b"\x1f\xc7\x24\x00\x00\x01\x7e\xb1\x1f\xc7\x24\xff\xff\xff\xff\xff",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x01\x04\x22\x4d",
            b"\x18\x60\x40\x82\x23\x00\x00\x00\x8f\xfc\x01\x00\x00\x00\xc8\x01",
            b"\x78\x01\x00\x50\xf0\x06\x16\x68\x65\x6c\x6c\x6f\x20\x6b\x61\x66",
            b"\x6b\x61\x02\x06\x66\x6f\x6f\x06\x62\x61\x72\x00\x00\x00\x00",
        ]
        .concat()
    }

    fn rdkafka_zstd() -> Vec<u8> {
        [
            &b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x5d\x00\x00\x00\x00"[..],
            b"\x02\xa1\x6e\x4e\x95\x00\x04\x00\x00\x00\x00\x00\x00\x01\x7e\xbf",
            b"\x78\xf3\xad\x00\x00\x01\x7e\xbf\x78\xf3\xad\xff\xff\xff\xff\xff",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x01\x28\xb5\x2f",
            b"\xfd\x00\x58\x1d\x01\x00\xe8\xfc\x01\x00\x00\x00\xc8\x01\x78\x16",
            b"\x68\x65\x6c\x6c\x6f\x20\x6b\x61\x66\x6b\x61\x02\x06\x66\x6f\x6f",
            b"\x06\x62\x61\x72\x01\x00\x20\x05\x5c",
        ]
        .concat()
    }

    fn foo_bar() -> Vec<Header> {
        vec![Header {
            key: "foo".into(),
            value: Some(Bytes::from_static(b"bar")),
        }]
    }

    #[test]
    fn decodes_published_uncompressed_batch_and_reencodes_identically() {
        // Goal: our view and decoder agree with a batch another implementation produced,
        // and our builder produces the same bytes for the same records.
        let data = rdkafka_uncompressed();
        let view = BatchView::new_verified(&data).unwrap();
        assert_eq!(view.base_offset(), 0);
        assert_eq!(view.len(), data.len());
        assert_eq!(view.crc(), 0x2724_fecd);
        assert_eq!(view.base_timestamp(), 1_641_388_919);
        assert_eq!(view.max_timestamp(), 1_641_388_919);
        assert_eq!(view.producer_id(), -1);
        assert_eq!(view.producer_epoch(), -1);
        assert_eq!(view.base_sequence(), -1);
        assert_eq!(view.compression().unwrap(), Compression::None);
        let records = view.records().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].key.as_deref(), Some(&b""[..]));
        assert_eq!(records[0].value.as_deref(), Some(&b"hello kafka"[..]));
        assert_eq!(records[0].headers, foo_bar());

        let mut builder = BatchBuilder::new();
        builder.partition_leader_epoch(0);
        builder.push(NewRecord {
            timestamp: 1_641_388_919,
            key: Some(Bytes::new()),
            value: Some(Bytes::from_static(b"hello kafka")),
            headers: foo_bar(),
        });
        assert_eq!(builder.build().unwrap(), data);
    }

    #[test]
    fn decodes_published_lz4_and_zstd_batches() {
        // Goal: interoperable LZ4 and zstd decoding of batches made by librdkafka.
        for (data, codec) in [
            (rdkafka_lz4(), Compression::Lz4),
            (rdkafka_zstd(), Compression::Zstd),
        ] {
            let view = BatchView::new_verified(&data).unwrap();
            assert_eq!(view.compression().unwrap(), codec);
            let records = view.records().unwrap();
            assert_eq!(records.len(), 1, "{codec:?}");
            assert_eq!(records[0].key.as_deref(), Some(&[b'x'; 100][..]));
            assert_eq!(records[0].value.as_deref(), Some(&b"hello kafka"[..]));
            assert_eq!(records[0].headers, foo_bar());
        }
    }

    #[test]
    fn crc_mismatch_is_detected() {
        // Goal: any flipped bit inside the CRC's coverage is reported with both values.
        let mut data = rdkafka_uncompressed();
        let last = data.len() - 1;
        data[last] ^= 0x01;
        let view = BatchView::new(&data).unwrap();
        assert!(matches!(
            view.verify_crc(),
            Err(Error::CrcMismatch {
                stored: 0x2724_fecd,
                ..
            })
        ));
    }

    #[test]
    fn truncated_input_is_a_typed_error() {
        // Goal: every proper prefix of a batch is rejected as truncated, never read past.
        let data = rdkafka_uncompressed();
        for len in 0..data.len() {
            match BatchView::new(&data[..len]) {
                Err(Error::Truncated { .. }) => {}
                other => panic!("prefix of {len} bytes gave {other:?}"),
            }
        }
        assert_eq!(peek_batch_len(&data[..11]).unwrap(), None);
        assert_eq!(peek_batch_len(&data[..12]).unwrap(), Some(data.len()));
    }

    #[test]
    fn bad_length_and_magic_are_rejected() {
        // Goal: impossible lengths and other magics give their own errors.
        let mut data = rdkafka_uncompressed();
        data[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(BatchView::new(&data), Err(Error::BadLength(-5))));
        let mut data = rdkafka_uncompressed();
        data[16] = 1;
        assert!(matches!(BatchView::new(&data), Err(Error::BadMagic(1))));
    }

    #[test]
    fn gzip_and_snappy_batches_round_trip() {
        // Goal: the codecs Kafka clients send build and decode like the others.
        for codec in [Compression::Gzip, Compression::Snappy] {
            let mut builder = BatchBuilder::new();
            builder.compression(codec).push(NewRecord::value(0, "x"));
            let batch = builder.build().unwrap();
            let view = BatchView::new(&batch).unwrap();
            assert_eq!(view.compression().unwrap(), codec);
            assert_eq!(view.records().unwrap()[0].value.as_deref(), Some(&b"x"[..]));
        }
    }

    #[test]
    fn header_rewrites_keep_the_crc_valid() {
        // Goal: the broker can assign offsets and epochs without recomputing the CRC.
        let mut data = rdkafka_uncompressed();
        set_base_offset(&mut data, 42);
        set_partition_leader_epoch(&mut data, 7);
        let view = BatchView::new_verified(&data).unwrap();
        assert_eq!(view.base_offset(), 42);
        assert_eq!(view.partition_leader_epoch(), 7);
        assert_eq!(view.records().unwrap()[0].offset, 42);
    }

    fn arb_bytes() -> impl Strategy<Value = Option<Bytes>> {
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from))
    }

    fn arb_record() -> impl Strategy<Value = NewRecord> {
        let header = ("[a-z]{0,8}", arb_bytes()).prop_map(|(key, value)| Header { key, value });
        (
            0i64..1 << 42,
            arb_bytes(),
            arb_bytes(),
            proptest::collection::vec(header, 0..3),
        )
            .prop_map(|(timestamp, key, value, headers)| NewRecord {
                timestamp,
                key,
                value,
                headers,
            })
    }

    proptest! {
        #[test]
        fn build_then_decode_round_trips(
            records in proptest::collection::vec(arb_record(), 1..20),
            codec in prop_oneof![Just(Compression::None), Just(Compression::Lz4), Just(Compression::Zstd)],
            base_offset in 0i64..1 << 40,
            producer_id in -1i64..1000,
        ) {
            let mut builder = BatchBuilder::new();
            builder.base_offset(base_offset).compression(codec).producer(ProducerFields {
                producer_id, producer_epoch: 3, base_sequence: 9,
            });
            for record in &records {
                builder.push(record.clone());
            }
            let bytes = builder.build().unwrap();
            let view = BatchView::new_verified(&bytes).unwrap();
            prop_assert_eq!(view.len(), bytes.len());
            prop_assert_eq!(view.base_offset(), base_offset);
            prop_assert_eq!(view.last_offset(), base_offset + records.len() as i64 - 1);
            prop_assert_eq!(view.producer_id(), producer_id);
            prop_assert_eq!(view.max_timestamp(), records.iter().map(|r| r.timestamp).max().unwrap());
            let decoded = view.records().unwrap();
            prop_assert_eq!(decoded.len(), records.len());
            for (index, (got, want)) in decoded.iter().zip(&records).enumerate() {
                prop_assert_eq!(got.offset, base_offset + index as i64);
                prop_assert_eq!(got.timestamp, want.timestamp);
                prop_assert_eq!(&got.key, &want.key);
                prop_assert_eq!(&got.value, &want.value);
                prop_assert_eq!(&got.headers, &want.headers);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            // Goal: the decoder answers garbage with an error, never a panic.
            if let Ok(view) = BatchView::new(&data) {
                let _ = view.verify_crc();
                let _ = view.records();
            }
        }

        #[test]
        fn corrupting_a_valid_batch_never_panics(
            records in proptest::collection::vec(arb_record(), 1..5),
            index in any::<prop::sample::Index>(),
            xor in 1u8..=255,
        ) {
            // Goal: a damaged batch is caught by the CRC or decodes to an error, never a panic.
            let mut builder = BatchBuilder::new();
            for record in &records {
                builder.push(record.clone());
            }
            let mut bytes = builder.build().unwrap();
            let at = index.index(bytes.len());
            bytes[at] ^= xor;
            if let Ok(view) = BatchView::new(&bytes) {
                if at >= ATTRIBUTES {
                    prop_assert!(view.verify_crc().is_err());
                }
                let _ = view.records();
            }
        }
    }
}
