//! Keel's storage engine: one partition's log as a directory of direct-I/O segments in
//! Kafka's layout (`00000000000000000000.log`, `.index`, `.timeindex`), holding Kafka
//! RecordBatch v2 bytes exactly as producers sent them.
//!
//! A [`Log`] lives on one glommio executor (one shard). Appends are group-committed:
//! with [`FsyncPolicy::Always`] an append completes only when its bytes are synced, and
//! every append that arrives while a sync is running shares the next one. Reads return
//! whole batches, from memory at the tail or read from the segment files with direct I/O
//! and read-ahead. See `ARCHITECTURE.md` and `docs/storage-format.md` for the design.
//!
//! ```no_run
//! use keel_engine::{FsyncPolicy, Log, LogConfig, ReadData};
//! use keel_protocol::batch::{BatchBuilder, NewRecord};
//!
//! glommio::LocalExecutorBuilder::default().make().unwrap().run(async {
//!     let config = LogConfig { fsync: FsyncPolicy::Always, ..LogConfig::default() };
//!     let log = Log::open("/tmp/keel-example/topic-0", config).await?;
//!     let mut builder = BatchBuilder::new();
//!     builder.push(NewRecord::value(1_700_000_000_000, "hello"));
//!     let info = log.append(bytes::BytesMut::from(builder.build()?.as_slice())).await?; // durable now
//!     let read = log.read(info.base_offset, 1 << 20).await?;
//!     assert!(matches!(read.data, ReadData::Memory(_)));
//!     log.close().await
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod config;
pub mod error;
pub mod index;
mod io;
pub mod log;
pub mod offset_map;
pub mod recovery;
pub mod retention;
pub mod segment;
#[cfg(feature = "simdisk")]
pub mod simdisk;

pub use config::{FsyncPolicy, LogConfig, OnCorruption, Verify, IO_ALIGN};
pub use error::{Error, Result};
pub use log::{
    AppendInfo, Batch, CleanConfig, CleanStats, Clock, Log, LogStats, ManualClock, ReadData,
    ReadResult, SystemClock, TailShare,
};
pub use segment::SegmentInfo;
