//! The cluster a data directory belongs to: `cluster.id`, written the first time this
//! broker applies metadata that names its cluster, compared with every image after. A
//! broker pointed at another quorum (a wiped or new one with the same voter ids) refuses
//! its metadata instead of deleting its own data on that quorum's word.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The file and what it holds.
#[derive(Debug)]
pub struct ClusterIdentity {
    path: PathBuf,
    id: Option<String>,
}

impl ClusterIdentity {
    /// Reads `cluster.id` from `data_dir` (none yet on a new directory).
    ///
    /// # Errors
    /// The file cannot be read, or is empty.
    pub fn load(data_dir: &Path) -> anyhow::Result<ClusterIdentity> {
        let path = data_dir.join("cluster.id");
        let id = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let id = text.trim().to_owned();
                anyhow::ensure!(!id.is_empty(), "{} is empty", path.display());
                Some(id)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(ClusterIdentity { path, id })
    }

    /// Checks the metadata's cluster id against this directory's, recording it (durably)
    /// the first time.
    ///
    /// # Errors
    /// Another cluster's id (one line naming both and the file), or the file cannot be
    /// written.
    pub fn check(&mut self, cluster_id: &str) -> anyhow::Result<()> {
        match &self.id {
            Some(known) if known == cluster_id => Ok(()),
            Some(known) => anyhow::bail!(
                "the controller quorum's cluster id is {cluster_id}, but this data directory belongs to cluster {known} ({}): refusing its metadata (point --controller-voters at this broker's own cluster, or use a new data directory)",
                self.path.display()
            ),
            None => {
                crate::registry::write_durably(&self.path, format!("{cluster_id}\n").as_bytes())?;
                tracing::info!(cluster_id, "joined the cluster");
                self.id = Some(cluster_id.to_owned());
                Ok(())
            }
        }
    }
}

/// A new cluster's id: 16 random bytes as 32 hex digits.
pub fn new_cluster_id() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_err() {
        // No /dev/urandom: the clock and the process id still make a new quorum's id differ
        // from an old one's.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (nanos ^ u128::from(std::process::id()) << 96).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the first id is recorded and survives a restart; another cluster's is refused
    // with the file named.
    #[test]
    fn the_first_cluster_id_is_kept_and_another_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut identity = ClusterIdentity::load(dir.path()).unwrap();
        identity.check("one").unwrap();
        let mut again = ClusterIdentity::load(dir.path()).unwrap();
        again.check("one").unwrap();
        let error = again.check("two").unwrap_err().to_string();
        assert!(
            error.contains("cluster one") && error.contains("cluster.id"),
            "{error}"
        );
        assert_ne!(new_cluster_id(), new_cluster_id());
        assert_eq!(new_cluster_id().len(), 32);
    }
}
