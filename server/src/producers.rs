//! Idempotent-producer state of a partition: which sequence each producer sends next, and
//! where its latest batches were stored, so a retry is answered with the original offset
//! instead of being stored twice (as Kafka does).
//!
//! A batch is *reserved* when its sequence is checked, *committed* with the offset the log
//! gave it once the append succeeded, or *aborted* when the append failed, which makes the
//! same sequence acceptable again: nothing is acknowledged that was not stored. A retry of
//! a batch whose append is still under way is answered with a retriable error; the next
//! retry finds it committed (answered with its offset) or aborted (appended then).

use keel_protocol::api::ErrorCode;
use keel_protocol::batch::BatchView;
use std::collections::{HashMap, VecDeque};

/// Batches remembered per producer to recognise retries, as Kafka does.
pub const RECENT_BATCHES: usize = 5;

/// Bytes at the end of a partition's log read when it is opened, to rebuild its producers'
/// recent batches: a retry of a batch stored before a restart (or a crash) that lost its
/// acknowledgement is recognised when the batch is among them.
pub const RESTORE_SCAN_BYTES: u64 = 1 << 20;

/// A stored batch of an idempotent producer: (producer id, epoch, base sequence, record
/// count, base offset).
pub type StoredBatch = (i64, i16, i32, i32, i64);

/// The producer fields of a stored batch, if it has a producer.
pub fn stored_batch(view: &BatchView<'_>) -> Option<StoredBatch> {
    (view.producer_id() >= 0).then(|| {
        (
            view.producer_id(),
            view.producer_epoch(),
            view.base_sequence(),
            view.records_count(),
            view.base_offset(),
        )
    })
}

/// The producers' batches among whole batches back to back (a batch that does not parse
/// ends the walk).
pub fn stored_batches(mut records: &[u8]) -> Vec<StoredBatch> {
    let mut stored = Vec::new();
    while let Ok(view) = BatchView::new(records) {
        stored.extend(stored_batch(&view));
        records = &records[view.len()..];
    }
    stored
}

/// The outcome of checking an idempotent batch's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// The next batch: it is reserved; append it, then [`ProducerStates::commit`] or
    /// [`ProducerStates::abort`].
    Append,
    /// Already stored at this base offset (a retry): do not append again.
    Duplicate(i64),
}

/// Where a remembered batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    /// Reserved; its append has not completed.
    Pending,
    /// Stored at this base offset.
    At(i64),
}

#[derive(Debug)]
struct ProducerState {
    epoch: i16,
    next_sequence: i32,
    /// (base sequence, record count, where) of the latest batches.
    recent: VecDeque<(i32, i32, Stored)>,
    last_used: u64,
}

/// Idempotent-producer state of one partition (in memory, rebuilt from the last
/// [`RESTORE_SCAN_BYTES`] of the log when it is opened), holding at most `producers_max` producers: the least recently used
/// is forgotten first (its next batch then starts it afresh, as after Kafka's
/// `producer.id.expiration.ms`).
#[derive(Debug)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerState>,
    producers_max: usize,
    clock: u64,
}

impl Default for ProducerStates {
    fn default() -> Self {
        ProducerStates::new(PRODUCERS_PER_PARTITION_MAX)
    }
}

/// Default bound on producers remembered per partition.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 1_000;

impl ProducerStates {
    /// State remembering at most `producers_max` producers (at least one).
    pub fn new(producers_max: usize) -> ProducerStates {
        ProducerStates {
            producers: HashMap::new(),
            producers_max: producers_max.max(1),
            clock: 0,
        }
    }

