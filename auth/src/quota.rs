//! Client quotas as Kafka keeps them: byte rates for produce and fetch per user and client
//! id, chosen by Kafka's precedence among exact and default entries, measured over a
//! sliding window of one-second samples, and the throttle time that brings a client back
//! to its rate. Time is an input (milliseconds), so the rates are tested without clocks.

use std::collections::{BTreeMap, HashMap, VecDeque};

/// Who an entry is for: a user and/or a client id, each exact, the default (`Some(None)`)
/// or not part of the entry (`None`), as Kafka's `/users/…/clients/…` paths.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct QuotaEntity {
    /// `Some(Some(name))` a user, `Some(None)` the default user, `None` any.
    pub user: Option<Option<String>>,
    /// `Some(Some(id))` a client id, `Some(None)` the default client, `None` any.
    pub client_id: Option<Option<String>>,
}

/// What a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaKind {
    /// Produced bytes a second (`producer_byte_rate`).
    Produce,
    /// Fetched bytes a second (`consumer_byte_rate`).
    Fetch,
    /// Time handling requests, in percent of one request-handling thread
    /// (`request_percentage`; 200: two threads' worth). Recorded in microseconds.
    Request,
}

impl QuotaKind {
    /// Kafka's key.
    pub fn key(self) -> &'static str {
        match self {
            QuotaKind::Produce => "producer_byte_rate",
            QuotaKind::Fetch => "consumer_byte_rate",
            QuotaKind::Request => "request_percentage",
        }
    }

    /// Every kind.
    pub const ALL: [QuotaKind; 3] = [QuotaKind::Produce, QuotaKind::Fetch, QuotaKind::Request];

    /// The kind Kafka's `key` names.
    pub fn parse(key: &str) -> Option<QuotaKind> {
        QuotaKind::ALL.into_iter().find(|k| k.key() == key)
    }

    /// A quota's value in the units recorded a second: bytes for byte rates, microseconds
    /// of handling for a request percentage (1 % of a thread: 10,000 µs a second).
    fn per_second(self, value: f64) -> f64 {
        match self {
            QuotaKind::Produce | QuotaKind::Fetch => value,
            QuotaKind::Request => value * 10_000.0,
        }
    }
}

/// Seconds of samples a rate is measured over (Kafka's `quota.window.num` 11 × 1 s).
pub const WINDOW_SAMPLES: u64 = 11;
/// Longest throttle asked of one client at once (Kafka caps at the window too).
pub const THROTTLE_MS_MAX: u64 = WINDOW_SAMPLES * 1000;
/// Clients whose rates are tracked at once; past it the longest-idle is forgotten.
pub const TRACKED_MAX: usize = 100_000;

/// The quota entries and every client's measured rate.
#[derive(Debug, Default)]
pub struct Quotas {
    entries: BTreeMap<QuotaEntity, BTreeMap<QuotaKind, f64>>,
    /// (user, client id, kind) → one-second samples (second, bytes).
    rates: HashMap<(String, String, QuotaKind), VecDeque<(u64, u64)>>,
}

impl Quotas {
    /// Quotas with `entries`.
    pub fn new(entries: BTreeMap<QuotaEntity, BTreeMap<QuotaKind, f64>>) -> Quotas {
        Quotas {
            entries,
            rates: HashMap::new(),
        }
    }

    /// Every entry.
    pub fn entries(&self) -> &BTreeMap<QuotaEntity, BTreeMap<QuotaKind, f64>> {
        &self.entries
    }

    /// Sets (`Some`) or removes (`None`) the `kind` quota of `entity`.
    pub fn set(&mut self, entity: QuotaEntity, kind: QuotaKind, value: Option<f64>) {
        let values = self.entries.entry(entity.clone()).or_default();
        match value {
            Some(value) => {
                values.insert(kind, value);
            }
            None => {
                values.remove(&kind);
                if values.is_empty() {
                    self.entries.remove(&entity);
                }
            }
        }
    }

    /// The `kind` quota of `user` with `client_id`, by Kafka's precedence: user and
    /// client, user and default client, user, default user and client, default user and
    /// default client, default user, client, default client.
    pub fn quota(&self, user: &str, client_id: &str, kind: QuotaKind) -> Option<f64> {
        let exact = |s: &str| Some(Some(s.to_owned()));
        let order = [
            (exact(user), exact(client_id)),
            (exact(user), Some(None)),
            (exact(user), None),
            (Some(None), exact(client_id)),
            (Some(None), Some(None)),
            (Some(None), None),
            (None, exact(client_id)),
            (None, Some(None)),
        ];
        order.into_iter().find_map(|(user, client_id)| {
            self.entries
                .get(&QuotaEntity { user, client_id })
                .and_then(|values| values.get(&kind).copied())
        })
    }

