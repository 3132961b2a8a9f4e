//! A broker of a cluster starts with no users, ACLs or quotas: they come from the metadata
//! log. Until it has caught up with that log, applied what it holds and made the users
//! `--add-scram` names, it would refuse users it does not know yet and authorize against
//! ACLs it has not read. As Kafka's brokers open their listeners only once caught up, a
//! broker with an authorizer or a SASL listener holds its client requests until then
//! ([`ready`], at most [`READY_WAIT`]). A single node reads its files before it listens:
//! it is settled from the start.

use crate::shard::Shard;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long after its start a broker holds client requests while it settles; past it they
/// are served with what the broker has (the controller may be unreachable for long).
pub const READY_WAIT: Duration = Duration::from_secs(10);

/// Whether the security stores are the cluster's yet.
#[derive(Debug)]
pub struct Settled {
    ready: AtomicBool,
    /// The metadata offset whose users, ACLs and quotas the stores hold.
    applied: AtomicU64,
    /// Requests are held until then at the latest.
    deadline: Instant,
    /// Whether a request was served before the broker settled (logged once).
    gave_up: AtomicBool,
}

impl Settled {
    /// Settled from the start (a single node, or a cluster broker whose decisions do not
    /// depend on the metadata: no authorizer and no SASL listener).
    pub fn now() -> Settled {
        Settled {
            ready: AtomicBool::new(true),
            applied: AtomicU64::new(0),
            deadline: Instant::now(),
            gave_up: AtomicBool::new(false),
        }
    }

    /// Not settled until [`settle`] says so, or [`READY_WAIT`] has passed.
    pub fn later() -> Settled {
        Settled {
            ready: AtomicBool::new(false),
            applied: AtomicU64::new(0),
            deadline: Instant::now() + READY_WAIT,
            gave_up: AtomicBool::new(false),
        }
    }

    /// Whether requests are served without waiting.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Records that the stores hold the security entries of the metadata at `offset`.
    pub fn applied(&self, offset: u64) {
        self.applied.fetch_max(offset, Ordering::AcqRel);
    }

    fn applied_offset(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Whether a request arriving at `now` waits.
    fn holds(&self, now: Instant) -> bool {
        !self.is_ready() && now < self.deadline
    }

    fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
}

/// Waits until this broker has settled, or [`READY_WAIT`] after its start has passed (once
/// either, at once).
pub async fn ready(shard: &Shard) {
    let settled = &shard.security.settled;
    while settled.holds(Instant::now()) {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    if !settled.is_ready() && !settled.gave_up.swap(true, Ordering::AcqRel) {
        tracing::warn!(
            "serving clients before this broker has caught up with the cluster's users, ACLs and quotas ({READY_WAIT:?} after its start)"
        );
    }
}

/// Runs once at a cluster broker's start: waits until it has caught up with the metadata
/// log, makes the users `--add-scram` names that it does not have (through the controller),
/// waits until the stores hold what the metadata held then, and marks the broker settled.
pub async fn settle(shard: Rc<Shard>) {
    let Some(view) = shard.cluster.clone() else {
        return;
    };
    while !view.caught_up() {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    super::changes::add_scram_users(&shard, &view).await;
    let offset = view.image().offset();
    while shard.security.settled.applied_offset() < offset {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    shard.security.settled.set_ready();
    tracing::info!(
        offset,
        "users, ACLs and quotas applied from the metadata log"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_wait_until_settled_and_never_past_the_deadline() {
        let start = Instant::now();
        assert!(!Settled::now().holds(start), "a single node never holds");
        let later = Settled::later();
        assert!(later.holds(start));
        assert!(later.holds(start + READY_WAIT - Duration::from_millis(1)));
        assert!(!later.holds(start + READY_WAIT + Duration::from_secs(1)));
        later.applied(7);
        later.applied(5);
        assert_eq!(later.applied_offset(), 7, "the offset only grows");
        later.set_ready();
        assert!(!later.holds(start));
    }
}
