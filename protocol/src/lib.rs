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
mod builder;
pub mod compression;
pub mod error;
pub mod frame;
pub mod records;
pub mod retain;
pub mod varint;
pub mod wire;

pub use compression::Compression;
pub use error::{Error, Result};

/// Test builds count the largest allocation each thread asks for, so tests can show that
/// a count in hostile bytes does not size an allocation.
#[cfg(test)]
pub(crate) mod alloc_probe {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static LARGEST: Cell<usize> = const { Cell::new(0) };
    }

    struct Probe;

    // SAFETY: forwards to the system allocator; only records sizes.
    unsafe impl GlobalAlloc for Probe {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(layout.size())));
            // SAFETY: same layout as asked.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: allocated by `alloc` above with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(new_size)));
            // SAFETY: as `GlobalAlloc::realloc` requires of the caller.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static PROBE: Probe = Probe;

    /// Runs `f` and returns the largest single allocation it made on this thread.
    pub(crate) fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
        LARGEST.with(|l| l.set(0));
        let out = f();
        (out, LARGEST.with(Cell::get))
    }
}
