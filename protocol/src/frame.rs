//! Framing of the native protocol.
//!
//! ```text
//! request:  length: u32 | api_key: u16 | api_version: u16 | correlation_id: u32 | flags: u16 | body
//! response: length: u32 | correlation_id: u32 | error_code: u16 | body
//! ```
//!
//! `length` counts the bytes after itself. All integers are big-endian. A decoder is
//! sans-IO: it is handed whatever bytes have arrived and says "need more", "here is a
//! frame", or what is wrong; incomplete input is a normal outcome, not an error.

use zerocopy::byteorder::big_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Size of the length prefix.
pub const LENGTH_LEN: usize = 4;

/// Fixed part of a request after the length prefix.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct RequestHeader {
    /// The API (see [`crate::api::ApiKey`]).
    pub api_key: U16,
    /// The API's version.
    pub api_version: U16,
    /// Echoed in the response; lets a client pipeline requests.
    pub correlation_id: U32,
    /// Reserved, zero.
    pub flags: U16,
}

/// Fixed part of a response after the length prefix.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct ResponseHeader {
    /// The request's correlation id.
    pub correlation_id: U32,
    /// Frame-level error ([`crate::api::ErrorCode`]); 0 when the body is a normal response.
    pub error_code: U16,
}

/// Size of [`RequestHeader`].
pub const REQUEST_HEADER_LEN: usize = std::mem::size_of::<RequestHeader>();
/// Size of [`ResponseHeader`].
pub const RESPONSE_HEADER_LEN: usize = std::mem::size_of::<ResponseHeader>();
const _: () = assert!(REQUEST_HEADER_LEN == 10);
const _: () = assert!(RESPONSE_HEADER_LEN == 6);

/// Why a frame cannot be accepted. The connection cannot be resynchronised after these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is smaller than the fixed header.
    #[error("frame length {0} is shorter than the {min} byte header", min = REQUEST_HEADER_LEN)]
    TooShort(u32),
    /// The length prefix exceeds the configured maximum.
    #[error("frame length {len} exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Length announced.
        len: u32,
        /// Configured maximum.
        max: u32,
    },
}

/// A complete request frame found at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestFrame {
    /// The fixed header.
    pub header: RequestHeader,
    /// Bytes of the whole frame, length prefix included.
    pub frame_len: usize,
}

impl RequestFrame {
    /// Range of the body within the buffer the frame was found in.
    pub fn body(&self) -> std::ops::Range<usize> {
        LENGTH_LEN + REQUEST_HEADER_LEN..self.frame_len
    }
}

/// Bytes of the whole frame at the front of `input` (length prefix included), once its
/// prefix is there; unchecked against any limit.
pub fn announced_len(input: &[u8]) -> Option<usize> {
    let prefix: [u8; LENGTH_LEN] = input.get(..LENGTH_LEN)?.try_into().ok()?;
    Some(LENGTH_LEN + u32::from_be_bytes(prefix) as usize)
}

/// Looks for one request frame at the front of `input`.
///
/// # Errors
/// [`FrameError`] when the length prefix is impossible; the caller answers with an error
/// frame and closes the connection.
pub fn check_request(input: &[u8], frame_len_max: u32) -> Result<Option<RequestFrame>, FrameError> {
    Ok(check::<RequestHeader>(input, frame_len_max)?
        .map(|(header, frame_len)| RequestFrame { header, frame_len }))
}

/// Finds a frame whose fixed header is `H` at the front of `input`: (header, frame length).
fn check<H: FromBytes + KnownLayout + Immutable + Unaligned>(
    input: &[u8],
    frame_len_max: u32,
) -> Result<Option<(H, usize)>, FrameError> {
    let header_len = std::mem::size_of::<H>();
    let Some(prefix) = input.get(..LENGTH_LEN) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(prefix.try_into().expect("4 bytes"));
    if (len as usize) < header_len {
        return Err(FrameError::TooShort(len));
    }
    if len > frame_len_max {
        return Err(FrameError::TooLarge {
            len,
            max: frame_len_max,
        });
    }
    let frame_len = LENGTH_LEN + len as usize;
    if input.len() < frame_len {
        return Ok(None);
    }
    let header = H::read_from_bytes(&input[LENGTH_LEN..LENGTH_LEN + header_len])
        .expect("slice has the header's size");
    Ok(Some((header, frame_len)))
}

