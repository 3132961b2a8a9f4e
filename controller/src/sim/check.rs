//! The simulation's checkers, run after every step.

use std::collections::BTreeMap;

use super::Sim;
use crate::image::MetadataImage;
use crate::node::Request;
use crate::records::{decode_entry, Record};

impl Sim {
    pub(super) fn check(&mut self) -> Result<(), String> {
        let mut failures = Vec::new();
        // One leader per term.
        for (id, voter) in &self.voters {
            let Some(c) = &voter.controller else { continue };
            if c.is_leader() {
                match self.leaders.get(&c.term()) {
                    Some(other) if other != id => failures.push(format!(
                        "two controller leaders in term {}: {other} and {id}",
                        c.term()
                    )),
                    Some(_) => {}
                    None => {
                        self.leaders.insert(c.term(), *id);
                        self.report.terms_with_leader += 1;
                    }
                }
            }
        }
        // Applied entries agree with the committed log.
        let ids: Vec<u64> = self.voters.keys().copied().collect();
        for id in ids {
            let applied = match self.voters.get_mut(&id).and_then(|v| v.controller.as_mut()) {
                Some(c) => c.take_applied(),
                None => continue,
            };
            for (index, term, data) in applied {
                self.report.entries_compared += 1;
                match self.committed.get(&index) {
                    Some((t, d)) if *t != term || *d != data => failures.push(format!(
                        "voter {id} applied index {index} term {term}, committed was term {t}"
                    )),
                    Some(_) => {}
                    None => {
                        if index != self.committed.len() as u64 + 1 {
                            failures.push(format!(
                                "voter {id} applied index {index} before index {} was committed",
                                self.committed.len() + 1
                            ));
                            continue;
                        }
                        self.committed.insert(index, (term, data.clone()));
                        self.advance_reference(index, &data, &mut failures);
                    }
                }
            }
        }
        // Every copy of the metadata is the committed log applied up to its offset.
        let mut images: Vec<(String, MetadataImage)> = Vec::new();
        for (id, voter) in &self.voters {
            if let Some(c) = &voter.controller {
                images.push((format!("voter {id}"), c.image().clone()));
            }
        }
        for (id, broker) in &self.brokers {
            if let Some(a) = &broker.agent {
                images.push((format!("broker {id}"), a.image().clone()));
            }
        }
        for (who, image) in images {
            if image.offset() == 0 {
                continue;
            }
            self.report.images_compared += 1;
            match self.reference_hashes.get(&image.offset()) {
                Some(expected) if *expected == image.encode().unwrap_or_default() => {}
                Some(_) => failures.push(format!(
                    "{who}'s metadata at offset {} differs from the committed log's",
                    image.offset()
                )),
                None => failures.push(format!(
                    "{who} has metadata at offset {}, past the committed log ({})",
                    image.offset(),
                    self.committed.len()
                )),
            }
        }
        for (id, broker) in &self.brokers {
            if let Some(e) = broker.agent.as_ref().and_then(|a| a.fatal()) {
                failures.push(format!("broker {id} refused: {e}"));
            }
        }
        // At most one broker acting as leader of a partition at once.
        // Keyed by topic id: a broker with older metadata may still lead a deleted topic of
        // the same name, which is another partition.
        let mut acting: BTreeMap<(u64, u32), (u32, String)> = BTreeMap::new();
        for (id, broker) in &self.brokers {
            let Some(a) = &broker.agent else { continue };
            for (name, topic) in a.image().topics() {
                for p in 0..topic.partitions.len() as u32 {
                    if let Some(epoch) = a.leads(name, p, self.now_ms) {
                        let seen = format!(
                            "{id} at epoch {epoch} (metadata offset {}, lease until {} ms)",
                            a.image().offset(),
                            a.lease_until_ms()
                        );
                        if let Some((_, other)) = acting.insert((topic.id, p), (*id, seen.clone()))
                        {
                            let voters: Vec<String> = self
                                .voters
                                .iter()
                                .filter_map(|(v, voter)| {
                                    let c = voter.controller.as_ref()?;
                                    Some(format!(
                                        "voter {v}: term {} leader {} offset {}",
                                        c.term(),
                                        c.is_leader(),
                                        c.image().offset()
                                    ))
                                })
                                .collect();
                            let recent: Vec<String> = self
                                .committed
                                .iter()
                                .rev()
                                .take(4)
                                .map(|(i, (_, d))| format!("{i}: {:?}", decode_entry(d)))
                                .collect();
                            failures.push(format!(
                                "two brokers act as leader of {name}/{p}: {other} and {seen}; {voters:?}; recent {recent:?}"
                            ));
                        }
                    }
                }
            }
        }
        self.rep_check(&mut failures);
        match failures.into_iter().next() {
            Some(f) => Err(self.fail(f)),
            None => Ok(()),
        }
    }

    fn advance_reference(&mut self, index: u64, data: &[u8], failures: &mut Vec<String>) {
        if data.is_empty() {
            self.reference.skip(index);
        } else {
            match decode_entry(data) {
                Ok(records) => {
                    let _ = self.reference.apply(index, &records);
                }
                Err(_) => self.reference.skip(index),
            }
        }
        for topic in self.reference.topics().values() {
            for (p, state) in topic.partitions.iter().enumerate() {
                let key = (topic.id, p as u32, state.leader_epoch);
                match self.partition_leaders.get(&key) {
                    Some(leader) if *leader != state.leader => failures.push(format!(
                        "partition {}/{p} epoch {} had leader {leader}, now {}",
                        topic.id, state.leader_epoch, state.leader
                    )),
                    Some(_) => {}
                    None => {
                        self.partition_leaders.insert(key, state.leader);
                    }
                }
            }
        }
        let encoded = self.reference.encode().unwrap_or_default();
        self.reference_hashes.insert(index, encoded);
    }

    pub(super) fn check_acknowledged(&self) -> Result<(), String> {
        for (offset, request) in &self.acknowledged {
            let Some((_, data)) = self.committed.get(offset) else {
                return Err(self.fail(format!("acknowledged change at {offset} is not committed")));
            };
            let records = decode_entry(data).unwrap_or_default();
            let matches = records.iter().any(|r| match (request, r) {
                (Request::CreateTopic { name, .. }, Record::CreateTopic { name: n, .. }) => {
                    name == n
                }
                (Request::DeleteTopic { name }, Record::DeleteTopic { name: n, .. }) => name == n,
                (Request::AddPartitions { name, .. }, Record::AddPartitions { name: n, .. }) => {
                    name == n
                }
                (Request::SetConfigs { name, .. }, Record::SetTopicConfigs { name: n, .. }) => {
                    name == n
                }
                (
                    Request::AllocateProducerIds { id, count },
                    Record::AllocateProducerIds { broker, count: c },
                ) => id == broker && count == c,
                _ => false,
            });
            if !matches {
                return Err(self.fail(format!(
                    "acknowledged {request:?} but the entry at {offset} holds {records:?}"
                )));
            }
        }
        Ok(())
    }
}
