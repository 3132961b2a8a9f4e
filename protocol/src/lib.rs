//! Keel's pure formats: the Kafka RecordBatch v2 codec that is both the wire format and the
//! on-disk format. No I/O happens here.
//!
//! ```
//! use keel_protocol::batch::{BatchBuilder, BatchView, NewRecord};
//! use keel_protocol::Compression;
//!
//! let mut builder = BatchBuilder::new();
//! builder.compression(Compression::Lz4);
//! builder.push(NewRecord::value(1_700_000_000_000, "first"));
//! builder.push(NewRecord::value(1_700_000_000_001, "second"));
//! let bytes = builder.build()?;
//!
//! let view = BatchView::new_verified(&bytes)?;
//! assert_eq!(view.last_offset_delta(), 1);
//! let records = view.records()?;
//! assert_eq!(records[1].value.as_deref(), Some(&b"second"[..]));
//! # Ok::<(), keel_protocol::Error>(())
//! ```
#![deny(missing_docs)]

pub mod api;
pub mod batch;
pub mod compression;
pub mod error;
pub mod frame;
pub mod records;
pub mod varint;
pub mod wire;

pub use compression::Compression;
pub use error::{Error, Result};
