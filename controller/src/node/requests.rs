//! The controller's answers to brokers and tools: registrations, heartbeats (held while
//! there is nothing new), metadata fetches, topic changes and ISR changes.

use super::*;

impl Controller {
    pub(super) fn handle(&mut self, token: Token, request: Request) -> Result<Option<Reply>> {
        if !matches!(request, Request::Fetch { .. }) && !self.leader_caught_up() {
            // A leader just elected answers from its applied image only once that image
            // holds every entry of earlier terms: computed from less (a topic placed on
            // brokers it does not know alive yet), a change would be wrong. The caller
            // retries, as with any "not the controller yet".
            return Err(Error::NotController {
                leader: self.leader(),
            });
        }
        match request {
            Request::Fetch { offset } => Ok(Some(self.metadata_reply(offset, false))),
            Request::Heartbeat {
                id,
                incarnation,
                offset,
            } => {
                if !self.leader_caught_up() {
                    // An earlier leader's fencing may still be on its way into the image.
                    return Err(Error::NotController {
                        leader: self.leader(),
                    });
                }
                let broker = self.image.brokers().get(&id);
                let Some(broker) = broker.filter(|b| b.incarnation == incarnation) else {
                    return Err(Error::StaleBroker { id, incarnation });
                };
                let fenced = broker.fenced || self.fence_pending(id);
                self.leases.insert(id, self.now_ms);
                if broker.fenced && self.may_propose(id, false) {
                    let records = unfence_records(&self.image, id, incarnation);
                    self.propose(records, None)?;
                }
                if !fenced && offset >= self.image.offset() && self.parked.len() < PARKED_MAX {
                    self.parked.push((token, id, offset, self.now_ms));
                    return Ok(None);
                }
                Ok(Some(self.metadata_reply(offset, fenced)))
            }
            Request::Register {
                id,
                address,
                incarnation,
            } => {
                if let Some(current) = self.image.brokers().get(&id) {
                    if current.incarnation == incarnation {
                        self.leases.insert(id, self.now_ms);
                        return Ok(Some(Reply::Committed {
                            offset: self.image.offset(),
                        }));
                    }
                    let last = self.leases.get(&id).copied().unwrap_or(0);
                    let live =
                        !current.fenced && self.now_ms.saturating_sub(last) <= self.config.lease_ms;
                    let same_directory = current.incarnation >> 32 == incarnation >> 32;
                    if same_directory && current.incarnation > incarnation {
                        return Err(Error::StaleBroker { id, incarnation });
                    }
                    if live && !same_directory {
                        return Err(Error::DuplicateBroker {
                            id,
                            address: current.address.clone(),
                            incarnation: current.incarnation,
                        });
                    }
                }
                let mut records = vec![Record::RegisterBroker {
                    id,
                    address,
                    incarnation,
                }];
                records.extend(lead_again(&self.image, id));
                self.leases.insert(id, self.now_ms);
                self.propose(records, Some(token))?;
                Ok(None)
            }
            Request::CreateTopic {
                name,
                partitions,
                replication_factor,
                configs,
            } => {
                check_topic_name(&name)?;
                if self.image.topic(&name).is_some() {
                    return Err(Error::TopicExists(name));
                }
                let placed = place(&self.image, partitions, replication_factor)?;
                let record = Record::CreateTopic {
                    name,
                    configs,
                    partitions: placed,
                };
                self.propose(vec![record], Some(token))?;
                Ok(None)
            }
            Request::AddPartitions { name, count } => {
                let topic = self
                    .image
                    .topic(&name)
                    .ok_or_else(|| Error::UnknownTopic(name.clone()))?;
                let before = topic.partitions.len() as u32;
                let max = crate::image::PARTITIONS_PER_TOPIC_MAX;
                if count <= before || count > max {
                    return Err(Error::Invalid {
                        field: "partitions",
                        reason: format!(
                            "{count}: more than the topic's {before} and at most {max}"
                        ),
                    });
                }
                let replication_factor = topic.partitions.first().map_or(1, |p| p.replicas.len());
                let topic_id = topic.id;
                let placed = place(&self.image, count - before, replication_factor as u32)?;
                let record = Record::AddPartitions {
                    name,
                    topic_id,
                    partitions: placed,
                };
                self.propose(vec![record], Some(token))?;
                Ok(None)
            }
            Request::DeleteTopic { name } => {
                let topic_id = self
                    .image
                    .topic(&name)
                    .ok_or_else(|| Error::UnknownTopic(name.clone()))?
                    .id;
                self.propose(vec![Record::DeleteTopic { name, topic_id }], Some(token))?;
                Ok(None)
            }
            Request::SetSecurity { entries } => {
                self.image.check_security(&entries)?;
                self.propose(vec![Record::SetSecurity { entries }], Some(token))?;
                Ok(None)
            }
            Request::SetConfigs { name, configs } => {
                if self.image.topic(&name).is_none() {
                    return Err(Error::UnknownTopic(name));
                }
                self.propose(vec![Record::SetTopicConfigs { name, configs }], Some(token))?;
                Ok(None)
            }
            Request::AlterIsr {
                topic,
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                isr,
            } => {
                let record = self.alter_isr(
                    topic,
                    partition,
                    (leader, leader_epoch, partition_epoch),
                    isr,
                )?;
                self.propose(vec![record], Some(token))?;
                Ok(None)
            }
            Request::ElectLeaders { topic, partition } => {
                self.elect_leaders(token, topic, partition)
            }
            Request::RaiseLeaderEpoch {
                id,
                topic,
                partition,
                above,
            } => self.raise_leader_epoch(token, (id, topic, partition), above),
            Request::Reassign {
                topic,
                partition,
                replicas,
            } => self.reassign(token, (topic, partition), replicas),
            Request::Decommission { id } => self.decommission(token, id),
            Request::LogOffline {
                id,
                topic,
                partition,
                leader_epoch,
            } => {
                let change = crate::leadership::move_off_failed_log(
                    &self.image,
                    (&topic, partition, leader_epoch),
                    id,
                );
                let Some(record) = change else {
                    return Ok(Some(Reply::Committed {
                        offset: self.image.offset(),
                    }));
                };
                self.propose(vec![record], Some(token))?;
                Ok(None)
            }
            Request::ReserveProducerIds { id, below } => {
                if !self.image.brokers().contains_key(&id) {
                    return Err(Error::StaleBroker { id, incarnation: 0 });
                }
                // Every block from before a reservation is left unused by the brokers, so
                // the new one starts at the next id and ends past `below`.
                let floor = self
                    .image
                    .producer_block(crate::image::RESERVED_PRODUCER_IDS)
                    .map_or(0, |(first, count)| first + u64::from(count));
                if below <= floor {
                    return Ok(Some(Reply::Committed {
                        offset: self.image.offset(),
                    }));
                }
                let next = self.image.next_producer_id();
                let count = below.saturating_sub(next).clamp(1, u64::from(u32::MAX));
                let record = Record::AllocateProducerIds {
                    broker: crate::image::RESERVED_PRODUCER_IDS,
                    count: count as u32,
                };
                self.propose(vec![record], Some(token))?;
                Ok(None)
            }
            Request::AllocateProducerIds { id, count } => {
                if !self.image.brokers().contains_key(&id) {
                    return Err(Error::StaleBroker { id, incarnation: 0 });
                }
                // The block's first id is fixed when the entry is applied, in log order, so
                // blocks proposed together never overlap.
                let record = Record::AllocateProducerIds { broker: id, count };
                self.propose(vec![record], Some(token))?;
                Ok(None)
            }
        }
    }

