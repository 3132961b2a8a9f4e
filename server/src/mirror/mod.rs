//! Mirroring between clusters (issue 23): cluster links defined on the destination (kept in
//! its metadata log), mirror topics whose partitions append the source's batches byte for
//! byte at the same offsets, read-only until promoted.
//!
//! Sans-IO, tested without sockets or disks: a link's definition (`definition.rs`), what it
//! selects (`link.rs`) and where each mirror partition stands (`partition.rs`). The thin
//! glommio layer: the connection to a source broker over the Kafka protocol (`source.rs`),
//! the per-shard workers that make mirror topics, fetch and append (`task.rs`), and the Link
//! API (`admin.rs`).

pub mod admin;
pub mod configs;
pub mod definition;
mod fetching;
pub mod groups;
pub mod link;
pub mod partition;
pub mod source;
pub mod task;
mod upkeep;
