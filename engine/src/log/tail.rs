//! The last bytes of a log, whole batches, up to its end: what a reopened partition rebuilds
//! its idempotent producers' state from.

use super::*;

/// Part of one segment to read: from `from` (a batch start) to `on_disk` from the file,
/// the rest from the tail cache.
struct TailPart {
    segment_base: i64,
    from: u64,
    on_disk: u64,
}

impl Log {
    /// Whole batches, in order, making up about the last `max_bytes` of the log up to its
    /// end (past the high watermark too): from an index entry, so up to one index interval
    /// or one batch more. Read from the files and the tail cache, so batches the flusher
    /// has not written yet and the cache no longer holds are left out (none in a log just
    /// opened or flushed). Meant for a log that nothing cleans meanwhile: otherwise bytes
    /// that do not parse as batches end the caller's walk.
    ///
    /// # Errors
    /// I/O errors reading the files.
    pub async fn read_tail(&self, max_bytes: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for part in self.tail_parts(max_bytes) {
            if part.from < part.on_disk {
                let path = log_path(&self.shared.dir, part.segment_base);
                let reader = io::open_read(&path).await?;
                let len = (part.on_disk - part.from) as usize;
                let read = io::read_exact(&reader, &path, part.from, len).await;
                reader
                    .close()
                    .await
                    .map_err(io::error(format!("closing {}", path.display())))?;
                out.extend_from_slice(&read?);
            }
            let start = part.from.max(part.on_disk);
            let state = self.shared.state.borrow();
            for cached in state.tail.iter() {
                let end = cached.position + cached.bytes.len() as u64;
                if cached.segment_base == part.segment_base && end > start {
                    let skip = start.saturating_sub(cached.position) as usize;
                    out.extend_from_slice(&cached.bytes[skip..]);
                }
            }
        }
        Ok(out)
    }

    /// The segments' parts holding the last `max_bytes`, oldest first.
    fn tail_parts(&self, max_bytes: u64) -> Vec<TailPart> {
        let state = self.shared.state.borrow();
        let tail_front = state.tail.front().map(|c| (c.segment_base, c.position));
        let mut left = max_bytes;
        let mut parts = Vec::new();
        for segment in state.segments.values().rev() {
            if left == 0 {
                break;
            }
            if segment.is_empty() {
                continue;
            }
            let from = if segment.size <= left {
                0
            } else {
                // The last batch start at or before the byte that makes `max_bytes`.
                segment
                    .offset_index
                    .boundary_at_or_before(0, segment.size - left)
                    .unwrap_or(0)
            };
            let on_disk = match tail_front {
                Some((base, position)) if base == segment.base_offset => position,
                _ => segment.written_size,
            };
            parts.push(TailPart {
                segment_base: segment.base_offset,
                from,
                on_disk,
            });
            left = left.saturating_sub(segment.size - from);
            if from > 0 {
                break;
            }
        }
        parts.reverse();
        parts
    }
}
