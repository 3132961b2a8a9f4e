//! Reads: whole batches from the tail cache or as file ranges, and lookups by timestamp.

use super::*;

/// One try at a read.
enum Attempt {
    Read(ReadResult),
    /// The segment's data file was swapped by the cleaner meanwhile.
    Swapped,
    /// Read from this offset (the next segment's first) instead.
    Next(i64),
}

impl Log {
    /// Reads whole batches starting with the one holding `offset`, up to `max_bytes` (at
    /// least one batch, as Kafka does), never past the high watermark and never across a
    /// segment boundary. Recent batches come from memory; older ones from the
    /// segment file (`cold.rs`).
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] outside `[log_start, log_end]`; I/O errors.
    pub async fn read(&self, offset: i64, max_bytes: u64) -> Result<ReadResult> {
        self.read_below(offset, max_bytes, false).await
    }

    /// As [`Log::read`], bounded by the high watermark or (`to_log_end`, a follower
    /// replicating) by the log end.
    pub(super) async fn read_below(
        &self,
        mut offset: i64,
        max_bytes: u64,
        to_log_end: bool,
    ) -> Result<ReadResult> {
        loop {
            match self.read_attempt(offset, max_bytes, to_log_end).await? {
                Attempt::Read(result) => return Ok(result),
                // The cleaner swapped the segment in while this read opened it: again.
                Attempt::Swapped => continue,
                // Nothing at or after `offset` in its segment (the cleaner removed the
                // records at its end): the next segment has the next records.
                Attempt::Next(next) => offset = next,
            }
        }
    }

    async fn read_attempt(&self, offset: i64, max_bytes: u64, to_log_end: bool) -> Result<Attempt> {
        let plan =
            {
                let mut guard = self.shared.state.borrow_mut();
                let state = &mut *guard;
                if offset < state.log_start || offset > state.log_end {
                    return Err(Error::OffsetOutOfRange {
                        offset,
                        log_start: state.log_start,
                        log_end: state.log_end,
                    });
                }
                let result = |data| ReadResult {
                    data,
                    high_watermark: state.high_watermark,
                    log_start_offset: state.log_start,
                    log_end_offset: state.log_end,
                };
                let bound = if to_log_end {
                    state.log_end
                } else {
                    state.high_watermark
                };
                if offset >= bound {
                    return Ok(Attempt::Read(result(ReadData::Empty)));
                }
                if state
                    .tail
                    .front()
                    .is_some_and(|front| front.base_offset <= offset)
                {
                    let first = state.tail.partition_point(|c| c.next_offset <= offset);
                    let mut chunks = Vec::new();
                    let mut total = 0u64;
                    for cached in state.tail.range(first..) {
                        let len = cached.bytes.len() as u64;
                        let fits = chunks.is_empty() || total + len <= max_bytes;
                        if cached.base_offset >= bound
                            || cached.segment_base != state.tail[first].segment_base
                            || !fits
                        {
                            break;
                        }
                        total += len;
                        chunks.push(cached.bytes.clone());
                    }
                    assert!(!chunks.is_empty(), "offset below the bound is in the cache");
                    let answer = result(ReadData::Memory(chunks));
                    state.stats.reads_memory += 1;
                    return Ok(Attempt::Read(answer));
                }
                let tail_front = state.tail.front().map(|c| (c.segment_base, c.position));
                let (_, segment) = state.segments.range_mut(..=offset).next_back().ok_or(
                    Error::OffsetOutOfRange {
                        offset,
                        log_start: state.log_start,
                        log_end: state.log_end,
                    },
                )?;
                let cap = match tail_front {
                    Some((base, position)) if base == segment.base_offset => position,
                    _ => segment.written_size,
                };
                let path = log_path(&self.shared.dir, segment.base_offset);
                let key = (segment.base_offset, segment.generation);
                let resume = state.ahead.resume_at(key, offset);
                let scan_from = segment
                    .offset_index
                    .lookup(offset)
                    .map_or(0, |e| e.position);
                let reader = segment
                    .reader
                    .clone()
                    .or_else(|| segment.writer.as_ref().map(|w| w.file()));
                let header = (state.high_watermark, state.log_start, state.log_end);
                let generation = segment.generation;
                state.stats.reads_file += 1;
                (
                    path,
                    (segment.base_offset, generation),
                    reader,
                    resume,
                    scan_from,
                    cap,
                    header,
                )
            };
        let (
            path,
            (segment_base, generation),
            reader,
            resume,
            scan_from,
            cap,
            (high_watermark, log_start, log_end),
        ) = plan;
        let reader = match reader {
            Some(reader) => reader,
            None => {
                let reader = Rc::new(io::open_read(&path).await?);
                if let Some(segment) = self
                    .shared
                    .state
                    .borrow_mut()
                    .segments
                    .get_mut(&segment_base)
                {
                    segment.reader.get_or_insert_with(|| reader.clone());
                }
                reader
            }
        };
        let found = match resume {
            // Where the last cold read ended: the batch holding `offset` starts there
            // (unless the segment's batches end there: its records were cleaned away).
            Some(start) if start < cap => Some((start, 0)),
            Some(_) => None,
            None => find_batch(&reader, &path, scan_from, cap, |_, last, _| last >= offset).await?,
        };
        let (start, first_len, boundary) = {
            let state = self.shared.state.borrow();
            if state.segments.get(&segment_base).map(|s| s.generation) != Some(generation) {
                return Ok(Attempt::Swapped);
            }
            let Some((start, first_len)) = found else {
                let bound = if to_log_end { log_end } else { high_watermark };
                let next = state
                    .segments
                    .range(segment_base + 1..)
                    .next()
                    .map(|(b, _)| *b);
                if let Some(next) = next.filter(|next| *next > offset && *next < bound) {
                    return Ok(Attempt::Next(next));
                }
                return Ok(Attempt::Read(ReadResult {
                    data: ReadData::Empty,
                    high_watermark,
                    log_start_offset: log_start,
                    log_end_offset: log_end,
                }));
            };
            // Index entries are batch starts, so any entry within the budget ends a run of
            // whole batches; with none (or the segment deleted meanwhile), the first batch
            // alone is returned.
            let limit = start.saturating_add(max_bytes);
            let boundary = state
                .segments
                .get(&segment_base)
                .and_then(|segment| segment.offset_index.boundary_at_or_before(start, limit))
                .filter(|end| *end > start);
            (start, first_len, boundary)
        };
        let limit = start.saturating_add(max_bytes);
        let end = match boundary {
            _ if cap <= limit => cap,
            Some(end) => end,
            None if first_len > 0 => start + first_len,
            None => start + batch_len(&reader, &path, start).await?,
        };
        assert!(
            end > start && end <= cap,
            "a cold read must hold whole written batches"
        );
        let range = cold::ColdRange {
            key: (segment_base, generation),
            file: &reader,
            path: &path,
            start,
            end,
            cap,
        };
        let chunks = self.read_cold(range).await?;
        Ok(Attempt::Read(ReadResult {
            data: ReadData::Disk(chunks),
            high_watermark,
            log_start_offset: log_start,
            log_end_offset: log_end,
        }))
    }

    /// The largest record timestamp below the high watermark (`None` for an empty log):
    /// with [`Log::offset_for_timestamp`], Kafka's ListOffsets "max timestamp".
    pub fn max_timestamp(&self) -> Option<i64> {
        let state = self.shared.state.borrow();
        state
            .segments
            .values()
            .filter(|s| s.base_offset < state.high_watermark && s.max_timestamp >= 0)
            .map(|s| s.max_timestamp)
            .max()
    }

    /// The first offset whose record timestamp is at or after `timestamp` (Kafka's
    /// ListOffsets by time), with that record's timestamp; `None` when no record is that new.
    ///
    /// # Errors
    /// I/O errors, or [`Error::Corrupt`] if a batch read back does not decode.
    pub async fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>> {
        let candidates: Vec<(i64, i64, u64, u64)> = {
            let state = self.shared.state.borrow();
            let tail_front = state.tail.front().map(|c| (c.segment_base, c.position));
            state
                .segments
                .values()
                .filter(|s| s.max_timestamp >= timestamp && s.base_offset < state.high_watermark)
                .map(|s| {
                    let after = s
                        .time_index
                        .lookup_before(timestamp)
                        .map_or(s.base_offset, |e| e.last_offset + 1);
                    let scan_from = s.offset_index.lookup(after).map_or(0, |e| e.position);
                    let cap = match tail_front {
                        Some((base, position)) if base == s.base_offset => position,
                        _ => s.written_size,
                    };
                    (s.base_offset, after, scan_from, cap)
                })
                .collect()
        };
        for (segment_base, after, scan_from, cap) in candidates {
            let path = log_path(&self.shared.dir, segment_base);
            if scan_from < cap {
                let reader = io::open_read(&path).await?;
                let found = find_batch(&reader, &path, scan_from, cap, |_, last, max_ts| {
                    last >= after && max_ts >= timestamp
                })
                .await?;
                if let Some((position, total)) = found {
                    let batch = io::read_exact(&reader, &path, position, total as usize).await?;
                    reader
                        .close()
                        .await
                        .map_err(io::error(format!("closing {}", path.display())))?;
                    return first_at_or_after(&batch, timestamp, &path, position).map(Some);
                }
                reader
                    .close()
                    .await
                    .map_err(io::error(format!("closing {}", path.display())))?;
            }
            let cached: Vec<(Bytes, u64)> = {
                let state = self.shared.state.borrow();
                state
                    .tail
                    .iter()
                    .filter(|c| {
                        c.segment_base == segment_base
                            && c.max_timestamp >= timestamp
                            && c.base_offset < state.high_watermark
                    })
                    .map(|c| (c.bytes.clone(), c.position))
                    .collect()
            };
            if let Some((bytes, position)) = cached.first() {
                return first_at_or_after(bytes, timestamp, &path, *position).map(Some);
            }
        }
        Ok(None)
    }
}