/// Writes a request frame: prefix, header, body.
pub fn write_request(
    out: &mut bytes::BytesMut,
    api_key: u16,
    api_version: u16,
    correlation_id: u32,
    body: &[u8],
) {
    write_request_prefix(out, api_key, api_version, correlation_id, body.len());
    out.extend_from_slice(body);
}

/// The length field and header of a request frame whose body (`body_len` bytes) follows
/// separately (written from parts).
pub fn write_request_prefix(
    out: &mut bytes::BytesMut,
    api_key: u16,
    api_version: u16,
    correlation_id: u32,
    body_len: usize,
) {
    let header = RequestHeader {
        api_key: api_key.into(),
        api_version: api_version.into(),
        correlation_id: correlation_id.into(),
        flags: 0.into(),
    };
    out.extend_from_slice(&((REQUEST_HEADER_LEN + body_len) as u32).to_be_bytes());
    out.extend_from_slice(header.as_bytes());
}

/// The bytes that open a response frame whose body is `body_len` bytes long.
pub fn response_prefix(
    correlation_id: u32,
    error_code: u16,
    body_len: usize,
) -> [u8; LENGTH_LEN + RESPONSE_HEADER_LEN] {
    let header = ResponseHeader {
        correlation_id: correlation_id.into(),
        error_code: error_code.into(),
    };
    let mut out = [0u8; LENGTH_LEN + RESPONSE_HEADER_LEN];
    out[..LENGTH_LEN].copy_from_slice(&((RESPONSE_HEADER_LEN + body_len) as u32).to_be_bytes());
    out[LENGTH_LEN..].copy_from_slice(header.as_bytes());
    out
}

/// A complete response frame found at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseFrame {
    /// The fixed header.
    pub header: ResponseHeader,
    /// Bytes of the whole frame, length prefix included.
    pub frame_len: usize,
}

impl ResponseFrame {
    /// Range of the body within the buffer the frame was found in.
    pub fn body(&self) -> std::ops::Range<usize> {
        LENGTH_LEN + RESPONSE_HEADER_LEN..self.frame_len
    }
}

/// Looks for one response frame at the front of `input` (the client side).
///
/// # Errors
/// [`FrameError`] when the length prefix is impossible.
pub fn check_response(
    input: &[u8],
    frame_len_max: u32,
) -> Result<Option<ResponseFrame>, FrameError> {
    Ok(check::<ResponseHeader>(input, frame_len_max)?
        .map(|(header, frame_len)| ResponseFrame { header, frame_len }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn incomplete_is_not_an_error() {
        // Goal: every proper prefix of a frame asks for more bytes.
        let mut frame = bytes::BytesMut::new();
        write_request(&mut frame, 3, 1, 77, b"body");
        for len in 0..frame.len() {
            assert_eq!(
                check_request(&frame[..len], 1 << 20),
                Ok(None),
                "prefix {len}"
            );
        }
        let found = check_request(&frame, 1 << 20).unwrap().unwrap();
        assert_eq!(found.frame_len, frame.len());
        assert_eq!(found.header.api_key.get(), 3);
        assert_eq!(found.header.correlation_id.get(), 77);
        assert_eq!(&frame[found.body()], b"body");
    }

    #[test]
    fn impossible_lengths_are_errors() {
        // Goal: a 4 GiB or a 3-byte length prefix is refused before any allocation.
        assert_eq!(
            check_request(&[0xff, 0xff, 0xff, 0xff], 1 << 20),
            Err(FrameError::TooLarge {
                len: u32::MAX,
                max: 1 << 20
            })
        );
        assert_eq!(
            check_request(&[0, 0, 0, 3, 1, 2, 3], 1 << 20),
            Err(FrameError::TooShort(3))
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = check_request(&data, 1 << 16);
            let _ = check_response(&data, 1 << 16);
        }
    }
}