    /// Producers remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Checks a batch of `count` records from `producer_id`; reserves it when it is next.
    ///
    /// # Errors
    /// `InvalidProducerEpoch` for a fenced epoch, `OutOfOrderSequence` for a gap,
    /// `RequestTimedOut` (retriable) for a retry of a batch still being appended.
    pub fn check(
        &mut self,
        producer_id: i64,
        epoch: i16,
        base_sequence: i32,
        count: i32,
    ) -> Result<SequenceCheck, ErrorCode> {
        self.clock += 1;
        if !self.producers.contains_key(&producer_id) && self.producers.len() >= self.producers_max
        {
            self.evict_least_recent();
        }
        let clock = self.clock;
        let state = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerState {
                epoch,
                next_sequence: base_sequence,
                recent: VecDeque::new(),
                last_used: clock,
            });
        state.last_used = clock;
        if epoch < state.epoch {
            return Err(ErrorCode::InvalidProducerEpoch);
        }
        if epoch > state.epoch {
            if state.recent.iter().any(|(_, _, s)| *s == Stored::Pending) {
                // The old epoch's appends are still under way: the new one waits.
                return Err(ErrorCode::RequestTimedOut);
            }
            *state = ProducerState {
                epoch,
                next_sequence: base_sequence,
                recent: VecDeque::new(),
                last_used: clock,
            };
        }
        if base_sequence != state.next_sequence {
            // A retry is the same batch: same first sequence and record count (Kafka compares
            // first and last sequence). The sequence alone took another producer's batch
            // under the same id for a duplicate, acknowledged and never stored.
            let same = |(s, c, _): &&(i32, i32, Stored)| *s == base_sequence && *c == count;
            return match state.recent.iter().find(same) {
                Some((_, _, Stored::At(offset))) => Ok(SequenceCheck::Duplicate(*offset)),
                Some((_, _, Stored::Pending)) => Err(ErrorCode::RequestTimedOut),
                None => Err(ErrorCode::OutOfOrderSequence),
            };
        }
        state.next_sequence = base_sequence.wrapping_add(count);
        state
            .recent
            .push_back((base_sequence, count, Stored::Pending));
        // Only stored batches are forgotten: a pending one must stay to be committed.
        while state.recent.len() > RECENT_BATCHES
            && matches!(state.recent.front(), Some((_, _, Stored::At(_))))
        {
            state.recent.pop_front();
        }
        Ok(SequenceCheck::Append)
    }

    /// The reserved batch was stored at `base_offset`.
    pub fn commit(&mut self, producer_id: i64, epoch: i16, base_sequence: i32, base_offset: i64) {
        if let Some(entry) = self.pending(producer_id, epoch, base_sequence) {
            entry.2 = Stored::At(base_offset);
        }
    }

    /// The reserved batch was not stored: its sequence (and every later one reserved after
    /// it, whose appends cannot have succeeded before it) is acceptable again.
    pub fn abort(&mut self, producer_id: i64, epoch: i16, base_sequence: i32) {
        let Some(state) = self.producers.get_mut(&producer_id) else {
            return;
        };
        if state.epoch != epoch {
            return;
        }
        if let Some(at) = state
            .recent
            .iter()
            .position(|(s, _, stored)| *s == base_sequence && *stored == Stored::Pending)
        {
            state.recent.truncate(at);
            state.next_sequence = base_sequence;
        }
    }

    /// The log was cut at `offset` (a follower's truncation on divergence): batches stored
    /// there or later are forgotten, so that a retry of one is stored again instead of
    /// answered as a duplicate of an offset that no longer holds it. A producer whose
    /// oldest remembered batch was cut is forgotten whole (what came before it is not
    /// known); its next batch starts it afresh, as after eviction.
    pub fn truncate(&mut self, offset: i64) {
        self.producers.retain(|_, state| {
            let cut = state
                .recent
                .iter()
                .position(|(_, _, stored)| matches!(stored, Stored::At(at) if *at >= offset));
            match cut {
                None => true,
                Some(0) => false,
                Some(at) => {
                    state.next_sequence = state.recent[at].0;
                    state.recent.truncate(at);
                    true
                }
            }
        });
    }

    fn pending(
        &mut self,
        producer_id: i64,
        epoch: i16,
        base_sequence: i32,
    ) -> Option<&mut (i32, i32, Stored)> {
        let state = self.producers.get_mut(&producer_id)?;
        if state.epoch != epoch {
            return None;
        }
        state
            .recent
            .iter_mut()
            .find(|(s, _, stored)| *s == base_sequence && *stored == Stored::Pending)
    }

    fn evict_least_recent(&mut self) {
        // Producers with a batch under way are kept; the bound applies to idle ones.
        let victim = self
            .producers
            .iter()
            .filter(|(_, s)| !s.recent.iter().any(|(_, _, st)| *st == Stored::Pending))
            .min_by_key(|(_, s)| s.last_used)
            .map(|(id, _)| *id);
        if let Some(id) = victim {
            self.producers.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(states: &mut ProducerStates, id: i64, seq: i32, count: i32, offset: i64) {
        assert_eq!(states.check(id, 0, seq, count), Ok(SequenceCheck::Append));
        states.commit(id, 0, seq, offset);
    }

    #[test]
    fn sequences_accept_the_next_batch_recognise_retries_and_refuse_gaps() {
        // Goal: exactly-once appends for retried batches of an idempotent producer.
        let mut states = ProducerStates::default();
        append(&mut states, 7, 0, 3, 100);
        append(&mut states, 7, 3, 2, 103);
        assert_eq!(
            states.check(7, 0, 3, 2),
            Ok(SequenceCheck::Duplicate(103)),
            "a retry of the last batch"
        );
        assert_eq!(states.check(7, 0, 0, 3), Ok(SequenceCheck::Duplicate(100)));
        assert_eq!(
            states.check(7, 0, 0, 2),
            Err(ErrorCode::OutOfOrderSequence),
            "same first sequence, another record count: not the stored batch"
        );
        assert_eq!(
            states.check(7, 0, 9, 1),
            Err(ErrorCode::OutOfOrderSequence),
            "records 5..9 missing"
        );
        assert_eq!(
            states.check(7, 1, 0, 1),
            Ok(SequenceCheck::Append),
            "a new epoch starts over"
        );
        states.commit(7, 1, 0, 105);
        assert_eq!(
            states.check(7, 0, 5, 1),
            Err(ErrorCode::InvalidProducerEpoch),
            "the old epoch is fenced"
        );
        append(&mut states, 8, 0, 1, 106);
    }

    #[test]
    fn a_truncation_forgets_the_batches_it_cut() {
        // Goal: after a follower's log is cut, a retry of a batch that was cut is stored
        // again, not answered as a duplicate of an offset that no longer holds it.
        let mut states = ProducerStates::default();
        append(&mut states, 7, 0, 3, 100);
        append(&mut states, 7, 3, 2, 103);
        append(&mut states, 8, 0, 1, 105);
        append(&mut states, 9, 0, 1, 99);
        states.truncate(103);
        assert_eq!(
            states.check(7, 0, 3, 2),
            Ok(SequenceCheck::Append),
            "the cut batch is next again"
        );
        states.commit(7, 0, 3, 103);
        assert_eq!(
            states.check(7, 0, 0, 3),
            Ok(SequenceCheck::Duplicate(100)),
            "a batch below the cut is still recognised"
        );
        assert_eq!(
            states.check(8, 0, 4, 1),
            Ok(SequenceCheck::Append),
            "a producer whose oldest known batch was cut starts afresh"
        );
        assert_eq!(
            states.check(9, 0, 0, 1),
            Ok(SequenceCheck::Duplicate(99)),
            "a producer with nothing cut is untouched"
        );
    }

    #[test]
    fn a_failed_append_leaves_the_sequence_retryable_and_is_never_acknowledged() {
        // Goal: the producer state moves only when the append succeeded. Before, a retry
        // of a batch whose append failed was answered as a duplicate of an offset that
        // held nothing: acknowledged, never stored.
        let mut states = ProducerStates::default();
        append(&mut states, 7, 0, 3, 0);
        assert_eq!(states.check(7, 0, 3, 2), Ok(SequenceCheck::Append));
        assert_eq!(
            states.check(7, 0, 3, 2),
            Err(ErrorCode::RequestTimedOut),
            "a retry while the append is under way waits (retriable)"
        );
        states.abort(7, 0, 3);
        assert_eq!(
            states.check(7, 0, 3, 2),
            Ok(SequenceCheck::Append),
            "after the failure the retry is appended"
        );
        states.commit(7, 0, 3, 3);
        assert_eq!(states.check(7, 0, 3, 2), Ok(SequenceCheck::Duplicate(3)));
        // Two reserved in one request; the first fails: both are retryable.
        assert_eq!(states.check(7, 0, 5, 1), Ok(SequenceCheck::Append));
        assert_eq!(states.check(7, 0, 6, 1), Ok(SequenceCheck::Append));
        states.abort(7, 0, 5);
        assert_eq!(states.check(7, 0, 6, 1), Err(ErrorCode::OutOfOrderSequence));
        assert_eq!(states.check(7, 0, 5, 1), Ok(SequenceCheck::Append));
    }

    #[test]
    fn producers_per_partition_are_bounded_least_recent_first() {
        // Goal: producer ids a peer makes up cannot grow the state without bound.
        let mut states = ProducerStates::new(3);
        for id in 0..10 {
            append(&mut states, id, 0, 1, id);
        }
        assert_eq!(states.len(), 3);
        assert_eq!(states.check(9, 0, 0, 1), Ok(SequenceCheck::Duplicate(9)));
        assert_eq!(
            states.check(0, 0, 5, 1),
            Ok(SequenceCheck::Append),
            "a forgotten producer starts afresh"
        );
    }
}
