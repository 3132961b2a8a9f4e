//! The Keel broker as a library: [`start`] runs one in this process, as the `keel-server`
//! binary does and as the tests' in-process harness does (several in one process).

mod accept;
mod background;
mod broker;
mod cluster;
mod compaction;
pub mod config;
mod conn;
mod group;
mod handlers;
mod kafka;
mod metrics;
pub mod mirror;
mod native_acls;
mod native_security;
mod offsets_migration;
mod peers;
mod ports;
mod producer_ids;
mod producers;
mod registry;
mod replication;
pub mod security;
mod shard;
mod stream;

pub use broker::{start, Broker};
