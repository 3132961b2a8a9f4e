//! A value kept in one file of the data directory (users, ACLs) on a single node: read at
//! start-up, replaced durably (temporary file, fsync, rename) before a change becomes
//! visible, read by every shard under a lock that a panic elsewhere cannot poison. In a
//! cluster the metadata log keeps it instead: the value is in memory only, replaced as the
//! metadata changes.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard};

/// The file's text, or `None` when it does not exist.
///
/// # Errors
/// The file exists but cannot be read.
pub fn read_optional(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// A value and the file that keeps it.
#[derive(Debug)]
pub struct Durable<T> {
    /// `None` in a cluster (the metadata log keeps the value).
    path: Option<PathBuf>,
    current: RwLock<T>,
    encode: fn(&T) -> anyhow::Result<String>,
}

impl<T: Clone> Durable<T> {
    /// The value in `path`, made by `decode` from its text (`None` when absent).
    ///
    /// # Errors
    /// The file cannot be read or `decode` refuses it (the error names the file).
    pub fn load(
        path: PathBuf,
        decode: impl FnOnce(Option<&str>) -> anyhow::Result<T>,
        encode: fn(&T) -> anyhow::Result<String>,
    ) -> anyhow::Result<Durable<T>> {
        let text = read_optional(&path)?;
        let value =
            decode(text.as_deref()).with_context(|| format!("reading {}", path.display()))?;
        Ok(Durable {
            path: Some(path),
            current: RwLock::new(value),
            encode,
        })
    }

    /// A value the metadata log keeps (a cluster): [`Durable::replace`] sets it.
    pub fn in_metadata(value: T, encode: fn(&T) -> anyhow::Result<String>) -> Durable<T> {
        Durable {
            path: None,
            current: RwLock::new(value),
            encode,
        }
    }

    /// Whether the value is kept in a file (a single node) rather than the metadata log.
    pub fn in_file(&self) -> bool {
        self.path.is_some()
    }

    /// Makes `value` the value (what the metadata log holds now).
    pub fn replace(&self, value: T) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = value;
    }

    /// The value now (hold the guard briefly, never across an await).
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `change` to a copy, writes it durably, then makes it the value; what
    /// `change` returned.
    ///
    /// # Errors
    /// The file cannot be written (nothing changes then).
    pub fn change<R>(&self, change: impl FnOnce(&mut T) -> R) -> anyhow::Result<R> {
        let path = self
            .path
            .as_ref()
            .context("kept in the cluster's metadata log: changed through the controller")?;
        let mut next = self.read().clone();
        let answer = change(&mut next);
        crate::registry::write_durably(path, (self.encode)(&next)?.as_bytes())?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(answer)
    }
}
