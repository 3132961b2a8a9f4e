//! Compression codecs named by the low three bits of a batch's attributes.

use crate::error::{Error, Result};
use std::io::{Read, Write};

/// A batch's compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Records stored as they are.
    #[default]
    None,
    /// gzip: recognised, not yet supported.
    Gzip,
    /// snappy (xerial framing): recognised, not yet supported.
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
    /// [`Error::UnsupportedCompression`] for gzip and snappy; [`Error::Compression`] when
    /// the encoder fails.
    pub fn compress(self, input: &[u8]) -> Result<Vec<u8>> {
        let codec = self.name();
        let failed = |e: std::io::Error| Error::Compression {
            codec,
            message: e.to_string(),
        };
        match self {
            Compression::None => Ok(input.to_vec()),
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
            Compression::Gzip | Compression::Snappy => Err(Error::UnsupportedCompression(codec)),
        }
    }

    /// Decompresses the records section of a batch, refusing to grow past `len_max` bytes.
    ///
    /// # Errors
    /// [`Error::UnsupportedCompression`] for gzip and snappy; [`Error::Compression`] when
    /// the input is not a valid frame or decompresses to more than `len_max` bytes.
    pub fn decompress(self, input: &[u8], len_max: usize) -> Result<Vec<u8>> {
        let codec = self.name();
        let failed = |e: std::io::Error| Error::Compression {
            codec,
            message: e.to_string(),
        };
        let mut out = Vec::new();
        match self {
            Compression::None => return Ok(input.to_vec()),
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
            Compression::Gzip | Compression::Snappy => {
                return Err(Error::UnsupportedCompression(codec))
            }
        }
        if out.len() > len_max {
            return Err(Error::Compression {
                codec,
                message: format!("decompressed size exceeds {len_max} bytes"),
            });
        }
        Ok(out)
    }
}
