//! Whole-file operations: small files (indexes, checkpoints) read and replaced durably,
//! removals, renames and directory syncs, each passing its simulated-disk hook.

use super::{align_up, fdatasync, file_size, glommio_io, read_exact, sim, truncate_file};
use crate::error::{Error, Result};
use glommio::io::{Directory, DmaFile, OpenOptions};
use std::path::Path;

/// Reads a small whole file (an index); `None` when it does not exist.
pub(crate) async fn read_small_file(path: &Path) -> Result<Option<Vec<u8>>> {
    let file = match DmaFile::open(path).await {
        Ok(file) => file,
        Err(e) => {
            let e = std::io::Error::from(e);
            if e.kind() == std::io::ErrorKind::NotFound {
                return Ok(None);
            }
            return Err(Error::io(format!("opening {}", path.display()), e));
        }
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

/// Opens a segment for a zero-copy send (sendfile reads it through the page cache); a read
/// only, so the simulated disk has nothing to record.
pub(crate) fn open_send_file(path: &Path) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))
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
