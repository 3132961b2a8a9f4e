//! A link worker's upkeep besides fetching (`task.rs`): making the mirror topics a link
//! selects (and, for a failback link, turning the topics this cluster has into mirrors),
//! syncing their topic configs (`configs.rs`), checking a mirror log's history against the
//! source's before it is extended, raising a
//! promoted partition's leader epoch past the mirrored ones, syncing group offsets, and
//! publishing where each partition stands.

use super::definition::Definition;
use super::partition::{MirrorPartition, State};
use super::source::{ask, CLIENT_ID};
use super::task::Worker;
use crate::cluster::MirrorEntry;
use crate::config::topic::{
    read_only_mirror, MIRROR_LINK, MIRROR_SOURCE_TOPIC, MIRROR_SOURCE_TOPIC_ID, MIRROR_STATE,
};
use keel_kafka::source_groups as wire;
use keel_protocol::api::MirrorPartitionStatus;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Why a history check waits for the next round.
const NO_LEADER: &str = "no source leader known yet";
/// Why a history check waits for the next round: the log is being reopened.
const NO_LOG: &str = "the partition's log is being reopened";

impl Worker {
    /// Checks each newly owned mirror log that holds records against the source's history
    /// (OffsetForLeaderEpoch for its latest epoch, as a follower asks its leader): a log
    /// that is a prefix of the source's goes on; one that parts from it is truncated where
    /// it parts on a failback link, and stops with the offset on any other.
    pub(super) async fn check_histories(&mut self, definition: &Definition) {
        let pending: Vec<(String, u32)> = self
            .owned
            .iter()
            .filter(|(_, o)| !o.checked && o.mirror.next_fetch().is_some())
            .map(|(key, _)| key.clone())
            .collect();
        for key in pending {
            match self.parting_point(&key, definition).await {
                Ok(to) => self.follow_history(&key, to, definition.failback).await,
                // Not yet: no source leader known, or the log is being reopened (a config
                // change); the next round asks again.
                Err(reason) if reason.starts_with(NO_LEADER) || reason == NO_LOG => {}
                Err(reason) if definition.failback => {
                    self.fail_link(&format!("failback: {reason}"));
                }
                // A source that cannot say (no OffsetForLeaderEpoch): the mirror's own
                // checks (batch boundaries, a shorter source) still hold.
                Err(_) => {
                    if let Some(owned) = self.owned.get_mut(&key) {
                        owned.checked = true;
                    }
                }
            }
        }
    }

    /// Where the mirror log of `key` parts from the source's (`None`: they share nothing).
    async fn parting_point(
        &mut self,
        key: &(String, u32),
        definition: &Definition,
    ) -> Result<Option<i64>, String> {
        let log = self.shard.log_handle(&key.0, key.1).ok_or(NO_LOG)?;
        let epoch = log.latest_epoch().unwrap_or(0);
        let source_topic = self.owned[key].source_topic.clone();
        let address = self
            .metadata
            .topics
            .get(&source_topic)
            .and_then(|(_, leaders)| leaders.get(&(key.1 as i32)))
            .and_then(|leader| self.metadata.brokers.get(leader))
            .cloned()
            .ok_or(NO_LEADER)?;
        let connection = self.connection(&address, definition).await?;
        let body = ask(connection, |c| {
            wire::offset_for_leader_epoch_request(
                c,
                CLIENT_ID,
                &source_topic,
                &[(key.1 as i32, epoch)],
            )
        })
        .await?;
        let (_, ends) = wire::offset_for_leader_epoch_response(body).map_err(|e| e.to_string())?;
        let end = ends
            .into_iter()
            .find(|e| e.partition == key.1 as i32)
            .ok_or("no answer for the partition")?;
        if end.error != 0 {
            return Err(format!("OffsetForLeaderEpoch: Kafka error {}", end.error));
        }
        if end.leader_epoch < 0 {
            return Ok(None);
        }
        let own = log.epoch_end_offset(end.leader_epoch);
        Ok(Some(keel_controller::replica::diverged_truncation(
            (end.leader_epoch, end.end_offset),
            own,
            log.log_start_offset(),
        )))
    }

