//! The image's security metadata (users, ACLs, quotas, and cluster links, as kind/key/value
//! text the brokers interpret): its bounds and the check a change must pass before it is
//! proposed or applied.

use super::MetadataImage;
use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// Security metadata kinds are 1 to this.
pub const SECURITY_KIND_MAX: u8 = 4;
/// The kind of a cluster link's definition (issue 23): its values may be longer.
pub const LINK_KIND: u8 = 4;
/// Longest security key or value (but a link's).
pub const SECURITY_TEXT_BYTES_MAX: usize = 1_024;
/// Longest link definition (its patterns and the source's security settings).
pub const LINK_TEXT_BYTES_MAX: usize = 16 * 1_024;
/// Most security entries in the metadata (users, ACL bindings and quotas together).
pub const SECURITY_ENTRIES_MAX: usize = 100_000;
/// Most security entries one change may hold.
pub const SECURITY_CHANGE_ENTRIES_MAX: usize = 1_000;

impl MetadataImage {
    /// Security metadata entries by kind and key.
    pub fn security(&self) -> &BTreeMap<(u8, String), String> {
        &self.security
    }

    /// Whether `entries` may be applied: known kinds, keys and values within their
    /// bounds, and the total within [`SECURITY_ENTRIES_MAX`] after the change.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming what is wrong.
    pub fn check_security(&self, entries: &[crate::records::SecurityEntry]) -> Result<()> {
        let invalid = |reason: String| Error::Invalid {
            field: "security entry",
            reason,
        };
        if entries.is_empty() || entries.len() > SECURITY_CHANGE_ENTRIES_MAX {
            return Err(invalid(format!(
                "{} entries in one change (1 to {SECURITY_CHANGE_ENTRIES_MAX})",
                entries.len()
            )));
        }
        let mut added = 0usize;
        let mut seen = std::collections::BTreeSet::new();
        for entry in entries {
            if entry.kind == 0 || entry.kind > SECURITY_KIND_MAX {
                return Err(invalid(format!("unknown kind {}", entry.kind)));
            }
            let value_len = entry.value.as_ref().map_or(0, String::len);
            let value_max = if entry.kind == LINK_KIND {
                LINK_TEXT_BYTES_MAX
            } else {
                SECURITY_TEXT_BYTES_MAX
            };
            if entry.key.is_empty()
                || entry.key.len() > SECURITY_TEXT_BYTES_MAX
                || value_len > value_max
            {
                return Err(invalid(format!(
                    "keys are 1 to {SECURITY_TEXT_BYTES_MAX} bytes, values at most {value_max}"
                )));
            }
            let present = self.security.contains_key(&(entry.kind, entry.key.clone()));
            if seen.insert((entry.kind, entry.key.as_str())) && !present && entry.value.is_some() {
                added += 1;
            }
        }
        if self.security.len() + added > SECURITY_ENTRIES_MAX {
            return Err(invalid(format!(
                "more than {SECURITY_ENTRIES_MAX} security entries in the metadata"
            )));
        }
        Ok(())
    }
}
