//! keel-client: the native Rust client for Keel (arrives with the client issue). For now it
//! re-exports the record batch codec every client needs.
#![deny(missing_docs)]

pub use keel_protocol::batch::{BatchBuilder, BatchView, NewRecord};
