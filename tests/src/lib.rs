//! Shared pieces of Keel's end-to-end tests: deterministic batch contents that a child
//! process writes and the test process recomputes to compare byte for byte.

use keel_protocol::batch::{BatchBuilder, NewRecord};

/// The batch the crash writer appends for `tag`: 1..=8 records whose values encode the tag.
pub fn crash_batch(tag: u64) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    let count = 1 + (tag % 8) as usize;
    for record in 0..count {
        let mut value = format!("tag={tag} record={record} ").into_bytes();
        value.resize(100 + (tag as usize * 37) % 900, b'0' + (tag % 10) as u8);
        builder.push(NewRecord::value(1_700_000_000_000 + tag as i64, value));
    }
    builder.build().expect("crash batches are valid")
}

/// Number of records in [`crash_batch`]`(tag)`.
pub fn crash_batch_records(tag: u64) -> i64 {
    1 + (tag % 8) as i64
}

pub mod broker;
pub mod certs;
pub mod cluster;
pub mod in_process;
pub mod kafka_clients;
pub mod kafka_wire;
pub mod mirror;
pub mod netns;
pub mod recipe;
pub mod tool;
