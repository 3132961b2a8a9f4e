//! What the broker allows consumer groups and their members (docs/limits.md).

use keel_protocol::api::ErrorCode;

pub use crate::config::group::Limits;

/// Checks a group id where it enters: not empty, at most `limit` bytes, no NUL (the
/// separator of the keys in `__consumer_offsets`: a group named `g\0t\01` could otherwise
/// write group `g`'s offset for `t`-1).
///
/// # Errors
/// `InvalidGroupId`.
pub fn check_group_id(group: &str, limit: usize) -> Result<(), ErrorCode> {
    if group.is_empty() || group.len() > limit || group.contains('\u{0}') {
        return Err(ErrorCode::InvalidGroupId);
    }
    Ok(())
}
