//! The flusher: one background task per log that writes unwritten batches with direct I/O
//! (up to two non-overlapping writes in flight), syncs per the fsync policy (group commit),
//! finishes sealed segments, and completes the appends waiting on it.

use super::*;

/// Marks the flusher as running if it is not; the caller must then call [`spawn_flusher`]
/// after releasing its borrow of the state (glommio may poll a new task at once).
#[must_use]
pub(super) fn claim_flusher(state: &mut State) -> bool {
    let claim = !state.flushing && state.status != Status::Truncating && state.offline.is_none();
    if claim {
        state.flushing = true;
    }
    claim
}

pub(super) fn spawn_flusher(shared: &Rc<Shared>) {
    io::spawn_detached(flusher(shared.clone()));
}

pub(super) async fn interval_syncer(shared: Weak<Shared>, every: Duration) {
    loop {
        io::sleep(every).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let spawn = {
            let mut state = shared.state.borrow_mut();
            if state.status == Status::Closed || state.offline.is_some() {
                return;
            }
            if state.durable_end < state.log_end {
                state.sync_requested = true;
            }
            state.sync_requested && claim_flusher(&mut state)
        };
        if spawn {
            spawn_flusher(&shared);
        }
    }
}

async fn flusher(shared: Rc<Shared>) {
    let result = flush_loop(&shared).await;
    let mut state = shared.state.borrow_mut();
    state.flushing = false;
    if let Err(error) = result {
        state.fail(&error);
    }
    state.complete_idle();
}

enum Work {
    Create {
        base: i64,
    },
    Write(PlannedWrite),
    Finalize {
        base: i64,
        next_offset: i64,
        writer: Option<SegmentWriter>,
        offset_index: Vec<u8>,
        time_index: Vec<u8>,
    },
    Sync {
        submitter: Submitter,
        target: i64,
    },
}

/// A write whose buffer is filled and whose bookkeeping waits for its completion.
struct PlannedWrite {
    base: i64,
    prepared: PreparedWrite,
    submitter: Submitter,
}

/// Picks the unwritten batches of the oldest unfinished segment (about one chunk) and
/// prepares their write. `None` when there is nothing to write there or no file yet.
fn plan_write(state: &mut State, config: &LogConfig) -> Option<PlannedWrite> {
    let written_end = state.written_end;
    let segment = state.segments.values().find(|s| !s.finalized)?;
    let writer = segment.writer.as_ref()?;
    let (base, handed, carry) = (segment.base_offset, writer.len(), writer.carry_len());
    let first = state.tail.partition_point(|c| c.next_offset <= written_end);
    let mut batches = Vec::new();
    let mut batches_bytes = 0u64;
    let mut more_follow = false;
    for cached in state.tail.range(first..) {
        if cached.segment_base != base {
            break;
        }
        if cached.position < handed {
            // Already handed to a write in flight.
            continue;
        }
        if carry + batches_bytes >= config.write_chunk_bytes {
            more_follow = true;
            break;
        }
        batches_bytes += cached.bytes.len() as u64;
        batches.push(cached.bytes.clone());
    }
    let writer = state.segments.get_mut(&base)?.writer.as_mut()?;
    if batches.is_empty() && !writer.has_unwritten() {
        return None;
    }
    // A full chunk with more behind it is written as whole pages ending on a chunk-sized
    // step, like a plain sequential writer; the last write of a burst pads its last page.
    let prepared = writer.prepare(
        &batches,
        more_follow,
        config.write_chunk_bytes,
        config.preallocate_bytes_max.min(config.segment_bytes),
    );
    let submitter = writer.submitter();
    // Bytes handed over no longer count against the unwritten bound, so appenders refill
    // the buffer while this write is on its way to the disk.
    state.unwritten_bytes -= batches_bytes;
    state.complete_waiters(config.unwritten_bytes_max);
    Some(PlannedWrite {
        base,
        prepared,
        submitter,
    })
}

