//! Helpers shared by the engine's file-backed tests.
#![allow(dead_code)]

use bytes::BytesMut;
use keel_engine::{FsyncPolicy, Log, LogConfig, ReadData};
use keel_protocol::batch::{BatchBuilder, BatchView, NewRecord};
use std::future::Future;

/// Runs `future` on a fresh glommio executor with little registered memory.
pub fn run<F, T>(make: impl FnOnce() -> F + Send + 'static) -> T
where
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .spawn(make)
        .expect("glommio executor starts (io_uring and memlock available)")
        .join()
        .expect("executor thread")
}

/// A batch of `count` records whose values say which batch they belong to.
pub fn batch(tag: u64, count: usize, value_len: usize, timestamp: i64) -> BytesMut {
    let mut builder = BatchBuilder::new();
    for record in 0..count {
        let mut value = format!("{tag}:{record}:").into_bytes();
        value.resize(value_len.max(value.len()), b'x');
        builder.push(NewRecord::value(timestamp + record as i64, value));
    }
    BytesMut::from(builder.build().expect("builder").as_slice())
}

/// Every batch in `data`, as (base offset, last offset, whole bytes), checking CRCs.
pub fn batches(data: &ReadData) -> Vec<(i64, i64, Vec<u8>)> {
    let bytes = data.to_vec().expect("read data");
    let mut out = Vec::new();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let view = BatchView::new_verified(rest).expect("reads return whole valid batches");
        out.push((
            view.base_offset(),
            view.last_offset(),
            view.as_bytes().to_vec(),
        ));
        rest = &rest[view.len()..];
    }
    out
}

/// Small segments, index steps and tail cache, so a few hundred batches roll and read
/// from files.
pub fn small_config(fsync: FsyncPolicy) -> LogConfig {
    LogConfig {
        segment_bytes: 16 * 1024,
        index_interval_bytes: 1024,
        tail_cache_bytes: 4 * 1024,
        fsync,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// Reads the whole log from `from` to the high watermark, one read at a time.
pub async fn read_all(log: &Log, from: i64, max_bytes: u64) -> Vec<(i64, i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut next = from;
    while next < log.high_watermark() {
        let read = log.read(next, max_bytes).await.expect("read");
        let got = batches(&read.data);
        assert!(
            !got.is_empty(),
            "read at {next} below the high watermark returned nothing"
        );
        assert!(
            got[0].0 <= next && next <= got[0].1,
            "first batch holds the offset asked for"
        );
        for (base, last, _) in &got {
            assert!(*base <= next.max(*base), "batches in order");
            next = last + 1;
        }
        out.extend(got);
    }
    out
}