    /// A new leader epoch above `above` for a partition `id` leads (nothing when its epoch
    /// is above already); the leader and ISR stay.
    fn raise_leader_epoch(
        &mut self,
        token: Token,
        (id, topic, partition): (u32, String, u32),
        above: u32,
    ) -> Result<Option<Reply>> {
        let info = self
            .image
            .topic(&topic)
            .ok_or_else(|| Error::UnknownTopic(topic.clone()))?;
        let state = info
            .partitions
            .get(partition as usize)
            .ok_or(Error::UnknownPartition {
                topic: topic.clone(),
                partition,
            })?;
        if state.leader != id as i32 || state.leader_epoch > above || above == u32::MAX {
            return Ok(Some(Reply::Committed {
                offset: self.image.offset(),
            }));
        }
        let record = Record::PartitionChange {
            topic_id: info.id,
            partition,
            state: PartitionState {
                leader_epoch: above + 1,
                ..state.next()
            },
        };
        self.propose(vec![record], Some(token))?;
        Ok(None)
    }

    /// Leadership back to the preferred replica (the first replica) of the partitions
    /// where it is alive, in the ISR and not leading: one entry, each a new leader epoch.
    /// Nothing to move answers at once with the current offset.
    fn elect_leaders(
        &mut self,
        token: Token,
        topic: String,
        partition: Option<u32>,
    ) -> Result<Option<Reply>> {
        let info = self
            .image
            .topic(&topic)
            .ok_or_else(|| Error::UnknownTopic(topic.clone()))?;
        if let Some(p) = partition {
            if p as usize >= info.partitions.len() {
                return Err(Error::UnknownPartition {
                    topic,
                    partition: p,
                });
            }
        }
        let live = self.image.live_brokers();
        let records: Vec<Record> = info
            .partitions
            .iter()
            .enumerate()
            .filter(|(p, _)| partition.is_none_or(|only| only as usize == *p))
            .filter_map(|(p, state)| {
                let preferred = *state.replicas.first()?;
                let movable = state.leader != preferred as i32
                    && state.isr.contains(&preferred)
                    && live.contains(&preferred);
                movable.then(|| Record::PartitionChange {
                    topic_id: info.id,
                    partition: p as u32,
                    state: PartitionState {
                        leader: preferred as i32,
                        leader_epoch: state.leader_epoch + 1,
                        ..state.next()
                    },
                })
            })
            .collect();
        if records.is_empty() {
            return Ok(Some(Reply::Committed {
                offset: self.image.offset(),
            }));
        }
        self.propose(records, Some(token))?;
        Ok(None)
    }