/// Scans batch headers from `from` (a batch start) up to `cap` and returns the position and
/// length of the first batch for which `wanted(base, last, max_timestamp)` holds.
pub(super) async fn find_batch(
    file: &File,
    path: &Path,
    from: u64,
    cap: u64,
    wanted: impl Fn(i64, i64, i64) -> bool,
) -> Result<Option<(u64, u64)>> {
    const HEADER_PART: usize = 43;
    let mut position = from;
    while position < cap {
        let header = io::read_exact(file, path, position, HEADER_PART).await?;
        let corrupt = |reason: String| Error::Corrupt {
            path: path.to_owned(),
            position,
            reason,
        };
        let total = match peek_batch_len(&header) {
            Ok(Some(total)) => total as u64,
            Ok(None) => unreachable!("header has 43 bytes"),
            Err(e) => return Err(corrupt(e.to_string())),
        };
        let base = i64::from_be_bytes(header[0..8].try_into().expect("8 bytes"));
        let delta = i32::from_be_bytes(header[23..27].try_into().expect("4 bytes"));
        let max_timestamp = i64::from_be_bytes(header[35..43].try_into().expect("8 bytes"));
        if wanted(base, base.saturating_add(i64::from(delta)), max_timestamp) {
            return Ok(Some((position, total)));
        }
        position += total;
    }
    Ok(None)
}

fn first_at_or_after(
    batch: &[u8],
    timestamp: i64,
    path: &Path,
    position: u64,
) -> Result<(i64, i64)> {
    let corrupt = |reason: String| Error::Corrupt {
        path: path.to_owned(),
        position,
        reason,
    };
    let view = BatchView::new_verified(batch).map_err(|e| corrupt(e.to_string()))?;
    let records = view.records().map_err(|e| corrupt(e.to_string()))?;
    records
        .iter()
        .find(|r| r.timestamp >= timestamp)
        .map(|r| (r.offset, r.timestamp))
        .ok_or_else(|| {
            corrupt(format!(
                "max timestamp {} but no record reaches {timestamp}",
                view.max_timestamp()
            ))
        })
}

/// The whole length of the batch at `position`.
async fn batch_len(file: &File, path: &Path, position: u64) -> Result<u64> {
    let header = io::read_exact(file, path, position, 12).await?;
    match peek_batch_len(&header) {
        Ok(Some(total)) => Ok(total as u64),
        Ok(None) => unreachable!("header has 12 bytes"),
        Err(e) => Err(Error::Corrupt {
            path: path.to_owned(),
            position,
            reason: e.to_string(),
        }),
    }
}
