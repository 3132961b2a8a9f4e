//! The only module that touches glommio: direct-I/O segment writes with the partial tail
//! page kept in memory, reads, whole-file helpers for indexes, and directory syncs.

use crate::config::IO_ALIGN;
use crate::error::{Error, Result};
use crate::recovery::{Scanner, Step, Stop};
use bytes::Bytes;
use glommio::io::{DmaFile, OpenOptions};
use std::path::{Path, PathBuf};
use std::rc::Rc;

#[cfg(feature = "simdisk")]
use crate::simdisk as sim;
#[cfg(not(feature = "simdisk"))]
mod sim {
    //! Without the `simdisk` feature every hook is a no-op the compiler removes.
    use std::path::Path;
    pub(crate) fn created(_: &Path) -> std::io::Result<()> {
        Ok(())
    }
    pub(crate) fn write(_: &Path, _: u64, _: &[u8]) -> std::io::Result<Option<usize>> {
        Ok(None)
    }
    pub(crate) fn truncate(_: &Path, _: u64) -> std::io::Result<()> {
        Ok(())
    }
    pub(crate) fn sync(_: &Path) -> std::io::Result<bool> {
        Ok(false)
    }
    pub(crate) fn sync_dir(_: &Path) -> std::io::Result<bool> {
        Ok(false)
    }
    pub(crate) fn removed(_: &Path) -> std::io::Result<()> {
        Ok(())
    }
    pub(crate) fn renamed(_: &Path, _: &Path) -> std::io::Result<()> {
        Ok(())
    }
}

pub(crate) use glommio::io::DmaFile as File;

mod files;
pub(crate) use files::{
    open_read, read_small_file, remove_file, rename, replace_file_blocking, sync_dir,
    write_small_file,
};

/// Runs `future` as a detached task on the current executor.
pub(crate) fn spawn_detached(future: impl std::future::Future<Output = ()> + 'static) {
    glommio::spawn_local(future).detach();
}

/// Leaves the current task queue so the reactor submits queued I/O before this task goes on.
///
/// glommio hands file writes to the kernel only between task-queue runs; an appender that
/// refills the buffer right after being woken would otherwise hold the flusher's next write
/// back for its whole burst.
pub(crate) async fn yield_to_reactor() {
    glommio::executor().yield_task_queue_now().await;
}

/// Lets other task queues run if this one has had its share of the CPU (cheap when not).
pub(crate) async fn yield_if_needed() {
    glommio::yield_if_needed().await;
}

/// Sleeps on the current executor's timer.
pub(crate) async fn sleep(duration: std::time::Duration) {
    glommio::timer::sleep(duration).await;
}

/// Converts a runtime error into an engine I/O error with context.
pub(crate) fn error<T>(
    context: impl Into<String>,
) -> impl FnOnce(glommio::GlommioError<T>) -> Error {
    let context = context.into();
    move |e| Error::io(context, std::io::Error::from(e))
}

use error as glommio_io;

fn align_down(value: u64) -> u64 {
    value / IO_ALIGN * IO_ALIGN
}

fn align_up(value: u64) -> u64 {
    value.div_ceil(IO_ALIGN) * IO_ALIGN
}

/// Appends to one segment file with O_DIRECT.
///
/// Every write starts at an aligned page. `carry` holds the bytes from the page where the
/// next write starts up to `len`: the partial last page already on disk (written again in
/// front of new data) and, after a whole-page write, bytes not yet on disk at all. A write
/// either covers whole pages only (when more data follows, so the device sees equal,
/// aligned requests) or everything with the last page zero-padded. `disk_len` is where the
/// bytes on disk end; the file may hold zeros after it until [`SegmentWriter::finish`]
/// trims them.
pub(crate) struct SegmentWriter {
    file: Rc<DmaFile>,
    path: PathBuf,
    len: u64,
    disk_len: u64,
    carry: Vec<u8>,
    /// The file's size as extended ahead of the writes (fallocate), or as found.
    allocated: u64,
}

/// The first preallocation step of a segment file; later steps double it.
const PREALLOCATE_MIN: u64 = 64 << 10;

impl SegmentWriter {
    /// Creates (or truncates) the file.
    pub(crate) async fn create(path: &Path) -> Result<SegmentWriter> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(path)
            .await
            .map_err(glommio_io(format!("creating {}", path.display())))?;
        sim::created(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Ok(SegmentWriter {
            file: Rc::new(file),
            path: path.to_owned(),
            len: 0,
            disk_len: 0,
            carry: Vec::new(),
            allocated: 0,
        })
    }

