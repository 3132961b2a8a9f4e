//! Recovery on open: find every segment, check what a crash may have torn, rebuild
//! missing indexes, and refuse (or cut at) corruption, per the log's configuration.

use super::*;

/// Recovers every segment found on disk, oldest first.
pub(super) async fn recover(
    dir: &Path,
    config: &LogConfig,
    bases: &[i64],
    now_ms: i64,
) -> Result<BTreeMap<i64, Segment>> {
    let mut segments = BTreeMap::new();
    let mut index = 0;
    while index < bases.len() {
        let base = bases[index];
        let is_last = index + 1 == bases.len();
        let recovered = if is_last {
            recover_last(dir, config, base, now_ms).await
        } else {
            recover_closed(dir, config, base).await
        };
        let segment = match recovered {
            Ok(segment) => segment,
            Err(Error::Corrupt {
                path,
                position,
                reason,
            }) if config.on_corruption == OnCorruption::Truncate => {
                tracing::warn!(path = %path.display(), position, %reason, "corrupt segment: truncating the log here as configured");
                SegmentWriter::open_at(&path, position)
                    .await?
                    .finish()
                    .await?;
                for later in &bases[index + 1..] {
                    io::remove_file(&log_path(dir, *later)).await?;
                    io::remove_file(&index_path(dir, *later)).await?;
                    io::remove_file(&time_index_path(dir, *later)).await?;
                }
                io::remove_file(&index_path(dir, base)).await?;
                io::remove_file(&time_index_path(dir, base)).await?;
                io::sync_dir(dir).await?;
                let segment = recover_last(dir, config, base, now_ms).await?;
                index = bases.len();
                check_continuity(&segments, &segment, dir)?;
                segments.insert(base, segment);
                continue;
            }
            Err(error) => return Err(error),
        };
        check_continuity(&segments, &segment, dir)?;
        segments.insert(base, segment);
        index += 1;
    }
    Ok(segments)
}

fn check_continuity(
    segments: &BTreeMap<i64, Segment>,
    segment: &Segment,
    dir: &Path,
) -> Result<()> {
    if let Some(previous) = segments.values().next_back() {
        if segment.base_offset < previous.next_offset {
            return Err(Error::Corrupt {
                path: log_path(dir, segment.base_offset),
                position: 0,
                reason: format!(
                    "segment starts at {} but the previous one ends at {}",
                    segment.base_offset, previous.next_offset
                ),
            });
        }
    }
    Ok(())
}

async fn batch_is_valid_at(file: &File, path: &Path, position: u64, file_len: u64) -> Result<bool> {
    if position + LOG_OVERHEAD as u64 > file_len {
        return Ok(false);
    }
    let header = io::read_exact(file, path, position, LOG_OVERHEAD).await?;
    let Ok(Some(total)) = peek_batch_len(&header) else {
        return Ok(false);
    };
    if position + total as u64 > file_len {
        return Ok(false);
    }
    let batch = io::read_exact(file, path, position, total).await?;
    Ok(BatchView::new_verified(&batch).is_ok())
}

/// The last segment: every batch CRC-checked; a torn tail is cut off, corruption followed by
/// valid batches is an error (or cut off when configured).
async fn recover_last(dir: &Path, config: &LogConfig, base: i64, now_ms: i64) -> Result<Segment> {
    let path = log_path(dir, base);
    let file = io::open_read(&path).await?;
    let file_len = io::file_size(&file, &path).await?;
    let mut scanner = Scanner::from_start(base, config.index_interval_bytes, true);
    let stop = io::scan(&file, &path, file_len, &mut scanner).await?;
    let valid = scanner.position();
    if let Stop::Invalid {
        reason,
        next_batch_at,
    } = &stop
    {
        let corrupt_middle = match next_batch_at {
            Some(at) => batch_is_valid_at(&file, &path, *at, file_len).await?,
            None => false,
        };
        if corrupt_middle && config.on_corruption == OnCorruption::Fail {
            return Err(Error::Corrupt {
                path,
                position: valid,
                reason: format!("{reason} (valid batches follow)"),
            });
        }
        tracing::warn!(path = %path.display(), position = valid, %reason, dropped_bytes = file_len - valid, "truncating torn tail");
    }
    let writer = SegmentWriter::open_at(&path, valid).await?;
    let next_offset = scanner
        .next_offset()
        .expect("a scan from the start knows its offsets");
    let max_timestamp = scanner.max_timestamp();
    let (offset_index, time_index) = scanner.into_indexes();
    let mut segment = Segment::new(base, config.index_interval_bytes);
    segment.next_offset = next_offset;
    segment.size = valid;
    segment.written_size = valid;
    segment.max_timestamp = max_timestamp;
    segment.created_ms = (valid > 0).then_some(now_ms);
    segment.offset_index = offset_index;
    segment.time_index = time_index;
    segment.writer = Some(writer);
    segment.file_exists = true;
    // The writer's descriptor serves reads of the active segment: one descriptor per
    // partition, not two.
    file.close()
        .await
        .map_err(io::error(format!("closing {}", path.display())))?;
    Ok(segment)
}