fn plan_other(state: &mut State, config: &LogConfig) -> Option<Work> {
    let written_end = state.written_end;
    let segment = state
        .segments
        .values_mut()
        .find(|s| !s.finalized)
        .expect("the active segment is never finalized");
    let base = segment.base_offset;
    let has_unwritten = state
        .tail
        .iter()
        .rev()
        .take_while(|c| c.next_offset > written_end)
        .any(|c| c.segment_base == base);
    let segment = state.segments.get_mut(&base).expect("found above");
    if has_unwritten && segment.writer.is_none() {
        return Some(Work::Create { base });
    }
    assert!(
        !has_unwritten,
        "unwritten batches are planned as writes first"
    );
    if segment.sealed {
        return Some(Work::Finalize {
            base,
            next_offset: segment.next_offset,
            writer: segment.writer.take(),
            offset_index: segment.offset_index.to_bytes(),
            time_index: segment.time_index.to_bytes(),
        });
    }
    let interval_due =
        matches!(config.fsync, FsyncPolicy::Interval(every) if state.last_sync.elapsed() >= every);
    let durable_wanted = state
        .waiters
        .iter()
        .any(|w| matches!(w.wait_for, WaitFor::Durable(n) if n > state.durable_end));
    if state.written_end > state.durable_end
        && (state.sync_requested || durable_wanted || interval_due)
    {
        let segment = state.segments.get(&base).expect("found above");
        let submitter = segment
            .writer
            .as_ref()
            .expect("written bytes imply an open writer")
            .submitter();
        return Some(Work::Sync {
            submitter,
            target: state.written_end,
        });
    }
    None
}

/// Direct-I/O writes of one log in flight at once.
const WRITES_IN_FLIGHT: usize = 2;

