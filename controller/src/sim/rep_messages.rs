//! The replication layer's messages arriving in the simulator: a leader serving a
//! follower's fetch, a follower applying the answer (truncating or appending verbatim),
//! the leader taking a produce or a read, and the workload seeing the answers.

use super::replication::{
    replica_end_for, FetchReply, RepMessage, Replica, Role, ACK_TIMEOUT_MS, ENTRIES_PER_FETCH,
    TOPIC,
};
use super::{Payload, Sim, WORKLOAD};
use crate::replica::{diverged_truncation, FollowerFetch, LeaderLog, Served};

impl Sim {
    /// A replication message arrives at `to` from `from`.
    pub(super) fn rep_deliver(&mut self, from: u64, to: u64, message: RepMessage) {
        if to == WORKLOAD {
            self.rep_answered(from as u32, message);
            return;
        }
        let id = to as u32;
        if self.brokers.get(&id).is_none_or(|b| b.agent.is_none()) {
            return;
        }
        let now = self.now_ms;
        // As the server does before every partition job: the metadata applied now (and the
        // lease) must name this broker the leader at the epoch its role leads at.
        let leads_at = self.brokers[&id]
            .agent
            .as_ref()
            .and_then(|a| a.leads(TOPIC, 0, now));
        let replica = self.rep.replicas.entry(id).or_insert_with(Replica::new);
        let lease = leads_at.is_some_and(|epoch| replica.role.leads_at(epoch));
        let reply = match message {
            RepMessage::Fetch {
                seq,
                epoch: asked,
                fetch_offset,
                last_fetched_epoch,
            } => {
                let Role::Leader(leading) = &mut replica.role else {
                    return;
                };
                let epoch = leading.epoch;
                let answer = if lease {
                    let fetch = FollowerFetch {
                        replica: from as u32,
                        leader_epoch: asked,
                        last_fetched_epoch,
                        fetch_offset,
                    };
                    let log = LeaderLog {
                        start: 0,
                        end: replica.log.len() as i64,
                        local_end: replica.durable as i64,
                    };
                    let end_for = |e: i32| replica_end_for(&replica.log, e);
                    leading
                        .serve_fetch(fetch, end_for, log, now)
                        .map_err(|r| format!("{r:?}"))
                } else {
                    Err("lease lapsed".to_owned())
                };
                let answer = answer.map(|served| match served {
                    Served::Diverging { epoch, end_offset } => {
                        FetchReply::Diverging { epoch, end_offset }
                    }
                    Served::Records { high_watermark, .. } => {
                        replica.cap = Some(high_watermark);
                        let start = fetch_offset as usize;
                        let end = replica.log.len().min(start + ENTRIES_PER_FETCH);
                        FetchReply::Records {
                            high_watermark,
                            entries: replica.log[start..end].to_vec(),
                        }
                    }
                });
                RepMessage::FetchAnswer {
                    seq,
                    epoch,
                    fetch_offset,
                    answer,
                }
            }
            RepMessage::FetchAnswer {
                seq,
                epoch,
                fetch_offset,
                answer,
            } => {
                let Role::Follower {
                    leader,
                    epoch: following,
                } = replica.role
                else {
                    return;
                };
                let fetching = &mut replica.fetching;
                if u64::from(leader) != from
                    || following != epoch
                    || fetching.sent.is_none()
                    || fetching.seq != seq
                {
                    return;
                }
                fetching.sent = None;
                match answer {
                    Ok(FetchReply::Diverging { epoch, end_offset }) => {
                        let own = (epoch >= 0)
                            .then(|| replica_end_for(&replica.log, epoch))
                            .flatten();
                        let to = diverged_truncation((epoch, end_offset), own, 0);
                        let event = format!(
                            "{id} truncates to {to} (log {} hw {:?}) on {from}'s answer: epoch {epoch} ends at {end_offset}, ours {own:?}",
                            replica.log.len(),
                            replica.cap
                        );
                        self.rep.note(now, event);
                        let replica = self.rep.replicas.get_mut(&id).expect("present");
                        if replica.truncate(to) {
                            self.rep.history.failures.push(format!(
                                "broker {id} truncated to {to}, below its high watermark"
                            ));
                        }
                        self.rep.history.checked.remove(&id);
                        self.report.truncations += 1;
                    }
                    Ok(FetchReply::Records {
                        high_watermark,
                        entries,
                    }) => {
                        // Verbatim appends start at the log end and never go back in epoch.
                        if fetch_offset == replica.log.len() as i64 {
                            for (e, value) in entries {
                                if replica.log.last().is_some_and(|(last, _)| *last > e) {
                                    break;
                                }
                                replica.log.push((e, value));
                            }
                        }
                        let agreed = high_watermark.min(replica.durable as i64);
                        if replica.cap.is_none_or(|cap| agreed > cap) {
                            replica.cap = Some(agreed);
                        }
                    }
                    Err(_) => {}
                }
                return;
            }
            RepMessage::Produce { token, value } => {
                let result = match &replica.role {
                    Role::Leader(leading) if lease => match leading.progress.check_acks_all() {
                        Ok(()) => {
                            let event = format!(
                                "{id} leads at {}: appends {value} at {}, lease until {:?}",
                                leading.epoch,
                                replica.log.len(),
                                self.brokers[&id].agent.as_ref().map(|a| a.lease_until_ms())
                            );
                            self.rep.events.push_back(format!("{now}: {event}"));
                            if self.rep.events.len() > 80 {
                                self.rep.events.pop_front();
                            }
                            replica.log.push((leading.epoch as i32, value));
                            let end = replica.log.len() as i64;
                            replica
                                .pending
                                .push((token, end, leading.epoch, now + ACK_TIMEOUT_MS));
                            None
                        }
                        Err(e) => Some(Err(e.to_string())),
                    },
                    _ => Some(Err("not leader".to_owned())),
                };
                match result {
                    Some(result) => RepMessage::ProduceAnswer { token, result },
                    None => return,
                }
            }
            RepMessage::Read { offset } => {
                let result = if lease && replica.leads() {
                    let hw = replica.high_watermark();
                    if offset > replica.log.len() as i64 {
                        Err("offset out of range".to_owned())
                    } else {
                        let end = hw.min(offset + ENTRIES_PER_FETCH as i64).max(offset);
                        Ok((offset..end)
                            .map(|o| (o, replica.log[o as usize].1))
                            .collect())
                    }
                } else {
                    Err("not leader".to_owned())
                };
                RepMessage::ReadAnswer { offset, result }
            }
            RepMessage::ProduceAnswer { .. } | RepMessage::ReadAnswer { .. } => return,
        };
        self.send(to, from, Payload::Rep(reply));
    }

    fn rep_answered(&mut self, from: u32, message: RepMessage) {
        match message {
            RepMessage::ProduceAnswer { token, result } => {
                if let (Some((value, _)), Ok(offset)) = (self.rep.produces.remove(&token), result) {
                    self.rep.history.acknowledged(value, offset);
                }
            }
            RepMessage::ReadAnswer { offset, result } => {
                if self.rep.read_sent.is_some_and(|(to, _)| to == from) {
                    self.rep.read_sent = None;
                }
                if let Ok(entries) = result {
                    self.rep.history.read(offset, &entries);
                }
            }
            _ => {}
        }
    }
}
