//! Where one mirror partition stands, no I/O: the offset to fetch from the source next, which
//! fetched batches to append (byte for byte, at their own offsets, up to the source's high
//! watermark), and what the source's answers mean — the source topic re-created under the
//! same name, its retention past the mirror's end, its log shorter than the mirror's. Driven
//! by method calls with time (milliseconds) as an input; the task that fetches and appends
//! follows its answers.

/// A mirror partition's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Fetching and appending.
    Mirroring,
    /// Stopped by `keel link pause`; resumes from its own log end.
    Paused,
    /// Stopped for good, with why (the link's and topic's state say it).
    Failed(String),
    /// A writable topic now; the mirror ended at this offset.
    Promoted {
        /// The offset where mirroring stopped (the log end at promotion).
        at: i64,
    },
}

/// One batch of a source fetch: its first and last offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Base offset.
    pub base: i64,
    /// Last offset.
    pub last: i64,
}

/// What a source fetch answered for the partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The source topic's id.
    pub topic_id: [u8; 16],
    /// The source's high watermark (what a consumer may read).
    pub high_watermark: i64,
    /// The source's first offset.
    pub log_start: i64,
    /// The source said the offset asked is outside its log.
    pub out_of_range: bool,
    /// The batches, in order.
    pub batches: Vec<Span>,
}

/// What to do after a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing to append (caught up, or waiting).
    Wait,
    /// Append these batches of the fetch (their indexes) verbatim; offsets between
    /// batches may be missing (a compacted source).
    Append(std::ops::Range<usize>),
    /// The source no longer has the mirror's next offset (its retention passed it): the
    /// mirror's log restarts empty at this offset, as a follower's does.
    Restart(i64),
    /// Stop: the state is `Failed` now.
    Fail(String),
}

/// How long the source may show a log shorter than the mirror's before the mirror fails
/// (a source leader change can briefly report an older high watermark).
pub const BEHIND_GRACE_MS: u64 = 30_000;

/// One mirror partition.
#[derive(Debug, Clone)]
pub struct MirrorPartition {
    state: State,
    topic_id: [u8; 16],
    /// The mirror's log end: the next offset it appends.
    end: i64,
    source_high_watermark: i64,
    /// Since when the source has shown a log shorter than the mirror's.
    behind_since_ms: Option<u64>,
    /// When the mirror last had everything the source had.
    caught_up_ms: u64,
}

/// How far a mirror partition is behind its source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lag {
    /// Records (offsets) not mirrored yet.
    pub records: i64,
    /// Time since the mirror last had everything the source had (0 when it has).
    pub seconds: f64,
}

impl MirrorPartition {
    /// A mirror of the source topic `topic_id` whose own log ends at `end` (after a restart
    /// it resumes there: its log is its checkpoint).
    pub fn new(topic_id: [u8; 16], end: i64, now_ms: u64) -> MirrorPartition {
        MirrorPartition {
            state: State::Mirroring,
            topic_id,
            end,
            source_high_watermark: end,
            behind_since_ms: None,
            caught_up_ms: now_ms,
        }
    }

    /// Its state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The offset to fetch from, while mirroring.
    pub fn next_fetch(&self) -> Option<i64> {
        (self.state == State::Mirroring).then_some(self.end)
    }

    /// The source's answer to a fetch from [`MirrorPartition::next_fetch`].
    pub fn fetched(&mut self, answer: &Fetched, now_ms: u64) -> Step {
        if self.state != State::Mirroring {
            return Step::Wait;
        }
        if answer.topic_id != self.topic_id {
            return self.fail("the source topic was deleted and created again (its topic id changed): the mirror stops rather than mix two histories");
        }
        self.source_high_watermark = answer.high_watermark;
        if answer.out_of_range || answer.log_start > self.end {
            if answer.log_start > self.end {
                return Step::Restart(answer.log_start);
            }
            return self.behind(now_ms);
        }
        if answer.high_watermark < self.end {
            return self.behind(now_ms);
        }
        self.behind_since_ms = None;
        let mut take = 0..0;
        let mut expected = self.end;
        for (index, batch) in answer.batches.iter().enumerate() {
            if batch.last < expected && take.is_empty() {
                // Already mirrored (the fetch began inside an earlier batch's range).
                take = index + 1..index + 1;
                continue;
            }
            if batch.base < expected || batch.last < batch.base {
                return self.fail("the source's batches do not line up with the mirror's log (batch boundaries differ)");
            }
            if batch.last >= answer.high_watermark {
                break;
            }
            take.end = index + 1;
            expected = batch.last + 1;
        }
        if take.is_empty() {
            self.note_caught_up(now_ms);
            return Step::Wait;
        }
        Step::Append(take)
    }