    /// Acts on where the log of `key` parts from the source's.
    async fn follow_history(&mut self, key: &(String, u32), to: Option<i64>, failback: bool) {
        let Some(log) = self.shard.log_handle(&key.0, key.1) else {
            return;
        };
        let (topic, partition) = (key.0.as_str(), key.1);
        let now_ms = self.now_ms();
        let Some(owned) = self.owned.get_mut(key) else {
            return;
        };
        match to {
            Some(to) if to >= log.log_end_offset() => owned.checked = true,
            Some(to) if failback => {
                tracing::warn!(link = %self.name, topic, partition, to, log_end = log.log_end_offset(), "failback: truncating what the source does not have");
                match log.truncate_to(to).await {
                    Ok(()) => {
                        self.shard.truncate_producers(topic, partition, to);
                        let owned = self.owned.get_mut(key).expect("owned above");
                        owned.mirror = MirrorPartition::new(owned.expected_id, to, now_ms);
                        owned.checked = true;
                    }
                    Err(e) => {
                        tracing::error!(link = %self.name, topic, partition, error = %e, "failback truncation failed")
                    }
                }
            }
            Some(to) => {
                let reason = format!("its history parts from the source's at offset {to} (the source lost records this mirror holds); a failback link would truncate it there");
                tracing::warn!(link = %self.name, topic, partition, reason, "mirror partition failed");
                let _ = owned.mirror.fail(&reason);
            }
            None => {
                let _ = owned
                    .mirror
                    .fail("it shares no history with the source topic (no common leader epoch)");
            }
        }
    }

    /// Syncs the link's groups' offsets when its interval has passed (shard 0).
    pub(super) async fn sync_groups(&mut self, definition: &Definition) {
        let interval = Duration::from_millis(definition.group_sync_interval_ms);
        if self.groups_synced.is_some_and(|at| at.elapsed() < interval) {
            return;
        }
        self.groups_synced = Some(Instant::now());
        let link = (self.name.as_str(), definition);
        match super::groups::sync(&self.shard, &self.view, link, &mut self.connections).await {
            Ok(0) => {}
            Ok(committed) => {
                tracing::debug!(link = %self.name, committed, "group offsets synced")
            }
            Err(reason) => {
                tracing::debug!(link = %self.name, reason, "group offsets not synced this round");
                self.connections.clear();
            }
        }
    }

    /// Makes each promoted partition this broker leads writable once its leader epoch is
    /// above every epoch in its log (the mirrored ones are the source's), asking the
    /// controller to raise it when it is not: the batches of one epoch always come from one
    /// leader (KIP-101), so a failback can tell where the histories part.
    pub(super) async fn raise_promoted_epochs(&mut self) {
        let mut asks = Vec::new();
        for ((topic, partition), owned) in &self.owned {
            if !matches!(owned.mirror.state(), State::Promoted { .. }) {
                continue;
            }
            let key = (topic.clone(), *partition);
            if self.status().writable.contains(&key) {
                continue;
            }
            let (Ok(epoch), Some(log)) = (
                self.view.leads(topic, *partition),
                self.shard.log_handle(topic, *partition),
            ) else {
                continue;
            };
            match log.latest_epoch() {
                Some(latest) if latest >= epoch as i32 => asks.push((key, latest as u32)),
                _ => {
                    tracing::info!(
                        topic,
                        partition,
                        epoch,
                        "promoted mirror partition writable"
                    );
                    self.status().writable.insert(key);
                }
            }
        }
        for ((topic, partition), above) in asks {
            let request = keel_controller::node::Request::RaiseLeaderEpoch {
                id: self.view.node_id,
                topic: topic.clone(),
                partition,
                above,
            };
            match crate::cluster::change(&self.shard, request).await {
                Ok(_) => tracing::info!(
                    topic,
                    partition,
                    above,
                    "leader epoch raised past the mirrored epochs"
                ),
                Err(e) => {
                    tracing::warn!(topic, partition, error = %e, "leader epoch not raised yet")
                }
            }
        }
    }

