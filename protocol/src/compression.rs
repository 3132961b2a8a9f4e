//! Compression codecs named by the low three bits of a batch's attributes.

use crate::error::{Error, Result};
use std::io::{Read, Write};

/// A batch's compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Records stored as they are.
    #[default]
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// snappy: written raw (as librdkafka does); read raw or in the xerial framing the
    /// Java client writes.
    Snappy,
    /// LZ4 frame format.
    Lz4,
    /// Zstandard frame format.
    Zstd,
}

impl Compression {
    /// The codec named by attribute bits 0..=2.
    ///
    /// # Errors
    /// [`Error::BadRecord`] for codec ids 5..=7, which Kafka does not define.
    pub fn from_attributes(attributes: i16) -> Result<Compression> {
        match attributes & 0x07 {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(Error::BadRecord(format!(
                "unknown compression codec id {other}"
            ))),
        }
    }

    /// The codec id stored in attribute bits 0..=2.
    pub fn id(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec's name as Kafka configs spell it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// Compresses the records section of a batch.
    ///
    /// # Errors
    /// [`Error::Compression`] when the encoder fails.
    pub fn compress(self, input: &[u8]) -> Result<Vec<u8>> {
        let codec = self.name();
        let failed = |e: std::io::Error| Error::Compression {
            codec,
            message: e.to_string(),
        };
        match self {
            Compression::None => Ok(input.to_vec()),
            Compression::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(input.len() / 2 + 64),
                    flate2::Compression::fast(),
                );
                encoder.write_all(input).map_err(failed)?;
                encoder.finish().map_err(failed)
            }
            Compression::Snappy => {
                snap::raw::Encoder::new()
                    .compress_vec(input)
                    .map_err(|e| Error::Compression {
                        codec,
                        message: e.to_string(),
                    })
            }
            Compression::Lz4 => {
                let mut encoder =
                    lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(input.len() / 2 + 64));
                encoder.write_all(input).map_err(failed)?;
                encoder.finish().map_err(|e| Error::Compression {
                    codec,
                    message: e.to_string(),
                })
            }
            Compression::Zstd => zstd::bulk::compress(input, 1).map_err(failed),
        }
    }

    /// Decompresses the records section of a batch, refusing to grow past `len_max` bytes.
    ///
    /// # Errors
    /// [`Error::Compression`] when the input is not a valid frame or decompresses to more
    /// than `len_max` bytes.
    pub fn decompress(self, input: &[u8], len_max: usize) -> Result<Vec<u8>> {
        let codec = self.name();
        let failed = |e: std::io::Error| Error::Compression {
            codec,
            message: e.to_string(),
        };
        let mut out = Vec::new();
        match self {
            Compression::None => return Ok(input.to_vec()),
            Compression::Gzip => {
                let decoder = flate2::read::MultiGzDecoder::new(input);
                decoder
                    .take(len_max as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(failed)?;
            }
            Compression::Snappy => out = snappy_decompress(input, len_max)?,
            Compression::Lz4 => {
                let decoder = lz4_flex::frame::FrameDecoder::new(input);
                decoder
                    .take(len_max as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(failed)?;
            }
            Compression::Zstd => {
                let decoder = zstd::stream::read::Decoder::new(input).map_err(failed)?;
                decoder
                    .take(len_max as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(failed)?;
            }
        }
        if out.len() > len_max {
            return Err(too_large(codec, len_max));
        }
        Ok(out)
    }
}

fn too_large(codec: &'static str, len_max: usize) -> Error {
    Error::Compression {
        codec,
        message: format!("decompressed size exceeds {len_max} bytes"),
    }
}

/// The xerial framing's header: magic, then version and compatible version (big-endian
/// i32 each); then blocks, each a big-endian u32 length and a raw snappy block.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\0";
const XERIAL_HEADER_LEN: usize = 16;

/// Raw snappy, or xerial-framed snappy blocks; each block's announced size is checked
/// against what is left of `len_max` before anything is allocated for it.
fn snappy_decompress(input: &[u8], len_max: usize) -> Result<Vec<u8>> {
    let failed = |message: String| Error::Compression {
        codec: "snappy",
        message,
    };
    let raw = |block: &[u8], out: &mut Vec<u8>| -> Result<()> {
        let len = snap::raw::decompress_len(block).map_err(|e| failed(e.to_string()))?;
        if out.len() + len > len_max {
            return Err(too_large("snappy", len_max));
        }
        let start = out.len();
        out.resize(start + len, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(|e| failed(e.to_string()))?;
        Ok(())
    };
    let mut out = Vec::new();
    if !input.starts_with(XERIAL_MAGIC) {
        raw(input, &mut out)?;
        return Ok(out);
    }
    let mut rest = input
        .get(XERIAL_HEADER_LEN..)
        .ok_or_else(|| failed("xerial header is truncated".into()))?;
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| failed("xerial block length is truncated".into()))?;
        let len = u32::from_be_bytes(*len) as usize;
        let block = tail
            .get(..len)
            .ok_or_else(|| failed("xerial block is truncated".into()))?;
        raw(block, &mut out)?;
        rest = &tail[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips() {
        // Goal: what the broker and client compress, they (and Kafka clients) read back.
        let input: Vec<u8> = (0..10_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let packed = codec.compress(&input).unwrap();
            assert_eq!(
                codec.decompress(&packed, input.len()).unwrap(),
                input,
                "{codec:?}"
            );
            assert!(
                codec == Compression::None || codec.decompress(&packed, input.len() - 1).is_err(),
                "{codec:?} must refuse to grow past the limit"
            );
        }
    }

    #[test]
    fn xerial_framed_snappy_is_read() {
        // Goal: batches from the Java client (xerial framing, several blocks) decompress.
        let (a, b) = (b"hello, ".repeat(50), b"world".repeat(40));
        let mut framed = XERIAL_MAGIC.to_vec();
        framed.extend_from_slice(&1i32.to_be_bytes());
        framed.extend_from_slice(&1i32.to_be_bytes());
        for part in [&a, &b] {
            let block = snap::raw::Encoder::new().compress_vec(part).unwrap();
            framed.extend_from_slice(&(block.len() as u32).to_be_bytes());
            framed.extend_from_slice(&block);
        }
        let out = Compression::Snappy.decompress(&framed, 10_000).unwrap();
        assert_eq!(out, [a, b].concat());
        // A block whose length runs past the input is refused, not read out of bounds.
        let mut truncated = framed.clone();
        truncated.truncate(framed.len() - 3);
        assert!(Compression::Snappy.decompress(&truncated, 10_000).is_err());
        // A raw block announcing more than the limit is refused before allocating.
        let big = snap::raw::Encoder::new()
            .compress_vec(&[0u8; 5000])
            .unwrap();
        assert!(Compression::Snappy.decompress(&big, 4999).is_err());
    }
}
