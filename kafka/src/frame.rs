//! Kafka framing: a big-endian INT32 size, then the request header and body. The header
//! is version 1 (api key, version, correlation id, client id) or, for flexible versions,
//! version 2 (plus tagged fields); responses start with the correlation id, plus tagged
//! fields for flexible versions except ApiVersions (whose header stays version 0 so any
//! client can read the answer).

use crate::read::{DecodeError, Reader};
use crate::versions;
use bytes::{BufMut, Bytes, BytesMut};

/// Why the stream cannot be read further: the connection is closed after this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The size prefix is negative or larger than allowed.
    #[error("request frame of {len} bytes, the limit is {max}")]
    TooLarge {
        /// Announced size.
        len: i64,
        /// Limit.
        max: u32,
    },
    /// The frame is too short for a request header.
    #[error("request frame of {0} bytes is too short for a header")]
    TooShort(usize),
}

/// Smallest request: api key, version, correlation id, client id length.
const HEADER_LEN_MIN: usize = 2 + 2 + 4 + 2;

/// The whole frame's size (prefix included) once the prefix is in `buf`.
pub fn announced_len(buf: &[u8]) -> Option<usize> {
    let prefix: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    let len = i32::from_be_bytes(prefix);
    (len >= 0).then(|| 4 + len as usize)
}

/// The size of the first frame in `buf` (prefix included) when it is all there.
///
/// # Errors
/// [`FrameError`] when the stream cannot be a Kafka request stream.
pub fn check_frame(buf: &[u8], max: u32) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let len = i32::from_be_bytes(prefix.try_into().expect("four bytes"));
    if len < 0 || len as u32 > max {
        return Err(FrameError::TooLarge {
            len: i64::from(len),
            max,
        });
    }
    if (len as usize) < HEADER_LEN_MIN {
        return Err(FrameError::TooShort(len as usize));
    }
    let total = 4 + len as usize;
    Ok((buf.len() >= total).then_some(total))
}

/// A request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// API key (any value: unknown keys are answered, not dropped).
    pub api_key: i16,
    /// API version.
    pub api_version: i16,
    /// Echoed in the response.
    pub correlation_id: i32,
    /// The client's name, if it sent one.
    pub client_id: Option<String>,
}

impl Header {
    /// Whether the request body (and header) use the flexible encoding.
    pub fn flexible(&self) -> bool {
        versions::flexible(self.api_key, self.api_version)
    }

    /// The response header: correlation id, plus an empty tagged-fields section for
    /// flexible versions (never for ApiVersions).
    pub fn response_header(&self, out: &mut BytesMut) {
        out.put_i32(self.correlation_id);
        if self.flexible() && self.api_key != versions::API_VERSIONS {
            out.put_u8(0);
        }
    }
}

/// Reads the header at the start of a frame body (the bytes after the size prefix) and
/// returns it with a reader over the request body.
///
/// # Errors
/// [`DecodeError`] for a truncated header; the correlation id, when it was read, comes
/// with it so the error can be answered.
pub fn parse_header(body: Bytes) -> Result<(Header, Reader), (Option<i32>, DecodeError)> {
    let mut r = Reader::new(body, false);
    let fixed = (|| -> crate::read::Result<(i16, i16, i32)> {
        Ok((
            r.i16("api key")?,
            r.i16("api version")?,
            r.i32("correlation id")?,
        ))
    })();
    let (api_key, api_version, correlation_id) = fixed.map_err(|e| (None, e))?;
    // The client id is a classic nullable string in every header version.
    let client_id = r
        .nullable_string("client id")
        .map_err(|e| (Some(correlation_id), e))?;
    let header = Header {
        api_key,
        api_version,
        correlation_id,
        client_id,
    };
    // The body of an API or version not served is not read (it is answered with an
    // error), so its header's tagged fields, if any, are not either.
    let flexible = header.flexible() && versions::served(api_key, api_version).is_some();
    let rest = r.rest();
    let mut body = Reader::new(rest, flexible);
    body.tagged_fields()
        .map_err(|e| (Some(correlation_id), e))?;
    Ok((header, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_sized_and_bounded() {
        // Goal: partial frames wait, complete ones are cut, hostile sizes close the stream.
        assert_eq!(check_frame(&[0, 0], 100), Ok(None));
        let mut frame = 10i32.to_be_bytes().to_vec();
        frame.extend_from_slice(&[0; 9]);
        assert_eq!(check_frame(&frame, 100), Ok(None));
        frame.push(0);
        assert_eq!(check_frame(&frame, 100), Ok(Some(14)));
        assert!(check_frame(&(-1i32).to_be_bytes(), 100).is_err());
        assert!(check_frame(&101i32.to_be_bytes(), 100).is_err());
        assert_eq!(
            check_frame(&3i32.to_be_bytes(), 100),
            Err(FrameError::TooShort(3))
        );
    }

    #[test]
    fn headers_read_in_both_versions() {
        // Goal: header v1 (Metadata v1) and v2 (Metadata v9, with tagged fields) both parse.
        let mut v1 = vec![0, 3, 0, 1, 0, 0, 0, 7, 0, 1, b'c'];
        v1.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        let (header, body) = parse_header(Bytes::from(v1)).unwrap();
        assert_eq!(header.correlation_id, 7);
        assert_eq!(header.client_id.as_deref(), Some("c"));
        assert!(!body.flexible());
        assert_eq!(body.remaining(), 4);
        let v2 = vec![0, 3, 0, 9, 0, 0, 0, 8, 0xff, 0xff, 0, 1];
        let (header, body) = parse_header(Bytes::from(v2)).unwrap();
        assert_eq!(header.client_id, None);
        assert!(body.flexible());
        assert_eq!(body.remaining(), 1);
        let mut out = BytesMut::new();
        header.response_header(&mut out);
        assert_eq!(&out[..], &[0, 0, 0, 8, 0]);
    }
}