    /// Where this broker's mirror partitions stand (shared by its shards).
    pub(super) fn status(&self) -> std::sync::MutexGuard<'_, crate::cluster::MirrorStatus> {
        self.view.mirrors.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the mirror topics the link selects that the destination lacks (shard 0 of
    /// the controller leader's broker).
    pub(super) async fn discover(&mut self, definition: &Definition) -> Result<(), String> {
        let (_, topics) = self.source_metadata(definition, None).await?;
        let image = self.view.image();
        let live = image.live_brokers().len().max(1) as u32;
        let selected: Vec<_> = topics
            .into_iter()
            .filter(|t| t.error == 0 && !t.internal)
            .filter_map(|t| Some((definition.selection.mirror_name(&t.name)?, t)))
            .collect();
        let names: Vec<String> = selected.iter().map(|(_, t)| t.name.clone()).collect();
        // What the source sets on them: synced to the mirrors, and whether a topic is a
        // mirror there itself (never mirrored again: no loop between linked clusters).
        let source_configs = self.source_configs(definition, &names).await?;
        let mut mirrors = Vec::new();
        for (name, topic) in selected {
            if source_configs
                .get(&topic.name)
                .is_some_and(|c| super::configs::mirror_on_source(c))
            {
                tracing::debug!(link = %self.name, topic = topic.name, "a mirror topic on the source: not mirrored again");
                continue;
            }
            let configs = BTreeMap::from([
                (MIRROR_LINK.to_owned(), self.name.clone()),
                (MIRROR_SOURCE_TOPIC.to_owned(), topic.name.clone()),
                (
                    MIRROR_SOURCE_TOPIC_ID.to_owned(),
                    crate::registry::id_hex(&topic.id),
                ),
                (MIRROR_STATE.to_owned(), "mirroring".to_owned()),
            ]);
            let partitions = topic.partitions.len() as u32;
            if let Some(existing) = image.topic(&name) {
                let ours = existing.configs.get(MIRROR_LINK) == Some(&self.name);
                if ours && read_only_mirror(&existing.configs) {
                    mirrors.push((topic.name.clone(), name.clone()));
                }
                let count = existing.partitions.len() as u32;
                if ours && read_only_mirror(&existing.configs) && count < partitions {
                    let result = crate::handlers::cluster_admin::add_partitions(
                        &self.shard,
                        &name,
                        partitions,
                    )
                    .await;
                    tracing::info!(link = %self.name, topic = name, from = count, to = partitions, error = ?result.error, "the source topic grew: partitions added to its mirror");
                }
                let convert = definition.failback && !read_only_mirror(&existing.configs);
                if convert && count == partitions {
                    let result =
                        crate::handlers::cluster_admin::alter(&self.shard, name.clone(), configs)
                            .await;
                    tracing::info!(link = %self.name, topic = name, error = ?result.error, "failback: the topic becomes a mirror of the source's");
                } else if convert {
                    tracing::warn!(link = %self.name, topic = name, "failback: the topic has another partition count than the source's; left alone");
                }
                continue;
            }
            let result = crate::handlers::cluster_admin::create(
                &self.shard,
                name.clone(),
                partitions,
                live.min(3),
                configs,
            )
            .await;
            match result.error {
                keel_protocol::api::ErrorCode::None => {
                    tracing::info!(link = %self.name, topic = name, source_topic = topic.name, partitions, "mirror topic created")
                }
                error => {
                    tracing::warn!(link = %self.name, topic = name, ?error, message = result.message, "creating a mirror topic failed")
                }
            }
        }
        self.sync_configs(definition, &mirrors, &source_configs)
            .await;
        Ok(())
    }

    /// Publishes where each owned partition stands, for `keel link describe`.
    pub(super) fn publish(&self, definition: &Definition) {
        let now_ms = self.now_ms();
        let mut status = self.view.mirrors.lock().unwrap_or_else(|e| e.into_inner());
        for ((topic, partition), owned) in &self.owned {
            let lag = owned.mirror.lag(now_ms);
            let state = match owned.mirror.state() {
                State::Mirroring if owned.storage_error.is_some() => format!(
                    "failed: this cluster's storage: {} (retrying)",
                    owned.storage_error.as_deref().unwrap_or_default()
                ),
                State::Mirroring if definition.paused => "paused".to_owned(),
                State::Mirroring => "mirroring".to_owned(),
                State::Paused => "paused".to_owned(),
                State::Failed(reason) => format!("failed: {reason}"),
                // Writable once its leader epoch is above the mirrored ones.
                State::Promoted { .. }
                    if !status.writable.contains(&(topic.clone(), *partition)) =>
                {
                    "promoting".to_owned()
                }
                State::Promoted { .. } => "promoted".to_owned(),
            };
            let label = crate::metrics::PartitionLabel {
                topic: topic.clone(),
                partition: *partition,
            };
            let metrics = &self.shard.metrics;
            metrics
                .mirror_lag_records
                .get_or_create(&label)
                .set(lag.records);
            metrics
                .mirror_lag_ms
                .get_or_create(&label)
                .set((lag.seconds * 1000.0) as i64);
            status.partitions.insert(
                (topic.clone(), *partition),
                MirrorEntry {
                    link: self.name.clone(),
                    status: MirrorPartitionStatus {
                        topic: topic.clone(),
                        partition: *partition,
                        state,
                        source_high_watermark: owned.mirror.source_high_watermark(),
                        mirrored_offset: owned.mirror.end(),
                        lag_records: lag.records,
                        lag_ms: (lag.seconds * 1000.0) as u64,
                    },
                },
            );
        }
    }
}
