//! Replication in the simulator: one partition with three replicas, its brokers following
//! the metadata their agents apply, and a workload of acks=all appends and a consumer.
//!
//! Each broker's replica is the state machine the server drives ([`Role`]: its role from
//! the metadata, the leader's progress, ISR asks and fetch checks), with the follower's
//! truncation of the server ([`crate::replica::diverged_truncation`]); its log is
//! a list of `(epoch, value)` entries of which a prefix is durable (a crash keeps the
//! durable prefix and any prefix of the rest). Followers fetch from the leader's log end
//! (unsynced entries included, as the server reads to the log end) and report their own
//! durable end; the leader counts its durable end; acknowledgements wait for the high
//! watermark. The checker is in `jepsen.rs`.

use std::collections::BTreeMap;

use super::{Payload, Sim, WORKLOAD};
use crate::node::Request;
pub(super) use crate::replica::Role;
use crate::replica::{Applied, ReplicaConfig, Settings};

/// Name of the replicated topic.
pub(super) const TOPIC: &str = "replicated";
/// Tokens of requests the replication layer sends the controller (answers are ignored:
/// the metadata tells).
pub(super) const REP_TOKEN: u64 = 1 << 62;
const FETCH_RETRY_MS: u64 = 60;
pub(super) const ACK_TIMEOUT_MS: u64 = 1_500;
const LAG_TIME_MAX_MS: u64 = 300;
/// An ISR ask not yet in the metadata is asked again after this.
const ISR_ASK_RETRY_MS: u64 = 500;
pub(super) const ENTRIES_PER_FETCH: usize = 8;

/// A replica's messages (between brokers, and with the workload).
#[derive(Debug, Clone)]
pub(super) enum RepMessage {
    Fetch {
        seq: u64,
        epoch: i32,
        fetch_offset: i64,
        last_fetched_epoch: i32,
    },
    FetchAnswer {
        seq: u64,
        epoch: u32,
        fetch_offset: i64,
        answer: Result<FetchReply, String>,
    },
    Produce {
        token: u64,
        value: u64,
    },
    ProduceAnswer {
        token: u64,
        result: Result<i64, String>,
    },
    Read {
        offset: i64,
    },
    ReadAnswer {
        offset: i64,
        result: Result<Vec<(i64, u64)>, String>,
    },
}

#[derive(Debug, Clone)]
pub(super) enum FetchReply {
    Records {
        high_watermark: i64,
        entries: Vec<(i32, u64)>,
    },
    Diverging {
        epoch: i32,
        end_offset: i64,
    },
}

enum Out {
    Broker(u32, RepMessage),
    Controller(Request),
}

/// A follower's outstanding fetch.
#[derive(Default)]
pub(super) struct Fetching {
    /// When it was sent: only the answer to the latest counts (the server has one fetch
    /// at a time on a connection).
    pub(super) sent: Option<u64>,
    /// Its number.
    pub(super) seq: u64,
}

/// One broker's copy of the partition.
pub(super) struct Replica {
    pub(super) log: Vec<(i32, u64)>,
    pub(super) durable: usize,
    pub(super) syncing: Option<(usize, u64)>,
    pub(super) cap: Option<i64>,
    pub(super) role: Role,
    pub(super) fetching: Fetching,
    pub(super) pending: Vec<(u64, i64, u32, u64)>,
}

impl Replica {
    pub(super) fn new() -> Replica {
        Replica {
            log: Vec::new(),
            durable: 0,
            syncing: None,
            cap: None,
            role: Role::Idle,
            fetching: Fetching::default(),
            pending: Vec::new(),
        }
    }

    /// Drops the log from `to`; returns whether that cut below the high watermark (data
    /// every replica agreed on).
    pub(super) fn truncate(&mut self, to: i64) -> bool {
        let below = to < self.high_watermark();
        if let Some(cap) = self.cap {
            self.cap = Some(cap.min(to));
        }
        let to = to.max(0) as usize;
        self.log.truncate(to);
        self.durable = self.durable.min(to);
        if let Some((target, at)) = self.syncing {
            self.syncing = Some((target.min(to), at));
        }
        below
    }

