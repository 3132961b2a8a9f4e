//! A voter's metadata log file: appended and fdatasynced per round, rewritten when it
//! grows, recovered (torn tail cut, voter list checked) at start-up.

use super::node::knob;
use super::ClusterConfig;
use keel_controller::disklog;
use keel_controller::store::{LogStore, Persist};
use std::path::PathBuf;

/// Rewrite the metadata log (snapshot + the entries after it) past this size.
pub const LOG_REWRITE_BYTES: u64 = 4 << 20;

/// The metadata log file of a voter.
pub struct MetaLog {
    pub(super) path: PathBuf,
    file: glommio::io::BufferedFile,
    pub(super) size: u64,
    pub(super) rewritten_at_index: u64,
    pub(super) rewrite_bytes: u64,
}

impl MetaLog {
    /// Opens the file after recovery cut it to its valid length.
    pub async fn open(path: PathBuf) -> anyhow::Result<MetaLog> {
        let file = glommio::io::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .buffered_open(&path)
            .await
            .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
        let size = file.file_size().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(MetaLog {
            path,
            file,
            size,
            rewritten_at_index: 0,
            rewrite_bytes: knob("REWRITE_BYTES", LOG_REWRITE_BYTES),
        })
    }

    pub(super) async fn append(&mut self, persist: &Persist) -> anyhow::Result<()> {
        let bytes = disklog::encode_persist(persist);
        let mut written = 0;
        while written < bytes.len() {
            let n = self
                .file
                .write_at(bytes[written..].to_vec(), self.size + written as u64)
                .await
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", self.path.display()))?;
            if n == 0 {
                anyhow::bail!("writing {}: no progress", self.path.display());
            }
            written += n;
        }
        self.file
            .fdatasync()
            .await
            .map_err(|e| anyhow::anyhow!("syncing {}: {e}", self.path.display()))?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Rewrites the file as the store's snapshot, entries and hard state once it has grown
    /// past [`LOG_REWRITE_BYTES`] and the store has a newer snapshot.
    pub(super) async fn maybe_rewrite(&mut self, store: &LogStore) -> anyhow::Result<()> {
        let index = store.snapshot_ref().get_metadata().index;
        if self.size < self.rewrite_bytes || index <= self.rewritten_at_index {
            return Ok(());
        }
        let bytes = disklog::encode_store(store);
        let tmp = self.path.with_extension("log.tmp");
        let write = || -> std::io::Result<()> {
            std::fs::write(&tmp, &bytes)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| anyhow::anyhow!("rewriting {}: {e}", self.path.display()))?;
        let reopened = MetaLog::open(self.path.clone()).await?;
        let old = std::mem::replace(self, reopened);
        let _ = old.file.close().await;
        self.rewritten_at_index = index;
        self.rewrite_bytes = old.rewrite_bytes;
        tracing::info!(index, bytes = self.size, "metadata log compacted");
        Ok(())
    }
}

/// Reads a voter's metadata log at start-up, cutting a torn tail, and checks it was made
/// for the same voters. Runs before the shards start.
///
/// # Errors
/// Unreadable files, or a log made for another voter list.
pub fn recover_log(
    data_dir: &std::path::Path,
    config: &ClusterConfig,
) -> anyhow::Result<(PathBuf, LogStore)> {
    let dir = data_dir.join("controller");
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    let voters_path = dir.join("voters");
    let ours = config.voters_text();
    match std::fs::read_to_string(&voters_path) {
        Ok(stored) if stored.trim() != ours => anyhow::bail!(
            "this node's metadata log ({}) belongs to the quorum {}, but --controller-voters is {ours}",
            dir.display(),
            stored.trim()
        ),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&voters_path, format!("{ours}\n"))
                .and_then(|()| std::fs::File::open(&voters_path)?.sync_all())
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", voters_path.display()))?;
        }
        Err(e) => anyhow::bail!("reading {}: {e}", voters_path.display()),
    }
    let path = dir.join("metadata.log");
    let data = match std::fs::read(&path) {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => anyhow::bail!("reading {}: {e}", path.display()),
    };
    let found = disklog::recover(&data);
    if let Some(at) = found.corrupt_at {
        anyhow::bail!(
            "{} is corrupt at byte {at}: a record there fails its check and complete rounds follow it (not a torn tail); refusing to start rather than cut synced Raft state (restore the file, or investigate the disk)",
            path.display()
        );
    }
    if found.torn {
        tracing::warn!(
            path = %path.display(),
            kept = found.valid_bytes,
            dropped = data.len() - found.valid_bytes,
            "metadata log had a torn tail; cut"
        );
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
        file.set_len(found.valid_bytes as u64)
            .and_then(|()| file.sync_all())
            .map_err(|e| anyhow::anyhow!("cutting {}: {e}", path.display()))?;
    }
    let voters: Vec<u64> = config.voters.iter().map(|(id, _)| *id).collect();
    Ok((path, found.into_store(&voters)))
}
