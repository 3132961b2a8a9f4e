//! Logs an I/O failure took offline (a full disk, EIO) come back without a restart: every
//! second the shard tries the ones due again (`Log::resume`), backing off per log from 1 s
//! to 30 s while the device still fails.

use super::Shard;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// When each offline log is tried next, and the wait after that.
pub type Retries = HashMap<(String, u32), (Instant, Duration)>;

impl Shard {
    /// Tries to bring back the offline logs whose retry is due.
    pub async fn resume_offline_logs(&self) {
        let now = Instant::now();
        for (key, log) in self.owned_logs() {
            if !log.is_offline() {
                self.offline_retries.borrow_mut().remove(&key);
                continue;
            }
            let (due, wait) = *self
                .offline_retries
                .borrow_mut()
                .entry(key.clone())
                .or_insert((now, RETRY_MIN));
            if now < due {
                continue;
            }
            let (topic, partition) = &key;
            match log.resume().await {
                Ok(()) => {
                    tracing::info!(%topic, partition, "partition back online");
                    self.offline_retries.borrow_mut().remove(&key);
                }
                Err(e) => {
                    tracing::warn!(%topic, partition, error = %e, retry_in_s = wait.as_secs(), "partition still offline");
                    let next = (Instant::now() + wait, (wait * 2).min(RETRY_MAX));
                    self.offline_retries.borrow_mut().insert(key, next);
                }
            }
        }
    }
}