    /// Opens an existing file whose valid bytes end at `len`, trimming anything after it.
    pub(crate) async fn open_at(path: &Path, len: u64) -> Result<SegmentWriter> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(path)
            .await
            .map_err(glommio_io(format!("opening {} for append", path.display())))?;
        let size = file
            .file_size()
            .await
            .map_err(glommio_io(format!("stat of {}", path.display())))?;
        if size != len {
            let context = format!("truncating {} to {len}", path.display());
            truncate_file(&file, path, len, &context).await?;
            fdatasync(&file, path, &context).await?;
        }
        let page_start = align_down(len);
        let partial = if len > page_start {
            let read = file
                .read_at(page_start, (len - page_start) as usize)
                .await
                .map_err(glommio_io(format!(
                    "reading the tail page of {}",
                    path.display()
                )))?;
            if read.len() as u64 != len - page_start {
                return Err(Error::io(
                    format!("reading the tail page of {}", path.display()),
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            read.to_vec()
        } else {
            Vec::new()
        };
        Ok(SegmentWriter {
            file: Rc::new(file),
            path: path.to_owned(),
            len,
            disk_len: len,
            carry: partial,
            allocated: len,
        })
    }

    /// Bytes handed to the writer (prepared), whether on disk yet or not.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Bytes the next write starts with (already-written partial page and unwritten bytes).
    pub(crate) fn carry_len(&self) -> u64 {
        self.carry.len() as u64
    }

    /// Whether bytes handed over are still waiting for a write.
    pub(crate) fn has_unwritten(&self) -> bool {
        self.disk_len < self.len
    }

    /// Copies the carried bytes and `batches` into one aligned buffer, ready to be written.
    ///
    /// With `whole_pages`, only whole pages are written, at most `chunk_bytes`, and the rest
    /// is carried into the next write; otherwise everything is written with the last page
    /// zero-padded. The writer advances now: the caller submits every prepared write, in
    /// order, and treats a failed submit as fatal for the log. A write that would end past
    /// the file's size first extends it by a step that doubles up to `preallocate_max`
    /// (none when 0).
    pub(crate) fn prepare(
        &mut self,
        batches: &[Bytes],
        whole_pages: bool,
        chunk_bytes: u64,
        preallocate_max: u64,
    ) -> PreparedWrite {
        let data_len: usize = batches.iter().map(Bytes::len).sum();
        let start = align_down(self.disk_len);
        assert_eq!(
            start + self.carry.len() as u64,
            self.len,
            "carry spans the next write's start to len"
        );
        assert_eq!(chunk_bytes % IO_ALIGN, 0, "chunks are whole pages");
        let total = (self.carry.len() + data_len) as u64;
        let end = self.len + data_len as u64;
        let write_len = match whole_pages {
            true if total >= IO_ALIGN => (total / IO_ALIGN * IO_ALIGN).min(chunk_bytes),
            _ => total,
        };
        let mut buffer = self.file.alloc_dma_buffer(align_up(write_len) as usize);
        let bytes = buffer.as_bytes_mut();
        let mut at = 0usize;
        let mut new_carry = Vec::new();
        let keep_from = if write_len == total {
            align_down(end) - start
        } else {
            write_len
        };
        for piece in std::iter::once(&self.carry[..]).chain(batches.iter().map(|b| &b[..])) {
            let piece_start = at as u64;
            let piece_end = piece_start + piece.len() as u64;
            if piece_start < write_len {
                let upto = (piece_end.min(write_len) - piece_start) as usize;
                bytes[at..at + upto].copy_from_slice(&piece[..upto]);
            }
            if piece_end > keep_from {
                let from = keep_from.saturating_sub(piece_start) as usize;
                new_carry.extend_from_slice(&piece[from..]);
            }
            at += piece.len();
        }
        let filled = write_len.min(total) as usize;
        bytes[filled..].fill(0);
        let new_disk_len = start + write_len;
        let write_end = start + align_up(write_len);
        let preallocate = (preallocate_max > 0 && write_end > self.allocated).then(|| {
            let step = self
                .allocated
                .clamp(PREALLOCATE_MIN, preallocate_max.max(PREALLOCATE_MIN));
            align_up(write_end + step)
        });
        if let Some(size) = preallocate {
            self.allocated = size;
        }
        self.carry = new_carry;
        self.len = end;
        self.disk_len = new_disk_len;
        assert_eq!(
            align_down(self.disk_len) + self.carry.len() as u64,
            self.len,
            "carry is consistent"
        );
        PreparedWrite {
            buffer,
            position: start,
            total: write_len as usize,
            end_len: new_disk_len,
            preallocate,
        }
    }

    /// The open file (read-write), shared for reads of the active segment.
    pub(crate) fn file(&self) -> Rc<DmaFile> {
        self.file.clone()
    }

    /// A handle that submits prepared writes without borrowing the writer.
    pub(crate) fn submitter(&self) -> Submitter {
        Submitter {
            file: self.file.clone(),
            path: self.path.clone(),
        }
    }

    /// Trims the zero padding, syncs and closes the file.
    pub(crate) async fn finish(self) -> Result<()> {
        assert_eq!(
            self.disk_len, self.len,
            "every prepared byte is written before closing"
        );
        let context = format!("closing {}", self.path.display());
        truncate_file(&self.file, &self.path, self.len, &context).await?;
        fdatasync(&self.file, &self.path, &context).await?;
        match Rc::try_unwrap(self.file) {
            Ok(file) => file.close().await.map_err(glommio_io(context)),
            Err(_) => Ok(()),
        }
    }

    /// fdatasync of the file now (its length and every byte written).
    pub(crate) async fn sync_file(&self) -> Result<()> {
        let context = format!("syncing {}", self.path.display());
        fdatasync(&self.file, &self.path, &context).await
    }

    /// Truncates the file to `len` bytes (which must not exceed the logical length).
    pub(crate) async fn truncate(&mut self, len: u64) -> Result<()> {
        assert!(len <= self.len, "truncate may only shrink");
        let context = format!("truncating {} to {len}", self.path.display());
        truncate_file(&self.file, &self.path, len, &context).await?;
        fdatasync(&self.file, &self.path, &context).await?;
        let reopened = SegmentWriter::open_at(&self.path, len).await?;
        *self = reopened;
        Ok(())
    }
}

/// Makes sure glommio has probed the device holding `dir` with a real read.
///
/// glommio decides once per device whether reads may use the io_uring poll ring by reading
/// the first file it opens. If that file is empty the probe succeeds vacuously and every
/// later read on the device fails with EOPNOTSUPP on devices without poll queues (virtio).
/// Opening a non-empty file first gives the probe a real answer. glommio caches the answer
/// per thread (per executor), and so do we.
pub(crate) async fn probe_device(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    thread_local!(static PROBED: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) });
    let device = std::fs::metadata(dir)
        .map_err(|e| Error::io(format!("stat of {}", dir.display()), e))?
        .dev();
    if PROBED.with(|p| p.borrow().contains(&device)) {
        return Ok(());
    }
    let thread =
        format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_ascii_digit(), "");
    let path = dir.join(format!(".keel-probe-{}-{thread}", std::process::id()));
    std::fs::write(&path, vec![0u8; IO_ALIGN as usize])
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    let opened = DmaFile::open(&path).await;
    let _ = std::fs::remove_file(&path);
    let file = opened.map_err(glommio_io(format!(
        "probing direct I/O with {}",
        path.display()
    )))?;
    file.close()
        .await
        .map_err(glommio_io(format!("closing {}", path.display())))?;
    PROBED.with(|p| p.borrow_mut().push(device));
    Ok(())
}

