//! Errors of the pure formats.

/// Result of the protocol crate.
pub type Result<T> = std::result::Result<T, Error>;

/// What can be wrong with bytes handed to a decoder, or with records handed to an encoder.
///
/// Each variant has a stable numeric [`Error::code`], so the broker can put it on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input ends before the structure does.
    #[error("truncated input: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes the input has.
        available: usize,
    },
    /// The magic byte is not 2 (Kafka RecordBatch v2).
    #[error("unsupported record batch magic {0}, only magic 2 is supported")]
    BadMagic(i8),
    /// The batch length field is impossible (smaller than a header or larger than allowed).
    #[error("invalid batch length {0}")]
    BadLength(i64),
    /// The stored CRC-32C does not match the bytes.
    #[error("CRC mismatch: batch says {stored:#010x}, bytes give {computed:#010x}")]
    CrcMismatch {
        /// CRC stored in the batch header.
        stored: u32,
        /// CRC computed over the bytes.
        computed: u32,
    },
    /// The compression codec named in the attributes is not supported.
    #[error("unsupported compression codec {0}")]
    UnsupportedCompression(&'static str),
    /// Compressing or decompressing failed.
    #[error("compression error ({codec}): {message}")]
    Compression {
        /// Codec name.
        codec: &'static str,
        /// What the codec reported.
        message: String,
    },
    /// A record inside a batch is malformed.
    #[error("malformed record: {0}")]
    BadRecord(String),
    /// A builder was asked to produce something the format cannot hold.
    #[error("cannot encode: {0}")]
    Encode(String),
}

impl Error {
    /// A stable numeric code for this error kind (used by the wire protocol).
    pub fn code(&self) -> u16 {
        match self {
            Error::Truncated { .. } => 1,
            Error::BadMagic(_) => 2,
            Error::BadLength(_) => 3,
            Error::CrcMismatch { .. } => 4,
            Error::UnsupportedCompression(_) => 5,
            Error::Compression { .. } => 6,
            Error::BadRecord(_) => 7,
            Error::Encode(_) => 8,
        }
    }
}
