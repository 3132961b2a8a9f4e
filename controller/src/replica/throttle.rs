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
    /// The topic's throttle `rate` (bytes per second, 0: none) on the replicas `adding`.
    pub fn set(&mut self, rate: u64, adding: &[u32]) {
        self.rate = rate;
        self.adding = adding.to_vec();
        self.tokens.retain(|id, _| adding.contains(id));
    }

    /// How much `replica` may be sent now: `None` unthrottled, `Some(0)` nothing yet.
    pub fn allowance(&mut self, replica: u32, now_ms: u64) -> Option<u64> {
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

    /// How long until `replica` may be sent something again (ms): `None` when it is not
    /// throttled or may be sent something now.
    pub fn wait_ms(&self, replica: u32, now_ms: u64) -> Option<u64> {
        if self.rate == 0 || !self.adding.contains(&replica) {
            return None;
        }
        let (tokens, at) = *self.tokens.get(&replica)?;
        let rate = i64::try_from(self.rate).unwrap_or(i64::MAX);
        let earned = i64::try_from(now_ms.saturating_sub(at))
            .unwrap_or(i64::MAX)
            .saturating_mul(rate)
            / 1_000;
        // Sending needs at least one token.
        let short = 1i64.saturating_sub(tokens.saturating_add(earned));
        (short > 0).then(|| (short.unsigned_abs().saturating_mul(1_000)).div_ceil(self.rate))
    }

    /// `bytes` were sent to `replica` (at least one batch goes even past the allowance).
    pub fn spent(&mut self, replica: u32, bytes: u64) {
        if let Some((tokens, _)) = self.tokens.get_mut(&replica) {
            *tokens = tokens.saturating_sub(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Throttle;

    #[test]
    fn a_throttled_replica_waits_until_a_token_is_earned() {
        // Goal: a leader knows how long a throttled follower must wait instead of asking
        // again and again.
        let mut throttle = Throttle::default();
        throttle.set(1_000, &[2]);
        assert_eq!(throttle.wait_ms(2, 0), None, "nothing spent yet");
        assert_eq!(throttle.allowance(2, 0), Some(1_000));
        throttle.spent(2, 1_500);
        // 500 bytes owed, 1 more needed, at 1,000 bytes/s: 501 ms.
        assert_eq!(throttle.wait_ms(2, 0), Some(501));
        assert_eq!(throttle.wait_ms(2, 300), Some(201));
        assert_eq!(throttle.wait_ms(2, 501), None);
        assert_eq!(throttle.wait_ms(3, 0), None, "replica 3 is not throttled");
    }
}
