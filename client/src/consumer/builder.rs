//! Settings of a [`Consumer`] and connecting it.

use super::{Consumer, OffsetReset, RebalanceListener};
use crate::error::Result;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Configures and builds a [`Consumer`].
#[derive(Clone)]
pub struct ConsumerBuilder {
    pub(super) bootstrap: String,
    pub(super) security: crate::ClientSecurity,
    pub(super) max_wait: Duration,
    pub(super) partition_max_bytes: u32,
    pub(super) max_bytes: u32,
    pub(super) reset: OffsetReset,
    pub(super) group: Option<String>,
    pub(super) session_timeout: Duration,
    pub(super) rebalance_timeout: Duration,
    pub(super) max_poll_interval: Duration,
    pub(super) assignor: String,
    pub(super) auto_commit: Option<Duration>,
    pub(super) listener: Option<std::sync::Arc<dyn RebalanceListener>>,
}

impl std::fmt::Debug for ConsumerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerBuilder")
            .field("bootstrap", &self.bootstrap)
            .field("group", &self.group)
            .finish()
    }
}

impl ConsumerBuilder {
    /// Longest wait of a fetch for new data (default 500 ms).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }
    /// Most bytes per partition per fetch (default 1 MiB).
    pub fn partition_max_bytes(mut self, bytes: u32) -> Self {
        self.partition_max_bytes = bytes;
        self
    }
    /// How connections are made (default plain TCP; TLS: [`crate::ClientSecurity::tls`]).
    pub fn security(mut self, security: crate::ClientSecurity) -> Self {
        self.security = security;
        self
    }
    /// Where to start without a position (default latest).
    pub fn offset_reset(mut self, reset: OffsetReset) -> Self {
        self.reset = reset;
        self
    }
    /// Consumer group to join with [`Consumer::subscribe`].
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }
    /// The broker drops this member after this long without a heartbeat (default 10 s).
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }
    /// Longest wait for the group to settle in a rebalance (default 30 s).
    pub fn rebalance_timeout(mut self, timeout: Duration) -> Self {
        self.rebalance_timeout = timeout;
        self
    }
    /// Leave the group when `poll` is not called for this long (default 5 min).
    pub fn max_poll_interval(mut self, interval: Duration) -> Self {
        self.max_poll_interval = interval;
        self
    }
    /// `range` (default) or `roundrobin`.
    pub fn assignor(mut self, assignor: impl Into<String>) -> Self {
        self.assignor = assignor.into();
        self
    }
    /// Commit positions every `interval` from `poll` (default off).
    pub fn auto_commit(mut self, interval: Duration) -> Self {
        self.auto_commit = Some(interval);
        self
    }
    /// Who hears about rebalances.
    pub fn rebalance_listener(mut self, listener: std::sync::Arc<dyn RebalanceListener>) -> Self {
        self.listener = Some(listener);
        self
    }
    /// Connects.
    ///
    /// # Errors
    /// [`crate::Error::Connect`].
    pub async fn build(self) -> Result<Consumer> {
        let router = crate::router::Router::connect(
            &self.bootstrap,
            crate::connection::REQUEST_TIMEOUT,
            self.security.clone(),
        )
        .await?;
        let connection = router.bootstrap();
        Ok(Consumer {
            config: self,
            connection,
            router: std::sync::Arc::new(router),
            positions: BTreeMap::new(),
            high_watermarks: BTreeMap::new(),
            buffered: VecDeque::new(),
            prefetch: None,
            membership: None,
        })
    }
}
