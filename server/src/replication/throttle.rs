//! The reassignment throttle: what a leader may send each replica a reassignment adds
//! (`reassignment.throttle.bytes.per.sec`).

use std::collections::HashMap;

/// What a leader may send the replicas a reassignment adds: a token bucket per replica of
/// `rate` bytes per second (a second's worth of burst).
#[derive(Debug, Default)]
pub struct Throttle {
    rate: u64,
    adding: Vec<u32>,
    /// Per throttled replica: bytes it may still be sent (negative: owed) and when that
    /// was last topped up (ms).
    tokens: HashMap<u32, (i64, u64)>,
}

impl Throttle {
    pub(super) fn set(&mut self, rate: u64, adding: &[u32]) {
        self.rate = rate;
        self.adding = adding.to_vec();
        self.tokens.retain(|id, _| adding.contains(id));
    }

    /// How much `replica` may be sent now: `None` unthrottled, `Some(0)` nothing yet.
    pub(crate) fn allowance(&mut self, replica: u32, now_ms: u64) -> Option<u64> {
        if self.rate == 0 || !self.adding.contains(&replica) {
            return None;
        }
        let rate = i64::try_from(self.rate).unwrap_or(i64::MAX);
        let (tokens, at) = self.tokens.entry(replica).or_insert((rate, now_ms));
        let earned = i64::try_from(now_ms.saturating_sub(*at))
            .unwrap_or(i64::MAX)
            .saturating_mul(rate)
            / 1_000;
        *tokens = tokens.saturating_add(earned).min(rate);
        *at = now_ms;
        Some(u64::try_from(*tokens).unwrap_or(0))
    }

    /// `bytes` were sent to `replica` (at least one batch goes even past the allowance).
    pub(crate) fn spent(&mut self, replica: u32, bytes: u64) {
        if let Some((tokens, _)) = self.tokens.get_mut(&replica) {
            *tokens = tokens.saturating_sub(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }
}
