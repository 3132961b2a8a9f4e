//! Big-endian primitives of the native protocol: a bounds-checked reader and a writer.

use bytes::{BufMut, Bytes, BytesMut};

/// Why a message body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body ends before the field does.
    #[error("message truncated reading {field}: need {needed} bytes, have {available}")]
    Truncated {
        /// Field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// A string is not UTF-8.
    #[error("field {0} is not UTF-8")]
    BadString(&'static str),
    /// A count or length is larger than the message could hold or a limit allows.
    #[error("field {field} has impossible length {len}")]
    BadLength {
        /// Field being read.
        field: &'static str,
        /// The length read.
        len: u64,
    },
    /// A field holds a value outside its domain.
    #[error("field {field} has invalid value {value}")]
    BadValue {
        /// Field being read.
        field: &'static str,
        /// The value, printed.
        value: String,
    },
    /// Bytes remain after the message.
    #[error("{0} unexpected bytes after the message")]
    Trailing(usize),
    /// The API key is not one this build knows.
    #[error("unknown API key {0}")]
    UnknownApi(u16),
    /// The version is outside what this build supports for the API.
    #[error("unsupported version {version} of API {api_key}")]
    UnsupportedVersion {
        /// API key.
        api_key: u16,
        /// Version asked for.
        version: u16,
    },
}

/// Reads big-endian fields from a message body, never past its end.
pub struct Reader {
    data: Bytes,
    at: usize,
}

impl Reader {
    /// A reader over a whole message body.
    pub fn new(data: Bytes) -> Reader {
        Reader { data, at: 0 }
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.at
    }

    fn take(&mut self, field: &'static str, len: usize) -> Result<&[u8], DecodeError> {
        if self.remaining() < len {
            return Err(DecodeError::Truncated {
                field,
                needed: len,
                available: self.remaining(),
            });
        }
        let slice = &self.data[self.at..self.at + len];
        self.at += len;
        Ok(slice)
    }

    /// One byte, signed.
    pub fn i8(&mut self, field: &'static str) -> Result<i8, DecodeError> {
        Ok(self.take(field, 1)?[0] as i8)
    }
    /// Two bytes, unsigned.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(
            self.take(field, 2)?.try_into().expect("2 bytes"),
        ))
    }
    /// Four bytes, unsigned.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(
            self.take(field, 4)?.try_into().expect("4 bytes"),
        ))
    }
    /// Four bytes, signed.
    pub fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(
            self.take(field, 4)?.try_into().expect("4 bytes"),
        ))
    }
    /// Eight bytes, signed.
    pub fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(
            self.take(field, 8)?.try_into().expect("8 bytes"),
        ))
    }
    /// A string: u16 length then UTF-8 bytes.
    pub fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let len = self.u16(field)? as usize;
        let bytes = self.take(field, len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::BadString(field))
    }
    /// Bytes: u32 length then the bytes, shared with the message buffer (no copy).
    pub fn bytes(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.u32(field)? as usize;
        if len > self.remaining() {
            return Err(DecodeError::Truncated {
                field,
                needed: len,
                available: self.remaining(),
            });
        }
        let bytes = self.data.slice(self.at..self.at + len);
        self.at += len;
        Ok(bytes)
    }
    /// An array count (u32), checked against the bytes left (each element takes at least
    /// `element_len_min` bytes), so a hostile count cannot make us allocate.
    pub fn count(
        &mut self,
        field: &'static str,
        element_len_min: usize,
    ) -> Result<usize, DecodeError> {
        let count = self.u32(field)? as usize;
        if count.saturating_mul(element_len_min.max(1)) > self.remaining() {
            return Err(DecodeError::BadLength {
                field,
                len: count as u64,
            });
        }
        Ok(count)
    }
    /// Fails unless the whole body was read.
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            left => Err(DecodeError::Trailing(left)),
        }
    }
}

/// Why a message could not be encoded: a value is too long for its length field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {field} is {len} long, over the wire limit of {limit}")]
pub struct EncodeError {
    /// Field being written.
    pub field: &'static str,
    /// Its length (bytes, or elements for a count).
    pub len: usize,
    /// The largest length the field can carry.
    pub limit: usize,
}

/// Longest string the wire carries (u16 length).
pub const STRING_MAX: usize = u16::MAX as usize;

/// Writes big-endian fields. Lengths are checked: a value too long for its length field is
/// an [`EncodeError`], never a panic or a silently cut value.
pub trait WriteExt {
    /// A string: u16 length then UTF-8 bytes.
    ///
    /// # Errors
    /// The string is longer than [`STRING_MAX`] bytes.
    fn put_string(&mut self, field: &'static str, value: &str) -> Result<(), EncodeError>;
    /// Bytes: u32 length then the bytes.
    ///
    /// # Errors
    /// More than `u32::MAX` bytes.
    fn put_sized(&mut self, field: &'static str, value: &[u8]) -> Result<(), EncodeError>;
    /// An array count.
    ///
    /// # Errors
    /// More than `u32::MAX` elements.
    fn put_count(&mut self, field: &'static str, count: usize) -> Result<(), EncodeError>;
}

/// `len` as a u32 length field.
///
/// # Errors
/// Over `u32::MAX`.
pub fn len_u32(field: &'static str, len: usize) -> Result<u32, EncodeError> {
    u32::try_from(len).map_err(|_| EncodeError {
        field,
        len,
        limit: u32::MAX as usize,
    })
}

impl WriteExt for BytesMut {
    fn put_string(&mut self, field: &'static str, value: &str) -> Result<(), EncodeError> {
        let len = u16::try_from(value.len()).map_err(|_| EncodeError {
            field,
            len: value.len(),
            limit: STRING_MAX,
        })?;
        self.put_u16(len);
        self.put_slice(value.as_bytes());
        Ok(())
    }
    fn put_sized(&mut self, field: &'static str, value: &[u8]) -> Result<(), EncodeError> {
        self.put_u32(len_u32(field, value.len())?);
        self.put_slice(value);
        Ok(())
    }
    fn put_count(&mut self, field: &'static str, count: usize) -> Result<(), EncodeError> {
        self.put_u32(len_u32(field, count)?);
        Ok(())
    }
}
