//! Helpers shared by the engine's file-backed tests.
#![allow(dead_code)]

use bytes::BytesMut;
use keel_engine::ReadData;
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