    /// The fetched batches were appended: the log ends at `end` now.
    pub fn appended(&mut self, end: i64, now_ms: u64) {
        assert!(end >= self.end, "a mirror's log end only grows");
        self.end = end;
        self.note_caught_up(now_ms);
    }

    /// The log was restarted empty at `at` (after [`Step::Restart`]).
    pub fn restarted(&mut self, at: i64, now_ms: u64) {
        self.end = at;
        self.note_caught_up(now_ms);
    }

    /// Pauses (a paused or failed mirror stays as it is).
    pub fn pause(&mut self) {
        if self.state == State::Mirroring {
            self.state = State::Paused;
        }
    }

    /// Resumes a paused mirror from its log end.
    pub fn resume(&mut self) {
        if self.state == State::Paused {
            self.state = State::Mirroring;
        }
    }

    /// Makes the partition writable: the offset mirroring stopped at, recorded with the
    /// promotion; `None` if it was promoted already.
    pub fn promote(&mut self) -> Option<i64> {
        if matches!(self.state, State::Promoted { .. }) {
            return None;
        }
        self.state = State::Promoted { at: self.end };
        Some(self.end)
    }

    /// How far behind the source it is.
    pub fn lag(&self, now_ms: u64) -> Lag {
        let records = (self.source_high_watermark - self.end).max(0);
        let seconds = if records == 0 {
            0.0
        } else {
            now_ms.saturating_sub(self.caught_up_ms) as f64 / 1000.0
        };
        Lag { records, seconds }
    }

    fn note_caught_up(&mut self, now_ms: u64) {
        if self.end >= self.source_high_watermark {
            self.caught_up_ms = now_ms;
        }
    }

    fn behind(&mut self, now_ms: u64) -> Step {
        let since = *self.behind_since_ms.get_or_insert(now_ms);
        if now_ms.saturating_sub(since) < BEHIND_GRACE_MS {
            return Step::Wait;
        }
        self.fail("the source's log ends before the mirror's (records the mirror holds were lost on the source)")
    }

    /// Its log end: everything before it is mirrored.
    pub fn end(&self) -> i64 {
        self.end
    }

    /// The source's high watermark as last fetched.
    pub fn source_high_watermark(&self) -> i64 {
        self.source_high_watermark
    }