    /// Counts `bytes` (microseconds for [`QuotaKind::Request`]) for `user` and `client_id`
    /// at `now_ms`; the time (ms) the client must wait to be back at its quota, 0 when it
    /// is within it or has none.
    pub fn record(
        &mut self,
        user: &str,
        client_id: &str,
        kind: QuotaKind,
        bytes: u64,
        now_ms: u64,
    ) -> u64 {
        let Some(quota) = self.quota(user, client_id, kind).filter(|q| *q > 0.0) else {
            return 0;
        };
        let quota = kind.per_second(quota);
        if self.rates.len() >= TRACKED_MAX {
            self.forget_idle(now_ms);
        }
        let second = now_ms / 1000;
        let samples = self
            .rates
            .entry((user.to_owned(), client_id.to_owned(), kind))
            .or_default();
        match samples.back_mut() {
            Some((s, total)) if *s == second => *total += bytes,
            _ => samples.push_back((second, bytes)),
        }
        while samples
            .front()
            .is_some_and(|(s, _)| s + WINDOW_SAMPLES <= second)
        {
            samples.pop_front();
        }
        let total: u64 = samples.iter().map(|(_, b)| b).sum();
        // The window measured: from the oldest sample's second to now (at least 1 s).
        let first = samples.front().map_or(second, |(s, _)| *s);
        let elapsed_ms = (now_ms - first * 1000).max(1000) as f64;
        let rate = total as f64 * 1000.0 / elapsed_ms;
        if rate <= quota {
            return 0;
        }
        // Kafka's formula: the wait that brings the measured rate down to the quota.
        let throttle = (rate - quota) / quota * elapsed_ms;
        (throttle as u64).min(THROTTLE_MS_MAX)
    }

    fn forget_idle(&mut self, now_ms: u64) {
        let second = now_ms / 1000;
        self.rates.retain(|_, samples| {
            samples
                .back()
                .is_some_and(|(s, _)| s + WINDOW_SAMPLES > second)
        });
        if self.rates.len() >= TRACKED_MAX {
            self.rates.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(user: Option<Option<&str>>, client: Option<Option<&str>>) -> QuotaEntity {
        QuotaEntity {
            user: user.map(|u| u.map(str::to_owned)),
            client_id: client.map(|c| c.map(str::to_owned)),
        }
    }

    #[test]
    fn the_most_specific_entry_wins_in_kafkas_order() {
        let mut quotas = Quotas::default();
        let kind = QuotaKind::Produce;
        quotas.set(entity(None, Some(None)), kind, Some(8.0));
        assert_eq!(quotas.quota("alice", "app", kind), Some(8.0));
        quotas.set(entity(None, Some(Some("app"))), kind, Some(7.0));
        assert_eq!(quotas.quota("alice", "app", kind), Some(7.0));
        quotas.set(entity(Some(None), None), kind, Some(6.0));
        assert_eq!(quotas.quota("alice", "app", kind), Some(6.0));
        quotas.set(entity(Some(Some("alice")), None), kind, Some(3.0));
        assert_eq!(quotas.quota("alice", "app", kind), Some(3.0));
        assert_eq!(quotas.quota("bob", "app", kind), Some(6.0));
        quotas.set(
            entity(Some(Some("alice")), Some(Some("app"))),
            kind,
            Some(1.0),
        );
        assert_eq!(quotas.quota("alice", "app", kind), Some(1.0));
        assert_eq!(quotas.quota("alice", "other", kind), Some(3.0));
        assert_eq!(quotas.quota("alice", "app", QuotaKind::Fetch), None);
        quotas.set(entity(Some(Some("alice")), Some(Some("app"))), kind, None);
        assert_eq!(quotas.quota("alice", "app", kind), Some(3.0));
    }

    #[test]
    fn a_client_over_its_rate_waits_what_brings_it_back() {
        let mut quotas = Quotas::default();
        quotas.set(
            entity(Some(Some("a")), None),
            QuotaKind::Produce,
            Some(1000.0),
        );
        // 500 bytes a second for 5 s: within.
        for s in 0..5u64 {
            assert_eq!(
                quotas.record("a", "c", QuotaKind::Produce, 500, s * 1000),
                0
            );
        }
        // 10,000 bytes at once at 5 s: 12,500 over 6 s is ~2,083/s, twice the quota.
        let throttle = quotas.record("a", "c", QuotaKind::Produce, 10_000, 5_999);
        assert!((6_000..=7_000).contains(&throttle), "{throttle}");
        // Someone without a quota is never throttled.
        assert_eq!(
            quotas.record("b", "c", QuotaKind::Produce, 1 << 30, 6_000),
            0
        );
        // Old samples leave the window.
        assert_eq!(quotas.record("a", "c", QuotaKind::Produce, 1, 60_000), 0);
    }

    #[test]
    fn throttles_are_capped_and_tracking_is_bounded() {
        let mut quotas = Quotas::default();
        quotas.set(entity(None, Some(None)), QuotaKind::Fetch, Some(1.0));
        assert_eq!(
            quotas.record("a", "c", QuotaKind::Fetch, 1 << 40, 0),
            THROTTLE_MS_MAX
        );
        for i in 0..(TRACKED_MAX + 10) {
            quotas.record("u", &i.to_string(), QuotaKind::Fetch, 1, 0);
        }
        assert!(quotas.rates.len() <= TRACKED_MAX);
    }

    #[test]
    fn a_request_percentage_is_handling_time_against_a_share_of_one_thread() {
        let mut quotas = Quotas::default();
        let kind = QuotaKind::Request;
        quotas.set(entity(Some(Some("a")), None), kind, Some(10.0));
        // 10 % of a thread is 100 ms of handling a second: 45 ms a second is within.
        for s in 0..5u64 {
            assert_eq!(quotas.record("a", "c", kind, 45_000, s * 1000), 0);
        }
        // 1.2 s of handling at once: 1.425 s over 6 s, 2.4 times the share.
        let throttle = quotas.record("a", "c", kind, 1_200_000, 5_999);
        assert!((7_500..=9_000).contains(&throttle), "{throttle}");
        assert_eq!(QuotaKind::parse("request_percentage"), Some(kind));
        // Byte rates of the same entity are not touched.
        assert_eq!(
            quotas.record("a", "c", QuotaKind::Produce, 1 << 30, 6_000),
            0
        );
    }
}