    /// Checks an ISR change: from the current leader at the current epoch, keeping the
    /// leader, within the replicas, adding only live brokers.
    fn alter_isr(
        &self,
        topic: String,
        partition: u32,
        (leader, leader_epoch, partition_epoch): (u32, u32, u32),
        isr: Vec<u32>,
    ) -> Result<Record> {
        let info = self
            .image
            .topic(&topic)
            .ok_or_else(|| Error::UnknownTopic(topic.clone()))?;
        let state =
            info.partitions
                .get(partition as usize)
                .ok_or_else(|| Error::UnknownPartition {
                    topic: topic.clone(),
                    partition,
                })?;
        if state.leader != leader as i32
            || state.leader_epoch != leader_epoch
            || state.partition_epoch != partition_epoch
        {
            return Err(Error::StaleLeader {
                topic,
                partition,
                leader: state.leader,
                epoch: state.leader_epoch,
            });
        }
        let mut isr = isr;
        isr.sort_unstable();
        isr.dedup();
        let live = self.image.live_brokers();
        let invalid = |reason: String| Error::Invalid {
            field: "isr",
            reason,
        };
        if !isr.contains(&leader) {
            return Err(invalid(format!("{isr:?} leaves out the leader {leader}")));
        }
        if let Some(outside) = isr.iter().find(|r| !state.replicas.contains(r)) {
            return Err(invalid(format!(
                "{outside} is not a replica of {topic}/{partition}"
            )));
        }
        if let Some(dead) = isr
            .iter()
            .find(|r| !state.isr.contains(r) && !live.contains(r))
        {
            return Err(invalid(format!("{dead} is fenced and cannot join the ISR")));
        }
        // Keep the replicas' order in the ISR (the preferred leader first).
        let ordered: Vec<u32> = state
            .replicas
            .iter()
            .copied()
            .filter(|r| isr.contains(r))
            .collect();
        let next = PartitionState {
            replicas: state.replicas.clone(),
            isr: ordered,
            leader: state.leader,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch + 1,
            ..state.clone()
        };
        // Every replica a reassignment adds in sync now: it completes in the same change.
        let next = super::reassign::complete_reassignment(&next).unwrap_or(next);
        Ok(Record::PartitionChange {
            topic_id: info.id,
            partition,
            state: next,
        })
    }

