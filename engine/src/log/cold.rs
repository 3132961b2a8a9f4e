//! Cold reads: batches older than the tail cache, read from their segment with direct I/O
//! on io_uring, a range's chunks all in flight at once, and read-ahead for a reader moving
//! forward through a segment.
//!
//! Segments are written with O_DIRECT, so the page cache holds none of them and a read
//! through it (sendfile) waits on the device one small kernel read-ahead at a time. Here a
//! range is read as chunks on a fixed grid of the file ([`CHUNK_BYTES`]), and each read
//! also starts the next [`AHEAD_CHUNKS`] chunks, so a consumer catching up finds its next
//! fetch in memory or on its way. Where the last read ended is remembered, so the next
//! read from there needs no scan for its first batch. Read-ahead memory is bounded per
//! executor ([`AHEAD_BUDGET_BYTES`]) and per log ([`AHEAD_PER_LOG`] chunks).

use super::*;
use std::collections::VecDeque;

/// Bytes per chunk of the grid cold reads use.
pub const CHUNK_BYTES: u64 = 256 << 10;
/// Chunks read ahead of a cold read's end.
const AHEAD_CHUNKS: u64 = 8;
/// Chunks a log keeps (read ahead or partly used).
pub const AHEAD_PER_LOG: usize = 16;
/// Read-ahead bytes held at once by all the logs of one executor (a shard).
pub const AHEAD_BUDGET_BYTES: u64 = 64 << 20;
/// A chunk nobody read for this long is dropped at the log's next cold read.
const AHEAD_MAX_AGE: Duration = Duration::from_secs(5);

thread_local! {
    static AHEAD_HELD: Cell<u64> = const { Cell::new(0) };
}

/// Bytes of the executor's read-ahead budget, given back when dropped.
struct Budget(u64);

impl Budget {
    fn take(bytes: u64) -> Option<Budget> {
        AHEAD_HELD.with(|held| {
            let now = held.get();
            (now + bytes <= AHEAD_BUDGET_BYTES).then(|| {
                held.set(now + bytes);
                Budget(bytes)
            })
        })
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        AHEAD_HELD.with(|held| held.set(held.get() - self.0));
    }
}

/// A segment file as of one cleaner generation.
pub(super) type FileKey = (i64, u64);

enum Fill {
    Reading(io::Task<Result<Bytes>>),
    Read(Bytes),
}

/// One chunk of the grid: `[position, position + len)` of a segment file.
struct Chunk {
    key: FileKey,
    position: u64,
    len: u64,
    issued: Instant,
    bytes: Fill,
    budget: Option<Budget>,
}

impl Chunk {
    fn start(key: FileKey, file: &Rc<File>, path: &Path, position: u64, len: u64) -> Chunk {
        let (file, path) = (file.clone(), path.to_owned());
        let read = io::spawn(async move {
            let bytes = io::read_exact(&file, &path, position, len as usize).await?;
            Ok(Bytes::from(bytes))
        });
        Chunk {
            key,
            position,
            len,
            issued: Instant::now(),
            bytes: Fill::Reading(read),
            budget: None,
        }
    }

    async fn bytes(&mut self) -> Result<Bytes> {
        if let Fill::Reading(read) = &mut self.bytes {
            self.bytes = Fill::Read(read.await?);
        }
        match &self.bytes {
            Fill::Read(bytes) => Ok(bytes.clone()),
            Fill::Reading(_) => unreachable!("awaited above"),
        }
    }
}

/// Where a cold read ended: the next read from `offset` starts at `position`.
#[derive(Clone, Copy)]
struct Resume {
    key: FileKey,
    offset: i64,
    position: u64,
}

/// A log's read-ahead: chunks read or being read, and where the last cold read ended.
#[derive(Default)]
pub(super) struct ReadAhead {
    chunks: VecDeque<Chunk>,
    resume: Option<Resume>,
}

impl ReadAhead {
    /// Forgets everything (the log was truncated: positions may hold other bytes now).
    pub(super) fn clear(&mut self) {
        self.chunks.clear();
        self.resume = None;
    }

    /// Where the batch holding `offset` starts, when the last cold read ended there.
    pub(super) fn resume_at(&self, key: FileKey, offset: i64) -> Option<u64> {
        self.resume
            .filter(|r| r.key == key && r.offset == offset)
            .map(|r| r.position)
    }

    /// The kept chunk at `position` holding at least `[position, end)`.
    fn take(&mut self, key: FileKey, position: u64, end: u64) -> Option<Chunk> {
        let at = self
            .chunks
            .iter()
            .position(|c| c.key == key && c.position == position)?;
        let chunk = self.chunks.remove(at)?;
        (chunk.position + chunk.len >= end).then_some(chunk)
    }

    fn holds(&self, key: FileKey, position: u64) -> bool {
        self.chunks
            .iter()
            .any(|c| c.key == key && c.position == position)
    }

    fn keep(&mut self, mut chunk: Chunk) {
        if chunk.budget.is_none() {
            match Budget::take(chunk.len) {
                Some(budget) => chunk.budget = Some(budget),
                None => return,
            }
        }
        self.chunks.push_back(chunk);
        while self.chunks.len() > AHEAD_PER_LOG {
            self.chunks.pop_front();
        }
    }