    pub(super) fn high_watermark(&self) -> i64 {
        self.cap.unwrap_or(0)
    }

    pub(super) fn leads(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }
}

/// The replication layer of a simulation.
#[derive(Default)]
pub(super) struct Replication {
    pub(super) replicas: BTreeMap<u32, Replica>,
    pub(super) paused_until: BTreeMap<u32, u64>,
    pub(super) create_sent_at: Option<u64>,
    pub(super) next_value: u64,
    pub(super) produces: BTreeMap<u64, (u64, u64)>,
    pub(super) read_sent: Option<(u32, u64)>,
    pub(super) history: super::jepsen::History,
    /// The last replication events, shown when a check fails.
    pub(super) events: std::collections::VecDeque<String>,
}

impl Replication {
    pub(super) fn note(&mut self, now: u64, event: String) {
        if self.events.len() >= 80 {
            self.events.pop_front();
        }
        self.events.push_back(format!("{now}: {event}"));
    }
}

impl Sim {
    pub(super) fn rep_enabled(&self) -> bool {
        self.config.replicated
    }

    /// The partition's metadata as broker `id`'s agent applied it.
    pub(super) fn rep_state(&self, id: u32) -> Option<crate::records::PartitionState> {
        let agent = self.brokers.get(&id)?.agent.as_ref()?;
        agent.image().topic(TOPIC)?.partitions.first().cloned()
    }

    pub(super) fn rep_paused(&self, id: u32) -> bool {
        self.rep
            .paused_until
            .get(&id)
            .is_some_and(|until| *until > self.now_ms)
    }

    /// A broker process died: its log keeps the durable prefix and any prefix of the rest.
    pub(super) fn rep_crash(&mut self, id: u32) {
        if !self.rep_enabled() {
            return;
        }
        let keep = self.fault.next_u64();
        let replica = self.rep.replicas.entry(id).or_insert_with(Replica::new);
        let unsynced = replica.log.len() - replica.durable;
        let kept = replica.durable + keep as usize % (unsynced + 1);
        let event = format!(
            "{id} crashes: log {} durable {} hw {:?}, keeps {kept}",
            replica.log.len(),
            replica.durable,
            replica.cap
        );
        replica.log.truncate(kept);
        replica.durable = kept;
        replica.syncing = None;
        replica.cap = None;
        replica.role = Role::Idle;
        replica.fetching = Fetching::default();
        replica.pending.clear();
        self.rep.paused_until.remove(&id);
        self.rep.note(self.now_ms, event);
    }

    pub(super) fn rep_faults(&mut self) {
        if !self.rep_enabled() {
            return;
        }
        // Pause a broker (a long GC, SIGSTOP): it does nothing, messages to it wait.
        if self.fault.chance(2) {
            let brokers = self.brokers.len() as u64;
            let id = 1 + self.fault.below(brokers) as u32;
            let until = self.now_ms + 100 + self.fault.below(900);
            self.rep.paused_until.insert(id, until);
            self.report.pauses += 1;
        }
    }

    /// Creates the replicated topic until some broker knows it; true once one does.
    pub(super) fn rep_ensure_topic(&mut self) -> bool {
        if !self.rep_enabled() {
            return true;
        }
        let now = self.now_ms;
        let created = (1..=self.brokers.len() as u32).any(|id| self.rep_state(id).is_some());
        if !created && self.rep.create_sent_at.is_none_or(|at| now - at > 500) {
            let token = self.next_token;
            self.next_token += 1;
            let request = Request::CreateTopic {
                name: TOPIC.into(),
                partitions: 1,
                replication_factor: 3,
                configs: vec![("min.insync.replicas".into(), "2".into())],
            };
            self.admin.insert(token, request.clone());
            let to = 1 + self.work.below(self.config.voters);
            self.send(WORKLOAD, to, Payload::Admin(token, request));
            self.rep.create_sent_at = Some(now);
        }
        created
    }