/// An aligned buffer ready to be written at its position.
pub(crate) struct PreparedWrite {
    buffer: glommio::io::DmaBuffer,
    position: u64,
    total: usize,
    end_len: u64,
    /// Extend the file to this size before writing.
    preallocate: Option<u64>,
}

impl PreparedWrite {
    /// The file's logical length once this write completes.
    pub(crate) fn end_len(&self) -> u64 {
        self.end_len
    }
    /// First byte the write covers.
    pub(crate) fn position(&self) -> u64 {
        self.position
    }
    /// Byte after the last page the write covers (padding included).
    pub(crate) fn end_aligned(&self) -> u64 {
        self.position + align_up(self.total as u64)
    }
}

/// Submits prepared writes to one segment file.
#[derive(Clone)]
pub(crate) struct Submitter {
    file: Rc<DmaFile>,
    path: PathBuf,
}

impl Submitter {
    /// Writes the buffer and checks it was written whole.
    pub(crate) async fn submit(self, prepared: PreparedWrite) -> Result<()> {
        let PreparedWrite {
            buffer,
            position,
            total,
            preallocate,
            ..
        } = prepared;
        if let Some(size) = preallocate {
            // The model sees the file grow with zeros, as a crash image may show it.
            sim::truncate(&self.path, size).map_err(|e| {
                Error::io(
                    format!("preallocating {} to {size}", self.path.display()),
                    e,
                )
            })?;
            // Only an optimisation: when the file system refuses (no fallocate, no space
            // to reserve) the write extends the file itself, as without it.
            if let Err(e) = self.file.pre_allocate(size, false).await {
                tracing::debug!(path = %self.path.display(), size, error = %e, "fallocate refused");
            }
        }
        let short = sim::write(&self.path, position, buffer.as_bytes())
            .map_err(|e| Error::io(format!("writing {} at {position}", self.path.display()), e))?;
        let written = match short {
            // The simulated device took only whole sectors of the start: so does the file.
            Some(kept) => {
                let mut part = self.file.alloc_dma_buffer(kept.max(IO_ALIGN as usize));
                part.as_bytes_mut()[..kept].copy_from_slice(&buffer.as_bytes()[..kept]);
                if kept >= IO_ALIGN as usize {
                    let aligned = kept / IO_ALIGN as usize * IO_ALIGN as usize;
                    let mut whole = self.file.alloc_dma_buffer(aligned);
                    whole
                        .as_bytes_mut()
                        .copy_from_slice(&part.as_bytes()[..aligned]);
                    self.file
                        .write_at(whole, position)
                        .await
                        .map_err(glommio_io(format!(
                            "writing {} at {position}",
                            self.path.display()
                        )))?;
                }
                kept
            }
            None => self
                .file
                .write_at(buffer, position)
                .await
                .map_err(glommio_io(format!(
                    "writing {} at {position}",
                    self.path.display()
                )))?,
        };
        if written < total {
            let short = std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("short write: {written} of {total} bytes"),
            );
            return Err(Error::io(format!("writing {}", self.path.display()), short));
        }
        Ok(())
    }

    /// Makes everything written to the file durable.
    pub(crate) async fn sync(&self) -> Result<()> {
        let context = format!("fdatasync of {}", self.path.display());
        fdatasync(&self.file, &self.path, &context).await
    }
}