    fn drop_stale(&mut self) {
        self.chunks.retain(|c| c.issued.elapsed() < AHEAD_MAX_AGE);
    }
}

/// A planned cold read: `[start, end)` of the segment file `key`, whose written bytes end
/// at `cap`.
pub(super) struct ColdRange<'a> {
    pub(super) key: FileKey,
    pub(super) file: &'a Rc<File>,
    pub(super) path: &'a Path,
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) cap: u64,
}

impl Log {
    /// Reads `range` (whole batches) through the read-ahead, starts the chunks after it,
    /// and remembers where it ends.
    pub(super) async fn read_cold(&self, range: ColdRange<'_>) -> Result<Vec<Bytes>> {
        let ColdRange {
            key,
            file,
            path,
            start,
            end,
            cap,
        } = range;
        let grid = |k: u64| (k * CHUNK_BYTES, ((k + 1) * CHUNK_BYTES).min(cap));
        let (first, last) = (start / CHUNK_BYTES, (end - 1) / CHUNK_BYTES);
        let mut chunks = Vec::new();
        {
            let ahead = &mut self.shared.state.borrow_mut().ahead;
            ahead.drop_stale();
            for k in first..=last {
                let (position, chunk_end) = grid(k);
                let chunk = ahead
                    .take(key, position, chunk_end.min(end))
                    .unwrap_or_else(|| {
                        Chunk::start(key, file, path, position, chunk_end - position)
                    });
                chunks.push(chunk);
            }
            for k in last + 1..=last + AHEAD_CHUNKS {
                let (position, chunk_end) = grid(k);
                if position >= cap {
                    break;
                }
                if ahead.holds(key, position) {
                    continue;
                }
                let Some(budget) = Budget::take(chunk_end - position) else {
                    break;
                };
                let mut chunk = Chunk::start(key, file, path, position, chunk_end - position);
                chunk.budget = Some(budget);
                ahead.keep(chunk);
            }
        }
        let mut parts = Vec::with_capacity(chunks.len());
        for mut chunk in chunks {
            let bytes = chunk.bytes().await?;
            let from = start.max(chunk.position) - chunk.position;
            let to = end.min(chunk.position + chunk.len) - chunk.position;
            parts.push(bytes.slice(from as usize..to as usize));
            if chunk.position + chunk.len > end {
                self.shared.state.borrow_mut().ahead.keep(chunk);
            }
        }
        let next = next_offset(&parts).map_err(|reason| Error::Corrupt {
            path: path.to_owned(),
            position: start,
            reason,
        })?;
        self.shared.state.borrow_mut().ahead.resume = Some(Resume {
            key,
            offset: next,
            position: end,
        });
        Ok(parts)
    }
}

/// The offset after the last batch of `parts` (whole batches, split anywhere).
fn next_offset(parts: &[Bytes]) -> std::result::Result<i64, String> {
    let total: usize = parts.iter().map(Bytes::len).sum();
    let mut at = 0usize;
    let mut next = None;
    while at < total {
        if total - at < 27 {
            return Err(format!("a batch header cut at {at} of {total} bytes"));
        }
        let base = i64::from_be_bytes(copy_out(parts, at));
        let len = i32::from_be_bytes(copy_out(parts, at + 8));
        let delta = i32::from_be_bytes(copy_out(parts, at + 23));
        if len < 49 {
            return Err(format!("a batch length of {len} at {at}"));
        }
        next = Some(base + i64::from(delta) + 1);
        at += 12 + len as usize;
    }
    if at != total {
        return Err(format!("the last batch ends at {at}, after {total} bytes"));
    }
    next.ok_or_else(|| "an empty range".to_owned())
}

/// `N` bytes at `at` of `parts` taken as one run.
fn copy_out<const N: usize>(parts: &[Bytes], mut at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    let mut filled = 0;
    for part in parts {
        if at >= part.len() {
            at -= part.len();
            continue;
        }
        let take = (part.len() - at).min(N - filled);
        out[filled..filled + take].copy_from_slice(&part[at..at + take]);
        filled += take;
        at = 0;
        if filled == N {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base: i64, records: i32, len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; len];
        bytes[0..8].copy_from_slice(&base.to_be_bytes());
        bytes[8..12].copy_from_slice(&((len - 12) as i32).to_be_bytes());
        bytes[23..27].copy_from_slice(&(records - 1).to_be_bytes());
        bytes
    }

    #[test]
    fn the_offset_after_batches_split_across_chunks_is_found() {
        let mut all = batch(10, 5, 100);
        all.extend(batch(15, 3, 80));
        let parts: Vec<Bytes> = all.chunks(17).map(Bytes::copy_from_slice).collect();
        assert_eq!(next_offset(&parts), Ok(18));
        assert!(next_offset(&parts[..5]).is_err(), "a cut batch is refused");
        assert!(next_offset(&[]).is_err());
    }

    #[test]
    fn thebudget_is_given_back_and_never_exceeded() {
        let a = Budget::take(AHEAD_BUDGET_BYTES - 10).expect("fits");
        assert!(Budget::take(11).is_none());
        let b = Budget::take(10).expect("fits exactly");
        drop(a);
        drop(b);
        assert!(Budget::take(AHEAD_BUDGET_BYTES).is_some());
        assert_eq!(AHEAD_HELD.with(Cell::get), 0);
    }
}