    /// Stops it for good, with why.
    pub fn fail(&mut self, why: &str) -> Step {
        self.state = State::Failed(why.to_owned());
        Step::Fail(why.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: [u8; 16] = [7; 16];

    fn answer(high_watermark: i64, batches: &[(i64, i64)]) -> Fetched {
        Fetched {
            topic_id: ID,
            high_watermark,
            log_start: 0,
            out_of_range: false,
            batches: batches
                .iter()
                .map(|&(base, last)| Span { base, last })
                .collect(),
        }
    }

    #[test]
    fn batches_up_to_the_high_watermark_are_appended_at_their_offsets() {
        let mut mirror = MirrorPartition::new(ID, 0, 0);
        assert_eq!(mirror.next_fetch(), Some(0));
        // Three batches; the third is past the high watermark (not committed on the source).
        let step = mirror.fetched(&answer(10, &[(0, 4), (5, 9), (10, 14)]), 100);
        assert_eq!(step, Step::Append(0..2));
        assert_eq!(mirror.lag(100).records, 10);
        mirror.appended(10, 150);
        assert_eq!(mirror.next_fetch(), Some(10));
        assert_eq!(
            mirror.lag(200),
            Lag {
                records: 0,
                seconds: 0.0
            }
        );
        // A compacted source: offsets missing between batches are kept missing.
        assert_eq!(
            mirror.fetched(&answer(40, &[(12, 15), (30, 39)]), 300),
            Step::Append(0..2)
        );
    }

    #[test]
    fn a_fetch_starting_inside_mirrored_batches_skips_them() {
        let mut mirror = MirrorPartition::new(ID, 5, 0);
        assert_eq!(
            mirror.fetched(&answer(10, &[(0, 4), (5, 9)]), 1),
            Step::Append(1..2)
        );
        let mut mirror = MirrorPartition::new(ID, 3, 0);
        let step = mirror.fetched(&answer(10, &[(0, 4), (5, 9)]), 1);
        assert!(matches!(step, Step::Fail(why) if why.contains("line up")));
    }

    #[test]
    fn a_recreated_source_topic_stops_the_mirror() {
        let mut mirror = MirrorPartition::new(ID, 0, 0);
        let mut other = answer(5, &[(0, 4)]);
        other.topic_id = [8; 16];
        assert!(matches!(mirror.fetched(&other, 1), Step::Fail(why) if why.contains("topic id")));
        assert!(matches!(mirror.state(), State::Failed(_)));
        assert_eq!(mirror.next_fetch(), None);
        assert_eq!(mirror.fetched(&answer(5, &[(0, 4)]), 2), Step::Wait);
    }

    #[test]
    fn source_retention_past_the_mirror_restarts_it_and_a_shorter_source_fails_it_late() {
        let mut mirror = MirrorPartition::new(ID, 10, 0);
        let mut gone = answer(500, &[]);
        gone.log_start = 200;
        gone.out_of_range = true;
        assert_eq!(mirror.fetched(&gone, 1), Step::Restart(200));
        mirror.restarted(200, 2);
        assert_eq!(mirror.next_fetch(), Some(200));
        // The source reports less than the mirror has: wait out a leader change, then fail.
        assert_eq!(mirror.fetched(&answer(150, &[]), 1_000), Step::Wait);
        assert_eq!(mirror.fetched(&answer(150, &[]), 20_000), Step::Wait);
        let step = mirror.fetched(&answer(150, &[]), 1_000 + BEHIND_GRACE_MS);
        assert!(matches!(step, Step::Fail(why) if why.contains("ends before")));
    }

    #[test]
    fn lag_in_seconds_counts_from_the_last_time_it_had_everything() {
        let mut mirror = MirrorPartition::new(ID, 0, 1_000);
        assert_eq!(mirror.fetched(&answer(0, &[]), 2_000), Step::Wait);
        assert_eq!(
            mirror.fetched(&answer(10, &[(0, 9)]), 3_000),
            Step::Append(0..1)
        );
        assert_eq!(
            mirror.lag(5_500),
            Lag {
                records: 10,
                seconds: 3.5
            }
        );
        mirror.appended(10, 6_000);
        assert_eq!(mirror.lag(6_000).seconds, 0.0);
    }

    #[test]
    fn pause_resume_and_promote() {
        let mut mirror = MirrorPartition::new(ID, 42, 0);
        mirror.pause();
        assert_eq!(
            (mirror.state(), mirror.next_fetch()),
            (&State::Paused, None)
        );
        assert_eq!(mirror.fetched(&answer(50, &[(42, 49)]), 1), Step::Wait);
        mirror.resume();
        assert_eq!(mirror.next_fetch(), Some(42));
        assert_eq!(mirror.promote(), Some(42));
        assert_eq!(mirror.state(), &State::Promoted { at: 42 });
        assert_eq!(mirror.promote(), None);
        mirror.resume();
        assert_eq!(
            mirror.next_fetch(),
            None,
            "a promoted partition is no mirror again"
        );
    }
}