    pub(super) fn rep_workload(&mut self) {
        if !self.rep_ensure_topic() {
            return;
        }
        let now = self.now_ms;
        if self.work.chance(250) && self.rep.produces.len() < 32 {
            let to = self.rep_target();
            let (token, value) = (self.next_token, self.rep.next_value);
            self.next_token += 1;
            self.rep.next_value += 1;
            self.rep.produces.insert(token, (value, now));
            self.send(
                WORKLOAD,
                u64::from(to),
                Payload::Rep(RepMessage::Produce { token, value }),
            );
        }
        self.rep.produces.retain(|_, (_, at)| now - *at < 2_000);
        if self.rep.read_sent.is_none_or(|(_, at)| now - at > 200) && self.work.chance(200) {
            let to = self.rep_target();
            let offset = self.rep.history.position;
            self.rep.read_sent = Some((to, now));
            self.send(
                WORKLOAD,
                u64::from(to),
                Payload::Rep(RepMessage::Read { offset }),
            );
        }
    }

    /// Where the workload sends: mostly the leader some broker's metadata names, at times
    /// any broker (a stale client).
    fn rep_target(&mut self) -> u32 {
        let brokers = self.brokers.len() as u64;
        let asked = 1 + self.work.below(brokers) as u32;
        if self.work.chance(300) {
            return asked;
        }
        self.rep_state(asked)
            .and_then(|s| u32::try_from(s.leader).ok())
            .filter(|l| *l > 0)
            .unwrap_or(asked)
    }

    /// Every live broker's replica: durability, its role from the metadata, the leader's
    /// progress and acknowledgements, ISR requests, follower fetches.
    pub(super) fn rep_step(&mut self) {
        if !self.rep_enabled() {
            return;
        }
        let ids: Vec<u32> = self.brokers.keys().copied().collect();
        for id in ids {
            if self.rep_paused(id) || self.brokers[&id].agent.is_none() {
                continue;
            }
            self.rep_step_one(id);
        }
    }