async fn flush_loop(shared: &Rc<Shared>) -> Result<()> {
    let config = &shared.config;
    let mut ahead: Option<PlannedWrite> = None;
    loop {
        let work = match ahead.take() {
            Some(planned) => Work::Write(planned),
            None => {
                let mut guard = shared.state.borrow_mut();
                let state = &mut *guard;
                match plan_write(state, config) {
                    Some(planned) => Work::Write(planned),
                    None => match plan_other(state, config) {
                        Some(work) => work,
                        None => {
                            state.sync_requested = false;
                            state.complete_waiters(config.unwritten_bytes_max);
                            return Ok(());
                        }
                    },
                }
            }
        };
        match work {
            Work::Create { base } => {
                let writer = SegmentWriter::create(&log_path(&shared.dir, base)).await?;
                io::sync_dir(&shared.dir).await?;
                let mut state = shared.state.borrow_mut();
                let segment = state
                    .segments
                    .get_mut(&base)
                    .expect("segments being written are not deleted");
                segment.file_exists = true;
                segment.writer = Some(writer);
            }
            Work::Write(first) => {
                // Up to WRITES_IN_FLIGHT writes run at once, as long as they cover disjoint
                // pages (a padded last page is rewritten by the next write, which must then
                // wait). Completions are applied in submission order.
                let mut window: VecDeque<InFlight> = VecDeque::new();
                let mut next = Some(first);
                loop {
                    if let Some(planned) = next.take() {
                        let PlannedWrite {
                            base,
                            prepared,
                            submitter,
                        } = planned;
                        let (end_len, end_aligned) = (prepared.end_len(), prepared.end_aligned());
                        let task = io::spawn(submitter.submit(prepared));
                        window.push_back(InFlight {
                            base,
                            end_len,
                            end_aligned,
                            started: Instant::now(),
                            task,
                        });
                        // Hand the write to the kernel now, then fill the next buffer while
                        // the device works: the copy overlaps the I/O instead of following it.
                        io::yield_to_reactor().await;
                    }
                    if ahead.is_none() {
                        let (base, end_aligned) = window
                            .back()
                            .map(|w| (w.base, w.end_aligned))
                            .expect("a write is in flight");
                        if let Some(planned) = plan_write(&mut shared.state.borrow_mut(), config)
                            .filter(|p| p.base == base)
                        {
                            if window.len() < WRITES_IN_FLIGHT
                                && planned.prepared.position() >= end_aligned
                            {
                                next = Some(planned);
                                continue;
                            }
                            ahead = Some(planned);
                        }
                    }
                    let Some(InFlight {
                        base,
                        end_len,
                        started,
                        task,
                        ..
                    }) = window.pop_front()
                    else {
                        break;
                    };
                    task.await?;
                    complete_write(shared, base, end_len, started);
                    if window.is_empty() {
                        break;
                    }
                }
            }
            Work::Finalize {
                base,
                next_offset,
                writer,
                offset_index,
                time_index,
            } => {
                if let Some(writer) = writer {
                    let started = Instant::now();
                    writer.submitter().sync().await?;
                    record_fsync(shared, started);
                    io::write_small_file(&index_path(&shared.dir, base), &offset_index).await?;
                    io::write_small_file(&time_index_path(&shared.dir, base), &time_index).await?;
                    writer.finish().await?;
                }
                let mut guard = shared.state.borrow_mut();
                let state = &mut *guard;
                let segment = state
                    .segments
                    .get_mut(&base)
                    .expect("sealed segments are not deleted before finalizing");
                segment.finalized = true;
                state.durable_end = state.durable_end.max(next_offset);
                state.update_high_watermark(config.fsync);
                state.evict(shared.tail_cap());
                state.complete_waiters(config.unwritten_bytes_max);
            }
            Work::Sync { submitter, target } => {
                let started = Instant::now();
                submitter.sync().await?;
                record_fsync(shared, started);
                let mut guard = shared.state.borrow_mut();
                let state = &mut *guard;
                state.durable_end = state.durable_end.max(target);
                state.last_sync = Instant::now();
                // An append during the sync asked for another (under `always`): that request
                // stands until a sync covers it, or its batch would be written, never synced
                // and never visible (an acks=1 producer waiting only for the write met it).
                if state.log_end <= target {
                    state.sync_requested = false;
                }
                state.update_high_watermark(config.fsync);
                state.evict(shared.tail_cap());
                state.complete_waiters(config.unwritten_bytes_max);
            }
        }
    }
}

/// Applies a completed write: the segment's bytes on disk, and every batch now wholly on
/// disk counts as written.
fn complete_write(shared: &Shared, base: i64, end_len: u64, started: Instant) {
    let config = &shared.config;
    let write_us = started.elapsed().as_micros() as u64;
    let mut guard = shared.state.borrow_mut();
    let state = &mut *guard;
    state.stats.writes += 1;
    state.stats.write_us_total += write_us;
    let segment = state
        .segments
        .get_mut(&base)
        .expect("segments being written are not deleted");
    assert!(end_len >= segment.written_size, "writes complete in order");
    state.stats.bytes_written += end_len - segment.written_size;
    segment.written_size = end_len;
    assert!(
        segment.written_size <= segment.size,
        "written beyond appended"
    );
    let first = state
        .tail
        .partition_point(|c| c.next_offset <= state.written_end);
    for cached in state.tail.range(first..) {
        if cached.segment_base != base || cached.position + cached.bytes.len() as u64 > end_len {
            break;
        }
        state.written_end = cached.next_offset;
    }
    if config.fsync != FsyncPolicy::Always {
        state.evict(shared.tail_cap());
    }
    state.complete_waiters(config.unwritten_bytes_max);
}

fn record_fsync(shared: &Shared, started: Instant) {
    let us = started.elapsed().as_micros() as u64;
    let mut state = shared.state.borrow_mut();
    state.stats.fsyncs += 1;
    state.stats.fsync_us_total += us;
    state.stats.fsync_us_max = state.stats.fsync_us_max.max(us);
}
