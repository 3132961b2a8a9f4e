//! Whole-file operations: small files (indexes, checkpoints) read and replaced durably,
//! removals, renames and directory syncs, each passing its simulated-disk hook.

use super::{align_up, fdatasync, file_size, glommio_io, read_exact, sim, truncate_file};
use crate::error::{Error, Result};
use glommio::io::{Directory, DmaFile, OpenOptions};
use std::path::Path;

/// Opens a segment (or any file) for direct-I/O reads.
pub(crate) async fn open_read(path: &Path) -> Result<DmaFile> {
    open_direct(path)
        .await
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))
}

/// Opens `path` for direct-I/O reads without racing its removal.
///
/// glommio's open looks the path up twice: openat, then a statfs of the same path that
/// panics when the path is gone. Retention or compaction may remove a segment while a
/// reader's open is in flight, so the file is first opened here (a missing file is
/// `NotFound`, as before) and glommio opens that descriptor's /proc link, which reaches the
/// same file even once its name is removed.
async fn open_direct(path: &Path) -> std::io::Result<DmaFile> {
    use std::os::fd::AsRawFd;
    let held = std::fs::File::open(path)?;
    let link = format!("/proc/{}/fd/{}", std::process::id(), held.as_raw_fd());
    let file = DmaFile::open(&link).await.map_err(std::io::Error::from)?;
    drop(held);
    Ok(file)
}

/// Reads a small whole file (an index); `None` when it does not exist.
pub(crate) async fn read_small_file(path: &Path) -> Result<Option<Vec<u8>>> {
    let file = match open_direct(path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    };
    let size = file_size(&file, path).await?;
    let bytes = if size == 0 {
        Vec::new()
    } else {
        read_exact(&file, path, 0, size as usize).await?
    };
    file.close()
        .await
        .map_err(glommio_io(format!("closing {}", path.display())))?;
    Ok(Some(bytes))
}

/// Replaces a small file (an index) with `bytes`, durably.
pub(crate) async fn write_small_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let context = format!("writing {}", path.display());
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(path)
        .await
        .map_err(glommio_io(context.clone()))?;
    sim::created(path).map_err(|e| Error::io(context.clone(), e))?;
    if !bytes.is_empty() {
        let mut buffer = file.alloc_dma_buffer(align_up(bytes.len() as u64) as usize);
        buffer.as_bytes_mut()[..bytes.len()].copy_from_slice(bytes);
        buffer.as_bytes_mut()[bytes.len()..].fill(0);
        let short =
            sim::write(path, 0, buffer.as_bytes()).map_err(|e| Error::io(context.clone(), e))?;
        if let Some(kept) = short {
            let short = std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("short write: {kept} of {} bytes", bytes.len()),
            );
            return Err(Error::io(context, short));
        }
        file.write_at(buffer, 0)
            .await
            .map_err(glommio_io(context.clone()))?;
        truncate_file(&file, path, bytes.len() as u64, &context).await?;
    }
    fdatasync(&file, path, &context).await?;
    file.close().await.map_err(glommio_io(context))
}

/// Replaces a small file with `bytes` durably before returning, blocking the thread: for
/// the rare write the caller must see durable in the same instant (a leader-epoch entry
/// before the first batch of its epoch). Written to `<path>.tmp`, synced, renamed over
/// `path`, the directory synced; each step passes its simulated-disk hook.
pub(crate) fn replace_file_blocking(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let temp = path.with_extension("tmp");
    let failed = |e: std::io::Error| Error::io(format!("writing {}", path.display()), e);
    sim::created(&temp).map_err(failed)?;
    let mut file = std::fs::File::create(&temp).map_err(failed)?;
    if let Some(kept) = sim::write(&temp, 0, bytes).map_err(failed)? {
        let _ = file.write_all(&bytes[..kept]);
        let short = std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("short write: {kept} of {} bytes", bytes.len()),
        );
        return Err(failed(short));
    }
    file.write_all(bytes).map_err(failed)?;
    if !sim::sync(&temp).map_err(failed)? {
        file.sync_data().map_err(failed)?;
    }
    drop(file);
    rename(&temp, path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    if !sim::sync_dir(dir).map_err(failed)? {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(failed)?;
    }
    Ok(())
}

/// Removes a file; a file already gone is fine.
pub(crate) async fn remove_file(path: &Path) -> Result<()> {
    sim::removed(path).map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
    match glommio::io::remove(path).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let e = std::io::Error::from(e);
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(Error::io(format!("removing {}", path.display()), e))
            }
        }
    }
}

/// Renames `from` over `to` at once (rename(2), atomic; durable once the directory is
/// synced). Synchronous: the caller changes its bookkeeping in the same instant.
pub(crate) fn rename(from: &Path, to: &Path) -> Result<()> {
    let context = || format!("renaming {} to {}", from.display(), to.display());
    sim::renamed(from, to).map_err(|e| Error::io(context(), e))?;
    std::fs::rename(from, to).map_err(|e| Error::io(context(), e))
}

/// Makes a directory's entries (created, removed, renamed files) durable.
pub(crate) async fn sync_dir(path: &Path) -> Result<()> {
    let context = format!("syncing directory {}", path.display());
    if sim::sync_dir(path).map_err(|e| Error::io(context.clone(), e))? {
        return Ok(());
    }
    let dir = Directory::open(path)
        .await
        .map_err(glommio_io(context.clone()))?;
    dir.sync().await.map_err(glommio_io(context.clone()))?;
    dir.close().await.map_err(glommio_io(context))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file removed while readers open it is either not found or read whole; never a
    /// panic inside glommio (seen in the simulated-disk test as a statfs ENOENT).
    #[test]
    fn a_file_removed_while_it_is_being_opened_is_read_whole_or_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        let outcomes = glommio::LocalExecutorBuilder::default()
            .spawn({
                let path = path.clone();
                move || async move {
                    let (mut read, mut missing) = (0, 0);
                    for round in 0..300 {
                        std::fs::write(&path, vec![7u8; 4096]).unwrap();
                        let opener = glommio::spawn_local({
                            let path = path.clone();
                            async move { read_small_file(&path).await }
                        });
                        let remover = glommio::spawn_local({
                            let path = path.clone();
                            async move {
                                let wait = std::time::Duration::from_micros(round % 60);
                                glommio::timer::sleep(wait).await;
                                std::fs::remove_file(&path).unwrap()
                            }
                        });
                        match opener.await.unwrap() {
                            Some(bytes) => {
                                assert_eq!(bytes, vec![7u8; 4096]);
                                read += 1;
                            }
                            None => missing += 1,
                        }
                        remover.await;
                    }
                    (read, missing)
                }
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(outcomes.0 + outcomes.1, 300);
        assert!(outcomes.0 > 0, "every open lost the race: {outcomes:?}");
    }
}
