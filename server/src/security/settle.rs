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

/// The longest a client request waits for a starting broker to settle; past it the request
/// is served with what the broker has (the controller may be unreachable for long).
pub const READY_WAIT: Duration = Duration::from_secs(10);

/// Whether the security stores are the cluster's yet.
#[derive(Debug)]
pub struct Settled {
    ready: AtomicBool,
    /// The metadata offset whose users, ACLs and quotas the stores hold.
    applied: AtomicU64,
}

impl Settled {
    /// Settled from the start (a single node, or a cluster broker whose decisions do not
    /// depend on the metadata: no authorizer and no SASL listener).
    pub fn now() -> Settled {
        Settled {
            ready: AtomicBool::new(true),
            applied: AtomicU64::new(0),
        }
    }

    /// Not settled until [`settle`] says so.
    pub fn later() -> Settled {
        Settled {
            ready: AtomicBool::new(false),
            applied: AtomicU64::new(0),
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

    fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
}

/// Waits until this broker has settled, at most [`READY_WAIT`] (once settled, at once).
pub async fn ready(shard: &Shard) {
    let settled = &shard.security.settled;
    if settled.is_ready() {
        return;
    }
    let deadline = Instant::now() + READY_WAIT;
    while !settled.is_ready() {
        if Instant::now() >= deadline {
            tracing::warn!(
                "serving a client before this broker has caught up with the cluster's users, ACLs and quotas (waited {READY_WAIT:?})"
            );
            return;
        }
        glommio::timer::sleep(Duration::from_millis(20)).await;
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