    /// Answers held heartbeats: all of them when the metadata moved (`moved`) or this voter
    /// no longer leads, else those held for `heartbeat_hold_ms`.
    pub(super) fn release_parked(&mut self, moved: bool) {
        if self.parked.is_empty() {
            return;
        }
        let (now, hold, leading) = (self.now_ms, self.config.heartbeat_hold_ms, self.is_leader());
        let parked = std::mem::take(&mut self.parked);
        for (token, id, offset, since) in parked {
            if !leading {
                self.answers.push((
                    token,
                    Err(Error::NotController {
                        leader: self.leader(),
                    }),
                ));
            } else if moved || now.saturating_sub(since) >= hold {
                // Fenced as of now, not as of when it was parked.
                let fenced = self.image.brokers().get(&id).is_none_or(|b| b.fenced)
                    || self.fence_pending(id);
                let reply = self.metadata_reply(offset, fenced);
                self.answers.push((token, Ok(reply)));
            } else {
                self.parked.push((token, id, offset, since));
            }
        }
    }

    /// A fencing of `id` proposed and not applied yet: the broker must not act as a
    /// leader on a lease granted now, while another may be elected for its partitions.
    fn fence_pending(&self, id: u32) -> bool {
        self.proposed_at_ms
            .get(&(id, true))
            .is_some_and(|at| self.now_ms.saturating_sub(*at) < self.config.lease_ms)
    }

    pub(super) fn metadata_reply(&self, offset: u64, fenced: bool) -> Reply {
        let update = self.update_since(offset);
        // A broker whose metadata this answer does not bring up to date may not act as a
        // leader on it yet: a later entry may have moved its partitions. It asks again at
        // once and is granted its lease when caught up.
        let reaches = match &update {
            None => offset,
            Some(Update::Image(_)) => self.image.offset(),
            Some(Update::Entries(entries)) => entries.last().map_or(offset, |(i, _)| *i),
        };
        Reply::Metadata {
            term: self.term(),
            fenced: fenced || reaches < self.image.offset(),
            update,
        }
    }

    /// The committed metadata after `offset`, from the log while it still holds it.
    fn update_since(&self, offset: u64) -> Option<Update> {
        let applied = self.image.offset();
        if offset >= applied {
            return None;
        }
        let store = self.raw.store();
        let first = store.entries_ref().first().map(|e| e.index);
        match first {
            Some(first) if offset + 1 >= first => {
                let from = (offset + 1 - first) as usize;
                let entries = store.entries_ref()[from..]
                    .iter()
                    .take_while(|e| e.index <= applied)
                    .take(self.config.update_entries_max)
                    .map(|e| {
                        let data = if e.get_entry_type() == EntryType::EntryNormal {
                            e.data.to_vec()
                        } else {
                            Vec::new()
                        };
                        (e.index, data)
                    })
                    .collect();
                Some(Update::Entries(entries))
            }
            _ => self.image.encode().ok().map(Update::Image),
        }
    }
}
