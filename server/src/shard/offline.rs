//! Logs an I/O failure took offline (a full disk, EIO) come back without a restart: every
//! second the shard tries the ones due again (`Log::resume`), backing off per log from 1 s
//! to 30 s while the device still fails. In a cluster a broker whose log of a partition it
//! leads is offline tells the controller at once, which gives the partition to another
//! in-sync replica (Kafka's offline log directory); this broker follows once its log is
//! back.

use super::Shard;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// An offline log's next try.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    due: Instant,
    wait: Duration,
    /// The leader epoch whose leadership was reported failed to the controller.
    reported: Option<u32>,
}

/// Offline logs by partition.
pub type Retries = HashMap<(String, u32), Retry>;

impl Shard {
    /// Tries to bring back the offline logs whose retry is due; reports the ones this broker
    /// leads to the controller.
    pub async fn resume_offline_logs(self: &Rc<Self>) {
        let now = Instant::now();
        // Every second: only the offline logs are copied out (most shards have none).
        let offline: Vec<((String, u32), keel_engine::Log)> = self
            .logs
            .borrow()
            .iter()
            .filter(|(_, log)| log.is_offline())
            .map(|(key, log)| (key.clone(), log.clone()))
            .collect();
        self.offline_retries
            .borrow_mut()
            .retain(|key, _| offline.iter().any(|(k, _)| k == key));
        for (key, log) in offline {
            let retry = *self
                .offline_retries
                .borrow_mut()
                .entry(key.clone())
                .or_insert(Retry {
                    due: now,
                    wait: RETRY_MIN,
                    reported: None,
                });
            let (topic, partition) = (key.0.as_str(), key.1);
            let reported = self
                .report_failed_leadership(topic, partition, retry.reported)
                .await;
            if now < retry.due {
                self.offline_retries
                    .borrow_mut()
                    .insert(key, Retry { reported, ..retry });
                continue;
            }
            match log.resume().await {
                Ok(()) => {
                    tracing::info!(%topic, partition, "partition back online");
                    self.offline_retries.borrow_mut().remove(&key);
                }
                Err(e) => {
                    tracing::warn!(%topic, partition, error = %e, retry_in_s = retry.wait.as_secs(), "partition still offline");
                    let next = Retry {
                        due: Instant::now() + retry.wait,
                        wait: (retry.wait * 2).min(RETRY_MAX),
                        reported,
                    };
                    self.offline_retries.borrow_mut().insert(key, next);
                }
            }
        }
    }

    /// Cluster mode: while this broker leads the partition (at an epoch not reported yet),
    /// asks the controller to move it. Returns the epoch reported so far.
    async fn report_failed_leadership(
        self: &Rc<Self>,
        topic: &str,
        partition: u32,
        reported: Option<u32>,
    ) -> Option<u32> {
        let view = self.cluster.as_ref()?;
        let image = view.image();
        let state = image.topic(topic)?.partitions.get(partition as usize)?;
        let epoch = state.leader_epoch;
        if state.leader != view.node_id as i32 || reported == Some(epoch) {
            return reported;
        }
        let request = keel_controller::node::Request::LogOffline {
            id: view.node_id,
            topic: topic.to_owned(),
            partition,
            leader_epoch: epoch,
        };
        match crate::cluster::change(self, request).await {
            Ok(_) => {
                tracing::warn!(%topic, partition, epoch, "log offline: leadership handed to the controller");
                Some(epoch)
            }
            Err(e) => {
                tracing::warn!(%topic, partition, error = %e, "log offline: the controller was not told");
                reported
            }
        }
    }
}