/// An older segment: trusted up to its last index entry (unless `verify = All`), checked
/// from there to its end; a missing or bad index is rebuilt by a full scan.
async fn recover_closed(dir: &Path, config: &LogConfig, base: i64) -> Result<Segment> {
    let path = log_path(dir, base);
    let file = io::open_read(&path).await?;
    let file_len = io::file_size(&file, &path).await?;
    let loaded = if config.verify == Verify::All {
        None
    } else {
        load_indexes(dir, base, file_len).await?
    };
    let rebuilt = loaded.is_none();
    let mut scanner = match loaded {
        Some((offset_index, time_index)) => {
            let position = offset_index
                .last()
                .expect("loaded indexes are non-empty")
                .position;
            let max_timestamp = time_index.last().map_or(-1, |e| e.timestamp);
            Scanner::resume(
                offset_index,
                time_index,
                position,
                config.index_interval_bytes,
                max_timestamp,
            )
        }
        None => Scanner::from_start(base, config.index_interval_bytes, true),
    };
    let stop = io::scan(&file, &path, file_len, &mut scanner).await?;
    file.close()
        .await
        .map_err(io::error(format!("closing {}", path.display())))?;
    let valid = scanner.position();
    if let Stop::Invalid { reason, .. } = stop {
        return Err(Error::Corrupt {
            path,
            position: valid,
            reason,
        });
    }
    if valid < file_len {
        tracing::info!(path = %path.display(), valid, file_len, "trimming zero padding of a sealed segment");
        SegmentWriter::open_at(&path, valid).await?.finish().await?;
    }
    let next_offset = scanner.next_offset().unwrap_or(base);
    let max_timestamp = scanner.max_timestamp();
    let (offset_index, time_index) = scanner.into_indexes();
    if rebuilt {
        tracing::info!(path = %path.display(), "rebuilt index of a sealed segment");
        io::write_small_file(&index_path(dir, base), &offset_index.to_bytes()).await?;
        io::write_small_file(&time_index_path(dir, base), &time_index.to_bytes()).await?;
    }
    let mut segment = Segment::new(base, config.index_interval_bytes);
    segment.next_offset = next_offset;
    segment.size = valid;
    segment.written_size = valid;
    segment.max_timestamp = max_timestamp;
    segment.offset_index = offset_index;
    segment.time_index = time_index;
    segment.sealed = true;
    segment.finalized = true;
    segment.file_exists = true;
    Ok(segment)
}

async fn load_indexes(
    dir: &Path,
    base: i64,
    file_len: u64,
) -> Result<Option<(OffsetIndex, TimeIndex)>> {
    let Some(bytes) = io::read_small_file(&index_path(dir, base)).await? else {
        return Ok(None);
    };
    let offset_index = match OffsetIndex::from_bytes(base, &bytes, file_len) {
        Ok(index) if !index.is_empty() => index,
        Ok(_) => return Ok(None),
        Err(reason) => {
            tracing::warn!(base, %reason, "offset index is invalid, rebuilding");
            return Ok(None);
        }
    };
    let Some(bytes) = io::read_small_file(&time_index_path(dir, base)).await? else {
        return Ok(None);
    };
    match TimeIndex::from_bytes(base, &bytes, i64::MAX) {
        Ok(time_index) => Ok(Some((offset_index, time_index))),
        Err(reason) => {
            tracing::warn!(base, %reason, "time index is invalid, rebuilding");
            Ok(None)
        }
    }
}