/// fdatasync(2) of `file` (recorded by, and under, the simulated disk in tests).
async fn fdatasync(file: &DmaFile, path: &Path, context: &str) -> Result<()> {
    if sim::sync(path).map_err(|e| Error::io(context, e))? {
        return Ok(());
    }
    file.fdatasync().await.map_err(glommio_io(context))
}

/// Truncates `file` to `len` bytes (recorded by the simulated disk in tests).
async fn truncate_file(file: &DmaFile, path: &Path, len: u64, context: &str) -> Result<()> {
    sim::truncate(path, len).map_err(|e| Error::io(context, e))?;
    file.truncate(len).await.map_err(glommio_io(context))
}

/// A spawned task's handle.
pub(crate) type Task<T> = glommio::Task<T>;

/// Runs `future` as a task of its own so it makes progress while the caller does other work.
pub(crate) fn spawn<T: 'static>(
    future: impl std::future::Future<Output = T> + 'static,
) -> glommio::Task<T> {
    glommio::spawn_local(future)
}

/// Reads exactly `len` bytes at `position`.
pub(crate) async fn read_exact(
    file: &DmaFile,
    path: &Path,
    position: u64,
    len: usize,
) -> Result<Vec<u8>> {
    let read = file
        .read_at(position, len)
        .await
        .map_err(glommio_io(format!(
            "reading {} bytes of {} at {position}",
            len,
            path.display()
        )))?;
    if read.len() < len {
        let short = std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("got {} of {len} bytes", read.len()),
        );
        return Err(Error::io(
            format!("reading {} at {position}", path.display()),
            short,
        ));
    }
    Ok(read.to_vec())
}

/// Size of a file on disk, from its descriptor: glommio's own stat looks the path up again,
/// and a reader's file may have been removed (or opened through its /proc link, see
/// `open_read`) since it was opened.
pub(crate) async fn file_size(file: &DmaFile, path: &Path) -> Result<u64> {
    use std::os::fd::AsRawFd;
    let link = format!("/proc/{}/fd/{}", std::process::id(), file.as_raw_fd());
    std::fs::metadata(link)
        .map(|meta| meta.len())
        .map_err(|e| Error::io(format!("stat of {}", path.display()), e))
}

/// Bytes read per step while scanning a segment.
const SCAN_CHUNK_BYTES: usize = 1 << 20;

/// Feeds a segment file to `scanner` from its position until it stops.
pub(crate) async fn scan(
    file: &DmaFile,
    path: &Path,
    file_len: u64,
    scanner: &mut Scanner,
) -> Result<Stop> {
    let mut len_min = SCAN_CHUNK_BYTES;
    loop {
        let position = scanner.position();
        let remaining = file_len.saturating_sub(position);
        let len = (len_min.max(SCAN_CHUNK_BYTES) as u64).min(remaining) as usize;
        let data = if len == 0 {
            Vec::new()
        } else {
            read_exact(file, path, position, len).await?
        };
        let eof = position + len as u64 >= file_len;
        match scanner.feed(&data, eof) {
            Step::Stop(stop) => return Ok(stop),
            Step::NeedMore {
                position: at,
                len_min: need,
            } => {
                assert!(at >= position, "the scanner never goes back");
                len_min = need;
            }
        }
    }
}