    fn rep_step_one(&mut self, id: u32) {
        let now = self.now_ms;
        let state = self.rep_state(id);
        let lease = self.brokers[&id]
            .agent
            .as_ref()
            .is_some_and(|a| a.lease_valid(now));
        let sync_delay = 1 + self.fault.below(6);
        let replica = self.rep.replicas.entry(id).or_insert_with(Replica::new);
        // fsync: a sync covers what was in the log when it began.
        match replica.syncing {
            Some((target, at)) if at <= now => {
                replica.durable = replica.durable.max(target.min(replica.log.len()));
                replica.syncing = None;
            }
            None if replica.log.len() > replica.durable => {
                replica.syncing = Some((replica.log.len(), now + sync_delay));
            }
            _ => {}
        }
        let Some(state) = state else {
            return;
        };
        let agreed = replica.cap.unwrap_or(0);
        let local_end = replica.durable as i64;
        let mut events = Vec::new();
        let settings = || Settings {
            config: ReplicaConfig {
                min_insync: 2,
                lag_time_max_ms: LAG_TIME_MAX_MS,
            },
            throttle_rate: 0,
        };
        match replica
            .role
            .apply((id, &state), settings, (agreed, local_end), now)
        {
            Applied::Kept(_) => {}
            Applied::Leads { epoch, .. } => events.push(format!(
                "{id} leads at {epoch} isr {:?}: log {} durable {local_end} agreed {agreed}",
                state.isr,
                replica.log.len()
            )),
            Applied::Follows { leader, epoch } => {
                events.push(format!(
                    "{id} follows {leader} at {epoch}: log {} durable {local_end} agreed {agreed}",
                    replica.log.len()
                ));
                replica.fetching = Fetching::default();
                replica.cap = Some(agreed);
            }
            Applied::Idle => replica.cap = Some(agreed),
        }
        let mut sends: Vec<Out> = Vec::new();
        let mut answers = Vec::new();
        match &mut replica.role {
            Role::Leader(leading) => {
                leading.appended(local_end);
                replica.cap = Some(leading.progress.high_watermark());
                let (epoch, shared) = (leading.epoch, &leading.progress);
                replica.pending.retain(|(token, end, at_epoch, deadline)| {
                    let answer = if *at_epoch != epoch || !lease {
                        Some(Err("not leader".to_owned()))
                    } else if let Some(outcome) = shared.acks_all_outcome(*end) {
                        Some(outcome.map(|()| *end - 1).map_err(|e| e.to_string()))
                    } else if now > *deadline {
                        Some(Err("timed out".to_owned()))
                    } else {
                        None
                    };
                    let keep = answer.is_none();
                    if let Some(result) = answer {
                        answers.push(RepMessage::ProduceAnswer {
                            token: *token,
                            result,
                        });
                    }
                    keep
                });
                // The high watermark waits for every member asked until the metadata
                // moves on.
                if let Some(ask) = leading.isr_ask((TOPIC, 0, id), now, ISR_ASK_RETRY_MS) {
                    if let Request::AlterIsr { isr, .. } = &ask {
                        events.push(format!(
                            "{id} asks isr {isr:?} at {epoch}, hw {}",
                            leading.progress.high_watermark()
                        ));
                    }
                    sends.push(Out::Controller(ask));
                }
            }
            Role::Follower { leader, epoch } => {
                let fetching = &mut replica.fetching;
                if fetching.sent.is_none_or(|at| now - at > FETCH_RETRY_MS) {
                    fetching.seq += 1;
                    fetching.sent = Some(now);
                    let fetch_offset = replica.durable as i64;
                    let last_fetched_epoch = replica.log[..replica.durable]
                        .last()
                        .map_or(-1, |(e, _)| *e);
                    sends.push(Out::Broker(
                        *leader,
                        RepMessage::Fetch {
                            seq: fetching.seq,
                            epoch: *epoch as i32,
                            fetch_offset,
                            last_fetched_epoch,
                        },
                    ));
                }
            }
            Role::Idle => {}
        }
        for event in events {
            self.rep.note(now, event);
        }
        for answer in answers {
            self.send(u64::from(id), WORKLOAD, Payload::Rep(answer));
        }
        for out in sends {
            match out {
                Out::Broker(leader, message) => {
                    self.send(u64::from(id), u64::from(leader), Payload::Rep(message))
                }
                Out::Controller(request) => {
                    let token = REP_TOKEN | self.next_token;
                    self.next_token += 1;
                    let to = self.broker_target(id);
                    self.send(u64::from(id), to, Payload::Admin(token, request));
                }
            }
        }
    }

    /// After healing: every replica in the ISR holding the same log.
    pub(super) fn rep_converged(&self) -> bool {
        if !self.rep_enabled() {
            return true;
        }
        let Some(state) = self.rep_state(1) else {
            return false;
        };
        if state.leader < 0 || state.isr.len() != state.replicas.len() {
            return false;
        }
        let Some(leader) = self.rep.replicas.get(&(state.leader as u32)) else {
            return false;
        };
        state.replicas.iter().all(|r| {
            self.rep.replicas.get(r).is_some_and(|replica| {
                replica.log == leader.log
                    && replica.durable == replica.log.len()
                    && replica.high_watermark() == leader.log.len() as i64
            })
        })
    }
}

/// Where the largest epoch at most `epoch` ends on `log` (epochs never decrease along a
/// log, so it ends right after its last entry).
pub(super) fn replica_end_for(log: &[(i32, u64)], epoch: i32) -> Option<(i32, i64)> {
    let index = log.iter().rposition(|(e, _)| *e <= epoch)?;
    Some((log[index].0, index as i64 + 1))
}
