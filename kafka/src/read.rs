//! A reader over a request body in Kafka's primitive types, in the classic and the flexible
//! (compact, tagged) encodings. Every length and count is checked against the bytes left
//! before anything is allocated for it.

use bytes::{Buf, Bytes};

/// Why a request body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body ended inside a field.
    #[error("request truncated in {0}")]
    Truncated(&'static str),
    /// A length or count that cannot be right (negative, or more than the bytes left).
    #[error("bad length {len} for {field}")]
    BadLength {
        /// The field.
        field: &'static str,
        /// The length read.
        len: i64,
    },
    /// A string that is not UTF-8.
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    /// A null where the field may not be null.
    #[error("{0} is null")]
    Null(&'static str),
    /// A varint longer than 5 bytes.
    #[error("bad varint in {0}")]
    BadVarint(&'static str),
}

/// Result of decoding.
pub type Result<T> = std::result::Result<T, DecodeError>;

/// A request body being read.
#[derive(Debug)]
pub struct Reader {
    buf: Bytes,
    flexible: bool,
}

impl Reader {
    /// Reads `buf`; `flexible` for the compact encodings of flexible versions.
    pub fn new(buf: Bytes, flexible: bool) -> Reader {
        Reader { buf, flexible }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// The bytes not read yet, taken.
    pub fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Whether this reads a flexible version.
    pub fn flexible(&self) -> bool {
        self.flexible
    }

    fn need(&self, n: usize, field: &'static str) -> Result<()> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated(field));
        }
        Ok(())
    }

    /// An INT8.
    pub fn i8(&mut self, field: &'static str) -> Result<i8> {
        self.need(1, field)?;
        Ok(self.buf.get_i8())
    }

    /// A BOOLEAN.
    pub fn bool(&mut self, field: &'static str) -> Result<bool> {
        Ok(self.i8(field)? != 0)
    }

    /// An INT16.
    pub fn i16(&mut self, field: &'static str) -> Result<i16> {
        self.need(2, field)?;
        Ok(self.buf.get_i16())
    }

    /// An INT32.
    pub fn i32(&mut self, field: &'static str) -> Result<i32> {
        self.need(4, field)?;
        Ok(self.buf.get_i32())
    }

    /// An INT64.
    pub fn i64(&mut self, field: &'static str) -> Result<i64> {
        self.need(8, field)?;
        Ok(self.buf.get_i64())
    }

    /// A FLOAT64.
    pub fn f64(&mut self, field: &'static str) -> Result<f64> {
        self.need(8, field)?;
        Ok(self.buf.get_f64())
    }

    /// A UUID.
    pub fn uuid(&mut self, field: &'static str) -> Result<[u8; 16]> {
        self.need(16, field)?;
        let mut id = [0u8; 16];
        self.buf.copy_to_slice(&mut id);
        Ok(id)
    }

    /// An UNSIGNED_VARINT (at most 5 bytes).
    pub fn uvarint(&mut self, field: &'static str) -> Result<u32> {
        let mut value = 0u32;
        for i in 0..5 {
            self.need(1, field)?;
            let byte = self.buf.get_u8();
            if i == 4 && byte > 0x0f {
                return Err(DecodeError::BadVarint(field));
            }
            value |= u32::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::BadVarint(field))
    }

    /// A length: compact (varint of length + 1, 0 = null) or classic (`classic` read as
    /// the signed width, -1 = null); `None` for null.
    fn len(&mut self, field: &'static str, classic_i16: bool) -> Result<Option<usize>> {
        let len: i64 = if self.flexible {
            i64::from(self.uvarint(field)?) - 1
        } else if classic_i16 {
            i64::from(self.i16(field)?)
        } else {
            i64::from(self.i32(field)?)
        };
        match len {
            -1 => Ok(None),
            len if len < 0 || len as u64 > self.buf.len() as u64 => {
                Err(DecodeError::BadLength { field, len })
            }
            len => Ok(Some(len as usize)),
        }
    }

    /// A nullable STRING (or COMPACT_NULLABLE_STRING).
    pub fn nullable_string(&mut self, field: &'static str) -> Result<Option<String>> {
        let Some(len) = self.len(field, true)? else {
            return Ok(None);
        };
        let bytes = self.buf.split_to(len);
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| DecodeError::NotUtf8(field))
    }

    /// A STRING (or COMPACT_STRING).
    pub fn string(&mut self, field: &'static str) -> Result<String> {
        self.nullable_string(field)?.ok_or(DecodeError::Null(field))
    }

    /// A nullable BYTES (or COMPACT_NULLABLE_BYTES), without copying.
    pub fn nullable_bytes(&mut self, field: &'static str) -> Result<Option<Bytes>> {
        Ok(self.len(field, false)?.map(|len| self.buf.split_to(len)))
    }

    /// A BYTES (or COMPACT_BYTES), without copying.
    pub fn bytes(&mut self, field: &'static str) -> Result<Bytes> {
        self.nullable_bytes(field)?.ok_or(DecodeError::Null(field))
    }

    /// The count of a nullable ARRAY (or COMPACT_ARRAY); at most the bytes left, since
    /// every element takes at least one, and at most [`ARRAY_ELEMENTS_MAX`] (as Kafka).
    pub fn nullable_count(&mut self, field: &'static str) -> Result<Option<usize>> {
        match self.len(field, false)? {
            Some(count) if count > ARRAY_ELEMENTS_MAX => Err(DecodeError::BadLength {
                field,
                len: count as i64,
            }),
            count => Ok(count),
        }
    }

    /// The count of an ARRAY; a null array counts as empty.
    pub fn count(&mut self, field: &'static str) -> Result<usize> {
        Ok(self.nullable_count(field)?.unwrap_or(0))
    }

    /// `count` elements read by `read`.
    pub fn array<T>(
        &mut self,
        field: &'static str,
        mut read: impl FnMut(&mut Reader) -> Result<T>,
    ) -> Result<Vec<T>> {
        let count = self.count(field)?;
        let mut out = Vec::with_capacity(count.min(PREALLOCATE_MAX));
        for _ in 0..count {
            out.push(read(self)?);
        }
        Ok(out)
    }

    /// A nullable array: `None` for null.
    pub fn nullable_array<T>(
        &mut self,
        field: &'static str,
        mut read: impl FnMut(&mut Reader) -> Result<T>,
    ) -> Result<Option<Vec<T>>> {
        let Some(count) = self.nullable_count(field)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(count.min(PREALLOCATE_MAX));
        for _ in 0..count {
            out.push(read(self)?);
        }
        Ok(Some(out))
    }

    /// Skips a tagged-fields section (flexible versions only; nothing otherwise). The
    /// fields a request may carry there are optional and ignored here.
    pub fn tagged_fields(&mut self) -> Result<()> {
        if !self.flexible {
            return Ok(());
        }
        let count = self.uvarint("tagged fields")?;
        if count > TAGGED_FIELDS_MAX {
            let len = i64::from(count);
            return Err(DecodeError::BadLength {
                field: "tagged fields",
                len,
            });
        }
        for _ in 0..count {
            self.uvarint("tag")?;
            let size = self.uvarint("tagged field size")? as usize;
            self.need(size, "tagged field")?;
            self.buf.advance(size);
        }
        Ok(())
    }
}

/// Most elements of one array (Kafka refuses more, before allocating).
pub const ARRAY_ELEMENTS_MAX: usize = 1_000_000;
/// Most tagged fields in one section (as Kafka).
pub const TAGGED_FIELDS_MAX: u32 = 10_000;
/// Most elements reserved before any is read: memory then grows with the elements actually
/// decoded (each takes bytes of the request), never with a count the peer wrote.
const PREALLOCATE_MAX: usize = 1_024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_over_kafkas_limits_are_refused() {
        // Goal: an array of 1,000,001 elements (bytes present for each) and 10,001 tagged
        // fields are errors before anything is read, as with Kafka.
        let mut body = vec![0u8; 4 + ARRAY_ELEMENTS_MAX + 1];
        body[..4].copy_from_slice(&(ARRAY_ELEMENTS_MAX as i32 + 1).to_be_bytes());
        let mut r = Reader::new(Bytes::from(body.clone()), false);
        assert!(matches!(
            r.array("topics", |r| r.i8("x")),
            Err(DecodeError::BadLength { .. })
        ));
        body[..4].copy_from_slice(&(ARRAY_ELEMENTS_MAX as i32).to_be_bytes());
        let mut r = Reader::new(Bytes::from(body), false);
        assert_eq!(
            r.array("topics", |r| r.i8("x")).unwrap().len(),
            ARRAY_ELEMENTS_MAX
        );
        let mut tagged = vec![0x91, 0x4e]; // uvarint 10,001
        tagged.extend(std::iter::repeat_n(0u8, 3 * 10_001));
        let mut r = Reader::new(Bytes::from(tagged), true);
        assert!(matches!(
            r.tagged_fields(),
            Err(DecodeError::BadLength { .. })
        ));
    }

    #[test]
    fn lengths_past_the_end_are_refused_before_allocating() {
        // Goal: a count of 2^31 in a 4-byte body is an error, not a 2^31-element vector.
        let mut r = Reader::new(Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff]), false);
        assert!(matches!(
            r.array("topics", |r| r.i32("x")),
            Err(DecodeError::BadLength { .. })
        ));
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f]), true);
        assert!(r.count("topics").is_err());
        let mut r = Reader::new(
            Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            true,
        );
        assert_eq!(r.uvarint("x"), Err(DecodeError::BadVarint("x")));
    }

    #[test]
    fn compact_and_classic_strings_read() {
        // Goal: both encodings of a string and of null decode.
        let mut r = Reader::new(Bytes::from_static(&[0, 2, b'h', b'i', 0xff, 0xff]), false);
        assert_eq!(r.string("s").unwrap(), "hi");
        assert_eq!(r.nullable_string("s").unwrap(), None);
        let mut r = Reader::new(Bytes::from_static(&[3, b'h', b'i', 0, 0]), true);
        assert_eq!(r.string("s").unwrap(), "hi");
        assert_eq!(r.nullable_string("s").unwrap(), None);
        r.tagged_fields().unwrap();
        assert_eq!(r.remaining(), 0);
    }
}
